package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"

	"github.com/gavelhq/gavel/internal/workers"
	"github.com/gavelhq/gavel/rep/backend"
)

// Defaults for Options.
const (
	// DefaultReservedExpiration is how long a reservation waits for Run.
	DefaultReservedExpiration = time.Minute
	// DefaultGraceTime is the SIGTERM→SIGKILL wait when a process is stopped.
	DefaultGraceTime = 10 * time.Second
	// DefaultExitTimeout is how long a process may take to die after SIGKILL.
	DefaultExitTimeout = time.Second
	// DefaultStartTimeout bounds the startup check when the request gives none.
	DefaultStartTimeout = 60 * time.Second
	// DefaultStartupCheckInterval is the wait between startup probes.
	DefaultStartupCheckInterval = 2 * time.Second
	// DefaultLivenessCheckInterval is the wait between liveness probes.
	DefaultLivenessCheckInterval = 30 * time.Second
	// DefaultCheckTimeout bounds one probe when the check gives no timeout.
	DefaultCheckTimeout = time.Second
	// DefaultMaxConcurrentDownloads caps simultaneous downloads.
	DefaultMaxConcurrentDownloads = 5
	// DefaultLogRingSize is the number of lines kept per container.
	DefaultLogRingSize = 1000
	// DefaultOwner is the executor:owner property of the backend containers.
	DefaultOwner = "executor"
	// OwnerProperty is the backend container property naming its executor.
	OwnerProperty = "executor:owner"
	// TagPropertyPrefix prefixes tags stored as backend container properties.
	TagPropertyPrefix = "tag:"
)

// Options configure an Executor. Only Backend is required.
type Options struct {
	// Backend runs the containers.
	Backend backend.Backend
	// Clock drives every timer; default the real clock.
	Clock clock.Clock
	// Logger receives the executor's logs; default a no-op logger.
	Logger lager.Logger
	// CellID names the cell in lifecycle log lines.
	CellID string
	// Workers run the start of each container (its creation and first
	// process), shared by the cells of a rep process; default a pool of the
	// executor's own.
	Workers *workers.Pool
	// Owner is stored as the executor:owner property; default "executor".
	Owner string
	// TotalResources is the cell's capacity; zero fields are read from the
	// backend's Capacity (containers = MaxContainers).
	TotalResources Resources
	// ProxyMemoryMB is reserved on top of each LRP's memory; default 0.
	ProxyMemoryMB int
	// ReservedExpiration is how long a reservation waits for Run; default 1 min.
	ReservedExpiration time.Duration
	// GraceTime is the SIGTERM→SIGKILL wait; default 10 s.
	GraceTime time.Duration
	// ExitTimeout is how long to wait for a process after SIGKILL; default 1 s.
	ExitTimeout time.Duration
	// DefaultStartTimeout bounds startup checks of requests without one; default 60 s.
	DefaultStartTimeout time.Duration
	// StartupCheckInterval is the wait between startup probes; default 2 s.
	StartupCheckInterval time.Duration
	// LivenessCheckInterval is the wait between liveness probes of checks
	// without their own interval; default 30 s.
	LivenessCheckInterval time.Duration
	// CheckTimeout bounds a probe whose check sets no timeout; default 1 s.
	CheckTimeout time.Duration
	// MaxConcurrentDownloads caps simultaneous downloads; default 5.
	MaxConcurrentDownloads int
	// DownloadCacheDir holds cached downloads; empty disables the cache.
	DownloadCacheDir string
	// MaxCacheBytes caps the download cache; 0 means unbounded.
	MaxCacheBytes int64
	// UploadMethod is the HTTP method of uploads; default POST.
	UploadMethod string
	// HTTPClient performs downloads, uploads and HTTP checks; default a client
	// without a global timeout (requests are bounded by their contexts).
	HTTPClient *http.Client
	// LogRingSize is the number of log lines kept per container; default 1000.
	LogRingSize int
	// MaxLogLinesPerSecond is the operator's per-container line rate; 0 = unlimited.
	MaxLogLinesPerSecond int
	// ArchiveLogs, when set, receives a container's retained lines when it is
	// deleted (and, through ArchiveAll, when the cell stops), so that its
	// output outlives it. It must not call back into the executor.
	ArchiveLogs func(c Container, lines []LogLine)
}

func (o *Options) setDefaults() error {
	if o.Backend == nil {
		return errors.New("executor: Backend is required")
	}
	if o.Clock == nil {
		o.Clock = clock.NewClock()
	}
	if o.Workers == nil {
		o.Workers = workers.New(0)
	}
	if o.Logger == nil {
		o.Logger = lager.NewLogger("executor")
	}
	if o.Owner == "" {
		o.Owner = DefaultOwner
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&o.ReservedExpiration, DefaultReservedExpiration)
	setDur(&o.GraceTime, DefaultGraceTime)
	setDur(&o.ExitTimeout, DefaultExitTimeout)
	setDur(&o.DefaultStartTimeout, DefaultStartTimeout)
	setDur(&o.StartupCheckInterval, DefaultStartupCheckInterval)
	setDur(&o.LivenessCheckInterval, DefaultLivenessCheckInterval)
	setDur(&o.CheckTimeout, DefaultCheckTimeout)
	if o.MaxConcurrentDownloads <= 0 {
		o.MaxConcurrentDownloads = DefaultMaxConcurrentDownloads
	}
	if o.UploadMethod == "" {
		o.UploadMethod = http.MethodPost
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.LogRingSize <= 0 {
		o.LogRingSize = DefaultLogRingSize
	}
	return nil
}

// Executor runs the containers of one cell. Its methods are safe for
// concurrent use.
type Executor struct {
	opts       Options
	backend    backend.Backend
	clock      clock.Clock
	logger     lager.Logger
	hub        *hub
	downloader *downloader

	ctx       context.Context // cancelled by Close and Detach; parent of an adopted container's work (a Run's runContext is ended by endRuns)
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	detaching atomic.Bool // set by Detach: leave processes running, emit nothing

	mu         sync.Mutex
	total      Resources
	remaining  Resources
	containers map[string]*node
	// propertyKeys interns the property key of each tag name seen (see
	// propertyKeyLocked); at most maxPropertyKeys entries.
	propertyKeys map[string]string
}

// maxPropertyKeys bounds Executor.propertyKeys. The rep uses a dozen tag
// names; a caller with more gets its extra keys built afresh.
const maxPropertyKeys = 64

// propertyKeyLocked is the backend property key of the tag name: one
// string per name for all the cell's containers, not one per container.
func (e *Executor) propertyKeyLocked(name string) string {
	if k, ok := e.propertyKeys[name]; ok {
		return k
	}
	k := TagPropertyPrefix + name
	if len(e.propertyKeys) < maxPropertyKeys {
		if e.propertyKeys == nil {
			e.propertyKeys = make(map[string]string)
		}
		e.propertyKeys[name] = k
	}
	return k
}

// node is the executor's record of one container; e.mu guards the fields
// marked so.
type node struct {
	guid string
	logs *logStore
	done chan struct{} // closed when the container's work has ended

	// guarded by e.mu
	c        Container
	cancel   context.CancelFunc
	stopped  bool
	deleting bool
	bc       backend.Container
}

// recordExit keeps the first non-zero exit status of the app's processes.
func (e *Executor) recordExit(n *node, status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n.c.RunResult.ExitStatus == 0 {
		n.c.RunResult.ExitStatus = status
	}
}

// New creates an executor. It reads the backend's capacity when
// opts.TotalResources is incomplete and starts the reservation pruner; Close
// stops it.
func New(ctx context.Context, opts Options) (*Executor, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	total := opts.TotalResources
	if total.MemoryMB == 0 || total.DiskMB == 0 || total.Containers == 0 {
		capacity, err := opts.Backend.Capacity(ctx)
		if err != nil {
			return nil, fmt.Errorf("executor: read backend capacity: %w", err)
		}
		if total.MemoryMB == 0 {
			total.MemoryMB = int(capacity.MemoryInBytes >> 20)
		}
		if total.DiskMB == 0 {
			total.DiskMB = int(capacity.DiskInBytes >> 20)
		}
		if total.Containers == 0 {
			total.Containers = int(capacity.MaxContainers)
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	e := &Executor{
		opts:       opts,
		backend:    opts.Backend,
		clock:      opts.Clock,
		logger:     opts.Logger.Session("executor"),
		hub:        newHub(),
		downloader: newDownloader(opts.HTTPClient, opts.DownloadCacheDir, opts.MaxCacheBytes, opts.MaxConcurrentDownloads),
		ctx:        runCtx,
		cancel:     cancel,
		total:      total,
		remaining:  total,
		containers: map[string]*node{},
	}
	e.wg.Add(1)
	go e.pruneReservations()
	return e, nil
}

// Close stops the reservation pruner and stops every container still being
// driven (their processes get SIGTERM, then SIGKILL after the grace time; the
// containers complete as stopped). It waits for the executor's goroutines to
// end. Backend containers are not destroyed. To end the executor and leave
// the processes running (a restart of the cell), use Detach.
func (e *Executor) Close() {
	e.cancel()
	e.endRuns()
	e.wg.Wait()
}

// Subscribe returns a subscription to every event emitted from now on.
func (e *Executor) Subscribe() *Subscription { return e.hub.subscribe() }

// TotalResources returns the cell's capacity.
func (e *Executor) TotalResources() Resources {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total
}

// RemainingResources returns the capacity not reserved by any container.
func (e *Executor) RemainingResources() Resources {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.remaining
}

// Healthy pings the backend.
func (e *Executor) Healthy(ctx context.Context) error {
	if err := e.backend.Ping(ctx); err != nil {
		return fmt.Errorf("executor: backend unhealthy: %w", err)
	}
	return nil
}

// Allocate reserves resources for each request, in order; each reservation
// is all-or-nothing (memory plus the proxy allowance for LRPs, disk and one
// container). It returns the requests that could not be reserved, with
// ErrInsufficientResources or ErrGuidNotAvailable. A ContainerReserved event
// is emitted per reservation. A reserved container keeps its request's Tags
// map (see AllocationRequest.Tags).
func (e *Executor) Allocate(reqs []AllocationRequest) []AllocationFailure {
	var failures []AllocationFailure
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	for _, r := range reqs {
		if r.Guid == "" || e.containers[r.Guid] != nil {
			failures = append(failures, AllocationFailure{r, fmt.Errorf("%q: %w", r.Guid, ErrGuidNotAvailable)})
			continue
		}
		mem := r.Resource.MemoryMB
		if r.LRP {
			mem += e.opts.ProxyMemoryMB
		}
		var short []string
		if mem > e.remaining.MemoryMB {
			short = append(short, "memory")
		}
		if r.Resource.DiskMB > e.remaining.DiskMB {
			short = append(short, "disk")
		}
		if e.remaining.Containers < 1 {
			short = append(short, "containers")
		}
		if len(short) > 0 {
			failures = append(failures, AllocationFailure{r, fmt.Errorf("%w: %v", ErrInsufficientResources, short)})
			continue
		}
		e.remaining.MemoryMB -= mem
		e.remaining.DiskMB -= r.Resource.DiskMB
		e.remaining.Containers--
		n := &node{
			guid: r.Guid,
			logs: newLogStore(e.clock, r.Guid, e.opts.LogRingSize, e.opts.MaxLogLinesPerSecond),
			done: make(chan struct{}),
			c: Container{
				Guid: r.Guid, State: StateReserved, Resource: r.Resource, AllocatedMemoryMB: mem,
				LRP: r.LRP, Tags: r.Tags, AllocatedAt: now,
			},
		}
		e.containers[r.Guid] = n
		e.hub.emit(ContainerReserved{n.c})
	}
	return failures
}

// Get returns a snapshot of one container.
func (e *Executor) Get(guid string) (Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, ok := e.containers[guid]
	if !ok {
		return Container{}, fmt.Errorf("%q: %w", guid, ErrContainerNotFound)
	}
	return n.c, nil
}

// List returns snapshots of every container, sorted by guid.
func (e *Executor) List() []Container {
	e.mu.Lock()
	out := make([]Container, 0, len(e.containers))
	for _, n := range e.containers {
		out = append(out, n.c)
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Guid < out[j].Guid })
	return out
}

// Visit calls fn with every container, in no particular order, without
// copying them or sorting: fn runs under the executor's lock, so it must be
// quick, must not call the executor and must not change the container. It
// is for read-only summaries of a whole cell (State is asked of every cell
// before each auction).
func (e *Executor) Visit(fn func(c *Container)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.containers {
		fn(&n.c)
	}
}

// Run moves a reserved container to initializing and builds and runs it in
// the background; progress is reported through events. It returns
// ErrContainerNotFound, or ErrInvalidTransition unless the container is reserved.
func (e *Executor) Run(ctx context.Context, guid string, req RunRequest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, ok := e.containers[guid]
	if !ok {
		return fmt.Errorf("run %q: %w", guid, ErrContainerNotFound)
	}
	if n.c.State != StateReserved {
		return fmt.Errorf("run %q (%s): %w", guid, n.c.State, ErrInvalidTransition)
	}
	n.c.State = StateInitializing
	run := &runContext{}
	if e.ctx.Err() != nil {
		// Closed or detached: endRuns has looked at the containers already.
		run.end()
	}
	n.cancel = run.end
	n.logs.configure(req.LogConfig, req.LogRateLimitBytesPerSecond)
	e.wg.Add(1)
	// On a reused worker: the start's deep calls (backend, encoding) grew
	// its stack once already; a fresh goroutine grows it by copying, for
	// every container.
	e.opts.Workers.Go(func() {
		e.drive(run, n, req, func() {
			run.end()
			e.wg.Done()
		})
	})
	return nil
}

// endRuns ends the work of every container. Close and Detach call it after
// cancelling e.ctx: a Run's context is not a child of e.ctx (see
// runContext), and Run, under e.mu, ends the context of a container it
// starts once e.ctx is cancelled.
func (e *Executor) endRuns() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.containers {
		if n.cancel != nil {
			n.cancel()
		}
	}
}

// Stop stops a container: a reserved one completes at once; a running one
// gets SIGTERM, then SIGKILL after the grace time, and completes with
// RunResult.Stopped. It does not wait; ContainerCompleted follows.
func (e *Executor) Stop(guid string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, ok := e.containers[guid]
	if !ok {
		return fmt.Errorf("stop %q: %w", guid, ErrContainerNotFound)
	}
	e.stopLocked(n)
	return nil
}

func (e *Executor) stopLocked(n *node) {
	if n.stopped || n.c.State == StateCompleted {
		return
	}
	n.stopped = true
	if n.c.State == StateReserved {
		e.completeLocked(n, RunResult{Stopped: true})
		return
	}
	n.logs.append("CELL", StreamStdout, fmt.Sprintf("Cell %s stopping instance %s", e.opts.CellID, n.guid))
	n.cancel()
}

// completeLocked moves n to completed and emits ContainerCompleted.
func (e *Executor) completeLocked(n *node, r RunResult) {
	if n.c.State == StateCompleted {
		return
	}
	if len(r.FailureReason) > MaxFailureReasonLength {
		r.FailureReason = r.FailureReason[:MaxFailureReasonLength]
	}
	r.ExitStatus = n.c.RunResult.ExitStatus
	n.c.RunResult = r
	n.c.State = StateCompleted
	n.c.Routable = false
	if n.cancel == nil {
		close(n.done)
	}
	e.hub.emit(ContainerCompleted{n.c})
}

// Delete stops the container if needed, waits for its work to end (at most the
// grace time plus the exit timeout for a running one, or until ctx ends),
// destroys the backend container and returns its resources.
func (e *Executor) Delete(ctx context.Context, guid string) error {
	e.mu.Lock()
	n, ok := e.containers[guid]
	if !ok {
		e.mu.Unlock()
		return fmt.Errorf("delete %q: %w", guid, ErrContainerNotFound)
	}
	n.deleting = true
	e.stopLocked(n)
	e.mu.Unlock()

	select {
	case <-n.done:
	case <-ctx.Done():
		return fmt.Errorf("delete %q: %w", guid, ctx.Err())
	}
	e.mu.Lock()
	bc := n.bc
	e.mu.Unlock()
	if bc != nil {
		n.logs.append("CELL", StreamStdout, fmt.Sprintf("Cell %s destroying container for instance %s", e.opts.CellID, guid))
		if err := e.backend.Destroy(ctx, guid); err != nil && !errors.Is(err, backend.ErrContainerNotFound) {
			return fmt.Errorf("delete %q: %w", guid, err)
		}
	}
	e.mu.Lock()
	if e.containers[guid] == n {
		delete(e.containers, guid)
		e.releaseLocked(n)
	}
	c := n.c
	e.mu.Unlock()
	if e.opts.ArchiveLogs != nil && c.State != StateReserved {
		e.opts.ArchiveLogs(c, n.logs.snapshot())
	}
	n.logs.close()
	return nil
}

// ArchiveAll hands every container's retained lines to Options.ArchiveLogs
// (when the cell stops: a destroyed or detached container's lines would be
// lost with the process).
func (e *Executor) ArchiveAll() {
	if e.opts.ArchiveLogs == nil {
		return
	}
	e.mu.Lock()
	type item struct {
		c Container
		n *node
	}
	var items []item
	for _, n := range e.containers {
		if n.c.State != StateReserved {
			items = append(items, item{n.c, n})
		}
	}
	e.mu.Unlock()
	for _, it := range items {
		if lines := it.n.logs.snapshot(); len(lines) > 0 {
			e.opts.ArchiveLogs(it.c, lines)
		}
	}
}

func (e *Executor) releaseLocked(n *node) {
	e.remaining.MemoryMB += n.c.AllocatedMemoryMB
	e.remaining.DiskMB += n.c.Resource.DiskMB
	e.remaining.Containers++
}

// pruneReservations expires reservations never run, every half expiration.
func (e *Executor) pruneReservations() {
	defer e.wg.Done()
	ticker := e.clock.NewTicker(e.opts.ReservedExpiration / 2)
	defer ticker.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-ticker.C():
		}
		now := e.clock.Now()
		e.mu.Lock()
		for guid, n := range e.containers {
			if n.c.State == StateReserved && now.Sub(n.c.AllocatedAt) >= e.opts.ReservedExpiration {
				delete(e.containers, guid)
				e.releaseLocked(n)
				n.c.State = StateCompleted
				n.c.RunResult = RunResult{Failed: true, FailureReason: ReasonExpired}
				close(n.done)
				n.logs.close()
				e.logger.Info("reservation-expired", lager.Data{"guid": guid})
				e.hub.emit(ContainerReservationExpired{n.c})
			}
		}
		e.mu.Unlock()
	}
}

// Logs returns the lines retained for a container, oldest first.
func (e *Executor) Logs(guid string) ([]LogLine, error) {
	e.mu.Lock()
	n, ok := e.containers[guid]
	e.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("logs %q: %w", guid, ErrContainerNotFound)
	}
	return n.logs.snapshot(), nil
}

// SubscribeLogs returns the retained lines and a channel of the lines that
// follow (a subscriber slower than buffer lines loses lines). The channel is
// closed when the container is deleted or cancel is called.
func (e *Executor) SubscribeLogs(guid string, buffer int) (backlog []LogLine, lines <-chan LogLine, cancel func(), err error) {
	e.mu.Lock()
	n, ok := e.containers[guid]
	e.mu.Unlock()
	if !ok {
		return nil, nil, nil, fmt.Errorf("subscribe to logs of %q: %w", guid, ErrContainerNotFound)
	}
	backlog, ch := n.logs.subscribe(buffer)
	return backlog, ch, func() { n.logs.unsubscribe(ch) }, nil
}

// readResult reads the head of a task's result file.
func readResult(ctx context.Context, c backend.Container, path string) (string, error) {
	r, err := readFirstFile(ctx, c, path, "")
	if err != nil {
		return "", err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, MaxResultBytes))
	if err != nil {
		return "", err
	}
	return string(data), nil
}

// ErrMetricsUnavailable is returned by Metrics for a container that cannot
// be measured now: not created yet, or a backend without metrics.
var ErrMetricsUnavailable = errors.New("metrics unavailable")

// Metrics reads a container's resource usage from its backend container.
// It returns ErrContainerNotFound for an unknown guid, and
// ErrMetricsUnavailable (wrapped with the reason) when the container has no
// backend container yet or its backend cannot measure it.
func (e *Executor) Metrics(ctx context.Context, guid string) (backend.ContainerMetrics, error) {
	e.mu.Lock()
	n, ok := e.containers[guid]
	var bc backend.Container
	if ok {
		bc = n.bc
	}
	e.mu.Unlock()
	if !ok {
		return backend.ContainerMetrics{}, fmt.Errorf("%q: %w", guid, ErrContainerNotFound)
	}
	if bc == nil {
		return backend.ContainerMetrics{}, fmt.Errorf("%w: container %q is not created yet", ErrMetricsUnavailable, guid)
	}
	mr, ok := bc.(backend.MetricsReporter)
	if !ok {
		return backend.ContainerMetrics{}, fmt.Errorf("%w: the cell's container backend does not report usage", ErrMetricsUnavailable)
	}
	m, err := mr.Metrics(ctx)
	if err != nil {
		return backend.ContainerMetrics{}, fmt.Errorf("%w: %v", ErrMetricsUnavailable, err)
	}
	return m, nil
}
