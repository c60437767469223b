// Package server is the auctioneer's gRPC API (AuctioneerService):
// RequestLRPAuctions and RequestTaskAuctions validate the whole request
// (InvalidArgument naming every bad field, nothing added), add the work to
// the batch and answer at once. While this replica does not hold the
// auctioneer lock both calls answer Unavailable, so work only reaches the
// active auctioneer.
package server
