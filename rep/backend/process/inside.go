package process

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Modes of the keeper binary that run INSIDE a container, for backends that
// bind-mount the (statically linked) keeper binary into their containers,
// such as rep/backend/runc. KeeperRequested recognises them, so every binary
// that can be a keeper can also be a container's init and its tar helper.
const (
	// InitFlag runs the binary as a container's PID 1 (RunKeeper does not
	// return): it reaps every orphan that is re-parented to it and ignores
	// the signals a PID 1 may receive, until it is killed with SIGKILL.
	InitFlag = "-gavel-init"
	// TarInFlag, followed by a directory, extracts the tar stream on stdin
	// into that directory (created if missing), as StreamIn does. It runs as
	// whatever user starts it, so resolving paths and ownership are those
	// of that user inside the container.
	TarInFlag = "-gavel-tar-in"
	// TarOutFlag, followed by a path, writes a tar of that path (a file or
	// a directory, its entries named after its base name) to stdout.
	TarOutFlag = "-gavel-tar-out"
)

// runInside runs one of the in-container modes and returns the exit code.
func runInside(args []string) int {
	switch args[0] {
	case InitFlag:
		runInit()
		return 0
	case TarInFlag, TarOutFlag:
		if len(args) != 2 {
			fmt.Fprintf(os.Stderr, "%s: usage: %s PATH\n", keeperName, args[0])
			return 2
		}
		var err error
		if args[0] == TarInFlag {
			err = extractTar(context.Background(), os.Stdin, args[1])
		} else {
			err = writeTar(context.Background(), os.Stdout, args[1])
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", keeperName, err)
			return 1
		}
		return 0
	}
	return 2
}

// runInit reaps children forever. A PID 1 gets no signal it has no handler
// for (except from an ancestor namespace's SIGKILL), so catching and
// dropping SIGTERM, SIGINT and SIGHUP keeps it alive through a
// "kill -TERM -1" inside the container.
func runInit() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
		}
		<-sigs
	}
}
