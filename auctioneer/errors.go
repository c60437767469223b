package auctioneer

import (
	"errors"
	"strings"
)

// Reason classifies a placement failure.
type Reason int

const (
	// ReasonCellCommunication: no cell took part in the auction.
	ReasonCellCommunication Reason = iota + 1
	// ReasonRootFS: no cell offers the requested rootfs.
	ReasonRootFS
	// ReasonVolumeDrivers: no cell with the rootfs offers every volume driver.
	ReasonVolumeDrivers
	// ReasonPlacementTags: no cell with rootfs and drivers matches the tags.
	ReasonPlacementTags
	// ReasonInsufficientResources: cells passed the filters but none fit.
	ReasonInsufficientResources
	// ReasonInflightLimit: the global in-flight start cap was reached.
	ReasonInflightLimit
)

// Diego's exact placement error strings (reference §1.10).
const (
	// MsgCellCommunication is the error when no cell took part.
	MsgCellCommunication = "unable to communicate to compatible cells"
	// MsgRootFS is the error when no cell supports the rootfs.
	MsgRootFS = "found no compatible cell for required rootfs"
	// MsgVolumeDrivers is the error when no cell has the volume drivers.
	MsgVolumeDrivers = "found no compatible cell with required volume drivers"
	// MsgInflightLimit is the error once the in-flight start cap is reached.
	MsgInflightLimit = "waiting to start instance: reached in-flight start limit"
	// MsgInsufficientResources prefixes the resource problems shared by every cell.
	MsgInsufficientResources = "insufficient resources"
)

// Sentinel errors returned by Run and the Registry.
var (
	// ErrInvalidOptions wraps every options validation error.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrUnknownStrategy is returned for a strategy name not in the registry.
	ErrUnknownStrategy = errors.New("unknown strategy")
	// ErrInvalidAuction wraps input errors such as duplicate cell ids.
	ErrInvalidAuction = errors.New("invalid auction")
)

// placementTagsMessage returns Diego's tag mismatch error for the request's
// tags, in request order.
func placementTagsMessage(tags []string) string {
	switch len(tags) {
	case 0:
		return "found no compatible cell with no placement tags"
	case 1:
		return `found no compatible cell with placement tag "` + tags[0] + `"`
	default:
		return `found no compatible cell with placement tags "` +
			strings.Join(tags[:len(tags)-1], `", "`) + `" and "` + tags[len(tags)-1] + `"`
	}
}

// problem is a bit set of the resources a cell lacks for one item.
type problem uint8

const (
	problemDisk problem = 1 << iota
	problemMemory
	problemContainers

	allProblems = problemDisk | problemMemory | problemContainers
)

// insufficientResourcesMessage formats Diego's InsufficientResourcesError for
// the problems common to every cell that failed the fit check: the problem
// names sorted and comma-joined, or no list when no problem is shared.
func insufficientResourcesMessage(p problem) string {
	names := make([]string, 0, 3)
	// Alphabetical order, as Diego sorts the names.
	if p&problemContainers != 0 {
		names = append(names, "containers")
	}
	if p&problemDisk != 0 {
		names = append(names, "disk")
	}
	if p&problemMemory != 0 {
		names = append(names, "memory")
	}
	if len(names) == 0 {
		return MsgInsufficientResources
	}
	return MsgInsufficientResources + ": " + strings.Join(names, ", ")
}
