package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

var protojsonDetail = regexp.MustCompile(`^proto:\s*(\(line \d+:\d+\):)?\s*`)

// loadSpec reads a JSON or YAML file (by extension; YAML when it is not JSON)
// into m with the proto field names, refusing unknown fields. Errors name the
// file, the field and the reason.
func loadSpec(path string, m proto.Message) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	ext := strings.ToLower(filepath.Ext(path))
	if ext == ".yaml" || ext == ".yml" {
		if data, err = yaml.YAMLToJSON(data); err != nil {
			return fmt.Errorf("%s: not valid YAML: %w", path, err)
		}
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(data, m); err != nil {
		msg := err.Error()
		loc := protojsonDetail.FindStringSubmatch(msg)
		msg = protojsonDetail.ReplaceAllString(msg, "")
		if len(loc) > 1 && loc[1] != "" {
			msg += " " + strings.TrimSuffix(loc[1], ":")
		}
		return fmt.Errorf("%s: %s", path, msg)
	}
	return nil
}
