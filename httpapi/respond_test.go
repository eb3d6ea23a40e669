package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// A request its client abandoned is not an internal error: no error in
// the log, and 499 in the metrics. The same error with the client still
// waiting is one.
func TestAbandonedRequestIsNotAnInternalError(t *testing.T) {
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	t.Cleanup(func() { slog.SetDefault(old) })

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	writeError(w, httptest.NewRequest("GET", "/api/v1/appointments", nil).WithContext(ctx), fmt.Errorf("store: appointments: %w", context.Canceled))
	if w.Code != StatusClientClosedRequest || logs.Len() != 0 {
		t.Errorf("abandoned: status %d, log %q; want %d and nothing logged", w.Code, logs.String(), StatusClientClosedRequest)
	}

	w = httptest.NewRecorder()
	writeError(w, httptest.NewRequest("GET", "/api/v1/appointments", nil), fmt.Errorf("store: appointments: %w", context.Canceled))
	if w.Code != 500 || !strings.Contains(logs.String(), "internal error") {
		t.Errorf("client still there: status %d, log %q; want 500 and the error logged", w.Code, logs.String())
	}
}
