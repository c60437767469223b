// Package process is a container backend that runs real processes with no
// isolation, for development cells (`gavel dev`) and tests.
//
// It owns, per container:
//
//   - a directory <Root>/<handle>/ holding state.json (handle, properties,
//     env, limits, port mappings and, for every process running or holding an
//     undelivered exit status, its pid, pgid and start time and its keeper's
//     pid and start time), processes/ with each process's output files and
//     exit file, and rootfs/, the directory that
//     container paths are rooted in: StreamIn to "/app" writes
//     <Root>/<handle>/rootfs/app, and a process's Dir is resolved the same way.
//     Processes are NOT chrooted: an absolute Path is first looked up under
//     rootfs/, then on the host, and a bare name on the PATH of the process
//     env. HOME and TMPDIR default to rootfs/ and rootfs/tmp, so files a task
//     writes relative to its working directory or $HOME can be streamed out.
//     StreamOut of "/d" names entries "d/...", of "/d/" "./..." (as guardian).
//     A TTY process is refused: there is no pty.
//   - host ports from a configured range, one per NetIn container port, checked
//     free with a listen before use. There is no network namespace, so a
//     process must listen on the HOST port: ContainerInfo.SharedHostNetwork is
//     true and the executor gives the process PORT/VCAP_APP_PORT = the host port.
//   - one keeper per process: the backend's own binary re-executed
//     (/proc/self/exe) in keeper mode, which is the process's parent. Every
//     binary that runs this backend calls RunKeeper first thing in main when
//     KeeperRequested (and so does TestMain of every test package that starts
//     processes with it). The keeper leads its own process group and catches
//     SIGTERM, SIGINT and SIGHUP, so signals meant for the process (or for
//     the backend's group) do not end it. It starts the process, reports its
//     pid to the backend over a pipe, waits for it and writes its exit status
//     (the exit code, or 128+n for a death by signal n) with its pid and start
//     time to processes/<id>.exit (write to a temporary file, then rename).
//     The keeper survives a restart of the backend's OS process, so the status
//     does too. A keeper costs one Go runtime per process (figures in
//     rep/BENCHMARKS.md). It stays in the backend's cgroup; only the process
//     goes to the container's.
//   - one process group per process (Setpgid). Signal goes to the whole group;
//     when a process exits its keeper SIGKILLs the rest of the group before
//     reaping it (so the pgid cannot be reused meanwhile); Stop and Destroy
//     kill every group. Children are therefore never leaked unless they leave
//     their process group (setsid). Options.KillOnParentExit adds
//     PR_SET_PDEATHSIG=SIGKILL to each keeper (it dies with the backend's OS
//     process) and to each process (it dies with its keeper); it is off by
//     default because it defeats rediscovery.
//   - memory limits through cgroup v2 where the machine allows it: at start the
//     backend probes Options.CgroupRoot (default /sys/fs/cgroup) for a cgroup v2
//     hierarchy with the memory controller, creates <root>/<CgroupParent>/ and a
//     sub-cgroup per container with memory.max, and starts processes in it with
//     CLONE_INTO_CGROUP. When the probe fails the limits are only accounted:
//     Capacity.MemoryLimitsEnforced and ContainerInfo.MemoryLimitEnforced are
//     false and Backend.CgroupStatus says why. The development machine this was
//     written on (a VM with a cgroup v1 hierarchy on /sys/fs/cgroup and an empty
//     cgroup2 mount on /sys/fs/cgroup/unified) is in the second case.
//
// Containers also implement backend.MetricsReporter (memory and CPU of the
// processes in their processes' groups, from /proc, and the bytes of their
// directory), backend.PropertyEditor (an edit is saved to
// state.json at once) and backend.LimitsReporter (the limits given at
// Create), which the Garden server (garden/server) uses for its property
// routes, its persisted grace time and its limits routes.
//
// The keeper binary has three more modes, for backends that run it inside
// containers (rep/backend/runc): InitFlag (a container's PID 1, reaping
// orphans), TarInFlag and TarOutFlag (StreamIn and StreamOut run in the
// container). With Options.LaunchPidFile each process is started by a
// launcher (runc exec --detach) that writes the real process's pid and
// exits; the keeper, a child subreaper, adopts and keeps that process.
//
// Process output goes to files in the container directory (never pipes), so
// a process survives a restart of the backend's OS process without dying of
// SIGPIPE. The output is tailed to the ProcessIO writers. A new Backend over
// the same Root rediscovers the containers from their state.json: Containers
// lists them, their host ports stay reserved, and each recorded process is
// adopted: one still running (same pid and start time) is watched by
// polling, and Wait reports the status its keeper records when it exits; one
// that exited while no backend ran is kept, exited, with the status its
// keeper recorded: Info lists it and Attach returns a Process whose Wait
// reports that status at once, after which it is forgotten. Only a process
// whose keeper was killed before recording a status (SIGKILL, a crash) ends
// with ExitStatusUnknown; one gone with no status recorded at all is not
// adopted. An exit file names the pid and start time it belongs to, and Run
// removes a stale one of the same process id, so an old status is never
// reported for a new process.
package process
