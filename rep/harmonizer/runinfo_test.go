package harmonizer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func TestRunInfoCache(t *testing.T) {
	d := func(guid string) *modelsv1.DesiredLRP { return &modelsv1.DesiredLRP{ProcessGuid: guid} }
	t.Run("holds at most its size, dropping the least recently used", func(t *testing.T) {
		c := NewRunInfoCache(3)
		for i := range 3 {
			c.Put(fmt.Sprint("pg", i), "e", 1, d(fmt.Sprint("pg", i)))
		}
		_, ok := c.Get("pg0", "e", 1) // pg0 used: pg1 is the oldest now
		require.True(t, ok)
		c.Put("pg3", "e", 1, d("pg3"))
		require.Equal(t, 3, c.Len())
		_, ok = c.Get("pg1", "e", 1)
		require.False(t, ok, "pg1 dropped")
		for _, g := range []string{"pg0", "pg2", "pg3"} {
			_, ok := c.Get(g, "e", 1)
			require.True(t, ok, g)
		}
		for i := range 1000 {
			c.Put(fmt.Sprint("x", i), "e", 1, d("x"))
		}
		require.Equal(t, 3, c.Len())
		require.EqualValues(t, 1001, c.Stats().Evicted)
	})
	t.Run("another version misses and replaces it; an older one does not", func(t *testing.T) {
		c := NewRunInfoCache(0)
		c.Put("pg", "e1", 5, d("v1"))
		_, ok := c.Get("pg", "e2", 5)
		require.False(t, ok, "new epoch")
		_, ok = c.Get("pg", "e1", 6)
		require.False(t, ok, "new run revision")
		c.Put("pg", "e1", 6, d("v2"))
		got, ok := c.Get("pg", "e1", 6)
		require.True(t, ok)
		require.Equal(t, "v2", got.GetProcessGuid())
		c.Put("pg", "e1", 5, d("v1")) // a slow fetch of the older version
		_, ok = c.Get("pg", "e1", 6)
		require.True(t, ok)
		require.Equal(t, 1, c.Len())
	})
	t.Run("an unknown version never hits", func(t *testing.T) {
		c := NewRunInfoCache(0)
		c.Put("pg", "", 0, d("v"))
		require.Equal(t, 0, c.Len())
		_, ok := c.Get("pg", "", 0)
		require.False(t, ok)
	})
}

func TestRunInfoCacheFetch(t *testing.T) {
	desired := func(guid, epoch string) *modelsv1.DesiredLRP {
		return &modelsv1.DesiredLRP{ProcessGuid: guid, ModificationTag: &modelsv1.ModificationTag{Epoch: epoch}}
	}
	t.Run("callers of every cell share one fetch per guid, then the cache", func(t *testing.T) {
		c := NewRunInfoCache(0)
		var calls atomic.Int32
		release := make(chan struct{})
		fetch := func(ctx context.Context) (*modelsv1.DesiredLRP, int64, error) {
			calls.Add(1)
			<-release
			return desired("pg", "e"), 7, nil
		}
		const callers = 50
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := c.Fetch(context.Background(), "pg", "e", 7, fetch)
				if err == nil && d.GetProcessGuid() != "pg" {
					err = fmt.Errorf("got %q", d.GetProcessGuid())
				}
				errs <- err
			}()
		}
		require.Eventually(t, func() bool { return calls.Load() == 1 }, 5*time.Second, time.Millisecond)
		time.Sleep(20 * time.Millisecond) // let the callers queue behind the fetch
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.EqualValues(t, 1, calls.Load(), "one fetch for %d callers", callers)
		_, err := c.Fetch(context.Background(), "pg", "e", 7, fetch)
		require.NoError(t, err)
		require.EqualValues(t, 1, calls.Load(), "then served from the cache")
		require.EqualValues(t, 1, c.Stats().Fetches)
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c.Collector())
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP gavel_rep_run_info_fetches_total GetDesiredLRP calls made for the run-info cache (one per process guid however many cells wait for it).
# TYPE gavel_rep_run_info_fetches_total counter
gavel_rep_run_info_fetches_total 1
`), "gavel_rep_run_info_fetches_total"))
	})
	t.Run("the caller that started a fetch giving up does not fail the others", func(t *testing.T) {
		c := NewRunInfoCache(0)
		release := make(chan struct{})
		fetched := make(chan struct{}, 1)
		fetch := func(ctx context.Context) (*modelsv1.DesiredLRP, int64, error) {
			fetched <- struct{}{}
			select {
			case <-release:
				return desired("pg", "e"), 3, ctx.Err()
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		}
		starter, stop := context.WithCancel(context.Background())
		starterErr := make(chan error, 1)
		go func() {
			_, err := c.Fetch(starter, "pg", "e", 3, fetch)
			starterErr <- err
		}()
		<-fetched
		otherErr := make(chan error, 1)
		go func() {
			_, err := c.Fetch(context.Background(), "pg", "e", 3, fetch)
			otherErr <- err
		}()
		stop()
		require.ErrorIs(t, <-starterErr, context.Canceled, "the starter stops waiting")
		time.Sleep(20 * time.Millisecond)
		close(release)
		require.NoError(t, <-otherErr, "the fetch went on for the other caller")
	})
	t.Run("an answer older than the version asked for is fetched again", func(t *testing.T) {
		c := NewRunInfoCache(0)
		var calls atomic.Int32
		fetch := func(ctx context.Context) (*modelsv1.DesiredLRP, int64, error) {
			n := calls.Add(1)
			return desired(fmt.Sprint("v", n), "e"), int64(n), nil
		}
		d, err := c.Fetch(context.Background(), "pg", "e", 2, fetch)
		require.NoError(t, err)
		require.Equal(t, "v2", d.GetProcessGuid())
		require.EqualValues(t, 2, calls.Load())
	})
	t.Run("a failed fetch is not held and is tried again by the next caller", func(t *testing.T) {
		c := NewRunInfoCache(0)
		var calls atomic.Int32
		boom := errors.New("unavailable")
		fetch := func(ctx context.Context) (*modelsv1.DesiredLRP, int64, error) {
			if calls.Add(1) == 1 {
				return nil, 0, boom
			}
			return desired("pg", "e"), 4, nil
		}
		_, err := c.Fetch(context.Background(), "pg", "e", 4, fetch)
		require.ErrorIs(t, err, boom)
		require.Equal(t, 0, c.Len())
		d, err := c.Fetch(context.Background(), "pg", "e", 4, fetch)
		require.NoError(t, err)
		require.Equal(t, "pg", d.GetProcessGuid())
		_, ok := c.Get("pg", "e", 4)
		require.True(t, ok)
	})
}
