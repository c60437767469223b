package logarchive_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gavelhq/gavel/rep/logarchive"
)

func entry(guid string, index int32, n int, msg string) logarchive.Entry {
	e := logarchive.Entry{ProcessGUID: guid, InstanceGUID: guid + "-ig", Index: index, EndedAt: 1, Reason: "crashed"}
	for i := range n {
		e.Lines = append(e.Lines, logarchive.Line{Time: int64(i), Source: "APP/PROC/WEB", Stream: "stdout", Message: msg})
	}
	return e
}

func TestArchivePersistsAndSelects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs.json")
	a, err := logarchive.Open(logarchive.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(entry("web", 0, 2, "hello")); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(entry("web", 1, 1, "other")); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(logarchive.Entry{TaskGUID: "t1", Lines: []logarchive.Line{{Message: "task out"}}}); err != nil {
		t.Fatal(err)
	}
	b, err := logarchive.Open(logarchive.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	if got := b.Select("web", nil, ""); len(got) != 2 {
		t.Fatalf("web: %d entries after reopening, want 2", len(got))
	}
	if got := b.Select("web", &one, ""); len(got) != 1 || got[0].Lines[0].Message != "other" {
		t.Fatalf("web index 1: %+v", got)
	}
	if got := b.Select("", nil, "t1"); len(got) != 1 || got[0].Lines[0].Message != "task out" {
		t.Fatalf("task: %+v", got)
	}
}

func TestArchiveIsBoundedPerAppAndInTotal(t *testing.T) {
	a, err := logarchive.Open(logarchive.Options{MaxPerApp: 2, MaxBytes: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := a.Add(entry("web", int32(i), 1, "x")); err != nil {
			t.Fatal(err)
		}
	}
	got := a.Select("web", nil, "")
	if len(got) != 2 || got[0].Index != 3 || got[1].Index != 4 {
		t.Fatalf("per app: kept %+v, want the last two", got)
	}
	big := strings.Repeat("y", 1000)
	for i := range 30 {
		if err := a.Add(entry("app"+string(rune('a'+i)), 0, 3, big)); err != nil {
			t.Fatal(err)
		}
	}
	if a.Size() > 10_000 {
		t.Fatalf("archive holds %d bytes, bound 10000", a.Size())
	}
	if got := a.Select("appa", nil, ""); len(got) != 0 {
		t.Fatalf("an early app survived the total bound: %+v", got)
	}
	if got := a.Select("app"+string(rune('a'+29)), nil, ""); len(got) != 1 {
		t.Fatalf("the newest app was evicted")
	}
	// One entry larger than the whole bound keeps its newest lines only.
	if err := a.Add(entry("huge", 0, 50, big)); err != nil {
		t.Fatal(err)
	}
	if a.Size() > 10_000 || len(a.Select("huge", nil, "")) != 1 {
		t.Fatalf("huge entry: size %d, entries %d", a.Size(), len(a.Select("huge", nil, "")))
	}
}
