// Package process is a container backend that runs real processes with no
// isolation, for development cells (`gavel dev`) and tests.
//
// It owns, per container:
//
//   - a directory <Root>/<handle>/ holding state.json (handle, properties,
//     env, limits, port mappings and the pid, pgid and start time of every live
//     process), the process output files, and rootfs/, the directory that
//     container paths are rooted in: StreamIn to "/app" writes
//     <Root>/<handle>/rootfs/app, and a process's Dir is resolved the same way.
//     Processes are NOT chrooted: an absolute Path is first looked up under
//     rootfs/, then on the host, and a bare name on the PATH of the process
//     env. HOME and TMPDIR default to rootfs/ and rootfs/tmp, so files a task
//     writes relative to its working directory or $HOME can be streamed out.
//   - host ports from a configured range, one per NetIn container port, checked
//     free with a listen before use. There is no network namespace, so a
//     process must listen on the HOST port: ContainerInfo.SharedHostNetwork is
//     true and the executor gives the process PORT/VCAP_APP_PORT = the host port.
//   - one process group per process (Setpgid). Signal goes to the whole group;
//     when a process exits the rest of its group is SIGKILLed before the exit
//     is reaped (so the pgid cannot be reused meanwhile); Stop and Destroy kill
//     every group. Children are therefore never leaked unless they leave their
//     process group (setsid). Options.KillOnParentExit adds PR_SET_PDEATHSIG,
//     which kills each process when the backend's OS process dies; it is off by
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
// Process output goes to files in the container directory (never pipes), so
// a process survives a restart of the backend's OS process without dying of
// SIGPIPE. The output is tailed to the ProcessIO writers. A new Backend over
// the same Root rediscovers the containers from their state.json: Containers
// lists them, their host ports stay reserved, and processes still alive
// (same pid and start time) are tracked by polling; as they are no longer
// children of the backend, their exit status is ExitStatusUnknown.
package process
