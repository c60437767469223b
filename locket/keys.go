package locket

import "strings"

// DefaultKeyPrefix is the root of Gavel's keys in etcd.
const DefaultKeyPrefix = "/gavel/v1/"

// Key layout under a prefix (DefaultKeyPrefix unless a test isolates):
//
//	<prefix>locks/<name>      a lock; value: JSON Record{owner, value}
//	<prefix>cells/<cell_id>   a cell presence; value: the rep's bytes
const (
	locksDir = "locks/"
	cellsDir = "cells/"
)

// normalizePrefix returns prefix with a trailing '/', or DefaultKeyPrefix
// when prefix is empty.
func normalizePrefix(prefix string) string {
	if prefix == "" {
		return DefaultKeyPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix
}

// LockKey returns the key of the lock name under prefix ("" means
// DefaultKeyPrefix): <prefix>locks/<name>.
func LockKey(prefix, name string) string {
	return LockPrefix(prefix) + name
}

// LockPrefix returns the prefix under which all locks live.
func LockPrefix(prefix string) string {
	return normalizePrefix(prefix) + locksDir
}

// PresenceKey returns the key of the presence of cellID under prefix:
// <prefix>cells/<cell_id>.
func PresenceKey(prefix, cellID string) string {
	return PresencePrefix(prefix) + cellID
}

// PresencePrefix returns the prefix under which all cell presences live;
// watch or list it to follow cells.
func PresencePrefix(prefix string) string {
	return normalizePrefix(prefix) + cellsDir
}
