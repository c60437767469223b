// Package models owns the BBS's domain rules over the generated protobuf types:
// validation of every request (collecting field errors with their paths), the
// ActualLRP and Task state machines, the crash restart policy, and the error
// sentinels with their one mapping to gRPC status codes. It does no I/O.
package models
