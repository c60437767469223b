package bulker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gavelhq/gavel/nsync/ccmessages"
)

// maxResponseBytes caps one controller response.
const maxResponseBytes = 64 << 20

// controller is the bulk API of the controller, with basic auth.
type controller struct {
	base, user, password string
	http                 *http.Client
}

func (c *controller) do(ctx context.Context, method, path string, query url.Values, body any, out any) error {
	u := strings.TrimSuffix(c.base, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s: %w", path, err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return fmt.Errorf("controller %s %s: %w", method, path, err)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("controller %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("controller %s %s: status %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(out); err != nil {
		return fmt.Errorf("controller %s %s: decode: %w", method, path, err)
	}
	return nil
}

func (c *controller) fingerprints(ctx context.Context, size int, token json.RawMessage) (ccmessages.FingerprintsPage, error) {
	var p ccmessages.FingerprintsPage
	q := url.Values{"batch_size": {strconv.Itoa(size)}, "format": {"fingerprint"}, "token": {string(token)}}
	err := c.do(ctx, http.MethodGet, "/internal/bulk/apps", q, nil, &p)
	return p, err
}

func (c *controller) apps(ctx context.Context, guids []string) ([]ccmessages.DesireAppRequestFromCC, error) {
	var out []ccmessages.DesireAppRequestFromCC
	err := c.do(ctx, http.MethodPost, "/internal/bulk/apps", nil, guids, &out)
	return out, err
}

func (c *controller) taskStates(ctx context.Context, size int, token json.RawMessage) (ccmessages.TaskStatesPage, error) {
	var p ccmessages.TaskStatesPage
	q := url.Values{"batch_size": {strconv.Itoa(size)}, "token": {string(token)}}
	err := c.do(ctx, http.MethodGet, "/internal/v3/bulk/task_states", q, nil, &p)
	return p, err
}

func (c *controller) failTask(ctx context.Context, callback, guid string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, callback, nil)
	if err != nil {
		return fmt.Errorf("task %s callback: %w", guid, err)
	}
	body, _ := json.Marshal(ccmessages.TaskFailResponse{TaskGUID: guid, Failed: true, FailureReason: "Unable to determine completion status"})
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json")
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("task %s callback: %w", guid, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("task %s callback: status %d", guid, resp.StatusCode)
	}
	return nil
}
