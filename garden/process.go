package garden

// ProcessSpec is the body of POST /containers/:h/processes.
type ProcessSpec struct {
	// ID names the process; empty lets the server generate one.
	ID string `json:"id,omitempty"`
	// Path is the executable; a bare name is looked up on the PATH.
	Path string `json:"path,omitempty"`
	// Args are argv[1:].
	Args []string `json:"args,omitempty"`
	// Env is appended after the container env ("K=V").
	Env []string `json:"env,omitempty"`
	// Dir is the working directory.
	Dir string `json:"dir,omitempty"`
	// User is a user name or uid:gid; empty means root.
	User string `json:"user,omitempty"`
	// Limits are setrlimit values.
	Limits ResourceLimits `json:"rlimits,omitempty"`
	// OverrideContainerLimits, when non-nil (even {}), gives the process its own limits.
	OverrideContainerLimits *ProcessLimits `json:"limits,omitempty"`
	// TTY, when set, runs the process on a terminal (stderr merged into stdout).
	TTY *TTYSpec `json:"tty,omitempty"`
	// Image, when set, runs the process in its own rootfs (a "pea").
	Image ImageRef `json:"image,omitempty"`
	// BindMounts are only allowed together with Image.
	BindMounts []BindMount `json:"bind_mounts,omitempty"`
}

// ResourceLimits are setrlimit values; nil means unset.
type ResourceLimits struct {
	As         *uint64 `json:"as,omitempty"`
	Core       *uint64 `json:"core,omitempty"`
	CPU        *uint64 `json:"cpu,omitempty"`
	Data       *uint64 `json:"data,omitempty"`
	Fsize      *uint64 `json:"fsize,omitempty"`
	Locks      *uint64 `json:"locks,omitempty"`
	Memlock    *uint64 `json:"memlock,omitempty"`
	Msgqueue   *uint64 `json:"msgqueue,omitempty"`
	Nice       *uint64 `json:"nice,omitempty"`
	Nofile     *uint64 `json:"nofile,omitempty"`
	Nproc      *uint64 `json:"nproc,omitempty"`
	Rss        *uint64 `json:"rss,omitempty"`
	Rtprio     *uint64 `json:"rtprio,omitempty"`
	Sigpending *uint64 `json:"sigpending,omitempty"`
	Stack      *uint64 `json:"stack,omitempty"`
}

// ProcessLimits are a process's own cgroup limits.
type ProcessLimits struct {
	CPU    CPULimits    `json:"cpu_limits,omitempty"`
	Memory MemoryLimits `json:"memory_limits,omitempty"`
}

// TTYSpec asks for a terminal, or resizes one.
type TTYSpec struct {
	WindowSize *WindowSize `json:"window_size,omitempty"`
}

// WindowSize is a terminal's size.
type WindowSize struct {
	Columns uint16 `json:"columns,omitempty"`
	Rows    uint16 `json:"rows,omitempty"`
}

// Signal is a signal a client can send to a process.
type Signal int

const (
	// SignalTerminate is SIGTERM.
	SignalTerminate Signal = iota
	// SignalKill is SIGKILL.
	SignalKill
)

// ProcessStreamSource names a process stream in a ProcessPayload.
type ProcessStreamSource int

const (
	// ProcessStreamSourceInvalid is never sent.
	ProcessStreamSourceInvalid ProcessStreamSource = iota - 1
	// ProcessStreamSourceStdin is the process's stdin (0 on the wire).
	ProcessStreamSourceStdin
	// ProcessStreamSourceStdout is stdout (never sent: output uses its own connection).
	ProcessStreamSourceStdout
	// ProcessStreamSourceStderr is stderr (never sent).
	ProcessStreamSourceStderr
)

// ProcessPayload is one newline-terminated JSON frame of a hijacked Run or
// Attach connection. Every field is optional.
type ProcessPayload struct {
	// ProcessID is always set.
	ProcessID string `json:"process_id,omitempty"`
	// StreamID names the output streams; server to client, first frame only.
	StreamID string `json:"stream_id,omitempty"`
	// Source with Data is a stdin chunk; Source without Data is stdin EOF.
	Source *ProcessStreamSource `json:"source,omitempty"`
	Data   *string              `json:"data,omitempty"`
	// ExitStatus is the final frame (0 is sent too).
	ExitStatus *int `json:"exit_status,omitempty"`
	// Error is the final frame when the exit status could not be had.
	Error *string `json:"error,omitempty"`
	// TTY resizes the terminal.
	TTY *TTYSpec `json:"tty,omitempty"`
	// Signal signals the process.
	Signal *Signal `json:"signal,omitempty"`
}
