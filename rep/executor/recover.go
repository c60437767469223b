package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"code.cloudfoundry.org/lager/v3"
	"google.golang.org/protobuf/encoding/protojson"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/backend"
)

// Backend container properties that let Recover rebuild a container's
// record after a restart of the executor.
const (
	// ResourceProperty holds the container's Resource and allocation as JSON.
	ResourceProperty = "executor:resource"
	// RunProperty holds what supervision needs of the run request as JSON.
	RunProperty = "executor:run"
)

// ReasonLostWhileDetached is the failure reason of an adopted container whose
// app processes were gone, with no exit status recorded, when Recover found
// it.
const ReasonLostWhileDetached = "container's processes exited while the cell was not supervising them"

// recoveredResource is the JSON of ResourceProperty.
type recoveredResource struct {
	MemoryMB          int       `json:"memory_mb"`
	DiskMB            int       `json:"disk_mb"`
	MaxPids           int       `json:"max_pids,omitempty"`
	AllocatedMemoryMB int       `json:"allocated_memory_mb"`
	LRP               bool      `json:"lrp,omitempty"`
	AllocatedAt       time.Time `json:"allocated_at"`
}

// recoveredRun is the JSON of RunProperty.
type recoveredRun struct {
	LogConfig       LogConfig       `json:"log_config"`
	LogRateLimit    int64           `json:"log_rate_limit,omitempty"`
	Ports           []uint32        `json:"ports,omitempty"`
	ResultFile      string          `json:"result_file,omitempty"`
	CheckDefinition json.RawMessage `json:"check_definition,omitempty"`
}

// recordRecovery stores what Recover needs in the container's properties.
// The two records are encoded by hand rather than by encoding/json's
// reflection: every container start writes them (see encodeRecovery).
func recordRecovery(props backend.Properties, c Container, req RunRequest) error {
	res := recoveredResource{
		MemoryMB: c.Resource.MemoryMB, DiskMB: c.Resource.DiskMB, MaxPids: c.Resource.MaxPids,
		AllocatedMemoryMB: c.AllocatedMemoryMB, LRP: c.LRP, AllocatedAt: c.AllocatedAt,
	}
	run := recoveredRun{LogConfig: req.LogConfig, LogRateLimit: req.LogRateLimitBytesPerSecond, Ports: req.Ports, ResultFile: req.ResultFile}
	if req.CheckDefinition != nil {
		var err error
		if run.CheckDefinition, err = protojson.Marshal(req.CheckDefinition); err != nil {
			return fmt.Errorf("encode check definition: %w", err)
		}
	}
	props[ResourceProperty], props[RunProperty] = encodeRecovery(res, run)
	return nil
}

// encodeRecovery is the JSON of res and run, as encoding/json writes them
// (same names, same omitted empty fields; strings escaped as JSON needs, not
// HTML-escaped); TestRecoveryEncodingMatchesEncodingJSON holds it to that.
func encodeRecovery(res recoveredResource, run recoveredRun) (resource, runInfo string) {
	b := make([]byte, 0, 256)
	b = append(b, `{"memory_mb":`...)
	b = strconv.AppendInt(b, int64(res.MemoryMB), 10)
	b = append(b, `,"disk_mb":`...)
	b = strconv.AppendInt(b, int64(res.DiskMB), 10)
	if res.MaxPids != 0 {
		b = append(b, `,"max_pids":`...)
		b = strconv.AppendInt(b, int64(res.MaxPids), 10)
	}
	b = append(b, `,"allocated_memory_mb":`...)
	b = strconv.AppendInt(b, int64(res.AllocatedMemoryMB), 10)
	if res.LRP {
		b = append(b, `,"lrp":true`...)
	}
	b = append(b, `,"allocated_at":"`...)
	b = res.AllocatedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	split := len(b)

	b = append(b, `{"log_config":{"Guid":`...)
	b = appendJSONString(b, run.LogConfig.Guid)
	b = append(b, `,"Index":`...)
	b = strconv.AppendInt(b, int64(run.LogConfig.Index), 10)
	b = append(b, `,"SourceName":`...)
	b = appendJSONString(b, run.LogConfig.SourceName)
	b = append(b, '}')
	if run.LogRateLimit != 0 {
		b = append(b, `,"log_rate_limit":`...)
		b = strconv.AppendInt(b, run.LogRateLimit, 10)
	}
	if len(run.Ports) > 0 {
		b = append(b, `,"ports":[`...)
		for i, p := range run.Ports {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(p), 10)
		}
		b = append(b, ']')
	}
	if run.ResultFile != "" {
		b = append(b, `,"result_file":`...)
		b = appendJSONString(b, run.ResultFile)
	}
	if len(run.CheckDefinition) > 0 {
		b = append(b, `,"check_definition":`...)
		b = append(b, run.CheckDefinition...)
	}
	b = append(b, '}')
	all := string(b)
	return all[:split], all[split:]
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, as
// encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// Detach ends the executor without stopping its containers: the pruner and
// every supervision goroutine end, processes are left running and no
// ContainerCompleted is emitted. A later executor over the same backend
// adopts the containers with Recover. Use Detach for a restart of the cell
// and Close to stop its work.
func (e *Executor) Detach() {
	e.detaching.Store(true)
	e.cancel()
	e.endRuns()
	e.wg.Wait()
}

// Recover adopts the backend containers owned by Options.Owner that this
// executor does not know, typically after a restart of the cell. Each
// adopted container takes its resources again. One the backend lists app
// processes of (still running, or exited with a status the backend recorded
// and has not delivered, as the process backend's keepers do) is running
// (routable unless it has readiness checks, which are probed again), and its
// processes are supervised again: the first to exit completes it with its
// real exit status, as if the cell had never restarted: a task that exits 0
// succeeds with its result file read as usual, one that exits non-zero fails
// with "Exited with status N", and an LRP's exit is a crash with that
// status. Liveness checks resume, and Stop stops it gracefully. Only when the
// backend could not record the status (the process backend's keeper was
// killed) is it ExitStatusUnknown, a failure. One whose processes are gone
// with no recorded status is completed at once with ReasonLostWhileDetached.
// No events are emitted for containers completed by Recover itself: the
// caller reconciles them (the rep's bulk sync runs at start); the completion
// of a supervised one is emitted as usual. Recover returns the adopted
// guids; containers it cannot read are skipped and reported in the error,
// after the others were adopted.
func (e *Executor) Recover(ctx context.Context) ([]string, error) {
	containers, err := e.backend.Containers(ctx, backend.Properties{OwnerProperty: e.opts.Owner})
	if err != nil {
		return nil, fmt.Errorf("recover: list backend containers: %w", err)
	}
	var adopted []string
	var errs []error
	for _, bc := range containers {
		guid := bc.Handle()
		e.mu.Lock()
		_, known := e.containers[guid]
		e.mu.Unlock()
		if known {
			continue
		}
		if err := e.adopt(ctx, bc); err != nil {
			errs = append(errs, fmt.Errorf("recover %q: %w", guid, err))
			continue
		}
		adopted = append(adopted, guid)
	}
	return adopted, errors.Join(errs...)
}

func (e *Executor) adopt(ctx context.Context, bc backend.Container) error {
	guid := bc.Handle()
	info, err := bc.Info(ctx)
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	var res recoveredResource
	if err := json.Unmarshal([]byte(info.Properties[ResourceProperty]), &res); err != nil {
		return fmt.Errorf("decode %s: %w", ResourceProperty, err)
	}
	var run recoveredRun
	if err := json.Unmarshal([]byte(info.Properties[RunProperty]), &run); err != nil {
		return fmt.Errorf("decode %s: %w", RunProperty, err)
	}
	var checks *modelsv1.CheckDefinition
	if len(run.CheckDefinition) > 0 {
		checks = &modelsv1.CheckDefinition{}
		if err := protojson.Unmarshal(run.CheckDefinition, checks); err != nil {
			return fmt.Errorf("decode check definition: %w", err)
		}
	}
	tags := Tags{}
	for k, v := range info.Properties {
		if name, ok := strings.CutPrefix(k, TagPropertyPrefix); ok {
			tags[name] = v
		}
	}
	var appProcs []string
	for _, id := range info.ProcessIDs {
		if !strings.HasPrefix(id, roleMonitor+"-") {
			appProcs = append(appProcs, id)
		}
	}
	n := &node{
		guid: guid,
		logs: newLogStore(e.clock, guid, e.opts.LogRingSize, e.opts.MaxLogLinesPerSecond),
		done: make(chan struct{}),
		bc:   bc,
		c: Container{
			Guid: guid, State: StateRunning, LRP: res.LRP, Tags: tags, AllocatedAt: res.AllocatedAt,
			Resource:            Resource{MemoryMB: res.MemoryMB, DiskMB: res.DiskMB, MaxPids: res.MaxPids},
			AllocatedMemoryMB:   res.AllocatedMemoryMB,
			NetInfo:             netInfoOf(info, run.Ports),
			MemoryLimitEnforced: info.MemoryLimitEnforced,
		},
	}
	n.logs.configure(run.LogConfig, run.LogRateLimit)
	alive := info.State == backend.StateActive && len(appProcs) > 0
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, dup := e.containers[guid]; dup {
		return fmt.Errorf("%w: adopted concurrently", ErrGuidNotAvailable)
	}
	e.containers[guid] = n
	e.remaining.MemoryMB -= n.c.AllocatedMemoryMB
	e.remaining.DiskMB -= n.c.Resource.DiskMB
	e.remaining.Containers--
	if !alive {
		n.c.State = StateCompleted
		n.c.RunResult = RunResult{Failed: true, FailureReason: ReasonLostWhileDetached}
		close(n.done)
		e.logger.Info("adopted-completed-container", lager.Data{"guid": guid})
		return nil
	}
	readiness := checks.GetReadinessChecks()
	n.c.Routable = len(readiness) == 0
	runCtx, cancel := context.WithCancel(e.ctx)
	n.cancel = cancel
	n.logs.append("CELL", StreamStdout, fmt.Sprintf("Cell %s adopted the running container of instance %s", e.opts.CellID, guid))
	deps := &stepDeps{e: e, n: n, container: bc, info: info, role: roleApp}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer cancel()
		defer close(n.done)
		e.finish(n, e.superviseAdopted(runCtx, n, deps, appProcs, checks, run))
	}()
	if len(readiness) > 0 {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.readinessLoop(runCtx, n, deps, readiness)
		}()
	}
	e.logger.Info("adopted-running-container", lager.Data{"guid": guid, "processes": appProcs})
	return nil
}

// superviseAdopted watches the app processes of an adopted container together
// with its liveness checks, codependently, as the original action tree did.
func (e *Executor) superviseAdopted(ctx context.Context, n *node, d *stepDeps, procs []string, checks *modelsv1.CheckDefinition, run recoveredRun) RunResult {
	source := or(run.LogConfig.SourceName, "APP")
	var long []step
	for _, id := range procs {
		stdout := &lineWriter{store: n.logs, source: source, stream: StreamStdout}
		stderr := &lineWriter{store: n.logs, source: source, stream: StreamStderr}
		proc, err := d.container.Attach(ctx, id, backend.ProcessIO{Stdout: stdout, Stderr: stderr})
		if err != nil {
			if errors.Is(err, backend.ErrProcessNotFound) {
				continue // gone between Info and Attach (no status kept); the others decide
			}
			return failed("failed to attach to adopted process "+id+": "+err.Error(), false)
		}
		long = append(long, stepFunc(func(ctx context.Context, ready func()) error {
			ready()
			return d.supervise(ctx, proc, source, stdout, stderr, strings.HasPrefix(id, roleApp+"-"))
		}))
	}
	if len(long) == 0 {
		return failed(ReasonLostWhileDetached, false)
	}
	if cs := checks.GetChecks(); len(cs) > 0 {
		interval := checkInterval(cs, e.opts.LivenessCheckInterval)
		long = append(long, d.healthStep(e.opts.DefaultStartTimeout, interval, func(ctx context.Context) error {
			return d.checkAll(ctx, cs)
		}))
	}
	var tree step = long[0]
	if len(long) > 1 {
		tree = codependentStep(long)
	}
	err := tree.run(ctx, func() {})
	switch {
	case ctx.Err() != nil:
		return RunResult{Stopped: true}
	case err != nil:
		return failed(err.Error(), false)
	}
	if run.ResultFile != "" {
		res, err := readResult(ctx, d.container, run.ResultFile)
		if err != nil {
			return failed(ReasonFailedToFetchResult, false)
		}
		return RunResult{Result: res}
	}
	return RunResult{}
}
