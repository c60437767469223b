// Package auctionrequest sends the BBS's placement requests to the active
// auctioneer, whose address it reads from the value of the "auctioneer" lock.
//
// Requests are added without blocking the caller to a bounded pending set,
// de-duplicated by LRP process guid and index and by task guid, and sent in
// batches. A request leaves the set only once an auctioneer accepted it: a
// failed send is retried with backoff, and while no auctioneer holds the lock
// the set waits. The BBS's etcd watch signals every change of the lock, so a
// new holder receives the pending work at once (not at the next convergence
// pass). When the set is full, new requests are dropped, counted
// (gavel_bbs_auction_requests_dropped_total) and logged; convergence asks
// for that work again.
package auctionrequest
