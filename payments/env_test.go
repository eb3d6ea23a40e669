package payments

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

const webhookPath = "/api/v1/payments/stripe/webhook"

// env is a payments service in test mode on a fresh database, with our
// webhook endpoint and the test checkout page served on loopback.
type env struct {
	t    testing.TB
	db   *store.DB
	svc  *Service
	srv  *httptest.Server
	logs *syncBuffer

	practitioner, patient string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// webhookHandler is what httpapi does with a delivery.
func webhookHandler(s *Service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
		if err != nil {
			http.Error(w, "too large", http.StatusBadRequest)
			return
		}
		if err := s.HandleWebhook(r.Context(), body, r.Header.Get("Stripe-Signature")); err != nil {
			switch problem.KindOf(err) {
			case problem.Invalid:
				http.Error(w, "bad", http.StatusBadRequest)
			case problem.Unavailable:
				http.Error(w, "later", http.StatusServiceUnavailable)
			default:
				http.Error(w, "error", http.StatusInternalServerError)
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

// newEnv starts the service; deliver says whether the test gateway sends
// its webhooks (tests that craft their own events turn it off).
func newEnv(t testing.TB, deliver bool, cfg Config) *env {
	t.Helper()
	db := storetest.New(t)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cfg.BaseURL = srv.URL
	if deliver {
		cfg.TestWebhookURL = srv.URL + webhookPath
	}
	logs := &syncBuffer{}
	svc, err := New(db, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	mux.Handle("POST "+webhookPath, webhookHandler(svc))
	if h := svc.TestCheckoutHandler(); h != nil {
		mux.Handle(TestCheckoutPattern, h)
	}
	e := &env{t: t, db: db, svc: svc, srv: srv, logs: logs}
	e.practitioner = e.account("practitioner", "Dr Émilie Durand")
	e.patient = e.account("patient", "Zoé Martin")
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO practitioners (account_id, specialty, rpps, address, city, postcode)
		VALUES ($1, 'general_practice', '10001234567', '1 rue de la Paix', 'Paris', '75002')`, e.practitioner); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) account(role, name string) string {
	e.t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	var id string
	err := e.db.Pool.QueryRow(context.Background(), `INSERT INTO accounts (email, name, role, password_hash)
		VALUES ($1, $2, $3, 'x') RETURNING id`, role+"-"+hex.EncodeToString(b)+"@example.test", name, role).Scan(&id)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// book inserts a pending_payment appointment starting in `in` and starts
// its checkout in the same transaction, as the booking handler does.
func (e *env) book(in time.Duration, fee int64) (apptID, checkoutURL string) {
	e.t.Helper()
	ctx := context.Background()
	var ctID string
	// The type's name is health data: it must never reach Stripe.
	if err := e.db.Pool.QueryRow(ctx, `INSERT INTO consultation_types (practitioner_id, name, mode, duration_minutes, fee_cents)
		VALUES ($1, 'Suivi dépression sévère', 'video', 20, $2) RETURNING id`, e.practitioner, fee).Scan(&ctID); err != nil {
		e.t.Fatal(err)
	}
	start := e.svc.now().Add(in).Truncate(time.Minute)
	hold := e.svc.now().Add(30 * time.Minute)
	err := e.db.Tx(ctx, func(tx pgx.Tx) error {
		a, err := store.InsertAppointment(ctx, tx, store.Appointment{
			ID: store.NewUUID(), PractitionerID: e.practitioner, ConsultationTypeID: ctID, PatientID: e.patient,
			Mode: "video", StartsAt: start, EndsAt: start.Add(20 * time.Minute), Status: store.StatusPendingPayment,
			FeeCents: int(fee), Currency: "EUR", HoldExpiresAt: &hold,
		}, e.patient)
		if err != nil {
			return err
		}
		apptID = a.ID
		u, exp, err := e.svc.StartCheckout(ctx, tx, a)
		if err != nil {
			return err
		}
		if exp.Before(e.svc.now().Add(30 * time.Minute)) {
			e.t.Errorf("checkout expires at %v, less than 30 minutes ahead", exp)
		}
		checkoutURL = u
		return nil
	})
	if err != nil {
		e.t.Fatalf("book: %v", err)
	}
	return apptID, checkoutURL
}

// browser submits the test checkout page like a person would.
func (e *env) checkout(checkoutURL, action string) *http.Response {
	e.t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(checkoutURL)
	if err != nil {
		e.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "TEST MODE") || !strings.Contains(string(page), `value="`+action+`"`) {
		e.t.Fatalf("checkout page: %d %s", resp.StatusCode, page)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
		e.t.Errorf("checkout page CSP %q", csp)
	}
	// The inline style is allowed by its hash: a browser applies it only
	// if the hash of what is served matches.
	_, style, _ := strings.Cut(string(page), "<style>")
	style, _, _ = strings.Cut(style, "</style>")
	sum := sha256.Sum256([]byte(style))
	if !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
		e.t.Errorf("the page's style does not match its CSP hash (%q)", csp)
	}
	if strings.Contains(string(page), "<script") || strings.Contains(string(page), "src=") || strings.Contains(string(page), "https://") {
		e.t.Errorf("the test checkout page loads something: %s", page)
	}
	resp, err = c.PostForm(checkoutURL, url.Values{"action": {action}})
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func (e *env) status(apptID string) string {
	e.t.Helper()
	a, err := store.AppointmentByID(context.Background(), e.db.Pool, apptID)
	if err != nil {
		e.t.Fatal(err)
	}
	return a.Status
}

func (e *env) payment(apptID string) store.Payment {
	e.t.Helper()
	p, err := store.PaymentOf(context.Background(), e.db.Pool, apptID)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// waitFor polls until the appointment and its payment reach the given
// states (webhooks arrive in the background).
func (e *env) waitFor(apptID, apptStatus, payState string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, p := e.status(apptID), e.payment(apptID)
		if st == apptStatus && p.State == payState {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("appointment %s / payment %s, want %s / %s\nlogs:\n%s", st, p.State, apptStatus, payState, e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settleDeliveries waits until the test gateway has no delivery in flight.
func (e *env) settleDeliveries() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !e.svc.test.idle() {
		if time.Now().After(deadline) {
			e.t.Fatal("webhook deliveries still in flight")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// intent reads a PaymentIntent from the test gateway, as Stripe keeps it.
func (e *env) intent(id string) tgIntent {
	e.t.Helper()
	p, err := e.svc.test.loadIntent(context.Background(), e.db.Pool, id, false)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// intentsOf counts the PaymentIntents the gateway holds for an appointment.
func (e *env) intentsOf(apptID string) int {
	e.t.Helper()
	ids, err := store.TestGatewayObjectsOf(context.Background(), e.db.Pool, "payment_intent", "appointment_id", apptID)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(ids)
}

func (e *env) advance(d time.Duration) { e.svc.skew.Add(int64(d)) }

func (e *env) transition(apptID, from, to string) {
	e.t.Helper()
	if err := store.TransitionAppointment(context.Background(), e.db.Pool, apptID, []string{from}, to, "", ""); err != nil {
		e.t.Fatal(err)
	}
}

// lossy is a Gateway whose chosen calls reach Stripe and succeed there,
// but whose answer is lost on the way back: the crash (or timeout)
// between Stripe's side effect and our database write.
type lossy struct {
	Gateway
	mu   sync.Mutex
	lose map[string]int
}

var errLost = ErrGatewayUnavailable.Wrap(errors.New("connection reset after the request was sent"))

func (l *lossy) lost(op string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lose[op] > 0 {
		l.lose[op]--
		return true
	}
	return false
}

func (l *lossy) CreateCheckout(ctx context.Context, r CheckoutRequest) (CheckoutSession, error) {
	cs, err := l.Gateway.CreateCheckout(ctx, r)
	if err == nil && l.lost("checkout") {
		return CheckoutSession{}, errLost
	}
	return cs, err
}

func (l *lossy) Capture(ctx context.Context, r CaptureRequest) (PaymentIntent, error) {
	pi, err := l.Gateway.Capture(ctx, r)
	if err == nil && l.lost("capture") {
		return PaymentIntent{}, errLost
	}
	return pi, err
}

func (l *lossy) AuthorizeOffSession(ctx context.Context, r OffSessionRequest) (PaymentIntent, error) {
	pi, err := l.Gateway.AuthorizeOffSession(ctx, r)
	if err == nil && l.lost("authorize") {
		return PaymentIntent{}, errLost
	}
	return pi, err
}

func (l *lossy) Refund(ctx context.Context, r RefundRequest) (Refund, error) {
	rf, err := l.Gateway.Refund(ctx, r)
	if err == nil && l.lost("refund") {
		return Refund{}, errLost
	}
	return rf, err
}
