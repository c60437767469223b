package server_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/garden"
	"github.com/gavelhq/gavel/garden/client"
	"github.com/gavelhq/gavel/garden/server"
	"github.com/gavelhq/gavel/rep/backend"
	"github.com/gavelhq/gavel/rep/backend/sim"
)

// dateHeader is the one response header whose value changes.
var dateHeader = regexp.MustCompile(`(?m)^Date: [^\r]*\r\n`)

// exchange splits what one connection carried into the request head, the
// request body and the response with its Date header normalised.
type exchange struct {
	requestHead, requestBody string
	response                 string
}

func parseExchange(c *recordedConn) exchange {
	head, body, _ := strings.Cut(c.sent(), "\r\n\r\n")
	return exchange{requestHead: head, requestBody: body, response: dateHeader.ReplaceAllString(c.received(), "Date: D\r\n")}
}

// requestLine is the first line of a request head.
func (e exchange) requestLine() string { line, _, _ := strings.Cut(e.requestHead, "\r\n"); return line }

// goldenRequestHead is what the client sends for a request without a body,
// after the request line.
const goldenRequestHead = "\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\nConnection: close"

// jsonResponse is the exact response to an ordinary call.
func jsonResponse(status, body string) string {
	return "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nDate: D\r\nContent-Length: " +
		itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
}

func itoa(n int) string { return strconv.Itoa(n) }

// hijackErrorResponse is the exact error response on a hijacking route: the
// request did not ask for Connection: close.
func hijackErrorResponse(status, body string) string {
	return strings.Replace(jsonResponse(status, body), "Connection: close\r\n", "", 1)
}

// diegoCreateBody is the Create body captured from a Diego-shaped client
// in the reference (§1.3), without its whitespace.
const diegoCreateBody = `{"handle":"app-guid-0","image":{"uri":"preloaded+layer:/var/vcap/packages/cflinuxfs4/rootfs.tar?layer=..."},` +
	`"bind_mounts":[{"src_path":"/var/vcap/data/rep/healthcheck","dst_path":"/etc/cf-assets/healthcheck"}],` +
	`"properties":{"executor:owner":"executor","log_config":"{\"guid\":\"x\"}","network.app_id":"x"},` +
	`"env":["LANG=en_US.UTF-8"],` +
	`"limits":{"bandwidth_limits":{},"cpu_limits":{"weight":1024,"limit_in_shares":512},` +
	`"disk_limits":{"inode_hard":200000,"byte_hard":1073741824},"memory_limits":{"limit_in_bytes":1073741824},` +
	`"pid_limits":{"max":1024}},` +
	`"netout_rules":[{"protocol":1,"networks":[{"start":"10.0.0.0","end":"10.255.255.255"}],"ports":[{"start":80,"end":443}]}],` +
	`"netin":[{"host_port":0,"container_port":8080}]}`

func diegoSpec() garden.ContainerSpec {
	return garden.ContainerSpec{
		Handle:     "app-guid-0",
		Image:      garden.ImageRef{URI: "preloaded+layer:/var/vcap/packages/cflinuxfs4/rootfs.tar?layer=..."},
		BindMounts: []garden.BindMount{{SrcPath: "/var/vcap/data/rep/healthcheck", DstPath: "/etc/cf-assets/healthcheck"}},
		Properties: garden.Properties{"executor:owner": "executor", "log_config": `{"guid":"x"}`, "network.app_id": "x"},
		Env:        []string{"LANG=en_US.UTF-8"},
		Limits: garden.Limits{
			CPU:    garden.CPULimits{Weight: 1024, LimitInShares: 512},
			Disk:   garden.DiskLimits{InodeHard: 200000, ByteHard: 1 << 30},
			Memory: garden.MemoryLimits{LimitInBytes: 1 << 30},
			Pid:    garden.PidLimits{Max: 1024},
		},
		NetOut: []garden.NetOutRule{{
			Protocol: garden.ProtocolTCP,
			Networks: []garden.IPRange{{Start: net.ParseIP("10.0.0.0").To4(), End: net.ParseIP("10.255.255.255").To4()}},
			Ports:    []garden.PortRange{{Start: 80, End: 443}},
		}},
		NetIn: []garden.NetIn{{HostPort: 0, ContainerPort: 8080}},
	}
}

// infoBody is the Info of the Diego-shaped container on the sim backend.
const infoBody = `{"State":"active","Events":[],"HostIP":"10.0.0.1","ContainerIP":"10.0.0.1","ContainerIPv6":"","ExternalIP":"10.0.0.1",` +
	`"ContainerPath":"","ProcessIDs":null,"Properties":{"executor:owner":"executor","garden.grace-time":"0","garden.state":"created",` +
	`"log_config":"{\"guid\":\"x\"}","network.app_id":"x"},"MappedPorts":[{"HostPort":60000,"ContainerPort":8080}]}`

// errorBody is an error body with all five keys.
func errorBody(typ, msg, handle, pid string) string {
	return `{"Type":"` + typ + `","Message":"` + msg + `","Handle":"` + handle + `","ProcessID":"` + pid + `","Binary":""}` + "\n"
}

// TestGoldenWire checks the exact bytes of every ordinary route, as the
// client sends them and the server answers them, through a recording proxy.
func TestGoldenWire(t *testing.T) {
	b := sim.New(sim.Options{Capacity: backend.Capacity{MemoryInBytes: 8 << 30, DiskInBytes: 100 << 30, MaxContainers: 250}})
	ts := startServer(t, b, server.Options{})
	rec := newRecorder(t, func() (net.Conn, error) { return net.Dial("unix", ts.socket) })
	c, err := client.New(client.Options{Address: rec.lis.Addr().String()})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = ts.client.Create(ctx, garden.ContainerSpec{Handle: "stoppable"})
	require.NoError(t, err)

	noErr := func(err error) { require.NoError(t, err) }
	cases := []struct {
		name        string
		call        func() error
		wantLine    string // request line
		wantBody    string // request body ("" for none)
		wantCT      string // request Content-Type ("" for none)
		wantStatus  string
		wantResBody string
	}{
		{"ping", func() error { return c.Ping(ctx) }, "GET /ping HTTP/1.1", "", "", "200 OK", "{}\n"},
		{"capacity", func() error { _, err := c.Capacity(ctx); return err }, "GET /capacity HTTP/1.1", "", "", "200 OK",
			`{"memory_in_bytes":8589934592,"disk_in_bytes":107374182400,"schedulable_disk_in_bytes":107374182400,"max_containers":250}` + "\n"},
		{"create", func() error {
			h, err := c.Create(ctx, diegoSpec())
			require.Equal(t, "app-guid-0", h)
			return err
		}, "POST /containers HTTP/1.1", diegoCreateBody, "application/json", "200 OK", `{"Handle":"app-guid-0"}` + "\n"},
		{"create duplicate", func() error {
			_, err := c.Create(ctx, garden.ContainerSpec{Handle: "app-guid-0"})
			require.Error(t, err)
			return nil
		},
			"POST /containers HTTP/1.1", `{"handle":"app-guid-0","image":{},"limits":{"bandwidth_limits":{},"cpu_limits":{},"disk_limits":{},"memory_limits":{},"pid_limits":{}}}`,
			"application/json", "500 Internal Server Error", errorBody("", "handle already exists: app-guid-0", "", "")},
		{"list by property", func() error {
			hs, err := c.Containers(ctx, garden.Properties{"executor:owner": "executor"})
			require.Equal(t, []string{"app-guid-0"}, hs)
			return err
		}, "GET /containers?executor%3Aowner=executor HTTP/1.1", "", "", "200 OK", `{"Handles":["app-guid-0"]}` + "\n"},
		{"list none", func() error { _, err := c.Containers(ctx, garden.Properties{"k": "v"}); return err },
			"GET /containers?k=v HTTP/1.1", "", "", "200 OK", `{"Handles":[]}` + "\n"},
		{"info", func() error { _, err := c.Info(ctx, "app-guid-0"); return err },
			"GET /containers/app-guid-0/info HTTP/1.1", "", "", "200 OK", infoBody + "\n"},
		{"info not found", func() error {
			_, err := c.Info(ctx, "nope")
			require.ErrorIs(t, err, garden.ContainerNotFoundError{Handle: "nope"})
			return nil
		}, "GET /containers/nope/info HTTP/1.1", "", "", "404 Not Found", errorBody("ContainerNotFoundError", "unknown handle: nope", "nope", "")},
		{"bulk info", func() error { _, err := c.BulkInfo(ctx, []string{"app-guid-0", "nope"}); return err },
			"GET /containers/bulk_info?handles=app-guid-0%2Cnope HTTP/1.1", "", "", "200 OK",
			`{"app-guid-0":{"Info":` + infoBody + `,"Err":null},"nope":{"Info":{"State":"","Events":null,"HostIP":"","ContainerIP":"",` +
				`"ContainerIPv6":"","ExternalIP":"","ContainerPath":"","ProcessIDs":null,"Properties":null,"MappedPorts":null},` +
				`"Err":` + strings.TrimSuffix(errorBody("", "unknown handle: nope", "", ""), "\n") + "}}\n"},
		{"bulk metrics empty", func() error { _, err := c.BulkMetrics(ctx, nil); return err },
			"GET /containers/bulk_metrics?handles= HTTP/1.1", "", "", "200 OK", "{}\n"},
		{"bulk metrics unsupported", func() error { _, err := c.BulkMetrics(ctx, []string{"app-guid-0"}); return err },
			"GET /containers/bulk_metrics?handles=app-guid-0 HTTP/1.1", "", "", "200 OK",
			`{"app-guid-0":{"Metrics":{"MemoryStat":{"active_anon":0,"active_file":0,"cache":0,"hierarchical_memory_limit":0,"inactive_anon":0,` +
				`"inactive_file":0,"mapped_file":0,"pgfault":0,"pgmajfault":0,"pgpgin":0,"pgpgout":0,"rss":0,"total_active_anon":0,` +
				`"total_active_file":0,"total_cache":0,"total_inactive_anon":0,"total_inactive_file":0,"total_mapped_file":0,"total_pgfault":0,` +
				`"total_pgmajfault":0,"total_pgpgin":0,"total_pgpgout":0,"total_rss":0,"total_unevictable":0,"unevictable":0,"swap":0,` +
				`"hierarchical_memsw_limit":0,"total_swap":0,"TotalUsageTowardLimit":0,"anon":0,"file":0,"swapcached":0},` +
				`"CPUStat":{"Usage":0,"User":0,"System":0},"DiskStat":{"TotalBytesUsed":0,"TotalInodesUsed":0,"ExclusiveBytesUsed":0,` +
				`"ExclusiveInodesUsed":0},"NetworkStat":null,"PidStat":{"Current":0,"Max":0},"Age":0,"CPUEntitlement":0},` +
				`"Err":` + strings.TrimSuffix(errorBody("", "metrics is not supported by this Garden server's backend", "", ""), "\n") + "}}\n"},
		{"metrics unsupported", func() error { _, err := c.Metrics(ctx, "app-guid-0"); require.Error(t, err); return nil },
			"GET /containers/app-guid-0/metrics HTTP/1.1", "", "", "500 Internal Server Error",
			errorBody("", "metrics is not supported by this Garden server's backend", "", "")},
		{"stop", func() error { return c.Stop(ctx, "stoppable", true) },
			"PUT /containers/stoppable/stop HTTP/1.1", `{"kill":true}`, "application/json", "200 OK", "{}\n"},
		{"limits bandwidth", func() error { _, err := c.BandwidthLimits(ctx, "app-guid-0"); return err },
			"GET /containers/app-guid-0/limits/bandwidth HTTP/1.1", "", "", "200 OK", "{}\n"},
		{"limits cpu unsupported", func() error { _, err := c.CPULimits(ctx, "app-guid-0"); require.Error(t, err); return nil },
			"GET /containers/app-guid-0/limits/cpu HTTP/1.1", "", "", "500 Internal Server Error",
			errorBody("", "reading limits is not supported by this Garden server's backend", "", "")},
		{"net in unsupported", func() error { _, _, err := c.NetIn(ctx, "app-guid-0", 0, 8080); require.Error(t, err); return nil },
			"POST /containers/app-guid-0/net/in HTTP/1.1", `{"handle":"app-guid-0","container_port":8080}`, "application/json",
			"500 Internal Server Error", errorBody("", "net in after create is not supported by this Garden server's backend", "", "")},
		{"net out unsupported", func() error {
			require.Error(t, c.NetOut(ctx, "app-guid-0", garden.NetOutRule{Protocol: garden.ProtocolUDP, Log: true}))
			return nil
		}, "POST /containers/app-guid-0/net/out HTTP/1.1", `{"protocol":2,"log":true}`, "application/json",
			"500 Internal Server Error", errorBody("", "net out is not supported by this Garden server's backend", "", "")},
		{"bulk net out unsupported", func() error {
			require.Error(t, c.BulkNetOut(ctx, "app-guid-0", []garden.NetOutRule{{}}))
			return nil
		}, "POST /containers/app-guid-0/net/out/bulk HTTP/1.1", `[{}]`, "application/json",
			"500 Internal Server Error", errorBody("", "net out is not supported by this Garden server's backend", "", "")},
		{"grace time", func() error { return c.SetGraceTime(ctx, "app-guid-0", 30*time.Second) },
			"PUT /containers/app-guid-0/grace_time HTTP/1.1", "30000000000", "application/json", "200 OK", "{}\n"},
		{"properties", func() error { _, err := c.Properties(ctx, "app-guid-0"); return err },
			"GET /containers/app-guid-0/properties HTTP/1.1", "", "", "200 OK",
			`{"executor:owner":"executor","garden.grace-time":"0","garden.state":"created","log_config":"{\"guid\":\"x\"}","network.app_id":"x"}` + "\n"},
		{"property", func() error {
			v, err := c.Property(ctx, "app-guid-0", "executor:owner")
			require.Equal(t, "executor", v)
			return err
		}, "GET /containers/app-guid-0/properties/executor:owner HTTP/1.1", "", "", "200 OK", `{"value":"executor"}` + "\n"},
		{"property missing", func() error { _, err := c.Property(ctx, "app-guid-0", "k"); require.Error(t, err); return nil },
			"GET /containers/app-guid-0/properties/k HTTP/1.1", "", "", "500 Internal Server Error",
			errorBody("", "property does not exist: k", "", "")},
		{"set property unsupported", func() error { require.Error(t, c.SetProperty(ctx, "app-guid-0", "k", "v")); return nil },
			"PUT /containers/app-guid-0/properties/k HTTP/1.1", `{"value":"v"}`, "application/json", "500 Internal Server Error",
			errorBody("", "setting properties is not supported by this Garden server's backend", "", "")},
		{"remove property unsupported", func() error { require.Error(t, c.RemoveProperty(ctx, "app-guid-0", "k")); return nil },
			"DELETE /containers/app-guid-0/properties/k HTTP/1.1", "", "", "500 Internal Server Error",
			errorBody("", "removing properties is not supported by this Garden server's backend", "", "")},
		{"stream in", func() error {
			return c.StreamIn(ctx, "app-guid-0", "/app", "vcap", bytes.NewReader([]byte("tar")))
		}, "PUT /containers/app-guid-0/files?destination=%2Fapp&user=vcap HTTP/1.1", "3\r\ntar\r\n0\r\n\r\n", "application/x-tar", "200 OK", "{}\n"},
		{"destroy not found", func() error {
			err := c.Destroy(ctx, "nope")
			require.ErrorIs(t, err, garden.ContainerNotFoundError{})
			return nil
		}, "DELETE /containers/nope HTTP/1.1", "", "", "404 Not Found", errorBody("ContainerNotFoundError", "unknown handle: nope", "nope", "")},
		{"destroy", func() error { return c.Destroy(ctx, "app-guid-0") },
			"DELETE /containers/app-guid-0 HTTP/1.1", "", "", "200 OK", "{}\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			noErr(tc.call())
			ex := parseExchange(rec.take(t, 1)[0])
			require.Equal(t, tc.wantLine, ex.requestLine())
			require.Equal(t, tc.wantBody, ex.requestBody)
			if tc.wantCT == "" {
				require.Equal(t, tc.wantLine+goldenRequestHead, ex.requestHead)
			} else {
				require.Contains(t, ex.requestHead, "\r\nContent-Type: "+tc.wantCT+"\r\n")
			}
			require.Equal(t, jsonResponse(tc.wantStatus, tc.wantResBody), ex.response)
		})
	}

	t.Run("stream out", func(t *testing.T) {
		_, err := ts.client.Create(ctx, garden.ContainerSpec{Handle: "files"})
		require.NoError(t, err)
		rc, err := c.StreamOut(ctx, "files", "/app/file", "vcap")
		require.NoError(t, err)
		tarBytes, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		ex := parseExchange(rec.take(t, 1)[0])
		require.Equal(t, "GET /containers/files/files?source=%2Fapp%2Ffile&user=vcap"+" HTTP/1.1"+goldenRequestHead, ex.requestHead)
		require.Equal(t, "HTTP/1.1 200 OK\r\nDate: D\r\nContent-Length: "+itoa(len(tarBytes))+"\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n", ex.response[:len(ex.response)-len(tarBytes)])
		require.Equal(t, string(tarBytes), ex.response[len(ex.response)-len(tarBytes):])
		require.Equal(t, map[string]string{"file": ""}, untar(t, bytes.NewReader(tarBytes)))
	})
}

// TestGoldenProcessStreams checks the connection choreography of Run and
// Attach (§3.1, §3.3) byte for byte, over real processes.
func TestGoldenProcessStreams(t *testing.T) {
	ts := startServer(t, newProcessBackend(t), server.Options{})
	rec := newRecorder(t, func() (net.Conn, error) { return net.Dial("unix", ts.socket) })
	c, err := client.New(client.Options{Address: rec.lis.Addr().String()})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = ts.client.Create(ctx, garden.ContainerSpec{Handle: "app-guid-0"})
	require.NoError(t, err)

	const (
		hijacked201 = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nDate: D\r\nTransfer-Encoding: chunked\r\n\r\n"
		hijacked200 = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: D\r\nTransfer-Encoding: chunked\r\n\r\n"
		output200   = "HTTP/1.1 200 OK\r\nDate: D\r\nTransfer-Encoding: chunked\r\n\r\n"
		getHead     = " HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1"
	)

	t.Run("run", func(t *testing.T) {
		nofile := uint64(1024)
		var stdout, stderr syncBuffer
		p, err := c.Run(ctx, "app-guid-0", garden.ProcessSpec{
			ID: "proc-1", Path: "/bin/sh", Args: []string{"-c", "cat; exit 3"}, Env: []string{"FOO=bar"},
			Dir: "/tmp", User: "vcap", Limits: garden.ResourceLimits{Nofile: &nofile},
		}, client.ProcessIO{Stdin: strings.NewReader("from-stdin\n"), Stdout: &stdout, Stderr: &stderr})
		require.NoError(t, err)
		status, err := p.Wait()
		require.NoError(t, err)
		require.Equal(t, 3, status)
		require.Equal(t, "from-stdin\n", stdout.String())

		conns := rec.take(t, 3)
		spec := `{"id":"proc-1","path":"/bin/sh","args":["-c","cat; exit 3"],"env":["FOO=bar"],"dir":"/tmp","user":"vcap","rlimits":{"nofile":1024},"image":{}}` + "\n"
		run := parseExchange(conns[0])
		require.Equal(t, "POST /containers/app-guid-0/processes HTTP/1.1\r\nHost: api\r\nUser-Agent: Go-http-client/1.1\r\n"+
			"Content-Length: "+itoa(len(spec))+"\r\nContent-Type: application/json", run.requestHead)
		require.Equal(t, spec+
			`{"process_id":"proc-1","source":0,"data":"from-stdin\n"}`+"\n"+
			`{"process_id":"proc-1","source":0}`+"\n", run.requestBody)
		require.Equal(t, hijacked201+
			`{"process_id":"proc-1","stream_id":"1"}`+"\n"+
			`{"process_id":"proc-1","exit_status":3}`+"\n", run.response)

		out := parseExchange(conns[1])
		require.Equal(t, "GET /containers/app-guid-0/processes/proc-1/attaches/1/stdout"+getHead, out.requestHead)
		require.Equal(t, output200+"from-stdin\n", out.response)
		errs := parseExchange(conns[2])
		require.Equal(t, "GET /containers/app-guid-0/processes/proc-1/attaches/1/stderr"+getHead, errs.requestHead)
		require.Equal(t, output200, errs.response)
	})

	t.Run("attach", func(t *testing.T) {
		// Started without output or stdin (stream 2), then attached with both.
		// It reads stdin to its end before it exits, so the client's close of
		// stdin always reaches the wire (exiting after the first line raced it).
		first, err := ts.client.Run(ctx, "app-guid-0", garden.ProcessSpec{
			ID: "proc-2", Path: "sh", Args: []string{"-c", "read x; cat >/dev/null; echo got $x; echo oops >&2; exit 5"},
		}, client.ProcessIO{})
		require.NoError(t, err)
		var stdout, stderr syncBuffer
		p, err := c.Attach(ctx, "app-guid-0", "proc-2", client.ProcessIO{Stdin: strings.NewReader("hi\n"), Stdout: &stdout, Stderr: &stderr})
		require.NoError(t, err)
		status, err := p.Wait()
		require.NoError(t, err)
		require.Equal(t, 5, status)
		status, err = first.Wait()
		require.NoError(t, err)
		require.Equal(t, 5, status)

		conns := rec.take(t, 3)
		att := parseExchange(conns[0])
		require.Equal(t, "GET /containers/app-guid-0/processes/proc-2"+getHead, att.requestHead)
		require.Equal(t, `{"process_id":"proc-2","source":0,"data":"hi\n"}`+"\n"+`{"process_id":"proc-2","source":0}`+"\n", att.requestBody)
		require.Equal(t, hijacked200+
			`{"process_id":"proc-2","stream_id":"3"}`+"\n"+
			`{"process_id":"proc-2","exit_status":5}`+"\n", att.response)
		require.Equal(t, output200+"got hi\n", parseExchange(conns[1]).response)
		require.Equal(t, output200+"oops\n", parseExchange(conns[2]).response)
	})

	t.Run("attach unknown process", func(t *testing.T) {
		_, err := c.Attach(ctx, "app-guid-0", "nope", client.ProcessIO{})
		require.ErrorIs(t, err, garden.ProcessNotFoundError{ProcessID: "nope"})
		ex := parseExchange(rec.take(t, 1)[0])
		require.Equal(t, "GET /containers/app-guid-0/processes/nope"+getHead, ex.requestHead)
		require.Equal(t, hijackErrorResponse("404 Not Found", errorBody("ProcessNotFoundError", "unknown process: nope", "", "nope")), ex.response)
	})

	t.Run("run in unknown container", func(t *testing.T) {
		_, err := c.Run(ctx, "nope", garden.ProcessSpec{Path: "true"}, client.ProcessIO{})
		require.ErrorIs(t, err, garden.ContainerNotFoundError{Handle: "nope"})
		ex := parseExchange(rec.take(t, 1)[0])
		require.Equal(t, hijackErrorResponse("404 Not Found", errorBody("ContainerNotFoundError", "unknown handle: nope", "nope", "")), ex.response)
	})

	t.Run("run executable not found", func(t *testing.T) {
		_, err := c.Run(ctx, "app-guid-0", garden.ProcessSpec{Path: "no-such-binary-xyz"}, client.ProcessIO{})
		var enf garden.ExecutableNotFoundError
		require.ErrorAs(t, err, &enf)
		ex := parseExchange(rec.take(t, 1)[0])
		require.Contains(t, ex.response, "HTTP/1.1 500 Internal Server Error\r\n")
		require.Contains(t, ex.response, `{"Type":"ExecutableNotFoundError","Message":"`)
	})

	t.Run("run empty path", func(t *testing.T) {
		// guardian (through runc) answers an empty path as not found too.
		_, err := c.Run(ctx, "app-guid-0", garden.ProcessSpec{}, client.ProcessIO{})
		var enf garden.ExecutableNotFoundError
		require.ErrorAs(t, err, &enf)
		ex := parseExchange(rec.take(t, 1)[0])
		require.Contains(t, ex.response, "HTTP/1.1 500 Internal Server Error\r\n")
		require.Contains(t, ex.response, `{"Type":"ExecutableNotFoundError","Message":"`)
		require.Contains(t, ex.response, `exec: \"\": executable file not found in $PATH`)
	})
}
