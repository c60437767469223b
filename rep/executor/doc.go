// Package executor runs the containers of one cell: it owns resource
// reservation, the container lifecycle, the action tree, health checks, log
// capture and the lifecycle events the rep turns into BBS calls.
//
// # Lifecycle
//
// A container is reserved by Allocate (memory, disk and one container slot
// subtracted atomically from the cell's remaining resources; LRPs also take
// Options.ProxyMemoryMB), initialised by Run (the run request is stored and
// the work continues in the background), created once the backend container
// exists, running once the setup succeeded, the action started and the
// startup health check passed, and completed when the action tree ends, fails
// or is stopped:
//
//	reserved → initializing → created → running → completed
//
// completed can be reached from every state. A reservation that is never run
// expires after Options.ReservedExpiration (1 min): it is removed, its
// resources are returned and ContainerReservationExpired is emitted.
// Resources of every other container are returned only by Delete, which also
// destroys the backend container.
//
// # Action tree
//
// The setup action, then the action together (codependently) with the health
// check and any sidecars. Steps: run (env, dir, user, rlimits; SIGTERM, then
// SIGKILL after Options.GraceTime), download (tar or tgz by URL, md5/sha1/sha256
// checksum, a disk cache keyed by cache_key revalidated with ETag and
// Last-Modified, at most Options.MaxConcurrentDownloads at once), upload (the
// file streamed out of the container, sent with an HTTP POST or PUT), timeout,
// try, parallel, serial, codependent and emit_progress.
//
// # Health
//
// With a CheckDefinition: startup checks every Options.StartupCheckInterval
// until all pass or the start timeout ends ("Instance never healthy after
// 1m0s: ..."), then liveness checks at the check's interval (default
// Options.LivenessCheckInterval; a failure ends the container with
// "Instance became unhealthy: ..."); readiness checks decide Routable and
// emit ContainerRoutableChanged on each flip. Checks are TCP connects and HTTP
// GETs from the cell to the container port (for backends without a network
// namespace, to the mapped host port); a container implementing
// backend.Prober (the sim backend) is probed through it instead. Without a
// CheckDefinition, the legacy monitor action is run repeatedly in the same
// two phases.
//
// # Goroutines
//
// A container whose action is a single run action (no setup, sidecars or
// checks, no result file) is supervised without a goroutine of its own when
// its process implements backend.ExitNotifier (the sim backend): the
// process's exit callback completes it, and only a stop takes a goroutine,
// for the grace timers. A simulated cell thus costs a few goroutines however
// many containers it runs. Otherwise one goroutine waits on each process.
//
// A container started by Run works under a runContext rather than a
// context.WithCancel child of the executor's: it ends on Stop, at the end of
// the container's work, and when Close or Detach ends every run. It joins no
// parent's map of children, makes its Done channel only when asked and keeps
// AfterFunc callbacks in a slice, so a running container holds no child
// context, map or channel for its supervision.
//
// # Restarts
//
// Detach ends an executor without stopping its containers (Close stops
// them). A new executor over the same backend adopts them with Recover: the
// backend containers it owns are rebuilt from the properties stored at
// creation (executor:resource, executor:run and the tags), their resources
// taken again; one whose app processes still run, or exited with a status
// the backend recorded meanwhile, is running and supervised again (the first
// exit completes it with its real status: the process backend's keepers
// record it across restarts; liveness and readiness checks resume; Stop
// stops it gracefully); one whose processes are gone with no recorded status
// is completed with ReasonLostWhileDetached. Processes carry their role in
// their id ("app-", "sidecar-", "monitor-"): monitor runs are not adopted. A
// task that was running when the cell went down thus completes as it would
// have without the restart, whether it exits before or after the adoption:
// succeeded with its result file on exit 0, failed with "Exited with status
// N" otherwise; an LRP's exit is a crash with its status. A status is
// unknown (and the task failed) only when the backend could not record it.
// Output written while no executor ran stays out of the logs.
//
// # Logs
//
// Each container's process output is split into lines (at most 61,440 bytes),
// tagged with the step's log source and stream, rate-limited (the run
// request's bytes per second and Options.MaxLogLinesPerSecond; overflow is
// dropped with a notice line), kept in a bounded ring (Options.LogRingSize) and
// published to subscribers (Logs, SubscribeLogs) so the CLI can tail them.
package executor
