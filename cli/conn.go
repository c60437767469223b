package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/tlsconfig"
)

// ClientConfig is the file `gavel dev` writes so that the CLI needs no flags.
type ClientConfig struct {
	// BBSAddresses are the BBS replicas' host:port.
	BBSAddresses []string `json:"bbs_addresses"`
	// TLS is the client's certificate and the CA to trust; empty for plaintext.
	TLS tlsconfig.Files `json:"tls"`
}

// DefaultClientConfigPath is $GAVEL_CONFIG, else ~/.gavel/config.json.
func DefaultClientConfigPath() string {
	if p := os.Getenv("GAVEL_CONFIG"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".gavel/config.json"
	}
	return filepath.Join(home, ".gavel", "config.json")
}

// ClusterClientConfigPath is the client config of the dev cluster started
// with --name NAME: clusters/NAME.json beside DefaultClientConfigPath.
func ClusterClientConfigPath(name string) string {
	return filepath.Join(filepath.Dir(DefaultClientConfigPath()), "clusters", name+".json")
}

// WriteClientConfig writes a client config file.
func WriteClientConfig(path string, cfg ClientConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write client config: %w", err)
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

// conn holds the flags every BBS command shares and opens the client.
type conn struct {
	addresses []string
	config    string
	cluster   string
	tls       tlsconfig.Files
	plaintext bool // set by client: no TLS files were given
	json      bool
	timeout   time.Duration
	out       io.Writer
}

// addConnFlags registers the connection and output flags on cmd.
func addConnFlags(cmd *cobra.Command) *conn {
	c := &conn{}
	f := cmd.Flags()
	f.StringSliceVar(&c.addresses, "bbs-address", nil, "BBS host:port (repeatable; default from the client config written by gavel dev)")
	f.StringVar(&c.config, "config", "", "client config file (default $GAVEL_CONFIG or ~/.gavel/config.json)")
	f.StringVar(&c.cluster, "cluster", "", "the dev cluster started with gavel dev --name NAME (default $GAVEL_CLUSTER)")
	f.StringVar(&c.tls.CAFile, "ca-file", "", "CA certificate to verify the BBS")
	f.StringVar(&c.tls.CertFile, "cert-file", "", "client certificate for mTLS")
	f.StringVar(&c.tls.KeyFile, "key-file", "", "client key for mTLS")
	f.BoolVar(&c.json, "json", false, "print one JSON object per line (proto field names)")
	f.DurationVar(&c.timeout, "timeout", 30*time.Second, "time limit of the command's calls")
	return c
}

// client opens the BBS client from flags, else the client config file.
func (c *conn) client(cmd *cobra.Command) (*client.Client, error) {
	c.out = cmd.OutOrStdout()
	addrs, files := c.addresses, c.tls
	if len(addrs) == 0 {
		path := c.config
		cluster, flag := c.cluster, "--cluster"
		if cluster == "" {
			cluster, flag = os.Getenv("GAVEL_CLUSTER"), "GAVEL_CLUSTER"
		}
		if cluster != "" && path == "" {
			if err := checkClusterName(flag, cluster); err != nil {
				return nil, err
			}
			path = ClusterClientConfigPath(cluster)
			if _, err := os.Stat(path); err != nil {
				return nil, fmt.Errorf("%s %s: no client config at %s (is gavel dev --name %s running?)", flag, cluster, path, cluster)
			}
		}
		if path == "" {
			path = DefaultClientConfigPath()
		}
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			var cfg ClientConfig
			if err := json.Unmarshal(data, &cfg); err != nil {
				return nil, fmt.Errorf("client config %s: %w", path, err)
			}
			addrs = cfg.BBSAddresses
			if !files.Enabled() {
				files = cfg.TLS
			}
		case errors.Is(err, os.ErrNotExist) && c.config == "":
			addrs = []string{"127.0.0.1:8889"}
		default:
			return nil, fmt.Errorf("client config: %w", err)
		}
	}
	cfg := client.Config{Addresses: addrs, Retries: 2, RetryDelay: 200 * time.Millisecond}
	c.plaintext = !files.Enabled()
	if files.Enabled() {
		tc, err := files.Client("")
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	c.addresses = addrs
	c.tls = files // the reps are reached with the same files (gavel cell-state, sim capture)
	return client.New(cfg)
}

// ctx is a context bounded by --timeout.
func (c *conn) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), c.timeout)
}

// explain turns a call's error into one line a person can act on.
func (c *conn) explain(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		addrs := strings.Join(c.addresses, ",")
		contains := func(subs ...string) bool {
			for _, sub := range subs {
				if strings.Contains(msg, sub) {
					return true
				}
			}
			return false
		}
		switch {
		case contains("connection refused"):
			return fmt.Errorf("cannot reach the BBS at %s: is it running? (make run starts one)", addrs)
		// With TLS 1.3 a refused client certificate shows only after the
		// handshake, as the server closing the connection.
		case contains("tls:", "x509:", "certificate") || (!c.plaintext && contains("broken pipe", "connection reset", "EOF")):
			return fmt.Errorf("TLS with the BBS at %s failed: %s (check --ca-file, --cert-file, --key-file)", addrs, msg)
		case contains("dial", "connection error"):
			hint := "is it running? (make run starts one)"
			if c.plaintext {
				hint = "is it running, and does it want mTLS? (pass --ca-file, --cert-file and --key-file; gavel certs writes them)"
			}
			return fmt.Errorf("cannot reach the BBS at %s: %s", addrs, hint)
		}
	case codes.DeadlineExceeded:
		return fmt.Errorf("the BBS at %s did not answer within %s", strings.Join(c.addresses, ","), c.timeout)
	}
	return errors.New(strings.ReplaceAll(msg, "\n", " "))
}

var jsonOut = protojson.MarshalOptions{UseProtoNames: true}

// printJSON prints one message as one line.
func (c *conn) printJSON(m proto.Message) error {
	data, err := jsonOut.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.out, string(data))
	return err
}

// call opens the client, runs f with a context bounded by --timeout, and
// explains the error in one line.
func (c *conn) call(cmd *cobra.Command, f func(ctx context.Context, bbs *client.Client) error) error {
	bbs, err := c.client(cmd)
	if err != nil {
		return err
	}
	defer bbs.Close()
	ctx, cancel := c.ctx(cmd)
	defer cancel()
	return c.explain(f(ctx, bbs))
}

// act runs one call that changes something and, unless --json, says what it did.
func (c *conn) act(cmd *cobra.Command, f func(ctx context.Context, bbs *client.Client) error, done string, args ...any) error {
	if err := c.call(cmd, f); err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintf(c.out, done+"\n", args...)
	}
	return nil
}

// printEach prints messages one JSON object per line.
func printEach[M proto.Message](c *conn, msgs []M) error {
	for _, m := range msgs {
		if err := c.printJSON(m); err != nil {
			return err
		}
	}
	return nil
}
