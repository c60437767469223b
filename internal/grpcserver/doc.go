// Package grpcserver runs a gRPC server as an ifrit runner with the plumbing
// every Gavel daemon shares.
//
// A [Server] listens on [Options.Addr] (":0" picks a free port), registers
// the daemon's services through [Options.Register], and always adds:
//
//   - the gRPC health service (grpc.health.v1): the overall status "" is
//     NOT_SERVING until the server is ready, SERVING while it runs and
//     NOT_SERVING again once it is stopping; [Server.Health] lets a daemon set
//     per-service statuses (for example a passive BBS replica);
//   - server reflection, so grpcurl and the gavel CLI can discover services;
//   - an outermost interceptor that gives each call a request id (from the
//     incoming "x-request-id" metadata, or a new UUID, echoed in the response
//     header), puts a lager logger carrying it in the context (see
//     internal/logging.FromContext), logs failures, and turns a handler panic
//     into codes.Internal instead of killing the process;
//   - with TLS, authorization of every call by internal/authz: the caller's
//     role, from its verified client certificate, must be allowed the RPC by
//     the table, else PermissionDenied; the identity travels in the context
//     (authz.FromContext). Without TLS every call is allowed, so a plaintext
//     server refuses to listen on anything but a loopback address;
//   - with [Options.Metrics], Prometheus counts of finished calls by method
//     and code and a histogram of unary calls' time in the server.
//
// The default maximum received message size is raised to 64 MiB. On a signal
// the server stops gracefully, bounded by [Options.GracefulStopTimeout]
// (10 s by default), then stops hard.
package grpcserver
