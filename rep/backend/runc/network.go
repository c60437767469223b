package runc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"code.cloudfoundry.org/lager/v3"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/gavelhq/gavel/rep/backend"
)

// cniVersion is the CNI spec version of the network configuration
// (containernetworking-plugins 1.1 speak up to 1.0.0).
const cniVersion = "1.0.0"

// network attaches each container's network namespace to the bridge with
// CNI: bridge (veth pair, gateway on the bridge, host-local IPAM), loopback
// (brings lo up) and portmap (DNAT of each host port to the container).
type network struct {
	// mu serializes CNI calls: concurrent ADDs and DELs, each running
	// iptables (nf_tables) commands, were seen to leave a deleted
	// container's rules behind.
	mu        sync.Mutex
	cni       *libcni.CNIConfig
	list      *libcni.NetworkConfigList
	nsPrefix  string // named network namespaces: /run/netns/<nsPrefix><id>
	ipamDir   string
	bridge    string
	ipCommand string
	iptables  string
	logger    lager.Logger
}

// portMapEntry is the portmap plugin's portMappings capability argument.
type portMapEntry struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

func newNetwork(o Options) (*network, error) {
	ipamDir := filepath.Join(o.Root, "cni", "ipam")
	conf := map[string]any{
		"cniVersion": cniVersion,
		"name":       o.NetworkName,
		"plugins": []map[string]any{
			{
				"type":        "bridge",
				"bridge":      o.BridgeName,
				"isGateway":   true,
				"ipMasq":      !o.DisableIPMasq,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": o.Subnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": ipamDir,
				},
			},
			{"type": "loopback"},
			{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
		},
	}
	data, err := json.Marshal(conf)
	if err != nil {
		return nil, fmt.Errorf("encode CNI config: %w", err)
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("CNI config: %w", err)
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("runc backend: the ip command (iproute2) is needed for network namespaces: %w", err)
	}
	iptablesCmd, err := exec.LookPath("iptables")
	if err != nil {
		return nil, fmt.Errorf("runc backend: iptables is needed for port mappings: %w", err)
	}
	return &network{
		// An explicit Exec: libcni creates its default lazily, unsafely
		// for concurrent calls.
		cni: libcni.NewCNIConfigWithCacheDir([]string{o.CNIPluginDir}, filepath.Join(o.Root, "cni", "cache"),
			&invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}),
		list:      list,
		nsPrefix:  o.BridgeName + "-",
		ipamDir:   ipamDir,
		bridge:    o.BridgeName,
		ipCommand: ipCmd,
		iptables:  iptablesCmd,
		logger:    o.Logger.Session("network"),
	}, nil
}

// nsName is the container's named network namespace.
func (n *network) nsName(id string) string { return n.nsPrefix + id }

// nsPath is the namespace's bind mount.
func (n *network) nsPath(id string) string { return filepath.Join("/run/netns", n.nsName(id)) }

func (n *network) runtimeConf(id string, ports []backend.PortMapping) *libcni.RuntimeConf {
	maps := make([]portMapEntry, 0, len(ports))
	for _, p := range ports {
		maps = append(maps, portMapEntry{HostPort: int(p.HostPort), ContainerPort: int(p.ContainerPort), Protocol: "tcp"})
	}
	return &libcni.RuntimeConf{
		ContainerID:    id,
		NetNS:          n.nsPath(id),
		IfName:         "eth0",
		CapabilityArgs: map[string]any{"portMappings": maps},
	}
}

// up creates the container's network namespace and attaches it; it
// returns the container's IP. On failure what was done is undone.
func (n *network) up(ctx context.Context, id string, ports []backend.PortMapping) (string, error) {
	if out, err := exec.CommandContext(ctx, n.ipCommand, "netns", "add", n.nsName(id)).CombinedOutput(); err != nil {
		return "", fmt.Errorf("create network namespace %s: %w: %s", n.nsName(id), err, strings.TrimSpace(string(out)))
	}
	n.mu.Lock()
	res, err := n.cni.AddNetworkList(ctx, n.list, n.runtimeConf(id, ports))
	n.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("CNI ADD: %w", err)
		return "", errors.Join(err, n.down(context.WithoutCancel(ctx), id, ports))
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil || len(cur.IPs) == 0 {
		err = fmt.Errorf("CNI ADD gave no IP (%v)", err)
		return "", errors.Join(err, n.down(context.WithoutCancel(ctx), id, ports))
	}
	return cur.IPs[0].Address.IP.String(), nil
}

// down detaches the namespace (releasing the IP lease, the veth and the
// iptables rules) and deletes it. It is idempotent.
func (n *network) down(ctx context.Context, id string, ports []backend.PortMapping) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	if _, err := os.Stat(n.nsPath(id)); err == nil {
		if err := n.cni.DelNetworkList(ctx, n.list, n.runtimeConf(id, ports)); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL: %w", err))
		}
		if out, err := exec.CommandContext(ctx, n.ipCommand, "netns", "delete", n.nsName(id)).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete network namespace %s: %w: %s", n.nsName(id), err, strings.TrimSpace(string(out))))
		}
	} else {
		// No namespace left: still release the lease and rules.
		rt := n.runtimeConf(id, ports)
		rt.NetNS = ""
		if err := n.cni.DelNetworkList(ctx, n.list, rt); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL: %w", err))
		}
	}
	if len(errs) == 0 {
		if err := n.sweepRules(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sweepRules deletes the nat rules CNI tagged with the container's id that
// a DEL left behind. The bridge plugin finds the masquerade rules to delete
// through the container's interface addresses, so a DEL that cannot see
// them (seen under load) leaves the rules; this makes Destroy leave nothing
// all the same.
func (n *network) sweepRules(ctx context.Context, id string) error {
	marker := fmt.Sprintf(`name: \"%s\" id: \"%s\"`, n.list.Name, id)
	removed, err := removeNATRulesMatching(ctx, n.iptables, marker)
	if err != nil {
		return err
	}
	if removed > 0 {
		n.logger.Info("swept-leftover-nat-rules", lager.Data{"id": id, "rules": removed})
	}
	return nil
}

// removeNATRulesMatching deletes the nat rules whose text contains marker
// (as iptables-save prints them), then flushes and deletes the CNI-*
// chains they jumped to. It returns how many rules it deleted.
func removeNATRulesMatching(ctx context.Context, iptables, marker string) (int, error) {
	out, err := exec.CommandContext(ctx, iptables+"-save", "-t", "nat").Output()
	if err != nil {
		return 0, fmt.Errorf("%s-save: %w", iptables, err)
	}
	chains := map[string]bool{}
	var errs []error
	removed := 0
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, marker) {
			continue
		}
		if i := strings.Index(line, " -j CNI-"); i >= 0 {
			if f := strings.Fields(line[i+4:]); len(f) > 0 && f[0] != "CNI-HOSTPORT-DNAT" &&
				f[0] != "CNI-HOSTPORT-SETMARK" && f[0] != "CNI-HOSTPORT-MASQ" {
				chains[f[0]] = true
			}
		}
		args, err := splitRule(strings.TrimPrefix(line, "-A "))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out, err := exec.CommandContext(ctx, iptables, append([]string{"-w", "-t", "nat", "-D"}, args...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete rule %q: %w: %s", line, err, strings.TrimSpace(string(out))))
			continue
		}
		removed++
	}
	for chain := range chains {
		_ = exec.CommandContext(ctx, iptables, "-w", "-t", "nat", "-F", chain).Run()
		_ = exec.CommandContext(ctx, iptables, "-w", "-t", "nat", "-X", chain).Run()
	}
	return removed, errors.Join(errs...)
}

// splitRule splits an iptables-save rule into arguments, honouring the
// double quotes (with backslash escapes) of comments.
func splitRule(rule string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inQuote, escaped, have := false, false, false
	for _, r := range rule {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && inQuote:
			escaped = true
		case r == '"':
			inQuote = !inQuote
			have = true
		case r == ' ' && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unbalanced quotes in %q", rule)
	}
	if have {
		args = append(args, cur.String())
	}
	return args, nil
}

// removeBridge deletes the bridge (used when tearing a whole backend down).
func (n *network) removeBridge(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join("/sys/class/net", n.bridge)); err != nil {
		return nil
	}
	if out, err := exec.CommandContext(ctx, n.ipCommand, "link", "delete", n.bridge).CombinedOutput(); err != nil {
		return fmt.Errorf("delete bridge %s: %w: %s", n.bridge, err, strings.TrimSpace(string(out)))
	}
	return nil
}
