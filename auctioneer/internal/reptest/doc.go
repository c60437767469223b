// Package reptest runs fake cells for the auctioneer's tests: a RepService
// gRPC server on a loopback port whose State reports a configurable cell
// and whose Perform reserves resources the way a rep does, recording every
// request. Hooks let a test delay or fail State and Perform, or act on the
// work a cell accepts (the end-to-end test claims it in the BBS).
package reptest
