package routingtable

import (
	"bytes"
	"encoding/json"
	"maps"
)

// Component is the value of the "component" tag on every registration.
const Component = "route-emitter"

// RegistryMessage is the payload of gorouter's router.register and
// router.unregister subjects, field for field as gorouter decodes it (and as
// Diego's route emitter encodes it). URIs always holds exactly one hostname.
type RegistryMessage struct {
	// Host is the backend IP: the cell's address, or the container's with direct-instance routing.
	Host string `json:"host"`
	// Port is the plaintext backend port.
	Port uint32 `json:"port"`
	// TLSPort is the backend's TLS proxy port; gorouter prefers it over Port when set.
	TLSPort uint32 `json:"tls_port,omitempty"`
	// URIs is the route: one hostname with an optional path.
	URIs []string `json:"uris"`
	// App is the desired LRP's log guid (the app guid).
	App string `json:"app,omitempty"`
	// PrivateInstanceID is the instance guid.
	PrivateInstanceID string `json:"private_instance_id,omitempty"`
	// PrivateInstanceIndex is the instance index in decimal.
	PrivateInstanceIndex string `json:"private_instance_index,omitempty"`
	// ServerCertDomainSAN is the SAN the backend's certificate must hold: the instance guid.
	ServerCertDomainSAN string `json:"server_cert_domain_san,omitempty"`
	// RouteServiceURL is the route service the router sends requests through.
	RouteServiceURL string `json:"route_service_url,omitempty"`
	// Tags are the desired LRP's metric tags plus component=route-emitter.
	Tags map[string]string `json:"tags,omitempty"`
	// IsolationSegment restricts the route to routers of that segment.
	IsolationSegment string `json:"isolation_segment,omitempty"`
	// AvailabilityZone is the instance's zone.
	AvailabilityZone string `json:"availability_zone,omitempty"`
	// EndpointUpdatedAtNs is when the instance became RUNNING (Unix ns), set
	// only on the registration that first announces the endpoint.
	EndpointUpdatedAtNs int64 `json:"endpoint_updated_at_ns,omitempty"`
	// StaleThresholdInSeconds is the route's TTL in the router; 0 leaves the router's default.
	StaleThresholdInSeconds int `json:"stale_threshold_in_seconds,omitempty"`
	// Protocol is http1 or http2; empty means http1.
	Protocol string `json:"protocol,omitempty"`
	// Options are the route's router options (lb_algo, hash_header), as desired.
	Options json.RawMessage `json:"options,omitempty"`
}

// MessageKey is gorouter's identity of a registration: the URI and the
// backend address. Registering a key again updates it in place.
type MessageKey struct {
	URI     string
	Host    string
	Port    uint32
	TLSPort uint32
}

// Key returns m's identity.
func (m *RegistryMessage) Key() MessageKey {
	var uri string
	if len(m.URIs) > 0 {
		uri = m.URIs[0]
	}
	return MessageKey{URI: uri, Host: m.Host, Port: m.Port, TLSPort: m.TLSPort}
}

// sameContent reports whether a and b announce the same thing, ignoring
// EndpointUpdatedAtNs (a latency hint, not content).
func sameContent(a, b *RegistryMessage) bool {
	return a.Host == b.Host && a.Port == b.Port && a.TLSPort == b.TLSPort &&
		len(a.URIs) == len(b.URIs) && (len(a.URIs) == 0 || a.URIs[0] == b.URIs[0]) &&
		a.App == b.App && a.PrivateInstanceID == b.PrivateInstanceID &&
		a.PrivateInstanceIndex == b.PrivateInstanceIndex && a.ServerCertDomainSAN == b.ServerCertDomainSAN &&
		a.RouteServiceURL == b.RouteServiceURL && a.IsolationSegment == b.IsolationSegment &&
		a.AvailabilityZone == b.AvailabilityZone && a.StaleThresholdInSeconds == b.StaleThresholdInSeconds &&
		a.Protocol == b.Protocol && bytes.Equal(a.Options, b.Options) && maps.Equal(a.Tags, b.Tags)
}

// Messages are what a table change asks the emitter to send.
type Messages struct {
	// Registrations go to router.register.
	Registrations []RegistryMessage
	// Unregistrations go to router.unregister.
	Unregistrations []RegistryMessage
}

// Empty reports whether there is nothing to send.
func (m Messages) Empty() bool { return len(m.Registrations) == 0 && len(m.Unregistrations) == 0 }

// Merge appends o's messages to m's.
func (m *Messages) Merge(o Messages) {
	m.Registrations = append(m.Registrations, o.Registrations...)
	m.Unregistrations = append(m.Unregistrations, o.Unregistrations...)
}

// Net combines the messages of consecutive changes (one revision's events,
// in order; within one step, unregistrations come before registrations, as
// an event that moves an endpoint produces them) into the messages of the
// whole: per key, an unregister followed
// by a register of the same content cancel out (the endpoint never left),
// one followed by a register of other content is an update in place (the
// register alone, without endpoint_updated_at_ns), and otherwise the last
// message stands (a register keeps the first register's update time).
func Net(steps ...Messages) Messages {
	type netted struct {
		firstUnreg *RegistryMessage
		firstReg   *RegistryMessage
		last       *RegistryMessage
		lastReg    bool
	}
	var order []MessageKey
	byKey := map[MessageKey]*netted{}
	note := func(m RegistryMessage, reg bool) {
		k := m.Key()
		n := byKey[k]
		if n == nil {
			n = &netted{}
			byKey[k] = n
			order = append(order, k)
			if !reg {
				n.firstUnreg = &m
			}
		}
		if reg && n.firstReg == nil {
			n.firstReg = &m
		}
		n.last, n.lastReg = &m, reg
	}
	for _, s := range steps {
		for _, m := range s.Unregistrations {
			note(m, false)
		}
		for _, m := range s.Registrations {
			note(m, true)
		}
	}
	var out Messages
	for _, k := range order {
		n := byKey[k]
		switch {
		case !n.lastReg:
			out.Unregistrations = append(out.Unregistrations, *n.last)
		case n.firstUnreg != nil && sameContent(n.firstUnreg, n.last):
			// Unregistered and registered again unchanged: nothing to say.
		case n.firstUnreg != nil:
			r := *n.last
			r.EndpointUpdatedAtNs = 0
			out.Registrations = append(out.Registrations, r)
		default:
			r := *n.last
			r.EndpointUpdatedAtNs = n.firstReg.EndpointUpdatedAtNs
			out.Registrations = append(out.Registrations, r)
		}
	}
	return out
}

// messageSet is the registrations one LRP implies, by identity.
type messageSet map[MessageKey]*RegistryMessage

// diff appends to out the messages that turn old into cur: unregisters for
// keys gone, registers for keys new (with EndpointUpdatedAtNs) or changed
// (without it).
func diff(old, cur messageSet, out *Messages) {
	for k, m := range old {
		if _, ok := cur[k]; !ok {
			u := *m
			u.EndpointUpdatedAtNs = 0
			out.Unregistrations = append(out.Unregistrations, u)
		}
	}
	for k, m := range cur {
		o, ok := old[k]
		switch {
		case !ok:
			out.Registrations = append(out.Registrations, *m)
		case !sameContent(o, m):
			r := *m
			r.EndpointUpdatedAtNs = 0
			out.Registrations = append(out.Registrations, r)
		}
	}
}
