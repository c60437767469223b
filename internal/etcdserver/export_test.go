package etcdserver

// CatchUpEntries is the running server's SnapshotCatchUpEntries, as etcd
// uses it.
func CatchUpEntries(e *Embedded) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.server.Cfg.SnapshotCatchUpEntries
}
