package sim

import (
	"math"
	"unicode/utf8"

	"github.com/gavelhq/gavel/bbs/models"
)

// scanner reads one element that the stream's decoder has already checked
// to be well-formed JSON. It takes only the plain forms a valid element
// has (strings without escapes, integers without fraction or exponent, no
// nulls) and gives up (ok false) on anything else, and on any value the
// reference would refuse: the caller then runs the reference walker on
// the element, which says what is wrong. It never reports errors itself.
type scanner struct {
	b  []byte
	i  int
	ok bool
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips white space and returns the next byte (0 at the end).
func (s *scanner) next() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) fail() { s.ok = false }

// expect consumes c or fails.
func (s *scanner) expect(c byte) bool {
	if s.ok && s.next() == c {
		s.i++
		return true
	}
	s.fail()
	return false
}

// rawString reads a string without escapes and with valid UTF-8.
func (s *scanner) rawString() []byte {
	if !s.expect('"') {
		return nil
	}
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			out := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(out) {
				s.fail()
			}
			return out
		case c == '\\':
			s.fail()
			return nil
		case c >= utf8.RuneSelf:
			ascii = false
		}
		s.i++
	}
	s.fail()
	return nil
}

// integer reads an integer that fits 32 bits, as the reference accepts.
func (s *scanner) integer() int {
	if !s.ok {
		return 0
	}
	s.ws()
	neg := false
	if s.i < len(s.b) && s.b[s.i] == '-' {
		neg = true
		s.i++
	}
	start := s.i
	var n int64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		n = n*10 + int64(s.b[s.i]-'0')
		if n > math.MaxInt32+1 {
			s.fail()
			return 0
		}
		s.i++
	}
	if s.i == start || (s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E')) {
		s.fail()
		return 0
	}
	if neg {
		n = -n
	}
	if n > math.MaxInt32 || n < math.MinInt32 {
		s.fail()
		return 0
	}
	return int(n)
}

// natural reads an integer that must be >= 0.
func (s *scanner) natural() int {
	n := s.integer()
	if n < 0 {
		s.fail()
	}
	return n
}

// positive reads an integer that must be > 0.
func (s *scanner) positive() int {
	n := s.integer()
	if n <= 0 {
		s.fail()
	}
	return n
}

func (s *scanner) boolean() bool {
	if !s.ok {
		return false
	}
	s.ws()
	switch {
	case hasPrefixAt(s.b, s.i, "true"):
		s.i += 4
		return true
	case hasPrefixAt(s.b, s.i, "false"):
		s.i += 5
		return false
	}
	s.fail()
	return false
}

func hasPrefixAt(b []byte, i int, p string) bool {
	return len(b)-i >= len(p) && string(b[i:i+len(p)]) == p
}

// members calls each for every key of an object, the scanner placed at
// the key's value; each must consume the value.
func (s *scanner) members(each func(key []byte)) {
	if !s.expect('{') {
		return
	}
	if s.next() == '}' {
		s.i++
		return
	}
	for s.ok {
		key := s.rawString()
		if !s.expect(':') {
			return
		}
		each(key)
		if !s.ok {
			return
		}
		switch s.next() {
		case ',':
			s.i++
		case '}':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// items calls each for every element of an array, until max elements;
// more fail.
func (s *scanner) items(max int, each func()) {
	if !s.expect('[') {
		return
	}
	if s.next() == ']' {
		s.i++
		return
	}
	for n := 1; s.ok; n++ {
		if n > max {
			s.fail()
			return
		}
		each()
		if !s.ok {
			return
		}
		switch s.next() {
		case ',':
			s.i++
		case ']':
			s.i++
			return
		default:
			s.fail()
		}
	}
}

// boundedString reads a string of at most max bytes, non-empty if
// required.
func (st *stream) boundedString(s *scanner, max int, required bool) string {
	b := s.rawString()
	if len(b) > max || (required && len(b) == 0) {
		s.fail()
	}
	if !s.ok {
		return ""
	}
	return st.str(b)
}

// tags reads a list of tags as parser.strings accepts them.
func (st *stream) tags(s *scanner) []string {
	out := []string{}
	s.items(models.MaxSmallList, func() {
		out = append(out, st.boundedString(s, models.MaxTagBytes, true))
	})
	return out
}

// fastLRP reads an LRP to place; ok false sends it to the reference.
func (st *stream) fastLRP(raw []byte) (LRP, bool) {
	s := &scanner{b: raw, ok: true}
	l := LRP{RootFS: DefaultRootFS, PlacementTags: []string{}, VolumeDrivers: []string{}}
	hasGUID := false
	s.members(func(key []byte) {
		switch string(key) {
		case "process_guid":
			l.ProcessGUID, hasGUID = st.boundedString(s, models.MaxGUIDBytes, true), true
		case "index":
			l.Index = s.natural()
		case "domain":
			l.Domain = st.boundedString(s, models.MaxNameBytes, false)
		case "memory_mb":
			l.MemoryMB = s.natural()
		case "disk_mb":
			l.DiskMB = s.natural()
		case "max_pids":
			l.MaxPids = s.natural()
		case "rootfs":
			l.RootFS = st.boundedString(s, models.MaxURLBytes, true)
		case "placement_tags":
			l.PlacementTags = st.tags(s)
		case "volume_drivers":
			l.VolumeDrivers = st.tags(s)
		default:
			s.fail()
		}
	})
	return l, s.ok && hasGUID && s.next() == 0
}

// fastTask reads a task to place; ok false sends it to the reference.
func (st *stream) fastTask(raw []byte) (Task, bool) {
	s := &scanner{b: raw, ok: true}
	t := Task{RootFS: DefaultRootFS, PlacementTags: []string{}, VolumeDrivers: []string{}}
	hasGUID := false
	s.members(func(key []byte) {
		switch string(key) {
		case "task_guid":
			t.TaskGUID, hasGUID = string(s.rawString()), true
			if len(t.TaskGUID) == 0 || len(t.TaskGUID) > models.MaxGUIDBytes {
				s.fail()
			}
		case "domain":
			t.Domain = st.boundedString(s, models.MaxNameBytes, false)
		case "memory_mb":
			t.MemoryMB = s.natural()
		case "disk_mb":
			t.DiskMB = s.natural()
		case "max_pids":
			t.MaxPids = s.natural()
		case "rootfs":
			t.RootFS = st.boundedString(s, models.MaxURLBytes, true)
		case "placement_tags":
			t.PlacementTags = st.tags(s)
		case "volume_drivers":
			t.VolumeDrivers = st.tags(s)
		default:
			s.fail()
		}
	})
	return t, s.ok && hasGUID && s.next() == 0
}

// fastCell reads a cell; ok false sends it to the reference.
func (st *stream) fastCell(raw []byte) (Cell, bool) {
	s := &scanner{b: raw, ok: true}
	c := Cell{
		PlacementTags: []string{}, OptionalPlacementTags: []string{}, VolumeDrivers: []string{},
		LRPs: []CellLRP{}, Tasks: []CellTask{},
	}
	hasID, hasTotal := false, false
	s.members(func(key []byte) {
		switch string(key) {
		case "cell_id":
			c.CellID, hasID = st.boundedString(s, models.MaxNameBytes, true), true
		case "zone":
			c.Zone = st.boundedString(s, models.MaxNameBytes, false)
		case "index":
			c.Index = s.natural()
		case "total":
			hasTotal = true
			c.Total = st.fastTotal(s)
		case "rootfs_providers":
			c.RootFSProviders = st.fastProviders(s)
		case "placement_tags":
			c.PlacementTags = st.tags(s)
		case "optional_placement_tags":
			c.OptionalPlacementTags = st.tags(s)
		case "volume_drivers":
			c.VolumeDrivers = st.tags(s)
		case "proxy_memory_mb":
			c.ProxyMemoryMB = s.natural()
		case "starting_containers":
			c.StartingContainers = s.natural()
		case "evacuating":
			c.Evacuating = s.boolean()
		case "lrps":
			c.LRPs = st.fastCellLRPs(s)
		case "tasks":
			c.Tasks = st.fastCellTasks(s)
		default:
			s.fail()
		}
	})
	if !s.ok || !hasID || !hasTotal || s.next() != 0 {
		return Cell{}, false
	}
	if c.RootFSProviders == nil {
		c.RootFSProviders = DefaultRootFSProviders()
	}
	used := c.used()
	if used.MemoryMB > c.Total.MemoryMB || used.DiskMB > c.Total.DiskMB || used.Containers > c.Total.Containers {
		return Cell{}, false
	}
	return c, true
}

func (st *stream) fastTotal(s *scanner) Capacity {
	var t Capacity
	var seen [3]bool
	s.members(func(key []byte) {
		switch string(key) {
		case "memory_mb":
			t.MemoryMB, seen[0] = s.positive(), true
		case "disk_mb":
			t.DiskMB, seen[1] = s.positive(), true
		case "containers":
			t.Containers, seen[2] = s.positive(), true
		default:
			s.fail()
		}
	})
	if seen != [3]bool{true, true, true} {
		s.fail()
	}
	return t
}

func (st *stream) fastProviders(s *scanner) map[string][]string {
	m := map[string][]string{}
	s.members(func(key []byte) {
		if len(key) == 0 || len(key) > models.MaxNameBytes {
			s.fail()
			return
		}
		m[st.str(key)] = st.tags(s)
	})
	if len(m) > models.MaxSmallList {
		s.fail()
	}
	return m
}

func (st *stream) fastCellLRPs(s *scanner) []CellLRP {
	out := []CellLRP{}
	s.items(models.MaxListItems, func() {
		var l CellLRP
		hasGUID := false
		s.members(func(key []byte) {
			switch string(key) {
			case "process_guid":
				l.ProcessGUID, hasGUID = st.boundedString(s, models.MaxGUIDBytes, true), true
			case "index":
				l.Index = s.natural()
			case "memory_mb":
				l.MemoryMB = s.natural()
			case "disk_mb":
				l.DiskMB = s.natural()
			default:
				s.fail()
			}
		})
		if !hasGUID {
			s.fail()
		}
		out = append(out, l)
	})
	return out
}

func (st *stream) fastCellTasks(s *scanner) []CellTask {
	out := []CellTask{}
	s.items(models.MaxListItems, func() {
		var t CellTask
		hasGUID := false
		s.members(func(key []byte) {
			switch string(key) {
			case "task_guid":
				t.TaskGUID, hasGUID = st.boundedString(s, models.MaxGUIDBytes, true), true
			case "memory_mb":
				t.MemoryMB = s.natural()
			case "disk_mb":
				t.DiskMB = s.natural()
			default:
				s.fail()
			}
		})
		if !hasGUID {
			s.fail()
		}
		out = append(out, t)
	})
	return out
}
