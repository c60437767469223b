package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// ParseReader reads a scenario from r like Parse, streaming: it holds the
// scenario it builds, never the document nor a generic tree of it. r must
// seek: its size is checked first, and a malformed document is read again
// from the start to locate the error exactly as Parse does.
func ParseReader(r io.ReadSeeker) (*Scenario, error) {
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	if size > MaxScenarioBytes {
		return nil, tooLarge(size)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	reread := func() ([]byte, error) {
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		return io.ReadAll(io.LimitReader(r, MaxScenarioBytes))
	}
	return parseStream(io.LimitReader(r, MaxScenarioBytes), reread)
}

// parseStream parses the document r yields. The top-level object and its
// arrays are read token by token and each element on its own: a fast scan
// takes a well-formed, valid element straight into its typed form, and
// anything else goes through the reference walker (parser) on that element
// alone, so the errors are the reference's. reread returns the whole
// document when it turns out malformed, to locate the error.
func parseStream(r io.Reader, reread func() ([]byte, error)) (*Scenario, error) {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	st := &stream{dec: dec, intern: map[string]string{}}
	s, err := st.scenario()
	if err != nil {
		data, rerr := reread()
		if rerr != nil {
			return nil, fmt.Errorf("read scenario: %w", rerr)
		}
		var raw json.RawMessage
		if derr := json.NewDecoder(bytes.NewReader(data)).Decode(&raw); derr != nil {
			return nil, &ValidationError{Fields: []FieldError{{Message: syntaxMessage(data, derr)}}}
		}
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &ValidationError{Fields: []FieldError{{Message: "unexpected data after the top-level object"}}}
	}
	if errs := st.errors(); len(errs) > 0 {
		return nil, &ValidationError{Fields: errs}
	}
	return s, nil
}

// maxInterned bounds the distinct strings a parse shares between fields
// (process guids, domains, rootfs URLs, zones, tags); beyond it strings
// are still read, just not shared.
const maxInterned = 1 << 16

// stream is the state of one streaming parse. Errors are kept per section
// and joined in the reference's order: unknown top-level fields (sorted),
// options, cells, lrps, tasks.
type stream struct {
	dec    *json.Decoder
	raw    json.RawMessage
	intern map[string]string

	unknown                   []string
	top, options, cells, lrps []FieldError
	tasks                     []FieldError
}

func (st *stream) errors() []FieldError {
	var errs []FieldError
	errs = append(errs, st.top...)
	slices.Sort(st.unknown)
	for _, k := range slices.Compact(st.unknown) {
		errs = append(errs, FieldError{Path: k, Message: "unknown field"})
	}
	for _, e := range [][]FieldError{st.options, st.cells, st.lrps, st.tasks} {
		errs = append(errs, e...)
	}
	return errs
}

// str returns b as a string, shared with earlier equal strings.
func (st *stream) str(b []byte) string {
	if s, ok := st.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(st.intern) < maxInterned {
		st.intern[s] = s
	}
	return s
}

// scenario reads the top-level value.
func (st *stream) scenario() (*Scenario, error) {
	tok, err := st.dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		v, err := st.rest(tok)
		if err != nil {
			return nil, err
		}
		p := &parser{}
		s := p.scenario(v)
		st.top = p.errs
		return s, nil
	}
	s := &Scenario{Cells: []Cell{}, LRPs: []LRP{}, Tasks: []Task{}}
	s.Options = (&parser{}).options(nil)
	for st.dec.More() {
		kt, err := st.dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := kt.(string)
		switch key {
		case "options":
			var v any
			if err := st.dec.Decode(&v); err != nil {
				return nil, err
			}
			p := &parser{}
			s.Options = p.options(map[string]any{"options": v})
			st.options = p.errs
		case "cells":
			err = st.readCells(s)
		case "lrps":
			err = st.readLRPs(s)
		case "tasks":
			err = st.readTasks(s)
		default:
			st.unknown = append(st.unknown, key)
			err = st.dec.Decode(&st.raw)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, err := st.dec.Token(); err != nil {
		return nil, err
	}
	return s, nil
}

// rest reads the rest of a value whose first token is tok into a generic
// tree, as the reference decodes it.
func (st *stream) rest(tok json.Token) (any, error) {
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if d == '[' {
		a := []any{}
		for st.dec.More() {
			var v any
			if err := st.dec.Decode(&v); err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := st.dec.Token()
		return a, err
	}
	m := map[string]any{}
	for st.dec.More() {
		kt, err := st.dec.Token()
		if err != nil {
			return nil, err
		}
		var v any
		if err := st.dec.Decode(&v); err != nil {
			return nil, err
		}
		key, _ := kt.(string)
		m[key] = v
	}
	_, err := st.dec.Token()
	return m, err
}

// generic decodes one element as the reference does.
func generic(raw []byte) any {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	_ = d.Decode(&v) // raw was read whole by the stream's decoder: it is valid JSON.
	return v
}

// elements streams the array under key, calling each with the element's
// index and raw bytes. An array beyond its bound, or a value that is not an
// array, is reported as the reference does (with no element errors); it
// returns false then, and the caller drops what it collected.
func (st *stream) elements(p *parser, key string, each func(i int, raw []byte)) (bool, error) {
	tok, err := st.dec.Token()
	if err != nil {
		return false, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		v, err := st.rest(tok)
		if err != nil {
			return false, err
		}
		p.array("", map[string]any{key: v}, key)
		return false, nil
	}
	bound := listBound("", key)
	n := 0
	for st.dec.More() {
		if err := st.dec.Decode(&st.raw); err != nil {
			return false, err
		}
		if n < bound {
			each(n, st.raw)
		}
		n++
	}
	if _, err := st.dec.Token(); err != nil {
		return false, err
	}
	if n > bound {
		p.errs = nil
		p.errorf(key, "must hold at most %d items (got %d)", bound, n)
		return false, nil
	}
	return true, nil
}

func (st *stream) readCells(s *Scenario) error {
	p := &parser{}
	cells := []Cell{}
	ids := map[string]int{}
	ok, err := st.elements(p, "cells", func(i int, raw []byte) {
		c, fast := st.fastCell(raw)
		path := ""
		if !fast {
			path = elem("cells", i)
			var isObj bool
			if c, isObj = p.cell(path, generic(raw)); !isObj {
				return
			}
		}
		if first, dup := ids[c.CellID]; dup && c.CellID != "" {
			if path == "" {
				path = elem("cells", i)
			}
			p.errorf(field(path, "cell_id"), "duplicate %q (also cells[%d])", c.CellID, first)
		}
		ids[c.CellID] = i
		cells = append(cells, c)
	})
	if err != nil {
		return err
	}
	if !ok {
		cells = []Cell{}
	}
	s.Cells, st.cells = cells, p.errs
	return nil
}

// lrpKey identifies an LRP instance.
type lrpKey struct {
	guid  string
	index int
}

func (st *stream) readLRPs(s *Scenario) error {
	p := &parser{}
	var lrps chunks[LRP]
	ids := map[lrpKey]int{}
	ok, err := st.elements(p, "lrps", func(i int, raw []byte) {
		l, fast := st.fastLRP(raw)
		if !fast {
			var isObj bool
			if l, isObj = p.lrp(elem("lrps", i), generic(raw)); !isObj {
				return
			}
		}
		k := lrpKey{l.ProcessGUID, l.Index}
		if first, dup := ids[k]; dup {
			p.errorf(elem("lrps", i), "duplicate instance %q (also lrps[%d])", fmt.Sprintf("%s.%d", l.ProcessGUID, l.Index), first)
		}
		ids[k] = i
		lrps.add(l)
	})
	if err != nil {
		return err
	}
	s.LRPs = []LRP{}
	if ok {
		s.LRPs = lrps.join()
	}
	st.lrps = p.errs
	return nil
}

func (st *stream) readTasks(s *Scenario) error {
	p := &parser{}
	var tasks chunks[Task]
	ids := map[string]int{}
	ok, err := st.elements(p, "tasks", func(i int, raw []byte) {
		t, fast := st.fastTask(raw)
		if !fast {
			var isObj bool
			if t, isObj = p.task(elem("tasks", i), generic(raw)); !isObj {
				return
			}
		}
		if first, dup := ids[t.TaskGUID]; dup {
			p.errorf(field(elem("tasks", i), "task_guid"), "duplicate %q (also tasks[%d])", t.TaskGUID, first)
		}
		ids[t.TaskGUID] = i
		tasks.add(t)
	})
	if err != nil {
		return err
	}
	s.Tasks = []Task{}
	if ok {
		s.Tasks = tasks.join()
	}
	st.tasks = p.errs
	return nil
}

// chunkLen is the length of one chunk of parsed requests.
const chunkLen = 1 << 14

// chunks collects items in fixed-size chunks, so a list of a million
// requests is copied once, into a slice of its exact length, instead of
// at every growth of one slice.
type chunks[T any] struct {
	full [][]T
	last []T
}

func (c *chunks[T]) add(v T) {
	if len(c.last) == chunkLen {
		c.full = append(c.full, c.last)
		c.last = nil
	}
	if c.last == nil {
		c.last = make([]T, 0, chunkLen)
	}
	c.last = append(c.last, v)
}

// join returns every item in order (never nil), releasing the chunks.
func (c *chunks[T]) join() []T {
	out := make([]T, 0, len(c.full)*chunkLen+len(c.last))
	for i, ch := range c.full {
		out = append(out, ch...)
		c.full[i] = nil
	}
	out = append(out, c.last...)
	c.full, c.last = nil, nil
	return out
}
