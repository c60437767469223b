package integration_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gavelhq/gavel/internal/tlsconfig"
	"github.com/gavelhq/gavel/internal/tlstest"
	"github.com/gavelhq/gavel/locket"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
)

// Every gRPC hop runs mutual TLS with the default configs: the route emitter
// (its own process, dialling the BBS with its certificate) registers a
// routed LRP's instances on NATS, the CLI with its certificate shows them, no
// daemon logs a plaintext warning, and every gRPC server — each BBS, the
// auctioneer, each rep — serves a client with a certificate from the CA and
// refuses one without a certificate, one with a certificate from another CA
// and a plaintext one.
func TestMutualTLSOnEveryHop(t *testing.T) {
	t.Parallel()
	c := start(t, options{routeEmitter: true})

	nc, err := nats.Connect(c.nats.ClientURL())
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	defer nc.Close()
	registered := make(chan routingtable.RegistryMessage, 64)
	if _, err := nc.Subscribe("router.register", func(m *nats.Msg) {
		var msg routingtable.RegistryMessage
		if json.Unmarshal(m.Data, &msg) == nil {
			select {
			case registered <- msg:
			default:
			}
		}
	}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("nats flush: %v", err)
	}

	c.desire(appLRP("routed", 2, func(d *modelsv1.DesiredLRP) {
		d.Routes = map[string]string{routingtable.CFRouterKey: routingtable.MarshalRoutes(routingtable.Route{Hostname: "routed.example.com", Port: 8080})}
	}))
	rows := c.waitRunning("routed", 2, placeTimeout)
	checkAnswers(t, rows)
	want := map[string]bool{}
	for _, a := range rows {
		want[hostAddr(a)] = true
	}
	deadline := time.After(30 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-registered:
			addr := net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
			if len(m.URIs) == 1 && m.URIs[0] == "routed.example.com" {
				delete(want, addr)
			}
		case <-deadline:
			t.Fatalf("the route emitter did not register routed.example.com for %v within 30 s", want)
		}
	}

	out, err := c.gavel("lrp", "routed")
	if err != nil || !strings.Contains(out, "RUNNING") {
		t.Fatalf("gavel lrp over mTLS: %v\n%s", err, out)
	}

	for _, d := range c.daemons {
		data, err := os.ReadFile(d.logPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "-without-tls") {
			t.Errorf("%s logged a plaintext warning", d.name)
		}
	}

	servers := map[string]string{}
	for i, addr := range c.bbsAddrs {
		servers[fmt.Sprintf("bbs-%d", i)] = addr
	}
	lock, err := locket.FetchLock(ctx(t), c.etcd, "", "auctioneer")
	if err != nil {
		t.Fatalf("auctioneer lock: %v", err)
	}
	servers["auctioneer"] = string(lock.Value)
	cells, err := c.bbsc.ListCells(ctx(t), &bbsv1.ListCellsRequest{})
	if err != nil {
		t.Fatalf("list cells: %v", err)
	}
	for _, cell := range cells.GetCells() {
		servers[cell.GetCellId()] = cell.GetRepAddress()
	}
	if len(servers) != len(c.bbsAddrs)+1+len(c.reps) {
		t.Fatalf("servers %v", servers)
	}

	rogue := tlstest.NewCA(t, "rogue").Issue(t, "intruder")
	rogue.CAFile = c.certs["client"].CAFile // trusts the servers; only its own certificate is foreign
	clients := []struct {
		name  string
		creds credentials.TransportCredentials
		ok    bool
	}{
		{"certificate from the CA", credentials.NewTLS(c.clientTLS), true},
		{"no certificate", tlstest.Creds(t, tlsconfig.Files{CAFile: c.certs["client"].CAFile}, ""), false},
		{"certificate from another CA", tlstest.Creds(t, rogue, ""), false},
		{"plaintext", insecure.NewCredentials(), false},
	}
	for name, addr := range servers {
		for _, cl := range clients {
			err := tlstest.HealthCheck(addr, cl.creds)
			if cl.ok && err != nil {
				t.Errorf("%s at %s refused a client with a %s: %v", name, addr, cl.name, err)
			}
			if !cl.ok && err == nil {
				t.Errorf("%s at %s served a client with %s", name, addr, cl.name)
			}
		}
	}
}
