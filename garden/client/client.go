package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gavelhq/gavel/garden"
)

// DefaultDialTimeout bounds connecting to the server when ctx has no
// earlier deadline.
const DefaultDialTimeout = 10 * time.Second

// RequestIDHeader is the optional tracing header the Diego executor sends.
const RequestIDHeader = "X-Vcap-Request-Id"

// Options configure a Client.
type Options struct {
	// Network is "tcp" or "unix"; default "tcp".
	Network string
	// Address is host:port for TCP or the socket path for unix; required.
	Address string
	// DialTimeout bounds each connect; default 10 s.
	DialTimeout time.Duration
	// Header is added to every request (for example RequestIDHeader).
	Header http.Header
}

// Client talks to one Garden server.
type Client struct {
	opts   Options
	dialer net.Dialer
	http   *http.Client
}

// New returns a client of the server at opts.Address. It does not connect.
func New(opts Options) (*Client, error) {
	if opts.Network == "" {
		opts.Network = "tcp"
	}
	if opts.Network != "tcp" && opts.Network != "unix" {
		return nil, fmt.Errorf("garden client: network %q: want tcp or unix", opts.Network)
	}
	if opts.Address == "" {
		return nil, errors.New("garden client: address is required")
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	c := &Client{opts: opts, dialer: net.Dialer{Timeout: opts.DialTimeout}}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dial(ctx)
		},
		DisableKeepAlives: true,
	}}
	return c, nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	conn, err := c.dialer.DialContext(ctx, c.opts.Network, c.opts.Address)
	if err != nil {
		return nil, fmt.Errorf("garden client: dial %s %s: %w", c.opts.Network, c.opts.Address, err)
	}
	return conn, nil
}

// newRequest builds a request to http://api/<path>?<query>.
func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) (*http.Request, error) {
	u := "http://api" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("garden client: %s %s: %w", method, path, err)
	}
	for k, vs := range c.opts.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// do sends a request with an optional JSON body and returns the response of
// a 2xx status; any other status is decoded as an error body.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in any) (*http.Response, error) {
	var body io.Reader
	contentType := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("garden client: encode %s %s: %w", method, path, err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	req, err := c.newRequest(ctx, method, path, query, body, contentType)
	if err != nil {
		return nil, err
	}
	return c.send(req)
}

func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("garden client: %s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, decodeError(req, resp.StatusCode, resp.Body)
	}
	return resp, nil
}

// maxErrorBody bounds the error body read.
const maxErrorBody = 1 << 20

// decodeError turns an error response into the typed error its Type names.
func decodeError(req *http.Request, status int, body io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(body, maxErrorBody))
	if err != nil {
		return fmt.Errorf("garden client: %s %s: status %d: reading error body: %w", req.Method, req.URL.Path, status, err)
	}
	var e garden.Error
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("garden client: %s %s: bad response: status %d: %q", req.Method, req.URL.Path, status, strings.TrimSpace(string(b)))
	}
	return e.Typed()
}

// call sends a request and decodes the 2xx JSON body into out (if non-nil).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	resp, err := c.do(ctx, method, path, query, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("garden client: decode %s %s: %w", method, path, err)
	}
	return nil
}

func containerPath(handle string, rest ...string) string {
	return "/containers/" + handle + strings.Join(append([]string{""}, rest...), "/")
}

// Ping checks that the server is up. garden.UnrecoverableError means it is
// permanently broken.
func (c *Client) Ping(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, "/ping", nil, nil, nil)
}

// Capacity reports the host's capacity.
func (c *Client) Capacity(ctx context.Context) (garden.Capacity, error) {
	var capacity garden.Capacity
	err := c.call(ctx, http.MethodGet, "/capacity", nil, nil, &capacity)
	return capacity, err
}

// Create creates a container and returns its handle.
func (c *Client) Create(ctx context.Context, spec garden.ContainerSpec) (string, error) {
	var resp garden.CreateResponse
	if err := c.call(ctx, http.MethodPost, "/containers", nil, spec, &resp); err != nil {
		return "", err
	}
	return resp.Handle, nil
}

// Destroy destroys a container.
func (c *Client) Destroy(ctx context.Context, handle string) error {
	return c.call(ctx, http.MethodDelete, containerPath(handle), nil, nil, nil)
}

// Containers lists the handles of the containers whose properties match
// every pair of filter (garden.PropertyState has the semantics of §2.2).
func (c *Client) Containers(ctx context.Context, filter garden.Properties) ([]string, error) {
	q := url.Values{}
	for k, v := range filter {
		q.Set(k, v)
	}
	var resp garden.ListResponse
	if err := c.call(ctx, http.MethodGet, "/containers", q, nil, &resp); err != nil {
		return nil, err
	}
	return resp.Handles, nil
}

// Lookup checks that a container exists, as the reference client does: it
// lists the containers (created ones only) and searches the handle. A missing
// one gives garden.ContainerNotFoundError.
func (c *Client) Lookup(ctx context.Context, handle string) error {
	handles, err := c.Containers(ctx, nil)
	if err != nil {
		return err
	}
	for _, h := range handles {
		if h == handle {
			return nil
		}
	}
	return garden.ContainerNotFoundError{Handle: handle}
}

// BulkInfo returns the info of many containers; failures are per entry.
func (c *Client) BulkInfo(ctx context.Context, handles []string) (map[string]garden.ContainerInfoEntry, error) {
	out := map[string]garden.ContainerInfoEntry{}
	err := c.call(ctx, http.MethodGet, "/containers/bulk_info", url.Values{"handles": {strings.Join(handles, ",")}}, nil, &out)
	return out, err
}

// BulkMetrics returns the metrics of many containers; failures are per entry.
func (c *Client) BulkMetrics(ctx context.Context, handles []string) (map[string]garden.ContainerMetricsEntry, error) {
	out := map[string]garden.ContainerMetricsEntry{}
	err := c.call(ctx, http.MethodGet, "/containers/bulk_metrics", url.Values{"handles": {strings.Join(handles, ",")}}, nil, &out)
	return out, err
}

// Info returns one container's info.
func (c *Client) Info(ctx context.Context, handle string) (garden.ContainerInfo, error) {
	var info garden.ContainerInfo
	err := c.call(ctx, http.MethodGet, containerPath(handle, "info"), nil, nil, &info)
	return info, err
}

// Stop signals every process of the container (kill: SIGKILL at once).
func (c *Client) Stop(ctx context.Context, handle string, kill bool) error {
	return c.call(ctx, http.MethodPut, containerPath(handle, "stop"), nil, garden.StopRequest{Kill: kill}, nil)
}

// Metrics returns one container's usage.
func (c *Client) Metrics(ctx context.Context, handle string) (garden.Metrics, error) {
	var m garden.Metrics
	err := c.call(ctx, http.MethodGet, containerPath(handle, "metrics"), nil, nil, &m)
	return m, err
}

// SetGraceTime changes the idle time after which the container is reaped.
func (c *Client) SetGraceTime(ctx context.Context, handle string, graceTime time.Duration) error {
	return c.call(ctx, http.MethodPut, containerPath(handle, "grace_time"), nil, int64(graceTime), nil)
}

// Properties returns all of a container's properties.
func (c *Client) Properties(ctx context.Context, handle string) (garden.Properties, error) {
	props := garden.Properties{}
	err := c.call(ctx, http.MethodGet, containerPath(handle, "properties"), nil, nil, &props)
	return props, err
}

// Property returns one property.
func (c *Client) Property(ctx context.Context, handle, name string) (string, error) {
	var v garden.PropertyValue
	err := c.call(ctx, http.MethodGet, containerPath(handle, "properties", name), nil, nil, &v)
	return v.Value, err
}

// SetProperty adds or replaces one property.
func (c *Client) SetProperty(ctx context.Context, handle, name, value string) error {
	return c.call(ctx, http.MethodPut, containerPath(handle, "properties", name), nil, garden.PropertyValue{Value: value}, nil)
}

// RemoveProperty deletes one property.
func (c *Client) RemoveProperty(ctx context.Context, handle, name string) error {
	return c.call(ctx, http.MethodDelete, containerPath(handle, "properties", name), nil, nil, nil)
}

// BandwidthLimits reads the container's bandwidth limits.
func (c *Client) BandwidthLimits(ctx context.Context, handle string) (garden.BandwidthLimits, error) {
	var l garden.BandwidthLimits
	err := c.call(ctx, http.MethodGet, containerPath(handle, "limits", "bandwidth"), nil, nil, &l)
	return l, err
}

// CPULimits reads the container's CPU limits.
func (c *Client) CPULimits(ctx context.Context, handle string) (garden.CPULimits, error) {
	var l garden.CPULimits
	err := c.call(ctx, http.MethodGet, containerPath(handle, "limits", "cpu"), nil, nil, &l)
	return l, err
}

// DiskLimits reads the container's disk limits.
func (c *Client) DiskLimits(ctx context.Context, handle string) (garden.DiskLimits, error) {
	var l garden.DiskLimits
	err := c.call(ctx, http.MethodGet, containerPath(handle, "limits", "disk"), nil, nil, &l)
	return l, err
}

// MemoryLimits reads the container's memory limits.
func (c *Client) MemoryLimits(ctx context.Context, handle string) (garden.MemoryLimits, error) {
	var l garden.MemoryLimits
	err := c.call(ctx, http.MethodGet, containerPath(handle, "limits", "memory"), nil, nil, &l)
	return l, err
}

// NetIn maps hostPort (0: allocate) to containerPort (0: same as the host
// port) and returns the mapping made.
func (c *Client) NetIn(ctx context.Context, handle string, hostPort, containerPort uint32) (uint32, uint32, error) {
	var resp garden.NetInResponse
	err := c.call(ctx, http.MethodPost, containerPath(handle, "net", "in"), nil,
		garden.NetInRequest{Handle: handle, HostPort: hostPort, ContainerPort: containerPort}, &resp)
	return resp.HostPort, resp.ContainerPort, err
}

// NetOut allows egress by one rule.
func (c *Client) NetOut(ctx context.Context, handle string, rule garden.NetOutRule) error {
	return c.call(ctx, http.MethodPost, containerPath(handle, "net", "out"), nil, rule, nil)
}

// BulkNetOut allows egress by several rules.
func (c *Client) BulkNetOut(ctx context.Context, handle string, rules []garden.NetOutRule) error {
	return c.call(ctx, http.MethodPost, containerPath(handle, "net", "out", "bulk"), nil, rules, nil)
}

// StreamIn extracts an uncompressed tar stream under path inside the
// container, as user. The body is sent chunked.
func (c *Client) StreamIn(ctx context.Context, handle, path, user string, tarStream io.Reader) error {
	req, err := c.newRequest(ctx, http.MethodPut, containerPath(handle, "files"),
		url.Values{"destination": {path}, "user": {user}}, io.NopCloser(tarStream), "application/x-tar")
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// StreamOut returns an uncompressed tar of path inside the container, read
// as user. The caller closes it; ctx bounds the whole read.
func (c *Client) StreamOut(ctx context.Context, handle, path, user string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, containerPath(handle, "files"), url.Values{"source": {path}, "user": {user}}, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
