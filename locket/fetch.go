package locket

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reader reads records from a backend; [EtcdBackend] and [ConsulBackend]
// implement it. Implementations are safe for concurrent use and do one
// round trip per call.
type Reader interface {
	// Get returns the value of the record at key and whether there is one.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// List returns every record under prefix, keyed by the rest of its key
	// after prefix.
	List(ctx context.Context, prefix string) (map[string][]byte, error)
}

// FetchLock returns the record of the lock name under keyPrefix ("" means
// DefaultKeyPrefix), or an error wrapping ErrNotFound when nobody holds it.
func FetchLock(ctx context.Context, client *clientv3.Client, keyPrefix, name string) (Record, error) {
	return FetchLockFrom(ctx, NewEtcdBackend(client, nil), keyPrefix, name)
}

// FetchLockFrom is [FetchLock] over any [Reader].
func FetchLockFrom(ctx context.Context, r Reader, keyPrefix, name string) (Record, error) {
	key := LockKey(keyPrefix, name)
	value, ok, err := r.Get(ctx, key)
	if err != nil {
		return Record{}, fmt.Errorf("locket: fetching lock %s: %w", key, err)
	}
	if !ok {
		return Record{}, fmt.Errorf("%w: lock %s", ErrNotFound, key)
	}
	var rec Record
	if err := json.Unmarshal(value, &rec); err != nil {
		return Record{}, fmt.Errorf("locket: decoding lock %s: %w", key, err)
	}
	return rec, nil
}

// FetchPresence returns the value registered for cellID, or an error
// wrapping ErrNotFound.
func FetchPresence(ctx context.Context, client *clientv3.Client, keyPrefix, cellID string) ([]byte, error) {
	return FetchPresenceFrom(ctx, NewEtcdBackend(client, nil), keyPrefix, cellID)
}

// FetchPresenceFrom is [FetchPresence] over any [Reader].
func FetchPresenceFrom(ctx context.Context, r Reader, keyPrefix, cellID string) ([]byte, error) {
	key := PresenceKey(keyPrefix, cellID)
	value, ok, err := r.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("locket: fetching presence %s: %w", key, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: presence %s", ErrNotFound, key)
	}
	return value, nil
}

// FetchPresences returns every registered presence under keyPrefix, keyed by
// cell id.
func FetchPresences(ctx context.Context, client *clientv3.Client, keyPrefix string) (map[string][]byte, error) {
	return FetchPresencesFrom(ctx, NewEtcdBackend(client, nil), keyPrefix)
}

// FetchPresencesFrom is [FetchPresences] over any [Reader].
func FetchPresencesFrom(ctx context.Context, r Reader, keyPrefix string) (map[string][]byte, error) {
	prefix := PresencePrefix(keyPrefix)
	out, err := r.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("locket: listing presences under %s: %w", prefix, err)
	}
	return out, nil
}
