package models

import (
	"maps"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// The clones below are deep copies of the actual LRP messages written out
// field by field: every claim, start and crash copies a row, and
// proto.Clone walks the message by reflection, allocating as it goes (about
// 3 % of the BBS's CPU during a large placement), and copies the fields a
// start then replaces or a crash clears (cloneWithoutInstance does not).
// They keep unknown fields, as proto.Clone does, so a row written by a newer
// BBS keeps what this one does not know. TestClonesCopyEveryField fails when a field is added to
// one of these messages and not here.

// rowBlock is a row with its key and modification tag, which every row has,
// allocated together. The instance's messages (instance key, net info) are
// allocated apart, only when the row has them: a cached row holds no room
// for messages it does not have.
type rowBlock struct {
	lrp modelsv1.ActualLRP
	key modelsv1.ActualLRPKey
	tag modelsv1.ModificationTag
}

// CloneActualLRP returns a deep copy of lrp (nil for nil).
func CloneActualLRP(lrp *modelsv1.ActualLRP) *modelsv1.ActualLRP {
	c := cloneWithoutInstance(lrp)
	if c == nil {
		return nil
	}
	c.InstanceKey = CloneInstanceKey(lrp.InstanceKey)
	c.NetInfo = CloneNetInfo(lrp.NetInfo)
	c.InternalRoutes = cloneRoutes(lrp.InternalRoutes)
	c.MetricTags = maps.Clone(lrp.MetricTags)
	c.AvailabilityZone = lrp.AvailabilityZone
	if lrp.Routable != nil {
		r := *lrp.Routable
		c.Routable = &r
	}
	return c
}

// cloneWithoutInstance returns a deep copy of lrp without the fields of its
// instance: instance key, net info, internal routes, metric tags, routable
// and availability zone (a start replaces them all; a crash and an unclaim
// clear them). nil for nil.
func cloneWithoutInstance(lrp *modelsv1.ActualLRP) *modelsv1.ActualLRP {
	if lrp == nil {
		return nil
	}
	b := &rowBlock{}
	c := &b.lrp
	c.CrashCount = lrp.CrashCount
	c.CrashReason = lrp.CrashReason
	c.State = lrp.State
	c.PlacementError = lrp.PlacementError
	c.Since = lrp.Since
	c.Presence = lrp.Presence
	if k := lrp.Key; k != nil {
		b.key.ProcessGuid, b.key.Index, b.key.Domain = k.ProcessGuid, k.Index, k.Domain
		c.Key = keepUnknown(&b.key, k)
	}
	if t := lrp.ModificationTag; t != nil {
		b.tag.Epoch, b.tag.Index = t.Epoch, t.Index
		c.ModificationTag = keepUnknown(&b.tag, t)
	}
	return keepUnknown(c, lrp)
}

// CloneActualLRPKey returns a copy of k (nil for nil).
func CloneActualLRPKey(k *modelsv1.ActualLRPKey) *modelsv1.ActualLRPKey {
	if k == nil {
		return nil
	}
	return keepUnknown(&modelsv1.ActualLRPKey{ProcessGuid: k.ProcessGuid, Index: k.Index, Domain: k.Domain}, k)
}

// CloneInstanceKey returns a copy of k (nil for nil).
func CloneInstanceKey(k *modelsv1.ActualLRPInstanceKey) *modelsv1.ActualLRPInstanceKey {
	if k == nil {
		return nil
	}
	return keepUnknown(&modelsv1.ActualLRPInstanceKey{InstanceGuid: k.InstanceGuid, CellId: k.CellId}, k)
}

// CloneNetInfo returns a deep copy of n (nil for nil). Its first port is
// allocated with it (an LRP instance usually has one); more get one array.
func CloneNetInfo(n *modelsv1.ActualLRPNetInfo) *modelsv1.ActualLRPNetInfo {
	if n == nil {
		return nil
	}
	b := &struct {
		net  modelsv1.ActualLRPNetInfo
		port modelsv1.PortMapping
	}{}
	c := &b.net
	c.Address = n.Address
	c.InstanceAddress = n.InstanceAddress
	c.PreferredAddress = n.PreferredAddress
	c.InstanceIpv6Address = n.InstanceIpv6Address
	if n.Ports != nil {
		ports := []modelsv1.PortMapping(nil)
		if len(n.Ports) > 1 {
			ports = make([]modelsv1.PortMapping, len(n.Ports))
		}
		c.Ports = make([]*modelsv1.PortMapping, len(n.Ports))
		for i, p := range n.Ports {
			if p == nil {
				continue
			}
			q := &b.port
			if ports != nil {
				q = &ports[i]
			}
			q.ContainerPort, q.HostPort = p.ContainerPort, p.HostPort
			q.ContainerTlsProxyPort, q.HostTlsProxyPort = p.ContainerTlsProxyPort, p.HostTlsProxyPort
			c.Ports[i] = keepUnknown(q, p)
		}
	}
	return keepUnknown(c, n)
}

func cloneRoutes(rs []*modelsv1.ActualLRPInternalRoute) []*modelsv1.ActualLRPInternalRoute {
	if rs == nil {
		return nil
	}
	out := make([]*modelsv1.ActualLRPInternalRoute, len(rs))
	for i, r := range rs {
		if r != nil {
			out[i] = keepUnknown(&modelsv1.ActualLRPInternalRoute{Hostname: r.Hostname}, r)
		}
	}
	return out
}

// keepUnknown copies src's unknown fields, if any, to dst and returns dst.
func keepUnknown[M proto.Message](dst, src M) M {
	if u := src.ProtoReflect().GetUnknown(); len(u) > 0 {
		dst.ProtoReflect().SetUnknown(append(protoreflect.RawFields(nil), u...))
	}
	return dst
}
