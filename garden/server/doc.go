// Package server serves the Garden HTTP API (every route of
// /work/shared/reference/garden.md §2, and the process streaming protocol
// of §3) over any rep/backend.Backend, on TCP or a unix socket.
//
// A [Server] is an ifrit runner: [Server.Run] listens (for a unix socket it
// first removes a stale socket file and then chmods the socket to 0777, as
// upstream does), arms the grace-time reaper for the containers the backend
// already holds, closes ready and serves until signalled. Wire it with
//
//	srv, err := server.New(b, server.Options{ListenNetwork: "unix", ListenAddr: "/var/vcap/data/garden/garden.sock", DefaultGraceTime: 0, Logger: logger})
//	... grouper member {"garden-server", srv} ...
//
// What it owns:
//
//   - Containers. Create stores two properties with the container:
//     garden.grace-time (the grace time in nanoseconds, so it survives a
//     server restart) and garden.state=created. A list filter without
//     garden.state only matches created containers, garden.state=all matches
//     every one, and a filter value of "" also matches a missing property
//     (§2.2). A concurrent Destroy of a handle being destroyed answers 500
//     "container already being destroyed". Every per-container route answers
//     404 ContainerNotFoundError for an unknown handle.
//   - The reaper (§2.3): a container idle for its grace time is destroyed.
//     Every request naming a container pauses its timer for the request's
//     duration; a Run or Attach stream pauses it for the stream's life.
//     SetGraceTime restarts the timer and is persisted when the container
//     implements backend.PropertyEditor.
//   - Processes. Each process started through the server gets a stdin pipe
//     (never the connection itself, so the process's Wait does not depend on
//     stdin copying) and a fan-out of its stdout and stderr to every
//     attached stream. A stream's output is buffered in channels of
//     Options.OutputBufferChunks chunks; a write that finds a channel full is
//     dropped, so a slow reader never blocks the process. A dropped Run or
//     Attach connection detaches: the process keeps running and Attach
//     reconnects to it (from the server's own record while the server runs,
//     else through backend Container.Attach). Stream ids and exited
//     processes stay known for Options.StreamRetention (default 1 min).
//   - Optional capabilities, found by type assertion on the container or
//     process: backend.MetricsReporter (metrics, bulk_metrics),
//     backend.PropertyEditor (property set/remove), backend.LimitsReporter
//     (limits), backend.NetInAdder (net/in) and backend.TTYResizer (tty
//     frames). Without one the route answers the Garden error body (500)
//     with a message naming the missing capability. NetOut rules are not
//     supported by any backend: the net/out routes answer such an error and
//     netout_rules in a Create are ignored (logged).
//   - Bounds: JSON request bodies are limited to Options.MaxBodyBytes
//     (1 MiB by default); handles, process IDs and property names and
//     values have maximum lengths (MaxHandleLength, ...); bulk requests take
//     at most MaxBulkHandles handles.
package server
