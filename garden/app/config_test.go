package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/garden/app"
	"github.com/gavelhq/gavel/internal/config"
)

func TestConfigValidation(t *testing.T) {
	valid := func() app.Config {
		c := app.DefaultConfig()
		c.Runc.RootDir = "/var/lib/gavel-garden"
		c.Runc.HostUserlandRootfs = "cflinuxfs4"
		return c
	}
	for _, tc := range []struct {
		name string
		edit func(*app.Config)
		want string // "" means valid
	}{
		{name: "defaults with a runc depot", edit: func(*app.Config) {}},
		{name: "loopback tcp", edit: func(c *app.Config) { c.ListenNetwork, c.ListenAddress = "tcp", "127.0.0.1:7777" }},
		{name: "remote tcp refused", edit: func(c *app.Config) { c.ListenNetwork, c.ListenAddress = "tcp", "0.0.0.0:7777" },
			want: `listen_address: "0.0.0.0:7777" is not a loopback address`},
		{name: "remote tcp allowed explicitly", edit: func(c *app.Config) {
			c.ListenNetwork, c.ListenAddress, c.InsecureRemoteListen = "tcp", "0.0.0.0:7777", true
		}},
		{name: "tcp without port", edit: func(c *app.Config) { c.ListenNetwork, c.ListenAddress = "tcp", "127.0.0.1" }, want: "listen_address: want host:port"},
		{name: "relative socket", edit: func(c *app.Config) { c.ListenAddress = "garden.sock" }, want: "listen_address: must be an absolute socket path"},
		{name: "bad network", edit: func(c *app.Config) { c.ListenNetwork = "udp" }, want: `listen_network: must be "unix" or "tcp"`},
		{name: "runc without depot", edit: func(c *app.Config) { c.Runc.RootDir = "" }, want: "runc.root_dir: is required"},
		{name: "process backend", edit: func(c *app.Config) { c.Backend, c.Process.RootDir = app.BackendProcess, "/var/lib/g" }},
		{name: "process without root", edit: func(c *app.Config) { c.Backend = app.BackendProcess }, want: "process.root_dir: is required"},
		{name: "unknown backend", edit: func(c *app.Config) { c.Backend = "houdini" }, want: `backend: must be "runc" or "process" (got "houdini")`},
		{name: "negative default grace", edit: func(c *app.Config) { c.DefaultGraceTime = config.Duration(-1) }, want: "default_grace_time: must be >= 0"},
		{name: "zero stop grace", edit: func(c *app.Config) { c.GraceTime = 0 }, want: "grace_time: must be > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
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
