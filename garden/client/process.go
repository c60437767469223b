package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gavelhq/gavel/garden"
)

// ProcessIO connects a process's standard streams; any member may be nil.
// A nil Stdin never sends stdin EOF, so the process can still be signalled
// on the same connection (Diego runs processes that way).
type ProcessIO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// stdinChunk is the largest stdin frame.
const stdinChunk = 32 << 10

// Process is a process started by Run or attached to by Attach.
type Process struct {
	id   string
	conn net.Conn

	sendMu sync.Mutex
	enc    *json.Encoder

	done    chan struct{} // the final frame (or a decode failure) arrived
	status  int
	err     error
	outputs sync.WaitGroup

	connsMu sync.Mutex
	conns   []net.Conn
}

// ID is the process ID.
func (p *Process) ID() string { return p.id }

// Wait blocks until the exit status has arrived and both output streams
// have been copied to their end, and returns the status. A dropped
// connection gives an error.
func (p *Process) Wait() (int, error) {
	<-p.done
	p.outputs.Wait()
	return p.status, p.err
}

// Signal sends a signal to the process. It is ignored by the server once
// stdin EOF has been sent on this connection.
func (p *Process) Signal(sig garden.Signal) error {
	return p.send(garden.ProcessPayload{ProcessID: p.id, Signal: &sig})
}

// SetTTY resizes the process's terminal.
func (p *Process) SetTTY(spec garden.TTYSpec) error {
	return p.send(garden.ProcessPayload{ProcessID: p.id, TTY: &spec})
}

// Detach drops the connections without touching the process, which keeps
// running on the server; Attach reconnects to it. A pending Wait returns an
// error.
func (p *Process) Detach() {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

func (p *Process) send(payload garden.ProcessPayload) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if err := p.enc.Encode(payload); err != nil {
		return fmt.Errorf("garden client: process %s: send: %w", p.id, err)
	}
	return nil
}

func (p *Process) track(c net.Conn) {
	p.connsMu.Lock()
	p.conns = append(p.conns, c)
	p.connsMu.Unlock()
}

// Run starts a process in the container. ctx bounds the start (until the
// output streams are connected), not the life of the process.
func (c *Client) Run(ctx context.Context, handle string, spec garden.ProcessSpec, pio ProcessIO) (*Process, error) {
	// Encoded with its newline, as the reference client does; the body has
	// a Content-Length (never chunked), so the server's body reader stops
	// where the stdin frames begin.
	var body bytes.Buffer
	if err := json.NewEncoder(&body).Encode(spec); err != nil {
		return nil, fmt.Errorf("garden client: encode process spec: %w", err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, containerPath(handle, "processes"), nil, &body, "application/json")
	if err != nil {
		return nil, err
	}
	return c.stream(ctx, req, handle, pio)
}

// Attach reconnects to a process's output and exit status. An unknown ID
// gives garden.ProcessNotFoundError.
func (c *Client) Attach(ctx context.Context, handle, processID string, pio ProcessIO) (*Process, error) {
	req, err := c.newRequest(ctx, http.MethodGet, containerPath(handle, "processes", processID), nil, nil, "")
	if err != nil {
		return nil, err
	}
	return c.stream(ctx, req, handle, pio)
}

// hijack writes req on a new connection and reads the response head. On a
// 2xx status it returns the connection and a reader positioned after the
// head (the body is raw, whatever Transfer-Encoding says).
func (c *Client) hijack(ctx context.Context, req *http.Request) (net.Conn, *bufio.Reader, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("garden client: %s %s: %w", req.Method, req.URL.Path, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("garden client: %s %s: %w", req.Method, req.URL.Path, errors.Join(err, ctx.Err()))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer conn.Close()
		return nil, nil, decodeError(req, resp.StatusCode, resp.Body)
	}
	return conn, br, nil
}

func (c *Client) stream(ctx context.Context, req *http.Request, handle string, pio ProcessIO) (*Process, error) {
	conn, br, err := c.hijack(ctx, req)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(br)
	var first garden.ProcessPayload
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	err = dec.Decode(&first)
	if !stop() || err != nil {
		conn.Close()
		return nil, fmt.Errorf("garden client: %s %s: reading process ids: %w", req.Method, req.URL.Path, errors.Join(err, ctx.Err()))
	}
	p := &Process{id: first.ProcessID, conn: conn, enc: json.NewEncoder(conn), done: make(chan struct{})}
	p.track(conn)
	for _, out := range []struct {
		name string
		w    io.Writer
	}{{"stdout", pio.Stdout}, {"stderr", pio.Stderr}} {
		if out.w == nil {
			continue
		}
		oreq, err := c.newRequest(ctx, http.MethodGet,
			containerPath(handle, "processes", p.id, "attaches", first.StreamID, out.name), nil, nil, "")
		if err == nil {
			var oconn net.Conn
			var obr *bufio.Reader
			oconn, obr, err = c.hijack(ctx, oreq)
			if err == nil {
				p.track(oconn)
				p.outputs.Add(1)
				go func(w io.Writer) {
					defer p.outputs.Done()
					defer oconn.Close()
					_, _ = io.Copy(w, obr)
				}(out.w)
			}
		}
		if err != nil {
			// As the reference client: the process is reported as exited with
			// an error, and the connections are dropped (it keeps running).
			p.Detach()
			p.err = fmt.Errorf("garden client: process %s: connecting %s: %w", p.id, out.name, err)
			close(p.done)
			return p, nil
		}
	}
	go p.readFrames(dec)
	if pio.Stdin != nil {
		go p.copyStdin(pio.Stdin)
	}
	return p, nil
}

// readFrames waits for the final frame; unknown frames are ignored.
func (p *Process) readFrames(dec *json.Decoder) {
	defer close(p.done)
	defer p.conn.Close()
	for {
		var payload garden.ProcessPayload
		if err := dec.Decode(&payload); err != nil {
			p.err = fmt.Errorf("garden client: process %s: decode failed: %w", p.id, err)
			return
		}
		switch {
		case payload.Error != nil:
			p.err = fmt.Errorf("garden client: process %s: %s", p.id, *payload.Error)
			return
		case payload.ExitStatus != nil:
			p.status = *payload.ExitStatus
			return
		}
	}
}

// copyStdin sends each read as one frame, then stdin EOF.
func (p *Process) copyStdin(r io.Reader) {
	src := garden.ProcessStreamSourceStdin
	buf := make([]byte, stdinChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			data := string(buf[:n])
			if p.send(garden.ProcessPayload{ProcessID: p.id, Source: &src, Data: &data}) != nil {
				return
			}
		}
		if err != nil {
			_ = p.send(garden.ProcessPayload{ProcessID: p.id, Source: &src})
			return
		}
	}
}
