package store

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"

	"github.com/gavelhq/gavel/bbs/models"
)

// A full etcd (NOSPACE alarm) is ResourceExhausted, never Unavailable: no
// retry cures it until the operator frees space and disarms the alarm. The
// HA test (integration TestHAEtcdFaults, fill-quota) checks it end to end.
func TestClassifyNoSpaceIsResourceExhausted(t *testing.T) {
	for _, err := range []error{rpctypes.ErrNoSpace, rpctypes.ErrGRPCNoSpace} {
		if got := models.Code(classify(err)); got != codes.ResourceExhausted {
			t.Errorf("classify(%v) has code %s, want ResourceExhausted", err, got)
		}
		// The store classifies the committer's already classified errors again.
		if got := models.Code(classify(fmt.Errorf("etcd txn: %w", classify(err)))); got != codes.ResourceExhausted {
			t.Errorf("classify twice (%v) has code %s, want ResourceExhausted", err, got)
		}
	}
}
