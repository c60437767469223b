package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/gavelhq/gavel/auctioneer"
)

// streamJSON writes exactly what a json.Encoder with a two-space indent
// writes for summary with r's placements and failures in its top-level
// "placements" and "failures" lists, without building those lists:
// summary (r.jsonSummary(), or any report embedding it) is encoded with
// them empty, and they are written into it item by item. Memory stays that
// of the summary (per cell and per zone) whatever the number of placements.
func (r *Report) streamJSON(w io.Writer, summary any) error {
	doc, err := json.MarshalIndent(summary, "", "  ")
	if err != nil {
		return err
	}
	doc = append(doc, '\n')
	bw := bufio.NewWriterSize(w, 1<<16)
	rest, err := spliceList(bw, doc, "placements", len(r.Placements), func(b []byte, i int) []byte {
		return appendPlacement(b, r.Placements[i])
	})
	if err != nil {
		return err
	}
	rest, err = spliceList(bw, rest, "failures", len(r.Failures), func(b []byte, i int) []byte {
		return appendFailure(b, r.Failures[i])
	})
	if err != nil {
		return err
	}
	if _, err := bw.Write(rest); err != nil {
		return err
	}
	return bw.Flush()
}

// spliceList writes doc up to its top-level empty list key, then the n
// items item appends, and returns the rest of doc.
func spliceList(bw *bufio.Writer, doc []byte, key string, n int, item func([]byte, int) []byte) ([]byte, error) {
	marker := []byte("\n  \"" + key + "\": []")
	at := bytes.Index(doc, marker)
	if at < 0 {
		return nil, fmt.Errorf("json report: no %q list", key)
	}
	head := at + len(marker) - 1 // up to and including '['
	if n == 0 {
		head++
	}
	if _, err := bw.Write(doc[:head]); err != nil {
		return nil, err
	}
	if n == 0 {
		return doc[head:], nil
	}
	buf := make([]byte, 0, 512)
	for i := range n {
		buf = buf[:0]
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = item(append(buf, "\n    {"...), i)
		buf = append(buf, "\n    }"...)
		if _, err := bw.Write(buf); err != nil {
			return nil, err
		}
	}
	if _, err := bw.WriteString("\n  "); err != nil {
		return nil, err
	}
	return doc[head:], nil
}

// appendMember appends one indented member of a list item.
func appendMember(b []byte, first bool, key string) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, "\n      \""...)
	b = append(b, key...)
	return append(b, "\": "...)
}

// appendPlacement appends a JSONPlacement's members, as encoding/json does.
func appendPlacement(b []byte, p auctioneer.Placement) []byte {
	b = appendJSONString(appendMember(b, true, "kind"), string(p.Kind))
	if p.Kind == auctioneer.KindLRP {
		if p.ProcessGUID != "" {
			b = appendJSONString(appendMember(b, false, "process_guid"), p.ProcessGUID)
		}
		b = strconv.AppendInt(appendMember(b, false, "index"), int64(p.Index), 10)
	} else if p.TaskGUID != "" {
		b = appendJSONString(appendMember(b, false, "task_guid"), p.TaskGUID)
	}
	return appendJSONString(appendMember(b, false, "cell_id"), p.CellID)
}

// appendFailure appends a JSONFailure's members, as encoding/json does.
func appendFailure(b []byte, f auctioneer.Failure) []byte {
	b = appendJSONString(appendMember(b, true, "kind"), string(f.Kind))
	if f.Kind == auctioneer.KindLRP {
		if f.ProcessGUID != "" {
			b = appendJSONString(appendMember(b, false, "process_guid"), f.ProcessGUID)
		}
		b = strconv.AppendInt(appendMember(b, false, "index"), int64(f.Index), 10)
	} else if f.TaskGUID != "" {
		b = appendJSONString(appendMember(b, false, "task_guid"), f.TaskGUID)
	}
	return appendJSONString(appendMember(b, false, "error"), f.Message)
}

// appendJSONString appends s quoted as encoding/json quotes it (HTML
// characters escaped); plain printable ASCII is copied as is.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
