package payments

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"teleconsult/store"
)

// stripeMockVersion is the stripe-mock the tests install when missing.
const stripeMockVersion = "github.com/stripe/stripe-mock@v0.203.0"

// findStripeMock returns the stripe-mock binary, installing it if needed.
func findStripeMock(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	var dirs []string
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	dirs = append(dirs, "/root/go/bin")
	for _, d := range dirs {
		p := filepath.Join(d, "stripe-mock")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	out, err := exec.Command("go", "install", stripeMockVersion).CombinedOutput()
	if err != nil {
		t.Fatalf("install stripe-mock: %v\n%s", err, out)
	}
	for _, d := range dirs {
		p := filepath.Join(d, "stripe-mock")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("stripe-mock installed but not found")
	return ""
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startStripeMock runs stripe-mock on loopback for the test and returns
// its base URL.
func startStripeMock(t testing.TB) string {
	t.Helper()
	bin := findStripeMock(t)
	httpAddr, httpsAddr := freePort(t), freePort(t)
	cmd := exec.Command(bin, "-http-addr", httpAddr, "-https-addr", httpsAddr)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stripe-mock: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	base := "http://" + httpAddr
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", httpAddr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock did not start: %s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recorded is one request seen by the recording proxy.
type recorded struct {
	Method, Path   string
	IdempotencyKey string
	Form           url.Values
	Status         int
}

// recorder is a reverse proxy in front of stripe-mock that keeps every
// request it forwards.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func (rc *recorder) all() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

func startRecorder(t *testing.T, target string) (*recorder, string) {
	t.Helper()
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	rc := &recorder{}
	proxy.ModifyResponse = func(resp *http.Response) error {
		rc.mu.Lock()
		rc.reqs[len(rc.reqs)-1].Status = resp.StatusCode
		rc.mu.Unlock()
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		if r.Method == http.MethodGet {
			form = r.URL.Query()
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, recorded{Method: r.Method, Path: r.URL.Path, IdempotencyKey: r.Header.Get("Idempotency-Key"), Form: form})
		rc.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return rc, srv.URL
}

// TestStripeGatewayRequests drives every Gateway method against
// stripe-mock and checks, through the recording proxy, the requests
// Stripe would receive: manual capture, idempotency keys derived from our
// ids, destination charges, and no health data anywhere.
func TestStripeGatewayRequests(t *testing.T) {
	rc, base := startRecorder(t, startStripeMock(t))
	g := NewStripeGateway("sk_test_123", base, nil)
	ctx := context.Background()
	appt := "5b0e7c52-3f7e-4a43-9d7b-1f0d3a2a9c11"
	exp := time.Now().Add(31 * time.Minute)

	if _, err := g.CreateCheckout(ctx, CheckoutRequest{
		AppointmentID: appt, Amount: 3000, Currency: "EUR", Destination: "acct_1Prac",
		ApplicationFee: 150, SuccessURL: "http://127.0.0.1/ok", CancelURL: "http://127.0.0.1/cancel",
		ExpiresAt: exp, IdempotencyKey: checkoutKey(appt),
	}); err != nil {
		t.Fatalf("CreateCheckout: %v", err)
	}
	if _, err := g.CreateSetupSession(ctx, CheckoutRequest{
		AppointmentID: appt, Currency: "EUR", Customer: "cus_123", Destination: "acct_1Prac",
		SuccessURL: "http://127.0.0.1/ok", CancelURL: "http://127.0.0.1/cancel",
		ExpiresAt: exp, IdempotencyKey: setupKey(appt),
	}); err != nil {
		t.Fatalf("CreateSetupSession: %v", err)
	}
	if _, err := g.GetCheckoutSession(ctx, "cs_test_123"); err != nil {
		t.Fatalf("GetCheckoutSession: %v", err)
	}
	if _, err := g.ExpireCheckout(ctx, "cs_test_123", expireKey(appt, "cs_test_123")); err != nil {
		t.Fatalf("ExpireCheckout: %v", err)
	}
	if _, err := g.CreateCustomer(ctx, "0d1c3a52-3f7e-4a43-9d7b-1f0d3a2a9c11", customerKey("0d1c3a52-3f7e-4a43-9d7b-1f0d3a2a9c11")); err != nil {
		t.Fatalf("CreateCustomer: %v", err)
	}
	if _, err := g.AuthorizeOffSession(ctx, OffSessionRequest{
		AppointmentID: appt, Customer: "cus_123", PaymentMethod: "pm_123", Amount: 3000, Currency: "EUR",
		Destination: "acct_1Prac", ApplicationFee: 150, IdempotencyKey: authorizeKey(appt),
	}); err != nil {
		t.Fatalf("AuthorizeOffSession: %v", err)
	}
	if _, err := g.Capture(ctx, CaptureRequest{PaymentIntent: "pi_123", Amount: 3000, ApplicationFee: 150, Destination: true, IdempotencyKey: captureKey(appt)}); err != nil {
		t.Fatalf("Capture: %v", err)
	}
	if _, err := g.CancelHold(ctx, "pi_123", cancelKey(appt)); err != nil {
		t.Fatalf("CancelHold: %v", err)
	}
	if _, err := g.Refund(ctx, RefundRequest{PaymentIntent: "pi_123", Amount: 3000, ReverseTransfer: true, RefundApplicationFee: true, IdempotencyKey: refundKey(appt)}); err != nil {
		t.Fatalf("Refund: %v", err)
	}
	if _, err := g.GetPaymentIntent(ctx, "pi_123"); err != nil {
		t.Fatalf("GetPaymentIntent: %v", err)
	}
	acct, err := g.CreateExpressAccount(ctx, "7a1c3a52-3f7e-4a43-9d7b-1f0d3a2a9c11", accountKey("7a1c3a52-3f7e-4a43-9d7b-1f0d3a2a9c11"))
	if err != nil {
		t.Fatalf("CreateExpressAccount: %v", err)
	}
	link, err := g.AccountLink(ctx, acct.ID, "http://127.0.0.1/refresh", "http://127.0.0.1/return")
	if err != nil || link == "" {
		t.Fatalf("AccountLink: %q, %v", link, err)
	}

	reqs := rc.all()
	byPath := map[string][]recorded{}
	for _, r := range reqs {
		if r.Status != http.StatusOK {
			t.Errorf("%s %s answered %d", r.Method, r.Path, r.Status)
		}
		byPath[r.Method+" "+r.Path] = append(byPath[r.Method+" "+r.Path], r)
		// No health data: every free-text value is ours and fixed.
		for k, vs := range r.Form {
			for _, v := range vs {
				if strings.Contains(k, "description") || strings.Contains(k, "[name]") {
					if v != Description {
						t.Errorf("%s %s: %s = %q, want %q", r.Method, r.Path, k, v, Description)
					}
				}
				if strings.HasPrefix(k, "metadata[") || strings.Contains(k, "[metadata]") {
					if !strings.HasSuffix(k, "[appointment_id]") && !strings.HasSuffix(k, "[account_id]") && !strings.HasSuffix(k, "[practitioner_id]") {
						t.Errorf("%s %s: unexpected metadata %s", r.Method, r.Path, k)
					}
				}
			}
		}
		// Every POST that creates or moves money carries our key.
		if r.Method == http.MethodPost && r.Path != "/v1/account_links" && !strings.HasPrefix(r.IdempotencyKey, "appointment:") &&
			!strings.HasPrefix(r.IdempotencyKey, "account:") && !strings.HasPrefix(r.IdempotencyKey, "practitioner:") {
			t.Errorf("%s %s: idempotency key %q is not derived from our ids", r.Method, r.Path, r.IdempotencyKey)
		}
	}

	want := []struct {
		key, idem string
		form      map[string]string
	}{
		{"POST /v1/checkout/sessions", "appointment:" + appt + ":checkout:v1", map[string]string{
			"mode":                                "payment",
			"payment_method_types[0]":             "card",
			"payment_intent_data[capture_method]": "manual",
			"payment_intent_data[transfer_data][destination]": "acct_1Prac",
			"payment_intent_data[on_behalf_of]":               "acct_1Prac",
			"payment_intent_data[application_fee_amount]":     "150",
			"payment_intent_data[metadata][appointment_id]":   appt,
			"line_items[0][price_data][unit_amount]":          "3000",
			"line_items[0][price_data][currency]":             "eur",
			"client_reference_id":                             appt,
			"expires_at":                                      fmt.Sprint(exp.Unix()),
		}},
		{"POST /v1/checkout/sessions", "appointment:" + appt + ":setup:v1", map[string]string{
			"mode": "setup", "customer": "cus_123", "currency": "eur",
			"setup_intent_data[on_behalf_of]": "acct_1Prac",
		}},
		{"POST /v1/checkout/sessions/cs_test_123/expire", "appointment:" + appt + ":expire-checkout:cs_test_123:v1", nil},
		{"POST /v1/customers", "account:0d1c3a52-3f7e-4a43-9d7b-1f0d3a2a9c11:customer:v1", nil},
		{"POST /v1/payment_intents", "appointment:" + appt + ":authorize:v1", map[string]string{
			"capture_method": "manual", "off_session": "true", "confirm": "true",
			"transfer_data[destination]": "acct_1Prac", "on_behalf_of": "acct_1Prac", "application_fee_amount": "150",
			"customer": "cus_123", "payment_method": "pm_123",
		}},
		{"POST /v1/payment_intents/pi_123/capture", "appointment:" + appt + ":capture:v1", map[string]string{
			"amount_to_capture": "3000", "application_fee_amount": "150",
		}},
		{"POST /v1/payment_intents/pi_123/cancel", "appointment:" + appt + ":cancel:v1", nil},
		{"POST /v1/refunds", "appointment:" + appt + ":refund:v1", map[string]string{
			"payment_intent": "pi_123", "amount": "3000", "reverse_transfer": "true", "refund_application_fee": "true",
		}},
		{"POST /v1/accounts", "practitioner:7a1c3a52-3f7e-4a43-9d7b-1f0d3a2a9c11:connect-account:v1", map[string]string{
			"type": "express", "capabilities[card_payments][requested]": "true", "capabilities[transfers][requested]": "true",
		}},
	}
	for _, w := range want {
		found := false
		for _, r := range byPath[w.key] {
			if r.IdempotencyKey != w.idem {
				continue
			}
			found = true
			for k, v := range w.form {
				if got := r.Form.Get(k); got != v {
					t.Errorf("%s: %s = %q, want %q", w.key, k, got, v)
				}
			}
		}
		if !found {
			t.Errorf("no %s with idempotency key %s (saw %+v)", w.key, w.idem, byPath[w.key])
		}
	}
	if r := byPath["GET /v1/checkout/sessions/cs_test_123"]; len(r) == 0 {
		t.Error("GetCheckoutSession sent no GET")
	} else if r[0].Form.Get("expand[0]") != "setup_intent" {
		t.Errorf("GetCheckoutSession does not expand setup_intent: %v", r[0].Form)
	}
}

// TestStripeGatewayErrors checks that Stripe errors become our problems.
func TestStripeGatewayErrors(t *testing.T) {
	base := startStripeMock(t)
	g := NewStripeGateway("sk_test_123", base, nil)
	// stripe-mock answers 404 for an object path it does not know.
	_, err := g.GetPaymentIntent(context.Background(), "pi_123/unknown")
	if err == nil {
		t.Fatal("no error for an unknown path")
	}
	// Nothing listens here: the gateway reports Stripe as unavailable.
	dead := NewStripeGateway("sk_test_123", "http://"+freePort(t), &http.Client{Timeout: time.Second})
	_, err = dead.GetPaymentIntent(context.Background(), "pi_123")
	if !errors.Is(err, ErrGatewayUnavailable) {
		t.Fatalf("unreachable Stripe: %v, want ErrGatewayUnavailable", err)
	}
}

// BenchmarkStripeMockCheckout measures one Checkout Session creation
// through stripe-go against stripe-mock on loopback (request encoding,
// HTTP, response decoding; Stripe's own latency is not in it).
func BenchmarkStripeMockCheckout(b *testing.B) {
	g := NewStripeGateway("sk_test_123", startStripeMock(b), nil)
	ctx := context.Background()
	exp := time.Now().Add(31 * time.Minute)
	for i := range b.N {
		if _, err := g.CreateCheckout(ctx, CheckoutRequest{
			AppointmentID: "5b0e7c52-3f7e-4a43-9d7b-1f0d3a2a9c11", Amount: 3000, Currency: "EUR", Destination: "acct_1",
			ApplicationFee: 150, SuccessURL: "http://127.0.0.1/ok", CancelURL: "http://127.0.0.1/no", ExpiresAt: exp,
			IdempotencyKey: fmt.Sprintf("bench:%d:%d", b.N, i),
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestServiceRequestsToStripe runs the service itself in Stripe mode
// (STRIPE_SECRET_KEY, STRIPE_API_BASE) against stripe-mock: booking a
// consultation whose type and specialty would reveal health data sends
// Stripe a destination charge with our fee, manual capture, a key derived
// from the appointment id, and nothing but "Consultation" and opaque ids;
// completing it sends the capture with its own key.
func TestServiceRequestsToStripe(t *testing.T) {
	rc, base := startRecorder(t, startStripeMock(t))
	e := newEnv(t, false, Config{SecretKey: "sk_test_123", WebhookSecret: "whsec_x", APIBase: base, PlatformFeeBasisPoints: 1000})
	ctx := context.Background()
	if e.svc.TestMode() {
		t.Fatal("test mode with a secret key")
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE practitioners SET specialty = 'psychiatry' WHERE account_id = $1`, e.practitioner); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE accounts SET name = 'Dr Psy Dépression' WHERE id = $1`, e.practitioner); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SavePayoutAccount(ctx, e.db.Pool, e.practitioner, "acct_1Prac", true); err != nil {
		t.Fatal(err)
	}
	appt, url := e.book(2*24*time.Hour, 8000)
	if url == "" {
		t.Fatal("no checkout url from stripe-mock")
	}
	p := e.payment(appt)
	if p.CheckoutSession == "" || p.Destination != "acct_1Prac" || p.ApplicationFee != 800 {
		t.Fatalf("payment after checkout: %+v", p)
	}
	// Stripe (mock) says nothing useful back; pretend the hold came.
	p.State, p.PaymentIntent = store.PaymentAuthorized, "pi_123"
	if err := store.UpdatePayment(ctx, e.db.Pool, p); err != nil {
		t.Fatal(err)
	}
	e.transition(appt, store.StatusPendingPayment, store.StatusCompleted)
	_ = e.svc.OnCompleted(ctx, appt) // stripe-mock's fixture is not a captured intent; the request is what we check

	var checkout, capture *recorded
	reqs := rc.all()
	for i, r := range reqs {
		for _, vs := range r.Form {
			for _, v := range vs {
				for _, secret := range []string{"psychiatr", "dépression", "psy", "zoé", "martin", "suivi"} {
					if strings.Contains(strings.ToLower(v), secret) {
						t.Errorf("%s %s sends %q to Stripe", r.Method, r.Path, v)
					}
				}
			}
		}
		switch {
		case r.Method == "POST" && r.Path == "/v1/checkout/sessions":
			checkout = &reqs[i]
		case r.Method == "POST" && r.Path == "/v1/payment_intents/pi_123/capture":
			capture = &reqs[i]
		}
	}
	if checkout == nil || capture == nil {
		t.Fatalf("requests: %+v", reqs)
	}
	for k, v := range map[string]string{
		"mode": "payment", "payment_intent_data[capture_method]": "manual",
		"payment_intent_data[transfer_data][destination]": "acct_1Prac", "payment_intent_data[on_behalf_of]": "acct_1Prac",
		"payment_intent_data[application_fee_amount]": "800", "payment_intent_data[description]": Description,
		"payment_intent_data[metadata][appointment_id]": appt, "line_items[0][price_data][unit_amount]": "8000",
		"line_items[0][price_data][product_data][name]": Description,
	} {
		if got := checkout.Form.Get(k); got != v {
			t.Errorf("checkout %s = %q, want %q", k, got, v)
		}
	}
	if checkout.IdempotencyKey != "appointment:"+appt+":checkout:v1" {
		t.Errorf("checkout idempotency key %q", checkout.IdempotencyKey)
	}
	if capture.IdempotencyKey != "appointment:"+appt+":capture:v1" || capture.Form.Get("amount_to_capture") != "8000" ||
		capture.Form.Get("application_fee_amount") != "800" {
		t.Errorf("capture: %+v", *capture)
	}
}
