// Package garden is a rep/backend.Backend that drives a Garden server over
// its HTTP API (through garden/client): Gavel's own garden/server, or Cloud
// Foundry's garden-runc, by address (TCP or unix socket).
//
// It maps the backend contract onto Garden:
//
//   - ContainerSpec → Garden ContainerSpec: Image → image.uri, Limits →
//     memory_limits.limit_in_bytes, disk_limits.byte_hard, pid_limits.max and
//     cpu_limits.weight, NetIn → netin (host_port 0 asks the server to
//     allocate one), BindMounts (host origin, RO or RW), Properties and Env.
//   - Garden ContainerInfo → backend.ContainerInfo: HostIP is the server's
//     ExternalIP (HostIP when that is empty), ContainerIP, MappedPorts,
//     Events, ProcessIDs, and SharedHostNetwork is true only when the
//     container IP is the external IP (no network namespace).
//   - Lookup lists the containers and searches the handle, as the reference
//     client does, so it only finds containers whose Create finished.
//   - Errors come back as the backend sentinels, wrapping the Garden error:
//     ContainerNotFoundError → backend.ErrContainerNotFound,
//     ProcessNotFoundError → backend.ErrProcessNotFound, and a Create error
//     saying the handle already exists (Gavel's server) or is already in use
//     (guardian) → backend.ErrHandleExists.
//   - Containers implement the optional backend.MetricsReporter,
//     backend.PropertyEditor, backend.LimitsReporter and backend.NetInAdder,
//     and processes backend.TTYResizer; a server that lacks the capability
//     answers an error, which is returned. Backend.BulkMetrics reads many
//     containers' metrics in one request.
//
// Garden's API cannot say whether memory limits are enforced:
// Options.MemoryLimitsEnforced tells (garden-runc enforces them).
package garden
