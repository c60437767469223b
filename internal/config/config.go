package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Load reads the JSON file at path and decodes it into into, which must be a
// non-nil pointer (usually to a struct already holding the defaults, so the
// file only overrides what it names).
//
// Decoding is strict: unknown fields and trailing data are refused. Errors
// name the file and, where the decoder knows them, the field and the byte
// offset of the problem.
func Load(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: reading %s: %w", path, err)
	}
	if err := Decode(data, into); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

// Decode strictly decodes the JSON document data into into, with the same
// rules as [Load]. It is exported for configs that do not come from a file
// (tests, flags carrying inline JSON).
func Decode(data []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return describe(data, err)
	}
	// Anything after the first value is an error: two concatenated objects
	// usually mean a bad merge.
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		off := dec.InputOffset()
		if err != nil {
			return describe(data, err)
		}
		return fmt.Errorf("unexpected data after the top-level value at offset %d (%s)", off, lineCol(data, off))
	}
	return nil
}

// describe turns a json decoding error into one that names the field or the
// offset, with line and column, in words an operator can act on.
func describe(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("invalid JSON at offset %d (%s): %w", syn.Offset, lineCol(data, syn.Offset), err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Errorf("field %q at offset %d (%s): cannot use JSON %s as %s: %w",
			field, typ.Offset, lineCol(data, typ.Offset), typ.Value, typ.Type, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for unknown fields; its message
		// already quotes the field name.
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return fmt.Errorf("unknown field %s: %w", name, err)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("empty document: %w", err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("truncated JSON: %w", err)
	default:
		return err
	}
}

// lineCol renders a byte offset as "line L, column C" (1-based).
func lineCol(data []byte, off int64) string {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, b := range data[:off] {
		if b == '\n' {
			line++
			col = 1
			continue
		}
		col++
	}
	return fmt.Sprintf("line %d, column %d", line, col)
}

// Duration is a time.Duration that encodes in JSON as a Go duration string
// ("15s", "500ms"). When decoding it also accepts a JSON number, read as
// nanoseconds, for compatibility with plain time.Duration fields.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON encodes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON decodes a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("duration: %w", err)
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want a Go duration such as \"15s\" or \"1m30s\": %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"15s\" or an integer number of nanoseconds", b)
	}
	*d = Duration(n)
	return nil
}
