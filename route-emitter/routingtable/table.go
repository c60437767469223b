package routingtable

import (
	"encoding/json"
	"sort"
	"strconv"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// Options shape the messages a table builds.
type Options struct {
	// DirectInstanceRoutes registers container addresses and ports instead
	// of the cell's, unless an instance prefers its host address.
	DirectInstanceRoutes bool
	// StaleThresholdSeconds is sent as stale_threshold_in_seconds; 0 omits it.
	StaleThresholdSeconds int
}

// RoutingKey is the table's key: a process and one of its container ports.
type RoutingKey struct {
	ProcessGUID   string
	ContainerPort uint32
}

// Table is the routing table; see the package doc.
type Table struct {
	opts  Options
	lrps  map[string]*lrp
	total int
}

// lrp is everything the table knows of one process guid, and the
// registrations it implies now.
type lrp struct {
	desired *Desired
	actuals map[EndpointKey]*Actual
	msgs    messageSet
}

// New returns an empty table.
func New(opts Options) *Table {
	return &Table{opts: opts, lrps: make(map[string]*lrp)}
}

// Build returns a table holding desired and the routable actuals, with no
// messages (the start of a sync). Stale and undesired instances are dropped
// by the same rules as the incremental updates.
func Build(opts Options, desired []Desired, actuals []Actual) *Table {
	t := &Table{opts: opts, lrps: make(map[string]*lrp, len(desired))}
	for i := range desired {
		t.setDesired(desired[i])
	}
	for i := range actuals {
		t.upsertActual(actuals[i])
	}
	for _, l := range t.lrps {
		l.msgs = t.messagesOf(l)
		t.total += len(l.msgs)
	}
	return t
}

// RouteCount is the number of registrations (route × endpoint pairs) the table implies.
func (t *Table) RouteCount() int { return t.total }

// HasDesired reports whether the table knows the desired LRP of guid.
func (t *Table) HasDesired(guid string) bool {
	l := t.lrps[guid]
	return l != nil && l.desired != nil
}

// SetDesired creates or updates a desired LRP. It is ignored unless its tag
// succeeds the stored one. Endpoints at or above the new instance count are
// dropped at once.
func (t *Table) SetDesired(d Desired) Messages {
	l, changed := t.setDesired(d)
	if !changed {
		return Messages{}
	}
	return t.refresh(d.ProcessGUID, l)
}

func (t *Table) setDesired(d Desired) (*lrp, bool) {
	l := t.lrpOf(d.ProcessGUID)
	if l.desired != nil && !l.desired.Tag.SucceededBy(d.Tag) {
		return l, false
	}
	l.desired = &d
	for k, a := range l.actuals {
		if a.Index >= d.Instances {
			delete(l.actuals, k)
		}
	}
	return l, true
}

// RemoveDesired forgets a desired LRP when tag is the stored tag or newer;
// every registration of it goes.
func (t *Table) RemoveDesired(guid string, tag Tag) Messages {
	l := t.lrps[guid]
	if l == nil || l.desired == nil || (l.desired.Tag != tag && !l.desired.Tag.SucceededBy(tag)) {
		return Messages{}
	}
	l.desired = nil
	return t.refresh(guid, l)
}

// UpsertActual adds or updates a running, routable instance. It is ignored
// when its tag does not succeed the stored endpoint's, or when its index is
// not desired.
func (t *Table) UpsertActual(a Actual) Messages {
	l, changed := t.upsertActual(a)
	if !changed {
		return Messages{}
	}
	return t.refresh(a.ProcessGUID, l)
}

func (t *Table) upsertActual(a Actual) (*lrp, bool) {
	l := t.lrps[a.ProcessGUID]
	if l != nil && l.desired != nil && a.Index >= l.desired.Instances {
		return l, false
	}
	if l == nil {
		l = t.lrpOf(a.ProcessGUID)
	}
	if old := l.actuals[a.Key()]; old != nil && !old.Tag.SucceededBy(a.Tag) {
		return l, false
	}
	l.actuals[a.Key()] = &a
	return l, true
}

// RemoveActual removes an endpoint when tag is its stored tag or newer.
func (t *Table) RemoveActual(guid string, key EndpointKey, tag Tag) Messages {
	l := t.lrps[guid]
	if l == nil {
		return Messages{}
	}
	old := l.actuals[key]
	if old == nil || (old.Tag != tag && !old.Tag.SucceededBy(tag)) {
		return Messages{}
	}
	delete(l.actuals, key)
	return t.refresh(guid, l)
}

// Registrations returns every registration the table implies, without
// EndpointUpdatedAtNs: the periodic re-broadcast.
func (t *Table) Registrations() []RegistryMessage {
	out := make([]RegistryMessage, 0, t.total)
	for _, l := range t.lrps {
		for _, m := range l.msgs {
			r := *m
			r.EndpointUpdatedAtNs = 0
			out = append(out, r)
		}
	}
	return out
}

// Diff returns the messages that move routers from what old announced to
// what cur announces: the swap at the end of a sync.
func Diff(old, cur *Table) Messages {
	var out Messages
	for guid, l := range old.lrps {
		var next messageSet
		if c := cur.lrps[guid]; c != nil {
			next = c.msgs
		}
		diff(l.msgs, next, &out)
	}
	for guid, c := range cur.lrps {
		if _, ok := old.lrps[guid]; !ok {
			diff(nil, c.msgs, &out)
		}
	}
	return out
}

// Entry is one routing key's routes and endpoints, for display.
type Entry struct {
	Key       RoutingKey
	Domain    string
	LogGUID   string
	Instances int32
	Routes    []Route
	Endpoints []Actual
}

// Entries lists the table by routing key, sorted by process guid and port;
// routes keep their desired order and endpoints are sorted by index.
func (t *Table) Entries() []Entry {
	var out []Entry
	for guid, l := range t.lrps {
		if l.desired == nil {
			continue
		}
		byPort := map[uint32]*Entry{}
		var ports []uint32
		for _, r := range l.desired.Routes {
			e := byPort[r.Port]
			if e == nil {
				e = &Entry{Key: RoutingKey{ProcessGUID: guid, ContainerPort: r.Port}, Domain: l.desired.Domain,
					LogGUID: l.desired.LogGUID, Instances: l.desired.Instances}
				byPort[r.Port] = e
				ports = append(ports, r.Port)
			}
			e.Routes = append(e.Routes, r)
		}
		for _, p := range ports {
			e := byPort[p]
			for _, a := range l.actuals {
				if hasPort(a, p) {
					e.Endpoints = append(e.Endpoints, *a)
				}
			}
			sort.Slice(e.Endpoints, func(i, j int) bool {
				x, y := e.Endpoints[i], e.Endpoints[j]
				if x.Index != y.Index {
					return x.Index < y.Index
				}
				return !x.Evacuating && y.Evacuating
			})
			out = append(out, *e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key.ProcessGUID != out[j].Key.ProcessGUID {
			return out[i].Key.ProcessGUID < out[j].Key.ProcessGUID
		}
		return out[i].Key.ContainerPort < out[j].Key.ContainerPort
	})
	return out
}

func hasPort(a *Actual, port uint32) bool {
	for _, p := range a.Ports {
		if p.GetContainerPort() == port {
			return true
		}
	}
	return false
}

func (t *Table) lrpOf(guid string) *lrp {
	l := t.lrps[guid]
	if l == nil {
		l = &lrp{actuals: make(map[EndpointKey]*Actual)}
		t.lrps[guid] = l
	}
	return l
}

// refresh recomputes l's registrations and returns the difference.
func (t *Table) refresh(guid string, l *lrp) Messages {
	next := t.messagesOf(l)
	var out Messages
	diff(l.msgs, next, &out)
	t.total += len(next) - len(l.msgs)
	l.msgs = next
	if l.desired == nil && len(l.actuals) == 0 {
		delete(t.lrps, guid)
	}
	return out
}

// messagesOf builds the registrations of one LRP: every desired route on
// every endpoint that maps the route's container port. An ordinary
// endpoint's message wins over an evacuating one at the same address.
func (t *Table) messagesOf(l *lrp) messageSet {
	d := l.desired
	if d == nil || len(d.Routes) == 0 || len(l.actuals) == 0 {
		return nil
	}
	set := make(messageSet, len(d.Routes)*len(l.actuals))
	for _, evacuating := range [2]bool{true, false} {
		for _, a := range l.actuals {
			if a.Evacuating != evacuating || a.Index >= d.Instances {
				continue
			}
			tags := t.tagsOf(d, a)
			index := strconv.Itoa(int(a.Index))
			for _, r := range d.Routes {
				host, port, tlsPort, ok := t.address(a, r.Port)
				if !ok {
					continue
				}
				m := &RegistryMessage{
					Host: host, Port: port, TLSPort: tlsPort, URIs: []string{r.Hostname},
					App: d.LogGUID, PrivateInstanceID: a.InstanceGUID, PrivateInstanceIndex: index,
					ServerCertDomainSAN: a.InstanceGUID, RouteServiceURL: r.RouteServiceURL, Tags: tags,
					IsolationSegment: r.IsolationSegment, AvailabilityZone: a.AvailabilityZone,
					EndpointUpdatedAtNs: a.Since, StaleThresholdInSeconds: t.opts.StaleThresholdSeconds,
					Protocol: r.Protocol,
				}
				if r.Options != "" {
					m.Options = json.RawMessage(r.Options)
				}
				set[m.Key()] = m
			}
		}
	}
	return set
}

// address picks the host, port and TLS port routers should use for a
// container port: the cell's mapping, or the container's own with
// direct-instance routing.
func (t *Table) address(a *Actual, containerPort uint32) (host string, port, tlsPort uint32, ok bool) {
	for _, p := range a.Ports {
		if p.GetContainerPort() != containerPort {
			continue
		}
		direct := a.Preferred == modelsv1.ActualLRPNetInfo_PREFERRED_ADDRESS_INSTANCE ||
			(t.opts.DirectInstanceRoutes && a.Preferred != modelsv1.ActualLRPNetInfo_PREFERRED_ADDRESS_HOST)
		if direct && a.InstanceAddress != "" {
			return a.InstanceAddress, p.GetContainerPort(), p.GetContainerTlsProxyPort(), true
		}
		return a.Address, p.GetHostPort(), p.GetHostTlsProxyPort(), true
	}
	return "", 0, 0, false
}

// tagsOf resolves the desired LRP's metric tags for one instance and adds
// component=route-emitter. Messages of one endpoint share the map; nobody
// writes to it after this.
func (t *Table) tagsOf(d *Desired, a *Actual) map[string]string {
	tags := make(map[string]string, len(d.MetricTags)+1)
	for k, v := range d.MetricTags {
		switch v.Dynamic {
		case modelsv1.MetricTagValue_DYNAMIC_VALUE_INDEX:
			tags[k] = strconv.Itoa(int(a.Index))
		case modelsv1.MetricTagValue_DYNAMIC_VALUE_INSTANCE_GUID:
			tags[k] = a.InstanceGUID
		default:
			tags[k] = v.Static
		}
	}
	tags["component"] = Component
	return tags
}
