package executor

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// encodeRecovery writes what encoding/json writes, as far as any decoder can
// tell: the same fields, values and omitted empty ones.
func TestRecoveryEncodingMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 7, 15, 4, 5, 123456789, time.FixedZone("x", 3600))
	for _, tc := range []struct {
		name string
		res  recoveredResource
		run  recoveredRun
	}{
		{name: "empty", res: recoveredResource{AllocatedAt: at}},
		{
			name: "an LRP",
			res:  recoveredResource{MemoryMB: 256, DiskMB: 1024, AllocatedMemoryMB: 288, LRP: true, AllocatedAt: at},
			run:  recoveredRun{LogConfig: LogConfig{Guid: "lg", Index: 7, SourceName: "APP"}, Ports: []uint32{8080, 9090}},
		},
		{
			name: "a task with everything",
			res:  recoveredResource{MemoryMB: 1, DiskMB: 2, MaxPids: 3, AllocatedMemoryMB: 1, AllocatedAt: at.UTC()},
			run: recoveredRun{
				LogConfig: LogConfig{Guid: "tg", SourceName: "TASK"}, LogRateLimit: 1 << 40, ResultFile: "/tmp/result.json",
				CheckDefinition: json.RawMessage(`{"checks":[{"tcpCheck":{"port":8080}}]}`),
			},
		},
		{
			name: "strings that need escaping",
			res:  recoveredResource{AllocatedAt: at},
			run: recoveredRun{LogConfig: LogConfig{
				Guid:       "quote\" backslash\\ tab\t nl\n cr\r bell\a bs\b ff\f nul\x00 unit\x1f",
				SourceName: "<html> & ünïcødé 日本 \u2028 \u2029 bad\xff utf8",
			}, ResultFile: "/weird \"name\""},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotRes, gotRun := encodeRecovery(tc.res, tc.run)
			wantRes, err := json.Marshal(tc.res)
			require.NoError(t, err)
			wantRun, err := json.Marshal(tc.run)
			require.NoError(t, err)
			for _, pair := range []struct{ got, want string }{{gotRes, string(wantRes)}, {gotRun, string(wantRun)}} {
				require.True(t, json.Valid([]byte(pair.got)), "valid JSON: %s", pair.got)
				var got, want any
				require.NoError(t, json.Unmarshal([]byte(pair.got), &got))
				require.NoError(t, json.Unmarshal([]byte(pair.want), &want))
				require.Equal(t, want, got, "hand-encoded %s\nencoding/json %s", pair.got, pair.want)
			}
			var res recoveredResource
			require.NoError(t, json.Unmarshal([]byte(gotRes), &res))
			require.True(t, tc.res.AllocatedAt.Equal(res.AllocatedAt))
			res.AllocatedAt = tc.res.AllocatedAt
			require.Equal(t, tc.res, res)
		})
	}
}
