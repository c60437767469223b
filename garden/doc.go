// Package garden holds the wire types of the Cloud Foundry Garden container
// API: the JSON bodies of every HTTP route, the ProcessPayload frames of the
// hijacked process streams, and the error body with the typed errors a client
// rebuilds from it.
//
// The JSON keys follow the upstream protocol exactly, inconsistencies
// included (see /work/shared/reference/garden.md §1): most request types use
// snake_case keys, while ContainerInfo, Metrics, the Create and List
// responses and the error body use the Go field names in CapitalCase.
// Durations are int64 nanoseconds. omitempty drops zero scalars but not
// structs, so a server must read an empty object ({}) as "not set".
//
// The package has no I/O: garden/client speaks the protocol, garden/server
// serves it over a rep/backend.Backend.
package garden
