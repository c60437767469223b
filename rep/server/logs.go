package server

import (
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
	"github.com/gavelhq/gavel/rep/logarchive"
)

// logFollowBuffer is how many lines a follower may fall behind before it misses lines.
const logFollowBuffer = 1024

// logFollowRescan is how often a follow looks for new containers of its selection.
const logFollowRescan = 500 * time.Millisecond

// containerLine is a live line with its container.
type containerLine struct {
	c executor.Container
	l executor.LogLine
}

// StreamLogs sends the recent lines of the selected containers (with recent,
// first those of the selection's ended containers from the archive; with
// previous, only the last ended container's per index) and, with follow,
// new lines, including those of containers that start later, until the
// caller cancels.
func (s *Server) StreamLogs(req *repv1.StreamLogsRequest, stream repv1.RepService_StreamLogsServer) error {
	if (req.GetProcessGuid() == "") == (req.GetTaskGuid() == "") {
		return status.Error(codes.InvalidArgument, "process_guid, task_guid: exactly one is required")
	}
	if req.GetPrevious() && req.GetFollow() {
		return status.Error(codes.InvalidArgument, "previous, follow: previous shows ended containers only and cannot follow")
	}
	if (req.GetRecent() || req.GetPrevious()) && s.opts.LogArchive != nil {
		entries := s.opts.LogArchive.Select(req.GetProcessGuid(), req.Index, req.GetTaskGuid())
		if req.GetPrevious() {
			entries = lastPerIndex(entries)
		}
		for _, e := range entries {
			for _, l := range e.Lines {
				if err := stream.Send(&repv1.StreamLogsResponse{Line: &repv1.LogLine{
					Timestamp: l.Time, ProcessGuid: e.ProcessGUID, Index: e.Index, InstanceGuid: e.InstanceGUID,
					Source: l.Source, Stream: l.Stream, Message: l.Message, Ended: true,
				}}); err != nil {
					return err
				}
			}
		}
	}
	if req.GetPrevious() {
		return nil
	}
	selected := func() []executor.Container {
		var out []executor.Container
		for _, c := range s.opts.Executor.List() {
			match := false
			switch {
			case req.GetTaskGuid() != "":
				match = rep.IsTask(c) && c.Guid == req.GetTaskGuid()
			default:
				match = rep.IsLRP(c) && c.Tags[rep.TagProcessGuid] == req.GetProcessGuid() &&
					(req.Index == nil || c.Tags[rep.TagProcessIndex] == strconv.Itoa(int(req.GetIndex())))
			}
			if match {
				out = append(out, c)
			}
		}
		return out
	}
	send := func(c executor.Container, l executor.LogLine) error {
		idx, _ := strconv.Atoi(c.Tags[rep.TagProcessIndex])
		return stream.Send(&repv1.StreamLogsResponse{Line: &repv1.LogLine{
			Timestamp: l.Time.UnixNano(), ProcessGuid: c.Tags[rep.TagProcessGuid], Index: int32(idx),
			InstanceGuid: c.Tags[rep.TagInstanceGuid], Source: l.Source, Stream: string(l.Stream), Message: l.Message,
		}})
	}
	if !req.GetFollow() {
		for _, c := range selected() {
			lines, err := s.opts.Executor.Logs(c.Guid)
			if err != nil {
				continue // the container went away meanwhile
			}
			for _, l := range lines {
				if err := send(c, l); err != nil {
					return err
				}
			}
		}
		return nil
	}
	merged := make(chan containerLine, logFollowBuffer)
	subscribed := map[string]bool{}
	subscribeNew := func() error {
		for _, c := range selected() {
			if subscribed[c.Guid] {
				continue
			}
			backlog, lines, cancel, err := s.opts.Executor.SubscribeLogs(c.Guid, logFollowBuffer)
			if err != nil {
				continue
			}
			subscribed[c.Guid] = true
			go func() {
				<-stream.Context().Done()
				cancel()
			}()
			for _, l := range backlog {
				if err := send(c, l); err != nil {
					return err
				}
			}
			go func() {
				for l := range lines {
					select {
					case merged <- containerLine{c, l}:
					case <-stream.Context().Done():
						return
					}
				}
			}()
		}
		return nil
	}
	if err := subscribeNew(); err != nil {
		return err
	}
	rescan := time.NewTicker(logFollowRescan)
	defer rescan.Stop()
	for {
		select {
		case cl := <-merged:
			if err := send(cl.c, cl.l); err != nil {
				return err
			}
		case <-rescan.C:
			if err := subscribeNew(); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// lastPerIndex keeps the last entry of each index (entries are oldest first).
func lastPerIndex(entries []logarchive.Entry) []logarchive.Entry {
	last := map[int32]int{}
	for i, e := range entries {
		last[e.Index] = i
	}
	var out []logarchive.Entry
	for i, e := range entries {
		if last[e.Index] == i {
			out = append(out, e)
		}
	}
	return out
}
