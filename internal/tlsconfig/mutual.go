package tlsconfig

import (
	"fmt"
	"strings"
)

// InsecurePlaintextField is the JSON name of the opt-out every daemon config
// carries: true serves and dials gRPC in plaintext, for development only.
const InsecurePlaintextField = "insecure_plaintext"

// Role says what a daemon does with a set of files.
type Role int

const (
	// Server files serve the daemon's gRPC API; their CA makes client
	// certificates mandatory.
	Server Role = iota
	// Client files dial another component: the certificate is presented and
	// the server is verified against the CA.
	Client
)

// Hop is one set of TLS files a daemon needs for mutual TLS, named by its
// config field (e.g. "tls", "bbs_tls").
type Hop struct {
	// Field is the files' JSON path in the daemon's config.
	Field string
	// Files are the configured files.
	Files Files
	// Role says whether the daemon serves or dials with them.
	Role Role
}

// CheckMutual applies Gavel's rule for gRPC between components: mutual TLS
// on every hop, unless insecurePlaintext opts out, in which case no hop may
// name files (that would be contradictory). Without the opt-out every hop
// needs ca_file, cert_file and key_file, and the files must load. It
// returns one error per problem, each naming the field and the rule, or
// nil. It reads the files but keeps nothing.
func CheckMutual(insecurePlaintext bool, hops ...Hop) []error {
	var errs []error
	for _, h := range hops {
		if insecurePlaintext {
			if set := h.Files.setFields(h.Field); len(set) > 0 {
				errs = append(errs, fmt.Errorf("%s, %s: contradictory: %s turns TLS off but %s %s set (remove one)",
					InsecurePlaintextField, strings.Join(set, ", "), InsecurePlaintextField, strings.Join(set, ", "), isOrAre(len(set))))
			}
			continue
		}
		missing := false
		for _, f := range []struct{ name, value string }{
			{"ca_file", h.Files.CAFile}, {"cert_file", h.Files.CertFile}, {"key_file", h.Files.KeyFile},
		} {
			if f.value == "" {
				missing = true
				errs = append(errs, fmt.Errorf("%s.%s: required: mTLS is on by default (set %s: true to run without TLS)",
					h.Field, f.name, InsecurePlaintextField))
			}
		}
		if missing {
			continue
		}
		var err error
		if h.Role == Server {
			_, err = h.Files.Server()
		} else {
			_, err = h.Files.Client("")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Field, err))
		}
	}
	return errs
}

// setFields names the files set, as field.ca_file and so on.
func (f Files) setFields(field string) []string {
	var set []string
	for _, s := range []struct{ name, value string }{
		{"ca_file", f.CAFile}, {"cert_file", f.CertFile}, {"key_file", f.KeyFile},
	} {
		if s.value != "" {
			set = append(set, field+"."+s.name)
		}
	}
	return set
}

func isOrAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
