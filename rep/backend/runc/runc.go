package runc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// runtime runs the runc binary with its state under one root directory.
type runtime struct {
	path string
	root string // --root: runc's state for this backend only
}

// globalArgs are the arguments every runc command starts with.
func (r runtime) globalArgs(logFile string) []string {
	args := []string{"--root", r.root}
	if logFile != "" {
		args = append(args, "--log", logFile, "--log-format", "json")
	}
	return args
}

// command runs runc with args and returns its combined output in the error.
func (r runtime) command(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, r.path, append(r.globalArgs(""), args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("runc %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// run starts the container detached (`runc run -d`). The init's stdio and
// runc's own go to logFile, never to a pipe (a pipe the detached init
// holds would never reach EOF).
func (r runtime) run(ctx context.Context, id, bundle, logFile string) error {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("runc run: %w", err)
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, r.path, append(r.globalArgs(logFile), "run", "--detach", "--bundle", bundle, id)...)
	cmd.Stdin = nil
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runc run %s: %w: %s", id, err, lastRuncError(logFile))
	}
	return nil
}

// containerState is the part of `runc state` the backend reads.
type containerState struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

// errNoContainer is returned by state for a container runc does not know.
var errNoContainer = errors.New("runc does not know the container")

// state reads `runc state id`.
func (r runtime) state(ctx context.Context, id string) (containerState, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.path, append(r.globalArgs(""), "state", id)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "does not exist") {
			return containerState{}, errNoContainer
		}
		return containerState{}, fmt.Errorf("runc state %s: %w: %s", id, err, strings.TrimSpace(stderr.String()))
	}
	var st containerState
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		return containerState{}, fmt.Errorf("runc state %s: %w", id, err)
	}
	return st, nil
}

// delete kills every process of the container and removes it (cgroups
// included). A container runc does not know is not an error.
func (r runtime) delete(ctx context.Context, id string) error {
	err := r.command(ctx, "delete", "--force", id)
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		return nil
	}
	return err
}

// execNotFound reports whether a `runc exec` error message says that the
// process's executable does not exist (an absolute path that is missing, or
// a bare name not found on PATH), and returns the cause runc gives, without
// the `exec: "NAME": ` part that names the executable.
func execNotFound(msg string) (string, bool) {
	const prefix = `exec: "`
	i := strings.Index(msg, prefix)
	if i < 0 {
		return "", false
	}
	rest := msg[i+len(prefix):]
	j := strings.Index(rest, `": `)
	if j < 0 {
		return "", false
	}
	cause := rest[j+len(`": `):]
	if !strings.Contains(cause, "executable file not found") && !strings.Contains(cause, "no such file or directory") {
		return "", false
	}
	return cause, true
}

// lastRuncError returns the message of the last error runc logged to a
// JSON log file, or the file's last line.
func lastRuncError(logFile string) string {
	data, err := os.ReadFile(logFile)
	if err != nil {
		return ""
	}
	var last, lastLine string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		lastLine = line
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && (entry.Level == "error" || entry.Level == "fatal") {
			last = entry.Msg
		}
	}
	if last != "" {
		return last
	}
	return lastLine
}
