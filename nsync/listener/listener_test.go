package listener_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/etcdtest"
	"github.com/gavelhq/gavel/nsync/ccmessages"
	"github.com/gavelhq/gavel/nsync/listener"
	"github.com/gavelhq/gavel/nsync/nsynctest"
	"github.com/gavelhq/gavel/nsync/recipe"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunShared(m)) }

func recipeConfig() recipe.Config {
	return recipe.Config{FileServerURL: "http://fs", LifecycleBundles: map[string]string{"buildpack/cflinuxfs4": "bp.tgz", "docker": "d.tgz"}, MaxInstances: 100}
}

func app(guid string, n int32, etag string) ccmessages.DesireAppRequestFromCC {
	return ccmessages.DesireAppRequestFromCC{ProcessGUID: guid, LogGUID: guid, ETag: etag, DropletURI: "http://cc/d", Stack: "cflinuxfs4",
		StartCommand: "./run", NumInstances: n, MemoryMB: 256, DiskMB: 256,
		RoutingInfo: ccmessages.RoutingInfo{HTTPRoutes: []ccmessages.HTTPRoute{{Hostname: guid + ".example"}}}}
}

func do(t *testing.T, method, url string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(t, err)
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, r)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func TestDesireScaleRemoveAgainstTheBBS(t *testing.T) {
	bbs := nsynctest.StartBBS(t, nil)
	h := listener.New(bbs.Client, recipeConfig(), 0, listener.NewMetrics(prometheus.NewRegistry()), lager.NewLogger("test"))
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx := context.Background()

	code, body := do(t, "PUT", srv.URL+"/v1/apps/web-v1", app("web-v1", 2, "e1"))
	require.Equal(t, http.StatusAccepted, code, body)
	got, err := bbs.Client.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: "web-v1"})
	require.NoError(t, err)
	require.Equal(t, int32(2), got.DesiredLrp.Instances)
	require.Equal(t, "cf-apps", got.DesiredLrp.Domain)

	// An update changes instances, routes and annotation only.
	upd := app("web-v1", 5, "e2")
	upd.MemoryMB = 4096 // ignored on update: a memory change arrives as a new process guid
	upd.RoutingInfo.HTTPRoutes = append(upd.RoutingInfo.HTTPRoutes, ccmessages.HTTPRoute{Hostname: "extra.example"})
	code, body = do(t, "PUT", srv.URL+"/v1/apps/web-v1", upd)
	require.Equal(t, http.StatusAccepted, code, body)
	got, err = bbs.Client.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: "web-v1"})
	require.NoError(t, err)
	require.Equal(t, int32(5), got.DesiredLrp.Instances)
	require.Equal(t, "e2", got.DesiredLrp.Annotation)
	require.Equal(t, int32(256), got.DesiredLrp.MemoryMb)
	require.Contains(t, got.DesiredLrp.Routes["cf-router"], "extra.example")

	code, body = do(t, "DELETE", srv.URL+"/v1/apps/web-v1/index/1", nil)
	require.Equal(t, http.StatusAccepted, code, body)
	code, _ = do(t, "DELETE", srv.URL+"/v1/apps/web-v1/index/x", nil)
	require.Equal(t, http.StatusBadRequest, code)

	code, body = do(t, "DELETE", srv.URL+"/v1/apps/web-v1", nil)
	require.Equal(t, http.StatusAccepted, code, body)
	_, err = bbs.Client.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: "web-v1"})
	require.Error(t, err)
	code, _ = do(t, "DELETE", srv.URL+"/v1/apps/web-v1", nil)
	require.Equal(t, http.StatusNotFound, code)
}

func TestRefusalsNameTheField(t *testing.T) {
	bbs := nsynctest.StartBBS(t, nil)
	h := listener.New(bbs.Client, recipeConfig(), 0, listener.NewMetrics(prometheus.NewRegistry()), lager.NewLogger("test"))
	srv := httptest.NewServer(h)
	defer srv.Close()

	code, body := do(t, "PUT", srv.URL+"/v1/apps/a", app("b", 1, "e"))
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "process_guid")

	code, body = do(t, "PUT", srv.URL+"/v1/apps/a", `{"process_guid":"a","num_instances":"three"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "num_instances")

	code, body = do(t, "PUT", srv.URL+"/v1/apps/a", `{`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "body")

	code, body = do(t, "PUT", srv.URL+"/v1/apps/a", app("a", 1000, "e"))
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "num_instances")

	code, body = do(t, "PUT", srv.URL+"/v1/apps/a", make([]byte, listener.MaxBodyBytes+1))
	require.Equal(t, http.StatusRequestEntityTooLarge, code, body)

	code, body = do(t, "POST", srv.URL+"/v1/tasks", ccmessages.TaskRequestFromCC{TaskGUID: "t", DropletURI: "http://d", RootFS: "cflinuxfs4"})
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "command")
}

func TestTasks(t *testing.T) {
	bbs := nsynctest.StartBBS(t, nil)
	h := listener.New(bbs.Client, recipeConfig(), 0, listener.NewMetrics(prometheus.NewRegistry()), lager.NewLogger("test"))
	srv := httptest.NewServer(h)
	defer srv.Close()
	code, body := do(t, "POST", srv.URL+"/v1/tasks", ccmessages.TaskRequestFromCC{TaskGUID: "task-1", Command: "echo hi", DropletURI: "http://d", RootFS: "cflinuxfs4", MemoryMB: 64})
	require.Equal(t, http.StatusAccepted, code, body)
	got, err := bbs.Client.GetTask(context.Background(), &bbsv1.GetTaskRequest{TaskGuid: "task-1"})
	require.NoError(t, err)
	require.Equal(t, "cf-tasks", got.Task.Domain)
	code, body = do(t, "DELETE", srv.URL+"/v1/tasks/task-1", nil)
	require.Equal(t, http.StatusAccepted, code, body)
	code, _ = do(t, "DELETE", srv.URL+"/v1/tasks/nope", nil)
	require.Equal(t, http.StatusNotFound, code)
}

func TestConcurrencyCapAnswers503(t *testing.T) {
	bbs := nsynctest.StartBBS(t, nil)
	h := listener.New(bbs.Client, recipeConfig(), 1, listener.NewMetrics(prometheus.NewRegistry()), lager.NewLogger("test"))
	srv := httptest.NewServer(h)
	defer srv.Close()

	// holder holds the only slot with a request whose body is slow to come.
	// A probe can reach the handler first and take the slot; the holder is
	// then refused itself, and a new one is sent. Its declared length is past
	// what Go's server drains from a refused request (256 KiB), so a refused
	// holder is answered at once instead of waiting for its body.
	const holdLen = 300 << 10
	const head = `{"process_guid":`
	type holder struct {
		body  *io.PipeWriter
		wrote chan struct{} // closed once head is read from body
		code  chan int      // the holder's status once answered
	}
	hold := func() holder {
		pr, pw := io.Pipe()
		code := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest("PUT", srv.URL+"/v1/apps/slow", pr)
			req.ContentLength = holdLen
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				code <- 0
				return
			}
			resp.Body.Close()
			code <- resp.StatusCode
		}()
		wrote := make(chan struct{})
		go func() {
			if _, err := pw.Write([]byte(head)); err == nil {
				close(wrote)
			}
		}()
		return holder{body: pw, wrote: wrote, code: code}
	}
	cur := hold()
	// Closed before srv.Close (deferred earlier), which waits for the holder.
	defer func() { _ = cur.body.CloseWithError(io.ErrUnexpectedEOF) }()
	require.Eventually(t, func() bool {
		select {
		case <-cur.code:
			_ = cur.body.CloseWithError(io.ErrUnexpectedEOF)
			cur = hold()
			return false
		default:
		}
		req, _ := http.NewRequest("DELETE", srv.URL+"/v1/apps/x", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != ""
	}, 10*time.Second, 20*time.Millisecond)

	// The holder, once its body comes, is served: a desire with a guid alone
	// fails validation.
	<-cur.wrote
	rest := strings.Repeat(" ", holdLen-len(head)-len(`"slow"}`)) + `"slow"}`
	_, err := cur.body.Write([]byte(rest))
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, <-cur.code)
}
