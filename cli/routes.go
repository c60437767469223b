package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	"github.com/gavelhq/gavel/route-emitter/routingtable"
	"github.com/gavelhq/gavel/route-emitter/watcher"
)

// newRoutesCommand returns "gavel routes": the routing table the route
// emitter derives from the BBS, computed from the BBS's lists.
func newRoutesCommand() *cobra.Command {
	var cellID string
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "Print the HTTP routing table (URI → endpoints) computed from the BBS",
		Long: "Print the routing table the route emitter registers with gorouter: each URI of\n" +
			"each desired LRP's cf-router routes and the RUNNING, routable instances serving it.\n" +
			"--json prints one JSON object per line with snake_case names.",
		Args: cobra.NoArgs,
	}
	c := addConnFlags(cmd)
	cmd.Flags().StringVar(&cellID, "cell-id", "", "only the instances on this cell")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		bbs, err := c.client(cmd)
		if err != nil {
			return err
		}
		defer func() { _ = bbs.Close() }()
		ctx, cancel := c.ctx(cmd)
		defer cancel()
		records, err := fetchRoutes(ctx, bbs, cellID)
		if err != nil {
			return c.explain(err)
		}
		if c.json {
			return writeRoutesJSON(cmd.OutOrStdout(), records)
		}
		return writeRoutesTable(cmd.OutOrStdout(), records)
	}
	return cmd
}

// routeRecord is one URI of one process and container port with its endpoints.
type routeRecord struct {
	URI              string          `json:"uri"`
	ProcessGUID      string          `json:"process_guid"`
	ContainerPort    uint32          `json:"container_port"`
	Domain           string          `json:"domain"`
	LogGUID          string          `json:"log_guid"`
	RouteServiceURL  string          `json:"route_service_url,omitempty"`
	IsolationSegment string          `json:"isolation_segment,omitempty"`
	Endpoints        []routeEndpoint `json:"endpoints"`
}

type routeEndpoint struct {
	InstanceGUID     string `json:"instance_guid"`
	Index            int32  `json:"index"`
	Host             string `json:"host"`
	Port             uint32 `json:"port"`
	TLSPort          uint32 `json:"tls_port,omitempty"`
	Evacuating       bool   `json:"evacuating,omitempty"`
	AvailabilityZone string `json:"availability_zone,omitempty"`
}

// fetchRoutes lists the BBS and builds the table as the route emitter does.
func fetchRoutes(ctx context.Context, c bbsv1.BBSServiceClient, cellID string) ([]routeRecord, error) {
	var (
		desired *bbsv1.ListDesiredLRPRoutingInfosResponse
		actuals *bbsv1.ListActualLRPsResponse
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		desired, err = c.ListDesiredLRPRoutingInfos(gctx, &bbsv1.ListDesiredLRPRoutingInfosRequest{})
		if err != nil {
			return fmt.Errorf("listing desired LRP routing infos: %w", err)
		}
		return nil
	})
	g.Go(func() (err error) {
		actuals, err = c.ListActualLRPs(gctx, &bbsv1.ListActualLRPsRequest{CellId: cellID})
		if err != nil {
			return fmt.Errorf("listing actual LRPs: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	table, _ := watcher.BuildTable(routingtable.Options{}, desired, actuals, nil)
	var out []routeRecord
	for _, e := range table.Entries() {
		var eps []routeEndpoint
		for _, a := range e.Endpoints {
			ep := routeEndpoint{InstanceGUID: a.InstanceGUID, Index: a.Index, Host: a.Address, Evacuating: a.Evacuating, AvailabilityZone: a.AvailabilityZone}
			for _, p := range a.Ports {
				if p.GetContainerPort() == e.Key.ContainerPort {
					ep.Port, ep.TLSPort = p.GetHostPort(), p.GetHostTlsProxyPort()
					break
				}
			}
			eps = append(eps, ep)
		}
		if eps == nil {
			eps = []routeEndpoint{}
		}
		for _, r := range e.Routes {
			out = append(out, routeRecord{
				URI: r.Hostname, ProcessGUID: e.Key.ProcessGUID, ContainerPort: e.Key.ContainerPort,
				Domain: e.Domain, LogGUID: e.LogGUID, RouteServiceURL: r.RouteServiceURL,
				IsolationSegment: r.IsolationSegment, Endpoints: eps,
			})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].URI != out[j].URI {
			return out[i].URI < out[j].URI
		}
		return out[i].ProcessGUID < out[j].ProcessGUID
	})
	return out, nil
}

func writeRoutesJSON(w io.Writer, records []routeRecord) error {
	enc := json.NewEncoder(w)
	for _, r := range records {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("writing routes: %w", err)
		}
	}
	return nil
}

func writeRoutesTable(w io.Writer, records []routeRecord) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "URI\tPROCESS\tPORT\tENDPOINTS")
	for _, r := range records {
		eps := make([]string, 0, len(r.Endpoints))
		for _, e := range r.Endpoints {
			s := fmt.Sprintf("%s:%d [%d]", e.Host, e.Port, e.Index)
			if e.Evacuating {
				s += " evacuating"
			}
			eps = append(eps, s)
		}
		if len(eps) == 0 {
			eps = append(eps, "(none)")
		}
		uri := r.URI
		if r.RouteServiceURL != "" {
			uri += " → " + r.RouteServiceURL
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", uri, r.ProcessGUID, r.ContainerPort, strings.Join(eps, ", "))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing routes: %w", err)
	}
	return nil
}
