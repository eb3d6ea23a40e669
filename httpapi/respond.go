package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"teleconsult/problem"
)

// StatusClientClosedRequest is the status counted for a request whose
// client closed the connection before the answer (nginx's 499).
const StatusClientClosedRequest = 499

// maxBody bounds JSON request bodies.
const maxBody = 1 << 20

var statusOf = map[problem.Kind]int{
	problem.Internal:     http.StatusInternalServerError,
	problem.Invalid:      http.StatusBadRequest,
	problem.Unauthorized: http.StatusUnauthorized,
	problem.Forbidden:    http.StatusForbidden,
	problem.NotFound:     http.StatusNotFound,
	problem.Conflict:     http.StatusConflict,
	problem.Gone:         http.StatusGone,
	problem.TooMany:      http.StatusTooManyRequests,
	problem.Unavailable:  http.StatusServiceUnavailable,
}

// StatusOf maps an error to its HTTP status code: the one place that does.
func StatusOf(err error) int { return statusOf[problem.KindOf(err)] }

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError answers with the error's status and {"error":{"code","message"}}.
// Internal errors are logged (with the request id) and answered with a
// generic message.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		// The client went away (a closed tab, a page left): not a fault
		// of ours, and nobody reads the answer. It is counted under 499,
		// as the proxies that log it do.
		slog.DebugContext(r.Context(), "request abandoned by the client", "request_id", requestID(r.Context()), "route", r.Pattern)
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	p := problem.As(err)
	status := statusOf[p.Kind]
	if p.Kind == problem.Internal {
		slog.ErrorContext(r.Context(), "internal error", "request_id", requestID(r.Context()), "route", r.Pattern, "err", err)
		p = problem.As(errors.New("internal"))
	}
	if p.Kind == problem.TooMany && p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	var body errorBody
	body.Error.Code, body.Error.Message = p.Code, p.Message
	writeJSON(w, status, body)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// ErrBadJSON is the problem for a body that is not the JSON expected.
var ErrBadJSON = problem.New(problem.Invalid, "bad_json", "the request body is not valid JSON")

// decodeJSON reads the body into v, refusing unknown fields, trailing
// data and bodies over 1 MiB, with a message that says what is wrong.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return ErrBadJSON.With("the request body must be JSON (Content-Type: application/json)")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF):
			return ErrBadJSON.With("the request body is empty; JSON was expected")
		case errors.As(err, &syn):
			return ErrBadJSON.Withf("the request body is not valid JSON (at byte %d)", syn.Offset)
		case errors.As(err, &typ):
			return ErrBadJSON.Withf("field %q has the wrong type (expected %s)", typ.Field, typ.Type)
		case errors.As(err, &tooBig):
			return ErrBadJSON.With("the request body is too large")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return ErrBadJSON.Withf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return ErrBadJSON.With("the request body is not valid JSON")
		}
	}
	if dec.More() {
		return ErrBadJSON.With("the request body has data after the JSON value")
	}
	return nil
}

// missing returns a 400 problem naming the missing fields.
func missing(fields ...string) error {
	return problem.New(problem.Invalid, "missing_field", fmt.Sprintf("missing required field: %s", strings.Join(fields, ", ")))
}
