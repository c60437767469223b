// Package backend defines the container backend contract the executor drives.
//
// The interfaces are shaped like Garden's Client and Container (see
// shared/reference/garden.md) so that a Garden-protocol backend can be added
// later without touching the executor. Only what the executor needs is
// defined: Ping, Capacity, Create, Destroy, Containers, Lookup on the
// Backend; Handle, Run, Attach, StreamIn, StreamOut, Info, Stop and
// Properties on a Container; ID, Wait and Signal on a Process.
//
// Implementations live in sub-packages: process (real processes in
// per-container directories, no isolation) and sim (simulated containers
// for scale tests). This package owns only the types and sentinel errors.
package backend
