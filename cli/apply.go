package cli

import (
	"errors"
	"fmt"
	"maps"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

func newApplyCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f SPEC.json|yaml",
		Short: "Make an LRP what a spec says: desire it if absent, update what changed, nothing if it matches (safe to repeat)",
		Long: `apply desires the spec's LRP when it does not exist; when it does, it updates the fields an update may
change (instances, routes, annotation, metric tags) that differ, and does nothing when none does. A change
of any other field (action, memory, rootfs, ...) is refused with what differs: remove the LRP first.`,
		Args: cobra.NoArgs,
	}
	c := addConnFlags(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "spec file: a DesiredLRP with proto field names (required)")
	_ = cmd.MarkFlagRequired("file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		d := &modelsv1.DesiredLRP{}
		if err := loadSpec(file, d); err != nil {
			return err
		}
		if err := models.ValidateDesiredLRP(d); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		guid := d.GetProcessGuid()
		bbs, err := c.client(cmd)
		if err != nil {
			return err
		}
		ctx, cancel := c.ctx(cmd)
		resp, err := bbs.GetDesiredLRP(ctx, &bbsv1.GetDesiredLRPRequest{ProcessGuid: guid})
		cancel()
		bbs.Close()
		switch {
		case errors.Is(err, models.ErrNotFound):
			return desire(cmd, c, d)
		case err != nil:
			return c.explain(err)
		}
		current := resp.GetDesiredLrp()
		u, fixed := lrpDiff(current, d)
		if len(fixed) > 0 {
			return fmt.Errorf("%s: %s differs in %v, which an update cannot change: gavel remove-lrp %s, then apply again", file, guid, fixed, guid)
		}
		if u == nil {
			if c.json {
				return c.printJSON(current)
			}
			fmt.Fprintf(c.out, "%s unchanged\n", guid)
			return nil
		}
		return update(cmd, c, guid, u)
	}
	return cmd
}

// lrpDiff returns the update that turns cur into want (nil when nothing an
// update changes differs) and the names of the fields that differ but no
// update can change.
func lrpDiff(cur, want *modelsv1.DesiredLRP) (*modelsv1.DesiredLRPUpdate, []string) {
	u := &modelsv1.DesiredLRPUpdate{}
	changed := false
	if cur.GetInstances() != want.GetInstances() {
		u.Instances, changed = proto.Int32(want.GetInstances()), true
	}
	if !maps.Equal(cur.GetRoutes(), want.GetRoutes()) {
		u.Routes, u.SetRoutes, changed = want.GetRoutes(), true, true
	}
	if cur.GetAnnotation() != want.GetAnnotation() {
		u.Annotation, changed = proto.String(want.GetAnnotation()), true
	}
	if !maps.EqualFunc(cur.GetMetricTags(), want.GetMetricTags(), func(a, b *modelsv1.MetricTagValue) bool { return proto.Equal(a, b) }) {
		u.MetricTags, u.SetMetricTags, changed = want.GetMetricTags(), true, true
	}
	// Compare the rest with the updatable fields and what the BBS sets equalized.
	a, b := proto.Clone(cur).(*modelsv1.DesiredLRP), proto.Clone(want).(*modelsv1.DesiredLRP)
	for _, x := range []*modelsv1.DesiredLRP{a, b} {
		x.Instances, x.Routes, x.Annotation, x.MetricTags, x.ModificationTag = 0, nil, "", nil, nil
	}
	var fixed []string
	ar, br := a.ProtoReflect(), b.ProtoReflect()
	fields := ar.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if ar.Has(f) != br.Has(f) || (ar.Has(f) && !ar.Get(f).Equal(br.Get(f))) {
			fixed = append(fixed, string(f.Name()))
		}
	}
	if !changed {
		return nil, fixed
	}
	return u, fixed
}
