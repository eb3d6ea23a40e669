// Package httpapi serves the JSON API under /api/v1, the health checks and
// the metrics, and holds the middleware every response goes through
// (request id, access log, metrics, session, security headers, CSRF).
//
// Each domain registers its routes from its own file (booking.go,
// payments.go, prescriptions.go, ...) with a method
// `func (a *API) <domain>Routes(mux *http.ServeMux)` called from Routes.
// Errors are mapped to HTTP status codes in exactly one place, writeError.
package httpapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"teleconsult/audit"
	"teleconsult/auth"
	"teleconsult/booking"
	"teleconsult/consult"
	"teleconsult/live"
	"teleconsult/payments"
	"teleconsult/privacy"
	"teleconsult/rx"
	"teleconsult/store"
	"teleconsult/vault"
)

// API holds the dependencies of the handlers. Fields for domain services
// are set by cmd/teleconsult before Handler is called; a nil service means
// its routes are not served.
type API struct {
	DB      *store.DB
	Vault   *vault.Vault
	Auth    *auth.Service
	Log     *slog.Logger
	BaseURL string // public URL, e.g. https://consult.example.org
	// TrustProxy takes the client address from X-Forwarded-For (set it
	// only behind a proxy that writes that header; its last entry is taken).
	TrustProxy bool
	// Registry receives the HTTP metrics; nil disables them.
	Registry *prometheus.Registry
	// MetricsToken, when set, is the bearer token GET /metrics asks for.
	MetricsToken string
	// Live delivers events to browsers (GET /api/v1/events).
	Live *live.Hub
	// ProbeBudget is how many "not found" API answers a caller may get
	// per minute before being told to slow down (default 30).
	ProbeBudget int
	// Rx writes, signs and dispenses prescriptions.
	Rx *rx.Service
	// Payments holds cards at booking and charges after the consult.
	Payments *payments.Service
	// Booking is the directory and the appointments.
	Booking *booking.Service
	// Consult admits participants to video rooms and keeps their chat.
	Consult *consult.Service
	// Privacy exports and erases a patient's account (GDPR).
	Privacy *privacy.Service

	metrics   *httpMetrics
	probes    *window // "not found" answers per caller
	tokenHits *window // requests per API token
}

// secureCookies reports whether the service is reached over TLS.
func (a *API) secureCookies() bool { return strings.HasPrefix(a.BaseURL, "https://") }

// Routes registers every API route on mux.
func (a *API) Routes(mux *http.ServeMux) {
	a.healthRoutes(mux)
	a.accountRoutes(mux)
	a.eventRoutes(mux)
	a.securityRoutes(mux)
	a.consultRoutes(mux)
	a.tokenRoutes(mux)
	if a.Booking != nil {
		a.bookingRoutes(mux, a.Booking)
	}
	a.fhirRoutes(mux)
	a.notifyRoutes(mux)
	if a.Payments != nil {
		a.paymentsRoutes(mux, a.Payments)
	}
	if a.Rx != nil {
		a.prescriptionRoutes(mux, a.Rx)
	}
	if a.Privacy != nil {
		a.privacyRoutes(mux, a.Privacy)
	}
}

// Handler wraps mux (holding the API's routes and any others, such as the
// web pages) in the middleware every request goes through.
func (a *API) Handler(mux *http.ServeMux) http.Handler {
	if a.Log == nil {
		a.Log = slog.Default()
	}
	if a.Registry != nil && a.metrics == nil {
		a.metrics = newHTTPMetrics(a.Registry, a.DB)
	}
	if a.probes == nil {
		if a.ProbeBudget == 0 {
			a.ProbeBudget = defaultProbeBudget
		}
		a.probes = newWindow(a.ProbeBudget, probeWindow)
		a.tokenHits = newWindow(tokenBudget, tokenWindow)
	}
	var h http.Handler = mux
	h = a.withLimits(h)
	h = a.withAPIToken(h)
	h = a.withSession(h)
	h = http.NewCrossOriginProtection().Handler(h)
	h = a.withSecurityHeaders(h)
	h = a.withRequestLog(h)
	return h
}

type ctxKey int

const (
	keyAccount ctxKey = iota
	keySession
	keyRequestID
	keyToken
	keyIncomplete
)

// Client address of the request (without port).
func (a *API) clientIP(r *http.Request) string {
	if a.TrustProxy {
		// The last address is the one our proxy saw and wrote; any before
		// it came from the client, who can write anything there.
		if all := r.Header.Values("X-Forwarded-For"); len(all) > 0 {
			xff := all[len(all)-1]
			if i := strings.LastIndexByte(xff, ','); i >= 0 {
				xff = xff[i+1:]
			}
			if ip := strings.TrimSpace(xff); ip != "" {
				return ip
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// account returns the logged-in caller, or ErrUnauthorized (with the code
// mfa_required or mfa_setup_required when the second factor is missing).
func (a *API) account(r *http.Request) (*auth.Account, error) {
	if err, ok := r.Context().Value(keyIncomplete).(error); ok {
		return nil, err
	}
	return a.sessionAccount(r)
}

// sessionAccount returns the account of the session even before its second
// factor: only for the routes that complete a login.
func (a *API) sessionAccount(r *http.Request) (*auth.Account, error) {
	if acct, ok := r.Context().Value(keyAccount).(*auth.Account); ok {
		return acct, nil
	}
	return nil, auth.ErrNoSession
}

// session returns the caller's session and its token.
func (a *API) session(r *http.Request) (*store.Session, string) {
	s, _ := r.Context().Value(keySession).(*store.Session)
	t, _ := r.Context().Value(keyToken).(string)
	return s, t
}

// accountWithRole returns the caller when it has one of roles. Any other
// logged-in caller gets a 404, exactly as if the route's object did not
// exist for them, so that roles cannot be probed.
func (a *API) accountWithRole(r *http.Request, roles ...string) (*auth.Account, error) {
	acct, err := a.account(r)
	if err != nil {
		return nil, err
	}
	for _, role := range roles {
		if acct.Role == role {
			return acct, nil
		}
	}
	return nil, store.ErrNotFound
}

// actor describes the caller for the audit log.
func (a *API) actor(r *http.Request) audit.Actor {
	act := audit.Actor{IP: a.clientIP(r), Role: "anonymous"}
	if acct, err := a.account(r); err == nil {
		act.ID, act.Role = acct.ID, acct.Role
	}
	return act
}

// requestID returns the id given to this request in logs and responses.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// Hijack hands the connection over (a WebSocket upgrade).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Flush sends buffered data (event streams).
func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the underlying writer (for
// WebSocket hijacking and flushing of event streams).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withRequestLog gives each request an id, logs it (method, route, status,
// duration: never query strings, bodies or cookies) and counts it.
func (a *API) withRequestLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), keyRequestID, id))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start)
		if a.metrics != nil {
			a.metrics.observe(route, r.Method, sw.status, d)
		}
		if route == "GET /healthz" || route == "GET /readyz" || route == "GET /metrics" {
			return
		}
		level := slog.LevelInfo
		if sw.status >= 500 {
			level = slog.LevelError
		}
		a.Log.LogAttrs(r.Context(), level, "request",
			slog.String("request_id", id), slog.String("method", r.Method), slog.String("route", route),
			slog.Int("status", sw.status), slog.Int("bytes", sw.bytes), slog.Duration("duration", d))
	})
}

// withSecurityHeaders sets the headers every response carries. Pages set
// their own Content-Security-Policy (with a nonce) over the default.
func (a *API) withSecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), geolocation=(self), interest-cohort=()")
		if a.secureCookies() {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

// sessionCookieName is __Host- prefixed behind TLS, which pins the cookie
// to this host, path / and Secure.
func (a *API) sessionCookieName() string {
	if a.secureCookies() {
		return "__Host-tc_session"
	}
	return "tc_session"
}

// withSession resolves the session cookie into the caller's account.
func (a *API) withSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(a.sessionCookieName())
		if err == nil && c.Value != "" {
			acct, sess, err := a.Auth.Authenticate(r.Context(), c.Value)
			if err == nil {
				ctx := context.WithValue(r.Context(), keyAccount, &acct)
				ctx = context.WithValue(ctx, keySession, &sess)
				ctx = context.WithValue(ctx, keyToken, c.Value)
				if err := a.Auth.SessionComplete(&acct, &sess); err != nil {
					ctx = context.WithValue(ctx, keyIncomplete, err)
				}
				r = r.WithContext(ctx)
			} else if !isNoSession(err) {
				writeError(w, r, err)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func isNoSession(err error) bool { return err == auth.ErrNoSession }
