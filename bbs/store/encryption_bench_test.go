package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/gavelhq/gavel/bbs/encryption"
	"github.com/gavelhq/gavel/internal/etcdtest"
)

// encryptionModes are the keyrings the encryption benchmarks compare.
func encryptionModes(b *testing.B) map[string]*encryption.Keyring {
	return map[string]*encryption.Keyring{"off": nil, "on": keyring(b, "k1", "k1")}
}

// BenchmarkEncryptionWrite desires one-instance LRPs with an env secret from
// 32 concurrent clients, with encryption off and on.
func BenchmarkEncryptionWrite(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			f := newStoreAt(b, etcdtest.Prefix(b), encryptionModes(b)[mode])
			var n atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := f.store.DesireLRP(f.ctx, secretLRP(fmt.Sprintf("pg-%d", n.Add(1)))); err != nil {
						b.Error(err)
					}
				}
			})
		})
	}
}

// BenchmarkEncryptionRead reads desired LRPs back (from the watch cache,
// which holds them decrypted), with encryption off and on.
func BenchmarkEncryptionRead(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			f := newStoreAt(b, etcdtest.Prefix(b), encryptionModes(b)[mode])
			for i := range 100 {
				if _, err := f.store.DesireLRP(f.ctx, secretLRP(fmt.Sprintf("pg-%d", i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.store.GetDesiredLRP(fmt.Sprintf("pg-%d", i%100)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncryptionCacheLoad measures a BBS start: the watch cache lists
// and decodes 2,000 desired LRPs (8,000 records), with encryption off and on.
func BenchmarkEncryptionCacheLoad(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			kr := encryptionModes(b)[mode]
			prefix := etcdtest.Prefix(b)
			f := newStoreAt(b, prefix, kr)
			for i := range 2000 {
				if _, err := f.store.DesireLRP(f.ctx, secretLRP(fmt.Sprintf("pg-%d", i))); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s := New(Options{Client: f.client, KeyPrefix: prefix, Logger: lager.NewLogger("load"), Keyring: kr})
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				done := make(chan struct{})
				go func() { _ = s.Run(ctx); close(done) }()
				if err := s.WaitSynced(ctx); err != nil {
					b.Fatal(err)
				}
				cancel()
				<-done
			}
		})
	}
}
