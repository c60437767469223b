package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/gavelhq/gavel/bbs/models"
)

// Bounds of a scenario, beyond the BBS's own (bbs/models: guid, name, tag and
// URL lengths, list sizes), which a scenario's fields follow too.
const (
	// MaxScenarioBytes bounds a scenario file: 1 GiB, room for MaxWork
	// instances to place and as many already running, indented. Parse
	// streams it, so memory follows the scenario, not the file.
	MaxScenarioBytes = 1 << 30
	// MaxCells bounds a scenario's cells.
	MaxCells = 100_000
	// MaxWork bounds a scenario's LRP instances and its tasks, each.
	MaxWork = 1_000_000
)

// stringBound is the longest a scenario string field may be, by key.
func stringBound(key string) int {
	switch key {
	case "process_guid", "task_guid":
		return models.MaxGUIDBytes
	case "cell_id", "zone", "domain":
		return models.MaxNameBytes
	case "rootfs":
		return models.MaxURLBytes
	}
	return models.MaxStringBytes
}

// listBound is the most items an array may hold: cells, lrps, tasks at the
// top level; a cell's existing lrps and tasks.
func listBound(path, key string) int {
	switch {
	case path == "" && key == "cells":
		return MaxCells
	case path == "":
		return MaxWork
	}
	return models.MaxListItems
}

// ErrInvalidScenario is wrapped by every scenario parse error.
var ErrInvalidScenario = errors.New("invalid scenario")

// maxReportedErrors bounds the field errors a ValidationError prints.
const maxReportedErrors = 5

// FieldError is one bad field, named by its JSON path
// (e.g. "cells[3].total.memory_mb").
type FieldError struct {
	// Path is the JSON path of the field.
	Path string
	// Message says what is wrong.
	Message string
}

// ValidationError lists every bad field of a scenario. It matches
// ErrInvalidScenario under errors.Is.
type ValidationError struct {
	// Fields are the bad fields, in document order.
	Fields []FieldError
}

// Error prints the fields on one line: "path: message; path: message".
func (e *ValidationError) Error() string {
	return formatFieldErrors("invalid scenario", e.Fields)
}

// formatFieldErrors prints what on one line followed by the first
// maxReportedErrors fields: "what: path: message; path: message; and N more".
func formatFieldErrors(what string, fields []FieldError) string {
	parts := make([]string, 0, maxReportedErrors+1)
	for i, f := range fields {
		if i == maxReportedErrors {
			parts = append(parts, fmt.Sprintf("and %d more", len(fields)-i))
			break
		}
		if f.Path == "" {
			parts = append(parts, f.Message)
		} else {
			parts = append(parts, f.Path+": "+f.Message)
		}
	}
	return what + ": " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidScenario) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidScenario }

// Parse reads a scenario, fills omitted fields with their defaults and
// validates it. Unknown fields, wrong types and bad values are all
// reported, each with its JSON path, in a *ValidationError; a scenario
// that does not parse is never partly returned. It streams the document
// (see ParseReader); the errors are those of the reference parse
// (parseTree), which decodes the whole document into a generic tree.
func Parse(data []byte) (*Scenario, error) {
	if len(data) > MaxScenarioBytes {
		return nil, tooLarge(int64(len(data)))
	}
	return parseStream(bytes.NewReader(data), func() ([]byte, error) { return data, nil })
}

// tooLarge is the error of a scenario beyond MaxScenarioBytes.
func tooLarge(size int64) error {
	return &ValidationError{Fields: []FieldError{{Message: fmt.Sprintf("a scenario must be at most %d bytes (got %d)", MaxScenarioBytes, size)}}}
}

// parseTree is the reference parse: the whole document decoded into a
// generic tree, then walked. Parse gives the same scenario and the same
// errors (the tests hold them to it) with a fraction of the memory.
func parseTree(data []byte) (*Scenario, error) {
	if len(data) > MaxScenarioBytes {
		return nil, tooLarge(int64(len(data)))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, &ValidationError{Fields: []FieldError{{Message: syntaxMessage(data, err)}}}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &ValidationError{Fields: []FieldError{{Message: "unexpected data after the top-level object"}}}
	}
	p := &parser{}
	s := p.scenario(root)
	if len(p.errs) > 0 {
		return nil, &ValidationError{Fields: p.errs}
	}
	return s, nil
}

// syntaxMessage locates a JSON syntax error by line and column.
func syntaxMessage(data []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		before := data[:min(int(se.Offset), len(data))]
		line := bytes.Count(before, []byte("\n")) + 1
		col := len(before) - bytes.LastIndexByte(before, '\n')
		return fmt.Sprintf("malformed JSON at line %d, column %d: %v", line, col, se)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "malformed JSON: unexpected end of input"
	}
	return "malformed JSON: " + err.Error()
}

// parser walks the decoded JSON tree, tracking paths and collecting errors.
type parser struct {
	errs []FieldError
}

func (p *parser) errorf(path, format string, args ...any) {
	p.errs = append(p.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func field(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func elem(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// object checks that v is an object with only the known keys; nil when it
// is not an object.
func (p *parser) object(path string, v any, known ...string) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		p.errorf(path, "must be an object, got %s", jsonType(v))
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			p.errorf(field(path, k), "unknown field")
		}
	}
	return m
}

// present returns the value of key, or false when it is absent or null.
func present(m map[string]any, key string) (any, bool) {
	v, ok := m[key]
	return v, ok && v != nil
}

func (p *parser) str(path string, m map[string]any, key, def string) string {
	v, ok := present(m, key)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	if !isStr {
		p.errorf(field(path, key), "must be a string, got %s", jsonType(v))
		return def
	}
	if max := stringBound(key); len(s) > max {
		p.errorf(field(path, key), "must be at most %d bytes (got %d)", max, len(s))
		return def
	}
	return s
}

func (p *parser) integer(path string, m map[string]any, key string, def int64) int64 {
	v, ok := present(m, key)
	if !ok {
		return def
	}
	n, isNum := v.(json.Number)
	if !isNum {
		p.errorf(field(path, key), "must be an integer, got %s", jsonType(v))
		return def
	}
	i, err := n.Int64()
	if err != nil || i > math.MaxInt32 || i < math.MinInt32 {
		p.errorf(field(path, key), "must be an integer, got %s", n)
		return def
	}
	return i
}

func (p *parser) number(path string, m map[string]any, key string, def float64) float64 {
	v, ok := present(m, key)
	if !ok {
		return def
	}
	n, isNum := v.(json.Number)
	if !isNum {
		p.errorf(field(path, key), "must be a number, got %s", jsonType(v))
		return def
	}
	f, err := n.Float64()
	if err != nil {
		p.errorf(field(path, key), "must be a number, got %s", n)
		return def
	}
	return f
}

func (p *parser) boolean(path string, m map[string]any, key string) bool {
	v, ok := present(m, key)
	if !ok {
		return false
	}
	b, isBool := v.(bool)
	if !isBool {
		p.errorf(field(path, key), "must be true or false, got %s", jsonType(v))
	}
	return b
}

// array returns the elements of key, or nil when absent or beyond its bound.
func (p *parser) array(path string, m map[string]any, key string) []any {
	v, ok := present(m, key)
	if !ok {
		return nil
	}
	a, isArr := v.([]any)
	if !isArr {
		p.errorf(field(path, key), "must be an array, got %s", jsonType(v))
		return nil
	}
	if max := listBound(path, key); len(a) > max {
		p.errorf(field(path, key), "must hold at most %d items (got %d)", max, len(a))
		return nil
	}
	return a
}

// strings returns a list of non-empty strings (never nil), each at most
// models.MaxTagBytes, at most models.MaxSmallList of them.
func (p *parser) strings(path string, v any) []string {
	a, isArr := v.([]any)
	if !isArr {
		p.errorf(path, "must be an array of strings, got %s", jsonType(v))
		return []string{}
	}
	if len(a) > models.MaxSmallList {
		p.errorf(path, "must hold at most %d items (got %d)", models.MaxSmallList, len(a))
		return []string{}
	}
	out := make([]string, 0, len(a))
	for i, e := range a {
		s, isStr := e.(string)
		switch {
		case !isStr:
			p.errorf(elem(path, i), "must be a string, got %s", jsonType(e))
		case s == "":
			p.errorf(elem(path, i), "must not be empty")
		case len(s) > models.MaxTagBytes:
			p.errorf(elem(path, i), "must be at most %d bytes (got %d)", models.MaxTagBytes, len(s))
		default:
			out = append(out, s)
		}
	}
	return out
}

func (p *parser) stringList(path string, m map[string]any, key string) []string {
	v, ok := present(m, key)
	if !ok {
		return []string{}
	}
	return p.strings(field(path, key), v)
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// nonNegative reports a negative value and returns v as an int.
func (p *parser) nonNegative(path string, v int64) int {
	if v < 0 {
		p.errorf(path, "must be >= 0")
	}
	return int(v)
}

// positive reports a value that is not > 0 and returns v as an int.
func (p *parser) positive(path string, v int64) int {
	if v <= 0 {
		p.errorf(path, "must be > 0")
	}
	return int(v)
}

// required reads a string that must be present and non-empty.
func (p *parser) required(path string, m map[string]any, key string) string {
	s := p.str(path, m, key, "")
	if _, ok := present(m, key); !ok {
		p.errorf(field(path, key), "is required")
	} else if s == "" {
		if _, isStr := m[key].(string); isStr {
			p.errorf(field(path, key), "must not be empty")
		}
	}
	return s
}

func (p *parser) scenario(v any) *Scenario {
	m := p.object("", v, "options", "cells", "lrps", "tasks")
	if m == nil {
		return nil
	}
	s := &Scenario{Cells: []Cell{}, LRPs: []LRP{}, Tasks: []Task{}}
	s.Options = p.options(m)
	ids := map[string]int{}
	for i, cv := range p.array("", m, "cells") {
		path := elem("cells", i)
		c, ok := p.cell(path, cv)
		if !ok {
			continue
		}
		if first, dup := ids[c.CellID]; dup && c.CellID != "" {
			p.errorf(field(path, "cell_id"), "duplicate %q (also cells[%d])", c.CellID, first)
		}
		ids[c.CellID] = i
		s.Cells = append(s.Cells, c)
	}
	lrpIDs := map[string]int{}
	for i, lv := range p.array("", m, "lrps") {
		path := elem("lrps", i)
		l, ok := p.lrp(path, lv)
		if !ok {
			continue
		}
		id := fmt.Sprintf("%s.%d", l.ProcessGUID, l.Index)
		if first, dup := lrpIDs[id]; dup {
			p.errorf(path, "duplicate instance %q (also lrps[%d])", id, first)
		}
		lrpIDs[id] = i
		s.LRPs = append(s.LRPs, l)
	}
	taskIDs := map[string]int{}
	for i, tv := range p.array("", m, "tasks") {
		path := elem("tasks", i)
		t, ok := p.task(path, tv)
		if !ok {
			continue
		}
		if first, dup := taskIDs[t.TaskGUID]; dup {
			p.errorf(field(path, "task_guid"), "duplicate %q (also tasks[%d])", t.TaskGUID, first)
		}
		taskIDs[t.TaskGUID] = i
		s.Tasks = append(s.Tasks, t)
	}
	return s
}

func (p *parser) options(m map[string]any) ScenarioOptions {
	o := ScenarioOptions{
		Strategy:                "diego",
		StartingContainerWeight: 0.25,
	}
	v, ok := present(m, "options")
	if !ok {
		return o
	}
	om := p.object("options", v, "strategy", "starting_container_weight", "bin_pack_first_fit_weight", "max_inflight_starts", "seed")
	if om == nil {
		return o
	}
	o.Strategy = p.str("options", om, "strategy", o.Strategy)
	if o.Strategy == "" {
		p.errorf("options.strategy", "must not be empty")
	}
	o.StartingContainerWeight = p.number("options", om, "starting_container_weight", o.StartingContainerWeight)
	if o.StartingContainerWeight < 0 {
		p.errorf("options.starting_container_weight", "must be >= 0")
	}
	o.BinPackFirstFitWeight = p.number("options", om, "bin_pack_first_fit_weight", 0)
	if o.BinPackFirstFitWeight < 0 || o.BinPackFirstFitWeight > 1 {
		p.errorf("options.bin_pack_first_fit_weight", "must be between 0 and 1")
	}
	o.MaxInflightStarts = p.nonNegative("options.max_inflight_starts", p.integer("options", om, "max_inflight_starts", 0))
	if v, ok := present(om, "seed"); ok {
		n, isNum := v.(json.Number)
		seed, err := n.Int64()
		if !isNum || err != nil {
			p.errorf("options.seed", "must be an integer, got %s", jsonType(v))
		}
		o.Seed = seed
	}
	return o
}

func (p *parser) cell(path string, v any) (Cell, bool) {
	m := p.object(path, v, "cell_id", "zone", "index", "total", "rootfs_providers", "placement_tags",
		"optional_placement_tags", "volume_drivers", "proxy_memory_mb", "starting_containers", "evacuating", "lrps", "tasks")
	if m == nil {
		return Cell{}, false
	}
	c := Cell{
		CellID:                p.required(path, m, "cell_id"),
		Zone:                  p.str(path, m, "zone", ""),
		Index:                 p.nonNegative(field(path, "index"), p.integer(path, m, "index", 0)),
		PlacementTags:         p.stringList(path, m, "placement_tags"),
		OptionalPlacementTags: p.stringList(path, m, "optional_placement_tags"),
		VolumeDrivers:         p.stringList(path, m, "volume_drivers"),
		ProxyMemoryMB:         p.nonNegative(field(path, "proxy_memory_mb"), p.integer(path, m, "proxy_memory_mb", 0)),
		StartingContainers:    p.nonNegative(field(path, "starting_containers"), p.integer(path, m, "starting_containers", 0)),
		Evacuating:            p.boolean(path, m, "evacuating"),
		LRPs:                  []CellLRP{},
		Tasks:                 []CellTask{},
	}
	totalPath := field(path, "total")
	if tv, ok := present(m, "total"); !ok {
		p.errorf(totalPath, "is required")
	} else if tm := p.object(totalPath, tv, "memory_mb", "disk_mb", "containers"); tm != nil {
		for _, f := range []struct {
			key string
			dst *int
		}{{"memory_mb", &c.Total.MemoryMB}, {"disk_mb", &c.Total.DiskMB}, {"containers", &c.Total.Containers}} {
			if _, ok := present(tm, f.key); !ok {
				p.errorf(field(totalPath, f.key), "is required")
				continue
			}
			*f.dst = p.positive(field(totalPath, f.key), p.integer(totalPath, tm, f.key, 0))
		}
	}
	c.RootFSProviders = DefaultRootFSProviders()
	if rv, ok := present(m, "rootfs_providers"); ok {
		rpath := field(path, "rootfs_providers")
		if rm, isObj := rv.(map[string]any); !isObj {
			p.errorf(rpath, "must be an object mapping a scheme to a list of stacks, got %s", jsonType(rv))
		} else {
			if len(rm) > models.MaxSmallList {
				p.errorf(rpath, "must hold at most %d schemes (got %d)", models.MaxSmallList, len(rm))
				rm = nil
			}
			c.RootFSProviders = make(map[string][]string, len(rm))
			keys := make([]string, 0, len(rm))
			for k := range rm {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if k == "" || len(k) > models.MaxNameBytes {
					p.errorf(rpath, "scheme must not be empty nor longer than %d bytes", models.MaxNameBytes)
					continue
				}
				if rm[k] == nil {
					c.RootFSProviders[k] = []string{}
					continue
				}
				c.RootFSProviders[k] = p.strings(field(rpath, k), rm[k])
			}
		}
	}
	for i, lv := range p.array(path, m, "lrps") {
		lpath := elem(field(path, "lrps"), i)
		lm := p.object(lpath, lv, "process_guid", "index", "memory_mb", "disk_mb")
		if lm == nil {
			continue
		}
		c.LRPs = append(c.LRPs, CellLRP{
			ProcessGUID: p.required(lpath, lm, "process_guid"),
			Index:       p.nonNegative(field(lpath, "index"), p.integer(lpath, lm, "index", 0)),
			MemoryMB:    p.nonNegative(field(lpath, "memory_mb"), p.integer(lpath, lm, "memory_mb", 0)),
			DiskMB:      p.nonNegative(field(lpath, "disk_mb"), p.integer(lpath, lm, "disk_mb", 0)),
		})
	}
	for i, tv := range p.array(path, m, "tasks") {
		tpath := elem(field(path, "tasks"), i)
		tm := p.object(tpath, tv, "task_guid", "memory_mb", "disk_mb")
		if tm == nil {
			continue
		}
		c.Tasks = append(c.Tasks, CellTask{
			TaskGUID: p.required(tpath, tm, "task_guid"),
			MemoryMB: p.nonNegative(field(tpath, "memory_mb"), p.integer(tpath, tm, "memory_mb", 0)),
			DiskMB:   p.nonNegative(field(tpath, "disk_mb"), p.integer(tpath, tm, "disk_mb", 0)),
		})
	}
	if c.Total.MemoryMB > 0 && c.Total.DiskMB > 0 && c.Total.Containers > 0 {
		used := c.used()
		switch {
		case used.MemoryMB > c.Total.MemoryMB:
			p.errorf(path, "existing lrps and tasks use %d MB of memory, more than total.memory_mb %d", used.MemoryMB, c.Total.MemoryMB)
		case used.DiskMB > c.Total.DiskMB:
			p.errorf(path, "existing lrps and tasks use %d MB of disk, more than total.disk_mb %d", used.DiskMB, c.Total.DiskMB)
		case used.Containers > c.Total.Containers:
			p.errorf(path, "existing lrps and tasks use %d containers, more than total.containers %d", used.Containers, c.Total.Containers)
		}
	}
	return c, true
}

func (p *parser) lrp(path string, v any) (LRP, bool) {
	m := p.object(path, v, "process_guid", "index", "domain", "memory_mb", "disk_mb", "max_pids", "rootfs", "placement_tags", "volume_drivers")
	if m == nil {
		return LRP{}, false
	}
	return LRP{
		ProcessGUID:   p.required(path, m, "process_guid"),
		Index:         p.nonNegative(field(path, "index"), p.integer(path, m, "index", 0)),
		Domain:        p.str(path, m, "domain", ""),
		MemoryMB:      p.nonNegative(field(path, "memory_mb"), p.integer(path, m, "memory_mb", 0)),
		DiskMB:        p.nonNegative(field(path, "disk_mb"), p.integer(path, m, "disk_mb", 0)),
		MaxPids:       p.nonNegative(field(path, "max_pids"), p.integer(path, m, "max_pids", 0)),
		RootFS:        p.rootfs(path, m),
		PlacementTags: p.stringList(path, m, "placement_tags"),
		VolumeDrivers: p.stringList(path, m, "volume_drivers"),
	}, true
}

func (p *parser) task(path string, v any) (Task, bool) {
	m := p.object(path, v, "task_guid", "domain", "memory_mb", "disk_mb", "max_pids", "rootfs", "placement_tags", "volume_drivers")
	if m == nil {
		return Task{}, false
	}
	return Task{
		TaskGUID:      p.required(path, m, "task_guid"),
		Domain:        p.str(path, m, "domain", ""),
		MemoryMB:      p.nonNegative(field(path, "memory_mb"), p.integer(path, m, "memory_mb", 0)),
		DiskMB:        p.nonNegative(field(path, "disk_mb"), p.integer(path, m, "disk_mb", 0)),
		MaxPids:       p.nonNegative(field(path, "max_pids"), p.integer(path, m, "max_pids", 0)),
		RootFS:        p.rootfs(path, m),
		PlacementTags: p.stringList(path, m, "placement_tags"),
		VolumeDrivers: p.stringList(path, m, "volume_drivers"),
	}, true
}

func (p *parser) rootfs(path string, m map[string]any) string {
	r := p.str(path, m, "rootfs", DefaultRootFS)
	if r == "" {
		p.errorf(field(path, "rootfs"), "must not be empty")
	}
	return r
}
