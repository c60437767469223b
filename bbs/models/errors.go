package models

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors of the BBS. Wrap them with context; compare with errors.Is.
var (
	// ErrNotFound means the record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists means a record with that key exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidTransition means the record's current state does not allow the change.
	ErrInvalidTransition = errors.New("invalid state transition")
	// ErrConflict means a concurrent writer changed the record; the request may be retried.
	ErrConflict = errors.New("conflict: record changed concurrently")
	// ErrUnavailable means this replica cannot serve the request now (not the lock holder, store down).
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalid means the request failed validation; a *ValidationError carries the details.
	ErrInvalid = errors.New("invalid request")
	// ErrResourceExhausted means a limit was reached, such as a slow event subscriber's buffer.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrCompacted means etcd compacted past a requested revision; relist and resubscribe.
	ErrCompacted = errors.New("revision compacted")
	// ErrTooLarge means a write can never fit etcd's limits on one
	// transaction (--max-txn-ops, --max-request-bytes): retrying cannot help.
	// It maps to InvalidArgument.
	ErrTooLarge = errors.New("too large for one etcd transaction")
)

// FieldError is one invalid field: its path in the request and the rule it broke.
type FieldError struct {
	Field string
	Rule  string
}

// ValidationError collects every invalid field of a request.
type ValidationError struct {
	Errors []FieldError
}

// Error lists the fields and rules.
func (v *ValidationError) Error() string {
	parts := make([]string, len(v.Errors))
	for i, e := range v.Errors {
		parts[i] = e.Field + ": " + e.Rule
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true for validation errors.
func (v *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Add records one invalid field.
func (v *ValidationError) Add(field, rule string, args ...any) {
	v.Errors = append(v.Errors, FieldError{Field: field, Rule: fmt.Sprintf(rule, args...)})
}

// Err returns nil when no field was invalid, else the ValidationError itself.
func (v *ValidationError) Err() error {
	if v == nil || len(v.Errors) == 0 {
		return nil
	}
	return v
}

// codeTable maps sentinels to gRPC codes, in order of precedence.
var codeTable = []struct {
	err  error
	code codes.Code
}{
	{ErrInvalid, codes.InvalidArgument},
	{ErrTooLarge, codes.InvalidArgument},
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrInvalidTransition, codes.FailedPrecondition},
	{ErrCompacted, codes.FailedPrecondition},
	{ErrConflict, codes.Aborted},
	{ErrUnavailable, codes.Unavailable},
	{ErrResourceExhausted, codes.ResourceExhausted},
}

// Code returns the gRPC code for an error of this package (Unknown for others).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Code()
	}
	for _, row := range codeTable {
		if errors.Is(err, row.err) {
			return row.code
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Unknown
}

// ToStatus turns an error into a gRPC status error with the table's code and the error's message.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err
	}
	st := status.New(Code(err), err.Error())
	var v *ValidationError
	if errors.As(err, &v) && len(v.Errors) > 0 {
		// The fields travel as google.rpc.BadRequest field violations, so any
		// gRPC client (not only Go's) can read them.
		br := &errdetails.BadRequest{}
		for _, f := range v.Errors {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Rule})
		}
		if withDetails, err := st.WithDetails(br); err == nil {
			st = withDetails
		}
	}
	return st.Err()
}

// validationFromStatus rebuilds the *ValidationError a status's
// google.rpc.BadRequest details carry, or returns nil.
func validationFromStatus(st *status.Status) *ValidationError {
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		v := &ValidationError{}
		for _, f := range br.GetFieldViolations() {
			v.Errors = append(v.Errors, FieldError{Field: f.GetField(), Rule: f.GetDescription()})
		}
		if len(v.Errors) > 0 {
			return v
		}
	}
	return nil
}

// statusError is a gRPC status error that also unwraps to a sentinel, so
// callers of the client can use errors.Is(err, models.ErrNotFound).
type statusError struct {
	st       *status.Status
	sentinel error
}

func (e *statusError) Error() string              { return e.st.Message() }
func (e *statusError) GRPCStatus() *status.Status { return e.st }
func (e *statusError) Unwrap() error              { return e.sentinel }

// FromStatus maps a gRPC error back to the sentinel of its code, keeping the status.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, row := range codeTable {
		if row.code == st.Code() {
			sentinel := row.err
			if st.Code() == codes.FailedPrecondition && strings.Contains(st.Message(), ErrCompacted.Error()) {
				sentinel = ErrCompacted
			}
			if st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), ErrTooLarge.Error()) {
				sentinel = ErrTooLarge
			}
			if st.Code() == codes.InvalidArgument {
				if v := validationFromStatus(st); v != nil {
					sentinel = v // errors.As(err, *ValidationError) and errors.Is(err, ErrInvalid)
				}
			}
			return &statusError{st: st, sentinel: sentinel}
		}
	}
	return err
}
