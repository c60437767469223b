// Package cellclient is how the BBS reaches a cell's rep to stop an instance
// or cancel a task, over one pooled gRPC connection per rep address.
package cellclient

import (
	"context"
	"fmt"

	"github.com/gavelhq/gavel/internal/grpcclient"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
	repv1 "github.com/gavelhq/gavel/proto/gen/gavel/rep/v1"
)

// Client calls reps. Safe for concurrent use.
type Client struct {
	pool *grpcclient.Pool
}

// New returns a client over pool.
func New(pool *grpcclient.Pool) *Client { return &Client{pool: pool} }

func (c *Client) rep(cell *modelsv1.CellPresence) (repv1.RepServiceClient, error) {
	conn, err := c.pool.Get(cell.GetRepAddress())
	if err != nil {
		return nil, fmt.Errorf("cell %s: %w", cell.GetCellId(), err)
	}
	return repv1.NewRepServiceClient(conn), nil
}

// StopLRPInstance asks a cell to stop an instance.
func (c *Client) StopLRPInstance(ctx context.Context, cell *modelsv1.CellPresence, key *modelsv1.ActualLRPKey, ik *modelsv1.ActualLRPInstanceKey) error {
	rep, err := c.rep(cell)
	if err != nil {
		return err
	}
	if _, err := rep.StopLRPInstance(ctx, &repv1.StopLRPInstanceRequest{Key: key, InstanceKey: ik}); err != nil {
		return fmt.Errorf("stop %s/%d on cell %s: %w", key.GetProcessGuid(), key.GetIndex(), cell.GetCellId(), err)
	}
	return nil
}

// CancelTask asks a cell to stop a task.
func (c *Client) CancelTask(ctx context.Context, cell *modelsv1.CellPresence, taskGUID string) error {
	rep, err := c.rep(cell)
	if err != nil {
		return err
	}
	if _, err := rep.CancelTask(ctx, &repv1.CancelTaskRequest{TaskGuid: taskGUID}); err != nil {
		return fmt.Errorf("cancel task %s on cell %s: %w", taskGUID, cell.GetCellId(), err)
	}
	return nil
}
