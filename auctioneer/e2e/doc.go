// Package e2e holds the auctioneer's end-to-end test: a real BBS, the
// auctioneer daemon and two fake cells, in one process, talking real gRPC
// over loopback on a real embedded etcd. It has no non-test code.
package e2e
