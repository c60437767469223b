package locket

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// FetchLock returns the record of the lock name under keyPrefix ("" means
// DefaultKeyPrefix), or an error wrapping ErrNotFound when nobody holds it.
func FetchLock(ctx context.Context, client *clientv3.Client, keyPrefix, name string) (Record, error) {
	key := LockKey(keyPrefix, name)
	resp, err := client.Get(ctx, key)
	if err != nil {
		return Record{}, fmt.Errorf("locket: fetching lock %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return Record{}, fmt.Errorf("%w: lock %s", ErrNotFound, key)
	}
	var r Record
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return Record{}, fmt.Errorf("locket: decoding lock %s: %w", key, err)
	}
	return r, nil
}

// FetchPresence returns the value registered for cellID, or an error
// wrapping ErrNotFound.
func FetchPresence(ctx context.Context, client *clientv3.Client, keyPrefix, cellID string) ([]byte, error) {
	key := PresenceKey(keyPrefix, cellID)
	resp, err := client.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("locket: fetching presence %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w: presence %s", ErrNotFound, key)
	}
	return resp.Kvs[0].Value, nil
}

// FetchPresences returns every registered presence under keyPrefix, keyed by
// cell id.
func FetchPresences(ctx context.Context, client *clientv3.Client, keyPrefix string) (map[string][]byte, error) {
	prefix := PresencePrefix(keyPrefix)
	resp, err := client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("locket: listing presences under %s: %w", prefix, err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix)] = kv.Value
	}
	return out, nil
}
