package garden_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/garden"
)

func ptr[T any](v T) *T { return &v }

// TestWireEncodings checks the JSON of the types whose spelling, omitempty
// or pointer-ness the reference calls out (§0, §1, §3.2).
func TestWireEncodings(t *testing.T) {
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"empty container spec keeps its structs", garden.ContainerSpec{},
			`{"image":{},"limits":{"bandwidth_limits":{},"cpu_limits":{},"disk_limits":{},"memory_limits":{},"pid_limits":{}}}`},
		{"grace time in nanoseconds", garden.ContainerSpec{GraceTime: 30 * time.Second, RootFSPath: "/r", Network: "10.0.0.0/30", Privileged: true},
			`{"grace_time":30000000000,"rootfs":"/r","image":{},"network":"10.0.0.0/30","privileged":true,"limits":{"bandwidth_limits":{},"cpu_limits":{},"disk_limits":{},"memory_limits":{},"pid_limits":{}}}`},
		{"netin has no omitempty", garden.NetIn{}, `{"host_port":0,"container_port":0}`},
		{"bind mount mode and origin", garden.BindMount{SrcPath: "/a", DstPath: "/b", Mode: garden.BindMountModeRW, Origin: garden.BindMountOriginContainer},
			`{"src_path":"/a","dst_path":"/b","mode":1,"origin":1}`},
		{"icmp code may be absent", garden.NetOutRule{Protocol: garden.ProtocolICMP, ICMPs: &garden.ICMPControl{Type: 8}}, `{"protocol":3,"icmps":{"type":8}}`},
		{"icmp type 0 is omitted", garden.NetOutRule{Protocol: garden.ProtocolICMP, ICMPs: &garden.ICMPControl{Code: ptr(garden.ICMPCode(0))}}, `{"protocol":3,"icmps":{"code":0}}`},
		{"process spec: limits nil vs empty", garden.ProcessSpec{Path: "p", OverrideContainerLimits: &garden.ProcessLimits{}},
			`{"path":"p","rlimits":{},"limits":{"cpu_limits":{},"memory_limits":{}},"image":{}}`},
		{"tty", garden.ProcessSpec{Path: "p", TTY: &garden.TTYSpec{WindowSize: &garden.WindowSize{Columns: 80, Rows: 24}}},
			`{"path":"p","rlimits":{},"tty":{"window_size":{"columns":80,"rows":24}},"image":{}}`},
		{"ids frame", garden.ProcessPayload{ProcessID: "p", StreamID: "1"}, `{"process_id":"p","stream_id":"1"}`},
		{"exit status 0 is sent", garden.ProcessPayload{ProcessID: "p", ExitStatus: ptr(0)}, `{"process_id":"p","exit_status":0}`},
		{"stdin frame", garden.ProcessPayload{ProcessID: "p", Source: ptr(garden.ProcessStreamSourceStdin), Data: ptr("x")}, `{"process_id":"p","source":0,"data":"x"}`},
		{"stdin EOF", garden.ProcessPayload{ProcessID: "p", Source: ptr(garden.ProcessStreamSourceStdin)}, `{"process_id":"p","source":0}`},
		{"signal 0 is sent", garden.ProcessPayload{ProcessID: "p", Signal: ptr(garden.SignalTerminate)}, `{"process_id":"p","signal":0}`},
		{"error frame", garden.ProcessPayload{ProcessID: "p", Error: ptr("boom")}, `{"process_id":"p","error":"boom"}`},
		{"capacity", garden.Capacity{MemoryInBytes: 1, MaxContainers: 2}, `{"memory_in_bytes":1,"max_containers":2}`},
		{"create response", garden.CreateResponse{Handle: "h"}, `{"Handle":"h"}`},
		{"list response", garden.ListResponse{Handles: []string{"a"}}, `{"Handles":["a"]}`},
		{"net in response drops zero ports", garden.NetInResponse{HostPort: 1}, `{"host_port":1}`},
		{"error body keeps all keys", garden.Error{Message: "m"}, `{"Type":"","Message":"m","Handle":"","ProcessID":"","Binary":""}`},
		{"cpu limits", garden.CPULimits{Weight: 1, LimitInShares: 2}, `{"weight":1,"limit_in_shares":2}`},
		{"disk limits", garden.DiskLimits{InodeSoft: 1, InodeHard: 2, ByteSoft: 3, ByteHard: 4, Scope: garden.DiskLimitScopeExclusive},
			`{"inode_soft":1,"inode_hard":2,"byte_soft":3,"byte_hard":4,"scope":1}`},
		{"bandwidth limits", garden.BandwidthLimits{RateInBytesPerSecond: 1, BurstRateInBytesPerSecond: 2}, `{"rate":1,"burst":2}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			require.NoError(t, err)
			require.Equal(t, tc.want, string(b))
		})
	}
}

func TestErrorsRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		err  error
		body garden.Error
	}{
		{"container not found", garden.ContainerNotFoundError{Handle: "h"},
			garden.Error{Type: "ContainerNotFoundError", Message: "unknown handle: h", Handle: "h"}},
		{"process not found", garden.ProcessNotFoundError{ProcessID: "p"},
			garden.Error{Type: "ProcessNotFoundError", Message: "unknown process: p", ProcessID: "p"}},
		{"executable not found", garden.ExecutableNotFoundError{Message: "no sh"}, garden.Error{Type: "ExecutableNotFoundError", Message: "no sh"}},
		{"service unavailable", garden.ServiceUnavailableError{Cause: "busy"}, garden.Error{Type: "ServiceUnavailableError", Message: "busy"}},
		{"unrecoverable", garden.UnrecoverableError{Symptom: "broken"}, garden.Error{Type: "UnrecoverableError", Message: "broken"}},
		{"generic keeps the whole wrapped message", errors.New("plain"), garden.Error{Message: "context: plain"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wrapped := fmt.Errorf("context: %w", tc.err)
			require.Equal(t, &tc.body, garden.NewError(wrapped))
			back := tc.body.Typed()
			if _, generic := back.(*garden.Error); generic {
				require.Equal(t, "context: plain", back.Error())
			} else {
				require.Equal(t, tc.err, back)
			}
		})
	}
	require.ErrorIs(t, garden.ContainerNotFoundError{Handle: "h"}, garden.ContainerNotFoundError{})
	require.NotErrorIs(t, garden.ContainerNotFoundError{Handle: "h"}, garden.ContainerNotFoundError{Handle: "other"})
	require.ErrorIs(t, fmt.Errorf("x: %w", garden.ProcessNotFoundError{ProcessID: "p"}), garden.ProcessNotFoundError{})
}
