package store

import (
	"fmt"
	"strconv"
	"strings"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// DefaultKeyPrefix is the root of every key Gavel writes.
const DefaultKeyPrefix = "/gavel/v1/"

// The etcd key layout, below the prefix:
//
//	desired/schedule/<process_guid>          DesiredLRPSchedulingInfo (small, changes)
//	desired/run/<process_guid>               DesiredLRPRunInfo (heavy, immutable)
//	actual/<process_guid>/<index>/<presence> ActualLRP; presence is ordinary|evacuating|suspect
//	tasks/<task_guid>                        Task
//	domains/<domain>                         Domain, bound to a lease for its TTL
//	locks/<name>                             lock record (package locket)
//	cells/<cell_id>                          CellPresence, leased (package locket)
const (
	scheduleDir = "desired/schedule/"
	runDir      = "desired/run/"
	actualDir   = "actual/"
	tasksDir    = "tasks/"
	domainsDir  = "domains/"
	locksDir    = "locks/"
	cellsDir    = "cells/"
)

// Keys builds and parses the keys under one prefix.
type Keys struct {
	prefix string
}

// NewKeys returns the layout under prefix (DefaultKeyPrefix when empty); the prefix ends in "/".
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return Keys{prefix: prefix}
}

// Prefix is the root of all keys.
func (k Keys) Prefix() string { return k.prefix }

// Schedule is the key of a desired LRP's scheduling info.
func (k Keys) Schedule(guid string) string { return k.prefix + scheduleDir + guid }

// Run is the key of a desired LRP's run info.
func (k Keys) Run(guid string) string { return k.prefix + runDir + guid }

// Actual is the key of one instance row.
func (k Keys) Actual(guid string, index int32, presence modelsv1.ActualLRPPresence) string {
	return k.prefix + actualDir + guid + "/" + strconv.Itoa(int(index)) + "/" + presenceSegment(presence)
}

// ActualPrefix is the prefix of every instance row of a desired LRP.
func (k Keys) ActualPrefix(guid string) string { return k.prefix + actualDir + guid + "/" }

// Task is the key of a task.
func (k Keys) Task(guid string) string { return k.prefix + tasksDir + guid }

// Domain is the key of a domain.
func (k Keys) Domain(name string) string { return k.prefix + domainsDir + name }

// Lock is the key of a lock.
func (k Keys) Lock(name string) string { return k.prefix + locksDir + name }

// Cell is the key of a cell presence.
func (k Keys) Cell(id string) string { return k.prefix + cellsDir + id }

func presenceSegment(p modelsv1.ActualLRPPresence) string {
	switch p {
	case modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING:
		return "evacuating"
	case modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_SUSPECT:
		return "suspect"
	}
	return "ordinary"
}

func parsePresence(s string) (modelsv1.ActualLRPPresence, bool) {
	switch s {
	case "ordinary":
		return modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_ORDINARY, true
	case "evacuating":
		return modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING, true
	case "suspect":
		return modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_SUSPECT, true
	}
	return 0, false
}

// kind is what a key holds.
type kind int

const (
	kindUnknown kind = iota
	kindSchedule
	kindRun
	kindActual
	kindTask
	kindDomain
	kindLock
	kindCell
)

// actualID identifies an instance row.
type actualID struct {
	guid     string
	index    int32
	presence modelsv1.ActualLRPPresence
}

// parsedKey is a key split into its kind and identity.
type parsedKey struct {
	kind   kind
	name   string // guid, domain, lock name or cell id
	actual actualID
}

// parse splits a key of this layout; kindUnknown for anything else.
func (k Keys) parse(key string) parsedKey {
	rest, ok := strings.CutPrefix(key, k.prefix)
	if !ok {
		return parsedKey{}
	}
	for _, d := range []struct {
		dir  string
		kind kind
	}{{scheduleDir, kindSchedule}, {runDir, kindRun}, {tasksDir, kindTask}, {domainsDir, kindDomain}, {locksDir, kindLock}, {cellsDir, kindCell}} {
		if name, ok := strings.CutPrefix(rest, d.dir); ok && name != "" {
			return parsedKey{kind: d.kind, name: name}
		}
	}
	if tail, ok := strings.CutPrefix(rest, actualDir); ok {
		// guid/index/presence, cut without allocating.
		guid, rest, ok1 := strings.Cut(tail, "/")
		idx, pres, ok2 := strings.Cut(rest, "/")
		if !ok1 || !ok2 || strings.Contains(pres, "/") {
			return parsedKey{}
		}
		index, err := strconv.Atoi(idx)
		presence, okp := parsePresence(pres)
		if err != nil || !okp {
			return parsedKey{}
		}
		return parsedKey{kind: kindActual, name: guid, actual: actualID{guid: guid, index: int32(index), presence: presence}}
	}
	return parsedKey{}
}

func (id actualID) String() string {
	return fmt.Sprintf("%s/%d/%s", id.guid, id.index, presenceSegment(id.presence))
}
