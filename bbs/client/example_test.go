package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
	"google.golang.org/protobuf/encoding/protojson"

	bbsapp "github.com/gavelhq/gavel/bbs/app"
	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/internal/etcdtest"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// exampleBBS runs a private etcd and a plaintext BBS on a free port until
// stop is called: the examples' stand-in for `gavel dev`.
func exampleBBS() (addr string, stop func()) {
	dir, err := os.MkdirTemp("", "gavel-example")
	if err != nil {
		log.Fatal(err)
	}
	etcd, err := etcdtest.StartServer(dir)
	if err != nil {
		log.Fatal(err)
	}
	cfg := bbsapp.DefaultConfig()
	cfg.InsecurePlaintext = true
	cfg.ListenAddress, cfg.DebugAddress = "127.0.0.1:0", "127.0.0.1:0"
	cfg.InstanceID = "example-bbs"
	cfg.Etcd = etcdclient.Config{Endpoints: etcd.Endpoints()}
	cfg.LockTTL, cfg.LockRetryInterval = config.Duration(2*time.Second), config.Duration(100*time.Millisecond)
	b := bbsapp.New(cfg, lager.NewLogger("example"))
	proc := ifrit.Background(b.Runner())
	for deadline := time.Now().Add(30 * time.Second); !b.Held(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			log.Fatal("the example BBS did not become active")
		}
	}
	return b.Addr(), func() {
		proc.Signal(os.Interrupt)
		<-proc.Wait()
		_ = etcd.Stop()
		_ = os.RemoveAll(dir)
	}
}

// Desire an LRP, then look at it and its instances (they wait UNCLAIMED
// here: this example runs no auctioneer or cell).
func Example_desireLRP() {
	addr, stop := exampleBBS()
	defer stop()
	bbs, err := client.New(client.Config{Addresses: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer bbs.Close()
	ctx := context.Background()
	_, err = bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: "web", Domain: "apps", RootFs: "preloaded:cflinuxfs4", Instances: 2, MemoryMb: 64, DiskMb: 128,
		Ports:  []uint32{8080},
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "sh", Args: []string{"-c", "exec python3 -m http.server $PORT"}}}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	got, err := bbs.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: "web"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.GetDesiredLrp().GetProcessGuid(), "desires", got.GetDesiredLrp().GetInstances(), "instances")
	one, err := bbs.GetActualLRP(ctx, &bbsv1.GetActualLRPRequest{ProcessGuid: "web", Index: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("index", one.GetActualLrp().GetKey().GetIndex(), "is", one.GetActualLrp().GetState())
	// Output:
	// web desires 2 instances
	// index 1 is ACTUAL_LRP_STATE_UNCLAIMED
}

// Watch the BBS's events with the client's iterator, from a known revision
// on (a subscriber that resumes after a break does the same).
func Example_watchEvents() {
	addr, stop := exampleBBS()
	defer stop()
	bbs, err := client.New(client.Config{Addresses: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer bbs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := bbs.ListActualLRPs(ctx, &bbsv1.ListActualLRPsRequest{})
	if err != nil {
		log.Fatal(err)
	}
	_, err = bbs.DesireLRP(ctx, &bbsv1.DesireLRPRequest{DesiredLrp: &modelsv1.DesiredLRP{
		ProcessGuid: "worker", Domain: "apps", RootFs: "preloaded:cflinuxfs4", Instances: 1, MemoryMb: 64,
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "/bin/worker"}}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	seen := 0
	for ev, err := range bbs.Events(ctx, &bbsv1.SubscribeEventsRequest{SinceRevision: before.GetRevision()}) {
		if err != nil {
			log.Fatal(err)
		}
		switch e := ev.GetEvent().(type) {
		case *modelsv1.Event_DesiredLrpCreated:
			fmt.Println("desired LRP created:", e.DesiredLrpCreated.GetDesiredLrp().GetKey().GetProcessGuid())
			seen++
		case *modelsv1.Event_ActualLrpInstanceCreated:
			a := e.ActualLrpInstanceCreated.GetActualLrp()
			fmt.Println("instance created:", a.GetKey().GetProcessGuid(), a.GetKey().GetIndex())
			seen++
		}
		if seen == 2 {
			break
		}
	}
	// Output:
	// desired LRP created: worker
	// instance created: worker 0
}

// Run a task whose completion is POSTed to a callback URL. The cell's two
// calls (StartTask, CompleteTask) are made here by hand, as a cell would.
func Example_taskWithCallback() {
	addr, stop := exampleBBS()
	defer stop()
	done := make(chan *modelsv1.TaskCallbackResponse, 1)
	callback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body is the protobuf JSON of TaskCallbackResponse (proto field names).
		data, _ := io.ReadAll(r.Body)
		var body modelsv1.TaskCallbackResponse
		if err := protojson.Unmarshal(data, &body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		done <- &body
	}))
	defer callback.Close()
	bbs, err := client.New(client.Config{Addresses: []string{addr}})
	if err != nil {
		log.Fatal(err)
	}
	defer bbs.Close()
	ctx := context.Background()
	_, err = bbs.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: "report", Domain: "jobs", Definition: &modelsv1.TaskDefinition{
		RootFs: "preloaded:cflinuxfs4", MemoryMb: 64, CompletionCallbackUrl: callback.URL, ResultFile: "/tmp/out",
		Action: &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{Path: "sh", Args: []string{"-c", "echo 42 > /tmp/out"}}}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := bbs.StartTask(ctx, &bbsv1.StartTaskRequest{TaskGuid: "report", CellId: "cell-1"}); err != nil {
		log.Fatal(err)
	}
	if _, err := bbs.CompleteTask(ctx, &bbsv1.CompleteTaskRequest{TaskGuid: "report", CellId: "cell-1", Result: "42\n"}); err != nil {
		log.Fatal(err)
	}
	select {
	case cb := <-done:
		fmt.Printf("callback: task %s failed=%v result=%q\n", cb.GetTaskGuid(), cb.GetFailed(), cb.GetResult())
	case <-time.After(30 * time.Second):
		fmt.Println("no callback")
	}
	// Output:
	// callback: task report failed=false result="42\n"
}
