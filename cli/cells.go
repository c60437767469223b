package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gavelhq/gavel/bbs/client"
	"github.com/gavelhq/gavel/internal/grpcclient"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

func newCellsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cells", Short: "List the live cells", Args: cobra.NoArgs}
	c := addConnFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var resp *bbsv1.ListCellsResponse
		if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) (err error) {
			resp, err = bbs.ListCells(ctx, &bbsv1.ListCellsRequest{})
			return err
		}); err != nil {
			return err
		}
		if c.json {
			return printEach(c, resp.GetCells())
		}
		w := newTable(c)
		fmt.Fprintln(w, "CELL_ID\tZONE\tADDRESS\tMEMORY\tDISK\tCONTAINERS\tTAGS")
		for _, cell := range resp.GetCells() {
			tags := append(append([]string{}, cell.GetPlacementTags()...), cell.GetOptionalPlacementTags()...)
			fmt.Fprintf(w, "%s\t%s\t%s\t%dM\t%dM\t%d\t%s\n", cell.GetCellId(), cell.GetZone(), cell.GetRepAddress(),
				cell.GetCapacity().GetMemoryMb(), cell.GetCapacity().GetDiskMb(), cell.GetCapacity().GetContainers(), strings.Join(tags, ","))
		}
		return w.Flush()
	}
	return cmd
}

func newCellStateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cell-state CELL_ID", Short: "Ask a cell's rep for its capacity, work and evacuation state", Args: cobra.ExactArgs(1)}
	c := addConnFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var st *repv1.StateResponse
		if err := c.callRep(cmd, args[0], func(ctx context.Context, rep repv1.RepServiceClient) (err error) {
			st, err = rep.State(ctx, &repv1.StateRequest{})
			return err
		}); err != nil {
			return err
		}
		if c.json {
			return c.printJSON(st)
		}
		printCellState(c.out, st)
		return nil
	}
	return cmd
}

// callRep finds a live cell's rep through the BBS and runs f against it.
func (c *conn) callRep(cmd *cobra.Command, cellID string, f func(ctx context.Context, rep repv1.RepServiceClient) error) error {
	var addr string
	if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) error {
		cells, err := bbs.ListCells(ctx, &bbsv1.ListCellsRequest{})
		for _, cell := range cells.GetCells() {
			if cell.GetCellId() == cellID {
				addr = cell.GetRepAddress()
			}
		}
		return err
	}); err != nil {
		return err
	}
	if addr == "" {
		return fmt.Errorf("cell %s is not present (gavel cells lists the live ones)", cellID)
	}
	var tlsConfig *tls.Config
	if c.tls.Enabled() {
		var err error
		if tlsConfig, err = c.tls.Client(""); err != nil {
			return err
		}
	}
	pool := grpcclient.NewPool(tlsConfig)
	defer pool.Close()
	conn, err := pool.Get(addr)
	if err != nil {
		return err
	}
	ctx, cancel := c.ctx(cmd)
	defer cancel()
	if err := f(ctx, repv1.NewRepServiceClient(conn)); err != nil {
		if status.Code(err) == codes.Unavailable {
			return &repUnreachableError{cellID: cellID, addr: addr, err: err}
		}
		return fmt.Errorf("cell %s at %s: %w", cellID, addr, c.explain(err))
	}
	return nil
}

// repUnreachableError is a cell whose presence is in the BBS but whose rep
// does not answer: it is stopping, has just exited, or is cut off.
type repUnreachableError struct {
	cellID, addr string
	err          error
}

func (e *repUnreachableError) Error() string {
	return fmt.Sprintf("cell %s: its rep at %s does not answer (%s)", e.cellID, e.addr, status.Convert(e.err).Message())
}

func (e *repUnreachableError) Unwrap() error { return e.err }

func printCellState(w io.Writer, st *repv1.StateResponse) {
	av, tot := st.GetAvailableResources(), st.GetTotalResources()
	fmt.Fprintf(w, "cell:        %s (zone %s)\nevacuating:  %v\nmemory:      %d of %d MB free\ndisk:        %d of %d MB free\ncontainers:  %d of %d free\nstarting:    %d\nLRPs:        %d\ntasks:       %d\n",
		st.GetCellId(), st.GetZone(), st.GetEvacuating(), av.GetMemoryMb(), tot.GetMemoryMb(), av.GetDiskMb(), tot.GetDiskMb(),
		av.GetContainers(), tot.GetContainers(), st.GetStartingContainerCount(), len(st.GetLrps()), len(st.GetTasks()))
	for _, l := range st.GetLrps() {
		fmt.Fprintf(w, "  lrp  %s/%d  %s\n", l.GetKey().GetProcessGuid(), l.GetKey().GetIndex(), l.GetInstanceGuid())
	}
	for _, t := range st.GetTasks() {
		fmt.Fprintf(w, "  task %s\n", t.GetTaskGuid())
	}
}

func newDomainsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "domains", Short: "List the fresh domains", Args: cobra.NoArgs}
	c := addConnFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var resp *bbsv1.ListDomainsResponse
		if err := c.call(cmd, func(ctx context.Context, bbs *client.Client) (err error) {
			resp, err = bbs.ListDomains(ctx, &bbsv1.ListDomainsRequest{})
			return err
		}); err != nil {
			return err
		}
		if c.json {
			return printEach(c, resp.GetDomains())
		}
		w := newTable(c)
		fmt.Fprintln(w, "DOMAIN\tFRESH UNTIL")
		for _, d := range resp.GetDomains() {
			until := "forever"
			if d.GetExpiresAt() > 0 {
				until = time.Unix(0, d.GetExpiresAt()).Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%s\t%s\n", d.GetName(), until)
		}
		return w.Flush()
	}
	return cmd
}

func newSetDomainCommand() *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{Use: "set-domain DOMAIN --ttl 2m", Short: "Mark a domain fresh (0: forever)", Args: cobra.ExactArgs(1)}
	c := addConnFlags(cmd)
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "freshness (0: forever)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if ttl < 0 || ttl%time.Second != 0 {
			return fmt.Errorf("--ttl: want a whole number of seconds >= 0 (got %s)", ttl)
		}
		fresh := "ever"
		if ttl > 0 {
			fresh = ttl.String()
		}
		return c.act(cmd, func(ctx context.Context, bbs *client.Client) error {
			_, err := bbs.UpsertDomain(ctx, &bbsv1.UpsertDomainRequest{Domain: args[0], TtlSeconds: int64(ttl / time.Second)})
			return err
		}, "domain %s is fresh for %s", args[0], fresh)
	}
	return cmd
}
