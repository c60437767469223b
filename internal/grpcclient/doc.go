// Package grpcclient dials the gRPC connections Gavel's components open to
// each other: one shared connection per address, plaintext or mTLS, with
// keepalives and large messages allowed.
package grpcclient
