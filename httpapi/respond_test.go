package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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

// Behind a trusted proxy the client address is the last X-Forwarded-For
// entry, the one the proxy wrote: a client cannot pick its address (and
// dodge login throttling) by sending the header itself.
func TestClientAddressBehindAProxy(t *testing.T) {
	a := &API{TrustProxy: true}
	for _, c := range []struct {
		xff  []string
		want string
	}{
		{nil, "192.0.2.1"},
		{[]string{"203.0.113.5"}, "203.0.113.5"},
		{[]string{"6.6.6.6, 203.0.113.5"}, "203.0.113.5"},
		{[]string{"6.6.6.6", "203.0.113.5"}, "203.0.113.5"},
		{[]string{"6.6.6.6,203.0.113.5 "}, "203.0.113.5"},
		{[]string{""}, "192.0.2.1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "192.0.2.1:4000"
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := a.clientIP(r); got != c.want {
			t.Errorf("X-Forwarded-For %q: client %q, want %q", c.xff, got, c.want)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.1:4000"
	r.Header.Set("X-Forwarded-For", "6.6.6.6")
	if got := (&API{}).clientIP(r); got != "192.0.2.1" {
		t.Errorf("without TRUST_PROXY the header is taken: %q", got)
	}
}

// With METRICS_TOKEN set, the metrics need it as a bearer token.
func TestMetricsToken(t *testing.T) {
	for _, token := range []string{"", "s3cret-scrape"} {
		a := &API{Registry: prometheus.NewRegistry(), MetricsToken: token}
		mux := http.NewServeMux()
		a.healthRoutes(mux)
		get := func(auth string) int {
			r := httptest.NewRequest("GET", "/metrics", nil)
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, r)
			return w.Code
		}
		if token == "" {
			if c := get(""); c != 200 {
				t.Errorf("no token configured: %d, want 200", c)
			}
			continue
		}
		for auth, want := range map[string]int{"": 401, "Bearer wrong": 401, "Bearer s3cret-scrap": 401, "s3cret-scrape": 401, "Bearer s3cret-scrape": 200} {
			if c := get(auth); c != want {
				t.Errorf("Authorization %q: %d, want %d", auth, c, want)
			}
		}
	}
}
