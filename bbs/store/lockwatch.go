package store

// LockChanges returns a channel that receives a value whenever a lock
// record (package locket's, under locks/) is written or deleted, or the
// cache relists, after the cache reflects the change: a new holder, a
// released or expired lock. Signals coalesce: one pending value stands for
// any number of changes. Call the returned function to unsubscribe.
func (c *Cache) LockChanges() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	if c.lockSubs == nil {
		c.lockSubs = map[chan struct{}]struct{}{}
	}
	c.lockSubs[ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.lockSubs, ch)
		c.mu.Unlock()
	}
}

// notifyLockChangedLocked signals the LockChanges subscribers; c.mu is held.
func (c *Cache) notifyLockChangedLocked() {
	for ch := range c.lockSubs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// LockChanges is the cache's LockChanges.
func (s *Store) LockChanges() (<-chan struct{}, func()) { return s.cache.LockChanges() }
