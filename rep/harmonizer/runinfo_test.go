package harmonizer

import (
	"fmt"
	"testing"

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
