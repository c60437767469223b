package cli

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/tedsuo/ifrit"

	"github.com/gavelhq/gavel/devcluster"
	"github.com/gavelhq/gavel/internal/logging"
)

func newDevCommand() *cobra.Command {
	var (
		opts           devcluster.Options
		fresh, verbose bool
		clientConfig   string
		name           string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole Gavel on this machine: etcd, NATS, BBS, auctioneer, 3 cells, route emitter (Ctrl-C stops)",
		Args:  cobra.NoArgs,
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "run a named cluster beside others: its own data dir (.gavel-NAME), free ports for every address not given, its own client config (select it with gavel --cluster NAME or GAVEL_CLUSTER=NAME)")
	f.StringVar(&opts.DataDir, "data-dir", ".gavel", "where state, containers and the log live (kept across restarts; default .gavel-NAME with --name)")
	f.BoolVar(&fresh, "fresh", false, "delete the data dir first")
	f.StringVar(&opts.BBSAddress, "bbs-address", "127.0.0.1:8889", "BBS gRPC address")
	f.IntVar(&opts.NATSPort, "nats-port", 4222, "embedded NATS server port")
	f.StringVar(&opts.DebugAddress, "debug-address", "127.0.0.1:17017", "the BBS's metrics and pprof address")
	f.StringVar(&opts.RouterAddress, "router-address", devcluster.DefaultRouterAddress, "the dev router's HTTP address (routes by Host header to the apps pushed with --route)")
	f.IntVar(&opts.Cells, "cells", 3, "number of cells")
	f.Uint32Var(&opts.PortRangeStart, "port-range-start", 61000, "the first host port given to containers; each cell takes the next 1000 (two clusters on one machine, one of them runc, need ranges apart: runc's port mappings also catch loopback connections)")
	f.BoolVar(&verbose, "verbose", false, "stream the components' logs to stderr as well as the log file")
	f.StringVar(&clientConfig, "client-config", "", "where to write the CLI's config (default $GAVEL_CONFIG or ~/.gavel/config.json)")
	f.StringVar(&opts.Backend, "backend", "process", `the cells' container backend: "process" (no isolation), "runc" (real containers: root, runc and the CNI plugins) or "garden" (each cell drives a Garden server over runc)`)
	f.IntVar(&opts.Bridge.PortBase, "bridge-port-base", 0, "cc-bridge ports: controller double, stager, tps-listener, cc-uploader, file-server, nsync-listener on this port and the next 5 (0: free ports)")
	f.StringVar(&opts.EncryptionKeyFile, "encryption-key-file", "", "a file of 32 random bytes: the BBS seals records in etcd with it (AES-256-GCM, key label \"dev\")")
	f.Int64Var(&opts.AuctionSeed, "auction-seed", 0, "the auctioneer's tie-breaking seed: auction n uses it + n (its log's auction-completed lines show each), so gavel sim capture and gavel sim run can replay it")
	f.StringVar(&opts.KeeperPath, "keeper-path", keeperAuto, `the cells' gavel-keeper binary ("auto": the one beside gavel if there is one; "": gavel re-executes itself as the keeper)`)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if opts.PortRangeStart < 1024 || uint64(opts.PortRangeStart)+uint64(opts.Cells)*1000-1 > 65535 {
			return fmt.Errorf("--port-range-start %d: the %d cells' ports (1000 each) must lie within 1024-65535", opts.PortRangeStart, opts.Cells)
		}
		opts.Bridge.LifecyclePath = siblingLifecycle()
		if opts.KeeperPath == keeperAuto {
			opts.KeeperPath = siblingKeeper()
		}
		switch opts.Backend {
		case "process":
		case "runc", "garden":
			if err := devcluster.CheckContainerHost(""); err != nil {
				return fmt.Errorf("--backend %s: %w", opts.Backend, err)
			}
		default:
			return fmt.Errorf("--backend: must be one of %v (got %q)", devcluster.Backends(), opts.Backend)
		}
		if err := applyName(cmd, name, &opts, &clientConfig); err != nil {
			return err
		}
		if err := checkPorts(opts); err != nil {
			return err
		}
		lock, err := devcluster.LockDataDir(opts.DataDir, name)
		if err != nil {
			return err
		}
		defer lock.Release()
		if fresh {
			if err := devcluster.ClearDataDir(opts.DataDir); err != nil {
				return fmt.Errorf("--fresh: %w", err)
			}
		}
		logPath := filepath.Join(opts.DataDir, "gavel.log")
		logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("log file: %w", err)
		}
		defer logFile.Close()
		var w io.Writer = logFile
		if verbose {
			w = io.MultiWriter(logFile, cmd.ErrOrStderr())
		}
		logger, err := logging.NewWithWriter("gavel-dev", "info", w)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "starting Gavel (logs in %s)...\n", logPath)
		cluster := devcluster.New(opts, logger)
		process := ifrit.Background(cluster.Runner())
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sigs)
		select {
		case <-process.Ready():
		case err := <-process.Wait():
			return fmt.Errorf("start failed: %w (see %s)", err, logPath)
		case sig := <-sigs:
			process.Signal(sig)
			<-process.Wait()
			return fmt.Errorf("interrupted while starting")
		}
		info := cluster.Info()
		if err := lock.Record(devcluster.Holder{PID: os.Getpid(), Name: name, Addresses: map[string]string{
			"bbs": info.BBSAddress, "nats": info.NATS, "debug": info.BBSDebug, "router": info.Router,
		}}); err != nil {
			fmt.Fprintf(out, "warning: %v\n", err)
		}
		if clientConfig == "" {
			clientConfig = DefaultClientConfigPath()
		}
		if err := WriteClientConfig(clientConfig, ClientConfig{BBSAddresses: []string{info.BBSAddress}}); err != nil {
			fmt.Fprintf(out, "warning: could not write the client config: %v\n", err)
		}
		printDevInfo(out, info, opts.Backend, clientConfig)
		select {
		case sig := <-sigs:
			fmt.Fprintln(out, "stopping...")
			process.Signal(sig)
			if err := <-process.Wait(); err != nil {
				return fmt.Errorf("stopped with an error: %w (see %s)", err, logPath)
			}
			fmt.Fprintln(out, "stopped")
			return nil
		case err := <-process.Wait():
			if err == nil {
				return fmt.Errorf("a component stopped on its own (see %s)", logPath)
			}
			return fmt.Errorf("a component failed: %w (see %s)", err, logPath)
		}
	}
	return cmd
}

// clusterNameRule is what --name and --cluster accept.
var clusterNameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

func checkClusterName(flag, name string) error {
	if !clusterNameRule.MatchString(name) {
		return fmt.Errorf("%s: must be 1 to 32 lowercase letters, digits or dashes, starting with a letter or digit (got %q)", flag, name)
	}
	return nil
}

// applyName gives a named cluster its own data dir, client config and free
// ports for every address whose flag was not given.
func applyName(cmd *cobra.Command, name string, opts *devcluster.Options, clientConfig *string) error {
	if name == "" {
		return nil
	}
	if err := checkClusterName("--name", name); err != nil {
		return err
	}
	f := cmd.Flags()
	if !f.Changed("data-dir") {
		opts.DataDir = ".gavel-" + name
	}
	if *clientConfig == "" {
		*clientConfig = ClusterClientConfigPath(name)
	}
	// Ports for the addresses not given, from below the ephemeral range so
	// that no component's port-0 bind takes one before the cluster binds it.
	ephemeral, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	ports, err := devcluster.NamedPorts(name, 4, string(ephemeral))
	if err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	if !f.Changed("bbs-address") {
		opts.BBSAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	}
	if !f.Changed("debug-address") {
		opts.DebugAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	}
	if !f.Changed("router-address") {
		opts.RouterAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
	}
	if !f.Changed("nats-port") {
		opts.NATSPort = ports[3]
	}
	return nil
}

// checkPorts refuses, naming the flag to change, an address another process
// already listens on (before anything starts, so no component's exit trace
// hides the reason).
func checkPorts(opts devcluster.Options) error {
	checks := []struct{ flag, addr string }{
		{"--bbs-address", opts.BBSAddress},
		{"--debug-address", opts.DebugAddress},
		{"--router-address", opts.RouterAddress},
		{"--nats-port", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.NATSPort))},
	}
	for _, c := range checks {
		if strings.HasSuffix(c.addr, ":0") || strings.HasSuffix(c.addr, ":-1") {
			continue
		}
		l, err := net.Listen("tcp", c.addr)
		if err != nil {
			return fmt.Errorf("%s: %s is taken (%v): pass another with %s, or use --name NAME to run a cluster on free ports", c.flag, c.addr, err, c.flag)
		}
		l.Close()
	}
	return nil
}

func printDevInfo(w io.Writer, info devcluster.Info, backend, clientConfig string) {
	fmt.Fprintf(w, "Gavel is running.\n\n")
	fmt.Fprintf(w, "  BBS            %s (metrics and pprof on %s)\n", info.BBSAddress, info.BBSDebug)
	fmt.Fprintf(w, "  etcd           %s\n", info.Etcd[0])
	fmt.Fprintf(w, "  auctioneer     %s\n", info.Auctioneer)
	for _, c := range info.Cells {
		fmt.Fprintf(w, "  %-14s %s (zone %s, %s backend)\n", c.ID, c.Address, c.Zone, backend)
	}
	fmt.Fprintf(w, "  NATS           %s (route emitter registers routes here)\n", info.NATS)
	for _, line := range info.Bridge.Lines() {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintf(w, "  router         http://%s (routes by Host header: curl -H 'Host: hello.example.com' %s)\n", info.Router, info.Router)
	fmt.Fprintf(w, "  data dir       %s\n", info.DataDir)
	fmt.Fprintf(w, "\nThe CLI is configured (%s). Try:\n", clientConfig)
	fmt.Fprintf(w, "  gavel push hello --command 'exec python3 -m http.server $PORT' --instances 2 --route hello.example.com\n  gavel wait hello --running 2\n  curl -H 'Host: hello.example.com' %s/\n  gavel logs hello\n\nCtrl-C stops everything.\n", info.Router)
}

// keeperAuto is --keeper-path's default: look for gavel-keeper beside gavel.
const keeperAuto = "auto"

// siblingKeeper is the gavel-keeper installed beside the running gavel
// binary (make build puts both in bin/), or "" when there is none.
func siblingKeeper() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	path := filepath.Join(filepath.Dir(exe), "gavel-keeper")
	if info, err := os.Stat(path); err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return ""
	}
	return path
}
