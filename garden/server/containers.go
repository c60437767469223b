package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"

	"github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/rep/backend"
)

// routes registers every route of the reference's §2.
func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /ping", s.ping)
	m.HandleFunc("GET /capacity", s.capacity)
	m.HandleFunc("GET /containers", s.list)
	m.HandleFunc("POST /containers", s.create)
	m.HandleFunc("GET /containers/bulk_info", s.bulkInfo)
	m.HandleFunc("GET /containers/bulk_metrics", s.bulkMetrics)
	m.HandleFunc("DELETE /containers/{handle}", s.destroyHandler)
	m.HandleFunc("GET /containers/{handle}/info", s.withContainer(s.info))
	m.HandleFunc("PUT /containers/{handle}/stop", s.withContainer(s.stopContainer))
	m.HandleFunc("PUT /containers/{handle}/files", s.withContainer(s.streamIn))
	m.HandleFunc("GET /containers/{handle}/files", s.withContainer(s.streamOut))
	m.HandleFunc("GET /containers/{handle}/limits/{kind}", s.withContainer(s.limits))
	m.HandleFunc("POST /containers/{handle}/net/in", s.withContainer(s.netIn))
	m.HandleFunc("POST /containers/{handle}/net/out", s.withContainer(s.netOut))
	m.HandleFunc("POST /containers/{handle}/net/out/bulk", s.withContainer(s.bulkNetOut))
	m.HandleFunc("POST /containers/{handle}/processes", s.withContainer(s.run))
	m.HandleFunc("GET /containers/{handle}/processes/{pid}", s.withContainer(s.attach))
	m.HandleFunc("GET /containers/{handle}/processes/{pid}/attaches/{streamid}/{stream}", s.withContainer(s.output))
	m.HandleFunc("PUT /containers/{handle}/grace_time", s.setGraceTime)
	m.HandleFunc("GET /containers/{handle}/properties", s.withContainer(s.properties))
	m.HandleFunc("GET /containers/{handle}/properties/{key}", s.withContainer(s.property))
	m.HandleFunc("PUT /containers/{handle}/properties/{key}", s.withContainer(s.setProperty))
	m.HandleFunc("DELETE /containers/{handle}/properties/{key}", s.withContainer(s.removeProperty))
	m.HandleFunc("GET /containers/{handle}/metrics", s.withContainer(s.metrics))
	s.mux = m
}

// containerHandler serves a route of one existing container.
type containerHandler func(w http.ResponseWriter, r *http.Request, c backend.Container)

// withContainer looks the handle up (404 ContainerNotFoundError if unknown)
// and pauses its reaper timer for the request's duration.
func (s *Server) withContainer(h containerHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		handle := r.PathValue("handle")
		c, err := s.lookup(r.Context(), handle)
		if err != nil {
			s.writeError(w, r, err, handle, "")
			return
		}
		s.reaper.pause(handle)
		defer s.reaper.resume(handle)
		h(w, r, c)
	}
}

func (s *Server) lookup(ctx context.Context, handle string) (backend.Container, error) {
	if err := checkName("handle", handle, MaxHandleLength); err != nil {
		return nil, err
	}
	c, err := s.backend.Lookup(ctx, handle)
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", handle, err)
	}
	return c, nil
}

// checkName validates a handle, process ID or property name.
func checkName(what, name string, maxLen int) error {
	switch {
	case name == "":
		return fmt.Errorf("%s is empty", what)
	case len(name) > maxLen:
		return fmt.Errorf("%s longer than %d bytes", what, maxLen)
	case strings.Contains(name, "/"):
		return fmt.Errorf("%s %q contains '/'", what, name)
	}
	return nil
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	if err := s.backend.Ping(r.Context()); err != nil {
		s.writeError(w, r, fmt.Errorf("ping: %w", err), "", "")
		return
	}
	writeJSON(w, http.StatusOK, empty{})
}

func (s *Server) capacity(w http.ResponseWriter, r *http.Request) {
	c, err := s.backend.Capacity(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("capacity: %w", err), "", "")
		return
	}
	writeJSON(w, http.StatusOK, toGardenCapacity(c))
}

// list answers GET /containers with the garden.state semantics of §2.2.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	filter := garden.Properties{}
	for k, vs := range r.URL.Query() {
		filter[k] = vs[0]
	}
	switch state, ok := filter[garden.PropertyState]; {
	case !ok:
		filter[garden.PropertyState] = garden.StateCreated
	case state == garden.StateFilterAll:
		delete(filter, garden.PropertyState)
	}
	exact := backend.Properties{}
	var emptyKeys []string
	for k, v := range filter {
		if v == "" {
			emptyKeys = append(emptyKeys, k)
			continue
		}
		exact[k] = v
	}
	cs, err := s.backend.Containers(r.Context(), exact)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list containers: %w", err), "", "")
		return
	}
	handles := make([]string, 0, len(cs))
	for _, c := range cs {
		if len(emptyKeys) > 0 {
			props, err := c.Properties(r.Context())
			if err != nil {
				continue // destroyed meanwhile
			}
			if !emptyOrMissing(props, emptyKeys) {
				continue
			}
		}
		handles = append(handles, c.Handle())
	}
	writeJSON(w, http.StatusOK, garden.ListResponse{Handles: handles})
}

func emptyOrMissing(props backend.Properties, keys []string) bool {
	for _, k := range keys {
		if props[k] != "" {
			return false
		}
	}
	return true
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var spec garden.ContainerSpec
	if err := s.decodeBody(w, r, &spec); err != nil {
		s.writeError(w, r, fmt.Errorf("create: %w", err), "", "")
		return
	}
	if spec.Handle == "" {
		spec.Handle = uuid.NewString()
	}
	if spec.GraceTime == 0 {
		spec.GraceTime = s.opts.DefaultGraceTime
	}
	bspec, err := toBackendContainerSpec(spec)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("create %s: %w", spec.Handle, err), spec.Handle, "")
		return
	}
	if len(spec.NetOut) > 0 {
		s.logger.Info("create-ignores-netout-rules", lager.Data{"handle": spec.Handle, "rules": len(spec.NetOut)})
	}
	if _, err := s.backend.Create(r.Context(), bspec); err != nil {
		if errors.Is(err, backend.ErrHandleExists) {
			err = fmt.Errorf("handle already exists: %s", spec.Handle)
		} else {
			err = fmt.Errorf("create %s: %w", spec.Handle, err)
		}
		s.writeError(w, r, err, spec.Handle, "")
		return
	}
	s.reaper.arm(spec.Handle, spec.GraceTime)
	s.logger.Info("created", lager.Data{"handle": spec.Handle, "grace_time": spec.GraceTime.String()})
	writeJSON(w, http.StatusOK, garden.CreateResponse{Handle: spec.Handle})
}

func (s *Server) destroyHandler(w http.ResponseWriter, r *http.Request) {
	handle := r.PathValue("handle")
	if err := checkName("handle", handle, MaxHandleLength); err != nil {
		s.writeError(w, r, err, handle, "")
		return
	}
	if err := s.destroy(r.Context(), handle); err != nil {
		s.writeError(w, r, err, handle, "")
		return
	}
	s.logger.Info("destroyed", lager.Data{"handle": handle})
	writeJSON(w, http.StatusOK, empty{})
}

// bulkHandles reads the handles parameter ("" or missing: none).
func bulkHandles(r *http.Request) ([]string, error) {
	var handles []string
	for _, h := range strings.Split(r.URL.Query().Get("handles"), ",") {
		if h != "" {
			handles = append(handles, h)
		}
	}
	if len(handles) > MaxBulkHandles {
		return nil, fmt.Errorf("more than %d handles", MaxBulkHandles)
	}
	return handles, nil
}

// entryError is a per-entry bulk error: untyped, as guardian sends them.
func entryError(err error, handle string) *garden.Error {
	body, _ := gardenError(err, handle, "")
	return &garden.Error{Message: body.Message}
}

func (s *Server) bulkInfo(w http.ResponseWriter, r *http.Request) {
	handles, err := bulkHandles(r)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("bulk info: %w", err), "", "")
		return
	}
	out := map[string]garden.ContainerInfoEntry{}
	for _, h := range handles {
		info, err := s.containerInfo(r.Context(), h)
		if err != nil {
			out[h] = garden.ContainerInfoEntry{Err: entryError(err, h)}
			continue
		}
		out[h] = garden.ContainerInfoEntry{Info: info}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) containerInfo(ctx context.Context, handle string) (garden.ContainerInfo, error) {
	c, err := s.lookup(ctx, handle)
	if err != nil {
		return garden.ContainerInfo{}, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return garden.ContainerInfo{}, fmt.Errorf("info %s: %w", handle, err)
	}
	return toGardenInfo(info), nil
}

func (s *Server) bulkMetrics(w http.ResponseWriter, r *http.Request) {
	handles, err := bulkHandles(r)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("bulk metrics: %w", err), "", "")
		return
	}
	out := map[string]garden.ContainerMetricsEntry{}
	for _, h := range handles {
		m, err := s.containerMetrics(r.Context(), h)
		if err != nil {
			out[h] = garden.ContainerMetricsEntry{Err: entryError(err, h)}
			continue
		}
		out[h] = garden.ContainerMetricsEntry{Metrics: m}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) containerMetrics(ctx context.Context, handle string) (garden.Metrics, error) {
	c, err := s.lookup(ctx, handle)
	if err != nil {
		return garden.Metrics{}, err
	}
	mr, ok := c.(backend.MetricsReporter)
	if !ok {
		return garden.Metrics{}, errUnsupported("metrics")
	}
	m, err := mr.Metrics(ctx)
	if err != nil {
		return garden.Metrics{}, fmt.Errorf("metrics %s: %w", handle, err)
	}
	return toGardenMetrics(m), nil
}

func (s *Server) info(w http.ResponseWriter, r *http.Request, c backend.Container) {
	info, err := c.Info(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("info %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	writeJSON(w, http.StatusOK, toGardenInfo(info))
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request, c backend.Container) {
	m, err := s.containerMetrics(r.Context(), c.Handle())
	if err != nil {
		s.writeError(w, r, err, c.Handle(), "")
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) stopContainer(w http.ResponseWriter, r *http.Request, c backend.Container) {
	var req garden.StopRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, fmt.Errorf("stop %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	if err := c.Stop(r.Context(), req.Kill); err != nil {
		s.writeError(w, r, fmt.Errorf("stop %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	writeJSON(w, http.StatusOK, empty{})
}

func (s *Server) streamIn(w http.ResponseWriter, r *http.Request, c backend.Container) {
	q := r.URL.Query()
	spec := backend.StreamInSpec{Path: q.Get("destination"), User: q.Get("user"), TarStream: r.Body}
	if err := c.StreamIn(r.Context(), spec); err != nil {
		s.writeError(w, r, fmt.Errorf("stream in to %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	writeJSON(w, http.StatusOK, empty{})
}

func (s *Server) streamOut(w http.ResponseWriter, r *http.Request, c backend.Container) {
	q := r.URL.Query()
	rc, err := c.StreamOut(r.Context(), backend.StreamOutSpec{Path: q.Get("source"), User: q.Get("user")})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("stream out of %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	defer rc.Close()
	// An error after the first byte cannot be reported: the tar is cut short.
	if _, err := io.Copy(w, rc); err != nil {
		s.logger.Error("stream-out-truncated", err, lager.Data{"handle": c.Handle()})
	}
}

func (s *Server) limits(w http.ResponseWriter, r *http.Request, c backend.Container) {
	kind := r.PathValue("kind")
	switch kind {
	case "bandwidth", "cpu", "disk", "memory":
	default:
		http.NotFound(w, r)
		return
	}
	if kind == "bandwidth" {
		writeJSON(w, http.StatusOK, garden.BandwidthLimits{}) // no backend limits bandwidth
		return
	}
	lr, ok := c.(backend.LimitsReporter)
	if !ok {
		s.writeError(w, r, errUnsupported("reading limits"), c.Handle(), "")
		return
	}
	l, err := lr.Limits(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("limits of %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	switch kind {
	case "cpu":
		// guardian answers the container's cpu shares in limit_in_shares
		// (and weight 0), whichever was set at Create; both carry the
		// value here, so a client reading either gets it.
		writeJSON(w, http.StatusOK, garden.CPULimits{Weight: l.CPUWeight, LimitInShares: l.CPUWeight})
	case "disk":
		writeJSON(w, http.StatusOK, garden.DiskLimits{ByteHard: l.DiskInBytes})
	default:
		writeJSON(w, http.StatusOK, garden.MemoryLimits{LimitInBytes: l.MemoryInBytes})
	}
}

func (s *Server) netIn(w http.ResponseWriter, r *http.Request, c backend.Container) {
	var req garden.NetInRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.writeError(w, r, fmt.Errorf("net in %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	adder, ok := c.(backend.NetInAdder)
	if !ok {
		s.writeError(w, r, errUnsupported("net in after create"), c.Handle(), "")
		return
	}
	m, err := adder.NetIn(r.Context(), req.HostPort, req.ContainerPort)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("net in %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	writeJSON(w, http.StatusOK, garden.NetInResponse{HostPort: m.HostPort, ContainerPort: m.ContainerPort})
}

func (s *Server) netOut(w http.ResponseWriter, r *http.Request, c backend.Container) {
	var rule garden.NetOutRule
	if err := s.decodeBody(w, r, &rule); err != nil {
		s.writeError(w, r, fmt.Errorf("net out %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	s.writeError(w, r, errUnsupported("net out"), c.Handle(), "")
}

func (s *Server) bulkNetOut(w http.ResponseWriter, r *http.Request, c backend.Container) {
	var rules []garden.NetOutRule
	if err := s.decodeBody(w, r, &rules); err != nil {
		s.writeError(w, r, fmt.Errorf("bulk net out %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	s.writeError(w, r, errUnsupported("net out"), c.Handle(), "")
}

// setGraceTime resets the reaper timer; persisting the value is best effort
// (its failure is only logged, as upstream).
func (s *Server) setGraceTime(w http.ResponseWriter, r *http.Request) {
	handle := r.PathValue("handle")
	c, err := s.lookup(r.Context(), handle)
	if err != nil {
		s.writeError(w, r, err, handle, "")
		return
	}
	var ns int64
	if err := s.decodeBody(w, r, &ns); err != nil {
		s.writeError(w, r, fmt.Errorf("grace time of %s: %w", handle, err), handle, "")
		return
	}
	if ns < 0 {
		s.writeError(w, r, fmt.Errorf("grace time of %s: negative %d", handle, ns), handle, "")
		return
	}
	d := time.Duration(ns)
	if pe, ok := c.(backend.PropertyEditor); ok {
		if err := pe.SetProperty(r.Context(), garden.PropertyGraceTime, strconv.FormatInt(ns, 10)); err != nil {
			s.logger.Error("persist-grace-time", err, lager.Data{"handle": handle})
		}
	} else {
		s.logger.Info("grace-time-not-persisted", lager.Data{"handle": handle, "reason": "backend cannot edit properties"})
	}
	s.reaper.arm(handle, d)
	writeJSON(w, http.StatusOK, empty{})
}

func (s *Server) properties(w http.ResponseWriter, r *http.Request, c backend.Container) {
	props, err := c.Properties(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("properties of %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	if props == nil {
		props = backend.Properties{}
	}
	writeJSON(w, http.StatusOK, props)
}

func (s *Server) property(w http.ResponseWriter, r *http.Request, c backend.Container) {
	key := r.PathValue("key")
	props, err := c.Properties(r.Context())
	if err != nil {
		s.writeError(w, r, fmt.Errorf("properties of %s: %w", c.Handle(), err), c.Handle(), "")
		return
	}
	v, ok := props[key]
	if !ok {
		s.writeError(w, r, fmt.Errorf("property does not exist: %s", key), c.Handle(), "")
		return
	}
	writeJSON(w, http.StatusOK, garden.PropertyValue{Value: v})
}

func (s *Server) setProperty(w http.ResponseWriter, r *http.Request, c backend.Container) {
	key := r.PathValue("key")
	var req garden.PropertyValue
	err := checkName("property name", key, MaxPropertyNameLength)
	if err == nil {
		err = s.decodeBody(w, r, &req)
	}
	if err == nil && len(req.Value) > MaxPropertyValueLength {
		err = fmt.Errorf("property value longer than %d bytes", MaxPropertyValueLength)
	}
	if err != nil {
		s.writeError(w, r, fmt.Errorf("set property %s of %s: %w", key, c.Handle(), err), c.Handle(), "")
		return
	}
	pe, ok := c.(backend.PropertyEditor)
	if !ok {
		s.writeError(w, r, errUnsupported("setting properties"), c.Handle(), "")
		return
	}
	if err := pe.SetProperty(r.Context(), key, req.Value); err != nil {
		s.writeError(w, r, fmt.Errorf("set property %s of %s: %w", key, c.Handle(), err), c.Handle(), "")
		return
	}
	writeJSON(w, http.StatusOK, empty{})
}

func (s *Server) removeProperty(w http.ResponseWriter, r *http.Request, c backend.Container) {
	key := r.PathValue("key")
	pe, ok := c.(backend.PropertyEditor)
	if !ok {
		s.writeError(w, r, errUnsupported("removing properties"), c.Handle(), "")
		return
	}
	if err := pe.RemoveProperty(r.Context(), key); err != nil {
		s.writeError(w, r, fmt.Errorf("remove property %s of %s: %w", key, c.Handle(), err), c.Handle(), "")
		return
	}
	writeJSON(w, http.StatusOK, empty{})
}
