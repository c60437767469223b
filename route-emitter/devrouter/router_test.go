package devrouter_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/internal/freeport"
	"github.com/gavelhq/gavel/route-emitter/broadcast"
	"github.com/gavelhq/gavel/route-emitter/devrouter"
	"github.com/gavelhq/gavel/route-emitter/internal/natstest"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
)

type fixture struct {
	t      *testing.T
	router *devrouter.Router
	conn   *nats.Conn
}

func start(t *testing.T, cfg devrouter.Config) *fixture {
	t.Helper()
	srv := natstest.Start(t)
	cfg.NATSURL = srv.URL("", "")
	cfg.ListenAddress = "127.0.0.1:0"
	r := devrouter.New(cfg, lager.NewLogger("test"))
	p := ifrit.Invoke(r)
	t.Cleanup(func() { p.Signal(os.Interrupt); <-p.Wait() })
	conn, err := nats.Connect(cfg.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return &fixture{t: t, router: r, conn: conn}
}

func (f *fixture) publish(subject string, m routingtable.RegistryMessage, wantEndpoints int, route string) {
	f.t.Helper()
	data, _ := json.Marshal(m)
	if err := f.conn.Publish(subject, data); err != nil {
		f.t.Fatal(err)
	}
	f.waitEndpoints(route, wantEndpoints)
}

func (f *fixture) waitEndpoints(route string, n int) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(f.router.Endpoints()[route]) != n {
		if time.Now().After(deadline) {
			f.t.Fatalf("route %s has endpoints %v, want %d", route, f.router.Endpoints()[route], n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) get(host, path string) (int, string, http.Header) {
	f.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+f.router.Addr()+path, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// backend answers "NAME fwd-for|fwd-proto|fwd-host|host".
func backend(t *testing.T, name string) (*httptest.Server, string, uint32) {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s|%s|%s|%s", name, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Host)
	}))
	t.Cleanup(s.Close)
	host, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return s, host, uint32(p)
}

func TestRoutesRoundRobinWithForwardedHeadersThen404(t *testing.T) {
	f := start(t, devrouter.Config{})
	_, h1, p1 := backend(t, "one")
	_, h2, p2 := backend(t, "two")
	f.publish(devrouter.RegisterSubject, routingtable.RegistryMessage{Host: h1, Port: p1, URIs: []string{"Hello.example.com"}, App: "hello", PrivateInstanceIndex: "0"}, 1, "hello.example.com")
	f.publish(devrouter.RegisterSubject, routingtable.RegistryMessage{Host: h2, Port: p2, URIs: []string{"hello.example.com"}, App: "hello", PrivateInstanceIndex: "1"}, 2, "hello.example.com")
	seen := map[string]int{}
	for range 4 {
		code, body, _ := f.get("hello.example.com", "/")
		if code != 200 {
			t.Fatalf("got %d: %s", code, body)
		}
		name, headers, _ := strings.Cut(body, " ")
		seen[name]++
		if headers != "127.0.0.1|http|hello.example.com|hello.example.com" {
			t.Fatalf("backend saw X-Forwarded-For|-Proto|-Host|Host = %q", headers)
		}
	}
	if seen["one"] != 2 || seen["two"] != 2 {
		t.Fatalf("not round-robin: %v", seen)
	}
	f.publish(devrouter.UnregisterSubject, routingtable.RegistryMessage{Host: h1, Port: p1, URIs: []string{"hello.example.com"}}, 1, "hello.example.com")
	if _, body, _ := f.get("hello.example.com", "/"); !strings.HasPrefix(body, "two ") {
		t.Fatalf("after unregistering one, got %q", body)
	}
	f.publish(devrouter.UnregisterSubject, routingtable.RegistryMessage{Host: h2, Port: p2, URIs: []string{"hello.example.com"}}, 0, "hello.example.com")
	code, body, hdr := f.get("hello.example.com:8080", "/")
	if code != 404 || !strings.Contains(body, `no route is registered for host "hello.example.com:8080"`) || hdr.Get("X-Cf-Routererror") != "unknown_route" {
		t.Fatalf("after removal: %d %q %v", code, body, hdr)
	}
}

func TestLongestPathPrefixAnd502NamesTheEndpoint(t *testing.T) {
	f := start(t, devrouter.Config{})
	_, h1, p1 := backend(t, "root")
	_, h2, p2 := backend(t, "api")
	f.publish(devrouter.RegisterSubject, routingtable.RegistryMessage{Host: h1, Port: p1, URIs: []string{"app.example.com"}}, 1, "app.example.com")
	f.publish(devrouter.RegisterSubject, routingtable.RegistryMessage{Host: h2, Port: p2, URIs: []string{"app.example.com/api"}}, 1, "app.example.com/api")
	if _, body, _ := f.get("app.example.com", "/api/v1/x"); !strings.HasPrefix(body, "api ") {
		t.Fatalf("/api/v1/x went to %q", body)
	}
	if _, body, _ := f.get("app.example.com", "/apiary"); !strings.HasPrefix(body, "root ") {
		t.Fatalf("/apiary went to %q", body)
	}
	deadPort, err := freeport.New().Port() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	dead := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: deadPort}
	f.publish(devrouter.RegisterSubject, routingtable.RegistryMessage{Host: "127.0.0.1", Port: uint32(dead.Port), URIs: []string{"dead.example.com"}, App: "dead", PrivateInstanceID: "ig-1", PrivateInstanceIndex: "3"}, 1, "dead.example.com")
	code, body, hdr := f.get("dead.example.com", "/")
	if code != 502 || !strings.Contains(body, dead.String()) || !strings.Contains(body, "index 3") || hdr.Get("X-Cf-Routererror") != "endpoint_failure" {
		t.Fatalf("dead endpoint: %d %q", code, body)
	}
}

func TestStaleEndpointsArePrunedAndTheTableIsBounded(t *testing.T) {
	f := start(t, devrouter.Config{StaleThreshold: 300 * time.Millisecond, PruneInterval: 50 * time.Millisecond, MaxEndpoints: 3})
	_, h, p := backend(t, "one")
	f.publish(devrouter.RegisterSubject, routingtable.RegistryMessage{Host: h, Port: p, URIs: []string{"a.example.com"}}, 1, "a.example.com")
	f.waitEndpoints("a.example.com", 0) // pruned after 300 ms without a new registration
	// A message's own stale threshold wins over the default.
	f.publish(devrouter.RegisterSubject, routingtable.RegistryMessage{Host: h, Port: p, URIs: []string{"a.example.com"}, StaleThresholdInSeconds: 60}, 1, "a.example.com")
	time.Sleep(500 * time.Millisecond)
	f.waitEndpoints("a.example.com", 1)
	for i := range 5 {
		data, _ := json.Marshal(routingtable.RegistryMessage{Host: "127.0.0.1", Port: uint32(1000 + i), URIs: []string{"b.example.com"}, StaleThresholdInSeconds: 60})
		_ = f.conn.Publish(devrouter.RegisterSubject, data)
	}
	f.waitEndpoints("b.example.com", 2) // 3 in all: the rest dropped
	time.Sleep(200 * time.Millisecond)
	f.waitEndpoints("b.example.com", 2)
}

func TestAnswersGreetWithItsInterval(t *testing.T) {
	f := start(t, devrouter.Config{RegisterInterval: 7 * time.Second})
	f.router.Addr()
	msg, err := f.conn.Request(broadcast.GreetSubject, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var start broadcast.StartMessage
	if err := json.Unmarshal(msg.Data, &start); err != nil {
		t.Fatal(err)
	}
	if start.MinimumRegisterIntervalInSeconds != 7 || start.ID == "" {
		t.Fatalf("greet answer %+v", start)
	}
}
