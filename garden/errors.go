package garden

import (
	"errors"
	"fmt"
)

// Error types, the Type key of the error body.
const (
	ErrorTypeContainerNotFound  = "ContainerNotFoundError"
	ErrorTypeProcessNotFound    = "ProcessNotFoundError"
	ErrorTypeExecutableNotFound = "ExecutableNotFoundError"
	ErrorTypeServiceUnavailable = "ServiceUnavailableError"
	ErrorTypeUnrecoverable      = "UnrecoverableError"
	// MessageAlreadyBeingDestroyed is the exact message of a Destroy that
	// finds another Destroy of the same handle in progress; Diego matches it.
	MessageAlreadyBeingDestroyed = "container already being destroyed"
)

// Error is the error body every failing route answers with. All five keys
// are always present, in this order.
type Error struct {
	Type      string
	Message   string
	Handle    string
	ProcessID string
	Binary    string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Typed converts the body to the error a client should see: one of the
// typed errors below for a known Type, else the *Error itself (a generic
// error carrying only a message).
func (e *Error) Typed() error {
	switch e.Type {
	case ErrorTypeContainerNotFound:
		return ContainerNotFoundError{Handle: e.Handle}
	case ErrorTypeProcessNotFound:
		return ProcessNotFoundError{ProcessID: e.ProcessID}
	case ErrorTypeExecutableNotFound:
		return ExecutableNotFoundError{Message: e.Message}
	case ErrorTypeServiceUnavailable:
		return ServiceUnavailableError{Cause: e.Message}
	case ErrorTypeUnrecoverable:
		return UnrecoverableError{Symptom: e.Message}
	default:
		return e
	}
}

// NewError builds the error body for err: a typed error (found with
// errors.As, so it may be wrapped) keeps its type and fields; anything else
// becomes an untyped body holding err.Error().
func NewError(err error) *Error {
	var (
		cnf ContainerNotFoundError
		pnf ProcessNotFoundError
		enf ExecutableNotFoundError
		su  ServiceUnavailableError
		un  UnrecoverableError
		ge  *Error
	)
	switch {
	case errors.As(err, &cnf):
		return &Error{Type: ErrorTypeContainerNotFound, Message: cnf.Error(), Handle: cnf.Handle}
	case errors.As(err, &pnf):
		return &Error{Type: ErrorTypeProcessNotFound, Message: pnf.Error(), ProcessID: pnf.ProcessID}
	case errors.As(err, &enf):
		return &Error{Type: ErrorTypeExecutableNotFound, Message: enf.Error()}
	case errors.As(err, &su):
		return &Error{Type: ErrorTypeServiceUnavailable, Message: su.Error()}
	case errors.As(err, &un):
		return &Error{Type: ErrorTypeUnrecoverable, Message: un.Error()}
	case errors.As(err, &ge):
		return &Error{Type: ge.Type, Message: ge.Message, Handle: ge.Handle, ProcessID: ge.ProcessID, Binary: ge.Binary}
	default:
		return &Error{Message: err.Error()}
	}
}

// ContainerNotFoundError reports an unknown handle (404).
type ContainerNotFoundError struct {
	Handle string
}

// Error is "unknown handle: <h>".
func (e ContainerNotFoundError) Error() string { return fmt.Sprintf("unknown handle: %s", e.Handle) }

// Is matches any ContainerNotFoundError when the target's Handle is empty,
// else one with the same Handle.
func (e ContainerNotFoundError) Is(target error) bool {
	t, ok := target.(ContainerNotFoundError)
	return ok && (t.Handle == "" || t.Handle == e.Handle)
}

// ProcessNotFoundError reports an unknown process ID (404).
type ProcessNotFoundError struct {
	ProcessID string
}

// Error is "unknown process: <pid>".
func (e ProcessNotFoundError) Error() string { return fmt.Sprintf("unknown process: %s", e.ProcessID) }

// Is matches any ProcessNotFoundError when the target's ProcessID is empty,
// else one with the same ProcessID.
func (e ProcessNotFoundError) Is(target error) bool {
	t, ok := target.(ProcessNotFoundError)
	return ok && (t.ProcessID == "" || t.ProcessID == e.ProcessID)
}

// ExecutableNotFoundError reports a Run whose executable does not exist.
type ExecutableNotFoundError struct {
	Message string
}

// Error returns the message.
func (e ExecutableNotFoundError) Error() string { return e.Message }

// ServiceUnavailableError reports a server that cannot serve now.
type ServiceUnavailableError struct {
	Cause string
}

// Error returns the cause.
func (e ServiceUnavailableError) Error() string { return e.Cause }

// UnrecoverableError reports a server that is permanently broken.
type UnrecoverableError struct {
	Symptom string
}

// Error returns the symptom.
func (e UnrecoverableError) Error() string { return e.Symptom }
