package cli

import "testing"

func TestNumberedInsertsTheRunBeforeTheExtension(t *testing.T) {
	for in, want := range map[string]string{"r.json": "r-run2.json", "out/r": "out/r-run2", "": ""} {
		if got := numbered(in, 2); got != want {
			t.Errorf("numbered(%q, 2) = %q, want %q", in, got, want)
		}
	}
}
