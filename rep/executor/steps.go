package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/backend"
)

// step is one node of the action tree. run blocks until the step ends; it
// calls ready (at most once) when the step has started whatever it keeps
// running; a step that succeeds without calling ready counts as ready. A
// cancelled ctx stops the step, which then returns ctx.Err().
type step interface {
	run(ctx context.Context, ready func()) error
}

// asyncStep is a step that can run without holding its caller's goroutine
// while it waits: start returns once the step is under way, and done is
// called exactly once with what run would have returned.
type asyncStep interface {
	step
	start(ctx context.Context, ready func(), done func(error))
}

type stepFunc func(ctx context.Context, ready func()) error

func (f stepFunc) run(ctx context.Context, ready func()) error { return f(ctx, ready) }

// stepDeps is what steps of one container share.
type stepDeps struct {
	e         *Executor
	n         *node
	container backend.Container
	info      backend.ContainerInfo
	env       []string
	// role prefixes the IDs of the processes the steps start ("app",
	// "sidecar", "monitor"), so Recover can tell the app's processes apart.
	role string
}

// Process ID prefixes by role.
const (
	roleApp     = "app"
	roleSidecar = "sidecar"
	roleMonitor = "monitor"
)

// withRole returns a copy of d whose steps start processes of role.
func (d *stepDeps) withRole(role string) *stepDeps {
	c := *d
	c.role = role
	return &c
}

// build turns an action into a step. user marks the app's own actions, whose
// exit statuses are recorded in the run result.
func (d *stepDeps) build(a *modelsv1.Action, source string, user bool) (step, error) {
	switch {
	case a == nil:
		return nil, errors.New("empty action")
	case a.GetRun() != nil:
		return d.runStep(a.GetRun(), source, user), nil
	case a.GetDownload() != nil:
		return d.downloadStep(a.GetDownload(), source), nil
	case a.GetUpload() != nil:
		return d.uploadStep(a.GetUpload(), source), nil
	case a.GetTimeout() != nil:
		t := a.GetTimeout()
		child, err := d.build(t.GetAction(), or(t.GetLogSource(), source), user)
		if err != nil {
			return nil, err
		}
		return d.timeoutStep(child, time.Duration(t.GetTimeoutMs())*time.Millisecond), nil
	case a.GetEmitProgress() != nil:
		p := a.GetEmitProgress()
		src := or(p.GetLogSource(), source)
		child, err := d.build(p.GetAction(), src, user)
		if err != nil {
			return nil, err
		}
		return d.emitProgressStep(child, p, src), nil
	case a.GetTry() != nil:
		t := a.GetTry()
		src := or(t.GetLogSource(), source)
		child, err := d.build(t.GetAction(), src, user)
		if err != nil {
			return nil, err
		}
		return d.tryStep(child, src), nil
	case a.GetParallel() != nil:
		p := a.GetParallel()
		children, err := d.buildAll(p.GetActions(), or(p.GetLogSource(), source), user)
		if err != nil {
			return nil, err
		}
		return parallelStep(children), nil
	case a.GetSerial() != nil:
		s := a.GetSerial()
		children, err := d.buildAll(s.GetActions(), or(s.GetLogSource(), source), user)
		if err != nil {
			return nil, err
		}
		return serialStep(children), nil
	case a.GetCodependent() != nil:
		c := a.GetCodependent()
		children, err := d.buildAll(c.GetActions(), or(c.GetLogSource(), source), user)
		if err != nil {
			return nil, err
		}
		return codependentStep(children), nil
	default:
		return nil, errors.New("unknown action type")
	}
}

func (d *stepDeps) buildAll(actions []*modelsv1.Action, source string, user bool) ([]step, error) {
	out := make([]step, 0, len(actions))
	for i, a := range actions {
		s, err := d.build(a, source, user)
		if err != nil {
			return nil, fmt.Errorf("action %d: %w", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (d *stepDeps) log(source, msg string) {
	d.n.logs.append(source, StreamStdout, msg)
}

func (d *stepDeps) logErr(source, msg string) {
	d.n.logs.append(source, StreamStderr, msg)
}

func (d *stepDeps) runStep(a *modelsv1.RunAction, source string, user bool) step {
	return &runStep{d: d, a: a, source: source, user: user}
}

// runStep runs one process and supervises it. Besides run it implements
// asyncStep: with a backend whose processes report their exit (a
// backend.ExitNotifier, as the sim's do) it supervises without a goroutine.
type runStep struct {
	d      *stepDeps
	a      *modelsv1.RunAction
	source string
	user   bool
}

var _ asyncStep = (*runStep)(nil)

// launched is a started process and its log writers.
type launched struct {
	proc           backend.Process
	src            string
	stdout, stderr *lineWriter
}

func (r *runStep) launch(ctx context.Context) (launched, error) {
	d, a := r.d, r.a
	src := or(a.GetLogSource(), r.source)
	env := d.env // shared when the action adds nothing: no backend changes a spec's Env
	if len(a.GetEnv()) > 0 {
		env = append(make([]string, 0, len(d.env)+len(a.GetEnv())), d.env...)
		for _, v := range a.GetEnv() {
			env = append(env, v.GetName()+"="+v.GetValue())
		}
	}
	spec := backend.ProcessSpec{
		ID:   processID(d.role),
		Path: a.GetPath(), Args: a.GetArgs(), Dir: a.GetDir(), User: a.GetUser(), Env: dedupeEnv(env),
		Limits: backend.ProcessLimits{Nofile: a.GetResourceLimits().GetNofile(), Nproc: a.GetResourceLimits().GetNproc()},
	}
	l := launched{src: src}
	var pio backend.ProcessIO
	if !a.GetSuppressLogOutput() {
		l.stdout = &lineWriter{store: d.n.logs, source: src, stream: StreamStdout}
		l.stderr = &lineWriter{store: d.n.logs, source: src, stream: StreamStderr}
		pio = backend.ProcessIO{Stdout: l.stdout, Stderr: l.stderr}
	}
	proc, err := d.container.Run(ctx, spec, pio)
	if err != nil {
		if ctx.Err() != nil {
			return l, ctx.Err()
		}
		return l, err
	}
	l.proc = proc
	return l, nil
}

func (r *runStep) run(ctx context.Context, ready func()) error {
	l, err := r.launch(ctx)
	if err != nil {
		return err
	}
	ready()
	return r.d.supervise(ctx, l.proc, l.src, l.stdout, l.stderr, r.user)
}

// start launches the process on the calling goroutine and returns once it
// runs; done gets what run would have returned. Supervision holds no
// goroutine when the process is a backend.ExitNotifier, and one otherwise.
func (r *runStep) start(ctx context.Context, ready func(), done func(error)) {
	l, err := r.launch(ctx)
	if err != nil {
		done(err)
		return
	}
	ready()
	if n, ok := l.proc.(backend.ExitNotifier); ok {
		r.d.superviseAsync(ctx, n, l, r.user, done)
		return
	}
	go func() { done(r.d.supervise(ctx, l.proc, l.src, l.stdout, l.stderr, r.user)) }()
}

// processID names a process of role: "<role>-<uuid>".
func processID(role string) string {
	if role == "" {
		role = roleApp
	}
	return role + "-" + uuid.NewString()
}

// exit is a process's exit status, or the error of waiting for it.
type exit struct {
	status int
	err    error
}

// supervise waits for a started process. When ctx ends it stops the process
// gracefully (SIGTERM, then SIGKILL after the grace time), unless the
// executor is detaching: then the process is left running. user records the
// exit status in the run result.
func (d *stepDeps) supervise(ctx context.Context, proc backend.Process, src string, stdout, stderr *lineWriter, user bool) error {
	exited := make(chan exit, 1)
	go func() {
		s, err := proc.Wait()
		exited <- exit{s, err}
	}()
	l := launched{proc: proc, src: src, stdout: stdout, stderr: stderr}
	select {
	case x := <-exited:
		return d.finishProcess(l, x, user, false)
	case <-ctx.Done():
	}
	return d.stopProcess(ctx, l, exited, user)
}

// superviseAsync is supervise without a waiting goroutine: the process's exit
// callback reports to done, and only a cancelled ctx (a stop) takes a
// goroutine, for the graceful stop's timers. Its state is one supervision.
func (d *stepDeps) superviseAsync(ctx context.Context, proc backend.ExitNotifier, l launched, user bool, done func(error)) {
	s := &supervision{d: d, ctx: ctx, l: l, user: user, done: done}
	if a, ok := ctx.(afterFuncer); ok {
		// A container's runContext: no child context per process.
		s.stop = a.AfterFunc(s.stopped)
	} else {
		s.stop = context.AfterFunc(ctx, s.stopped)
	}
	proc.OnExit(s.exitedOnItsOwn)
}

// afterFuncer is a context that runs callbacks itself when it ends, as
// runContext does (the same method package context looks for).
type afterFuncer interface {
	AfterFunc(f func()) (stop func() bool)
}

// supervision is one process supervised by superviseAsync.
type supervision struct {
	d    *stepDeps
	ctx  context.Context
	l    launched
	user bool
	done func(error)
	stop func() bool // unregisters stopped

	mu     sync.Mutex
	exited chan exit // made once a stop and the exit race (see exitChan)
}

// stopped runs once ctx has ended: it stops the process.
func (s *supervision) stopped() {
	s.done(s.d.stopProcess(s.ctx, s.l, s.exitChan(), s.user))
}

// exitedOnItsOwn is the process's exit callback.
func (s *supervision) exitedOnItsOwn(status int, err error) {
	x := exit{status, err}
	if s.stop() {
		// Exited on its own: stopped will never run.
		s.done(s.d.finishProcess(s.l, x, s.user, false))
		return
	}
	s.exitChan() <- x // stopped, under way, takes it
}

// exitChan is the channel by which the exit reaches a stop under way. It is
// made only when a stop happens: a cell holds a supervision per container,
// and most never see one.
func (s *supervision) exitChan() chan exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited == nil {
		s.exited = make(chan exit, 1)
	}
	return s.exited
}

// finishProcess flushes the process's output and turns its exit into the
// step's error; user records the status unless the process was signalled.
func (d *stepDeps) finishProcess(l launched, x exit, user, signalled bool) error {
	if l.stdout != nil {
		l.stdout.Flush()
		l.stderr.Flush()
	}
	if x.err != nil {
		return fmt.Errorf("wait for process: %w", x.err)
	}
	if user && !signalled {
		d.e.recordExit(d.n, x.status)
	}
	if x.status != 0 {
		msg := fmt.Sprintf("Exited with status %d", x.status)
		if x.status == backend.ExitStatusUnknown {
			msg = "Exited with an unknown status (the backend could not record it)"
		}
		if l.src != "" {
			msg = l.src + ": " + msg
		}
		if info, err := d.container.Info(context.Background()); err == nil && contains(info.Events, "Out of memory") {
			msg += " (out of memory)"
		}
		return errors.New(msg)
	}
	return nil
}

// stopProcess runs once ctx has ended: it leaves the process running when the
// executor detaches, else stops it gracefully (SIGTERM, SIGKILL after the
// grace time, then gives up after the exit timeout). It returns ctx.Err().
func (d *stepDeps) stopProcess(ctx context.Context, l launched, exited <-chan exit, user bool) error {
	if d.e.detaching.Load() {
		// Leave the process running for the next executor to adopt.
		return ctx.Err()
	}
	proc := l.proc
	_ = proc.Signal(backend.SignalTerminate)
	grace := d.e.clock.NewTimer(d.e.opts.GraceTime)
	defer grace.Stop()
	select {
	case x := <-exited:
		_ = d.finishProcess(l, x, user, true)
		return ctx.Err()
	case <-grace.C():
	}
	d.logErr("CELL", fmt.Sprintf("Process did not exit within %s of SIGTERM: sending SIGKILL", d.e.opts.GraceTime))
	_ = proc.Signal(backend.SignalKill)
	giveUp := d.e.clock.NewTimer(d.e.opts.ExitTimeout)
	defer giveUp.Stop()
	select {
	case x := <-exited:
		_ = d.finishProcess(l, x, user, true)
	case <-giveUp.C():
		d.logErr("CELL", "Process did not exit after SIGKILL")
	}
	return ctx.Err()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dedupeEnv keeps the last value of each name, at the position of its first
// occurrence. An env without repeated names, the usual case, is returned as
// it is.
func dedupeEnv(env []string) []string {
	if len(env) <= smallEnv && !repeatsName(env) {
		return env
	}
	idx := map[string]int{}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// smallEnv is the size up to which repeatsName's pairwise comparison is
// cheaper than dedupeEnv's map.
const smallEnv = 32

// repeatsName reports whether two entries of env ("NAME=value") share a name.
func repeatsName(env []string) bool {
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		for _, other := range env[i+1:] {
			if name, _, _ := strings.Cut(other, "="); name == k {
				return true
			}
		}
	}
	return false
}

func (d *stepDeps) downloadStep(a *modelsv1.DownloadAction, source string) step {
	return stepFunc(func(ctx context.Context, ready func()) error {
		src := or(a.GetLogSource(), source)
		name := or(a.GetArtifact(), a.GetFrom())
		if err := d.e.download(ctx, d.container, a.GetFrom(), a.GetTo(), a.GetUser(), a.GetCacheKey(), a.GetChecksumAlgorithm(), a.GetChecksumValue()); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("failed to download %s: %w", name, err)
		}
		if a.GetArtifact() != "" {
			d.log(src, "Downloaded "+a.GetArtifact())
		}
		return nil
	})
}

// download fetches url and extracts it into the container.
func (e *Executor) download(ctx context.Context, c backend.Container, url, to, user, cacheKey, algorithm, checksum string) error {
	f, err := e.downloader.fetch(ctx, url, cacheKey, algorithm, checksum)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := streamArchive(ctx, c, f, to, user); err != nil {
		return fmt.Errorf("extract into %s: %w", to, err)
	}
	return nil
}

func (d *stepDeps) uploadStep(a *modelsv1.UploadAction, source string) step {
	return stepFunc(func(ctx context.Context, ready func()) error {
		src := or(a.GetLogSource(), source)
		name := or(a.GetArtifact(), a.GetFrom())
		if a.GetArtifact() != "" {
			d.log(src, "Uploading "+a.GetArtifact()+"...")
		}
		if err := upload(ctx, d.e.opts.HTTPClient, d.e.opts.UploadMethod, d.container, a.GetFrom(), a.GetUser(), a.GetTo()); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("failed to upload %s: %w", name, err)
		}
		if a.GetArtifact() != "" {
			d.log(src, "Uploaded "+a.GetArtifact())
		}
		return nil
	})
}

func (d *stepDeps) timeoutStep(child step, timeout time.Duration) step {
	return stepFunc(func(ctx context.Context, ready func()) error {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var timedOut atomic.Bool
		t := d.e.clock.NewTimer(timeout)
		defer t.Stop()
		go func() {
			select {
			case <-t.C():
				timedOut.Store(true)
				cancel()
			case <-cctx.Done():
			}
		}()
		err := child.run(cctx, ready)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if timedOut.Load() {
			return fmt.Errorf("exceeded %s timeout", timeout)
		}
		return err
	})
}

func (d *stepDeps) tryStep(child step, source string) step {
	return stepFunc(func(ctx context.Context, ready func()) error {
		err := child.run(ctx, ready)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			d.logErr(source, "Ignoring failure: "+err.Error())
		}
		ready()
		return nil
	})
}

func (d *stepDeps) emitProgressStep(child step, p *modelsv1.EmitProgressAction, source string) step {
	return stepFunc(func(ctx context.Context, ready func()) error {
		if p.GetStartMessage() != "" {
			d.log(source, p.GetStartMessage())
		}
		err := child.run(ctx, ready)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if p.GetSuccessMessage() != "" {
				d.log(source, p.GetSuccessMessage())
			}
		case p.GetFailureMessagePrefix() != "":
			d.logErr(source, p.GetFailureMessagePrefix()+": "+err.Error())
		}
		return err
	})
}

// readyGroup returns one ready func per child; ready fires once all have.
func readyGroup(n int, ready func()) []func() {
	if n == 0 {
		ready()
		return nil
	}
	var mu sync.Mutex
	count := 0
	fns := make([]func(), n)
	for i := range fns {
		var once sync.Once
		fns[i] = func() {
			once.Do(func() {
				mu.Lock()
				count++
				all := count == n
				mu.Unlock()
				if all {
					ready()
				}
			})
		}
	}
	return fns
}

func parallelStep(children []step) step {
	return stepFunc(func(ctx context.Context, ready func()) error {
		readies := readyGroup(len(children), ready)
		errs := make([]error, len(children))
		var wg sync.WaitGroup
		for i, c := range children {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = c.run(ctx, readies[i])
				if errs[i] == nil {
					readies[i]()
				}
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return joinErrors(errs)
	})
}

func joinErrors(errs []error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

func serialStep(children []step) step {
	return stepFunc(func(ctx context.Context, ready func()) error {
		for i, c := range children {
			r := func() {}
			if i == len(children)-1 {
				r = ready
			}
			if err := c.run(ctx, r); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		ready()
		return nil
	})
}

// codependentStep runs all children; the first to exit stops the others. A
// clean exit counts as an error too (ReasonCodependentExited).
func codependentStep(children []step) step {
	return stepFunc(func(ctx context.Context, ready func()) error {
		if len(children) == 0 {
			ready()
			return nil
		}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		readies := readyGroup(len(children), ready)
		results := make(chan error, len(children))
		for i, c := range children {
			go func() { results <- c.run(cctx, readies[i]) }()
		}
		first := <-results
		cancel()
		for range len(children) - 1 {
			<-results
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if first == nil {
			return errors.New(ReasonCodependentExited)
		}
		return first
	})
}

// probe runs one declarative check.
func (d *stepDeps) probe(ctx context.Context, check *modelsv1.Check) error {
	spec := backend.ProbeSpec{Timeout: d.e.opts.CheckTimeout}
	switch {
	case check.GetTcpCheck() != nil:
		c := check.GetTcpCheck()
		spec.Port = c.GetPort()
		if c.GetConnectTimeoutMs() > 0 {
			spec.Timeout = time.Duration(c.GetConnectTimeoutMs()) * time.Millisecond
		}
	case check.GetHttpCheck() != nil:
		c := check.GetHttpCheck()
		spec.Port = c.GetPort()
		spec.HTTPPath = or(c.GetPath(), "/")
		if c.GetRequestTimeoutMs() > 0 {
			spec.Timeout = time.Duration(c.GetRequestTimeoutMs()) * time.Millisecond
		}
	default:
		return errors.New("empty check")
	}
	if p, ok := d.container.(backend.Prober); ok {
		return p.Probe(ctx, spec)
	}
	addr := d.address(spec.Port)
	pctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	if spec.HTTPPath == "" {
		conn, err := (&net.Dialer{}).DialContext(pctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("failed to make TCP connection to port %d: %w", spec.Port, err)
		}
		conn.Close()
		return nil
	}
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, "http://"+addr+spec.HTTPPath, nil)
	if err != nil {
		return err
	}
	resp, err := d.e.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("failed to make HTTP request to '%s' on port %d: %w", spec.HTTPPath, spec.Port, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("failed to make HTTP request to '%s' on port %d: status code %d", spec.HTTPPath, spec.Port, resp.StatusCode)
	}
	return nil
}

// address is where the cell reaches a container port.
func (d *stepDeps) address(port uint32) string {
	if d.info.SharedHostNetwork {
		for _, m := range d.info.MappedPorts {
			if m.ContainerPort == port {
				return net.JoinHostPort(d.info.HostIP, strconv.Itoa(int(m.HostPort)))
			}
		}
		return net.JoinHostPort(d.info.HostIP, strconv.Itoa(int(port)))
	}
	return net.JoinHostPort(d.info.ContainerIP, strconv.Itoa(int(port)))
}

// checkAll probes every check; the first error wins.
func (d *stepDeps) checkAll(ctx context.Context, checks []*modelsv1.Check) error {
	for _, c := range checks {
		if err := d.probe(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func checkInterval(checks []*modelsv1.Check, def time.Duration) time.Duration {
	var best time.Duration
	for _, c := range checks {
		ms := c.GetTcpCheck().GetIntervalMs()
		if c.GetHttpCheck() != nil {
			ms = c.GetHttpCheck().GetIntervalMs()
		}
		if d := time.Duration(ms) * time.Millisecond; d > 0 && (best == 0 || d < best) {
			best = d
		}
	}
	if best == 0 {
		return def
	}
	return best
}

// healthStep runs a startup phase (probe every StartupCheckInterval until it
// passes or startTimeout ends), calls ready, then a liveness phase (probe
// every interval until it fails).
func (d *stepDeps) healthStep(startTimeout, interval time.Duration, probe func(ctx context.Context) error) step {
	return stepFunc(func(ctx context.Context, ready func()) error {
		clk := d.e.clock
		deadline := clk.NewTimer(startTimeout)
		defer deadline.Stop()
		for {
			err := probe(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				break
			}
			wait := clk.NewTimer(d.e.opts.StartupCheckInterval)
			select {
			case <-ctx.Done():
				wait.Stop()
				return ctx.Err()
			case <-deadline.C():
				wait.Stop()
				return fmt.Errorf("Instance never healthy after %s: %v", startTimeout, err)
			case <-wait.C():
			}
		}
		ready()
		for {
			wait := clk.NewTimer(interval)
			select {
			case <-ctx.Done():
				wait.Stop()
				return ctx.Err()
			case <-wait.C():
			}
			if err := probe(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("Instance became unhealthy: %v", err)
			}
		}
	})
}
