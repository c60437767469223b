package routingtable

import (
	"encoding/json"
	"fmt"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// CFRouterKey is the key of a desired LRP's routes map that holds its HTTP routes.
const CFRouterKey = "cf-router"

// Tag is a modification tag: a record's epoch and its change counter.
type Tag struct {
	Epoch string
	Index uint32
}

// TagOf converts a proto modification tag (nil gives the zero Tag).
func TagOf(t *modelsv1.ModificationTag) Tag {
	return Tag{Epoch: t.GetEpoch(), Index: t.GetIndex()}
}

// SucceededBy reports whether other is newer than t, as Diego orders tags: a
// missing epoch on either side or a different epoch counts as newer (the
// record was recreated); within an epoch the higher index is newer.
func (t Tag) SucceededBy(other Tag) bool {
	if t.Epoch == "" || other.Epoch == "" || t.Epoch != other.Epoch {
		return true
	}
	return t.Index < other.Index
}

// Route is one hostname desired on a container port.
type Route struct {
	Hostname         string
	Port             uint32
	RouteServiceURL  string
	IsolationSegment string
	Protocol         string
	// Options is the route's options object as raw JSON (gorouter reads
	// lb_algo and hash_header there); "" for none.
	Options string
}

// CFRoute is one entry of the cf-router JSON list: hostnames served on a container port.
type CFRoute struct {
	Hostnames        []string `json:"hostnames"`
	Port             uint32   `json:"port"`
	RouteServiceURL  string   `json:"route_service_url,omitempty"`
	IsolationSegment string   `json:"isolation_segment,omitempty"`
	Protocol         string   `json:"protocol,omitempty"`
	// Options are per-route router options such as {"lb_algo": "least-connection"}.
	Options json.RawMessage `json:"options,omitempty"`
}

// ParseRoutes reads the cf-router entry of a desired LRP's routes map. A
// missing key is no routes; a document that is not a cf-router list is an error.
func ParseRoutes(routes map[string]string) ([]Route, error) {
	doc, ok := routes[CFRouterKey]
	if !ok || doc == "" {
		return nil, nil
	}
	var entries []CFRoute
	if err := json.Unmarshal([]byte(doc), &entries); err != nil {
		return nil, fmt.Errorf("routes[%q]: %w", CFRouterKey, err)
	}
	var out []Route
	for _, e := range entries {
		for _, h := range e.Hostnames {
			if h == "" {
				continue
			}
			out = append(out, Route{
				Hostname: h, Port: e.Port, RouteServiceURL: e.RouteServiceURL,
				IsolationSegment: e.IsolationSegment, Protocol: e.Protocol, Options: string(e.Options),
			})
		}
	}
	return out, nil
}

// MarshalRoutes encodes routes as a cf-router document, one entry per
// hostname (handy for tests and tools).
func MarshalRoutes(routes ...Route) string {
	entries := make([]CFRoute, 0, len(routes))
	for _, r := range routes {
		entries = append(entries, CFRoute{
			Hostnames: []string{r.Hostname}, Port: r.Port, RouteServiceURL: r.RouteServiceURL,
			IsolationSegment: r.IsolationSegment, Protocol: r.Protocol, Options: json.RawMessage(r.Options),
		})
	}
	b, _ := json.Marshal(entries) // plain structs: cannot fail
	return string(b)
}

// MetricTag is a static tag value, or a value resolved per instance.
type MetricTag struct {
	Static  string
	Dynamic modelsv1.MetricTagValue_DynamicValue
}

// Desired is what the table keeps of a desired LRP.
type Desired struct {
	ProcessGUID string
	Domain      string
	LogGUID     string
	Instances   int32
	Routes      []Route
	MetricTags  map[string]MetricTag
	Tag         Tag
}

func desiredFrom(key *modelsv1.DesiredLRPKey, instances int32, routes map[string]string, tags map[string]*modelsv1.MetricTagValue, tag *modelsv1.ModificationTag) (Desired, error) {
	d := Desired{
		ProcessGUID: key.GetProcessGuid(), Domain: key.GetDomain(), LogGUID: key.GetLogGuid(),
		Instances: instances, Tag: TagOf(tag),
	}
	if len(tags) > 0 {
		d.MetricTags = make(map[string]MetricTag, len(tags))
		for k, v := range tags {
			d.MetricTags[k] = MetricTag{Static: v.GetStatic(), Dynamic: v.GetDynamic()}
		}
	}
	r, err := ParseRoutes(routes)
	if err != nil {
		return d, fmt.Errorf("desired LRP %s: %w", d.ProcessGUID, err)
	}
	d.Routes = r
	return d, nil
}

// DesiredFromRoutingInfo converts a BBS routing info. A malformed cf-router
// document is an error, returned with the rest of the record converted (no routes).
func DesiredFromRoutingInfo(ri *modelsv1.DesiredLRPRoutingInfo) (Desired, error) {
	return desiredFrom(ri.GetKey(), ri.GetInstances(), ri.GetRoutes(), ri.GetMetricTags(), ri.GetModificationTag())
}

// DesiredFromSchedulingInfo converts the scheduling info that desired LRP events carry.
func DesiredFromSchedulingInfo(si *modelsv1.DesiredLRPSchedulingInfo) (Desired, error) {
	return desiredFrom(si.GetKey(), si.GetInstances(), si.GetRoutes(), si.GetMetricTags(), si.GetModificationTag())
}

// EndpointKey identifies an endpoint within an LRP: an evacuating instance
// and its replacement (or the same instance while it turns evacuating) are
// distinct endpoints.
type EndpointKey struct {
	InstanceGUID string
	Evacuating   bool
}

// Actual is what the table keeps of a running, routable instance.
type Actual struct {
	ProcessGUID      string
	Index            int32
	InstanceGUID     string
	Evacuating       bool
	Address          string
	InstanceAddress  string
	Preferred        modelsv1.ActualLRPNetInfo_PreferredAddress
	Ports            []*modelsv1.PortMapping
	Since            int64
	AvailabilityZone string
	Tag              Tag
}

// Key returns a's endpoint key.
func (a *Actual) Key() EndpointKey {
	return EndpointKey{InstanceGUID: a.InstanceGUID, Evacuating: a.Evacuating}
}

// ActualFrom converts a BBS actual LRP. routable is true only for a RUNNING
// instance whose routable flag is unset or true, and that is not SUSPECT
// with no address; only those belong in the table.
func ActualFrom(lrp *modelsv1.ActualLRP) (a Actual, routable bool) {
	ni := lrp.GetNetInfo()
	a = Actual{
		ProcessGUID:      lrp.GetKey().GetProcessGuid(),
		Index:            lrp.GetKey().GetIndex(),
		InstanceGUID:     lrp.GetInstanceKey().GetInstanceGuid(),
		Evacuating:       lrp.GetPresence() == modelsv1.ActualLRPPresence_ACTUAL_LRP_PRESENCE_EVACUATING,
		Address:          ni.GetAddress(),
		InstanceAddress:  ni.GetInstanceAddress(),
		Preferred:        ni.GetPreferredAddress(),
		Ports:            ni.GetPorts(),
		Since:            lrp.GetSince(),
		AvailabilityZone: lrp.GetAvailabilityZone(),
		Tag:              TagOf(lrp.GetModificationTag()),
	}
	routable = lrp.GetState() == modelsv1.ActualLRPState_ACTUAL_LRP_STATE_RUNNING &&
		(lrp.Routable == nil || *lrp.Routable) && a.InstanceGUID != ""
	return a, routable
}
