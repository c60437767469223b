package emitter_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	"github.com/gavelhq/gavel/route-emitter/emitter"
	"github.com/gavelhq/gavel/route-emitter/internal/natstest"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
)

// benchLRPs × 2 hostnames × 2 instances = 100,000 routes.
const benchLRPs = 25_000

func benchInput() ([]routingtable.Desired, []routingtable.Actual) {
	desired := make([]routingtable.Desired, 0, benchLRPs)
	actuals := make([]routingtable.Actual, 0, 2*benchLRPs)
	for i := range benchLRPs {
		guid := fmt.Sprintf("process-%06d", i)
		desired = append(desired, routingtable.Desired{
			ProcessGUID: guid, Domain: "apps", LogGUID: "log-" + guid, Instances: 2,
			Routes:     []routingtable.Route{{Hostname: guid + ".apps.example.com", Port: 8080}, {Hostname: guid + ".example.org", Port: 8080}},
			MetricTags: map[string]routingtable.MetricTag{"space": {Static: "space-1"}},
			Tag:        routingtable.Tag{Epoch: "e", Index: 1},
		})
		for j := range int32(2) {
			actuals = append(actuals, routingtable.Actual{
				ProcessGUID: guid, Index: j, InstanceGUID: fmt.Sprintf("%s-%d", guid, j),
				Address: fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256),
				Ports:   []*modelsv1.PortMapping{{ContainerPort: 8080, HostPort: 61000 + uint32(j), HostTlsProxyPort: 62000 + uint32(j)}},
				Since:   1, AvailabilityZone: "z1", Tag: routingtable.Tag{Epoch: "a", Index: 1},
			})
		}
	}
	return desired, actuals
}

// discard is a publisher that drops messages: the cost of building and encoding alone.
type discard struct{}

func (discard) Publish(string, []byte) error { return nil }

// BenchmarkBuildAndEmit100kRoutes builds the table of 100k routes from
// scratch (a sync), diffs it against an empty table and emits every
// registration; "nats" publishes to an embedded NATS server and flushes.
func BenchmarkBuildAndEmit100kRoutes(b *testing.B) {
	desired, actuals := benchInput()
	run := func(b *testing.B, pub emitter.Publisher, flush func() error) {
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			tbl := routingtable.Build(routingtable.Options{StaleThresholdSeconds: 120}, desired, actuals)
			msgs := routingtable.Diff(routingtable.New(routingtable.Options{}), tbl)
			built := time.Since(start)
			if len(msgs.Registrations) != 4*benchLRPs {
				b.Fatalf("got %d registrations, want %d", len(msgs.Registrations), 4*benchLRPs)
			}
			e := emitter.New(emitter.Options{Publisher: pub})
			if err := e.Emit(msgs); err != nil {
				b.Fatal(err)
			}
			if flush != nil {
				if err := flush(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(built.Milliseconds()), "build-ms")
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(4*benchLRPs), "ns/route")
	}
	b.Run("discard", func(b *testing.B) { run(b, discard{}, nil) })
	b.Run("nats", func(b *testing.B) {
		srv := natstest.Start(b)
		conn, err := nats.Connect(srv.URL("", ""), nats.ReconnectBufSize(-1))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		run(b, conn, func() error { return conn.FlushTimeout(time.Minute) })
	})
}

// BenchmarkRebroadcast100kRoutes is the periodic heartbeat: every registration of a built table.
func BenchmarkRebroadcast100kRoutes(b *testing.B) {
	desired, actuals := benchInput()
	tbl := routingtable.Build(routingtable.Options{}, desired, actuals)
	e := emitter.New(emitter.Options{Publisher: discard{}})
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Broadcast(tbl.Registrations()); err != nil {
			b.Fatal(err)
		}
	}
}
