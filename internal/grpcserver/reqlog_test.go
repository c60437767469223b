package grpcserver

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gavelhq/gavel/internal/logging"
)

func TestRequestLoggerIsMadeOnlyWhenItWrites(t *testing.T) {
	var out bytes.Buffer
	parent, err := logging.NewWithWriter("test", logging.LevelInfo, &out)
	require.NoError(t, err)
	r := newRequestLogger(parent, "/svc/Method", "req-7")

	assert.False(t, logging.Enabled(r, lager.DEBUG), "a request logger keeps its parent's level")
	assert.True(t, logging.Enabled(r, lager.INFO))
	r.Debug("below-the-level")
	assert.Nil(t, r.l, "a call below the level must not make the session")
	assert.Empty(t, out.String())

	r.Info("written", lager.Data{"k": "v"})
	require.NotNil(t, r.l)
	line := out.String()
	assert.Contains(t, line, `"message":"test.request.written"`)
	assert.Contains(t, line, `"method":"/svc/Method"`)
	assert.Contains(t, line, `"request-id":"req-7"`)
	assert.Contains(t, line, `"k":"v"`)

	out.Reset()
	r.Error("failed", errors.New("boom"))
	r.Session("inner").Info("nested")
	assert.Contains(t, out.String(), `"error":"boom"`)
	assert.Contains(t, out.String(), `"message":"test.request.inner.nested"`)
	assert.Equal(t, 2, bytes.Count(out.Bytes(), []byte(`"request-id":"req-7"`)), "every line carries the request's data")
}

func TestRequestIDsAreDistinctRandomUUIDs(t *testing.T) {
	g := newRequestIDs()
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				id := g.next()
				u, err := uuid.Parse(id)
				if !assert.NoError(t, err, id) {
					return
				}
				assert.Equal(t, uuid.Version(4), u.Version(), id)
				assert.Equal(t, uuid.RFC4122, u.Variant(), id)
				mu.Lock()
				assert.False(t, seen[id], "id %s given twice", id)
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Len(t, seen, 2000)
}
