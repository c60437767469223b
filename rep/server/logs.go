package server

import (
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
	"github.com/gavelhq/gavel/rep"
	"github.com/gavelhq/gavel/rep/executor"
)

// logFollowBuffer is how many lines a follower may fall behind before it misses lines.
const logFollowBuffer = 1024

// StreamLogs sends the recent lines of the selected containers and, with
// follow, new lines until the caller cancels.
func (s *Server) StreamLogs(req *repv1.StreamLogsRequest, stream repv1.RepService_StreamLogsServer) error {
	if (req.GetProcessGuid() == "") == (req.GetTaskGuid() == "") {
		return status.Error(codes.InvalidArgument, "process_guid, task_guid: exactly one is required")
	}
	var guids []string
	var meta = map[string]executor.Container{}
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
			guids = append(guids, c.Guid)
			meta[c.Guid] = c
		}
	}
	send := func(l executor.LogLine) error {
		c := meta[l.Guid]
		idx, _ := strconv.Atoi(c.Tags[rep.TagProcessIndex])
		return stream.Send(&repv1.StreamLogsResponse{Line: &repv1.LogLine{
			Timestamp: l.Time.UnixNano(), ProcessGuid: c.Tags[rep.TagProcessGuid], Index: int32(idx),
			InstanceGuid: c.Tags[rep.TagInstanceGuid], Source: l.Source, Stream: string(l.Stream), Message: l.Message,
		}})
	}
	if !req.GetFollow() {
		for _, g := range guids {
			lines, err := s.opts.Executor.Logs(g)
			if err != nil {
				continue // the container went away meanwhile
			}
			for _, l := range lines {
				if err := send(l); err != nil {
					return err
				}
			}
		}
		return nil
	}
	merged := make(chan executor.LogLine, logFollowBuffer)
	for _, g := range guids {
		backlog, lines, cancel, err := s.opts.Executor.SubscribeLogs(g, logFollowBuffer)
		if err != nil {
			continue
		}
		defer cancel()
		for _, l := range backlog {
			if err := send(l); err != nil {
				return err
			}
		}
		go func() {
			for l := range lines {
				select {
				case merged <- l:
				case <-stream.Context().Done():
					return
				}
			}
		}()
	}
	for {
		select {
		case l := <-merged:
			if err := send(l); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}
