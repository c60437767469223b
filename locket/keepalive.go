package locket

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// keepAliveRetry is how soon a renewal is tried again after its stream
// failed or went unanswered: clientv3's own wait before a new stream.
const keepAliveRetry = 500 * time.Millisecond

// keepAliveAnswerWait is how long a renewal may go unanswered before its
// stream is taken for dead and a new one is opened. etcd holds a renewal up
// to a second while its apply loop catches up, then ends the stream.
const keepAliveAnswerWait = 2 * time.Second

// keepAliveAnswer is etcd's answer to a renewal on stream gen, or the error
// that ended that stream.
type keepAliveAnswer struct {
	gen int
	ttl int64
	err error
}

// keepAlive renews one lease on a keep-alive stream of its own. It is driven
// by its lease's monitor, which sends a renewal about a third of the TTL
// after the last answer, so an idle lease costs one message every TTL/3 or so
// and a parked goroutine reading the answers; clientv3's KeepAlive polls every lease it
// keeps twice a second from two more goroutines. Not safe for concurrent
// use: only the monitor calls it.
type keepAlive struct {
	leases pb.LeaseClient
	id     int64
	// answers carries the answers of every stream this keepAlive opened;
	// an answer of an earlier stream (gen below the current) is stale.
	answers chan keepAliveAnswer
	gen     int
	stream  pb.Lease_LeaseKeepAliveClient
	cancel  context.CancelFunc // ends stream and its reader
}

func newKeepAlive(leases pb.LeaseClient, id int64) *keepAlive {
	return &keepAlive{leases: leases, id: id, answers: make(chan keepAliveAnswer, 1)}
}

// send sends one renewal, opening a stream first when none is open. ctx
// bounds the stream (the lease's monitor context).
func (k *keepAlive) send(ctx context.Context) error {
	if k.stream == nil {
		sctx, cancel := context.WithCancel(ctx)
		stream, err := k.leases.LeaseKeepAlive(sctx)
		if err != nil {
			cancel()
			return err
		}
		k.gen++
		k.stream, k.cancel = stream, cancel
		go k.read(sctx, stream, k.gen)
	}
	if err := k.stream.Send(&pb.LeaseKeepAliveRequest{ID: k.id}); err != nil {
		k.reset()
		return err
	}
	return nil
}

// read passes a stream's answers to the monitor until the stream ends.
func (k *keepAlive) read(ctx context.Context, stream pb.Lease_LeaseKeepAliveClient, gen int) {
	for {
		resp, err := stream.Recv()
		a := keepAliveAnswer{gen: gen, err: err}
		if err == nil {
			a.ttl = resp.TTL
		}
		select {
		case k.answers <- a:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// current reports whether a is an answer of the open stream.
func (k *keepAlive) current(a keepAliveAnswer) bool { return k.stream != nil && a.gen == k.gen }

// reset closes the open stream, if any; the next send opens a new one.
func (k *keepAlive) reset() {
	if k.cancel != nil {
		k.cancel()
	}
	k.stream, k.cancel = nil, nil
}
