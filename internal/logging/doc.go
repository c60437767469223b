// Package logging sets up lager loggers for Gavel daemons and carries
// request-scoped loggers in a context.Context.
//
// [New] builds a logger writing lager JSON lines to stdout at a named level.
// The gRPC interceptor of internal/grpcserver stores a per-request logger
// (with the request id) in the context with [NewContext]; handlers retrieve
// it with [FromContext].
package logging
