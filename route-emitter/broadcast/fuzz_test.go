package broadcast

import (
	"testing"
	"time"
)

// A router's start message, whatever a NATS publisher sends, decodes or is
// refused, and an accepted one asks an interval in (0, MaxRegisterInterval]:
// never one that overflows into a negative duration (a ticker panics on it).
func FuzzParseStartMessage(f *testing.F) {
	for _, seed := range []string{
		`{"id":"router-1","hosts":["10.0.0.1"],"minimumRegisterIntervalInSeconds":20,"pruneThresholdInSeconds":120}`,
		`{"minimumRegisterIntervalInSeconds":0}`,
		`{"minimumRegisterIntervalInSeconds":-5}`,
		`{"minimumRegisterIntervalInSeconds":10000000000}`,
		`{"minimumRegisterIntervalInSeconds":3600}`,
		`{"hosts":null}`, `[]`, `null`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	const def = 20 * time.Second
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseStartMessage(data)
		if err != nil {
			return
		}
		if iv := m.Interval(def); iv <= 0 || iv > MaxRegisterInterval {
			t.Fatalf("interval %s from %q: want (0, %s]", iv, data, MaxRegisterInterval)
		}
	})
}

func TestStartMessageIntervalBounds(t *testing.T) {
	_, err := ParseStartMessage([]byte(`{"minimumRegisterIntervalInSeconds":10000000000}`))
	if err == nil {
		t.Fatal("an interval that overflows a duration must be refused")
	}
	m, err := ParseStartMessage([]byte(`{"minimumRegisterIntervalInSeconds":30}`))
	if err != nil || m.Interval(time.Second) != 30*time.Second {
		t.Fatalf("got %v, %v", m.Interval(time.Second), err)
	}
	if m, _ := ParseStartMessage([]byte(`{}`)); m.Interval(time.Second) != time.Second {
		t.Fatal("no interval: the default")
	}
}
