package bulker_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/nsync/bulker"
	"github.com/gavelhq/gavel/nsync/ccmessages"
	"github.com/gavelhq/gavel/nsync/nsynctest"
	"github.com/gavelhq/gavel/nsync/recipe"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

func recipeConfig() recipe.Config {
	return recipe.Config{FileServerURL: "http://fs", LifecycleBundles: map[string]string{"buildpack/cflinuxfs4": "bp.tgz"}, MaxInstances: 100}
}

func app(guid string, n int32, etag string) ccmessages.DesireAppRequestFromCC {
	return ccmessages.DesireAppRequestFromCC{ProcessGUID: guid, LogGUID: guid, ETag: etag, DropletURI: "http://cc/d", Stack: "cflinuxfs4",
		StartCommand: "./run", NumInstances: n, MemoryMB: 128, DiskMB: 128}
}

type fixture struct {
	bbs *nsynctest.BBS
	cc  *nsynctest.Controller
	b   *bulker.Bulker
}

func newFixture(t *testing.T, pageSize int) *fixture {
	f := &fixture{bbs: nsynctest.StartBBS(t, nil), cc: nsynctest.NewController()}
	t.Cleanup(f.cc.Close)
	f.b = bulker.New(bulker.Config{ControllerURL: f.cc.URL(), ControllerUser: f.cc.User, ControllerPassword: f.cc.Password,
		PageSize: pageSize, Workers: 8, DomainTTL: 2 * time.Second, Recipe: recipeConfig()},
		f.bbs.Client, bulker.NewMetrics(prometheus.NewRegistry()), lager.NewLogger("bulker"))
	return f
}

func (f *fixture) desire(t *testing.T, a ccmessages.DesireAppRequestFromCC) {
	lrp, err := recipeConfig().DesiredLRP(&a)
	require.NoError(t, err)
	_, err = f.bbs.Client.DesireLRP(context.Background(), &bbsv1.DesireLRPRequest{DesiredLrp: lrp})
	require.NoError(t, err)
}

func (f *fixture) lrps(t *testing.T) map[string]*bbsv1.GetDesiredLRPResponse {
	got, err := f.bbs.Client.ListDesiredLRPs(context.Background(), &bbsv1.ListDesiredLRPsRequest{Filter: &bbsv1.DesiredLRPFilter{Domain: "cf-apps"}})
	require.NoError(t, err)
	out := map[string]*bbsv1.GetDesiredLRPResponse{}
	for _, l := range got.DesiredLrps {
		out[l.ProcessGuid] = &bbsv1.GetDesiredLRPResponse{DesiredLrp: l}
	}
	return out
}

func (f *fixture) fresh(t *testing.T, domain string) bool {
	got, err := f.bbs.Client.ListDomains(context.Background(), &bbsv1.ListDomainsRequest{})
	require.NoError(t, err)
	for _, d := range got.Domains {
		if d.Name == domain {
			return true
		}
	}
	return false
}

func TestCreatesUpdatesRemoves(t *testing.T) {
	f := newFixture(t, 2) // several pages
	ctx := context.Background()
	f.desire(t, app("stale", 1, "old"))
	f.desire(t, app("gone", 1, "e"))
	f.desire(t, app("same", 1, "e"))
	f.cc.SetApp(app("stale", 3, "new"))
	f.cc.SetApp(app("same", 1, "e"))
	f.cc.SetApp(app("missing", 2, "e"))
	for i := range 3 {
		f.cc.SetApp(app(fmt.Sprintf("more-%d", i), 1, "e"))
	}

	res, err := f.b.SyncApps(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"missing", "more-0", "more-1", "more-2"}, res.Desired)
	require.Equal(t, []string{"stale"}, res.Updated)
	require.Equal(t, []string{"gone"}, res.Removed)
	require.True(t, res.Fresh)
	require.True(t, f.fresh(t, "cf-apps"))

	lrps := f.lrps(t)
	require.NotContains(t, lrps, "gone")
	require.Equal(t, int32(3), lrps["stale"].DesiredLrp.Instances)
	require.Equal(t, "new", lrps["stale"].DesiredLrp.Annotation)
	require.Equal(t, int32(2), lrps["missing"].DesiredLrp.Instances)

	res, err = f.b.SyncApps(ctx)
	require.NoError(t, err)
	require.Empty(t, res.Desired)
	require.Empty(t, res.Updated)
	require.Empty(t, res.Removed)
}

func TestNeverDeletesOnAFailedPage(t *testing.T) {
	f := newFixture(t, 2)
	f.desire(t, app("gone", 1, "e"))
	for i := range 5 {
		f.cc.SetApp(app(fmt.Sprintf("app-%d", i), 1, "e"))
	}
	f.cc.FailPage(2)
	res, err := f.b.SyncApps(context.Background())
	require.ErrorContains(t, err, "fingerprints page 2")
	require.Empty(t, res.Removed)
	require.False(t, res.Fresh)
	require.Contains(t, f.lrps(t), "gone")
	require.False(t, f.fresh(t, "cf-apps"))

	f.cc.FailPage(0)
	res, err = f.b.SyncApps(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"gone"}, res.Removed)
}

func TestFreshOnlyWhileTheControllerAnswers(t *testing.T) {
	f := newFixture(t, 10)
	f.cc.SetApp(app("a", 1, "e"))
	_, err := f.b.SyncApps(context.Background())
	require.NoError(t, err)
	require.True(t, f.fresh(t, "cf-apps"))
	f.cc.SetDown(true)
	_, err = f.b.SyncApps(context.Background())
	require.ErrorContains(t, err, "503")
	require.Eventually(t, func() bool { return !f.fresh(t, "cf-apps") }, 10*time.Second, 100*time.Millisecond,
		"cf-apps stayed fresh through a controller outage longer than the TTL")
}

func TestTasks(t *testing.T) {
	f := newFixture(t, 10)
	ctx := context.Background()
	rc := recipeConfig()
	for _, g := range []string{"wanted", "unwanted", "canceling"} {
		def, err := rc.Task(&ccmessages.TaskRequestFromCC{TaskGUID: g, Command: "x", DropletURI: "http://d", RootFS: "cflinuxfs4"})
		require.NoError(t, err)
		_, err = f.bbs.Client.DesireTask(ctx, &bbsv1.DesireTaskRequest{TaskGuid: g, Domain: "cf-tasks", Definition: def})
		require.NoError(t, err)
	}
	f.cc.SetTask(ccmessages.TaskState{TaskGUID: "wanted", State: ccmessages.TaskRunning})
	f.cc.SetTask(ccmessages.TaskState{TaskGUID: "canceling", State: ccmessages.TaskCanceling})
	f.cc.SetTask(ccmessages.TaskState{TaskGUID: "lost", State: ccmessages.TaskRunning, CompletionCallbackURL: f.cc.CallbackURL("lost")})
	f.cc.SetTask(ccmessages.TaskState{TaskGUID: "done", State: ccmessages.TaskSucceeded})

	res, err := f.b.SyncTasks(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"lost"}, res.Failed)
	require.ElementsMatch(t, []string{"unwanted", "canceling"}, res.Canceled)
	require.True(t, res.Fresh)
	cbs := f.cc.FailedCallbacks()
	require.Len(t, cbs, 1)
	require.Equal(t, "lost", cbs[0].TaskGUID)
	require.True(t, cbs[0].Failed)
	got, err := f.bbs.Client.GetTask(ctx, &bbsv1.GetTaskRequest{TaskGuid: "wanted"})
	require.NoError(t, err)
	require.NotEqual(t, "COMPLETED", got.Task.State.String())
}
