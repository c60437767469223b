package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/encryption"
	"github.com/gavelhq/gavel/bbs/models"
)

// maxAttempts bounds how often a request is rebuilt after losing a compare to a concurrent writer.
const maxAttempts = 10

// Options configures a Store.
type Options struct {
	Client *clientv3.Client
	// KV is etcd's KV API that the group committer sends its transactions
	// to. nil is Client's own connection; a Client without one (etcd's
	// in-process client) needs the KV that calls the same server in-process
	// (internal/etcdserver's LocalKV).
	KV        pb.KVClient
	KeyPrefix string
	Clock     clock.Clock
	Logger    lager.Logger
	Committer CommitterOptions
	// CrashPolicy decides immediate restarts on CrashActualLRP.
	CrashPolicy models.CrashPolicy
	// MaxTaskRetries is how often a task may be rejected before it fails (3).
	MaxTaskRetries int32
	// MaxTxnOps is etcd's --max-txn-ops (default 128). Writes that grow
	// with their input (a desire of many instances, a scale, a removal) are
	// split into transactions that fit it; see desired.go.
	MaxTxnOps int
	// MaxRequestBytes is etcd's --max-request-bytes (default 1.5 MiB); the
	// same splitting keeps every transaction below it.
	MaxRequestBytes int
	// ObserveCommit, when set, is told the size and duration of every transaction.
	ObserveCommit func(batch int, d time.Duration)
	// Keyring seals records on write and opens them on read; nil writes
	// plaintext (and still reads plaintext records).
	Keyring *encryption.Keyring
}

// Store is the BBS's etcd-backed state. Reads come from the watch cache;
// writes are guarded transactions through the group committer. Safe for
// concurrent use; Run must be running.
type Store struct {
	client    *clientv3.Client
	keys      Keys
	keyring   *encryption.Keyring
	cache     *Cache
	committer *Committer
	clock     clock.Clock
	logger    lager.Logger
	policy    models.CrashPolicy
	maxTask   int32
	// chunkOps and chunkBytes bound one transaction of a split write.
	chunkOps   int
	chunkBytes int
	// hooks lets tests interrupt split writes.
	hooks hooks
	// reencrypt is the progress of re-encryption under the active key.
	reencrypt ReencryptStats
	// subscriptions counts event subscriptions by where they are served from.
	subscriptions SubscriptionStats
}

// hooks are test seams; production code leaves them nil.
type hooks struct {
	// afterChunk runs after each follow-up transaction of a split write; an
	// error stops the write there, as a crash would.
	afterChunk func() error
	// afterReencryptPage runs after each checkpointed page of re-encryption.
	afterReencryptPage func()
}

// New returns a store; call Run to start its cache and committer.
func New(opts Options) *Store {
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.CrashPolicy == (models.CrashPolicy{}) {
		opts.CrashPolicy = models.DefaultCrashPolicy()
	}
	if opts.MaxTaskRetries == 0 {
		opts.MaxTaskRetries = 3
	}
	if opts.Committer.EtcdMaxTxnOps <= 0 {
		opts.Committer.EtcdMaxTxnOps = opts.MaxTxnOps
	}
	if opts.Committer.EtcdMaxRequestBytes <= 0 {
		opts.Committer.EtcdMaxRequestBytes = opts.MaxRequestBytes
	}
	keys := NewKeys(opts.KeyPrefix)
	kv := opts.KV
	if kv == nil {
		if opts.Client.ActiveConnection() == nil {
			panic("store: Options.KV is required with an in-process etcd client (it has no connection to send transactions on)")
		}
		kv = clientv3.RetryKVClient(opts.Client)
	}
	c := NewCommitter(kv, opts.Committer, opts.ObserveCommit)
	copts := c.Options()
	return &Store{
		client:    opts.Client,
		keys:      keys,
		keyring:   opts.Keyring,
		cache:     newCache(opts.Client, keys, opts.Logger, opts.Keyring),
		committer: c,
		clock:     opts.Clock,
		logger:    opts.Logger.Session("store"),
		policy:    opts.CrashPolicy,
		maxTask:   opts.MaxTaskRetries,
		// A split write's transactions are as wide as etcd allows, but no
		// wider than a group commit, so none of them stalls etcd's apply loop.
		chunkOps:   min(copts.EtcdMaxTxnOps, max(copts.MaxOps, 128)),
		chunkBytes: copts.MaxBytes,
	}
}

// Keys is the store's key layout.
func (s *Store) Keys() Keys { return s.keys }

// Cache is the store's watch cache.
func (s *Store) Cache() *Cache { return s.cache }

// Committer is the store's group committer.
func (s *Store) Committer() *Committer { return s.committer }

// Run runs the watch cache and the committer until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = s.cache.Run(ctx) }()
	go func() { defer wg.Done(); _ = s.committer.Run(ctx) }()
	wg.Wait()
	return ctx.Err()
}

// WaitSynced blocks until the cache holds a snapshot or ctx ends.
func (s *Store) WaitSynced(ctx context.Context) error {
	select {
	case <-s.cache.Synced():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the watch cache: %w", ctx.Err())
	}
}

// marshal encodes m and seals it for the record at key.
func (s *Store) marshal(key string, m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: encode %T: %v", models.ErrInvalid, m, err)
	}
	sealed, err := s.keyring.Seal([]byte(key), b)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", key, err)
	}
	return sealed, nil
}

// Keyring is the store's keyring (nil when encryption is off).
func (s *Store) Keyring() *encryption.Keyring { return s.keyring }

// apply builds a mutation from the cached state and commits it, rebuilding it
// when a concurrent writer got there first. build runs under the cache's read
// lock: it must only read st. A nil mutation means nothing to write. On
// success the cache reflects the write before apply returns.
func (s *Store) apply(ctx context.Context, build func(st *cacheState) (*mutation, error)) error {
	for attempt := 1; ; attempt++ {
		var m *mutation
		var err error
		s.cache.read(func(st *cacheState) { m, err = build(st) })
		if err != nil || m == nil {
			return err
		}
		r := s.committer.Commit(ctx, m)
		if r.err != nil {
			return classifyCommit(ctx, r.err)
		}
		if r.ok {
			// The cache keeps these models rather than decoding its own
			// writes back; build's models are not changed after it returns.
			s.cache.offer(m.written, r.rev)
		}
		if err := s.cache.WaitForRevision(ctx, r.rev); err != nil {
			return err
		}
		if r.ok {
			return nil
		}
		if attempt == maxAttempts {
			return fmt.Errorf("%w after %d attempts", models.ErrConflict, attempt)
		}
	}
}

// applyMany is apply for independent writes, each failing alone: it builds
// them all in one read of the cache, enqueues them together (the committer
// packs them into as few transactions as their keys allow), and waits once
// for the cache to reach the newest revision, instead of a goroutine, a
// cache read and a wait per write. A write whose guards failed goes through
// apply again on its own. errs[i] is build i's outcome.
func (s *Store) applyMany(ctx context.Context, builds []func(st *cacheState) (*mutation, error)) []error {
	errs := make([]error, len(builds))
	ms := make([]*mutation, len(builds))
	s.cache.read(func(st *cacheState) {
		for i, build := range builds {
			ms[i], errs[i] = build(st)
		}
	})
	queued := make([]bool, len(builds))
	for i, m := range ms {
		if errs[i] != nil || m == nil {
			continue
		}
		if err := s.committer.enqueue(ctx, m); err != nil {
			errs[i] = classifyCommit(ctx, err)
			continue
		}
		queued[i] = true
	}
	var newest int64
	var committed, again []int // guards held; guards failed
	for i, m := range ms {
		if !queued[i] {
			continue
		}
		r := s.committer.wait(ctx, m)
		if r.err != nil {
			errs[i] = classifyCommit(ctx, r.err)
			continue
		}
		newest = max(newest, r.rev)
		if r.ok {
			// As in apply: the cache keeps these models.
			s.cache.offer(m.written, r.rev)
			committed = append(committed, i)
		} else {
			again = append(again, i)
		}
	}
	if newest > 0 {
		if err := s.cache.WaitForRevision(ctx, newest); err != nil {
			for _, i := range append(committed, again...) {
				errs[i] = err
			}
			return errs
		}
	}
	for _, i := range again {
		errs[i] = s.apply(ctx, builds[i])
	}
	return errs
}

// classifyCommit is apply's reading of a failed commit: ctx's own error
// when it ended, else etcd's classified.
func classifyCommit(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	return classify(err)
}

// room says whether m, grown by width operations and bytes, still fits one
// transaction of a split write.
func (s *Store) room(m *mutation, width, bytes int) bool {
	return m.width()+width <= s.chunkOps && m.bytes+bytes <= s.chunkBytes
}

// putProto adds a put of msg, sealed, under key to m.
func (s *Store) putProto(m *mutation, key string, msg proto.Message) error {
	b, err := s.marshal(key, msg)
	if err != nil {
		return err
	}
	m.put(key, b)
	return nil
}

func notFound(what string, args ...any) error {
	return fmt.Errorf("%w: %s", models.ErrNotFound, fmt.Sprintf(what, args...))
}

func (s *Store) checkDecodable(key string) error {
	if err := s.cache.undecodableAt(key); err != nil {
		return fmt.Errorf("record %s cannot be decoded and is kept for an operator: %w", key, err)
	}
	return nil
}

// now is the store's clock reading.
func (s *Store) now() time.Time { return s.clock.Now() }
