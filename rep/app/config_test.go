package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/config"
	"github.com/gavelhq/gavel/internal/etcdclient"
	"github.com/gavelhq/gavel/rep/app"
)

// containerConfig is a valid plaintext config for backend, before the case's edit.
func containerConfig(backend string) app.Config {
	c := app.DefaultConfig()
	c.CellID, c.InsecurePlaintext, c.Backend = "cell-1", true, backend
	c.Etcd = etcdclient.Config{Endpoints: []string{"127.0.0.1:2379"}}
	c.BBSAddresses = []string{"127.0.0.1:8889"}
	c.Process.RootDir = "/var/lib/gavel/process"
	c.Runc = app.RuncConfig{RootDir: "/var/lib/gavel/runc", Rootfses: map[string]string{"busybox": "/var/lib/gavel/rootfs/busybox"}}
	c.Garden = app.GardenConfig{Network: "unix", Address: "/var/run/gavel-garden.sock"}
	return c
}

func TestContainerBackendConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend string
		edit    func(*app.Config)
		want    string // "" means valid
	}{
		{name: "runc valid", backend: app.BackendRunc, edit: func(*app.Config) {}},
		{name: "runc host userland only", backend: app.BackendRunc, edit: func(c *app.Config) {
			c.Runc.Rootfses, c.Runc.HostUserlandRootfs = nil, "cflinuxfs4"
		}},
		{name: "runc without root dir", backend: app.BackendRunc, edit: func(c *app.Config) { c.Runc.RootDir = "" }, want: "runc.root_dir: is required"},
		{name: "runc without rootfs", backend: app.BackendRunc, edit: func(c *app.Config) { c.Runc.Rootfses = nil }, want: "runc.rootfses: name at least one"},
		{name: "runc relative rootfs", backend: app.BackendRunc, edit: func(c *app.Config) {
			c.Runc.Rootfses["busybox"] = "rootfs/busybox"
		}, want: "runc.rootfses[busybox]: must be an absolute path"},
		{name: "runc bad rootfs name", backend: app.BackendRunc, edit: func(c *app.Config) {
			c.Runc.Rootfses["bad name"] = "/x"
		}, want: `runc.rootfses: name "bad name" must match`},
		{name: "runc name twice", backend: app.BackendRunc, edit: func(c *app.Config) { c.Runc.HostUserlandRootfs = "busybox" }, want: "runc.rootfses[busybox]: is also runc.host_userland_rootfs"},
		{name: "runc unknown default", backend: app.BackendRunc, edit: func(c *app.Config) { c.Runc.DefaultRootfs = "cflinuxfs4" }, want: `runc.default_rootfs: "cflinuxfs4" is neither`},
		{name: "runc relative keeper", backend: app.BackendRunc, edit: func(c *app.Config) { c.Runc.KeeperPath = "bin/gavel-keeper" }, want: "runc.keeper_path: must be an absolute path"},
		{name: "runc port range", backend: app.BackendRunc, edit: func(c *app.Config) { c.Runc.PortRangeStart, c.Runc.PortRangeEnd = 62000, 61000 }, want: "runc.port_range_end: must be >= port_range_start"},
		{name: "garden valid tcp", backend: app.BackendGarden, edit: func(c *app.Config) { c.Garden = app.GardenConfig{Network: "tcp", Address: "127.0.0.1:7777"} }},
		{name: "garden without address", backend: app.BackendGarden, edit: func(c *app.Config) { c.Garden.Address = "" }, want: "garden.address: is required"},
		{name: "garden bad network", backend: app.BackendGarden, edit: func(c *app.Config) { c.Garden.Network = "udp" }, want: `garden.network: must be "unix" or "tcp"`},
		{name: "claim delay", backend: app.BackendSim, edit: func(c *app.Config) { c.ClaimDelay = config.Duration(2 * time.Second) }},
		{name: "negative claim delay", backend: app.BackendSim, edit: func(c *app.Config) { c.ClaimDelay = config.Duration(-time.Second) },
			want: "claim_delay: must be between 0s and 10s (got -1s)"},
		{name: "claim delay past the bound", backend: app.BackendSim, edit: func(c *app.Config) { c.ClaimDelay = config.Duration(11 * time.Second) },
			want: "claim_delay: must be between 0s and 10s (got 11s)"},
		{name: "unknown backend", backend: "docker", edit: func(*app.Config) {}, want: `backend: must be "process", "runc", "garden" or "sim" (got "docker")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := containerConfig(tc.backend)
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// A runc cell advertises the rootfses it has, not rootfs_providers.
func TestRuncCellAdvertisesItsRootfses(t *testing.T) {
	c := containerConfig(app.BackendRunc)
	c.Runc.HostUserlandRootfs = "cflinuxfs4"
	c.RootFSProviders = map[string][]string{"preloaded": {"other"}, "docker": {}}
	require.Equal(t, map[string][]string{"preloaded": {"busybox", "cflinuxfs4"}, "docker": {}, "oci": {}}, c.AdvertisedRootFSProviders())

	// A process cell runs no image: docker and oci are not advertised.
	p := containerConfig(app.BackendProcess)
	p.RootFSProviders = map[string][]string{"preloaded": {"cflinuxfs4"}, "docker": {}, "oci": {}}
	require.Equal(t, map[string][]string{"preloaded": {"cflinuxfs4"}}, p.AdvertisedRootFSProviders())

	s := containerConfig(app.BackendSim)
	require.Equal(t, s.RootFSProviders, s.AdvertisedRootFSProviders())
}
