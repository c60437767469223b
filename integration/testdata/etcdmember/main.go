// Command etcdmember runs one member of a multi-member etcd cluster (etcd's
// embed package, the version go.mod pins) as its own OS process, so the HA
// tests can SIGKILL and SIGSTOP a member and raft runs for real between
// processes over loopback. It prints "ready" once the member serves clients
// and stops on SIGTERM or SIGINT.
//
//	etcdmember -name m1 -data-dir DIR -client-url http://127.0.0.1:P1 \
//	  -peer-url http://127.0.0.1:P2 -initial-cluster m1=http://...,m2=http://... \
//	  [-initial-cluster-state new|existing] [-quota-backend-bytes N] \
//	  [-heartbeat-ms 20] [-election-ms 200]
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	name := flag.String("name", "", "member name (required)")
	dataDir := flag.String("data-dir", "", "data directory (required)")
	clientURL := flag.String("client-url", "", "client URL to listen on and advertise (required)")
	peerURL := flag.String("peer-url", "", "peer URL to listen on and advertise (required)")
	initialCluster := flag.String("initial-cluster", "", "name=peerURL,... of every member (required)")
	state := flag.String("initial-cluster-state", embed.ClusterStateFlagNew, "new or existing")
	quota := flag.Int64("quota-backend-bytes", 256<<20, "backend quota in bytes")
	heartbeat := flag.Uint("heartbeat-ms", 20, "raft heartbeat interval in milliseconds")
	election := flag.Uint("election-ms", 200, "raft election timeout in milliseconds")
	flag.Parse()
	if *name == "" || *dataDir == "" || *clientURL == "" || *peerURL == "" || *initialCluster == "" {
		fmt.Fprintln(os.Stderr, "etcdmember: -name, -data-dir, -client-url, -peer-url and -initial-cluster are required")
		os.Exit(2)
	}
	cu, err := url.Parse(*clientURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember: -client-url:", err)
		os.Exit(2)
	}
	pu, err := url.Parse(*peerURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember: -peer-url:", err)
		os.Exit(2)
	}
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = *initialCluster
	cfg.ClusterState = *state
	cfg.InitialClusterToken = "gavel-ha"
	cfg.QuotaBackendBytes = *quota
	cfg.TickMs, cfg.ElectionMs = *heartbeat, *election
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	// No auto-compaction (etcd's default): compaction and defragmentation
	// are the operator's (and the test's) to run.

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	}
	select {
	case <-e.Server.ReadyNotify():
		fmt.Println("ready")
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "etcdmember: not ready within 60s")
		os.Exit(1)
	}
	select {
	case <-signals:
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	}
	e.Close()
}
