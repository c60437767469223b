package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"

	"github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/rep/backend"
)

// errProcessExited closes a process's stdin once it has exited.
var errProcessExited = errors.New("process exited")

// afterFunc runs f after d on c unless the returned stop is called first.
func afterFunc(c clock.Clock, d time.Duration, f func()) (stop func()) {
	t := c.NewTimer(d)
	cancel := make(chan struct{})
	go func() {
		select {
		case <-t.C():
			f()
		case <-cancel:
			t.Stop()
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(cancel) }) }
}

// outStream is the pair of buffered output channels a stream id names.
type outStream struct {
	stdout, stderr chan []byte
	// done closes when the Run or Attach handler ends; the output handlers
	// then drain what is buffered and close.
	done chan struct{}
}

// streamer numbers streams and keeps each for a while after it is done.
type streamer struct {
	clock     clock.Clock
	retention time.Duration
	chunks    int

	mu      sync.Mutex
	next    uint64
	streams map[string]*outStream
}

func newStreamer(c clock.Clock, retention time.Duration, chunks int) *streamer {
	return &streamer{clock: c, retention: retention, chunks: chunks, streams: map[string]*outStream{}}
}

func (s *streamer) create() (string, *outStream) {
	st := &outStream{
		stdout: make(chan []byte, s.chunks),
		stderr: make(chan []byte, s.chunks),
		done:   make(chan struct{}),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	id := strconv.FormatUint(s.next, 10)
	s.streams[id] = st
	return id, st
}

func (s *streamer) get(id string) *outStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[id]
}

// finish marks a stream done and forgets it after the retention.
func (s *streamer) finish(id string, st *outStream) {
	close(st.done)
	afterFunc(s.clock, s.retention, func() {
		s.mu.Lock()
		delete(s.streams, id)
		s.mu.Unlock()
	})
}

// fanout copies each write of a process's output to every subscribed
// channel, dropping it for a channel that is full: it never blocks.
type fanout struct {
	mu   sync.Mutex
	subs map[chan []byte]struct{}
}

func newFanout() *fanout { return &fanout{subs: map[chan []byte]struct{}{}} }

// Write implements io.Writer; it always succeeds.
func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		return len(p), nil
	}
	cp := append([]byte(nil), p...)
	for ch := range f.subs {
		select {
		case ch <- cp:
		default:
		}
	}
	return len(p), nil
}

func (f *fanout) sub(ch chan []byte) {
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
}

func (f *fanout) unsub(ch chan []byte) {
	f.mu.Lock()
	delete(f.subs, ch)
	f.mu.Unlock()
}

// serverProcess is a process the server has started or attached to.
type serverProcess struct {
	id     string
	proc   backend.Process
	stdout *fanout
	stderr *fanout

	stdinMu sync.Mutex
	stdinR  *io.PipeReader
	stdinW  *io.PipeWriter

	exited chan struct{}
	status int
	err    error
}

func newServerProcess(id string) *serverProcess {
	r, w := io.Pipe()
	return &serverProcess{id: id, stdout: newFanout(), stderr: newFanout(), stdinR: r, stdinW: w, exited: make(chan struct{})}
}

func (p *serverProcess) pio() backend.ProcessIO {
	return backend.ProcessIO{Stdin: p.stdinR, Stdout: p.stdout, Stderr: p.stderr}
}

// wait records the exit (Wait returns only once the output has been
// written to the fan-outs) and ends stdin.
func (p *serverProcess) wait() {
	p.status, p.err = p.proc.Wait()
	close(p.exited)
	p.stdinR.CloseWithError(errProcessExited)
	p.stdinW.CloseWithError(errProcessExited)
}

// writeStdin writes one chunk; it blocks until the process's stdin copier
// takes it (or the process exits).
func (p *serverProcess) writeStdin(data string) error {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	_, err := io.WriteString(p.stdinW, data)
	return err
}

func (p *serverProcess) closeStdin() { _ = p.stdinW.Close() }

// processTable holds the server's processes by handle and ID. An exited one
// stays for the retention, so a late Attach still gets its status.
type processTable struct {
	clock     clock.Clock
	retention time.Duration

	mu    sync.Mutex
	procs map[string]map[string]*serverProcess
}

func newProcessTable(c clock.Clock, retention time.Duration) *processTable {
	return &processTable{clock: c, retention: retention, procs: map[string]map[string]*serverProcess{}}
}

func (t *processTable) get(handle, id string) *serverProcess {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.procs[handle][id]
}

// add registers p unless a process of that ID is known, and returns the
// registered one. It starts waiting on p.
func (t *processTable) add(handle string, p *serverProcess) *serverProcess {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.procs[handle] == nil {
		t.procs[handle] = map[string]*serverProcess{}
	}
	if old := t.procs[handle][p.id]; old != nil {
		return old
	}
	t.procs[handle][p.id] = p
	go func() {
		p.wait()
		afterFunc(t.clock, t.retention, func() { t.remove(handle, p) })
	}()
	return p
}

func (t *processTable) remove(handle string, p *serverProcess) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.procs[handle][p.id] == p {
		delete(t.procs[handle], p.id)
		if len(t.procs[handle]) == 0 {
			delete(t.procs, handle)
		}
	}
}

// running reports whether a live process of that ID is known.
func (t *processTable) running(handle, id string) bool {
	p := t.get(handle, id)
	if p == nil {
		return false
	}
	select {
	case <-p.exited:
		t.remove(handle, p)
		return false
	default:
		return true
	}
}

func (t *processTable) forgetContainer(handle string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.procs, handle)
}

// run answers POST /containers/:h/processes: 201, then the hijacked stream.
func (s *Server) run(w http.ResponseWriter, r *http.Request, c backend.Container) {
	handle := c.Handle()
	var spec garden.ProcessSpec
	if err := s.decodeBody(w, r, &spec); err != nil {
		s.writeError(w, r, fmt.Errorf("run in %s: %w", handle, err), handle, "")
		return
	}
	if spec.ID == "" {
		spec.ID = uuid.NewString()
	}
	bspec, err := toBackendProcessSpec(spec)
	if err == nil {
		err = checkName("process id", spec.ID, MaxHandleLength)
	}
	if err == nil && s.procs.running(handle, spec.ID) {
		err = fmt.Errorf("process id already in use: %s", spec.ID)
	}
	if err != nil {
		s.writeError(w, r, fmt.Errorf("run in %s: %w", handle, err), handle, spec.ID)
		return
	}
	p := newServerProcess(spec.ID)
	sid, st := s.streams.create()
	p.stdout.sub(st.stdout)
	p.stderr.sub(st.stderr)
	proc, err := c.Run(r.Context(), bspec, p.pio())
	if err != nil {
		p.stdinW.Close()
		s.streams.finish(sid, st)
		s.writeError(w, r, fmt.Errorf("run in %s: %w", handle, err), handle, spec.ID)
		return
	}
	p.proc = proc
	if old := s.procs.get(handle, spec.ID); old != nil {
		s.procs.remove(handle, old) // an exited one of the same ID
	}
	s.procs.add(handle, p)
	s.serveProcess(w, r, http.StatusCreated, handle, p, sid, st)
}

// attach answers GET /containers/:h/processes/:pid: 200, then the stream.
func (s *Server) attach(w http.ResponseWriter, r *http.Request, c backend.Container) {
	handle, pid := c.Handle(), r.PathValue("pid")
	p := s.procs.get(handle, pid)
	if p == nil {
		np := newServerProcess(pid)
		proc, err := c.Attach(r.Context(), pid, np.pio())
		if err != nil {
			np.stdinW.Close()
			s.writeError(w, r, fmt.Errorf("attach %s in %s: %w", pid, handle, err), handle, pid)
			return
		}
		np.proc = proc
		p = s.procs.add(handle, np)
	}
	sid, st := s.streams.create()
	p.stdout.sub(st.stdout)
	p.stderr.sub(st.stderr)
	s.serveProcess(w, r, http.StatusOK, handle, p, sid, st)
}

// serveProcess hijacks the connection and speaks §3: the ids first, then
// stdin/signal/tty frames in and the exit status out. A dropped connection
// or a stopping server detaches; the process keeps running.
func (s *Server) serveProcess(w http.ResponseWriter, r *http.Request, status int, handle string, p *serverProcess, sid string, st *outStream) {
	defer s.streams.finish(sid, st)
	defer p.stderr.unsub(st.stderr)
	defer p.stdout.unsub(st.stdout)
	logger := s.logger.Session("process", lager.Data{"handle": handle, "process_id": p.id, "stream_id": sid})

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		logger.Error("hijack-failed", err)
		return
	}
	defer conn.Close()
	enc := json.NewEncoder(conn)
	if err := enc.Encode(garden.ProcessPayload{ProcessID: p.id, StreamID: sid}); err != nil {
		logger.Info("detached", lager.Data{"reason": err.Error()})
		return
	}
	dropped := make(chan error, 1)
	go s.readFrames(logger, brw.Reader, p, dropped)

	select {
	case <-p.exited:
		final := garden.ProcessPayload{ProcessID: p.id}
		if p.err != nil {
			msg := p.err.Error()
			final.Error = &msg
		} else {
			code := p.status
			final.ExitStatus = &code
		}
		if err := enc.Encode(final); err != nil {
			logger.Info("exit-status-not-delivered", lager.Data{"error": err.Error()})
		}
	case err := <-dropped:
		logger.Info("detached", lager.Data{"reason": err.Error()})
	case <-s.stopping.Done():
		logger.Info("detached", lager.Data{"reason": "server stopping"})
	}
}

// readFrames applies the client's frames in the order of checks of §3.2.
// It returns quietly after stdin EOF (or a frame that ends the input) and
// reports a read failure on dropped.
func (s *Server) readFrames(logger lager.Logger, br *bufio.Reader, p *serverProcess, dropped chan<- error) {
	dec := json.NewDecoder(br)
	for {
		var f garden.ProcessPayload
		if err := dec.Decode(&f); err != nil {
			dropped <- err
			return
		}
		switch {
		case f.TTY != nil:
			resizer, ok := p.proc.(backend.TTYResizer)
			if !ok {
				logger.Info("tty-resize-unsupported")
				continue
			}
			if err := resizer.SetTTY(toBackendTTY(*f.TTY)); err != nil {
				logger.Error("tty-resize-failed", err)
			}
		case f.Source != nil && f.Data != nil:
			if err := p.writeStdin(*f.Data); err != nil {
				logger.Info("stdin-write-failed", lager.Data{"error": err.Error()})
			}
		case f.Source != nil:
			p.closeStdin()
			return
		case f.Signal != nil && (*f.Signal == garden.SignalTerminate || *f.Signal == garden.SignalKill):
			sig := backend.SignalTerminate
			if *f.Signal == garden.SignalKill {
				sig = backend.SignalKill
			}
			if err := p.proc.Signal(sig); err != nil {
				logger.Error("signal-failed", err, lager.Data{"signal": sig.String()})
			}
		default:
			p.closeStdin()
			return
		}
	}
}

// output answers GET .../attaches/:streamid/{stdout,stderr}: 200, then the
// raw bytes of the stream until it is done and drained. An unknown stream
// id gets a 200 that closes at once.
func (s *Server) output(w http.ResponseWriter, r *http.Request, c backend.Container) {
	name := r.PathValue("stream")
	if name != "stdout" && name != "stderr" {
		http.NotFound(w, r)
		return
	}
	st := s.streams.get(r.PathValue("streamid"))
	w.WriteHeader(http.StatusOK)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.logger.Error("hijack-failed", err, lager.Data{"handle": c.Handle()})
		return
	}
	defer conn.Close()
	if st == nil {
		return
	}
	ch := st.stdout
	if name == "stderr" {
		ch = st.stderr
	}
	copyStream(s.stopping, conn, ch, st.done)
}

// copyStream writes chunks until done, then drains what is buffered.
func copyStream(stopping context.Context, conn net.Conn, ch <-chan []byte, done <-chan struct{}) {
	for {
		select {
		case b := <-ch:
			if _, err := conn.Write(b); err != nil {
				return
			}
		case <-done:
			for {
				select {
				case b := <-ch:
					if _, err := conn.Write(b); err != nil {
						return
					}
				default:
					return
				}
			}
		case <-stopping.Done():
			return
		}
	}
}
