package executor

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/rep/backend"
)

// drive runs one container from initializing to completed.
// drive runs n's container; release is called once its work has ended. It
// returns early when the container's process is supervised without a
// goroutine (see asyncStep); the process's exit then ends the work.
func (e *Executor) drive(ctx context.Context, n *node, req RunRequest, release func()) {
	end := func(result RunResult) {
		e.finish(n, result)
		close(n.done)
		release()
	}
	if result, async := e.runContainer(ctx, n, req, end); !async {
		end(result)
	}
}

// finish completes n with result, unless the executor is detaching (the
// container is left as it is for the next executor to adopt).
func (e *Executor) finish(n *node, result RunResult) {
	if e.detaching.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if n.stopped {
		result = RunResult{Stopped: true}
	}
	e.completeLocked(n, result)
}

func failed(reason string, retryable bool) RunResult {
	return RunResult{Failed: true, FailureReason: reason, Retryable: retryable}
}

func (e *Executor) runContainer(ctx context.Context, n *node, req RunRequest, end func(RunResult)) (result RunResult, async bool) {
	cell := e.opts.CellID
	n.logs.append("CELL", StreamStdout, "Cell "+cell+" creating container for instance "+n.guid)
	e.mu.Lock()
	spec := backend.ContainerSpec{
		Handle:     n.guid,
		Image:      req.Image,
		Privileged: req.Privileged,
		Properties: make(backend.Properties, len(n.c.Tags)+3), // the tags, the owner and recordRecovery's two
		Limits: backend.Limits{
			MemoryInBytes: uint64(n.c.Resource.MemoryMB) << 20,
			DiskInBytes:   uint64(n.c.Resource.DiskMB) << 20,
			MaxPids:       uint64(n.c.Resource.MaxPids),
		},
	}
	spec.Properties[OwnerProperty] = e.opts.Owner
	for k, v := range n.c.Tags {
		spec.Properties[e.propertyKeyLocked(k)] = v
	}
	if err := recordRecovery(spec.Properties, n.c, req); err != nil {
		e.mu.Unlock()
		return failed("invalid run request: "+err.Error(), false), false
	}
	e.mu.Unlock()
	for _, p := range req.Ports {
		spec.NetIn = append(spec.NetIn, backend.NetIn{ContainerPort: p})
	}
	bc, err := e.backend.Create(ctx, spec)
	if err != nil {
		if ctx.Err() != nil {
			return RunResult{Stopped: true}, false
		}
		n.logs.append("CELL", StreamStderr, fmt.Sprintf("Cell %s failed to create container for instance %s: %v", cell, n.guid, err))
		return failed("failed to create container: "+err.Error(), true), false
	}
	e.mu.Lock()
	n.bc = bc
	e.mu.Unlock()
	info, err := bc.Info(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return RunResult{Stopped: true}, false
		}
		return failed("failed to create container: "+err.Error(), true), false
	}
	netInfo := netInfoOf(info, req.Ports)
	e.mu.Lock()
	if n.c.State == StateInitializing {
		n.c.State = StateCreated
	}
	n.c.NetInfo = netInfo
	n.c.MemoryLimitEnforced = info.MemoryLimitEnforced
	e.mu.Unlock()
	n.logs.append("CELL", StreamStdout, "Cell "+cell+" successfully created container for instance "+n.guid)

	deps := &stepDeps{e: e, n: n, container: bc, info: info, env: instanceEnv(req, info, netInfo), role: roleApp}
	for _, f := range req.VolumeMountedFiles {
		if err := writeFile(ctx, bc, f); err != nil {
			if ctx.Err() != nil {
				return RunResult{Stopped: true}, false
			}
			return failed("failed to create volume mounted files: "+err.Error(), true), false
		}
	}
	for _, d := range req.CachedDependencies {
		if err := e.download(ctx, bc, d.GetFrom(), d.GetTo(), "", d.GetCacheKey(), d.GetChecksumAlgorithm(), d.GetChecksumValue()); err != nil {
			if ctx.Err() != nil {
				return RunResult{Stopped: true}, false
			}
			return failed(fmt.Sprintf("failed to download cached artifacts: %s: %v", or(d.GetName(), d.GetFrom()), err), true), false
		}
	}

	tree, readiness, err := e.buildTree(deps, req)
	if err != nil {
		return failed("invalid action: "+err.Error(), false), false
	}
	var once sync.Once
	markRunning := func() {
		once.Do(func() { e.markRunning(ctx, n, deps, readiness) })
	}
	if as, ok := tree.(asyncStep); ok && req.ResultFile == "" {
		// One process and nothing to read after it: supervise it without
		// holding this goroutine (see asyncStep).
		as.start(ctx, markRunning, func(err error) { end(outcome(ctx, err)) })
		return RunResult{}, true
	}
	err = tree.run(ctx, markRunning)
	if r := outcome(ctx, err); ctx.Err() != nil || err != nil || req.ResultFile == "" {
		return r, false
	}
	res, err := readResult(ctx, bc, req.ResultFile)
	if err != nil {
		n.logs.append("CELL", StreamStderr, fmt.Sprintf("failed to read result file %s: %v", req.ResultFile, err))
		return failed(ReasonFailedToFetchResult, false), false
	}
	return RunResult{Result: res}, false
}

// outcome is the result of an action tree that returned err.
func outcome(ctx context.Context, err error) RunResult {
	switch {
	case ctx.Err() != nil:
		return RunResult{Stopped: true}
	case err != nil:
		return failed(err.Error(), false)
	}
	return RunResult{}
}

// buildTree assembles setup, then the action codependent with sidecars and
// the health check.
func (e *Executor) buildTree(d *stepDeps, req RunRequest) (step, []*modelsv1.Check, error) {
	source := req.LogConfig.SourceName
	if req.Action == nil {
		return nil, nil, fmt.Errorf("no action")
	}
	action, err := d.build(req.Action, source, true)
	if err != nil {
		return nil, nil, err
	}
	long := []step{action}
	for i, sc := range req.Sidecars {
		s, err := d.withRole(roleSidecar).build(sc.GetAction(), source, false)
		if err != nil {
			return nil, nil, fmt.Errorf("sidecar %d: %w", i, err)
		}
		long = append(long, s)
	}
	startTimeout := req.StartTimeout
	if startTimeout <= 0 {
		startTimeout = e.opts.DefaultStartTimeout
	}
	var readiness []*modelsv1.Check
	if cd := req.CheckDefinition; cd != nil && (len(cd.GetChecks()) > 0 || len(cd.GetReadinessChecks()) > 0) {
		readiness = cd.GetReadinessChecks()
		if checks := cd.GetChecks(); len(checks) > 0 {
			interval := checkInterval(checks, e.opts.LivenessCheckInterval)
			long = append(long, d.healthStep(startTimeout, interval, func(ctx context.Context) error {
				return d.checkAll(ctx, checks)
			}))
		}
	} else if req.Monitor != nil {
		monitor, err := d.withRole(roleMonitor).build(req.Monitor, "HEALTH", false)
		if err != nil {
			return nil, nil, fmt.Errorf("monitor: %w", err)
		}
		long = append(long, d.healthStep(startTimeout, e.opts.LivenessCheckInterval, func(ctx context.Context) error {
			return monitor.run(ctx, func() {})
		}))
	}
	var tree step = action
	if len(long) > 1 {
		tree = codependentStep(long)
	}
	if req.Setup != nil {
		setup, err := d.build(req.Setup, source, true)
		if err != nil {
			return nil, nil, fmt.Errorf("setup: %w", err)
		}
		tree = serialStep([]step{setup, tree})
	}
	return tree, readiness, nil
}

// markRunning moves n to running and starts the readiness loop.
func (e *Executor) markRunning(ctx context.Context, n *node, d *stepDeps, readiness []*modelsv1.Check) {
	e.mu.Lock()
	if n.stopped || n.c.State != StateCreated {
		e.mu.Unlock()
		return
	}
	n.c.State = StateRunning
	n.c.Routable = len(readiness) == 0
	e.hub.emit(ContainerRunning{n.c})
	e.mu.Unlock()
	if len(readiness) > 0 {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.readinessLoop(ctx, n, d, readiness)
		}()
	}
}

// readinessLoop probes the readiness checks and flips Routable.
func (e *Executor) readinessLoop(ctx context.Context, n *node, d *stepDeps, checks []*modelsv1.Check) {
	ready := false
	for {
		err := d.checkAll(ctx, checks)
		if ctx.Err() != nil {
			return
		}
		if now := err == nil; now != ready {
			ready = now
			e.mu.Lock()
			if n.c.State != StateRunning {
				e.mu.Unlock()
				return
			}
			n.c.Routable = ready
			e.hub.emit(ContainerRoutableChanged{n.c})
			e.mu.Unlock()
		}
		interval := e.opts.StartupCheckInterval
		if ready {
			interval = checkInterval(checks, e.opts.LivenessCheckInterval)
		}
		t := e.clock.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// netInfoOf lists the mapped ports in the order of the requested ports.
func netInfoOf(info backend.ContainerInfo, ports []uint32) NetInfo {
	ni := NetInfo{HostIP: info.HostIP, InternalIP: info.ContainerIP}
	for _, p := range ports {
		for _, m := range info.MappedPorts {
			if m.ContainerPort == p {
				ni.Ports = append(ni.Ports, PortMapping{ContainerPort: p, HostPort: m.HostPort})
				break
			}
		}
	}
	return ni
}

// instanceEnv is the env every process of the container gets, before the
// request's env: PORT, CF_INSTANCE_* and, for LRPs, INSTANCE_INDEX/GUID.
// Without a network namespace the app must listen on the host port, so PORT
// and the internal ports are the host ports.
func instanceEnv(req RunRequest, info backend.ContainerInfo, ni NetInfo) []string {
	// Every "NAME=value" is written into one builder, whose string the
	// entries slice: a container's env is one allocation rather than one
	// per variable.
	var b strings.Builder
	b.Grow(320 + 64*len(req.Env))
	var endsArray [16]int
	ends := endsArray[:0]
	add := func(k, v string) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(v)
		ends = append(ends, b.Len())
	}
	var num [20]byte
	if req.InstanceGuid != "" {
		index := strconv.Itoa(req.InstanceIndex)
		add("INSTANCE_GUID", req.InstanceGuid)
		add("INSTANCE_INDEX", index)
		add("CF_INSTANCE_GUID", req.InstanceGuid)
		add("CF_INSTANCE_INDEX", index)
	}
	add("CF_INSTANCE_IP", ni.HostIP)
	add("CF_INSTANCE_INTERNAL_IP", ni.InternalIP)
	internalPort := func(p PortMapping) uint32 {
		if info.SharedHostNetwork {
			return p.HostPort
		}
		return p.ContainerPort
	}
	if len(ni.Ports) > 0 {
		p := ni.Ports[0]
		internal, external := strconv.Itoa(int(internalPort(p))), strconv.Itoa(int(p.HostPort))
		add("PORT", internal)
		add("VCAP_APP_PORT", internal)
		add("VCAP_APP_HOST", "0.0.0.0")
		add("CF_INSTANCE_PORT", external)
		add("CF_INSTANCE_ADDR", net.JoinHostPort(ni.HostIP, external))
	} else {
		add("CF_INSTANCE_PORT", "")
		add("CF_INSTANCE_ADDR", "")
	}
	// CF_INSTANCE_PORTS is the JSON list [{"external":E,"internal":I},...].
	b.WriteString("CF_INSTANCE_PORTS=[")
	for i, p := range ni.Ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"external":`)
		b.Write(strconv.AppendUint(num[:0], uint64(p.HostPort), 10))
		b.WriteString(`,"internal":`)
		b.Write(strconv.AppendUint(num[:0], uint64(internalPort(p)), 10))
		b.WriteByte('}')
	}
	b.WriteByte(']')
	ends = append(ends, b.Len())
	for _, v := range req.Env {
		add(v.GetName(), v.GetValue())
	}
	all := b.String()
	env := make([]string, len(ends))
	start := 0
	for i, end := range ends {
		env[i] = all[start:end]
		start = end
	}
	return env
}

// writeFile streams one file into the container.
func writeFile(ctx context.Context, c backend.Container, f *modelsv1.File) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := []byte(f.GetContent())
	if err := tw.WriteHeader(&tar.Header{Name: path.Base(f.GetPath()), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}); err != nil {
		return err
	}
	if _, err := tw.Write(content); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return c.StreamIn(ctx, backend.StreamInSpec{Path: path.Dir(f.GetPath()), TarStream: &buf})
}
