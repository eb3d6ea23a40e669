// Package problem classifies errors by what they mean to a caller, so that
// domain packages can say "conflict" or "not found" once and the HTTP and
// WebSocket layers map that meaning to a status code in exactly one place.
package problem

import (
	"errors"
	"fmt"
)

// Kind is the class of an error as a client sees it.
type Kind int

// The kinds map one to one onto HTTP status codes in httpapi.
const (
	Internal     Kind = iota // 500: our fault, details go to the log only
	Invalid                  // 400: the request itself is wrong
	Unauthorized             // 401: not logged in, or bad credentials
	Forbidden                // 403: logged in, but this is not allowed
	NotFound                 // 404: missing, or not yours (never tell which)
	Conflict                 // 409: the state of things forbids it now
	Gone                     // 410: it existed and has expired
	TooMany                  // 429: slow down
	Unavailable              // 503: a dependency is down
)

// Error is an error with a kind, a stable machine-readable code and a
// message a person can read. Messages must never carry health data,
// secrets or other users' data: they are shown to the caller.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	// RetryAfter, when set with TooMany, is the number of seconds to wait.
	RetryAfter int
	wrapped    error
}

// New returns an Error of the given kind.
func New(kind Kind, code, message string) *Error {
	return &Error{Kind: kind, Code: code, Message: message}
}

// Newf returns an Error whose message is formatted.
func Newf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Error returns the message.
func (e *Error) Error() string {
	if e.wrapped != nil {
		return e.Message + ": " + e.wrapped.Error()
	}
	return e.Message
}

// Unwrap gives access to the cause, if any.
func (e *Error) Unwrap() error { return e.wrapped }

// Is reports whether target is a problem with the same kind and code, so
// that sentinel errors compare equal to copies with another message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Code == e.Code
}

// With returns a copy of e with a more specific message (same kind and code).
func (e *Error) With(message string) *Error {
	c := *e
	c.Message = message
	return &c
}

// Withf is With with formatting.
func (e *Error) Withf(format string, args ...any) *Error {
	return e.With(fmt.Sprintf(format, args...))
}

// Wrap returns a copy of e that wraps cause (kept for the log, not shown).
func (e *Error) Wrap(cause error) *Error {
	c := *e
	c.wrapped = cause
	return &c
}

// As extracts the *Error from err's chain. An error without one is an
// Internal problem with a generic message.
func As(err error) *Error {
	var p *Error
	if errors.As(err, &p) {
		return p
	}
	return &Error{Kind: Internal, Code: "internal", Message: "something went wrong on our side; please try again", wrapped: err}
}

// KindOf returns the kind of err (Internal when it has none).
func KindOf(err error) Kind { return As(err).Kind }

// Common problems shared by several packages.
var (
	ErrNotFound     = New(NotFound, "not_found", "not found")
	ErrUnauthorized = New(Unauthorized, "unauthorized", "please log in")
	ErrForbidden    = New(Forbidden, "forbidden", "you are not allowed to do this")
	ErrInvalid      = New(Invalid, "invalid", "the request is not valid")
	ErrConflict     = New(Conflict, "conflict", "this conflicts with the current state")
)
