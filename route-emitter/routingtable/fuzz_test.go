package routingtable

import (
	"bytes"
	"encoding/json"
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

// A router.register / router.unregister message, as any NATS peer may
// publish it, decodes or is refused without a panic, and what decodes
// re-encodes to a fixed point.
func FuzzRegistryMessage(f *testing.F) {
	f.Add([]byte(`{"host":"10.0.0.1","port":61001,"tls_port":61002,"uris":["a.example.com/path"],"app":"log","private_instance_id":"ig","private_instance_index":"0","server_cert_domain_san":"ig","route_service_url":"https://rs","tags":{"component":"route-emitter"},"isolation_segment":"iso","availability_zone":"z1","endpoint_updated_at_ns":1}`))
	f.Add([]byte(`{"uris":null,"tags":{}}`))
	f.Add([]byte(`{"port":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m RegistryMessage
		if json.Unmarshal(data, &m) != nil {
			return
		}
		first, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("decoded %q but does not encode: %v", data, err)
		}
		var again RegistryMessage
		if err := json.Unmarshal(first, &again); err != nil {
			t.Fatalf("its own encoding %q does not decode: %v", first, err)
		}
		second, _ := json.Marshal(again)
		if !bytes.Equal(first, second) {
			t.Fatalf("encoding not stable:\n%s\n%s", first, second)
		}
		_ = again.Key()
	})
}
