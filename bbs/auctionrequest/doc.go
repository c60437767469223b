// Package auctionrequest sends the BBS's placement requests to the active
// auctioneer, whose address it reads from the value of the "auctioneer" lock.
// Requests are queued without blocking the caller and sent in batches; when
// no auctioneer is reachable they are dropped with a log line, and
// convergence asks again.
package auctionrequest
