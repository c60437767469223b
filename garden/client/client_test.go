package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/garden/client"
)

func newClient(t *testing.T, h http.Handler) *client.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := client.New(client.Options{Address: strings.TrimPrefix(srv.URL, "http://"),
		Header: http.Header{client.RequestIDHeader: {"req-1"}}})
	require.NoError(t, err)
	return c
}

func TestNewValidatesOptions(t *testing.T) {
	_, err := client.New(client.Options{})
	require.Error(t, err)
	_, err = client.New(client.Options{Network: "udp", Address: "x"})
	require.Error(t, err)
}

func TestErrorBodiesBecomeTypedErrors(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		check  func(t *testing.T, err error)
	}{
		{"container not found", 404, `{"Type":"ContainerNotFoundError","Message":"unknown handle: h","Handle":"h","ProcessID":"","Binary":""}`,
			func(t *testing.T, err error) {
				var e garden.ContainerNotFoundError
				require.ErrorAs(t, err, &e)
				require.Equal(t, "h", e.Handle)
			}},
		{"type wins over status", 500, `{"Type":"ProcessNotFoundError","Message":"unknown process: p","Handle":"","ProcessID":"p","Binary":""}`,
			func(t *testing.T, err error) { require.ErrorIs(t, err, garden.ProcessNotFoundError{ProcessID: "p"}) }},
		{"service unavailable", 500, `{"Type":"ServiceUnavailableError","Message":"busy","Handle":"","ProcessID":"","Binary":""}`,
			func(t *testing.T, err error) {
				var e garden.ServiceUnavailableError
				require.ErrorAs(t, err, &e)
				require.Equal(t, "busy", e.Cause)
			}},
		{"unrecoverable", 500, `{"Type":"UnrecoverableError","Message":"disk gone","Handle":"","ProcessID":"","Binary":""}`,
			func(t *testing.T, err error) {
				var e garden.UnrecoverableError
				require.ErrorAs(t, err, &e)
				require.Equal(t, "disk gone", e.Symptom)
			}},
		{"generic", 500, `{"Type":"","Message":"container already being destroyed","Handle":"","ProcessID":"","Binary":""}`,
			func(t *testing.T, err error) {
				var e *garden.Error
				require.ErrorAs(t, err, &e)
				require.EqualError(t, err, garden.MessageAlreadyBeingDestroyed)
			}},
		{"not JSON", 404, "404 page not found\n",
			func(t *testing.T, err error) { require.ErrorContains(t, err, "bad response: status 404") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			tc.check(t, c.Ping(context.Background()))
		})
	}
}

func TestRequestsCarryHeadersAndContext(t *testing.T) {
	got := make(chan *http.Request, 1)
	c := newClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		_, _ = io.WriteString(w, "{}\n")
	}))
	require.NoError(t, c.Ping(context.Background()))
	r := <-got
	require.Equal(t, "req-1", r.Header.Get(client.RequestIDHeader))
	require.Equal(t, "api", r.Host)
	require.True(t, r.Close, "keep-alive is off")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, c.Ping(ctx), context.Canceled)
}

func TestRunSetupHonoursContext(t *testing.T) {
	// A server that accepts and never answers.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c, err := client.New(client.Options{Address: lis.Addr().String()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Run(ctx, "h", garden.ProcessSpec{Path: "true"}, client.ProcessIO{})
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded), err.Error())
}
