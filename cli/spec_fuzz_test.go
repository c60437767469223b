package cli

import (
	"testing"

	"github.com/gavelhq/gavel/bbs/models"
	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Any spec file, JSON or YAML, loads into a desired LRP, an update or a task
// request within the BBS's bounds, or is refused naming the file; never a
// panic.
func FuzzParseSpec(f *testing.F) {
	for _, seed := range []struct {
		doc  string
		yaml bool
	}{
		{`{"process_guid":"web","domain":"d","root_fs":"preloaded:cflinuxfs4","instances":2,"action":{"run":{"path":"/bin/app"}}}`, false},
		{"process_guid: web\ndomain: d\ninstances: 1\naction:\n  run:\n    path: /x\n", true},
		{`{"instances": 4, "annotation": "v2", "routes": {"cf-router": "[]"}}`, false},
		{`{"task_guid":"t","domain":"d","definition":{"root_fs":"docker:///x","action":{"try":{"action":{"run":{"path":"/x"}}}}}}`, false},
		{`{"update_strategy": 99}`, false},
		{"a: [", true},
		{`{"process_guid": 3}`, false},
	} {
		for kind := uint8(0); kind < 3; kind++ {
			f.Add(kind, []byte(seed.doc), seed.yaml)
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, data []byte, yamlSpec bool) {
		switch kind % 3 {
		case 0:
			d := &modelsv1.DesiredLRP{}
			if parseSpec("spec", data, yamlSpec, d) == nil && models.CheckBounds(d) != nil {
				t.Fatal("accepted a desired LRP beyond the bounds")
			}
		case 1:
			u := &modelsv1.DesiredLRPUpdate{}
			if parseSpec("spec", data, yamlSpec, u) == nil && models.CheckBounds(u) != nil {
				t.Fatal("accepted an update beyond the bounds")
			}
		default:
			r := &bbsv1.DesireTaskRequest{}
			if parseSpec("spec", data, yamlSpec, r) == nil && models.CheckBounds(r) != nil {
				t.Fatal("accepted a task beyond the bounds")
			}
		}
	})
}
