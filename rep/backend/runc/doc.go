// Package runc is a container backend that runs real OCI containers with
// the host's runc (Debian's runc 1.1), a CNI bridge network and the
// process backend's keepers, as Garden's guardian does with its dadoo.
//
// Layout of the depot, Options.Root:
//
//	containers/<id>/        one OCI bundle per container (<id> is the
//	                        handle when runc accepts it, else "h-"+hash)
//	  state.json            handle, image, properties, env, limits, bind
//	                        mounts, ports, IP, stopped, created at
//	  config.json           the OCI runtime spec (runtime-spec types)
//	  rootfs/               overlay mount: lowerdir = the preloaded rootfs
//	                        (read-only, shared), upperdir = upper/,
//	                        workdir = work/; all discarded on Destroy
//	  hosts, resolv.conf    the container's own /etc/hosts and resolv.conf
//	  runc.log              runc's log (JSON) and the init's output
//	  processes/<pid-id>.json, .pid, .runc.log
//	                        each process's runc exec spec, host pid, log
//	keepers/<id>/           a process-backend container per runc
//	                        container: the keepers' state, each process's
//	                        output files and exit file, its host ports
//	runc/                   runc --root: runc's own state, this backend only
//	cni/ipam/, cni/cache/   host-local leases and libcni's cache
//	host-userland/          lower layer of Options.HostUserlandRootfs
//	images/<digest>/rootfs  local images unpacked (layers flattened,
//	                        whiteouts applied, owners kept); never evicted
//
// Create, in order: resolve the image ("preloaded:NAME" from
// Options.Rootfses or the host userland; oci:///PATH[#REF], a local OCI
// layout, or docker:///PATH.tar[#TAG], a local `docker save` tarball, read
// with go-containerregistry and unpacked once into images/, whose config
// Env comes before the container's; a registry URI is refused as not
// local; anything else is refused naming what the cell provides), mount the overlay, allocate host ports (the
// process backend's pool), create a named network namespace
// (/run/netns/<bridge>-<id>, `ip netns add`) and attach it with CNI
// (bridge with host-local IPAM and ipMasq, loopback, portmap with snat so
// 127.0.0.1:hostport works from the host too), write config.json and
// `runc run --detach` the container. PID 1 is the keeper binary
// (Options.KeeperPath, statically linked) bind-mounted read-only at
// /.gavel/init and run with process.InitFlag: it reaps orphans and ignores
// signals. Namespaces: mount, pid, uts (hostname = handle), ipc, network.
// Mounts: /proc, /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue, /sys (ro),
// /sys/fs/cgroup (ro), /etc/hosts, /etc/resolv.conf, the spec's bind mounts
// (read-only unless ReadWrite) and, for the host userland, /usr, /bin,
// /sbin, /lib*, /etc read-only from the host. Capabilities: Docker's
// default set for root (never CAP_SYS_RESOURCE; privileged containers get
// the host's bounding set without it), none held by other users. Limits
// (cgroupfs driver, cgroupsPath /<CgroupParent>/<id>): memory.limit with
// memory+swap equal to it where swap accounting exists (so it is really
// enforced; the OOM killer stays on), cpu.shares = CPUWeight, pids.max;
// RLIMIT_NOFILE DefaultNofile unless the process sets one. Any failure
// undoes the steps already done; so does Destroy, in reverse, each step
// tolerating what is already gone, so a failed Destroy can be retried.
//
// Every process is `runc exec --detach --process <spec> --pid-file <file>`
// run as the launcher of a keeper of the embedded process backend
// (process.Options.LaunchPidFile): the keeper is a child subreaper, adopts
// the process when runc exits, waits for it and writes its exit status
// (128+n for a death by signal n) to the exit file, so processes and their
// statuses outlive a restart of the backend's OS process. Output goes to
// files tailed to the ProcessIO, stdin through a pipe, as in the process
// backend. Users come from the container's /etc/passwd and /etc/group
// (name, uid, name:group or uid:gid; default root), read from the host
// with every symlink resolved inside the rootfs; the working directory
// defaults to the user's home and is created (owned by the user) if
// missing. A process whose env sets no PATH gets /usr/local/sbin:...:/bin
// as root and /usr/local/bin:/usr/bin:/bin as any other user (as in
// guardian). Signal goes to the process's host pid; Stop signals every
// process in the container's cgroup but init (SIGTERM, then SIGKILL after
// the grace time). StreamIn and StreamOut run the keeper binary's tar modes
// (process.TarInFlag, TarOutFlag) inside the container as the given user,
// so paths resolve in the container's mount namespace; a relative path is
// relative to the user's home (as guardian's nstar does).
//
// A new Backend over the same Root reads every state.json (the embedded
// process backend adopts the keepers and their recorded statuses);
// a bundle without a valid state.json, or whose runc container is gone
// (a reboot), is torn down.
//
// Info: ContainerIP is the CNI address, SharedHostNetwork false,
// MappedPorts the host ports, Events "Out of memory" once the kernel
// OOM-killed a process of the container (memory.oom_control's oom_kill on
// cgroup v1, memory.events on v2). Metrics reads memory usage (minus
// inactive file pages, as Garden's TotalUsageTowardLimit) and memory.stat,
// cpuacct (v1) or cpu.stat (v2), pids.current/max, the overlay upper
// layer's disk use, and age. Cgroup v2 is detected by cgroup.controllers at
// Options.CgroupRoot.
//
// Destroy, after CNI DEL, sweeps the nat rules still tagged with the
// container's id (the bridge plugin finds the masquerade rules to delete
// through the container's interface, and under load a DEL was seen to
// leave them). CNI calls are serialized within a backend. Host-wide side
// effects: the bridge plugin (isGateway) sets net.ipv4.ip_forward=1 and
// portmap (snat) sets route_localnet on the bridge; the bridge, the
// shared CNI-HOSTPORT-* chains and the cgroup parent stay until
// RemoveNetwork or the operator removes them.
//
// pids.max counts tasks, the init's few threads included.
//
// Not done: TTY processes (refused), pulling images from registries, image
// cache eviction, NetIn after Create, NetOut rules, disk quotas, a user namespace and
// seccomp (containers run as host root with reduced capabilities).
//
// Tests need root, runc, the CNI plugins and busybox-static; without them
// they fail saying what to install, unless GAVEL_SKIP_RUNC_TESTS=1.
package runc
