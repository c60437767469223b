// Command etcd runs one embedded etcd (internal/etcdtest: free loopback ports,
// no fsync, short raft ticks) as its own OS process for the integration suite.
// It prints "endpoints URL[,URL...]" once etcd serves and stops on SIGTERM or
// SIGINT.
//
//	etcd -data-dir DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gavelhq/gavel/internal/etcdtest"
)

func main() {
	dataDir := flag.String("data-dir", "", "etcd data directory (required)")
	flag.Parse()
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd: -data-dir is required")
		os.Exit(2)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	srv, err := etcdtest.StartServer(*dataDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
	fmt.Printf("endpoints %s\n", strings.Join(srv.Endpoints(), ","))
	<-signals
	if err := srv.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "etcd: stop:", err)
		os.Exit(1)
	}
}
