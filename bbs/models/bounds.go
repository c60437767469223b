package models

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Bounds on everything a client sends. Each is checked before the request
// is stored or anything grows with it, and a request beyond one is refused
// InvalidArgument naming the field and the bound. The BBS's gRPC server
// refuses a message above its max_request_bytes (default 4 MiB) with
// ResourceExhausted before it is decoded.
const (
	// DefaultMaxInstances is the default bound on a desired LRP's instance
	// count (the BBS's max_desired_instances).
	DefaultMaxInstances = 10_000
	// MaxGUIDBytes bounds a process, task, instance or log guid.
	MaxGUIDBytes = 256
	// MaxNameBytes bounds a domain, a cell id, a zone, a log source, a user,
	// an environment variable's name and any map key (router names, metric
	// tag names).
	MaxNameBytes = 256
	// MaxTagBytes bounds a placement tag and a volume driver name.
	MaxTagBytes = 256
	// MaxURLBytes bounds a URL, a path and an address (root_fs, download
	// from, completion callback, run path).
	MaxURLBytes = 4096
	// MaxStringBytes bounds every other string but the few whose total is
	// bounded instead (environment values, file contents, route documents,
	// annotations, task results): 64 KiB.
	MaxStringBytes = 64 << 10
	// MaxRecordBytes bounds the encoded size of one stored record as
	// sent: a desired LRP, a task definition, an instance's start report.
	MaxRecordBytes = 1 << 20
	// MaxListItems bounds every list and map without a bound of its own
	// (batch items, list filters, args, destinations).
	MaxListItems = 10_000
	// MaxEvacuationBatch bounds the reports of one BatchEvacuateActualLRPs call.
	MaxEvacuationBatch = 1024
	// MaxEnvVars bounds the environment variables of one list.
	MaxEnvVars = 1024
	// MaxSmallList bounds placement tags, ports, routes (router names),
	// metric tags, checks and volume mounts.
	MaxSmallList = 64
	// MaxSidecars bounds a desired LRP's sidecars.
	MaxSidecars = 16
	// MaxDependencies bounds cached dependencies, image layers and mounted files.
	MaxDependencies = 256
	// MaxEgressRules bounds the egress rules of an LRP or task.
	MaxEgressRules = 4096
	// MaxActionDepth bounds the nesting of an action tree (a run action
	// alone is depth 1).
	MaxActionDepth = 32
	// MaxActionNodes bounds the actions of one tree.
	MaxActionNodes = 1024
	// maxNesting bounds how deep CheckBounds walks nested messages; an action
	// tree within MaxActionDepth stays well within it.
	maxNesting = 4*MaxActionDepth + 16
)

// stringBounds are the string fields with a bound of their own, by proto
// field name; 0 means bounded only by the record size. Others get
// MaxStringBytes.
var stringBounds = map[protoreflect.Name]int{
	"process_guid": MaxGUIDBytes, "task_guid": MaxGUIDBytes, "instance_guid": MaxGUIDBytes, "log_guid": MaxGUIDBytes,
	"metrics_guid": MaxGUIDBytes, "volume_id": MaxGUIDBytes, "desired_epoch": MaxGUIDBytes,
	"domain": MaxNameBytes, "cell_id": MaxNameBytes, "zone": MaxNameBytes, "availability_zone": MaxNameBytes,
	"log_source": MaxNameBytes, "user": MaxNameBytes, "name": MaxNameBytes, "driver": MaxNameBytes,
	"placement_tags": MaxTagBytes, "optional_placement_tags": MaxTagBytes, "volume_drivers": MaxTagBytes,
	"driver_names": MaxTagBytes,
	"root_fs":      MaxURLBytes, "rootfs": MaxURLBytes, "from": MaxURLBytes, "to": MaxURLBytes, "url": MaxURLBytes,
	"path": MaxURLBytes, "dir": MaxURLBytes, "container_dir": MaxURLBytes, "destination_path": MaxURLBytes,
	"completion_callback_url": MaxURLBytes, "address": MaxURLBytes, "instance_address": MaxURLBytes,
	"host": MaxURLBytes,
	// Bounded by their totals (checkEnv, checkFiles, checkRoutes,
	// checkAnnotation, the task result) and the record size.
	"value": 0, "content": 0, "annotation": MaxAnnotationBytes, "result": MaxTaskResultBytes,
}

// listBounds are the list and map fields with a bound of their own, by proto
// field name; others get MaxListItems.
var listBounds = map[protoreflect.Name]int{
	"environment_variables": MaxEnvVars, "env": MaxEnvVars,
	"placement_tags": MaxSmallList, "optional_placement_tags": MaxSmallList, "ports": MaxSmallList,
	"routes": MaxSmallList, "metric_tags": MaxSmallList, "checks": MaxSmallList, "readiness_checks": MaxSmallList,
	"volume_mounts": MaxSmallList, "internal_routes": MaxSmallList, "kinds": MaxSmallList,
	"sidecars":            MaxSidecars,
	"cached_dependencies": MaxDependencies, "image_layers": MaxDependencies, "volume_mounted_files": MaxDependencies,
	"egress_rules": MaxEgressRules,
	"actions":      MaxActionNodes,
}

// recordTypes are the messages stored as (part of) one record, whose
// encoded size is bounded by MaxRecordBytes.
var recordTypes = map[protoreflect.FullName]bool{
	"gavel.models.v1.DesiredLRP":                   true,
	"gavel.models.v1.DesiredLRPUpdate":             true,
	"gavel.models.v1.TaskDefinition":               true,
	"gavel.bbs.v1.StartActualLRPRequest":           true,
	"gavel.bbs.v1.EvacuateRunningActualLRPRequest": true,
	"gavel.bbs.v1.CompleteTaskRequest":             true,
}

// CheckBounds checks every field of a request against the bounds above:
// string lengths, list and map sizes (and map key lengths), enum values
// (a value the enum does not define is refused), the encoded size of
// records and the nesting of messages. It returns a *ValidationError naming
// each field and bound, or nil. It reads only what the bounds allow, so it
// is safe on any decoded message.
func CheckBounds(m proto.Message) error {
	v := &ValidationError{}
	if m != nil {
		w := boundsWalk{v: v, request: true}
		w.message(m.ProtoReflect(), 0)
	}
	return v.Err()
}

// checkFieldBounds applies CheckBounds' rules to a record the Validate
// functions check, named root in the errors ("desired_lrp.env[2].name");
// its own encoded size is left to the caller, after its other rules.
func checkFieldBounds(v *ValidationError, root string, m protoreflect.Message) {
	w := boundsWalk{v: v, root: root}
	w.message(m, 0)
}

// maxBoundErrors caps the errors one request reports.
const maxBoundErrors = 20

// boundsWalk walks one message for CheckBounds. The path to the value being
// checked is a stack of steps, spelled out ("desired_lrp.env[2].name",
// `routes["cf-router"]`) only for an error, so a request within its bounds
// costs no formatting and no allocation per field.
type boundsWalk struct {
	v *ValidationError
	// root is the path's first name ("desired_lrp"), empty for a request.
	root string
	// request: the walk started at a whole request, whose own encoded size
	// is bounded here when it is a record type.
	request bool
	path    []pathStep
	buf     [16]pathStep
}

type stepKind uint8

const (
	stepField stepKind = iota
	stepIndex
	stepKey
)

// pathStep is one step of a field path: a field, a list index or a map key.
type pathStep struct {
	kind  stepKind
	name  protoreflect.Name
	index int
	key   string
}

func (w *boundsWalk) push(s pathStep) {
	if w.path == nil {
		w.path = w.buf[:0]
	}
	w.path = append(w.path, s)
}

func (w *boundsWalk) pop() { w.path = w.path[:len(w.path)-1] }

// where spells out the current path.
func (w *boundsWalk) where() string {
	var b strings.Builder
	b.WriteString(w.root)
	for _, s := range w.path {
		switch s.kind {
		case stepIndex:
			fmt.Fprintf(&b, "[%d]", s.index)
		case stepKey:
			fmt.Fprintf(&b, "[%q]", s.key)
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(string(s.name))
		}
	}
	return b.String()
}

func (w *boundsWalk) message(m protoreflect.Message, depth int) {
	v := w.v
	if len(v.Errors) >= maxBoundErrors {
		return
	}
	if depth > maxNesting {
		v.Add(w.where(), "nests messages deeper than %d levels", maxNesting)
		return
	}
	before := len(v.Errors)
	// The fields by their descriptors rather than m.Range: no closure per
	// message.
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len() && len(v.Errors) < maxBoundErrors; i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		w.push(pathStep{kind: stepField, name: fd.Name()})
		w.field(fd, m.Get(fd), depth)
		w.pop()
	}
	// A record's size, once its fields are within their bounds (so a part
	// too large is named first): here for a nested record or a request that
	// is one; the Validate functions check their root record after their
	// own rules.
	if len(v.Errors) == before && (depth > 0 || w.request) {
		// The path is spelled out only for a record too large.
		if n, over := recordOversize(m); over {
			addOversize(v, w.where(), m, n)
		}
	}
}

func (w *boundsWalk) field(fd protoreflect.FieldDescriptor, val protoreflect.Value, depth int) {
	v := w.v
	switch {
	case fd.IsList():
		l := val.List()
		if max := listBound(fd.Name()); l.Len() > max {
			v.Add(w.where(), "must hold at most %d items (got %d)", max, l.Len())
			return
		}
		for i := 0; i < l.Len(); i++ {
			w.push(pathStep{kind: stepIndex, index: i})
			w.value(fd, l.Get(i), depth)
			w.pop()
		}
	case fd.IsMap():
		mp := val.Map()
		if max := listBound(fd.Name()); mp.Len() > max {
			v.Add(w.where(), "must hold at most %d entries (got %d)", max, mp.Len())
			return
		}
		mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			key := k.String()
			if len(key) > MaxNameBytes {
				v.Add(w.where(), "keys must be at most %d bytes (got one of %d)", MaxNameBytes, len(key))
				return false
			}
			w.push(pathStep{kind: stepKey, key: key})
			w.value(fd.MapValue(), mv, depth)
			w.pop()
			return len(v.Errors) < maxBoundErrors
		})
	default:
		w.value(fd, val, depth)
	}
}

// value checks one value (a singular field, a list item or a map value).
func (w *boundsWalk) value(fd protoreflect.FieldDescriptor, val protoreflect.Value, depth int) {
	v := w.v
	switch fd.Kind() {
	case protoreflect.StringKind:
		if max := stringBound(fd); max > 0 && len(val.String()) > max {
			v.Add(w.where(), "must be at most %d bytes (got %d)", max, len(val.String()))
		}
	case protoreflect.BytesKind:
		if max := stringBound(fd); max > 0 && len(val.Bytes()) > max {
			v.Add(w.where(), "must be at most %d bytes (got %d)", max, len(val.Bytes()))
		}
	case protoreflect.EnumKind:
		if fd.Enum().Values().ByNumber(val.Enum()) == nil {
			v.Add(w.where(), "unknown %s value %d", fd.Enum().Name(), val.Enum())
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		w.message(val.Message(), depth+1)
	}
}

// recordOversize is m's encoded size, and whether m is a record type
// beyond MaxRecordBytes.
func recordOversize(m protoreflect.Message) (int, bool) {
	if !recordTypes[m.Descriptor().FullName()] {
		return 0, false
	}
	n := proto.Size(m.Interface())
	return n, n > MaxRecordBytes
}

// checkRecordSize bounds the encoded size of a record type, naming it field
// (or its message name when field is empty); false when it is beyond
// MaxRecordBytes.
func checkRecordSize(v *ValidationError, field string, m protoreflect.Message) bool {
	n, over := recordOversize(m)
	if over {
		addOversize(v, field, m, n)
	}
	return !over
}

// addOversize reports record m, of n bytes encoded, as beyond MaxRecordBytes.
func addOversize(v *ValidationError, field string, m protoreflect.Message, n int) {
	if field == "" {
		field = string(m.Descriptor().Name())
	}
	v.Add(field, "must be at most %d bytes encoded (got %d)", MaxRecordBytes, n)
}

func stringBound(fd protoreflect.FieldDescriptor) int {
	if cm := fd.ContainingMessage(); cm != nil && cm.IsMapEntry() {
		// A map's value: a route document (whose total is MaxRoutesBytes,
		// checkRoutes) or a metric tag; bounded by the record.
		return 0
	}
	if max, ok := stringBounds[fd.Name()]; ok {
		return max
	}
	return MaxStringBytes
}

func listBound(name protoreflect.Name) int {
	if max, ok := listBounds[name]; ok {
		return max
	}
	return MaxListItems
}

// checkEnvName applies the rules of an environment variable's name: not
// empty, at most MaxNameBytes, no "=" and no NUL (the kernel's environment
// format would split or cut it, so the process would crash-loop).
func checkEnvName(v *ValidationError, field, name string) {
	switch {
	case name == "":
		v.Add(field, "is required")
	case len(name) > MaxNameBytes:
		v.Add(field, "must be at most %d bytes (got %d)", MaxNameBytes, len(name))
	case strings.ContainsAny(name, "=\x00"):
		v.Add(field, "must not contain '=' or NUL (got %q)", name)
	}
}

// checkActionTree bounds an action tree's depth and size before anything
// walks it recursively; it reports false when the tree is beyond a bound.
func checkActionTree(v *ValidationError, field string, root interface{ ProtoReflect() protoreflect.Message }) bool {
	type node struct {
		m     protoreflect.Message
		depth int
	}
	if root == nil || !root.ProtoReflect().IsValid() {
		return true
	}
	stack := []node{{root.ProtoReflect(), 1}}
	nodes, deepest := 0, 0
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		nodes++
		deepest = max(deepest, n.depth)
		if nodes > MaxActionNodes {
			v.Add(field, "must hold at most %d actions", MaxActionNodes)
			return false
		}
		if n.depth > MaxActionDepth {
			v.Add(field, "must nest at most %d actions deep", MaxActionDepth)
			return false
		}
		// The children of an action: the action of timeout, try and
		// emit_progress, the actions of serial, parallel and codependent.
		n.m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind {
				return true
			}
			inner := val.Message()
			inner.Range(func(cfd protoreflect.FieldDescriptor, cval protoreflect.Value) bool {
				if cfd.Kind() != protoreflect.MessageKind || cfd.Message().FullName() != actionName {
					return true
				}
				if cfd.IsList() {
					for i := 0; i < cval.List().Len(); i++ {
						stack = append(stack, node{cval.List().Get(i).Message(), n.depth + 1})
					}
				} else {
					stack = append(stack, node{cval.Message(), n.depth + 1})
				}
				return true
			})
			return true
		})
	}
	return true
}

// actionName is the full name of the Action message.
const actionName protoreflect.FullName = "gavel.models.v1.Action"
