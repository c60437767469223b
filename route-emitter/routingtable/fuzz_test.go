package routingtable

import (
	"testing"
)

// Any cf-router document (it comes from a desired LRP's routes) parses to
// routes with a hostname each, or to an error naming the key; never a panic.
func FuzzParseRoutes(f *testing.F) {
	for _, seed := range []string{
		`[{"hostnames":["a.example.com","b.example.com"],"port":8080}]`,
		`[{"hostnames":[""],"port":8080,"route_service_url":"https://rs","isolation_segment":"iso","protocol":"http2"}]`,
		`[]`, `{}`, `null`, `[{"hostnames":null}]`, `[{"port":-1}]`, `"x"`, ``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		routes, err := ParseRoutes(map[string]string{CFRouterKey: doc})
		if err != nil {
			return
		}
		for _, r := range routes {
			if r.Hostname == "" {
				t.Fatalf("a route without a hostname from %q", doc)
			}
		}
	})
}
