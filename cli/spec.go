package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/gavelhq/gavel/bbs/models"
)

var protojsonDetail = regexp.MustCompile(`^proto:\s*(\(line \d+:\d+\):)?\s*`)

// maxSpecBytes bounds a spec file: the BBS's default max_request_bytes.
const maxSpecBytes = 4 << 20

// loadSpec reads a JSON or YAML file (by extension; YAML when it is not JSON)
// into m with the proto field names, refusing unknown fields, a file above
// 4 MiB and anything beyond the BBS's bounds (bbs/models.CheckBounds). Errors
// name the file, the field and the reason.
func loadSpec(path string, m proto.Message) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSpecBytes+1))
	if err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	if len(data) > maxSpecBytes {
		return fmt.Errorf("%s: a spec must be at most %d bytes (the BBS's default max_request_bytes)", path, maxSpecBytes)
	}
	ext := strings.ToLower(filepath.Ext(path))
	return parseSpec(path, data, ext == ".yaml" || ext == ".yml", m)
}

// parseSpec decodes a spec's bytes (YAML when yamlSpec) into m; see loadSpec.
func parseSpec(path string, data []byte, yamlSpec bool, m proto.Message) error {
	var err error
	if yamlSpec {
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
	if err := models.CheckBounds(m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
