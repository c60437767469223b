package executor

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"code.cloudfoundry.org/clock"
)

// MaxLogMessageBytes caps one log line; longer lines are split.
const MaxLogMessageBytes = 61440

// Stream says which output a log line came from.
type Stream string

// Log streams.
const (
	StreamStdout Stream = "stdout"
	StreamStderr Stream = "stderr"
)

// LogLine is one captured line of a container's output.
type LogLine struct {
	Time    time.Time
	Guid    string // the container guid
	LogGuid string
	Index   int
	Source  string // the log source tag ("APP/PROC/WEB", "CELL", "HEALTH", …)
	Stream  Stream
	Message string
}

// logStore keeps a container's recent lines and its subscribers.
type logStore struct {
	clock       clock.Clock
	guid        string
	size        int
	bytesPerSec int64
	linesPerSec int

	mu         sync.Mutex
	cfg        LogConfig
	ring       []LogLine
	next       int
	full       bool
	subs       map[chan LogLine]struct{}
	window     time.Time
	bytes      int64
	lines      int
	notified   bool
	closed     bool
	dropped    int64
	subDropped int64
}

func newLogStore(clk clock.Clock, guid string, size, linesPerSec int) *logStore {
	return &logStore{clock: clk, guid: guid, size: size, linesPerSec: linesPerSec}
}

func (s *logStore) configure(cfg LogConfig, bytesPerSec int64) {
	s.mu.Lock()
	s.cfg, s.bytesPerSec = cfg, bytesPerSec
	s.mu.Unlock()
}

// append records one line, subject to the rate limits.
func (s *logStore) append(source string, stream Stream, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	now := s.clock.Now()
	if now.Sub(s.window) >= time.Second {
		s.window, s.bytes, s.lines, s.notified = now, 0, 0, false
	}
	s.bytes += int64(len(msg))
	s.lines++
	switch {
	case s.bytesPerSec > 0 && s.bytes > s.bytesPerSec:
		s.drop(now, fmt.Sprintf("app instance exceeded log rate limit (%d bytes/sec)", s.bytesPerSec))
		return
	case s.linesPerSec > 0 && s.lines > s.linesPerSec:
		s.drop(now, fmt.Sprintf("app instance exceeded log rate limit (%d log-lines/sec) set by platform operator", s.linesPerSec))
		return
	}
	s.record(LogLine{Time: now, Source: source, Stream: stream, Message: msg})
}

func (s *logStore) drop(now time.Time, notice string) {
	s.dropped++
	if !s.notified {
		s.notified = true
		s.record(LogLine{Time: now, Source: "CELL", Stream: StreamStderr, Message: notice})
	}
}

// record stores a line and publishes it; s.mu is held.
func (s *logStore) record(l LogLine) {
	l.Guid, l.LogGuid, l.Index = s.guid, s.cfg.Guid, s.cfg.Index
	if len(s.ring) < s.size {
		s.ring = append(s.ring, l)
	} else {
		s.ring[s.next] = l
		s.full = true
	}
	s.next = (s.next + 1) % s.size
	for ch := range s.subs {
		select {
		case ch <- l:
		default:
			s.subDropped++
		}
	}
}

// lines returns the retained lines, oldest first.
func (s *logStore) retained() []LogLine {
	if !s.full {
		return append([]LogLine(nil), s.ring...)
	}
	out := make([]LogLine, 0, len(s.ring))
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

func (s *logStore) snapshot() []LogLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retained()
}

func (s *logStore) subscribe(buffer int) ([]LogLine, chan LogLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan LogLine, buffer)
	if s.closed {
		close(ch)
		return s.retained(), ch
	}
	if s.subs == nil {
		s.subs = map[chan LogLine]struct{}{} // most containers never have a subscriber
	}
	s.subs[ch] = struct{}{}
	return s.retained(), ch
}

func (s *logStore) unsubscribe(ch chan LogLine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[ch]; ok {
		delete(s.subs, ch)
		close(ch)
	}
}

func (s *logStore) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for ch := range s.subs {
		close(ch)
	}
	s.subs = nil
}

// lineWriter splits a stream into lines for a logStore. It is used by one
// goroutine at a time; Flush emits a trailing partial line.
type lineWriter struct {
	store  *logStore
	source string
	stream Stream
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= MaxLogMessageBytes {
				w.store.append(w.source, w.stream, string(w.buf[:MaxLogMessageBytes]))
				w.buf = w.buf[MaxLogMessageBytes:]
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		for len(w.buf) > MaxLogMessageBytes {
			w.store.append(w.source, w.stream, string(w.buf[:MaxLogMessageBytes]))
			w.buf = w.buf[MaxLogMessageBytes:]
		}
		w.store.append(w.source, w.stream, string(bytes.TrimSuffix(w.buf, []byte("\r"))))
		w.buf = w.buf[:0]
	}
	return n, nil
}

// Flush emits a buffered partial line.
func (w *lineWriter) Flush() {
	if len(w.buf) > 0 {
		w.store.append(w.source, w.stream, string(w.buf))
		w.buf = w.buf[:0]
	}
}
