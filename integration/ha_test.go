package integration_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repapp "github.com/gavelhq/gavel/rep/app"
)

// HA timings: every member's raft heartbeat and election timeout, and the
// bounds the scenarios are held to.
const (
	haHeartbeat = 20 * time.Millisecond
	haElection  = 200 * time.Millisecond
	// haConvergeBound is the stated bound: once the fault is healed and the
	// load stopped, every desired LRP has its desired instances RUNNING
	// within it.
	haConvergeBound = 30 * time.Second
	// haMemberReady bounds a (re)started member answering Status.
	haMemberReady = 20 * time.Second
	// haPhase is how long the load runs before a fault and after it heals.
	haPhase = 3 * time.Second
	// haQuota is every member's --quota-backend-bytes: small, so
	// fill-quota fills it in a few seconds.
	haQuota = 64 << 20
	// haOutage is how long a member stays killed or paused, and how long
	// the load runs against a full etcd.
	haOutage = 3 * time.Second
)

// haDomain is the load's domain, kept fresh.
const haDomain = "ha"

// etcdMember is one etcd member process (testdata/etcdmember).
type etcdMember struct {
	*daemon
	name, clientURL, peerURL string
}

// startEtcdMembers starts opts.etcdMembers etcd members as separate
// processes forming one raft cluster over loopback and waits until each
// answers.
func (c *cluster) startEtcdMembers() {
	c.t.Helper()
	var initial []string
	for i := 0; i < c.opts.etcdMembers; i++ {
		m := &etcdMember{name: fmt.Sprintf("m%d", i), clientURL: "http://" + c.freeAddr(), peerURL: "http://" + c.freeAddr()}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
		c.etcdEndpoints = append(c.etcdEndpoints, m.clientURL)
	}
	quota := c.opts.etcdQuota
	if quota == 0 {
		quota = 256 << 20
	}
	for _, m := range c.members {
		m.daemon = c.spawn("etcd-"+m.name, bin("etcdmember"), "-name", m.name,
			"-data-dir", filepath.Join(c.dir, "etcd-"+m.name),
			"-client-url", m.clientURL, "-peer-url", m.peerURL,
			"-initial-cluster", strings.Join(initial, ","),
			"-quota-backend-bytes", strconv.FormatInt(quota, 10),
			"-heartbeat-ms", strconv.Itoa(int(haHeartbeat/time.Millisecond)),
			"-election-ms", strconv.Itoa(int(haElection/time.Millisecond)))
	}
	for i := range c.members {
		c.waitMember(i)
	}
}

// memberStatus asks member i alone for its id and its view of the leader.
func (c *cluster) memberStatus(i int) (id, leader uint64, err error) {
	if c.etcd == nil {
		return 0, 0, errors.New("no etcd client yet")
	}
	cctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := c.etcd.Status(cctx, c.members[i].clientURL)
	if err != nil {
		return 0, 0, err
	}
	return st.Header.GetMemberId(), st.Leader, nil
}

// waitMember waits until member i runs and answers Status with a leader.
func (c *cluster) waitMember(i int) {
	c.t.Helper()
	m := c.members[i]
	waitFor(c.t, haMemberReady, "etcd member "+m.name+" answers", func() error {
		if err := m.exitedErr(); err != nil {
			c.t.Fatal(err)
		}
		if c.etcd == nil {
			// Before the cluster client exists: the member's ready line.
			if m.logLine("ready") == "" {
				return errors.New("not ready yet")
			}
			return nil
		}
		_, leader, err := c.memberStatus(i)
		if err != nil {
			return err
		}
		if leader == 0 {
			return errors.New("no leader")
		}
		return nil
	})
}

// leader returns the index of the member every running member agrees leads.
func (c *cluster) leader() int {
	c.t.Helper()
	idx := -1
	waitFor(c.t, haMemberReady, "an etcd leader", func() error {
		ids := map[uint64]int{}
		var leaders []uint64
		for i, m := range c.members {
			if !m.running() {
				continue
			}
			id, leader, err := c.memberStatus(i)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			ids[id] = i
			leaders = append(leaders, leader)
		}
		slices.Sort(leaders)
		if len(leaders) == 0 || leaders[0] == 0 || leaders[0] != leaders[len(leaders)-1] {
			return fmt.Errorf("leaders %v", leaders)
		}
		i, ok := ids[leaders[0]]
		if !ok {
			return fmt.Errorf("leader %x is not a running member", leaders[0])
		}
		idx = i
		return nil
	})
	return idx
}

// restartMember starts member i again on its data dir.
func (c *cluster) restartMember(i int) {
	c.t.Helper()
	if err := c.members[i].start(); err != nil {
		c.t.Fatalf("restart etcd member %s: %v", c.members[i].name, err)
	}
	c.waitMember(i)
}

// signalMember sends sig to member i's process group without waiting.
func (c *cluster) signalMember(i int, sig syscall.Signal) {
	c.t.Helper()
	d := c.members[i].daemon
	d.mu.Lock()
	cmd := d.cmd
	d.mu.Unlock()
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		c.t.Fatalf("signal %s %v: %v", c.members[i].name, sig, err)
	}
}

// supervise restarts the BBS replicas, the auctioneer and the reps when
// they exit, as systemd or monit would in production: a BBS or an
// auctioneer exits by design when its lock's lease is lost (a paused etcd
// member can hold its keep-alive stream past the lease's TTL). It stops
// before the cluster's cleanup kills everything and returns a counter of
// restarts by daemon name.
func (c *cluster) supervise() func() map[string]int {
	c.t.Helper()
	var daemons []*daemon
	daemons = append(daemons, c.bbs...)
	daemons = append(daemons, c.auctioneer)
	for _, r := range c.reps {
		daemons = append(daemons, r.daemon)
	}
	var mu sync.Mutex
	restarts := map[string]int{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, d := range daemons {
				if d.running() {
					continue
				}
				if err := d.start(); err == nil {
					mu.Lock()
					restarts[d.name]++
					mu.Unlock()
				}
			}
		}
	}()
	c.t.Cleanup(func() {
		close(stop)
		<-done
	})
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(restarts)
	}
}

// fillQuota fills etcd to its quota with junk keys under load, until etcd
// raises the NOSPACE alarm, and checks that the BBS then answers writes
// ResourceExhausted (not Unavailable: no retry cures a full database).
// Then it does what an operator does: delete the junk, compact, defragment
// every member and disarm the alarm.
func (c *cluster) fillQuota(l *haLoad) {
	c.t.Helper()
	bg := context.Background()
	if st, err := c.etcd.Status(ctx(c.t), c.members[0].clientURL); err == nil {
		c.t.Logf("fill-quota: database %d bytes in use of %d before filling", st.DbSizeInUse, st.DbSize)
	}
	junk := strings.Repeat("x", 1<<20)
	filled := false
	for i := 0; i < 2*haQuota>>20 && !filled; i++ {
		pctx, cancel := context.WithTimeout(bg, 10*time.Second)
		_, err := c.etcd.Put(pctx, fmt.Sprintf("/ha-junk/%d", i), junk)
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrGRPCNoSpace), errors.Is(err, rpctypes.ErrNoSpace):
			filled = true
		case err != nil:
			c.t.Fatalf("fill-quota: put junk %d: %v", i, err)
		}
	}
	if !filled {
		c.t.Fatalf("fill-quota: no NOSPACE after %d MiB of junk", 2*haQuota>>20)
	}
	full := time.Now()
	time.Sleep(haOutage)
	l.mu.Lock()
	window := map[codes.Code]int{}
	for _, op := range l.ops {
		// A remove only deletes, which etcd still allows when it is full.
		if op.at.After(full.Add(time.Second)) && !(op.kind == "remove" && op.acked) {
			if window[op.code] == 0 && op.msg != "" {
				c.t.Logf("fill-quota: a write answered %s: %s", op.code, op.msg)
			}
			window[op.code]++
		}
	}
	l.mu.Unlock()
	c.t.Logf("fill-quota: desires and updates while etcd was full, by code: %v", window)
	if window[codes.ResourceExhausted] == 0 {
		c.t.Errorf("fill-quota: no write answered ResourceExhausted while etcd was full: %v", window)
	}
	if window[codes.OK] > 0 {
		c.t.Errorf("fill-quota: a desire or an update succeeded while etcd was full: %v", window)
	}
	// Unavailable is right only when no replica is active (a replica whose
	// lease lapsed cannot take the lock again while etcd refuses lease
	// grants); the full database itself is never Unavailable.
	l.mu.Lock()
	for _, op := range l.ops {
		if op.at.After(full) && op.code == codes.Unavailable && strings.Contains(op.msg, "space exceeded") {
			c.t.Errorf("fill-quota: the full database answered Unavailable: %s", op.msg)
		}
	}
	l.mu.Unlock()

	// The operator's recovery.
	del, err := c.etcd.Delete(ctx(c.t), "/ha-junk/", clientv3.WithPrefix())
	if err != nil {
		c.t.Fatalf("fill-quota: delete junk: %v", err)
	}
	if _, err := c.etcd.Compact(ctx(c.t), del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		c.t.Fatalf("fill-quota: compact: %v", err)
	}
	for _, m := range c.members {
		if _, err := c.etcd.Defragment(ctx(c.t), m.clientURL); err != nil {
			c.t.Fatalf("fill-quota: defragment %s: %v", m.name, err)
		}
	}
	alarms, err := c.etcd.AlarmList(ctx(c.t))
	if err != nil {
		c.t.Fatalf("fill-quota: alarm list: %v", err)
	}
	for _, a := range alarms.Alarms {
		if _, err := c.etcd.AlarmDisarm(ctx(c.t), (*clientv3.AlarmMember)(a)); err != nil {
			c.t.Fatalf("fill-quota: alarm disarm: %v", err)
		}
	}
	if st, err := c.etcd.Status(ctx(c.t), c.members[0].clientURL); err == nil {
		c.t.Logf("fill-quota: database %d bytes in use of %d after the recovery", st.DbSizeInUse, st.DbSize)
	}
}

// ---- recorded load ----

// haOp is one write the load made and what the test knows of its outcome.
type haOp struct {
	guid      string
	kind      string // desire, update, remove
	instances int32  // after a desire or an update
	acked     bool
	code      codes.Code
	msg       string // the error's message, if any
	at        time.Time
}

// guidState is the possible final states of one process guid: present with
// instances (instances > 0) or absent (0). A guid whose last write failed is
// not written again (its write may land or not, and a late landing could
// reorder after a new write); it then has two possible states.
type guidState struct {
	possible []int32
	frozen   bool
}

// haLoad runs a steady stream of DesireLRP, UpdateDesiredLRP and
// RemoveDesiredLRP calls and records each one.
type haLoad struct {
	bbs    *client.Client
	prefix string

	mu     sync.Mutex
	ops    []haOp
	guids  map[string]*guidState
	byCode map[codes.Code]int

	stop chan struct{}
	wg   sync.WaitGroup
}

// startLoad starts workers writers against every BBS replica; guids start
// with prefix.
func (c *cluster) startLoad(prefix string, workers int) *haLoad {
	c.t.Helper()
	bc, err := client.New(client.Config{Addresses: c.bbsAddrs, TLS: c.clientTLS, Retries: 3})
	if err != nil {
		c.t.Fatalf("load client: %v", err)
	}
	l := &haLoad{bbs: bc, prefix: prefix, guids: map[string]*guidState{}, byCode: map[codes.Code]int{}, stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go l.worker(w)
	}
	return l
}

// maxLive bounds each worker's live guids (and so the instances the cells hold).
const maxLive = 4

func (l *haLoad) worker(w int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	var live []string // this worker's guids that may still be written
	seq := 0
	for {
		select {
		case <-l.stop:
			return
		case <-time.After(time.Duration(20+rng.IntN(40)) * time.Millisecond):
		}
		var op haOp
		switch r := rng.IntN(10); {
		case len(live) < maxLive && (r < 4 || len(live) == 0):
			seq++
			op = haOp{guid: fmt.Sprintf("%s-w%d-%d", l.prefix, w, seq), kind: "desire", instances: int32(1 + rng.IntN(2))}
		case r < 8:
			op = haOp{guid: live[rng.IntN(len(live))], kind: "update", instances: int32(1 + rng.IntN(3))}
		default:
			op = haOp{guid: live[rng.IntN(len(live))], kind: "remove"}
		}
		err := l.do(op)
		op.at, op.acked, op.code = time.Now(), err == nil, status.Code(err)
		if err != nil {
			op.msg = err.Error()
		}
		l.record(op)
		if !op.acked || op.kind == "remove" {
			live = slices.DeleteFunc(live, func(g string) bool { return g == op.guid })
		} else if op.kind == "desire" {
			live = append(live, op.guid)
		}
	}
}

func (l *haLoad) do(op haOp) error {
	cctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var err error
	switch op.kind {
	case "desire":
		d := appLRP(op.guid, op.instances)
		d.MemoryMb, d.DiskMb, d.Domain = 16, 16, haDomain
		_, err = l.bbs.DesireLRP(cctx, &bbsv1.DesireLRPRequest{DesiredLrp: d})
	case "update":
		n := op.instances
		_, err = l.bbs.UpdateDesiredLRP(cctx, &bbsv1.UpdateDesiredLRPRequest{ProcessGuid: op.guid, Update: &modelsv1.DesiredLRPUpdate{Instances: &n}})
	case "remove":
		_, err = l.bbs.RemoveDesiredLRP(cctx, &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: op.guid})
	}
	return err
}

// record applies op to the model of possible final states.
func (l *haLoad) record(op haOp) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
	l.byCode[op.code]++
	st := l.guids[op.guid]
	if st == nil {
		st = &guidState{possible: []int32{0}}
		l.guids[op.guid] = st
	}
	effect := op.instances
	if op.kind == "remove" {
		effect = 0
	}
	if op.acked {
		st.possible = []int32{effect}
		return
	}
	st.possible = append(st.possible, effect)
	st.frozen = true
}

// halt stops the writers and waits for them.
func (l *haLoad) halt() {
	close(l.stop)
	l.wg.Wait()
	_ = l.bbs.Close()
}

// counts returns the writes acknowledged and failed.
func (l *haLoad) counts() (acked, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, op := range l.ops {
		if op.acked {
			acked++
		} else {
			failed++
		}
	}
	return acked, failed
}

// longestGap is the longest time between two acknowledged writes in [from, to].
func (l *haLoad) longestGap(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, gap := from, time.Duration(0)
	for _, op := range l.ops {
		if !op.acked || op.at.Before(from) || op.at.After(to) {
			continue
		}
		gap = max(gap, op.at.Sub(last))
		last = op.at
	}
	return max(gap, to.Sub(last))
}

// firstAckAfter is the time of the first acknowledged write after t (zero if none).
func (l *haLoad) firstAckAfter(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, op := range l.ops {
		if op.acked && op.at.After(t) {
			return op.at
		}
	}
	return time.Time{}
}

// checkHistory compares the recorded history with the BBS's desired LRPs
// and returns the lost acknowledged writes (a guid whose final state is not
// one the history allows) and what each guid should run.
func (c *cluster) checkHistory(l *haLoad) (lost []string, want map[string]int32) {
	c.t.Helper()
	var resp *bbsv1.ListDesiredLRPsResponse
	waitFor(c.t, haConvergeBound, "list desired LRPs", func() error {
		var err error
		resp, err = c.bbsc.ListDesiredLRPs(ctx(c.t), &bbsv1.ListDesiredLRPsRequest{})
		return err
	})
	got := map[string]int32{}
	for _, d := range resp.GetDesiredLrps() {
		if strings.HasPrefix(d.GetProcessGuid(), l.prefix+"-") {
			got[d.GetProcessGuid()] = d.GetInstances()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	want = map[string]int32{}
	for guid, st := range l.guids {
		final := got[guid]
		if !slices.Contains(st.possible, final) {
			// Say whether etcd itself disagrees or only the BBS's view.
			inEtcd := "?"
			if resp, err := c.etcd.Get(ctx(c.t), "/gavel/v1/desired/schedule/"+guid); err == nil {
				inEtcd = strconv.FormatBool(len(resp.Kvs) > 0)
			}
			lost = append(lost, fmt.Sprintf("%s: has %d instances, history allows %v (desired key in etcd: %s)", guid, final, st.possible, inEtcd))
		}
		if final > 0 {
			want[guid] = final
		}
	}
	for guid := range got {
		if _, ok := l.guids[guid]; !ok {
			lost = append(lost, guid+": desired but never written")
		}
	}
	slices.Sort(lost)
	return lost, want
}

// checkActuals fails the test if any (process guid, index) has two
// ORDINARY rows, and returns nil once every guid in want runs exactly its
// instances (indices 0..n-1, ORDINARY, RUNNING) and guids absent from want
// under prefix run nothing.
func (c *cluster) checkActuals(prefix string, want map[string]int32) error {
	c.t.Helper()
	resp, err := c.bbsc.ListActualLRPs(ctx(c.t), &bbsv1.ListActualLRPsRequest{})
	if err != nil {
		return err
	}
	type key struct {
		guid  string
		index int32
	}
	ordinary := map[key]int{}
	running := map[string]int32{}
	var behind []string
	for _, a := range resp.GetActualLrps() {
		guid := a.GetKey().GetProcessGuid()
		if !strings.HasPrefix(guid, prefix+"-") {
			continue
		}
		if a.GetPresence() == models.Ordinary {
			k := key{guid, a.GetKey().GetIndex()}
			ordinary[k]++
			if ordinary[k] > 1 {
				c.t.Errorf("%s index %d has %d ORDINARY rows", guid, k.index, ordinary[k])
			}
			if a.GetState() == models.Running && a.GetKey().GetIndex() < want[guid] {
				running[guid]++
				continue
			}
		}
		behind = append(behind, fmt.Sprintf("%s row %s (desired %d)", guid, describe([]*modelsv1.ActualLRP{a}), want[guid]))
	}
	for guid, n := range want {
		if running[guid] != n {
			behind = append(behind, fmt.Sprintf("%s %d/%d running", guid, running[guid], n))
		}
	}
	if len(behind) > 0 {
		slices.Sort(behind)
		return fmt.Errorf("not at desired: %s", strings.Join(behind, ", "))
	}
	return nil
}

// removeScenario removes a scenario's desired LRPs and waits until their
// instances are gone, so rounds do not pile up on the cells.
func (c *cluster) removeScenario(prefix string, want map[string]int32) {
	c.t.Helper()
	for guid := range want {
		if _, err := c.bbsc.RemoveDesiredLRP(ctx(c.t), &bbsv1.RemoveDesiredLRPRequest{ProcessGuid: guid}); err != nil && status.Code(err) != codes.NotFound {
			c.t.Fatalf("remove %s: %v", guid, err)
		}
	}
	took := waitFor(c.t, haConvergeBound, prefix+": instances removed", func() error {
		return c.checkActuals(prefix, nil)
	})
	c.t.Logf("%s: %d LRPs removed and their instances gone in %s", prefix, len(want), took.Round(time.Millisecond))
}

// checkOrdinaryOnce lists the actual LRPs (when the BBS answers) and fails
// the test for any (guid, index) under prefix with two ORDINARY rows.
func (c *cluster) checkOrdinaryOnce(prefix string) {
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.bbsc.ListActualLRPs(cctx, &bbsv1.ListActualLRPsRequest{})
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, a := range resp.GetActualLrps() {
		if !strings.HasPrefix(a.GetKey().GetProcessGuid(), prefix+"-") || a.GetPresence() != models.Ordinary {
			continue
		}
		k := fmt.Sprintf("%s/%d", a.GetKey().GetProcessGuid(), a.GetKey().GetIndex())
		if seen[k] {
			c.t.Errorf("%s has two ORDINARY rows (sampled under load)", k)
		}
		seen[k] = true
	}
}

// haResult is one scenario round's figures.
type haResult struct {
	scenario            string
	round               int
	acked, failed, lost int
	outage, firstAck    time.Duration
	converged, healTook time.Duration
	failedCodes         map[codes.Code]int
}

func (r haResult) String() string {
	var codes []string
	for c, n := range r.failedCodes {
		if c != 0 {
			codes = append(codes, fmt.Sprintf("%s=%d", c, n))
		}
	}
	slices.Sort(codes)
	return fmt.Sprintf("HA scenario=%s round=%d acked=%d failed=%d lost=%d longest_write_gap=%s first_ack_after_fault=%s fault_to_heal=%s converged_after_load=%s failed_codes=[%s]",
		r.scenario, r.round, r.acked, r.failed, r.lost, r.outage.Round(time.Millisecond), r.firstAck.Round(time.Millisecond),
		r.healTook.Round(time.Millisecond), r.converged.Round(time.Millisecond), strings.Join(codes, " "))
}

// runScenario runs the load, applies fault (which returns once the fault is
// healed), runs the load a while longer, then checks the history and the
// actual LRPs and returns the figures.
func (c *cluster) runScenario(name string, round int, fault func(*haLoad)) haResult {
	c.t.Helper()
	prefix := fmt.Sprintf("%s-r%d", name, round)
	l := c.startLoad(prefix, 2)
	// Never two ORDINARY rows for one (guid, index), sampled throughout.
	sampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-sampling:
				return
			case <-time.After(250 * time.Millisecond):
			}
			c.checkOrdinaryOnce(prefix)
		}
	}()
	defer func() { close(sampling); <-sampled }()
	time.Sleep(haPhase)
	faultAt := time.Now()
	fault(l)
	res := haResult{scenario: name, round: round, healTook: time.Since(faultAt)}
	time.Sleep(haPhase)
	l.halt()
	endAt := time.Now()

	res.acked, res.failed = l.counts()
	res.outage = l.longestGap(faultAt, endAt)
	if t := l.firstAckAfter(faultAt); !t.IsZero() {
		res.firstAck = t.Sub(faultAt)
	}
	l.mu.Lock()
	res.failedCodes = maps.Clone(l.byCode)
	l.mu.Unlock()
	lost, want := c.checkHistory(l)
	res.lost = len(lost)
	for _, s := range lost {
		c.t.Errorf("%s: acknowledged write lost: %s", name, s)
	}
	if res.acked == 0 {
		c.t.Errorf("%s: no write was acknowledged", name)
	}
	var converged error
	deadline := time.Now().Add(haConvergeBound)
	for converged = c.checkActuals(prefix, want); converged != nil && time.Now().Before(deadline); converged = c.checkActuals(prefix, want) {
		time.Sleep(100 * time.Millisecond)
	}
	if converged != nil {
		l.mu.Lock()
		for _, op := range l.ops {
			if strings.Contains(converged.Error(), op.guid+" ") {
				c.t.Logf("history: %s %s %d acked=%v %s at %s", op.guid, op.kind, op.instances, op.acked, op.code, op.at.Format("15:04:05.000"))
			}
		}
		l.mu.Unlock()
		c.t.Fatalf("%s: back to desired: not within %s: %v", name, haConvergeBound, converged)
	}
	res.converged = time.Since(endAt)
	c.t.Log(res.String())
	c.removeScenario(prefix, want)
	return res
}

// chaosRounds is CHAOS_ROUNDS (make chaos), default 1.
func chaosRounds(t *testing.T) int {
	s := os.Getenv("CHAOS_ROUNDS")
	if s == "" {
		return 1
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("CHAOS_ROUNDS: must be a positive integer (got %q)", s)
	}
	return n
}

// A 3-member etcd cluster (each member its own process, raft over
// loopback), two BBS replicas, the auctioneer and three simulated cells
// under a steady recorded write load, through each fault in turn: no
// acknowledged write is lost, no (guid, index) ever has two ORDINARY rows,
// and every desired LRP is back at its instances within haConvergeBound of
// the heal.
func TestHAEtcdFaults(t *testing.T) {
	c := start(t, options{bbsReplicas: 2, etcdMembers: 3, backend: repapp.BackendSim, etcdQuota: haQuota})
	restarts := c.supervise()
	// The load's domain is fresh, as a CC's bulker keeps its domain: only
	// then does convergence retire the instances of a removed LRP whose
	// stop was lost (a BBS that dies between acknowledging a remove and
	// stopping its instances).
	if _, err := c.bbsc.UpsertDomain(ctx(t), &bbsv1.UpsertDomainRequest{Domain: haDomain}); err != nil {
		t.Fatalf("upsert domain %s: %v", haDomain, err)
	}
	scenarios := []struct {
		name  string
		fault func(*haLoad)
	}{
		{"kill-follower", func(*haLoad) {
			leader := c.leader()
			f := (leader + 1) % len(c.members)
			c.members[f].kill()
			time.Sleep(haOutage)
			c.restartMember(f)
		}},
		{"kill-leader", func(*haLoad) {
			leader := c.leader()
			c.members[leader].kill()
			time.Sleep(haOutage)
			c.restartMember(leader)
		}},
		{"pause-leader", func(*haLoad) {
			// SIGSTOP well past the election timeout: the others elect a
			// new leader; the old one, continued, finds itself a follower.
			leader := c.leader()
			c.signalMember(leader, syscall.SIGSTOP)
			time.Sleep(haOutage)
			c.signalMember(leader, syscall.SIGCONT)
			c.waitMember(leader)
		}},
		{"restart-two", func(*haLoad) {
			// Kill and restart two members in turn (the leader first): quorum
			// holds throughout, but each member catches up after its restart.
			first := c.leader()
			second := (first + 1) % len(c.members)
			for _, i := range []int{first, second} {
				c.members[i].kill()
				time.Sleep(haOutage / 2)
				c.restartMember(i)
			}
		}},
		{"fill-quota", c.fillQuota},
	}
	var results []haResult
	for round := 1; round <= chaosRounds(t); round++ {
		for _, s := range scenarios {
			if !t.Run(fmt.Sprintf("%s/round-%d", s.name, round), func(t *testing.T) {
				ct := c.t
				c.t = t
				defer func() { c.t = ct }()
				results = append(results, c.runScenario(s.name, round, s.fault))
			}) {
				t.FailNow()
			}
		}
	}
	for _, r := range results {
		t.Log(r.String())
	}
	t.Logf("HA daemon restarts by the supervisor (lock lost, as designed): %v", restarts())
}
