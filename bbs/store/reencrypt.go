package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"code.cloudfoundry.org/lager/v3"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gavelhq/gavel/bbs/encryption"
)

// reencryptCheckpoint is the etcd key, below the prefix, that records how far
// re-encryption under the active key has got, so a restart resumes there.
const reencryptCheckpoint = "encryption/reencrypt"

// DefaultReencryptPage is how many keys one page of re-encryption reads.
const DefaultReencryptPage = 256

// checkpoint is the stored progress of re-encryption.
type checkpoint struct {
	Label string `json:"label"`
	After string `json:"after,omitempty"`
	Done  bool   `json:"done,omitempty"`
}

// ReencryptStats is the progress of re-encryption, for metrics. Safe for concurrent use.
type ReencryptStats struct {
	reencrypted atomic.Int64
	remaining   atomic.Int64
	failed      atomic.Int64
	mu          sync.Mutex
	byLabel     map[string]int64
}

// Reencrypted is how many records were rewritten under the active key.
func (r *ReencryptStats) Reencrypted() int64 { return r.reencrypted.Load() }

// Remaining is how many records the running pass still has to rewrite
// (counted when it starts), or the last pass left (their key is missing).
func (r *ReencryptStats) Remaining() int64 { return r.remaining.Load() }

// Failed is how many records could not be opened (their key is missing) in the last pass.
func (r *ReencryptStats) Failed() int64 { return r.failed.Load() }

// ByLabel is how many records the last completed pass found under each key
// label ("" is plaintext).
func (r *ReencryptStats) ByLabel() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.byLabel))
	for k, v := range r.byLabel {
		out[k] = v
	}
	return out
}

// ReencryptStats is the progress of the store's re-encryption.
func (s *Store) ReencryptStats() *ReencryptStats { return &s.reencrypt }

// sealedKind says whether records of k are sealed (those the store writes).
func sealedKind(k kind) bool {
	switch k {
	case kindSchedule, kindRun, kindActual, kindTask, kindDomain:
		return true
	}
	return false
}

// Reencrypt rewrites every record not under the active key with it, a page
// of keys at a time, each with a transaction guarded by the record's mod
// revision: a concurrent write wins and is already under the active key.
// Progress is checkpointed in etcd, so after a restart a pass resumes where
// it stopped, and a finished pass for the active label is not repeated. Only
// the bbs lock holder runs it. A record whose key is missing is counted and
// logged (with its label) and left as it is; the pass then reports an error
// naming the labels.
func (s *Store) Reencrypt(ctx context.Context, page int) error {
	if s.keyring == nil {
		return nil
	}
	active := s.keyring.Active()
	if page <= 0 {
		page = DefaultReencryptPage
	}
	logger := s.logger.Session("reencrypt", lager.Data{"active_key_label": active})
	ckKey := s.keys.Prefix() + reencryptCheckpoint
	var ck checkpoint
	resp, err := s.client.Get(ctx, ckKey)
	if err != nil {
		return fmt.Errorf("read the re-encryption checkpoint: %w", err)
	}
	if len(resp.Kvs) == 1 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &ck); err != nil {
			logger.Error("bad-checkpoint-restarting", err)
			ck = checkpoint{}
		}
	}
	if ck.Label == active && ck.Done {
		s.reencrypt.remaining.Store(0)
		return nil
	}
	from := s.keys.Prefix()
	if ck.Label == active && ck.After != "" {
		from = ck.After + "\x00"
		logger.Info("resuming", lager.Data{"after": ck.After})
	} else {
		logger.Info("starting")
	}
	end := clientv3.GetPrefixRangeEnd(s.keys.Prefix())
	// A first read-only scan counts what is left, so the metric shows the
	// whole pass's remaining records from the start.
	todo, err := s.countNotUnder(ctx, active, from, end, page)
	if err != nil {
		return err
	}
	s.reencrypt.remaining.Store(todo)
	byLabel := map[string]int64{}
	missing := map[string]int64{}
	s.reencrypt.failed.Store(0)
	for {
		resp, err := s.client.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(int64(page)))
		if err != nil {
			return fmt.Errorf("list records to re-encrypt: %w", err)
		}
		for _, kv := range resp.Kvs {
			if !sealedKind(s.keys.parse(string(kv.Key)).kind) {
				continue
			}
			label, _, _ := encryption.Label(kv.Value)
			if label == active {
				byLabel[label]++
				continue
			}
			done, err := s.reencryptOne(ctx, kv.Key, kv.Value, kv.ModRevision)
			switch {
			case err != nil && errors.Is(err, encryption.ErrMissingKey):
				missing[label]++
				byLabel[label]++
				s.reencrypt.failed.Add(1)
				logger.Error("record-key-missing", err, lager.Data{"key": string(kv.Key), "label": label})
			case err != nil:
				return err
			case done:
				byLabel[active]++
				s.reencrypt.reencrypted.Add(1)
			default:
				// A concurrent write replaced it, under the active key.
				byLabel[active]++
			}
			if s.reencrypt.remaining.Load() > 0 {
				s.reencrypt.remaining.Add(-1)
			}
		}
		if len(resp.Kvs) == 0 || !resp.More {
			break
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if err := s.putCheckpoint(ctx, ckKey, checkpoint{Label: active, After: last}); err != nil {
			return err
		}
		from = last + "\x00"
		if s.hooks.afterReencryptPage != nil {
			s.hooks.afterReencryptPage()
		}
	}
	s.reencrypt.remaining.Store(int64(sumValues(missing)))
	s.reencrypt.mu.Lock()
	s.reencrypt.byLabel = byLabel
	s.reencrypt.mu.Unlock()
	if len(missing) > 0 {
		return fmt.Errorf("re-encryption under %q left records whose key is missing: %v", active, missing)
	}
	if err := s.putCheckpoint(ctx, ckKey, checkpoint{Label: active, Done: true}); err != nil {
		return err
	}
	logger.Info("done", lager.Data{"reencrypted": s.reencrypt.reencrypted.Load()})
	return nil
}

// countNotUnder counts the sealable records in [from, end) not under label.
func (s *Store) countNotUnder(ctx context.Context, label, from, end string, page int) (int64, error) {
	var n int64
	for {
		resp, err := s.client.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(int64(page)))
		if err != nil {
			return 0, fmt.Errorf("count records to re-encrypt: %w", err)
		}
		for _, kv := range resp.Kvs {
			if l, _, _ := encryption.Label(kv.Value); l != label && sealedKind(s.keys.parse(string(kv.Key)).kind) {
				n++
			}
		}
		if len(resp.Kvs) == 0 || !resp.More {
			return n, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func sumValues(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// reencryptOne rewrites one record under the active key unless it changed
// since rev; done says whether it was rewritten.
func (s *Store) reencryptOne(ctx context.Context, key, value []byte, rev int64) (bool, error) {
	pt, _, err := s.keyring.Open(key, value)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", key, err)
	}
	sealed, err := s.keyring.Seal(key, pt)
	if err != nil {
		return false, fmt.Errorf("seal %s: %w", key, err)
	}
	k := string(key)
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpPut(k, string(sealed), clientv3.WithIgnoreLease())).
		Commit()
	if err != nil {
		return false, fmt.Errorf("re-encrypt %s: %w", key, classify(err))
	}
	return resp.Succeeded, nil
}

func (s *Store) putCheckpoint(ctx context.Context, key string, ck checkpoint) error {
	b, err := json.Marshal(ck)
	if err != nil {
		return fmt.Errorf("encode the re-encryption checkpoint: %w", err)
	}
	if _, err := s.client.Put(ctx, key, string(b)); err != nil {
		return fmt.Errorf("write the re-encryption checkpoint: %w", err)
	}
	return nil
}
