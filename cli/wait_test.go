package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/bbs/client"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// gavel wait fails at once for what can never come: a name that is not
// desired, more instances than desired, instances the crash policy is
// holding back; it names each.
func TestWaitFailsFastWhenItCannotSucceed(t *testing.T) {
	addr := startBBS(t)
	started := time.Now()
	_, err := gavel(t, addr, "wait", "nope", "--running", "1", "--wait-timeout", "1m")
	require.ErrorContains(t, err, "nope is not a desired LRP")

	_, err = gavel(t, addr, "push", "two", "--command", "sleep 100", "--instances", "2")
	require.NoError(t, err)
	_, err = gavel(t, addr, "wait", "two", "--running", "3", "--wait-timeout", "1m")
	require.ErrorContains(t, err, "--running 3: two desires only 2 instance(s)")

	// Instance 0 of "crashy" crashes three times: the crash policy now waits
	// before restarting it.
	_, err = gavel(t, addr, "push", "crashy", "--command", "exit 1", "--instances", "1")
	require.NoError(t, err)
	bbs, err := client.New(client.Config{Addresses: []string{addr}})
	require.NoError(t, err)
	defer bbs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := &modelsv1.ActualLRPKey{ProcessGuid: "crashy", Index: 0, Domain: "gavel"}
	for i := range 3 {
		ik := &modelsv1.ActualLRPInstanceKey{InstanceGuid: fmt.Sprintf("guid-%d", i), CellId: "cell-a"}
		_, err := bbs.ClaimActualLRP(ctx, &bbsv1.ClaimActualLRPRequest{ProcessGuid: "crashy", Index: 0, InstanceKey: ik})
		require.NoError(t, err, "claim %d", i)
		_, err = bbs.CrashActualLRP(ctx, &bbsv1.CrashActualLRPRequest{ActualLrpKey: key, InstanceKey: ik, ErrorMessage: "Exited with status 1"})
		require.NoError(t, err, "crash %d", i)
	}
	_, err = gavel(t, addr, "wait", "crashy", "--running", "1", "--wait-timeout", "1m")
	require.ErrorContains(t, err, "index 0 CRASHED 3 times (Exited with status 1)")
	require.Less(t, time.Since(started), 30*time.Second, "none of the three waited for its timeout")
}

// "gavel scale web -1" is refused by the count check, not as a flag.
func TestScaleRefusesANegativeCount(t *testing.T) {
	addr := startBBS(t)
	_, err := gavel(t, addr, "push", "web", "--command", "sleep 100")
	require.NoError(t, err)
	_, err = execute(t, "scale", "web", "-1", "--bbs-address", addr)
	require.ErrorContains(t, err, `instance count: want a number >= 0 (got "-1")`)
}

func TestVersion(t *testing.T) {
	out, err := execute(t, "version")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "gavel "), out)
	require.Contains(t, out, "go1.")

	out, err = execute(t, "version", "--json")
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	require.NotEmpty(t, v["version"])
	require.NotEmpty(t, v["go_version"])
}
