// Package client is a Go client of the Garden HTTP API (every route of
// /work/shared/reference/garden.md §2) over TCP or a unix socket.
//
// Ordinary calls go through an http.Client with keep-alive off (one request
// per connection, as the reference client). Run and Attach speak the
// hijacked-connection protocol of §3: the request is written on a raw
// connection, then newline-delimited garden.ProcessPayload frames flow both
// ways on it (stdin, signals and terminal sizes up, the ids and the exit
// status down), while stdout and stderr each arrive on their own connection.
// Process.Wait returns only once the exit status and both output streams'
// EOFs have arrived.
//
// Error bodies come back as the typed errors of package garden
// (garden.ContainerNotFoundError, garden.ProcessNotFoundError, ...), usable
// with errors.As and errors.Is; an untyped body is a *garden.Error. A Client
// is safe for concurrent use.
package client
