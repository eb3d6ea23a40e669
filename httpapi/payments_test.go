package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"teleconsult/booking"
	"teleconsult/consult"
	"teleconsult/payments"
	"teleconsult/store"
)

const testWebhookSecret = "whsec_test_httpapi"

// The payments service is what booking and consult call.
var (
	_ booking.Checkout       = (*payments.Service)(nil)
	_ booking.PaymentRelease = (*payments.Service)(nil)
	_ consult.Completer      = (*payments.Service)(nil)
)

type paymentsEnv struct {
	*bookingEnv
	pay *payments.Service
}

// newPaymentsEnv serves the API with the real booking service and the
// payments service in TEST MODE. With deliver, the test gateway sends its
// signed webhooks to our endpoint; without, the test sends them itself.
func newPaymentsEnv(t *testing.T, deliver bool) *paymentsEnv {
	t.Helper()
	e := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	cfg := payments.Config{WebhookSecret: testWebhookSecret, BaseURL: base}
	if deliver {
		cfg.TestWebhookURL = base + "/api/v1/payments/stripe/webhook"
	}
	pay, err := payments.New(e.DB, cfg, e.API.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pay.Close)
	bsvc := booking.New(e.DB, e.API.Vault, booking.Config{Checkout: pay, PaymentRelease: pay, BaseURL: base})
	pay.SetSlotReleaser(bsvc)
	mux := http.NewServeMux()
	e.API.Routes(mux)
	e.API.bookingRoutes(mux, bsvc)
	e.API.paymentsRoutes(mux, pay)
	srv := httptest.NewUnstartedServer(e.API.Handler(mux))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	e.Srv = srv
	return &paymentsEnv{bookingEnv: &bookingEnv{testEnv: e, svc: bsvc}, pay: pay}
}

// bookPaid books the n-th free slot of the paid type, counting from the
// latest (well outside the cancellation cut-off), and checks the
// contract: 201, pending_payment, a checkout URL and its expiry.
func (e *paymentsEnv) bookPaid(t *testing.T, pat *client, docID, paidID string, n int) apptBody {
	t.Helper()
	slots := freeSlots(t, pat, docID, paidID)
	if len(slots) <= n {
		t.Fatalf("only %d slots", len(slots))
	}
	var a apptBody
	resp, b := pat.do("POST", "/api/v1/appointments", map[string]any{"practitioner_id": docID, "consultation_type_id": paidID,
		"start": slots[len(slots)-1-n].Format(time.RFC3339)})
	if resp.StatusCode != 201 {
		t.Fatalf("book: %d %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	if a.Status != "pending_payment" || a.Payment == nil || a.Payment.CheckoutURL == "" || !a.Payment.ExpiresAt.After(time.Now().Add(29*time.Minute)) {
		t.Fatalf("booking answer %s", b)
	}
	var raw map[string]map[string]any
	json.Unmarshal(b, &raw)
	if _, ok := raw["payment"]["checkout_url"]; !ok {
		t.Fatalf("no payment.checkout_url in %s", b)
	}
	if _, ok := raw["payment"]["expires_at"]; !ok {
		t.Fatalf("no payment.expires_at in %s", b)
	}
	return a
}

// pressButton shows the test checkout page and presses a button, as a
// browser would (same origin, form post).
func pressButton(t *testing.T, c *client, checkoutURL, action string) *http.Response {
	t.Helper()
	u, _ := url.Parse(checkoutURL)
	resp, page := c.do("GET", u.Path, nil)
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("TEST MODE")) {
		t.Fatalf("checkout page: %d %s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "style-src 'sha256-") || strings.Contains(csp, "unsafe") {
		t.Fatalf("checkout page CSP %q", csp)
	}
	req, _ := http.NewRequest("POST", c.base+u.Path, strings.NewReader(url.Values{"action": {action}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("checkout %s: %d", action, resp.StatusCode)
	}
	return resp
}

// waitStatus polls the appointment (as its patient) and its payment.
func (e *paymentsEnv) waitStatus(t *testing.T, c *client, id, status, payState string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var a apptBody
		c.json("GET", "/api/v1/appointments/"+id, nil, &a)
		p, err := e.pay.Payment(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status == status && p.State == payState {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("appointment %s / payment %s, want %s / %s", a.Status, p.State, status, payState)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPaymentsJourneyAPI plays the whole path in test mode through the
// API: book, pay on the test page, confirmed by the signed webhook,
// consult completed, captured, receipt; pay then cancel, hold released;
// decline, slot freed; practitioner onboarding.
func TestPaymentsJourneyAPI(t *testing.T) {
	e := newPaymentsEnv(t, true)
	doc, docID, _, paidID := e.doctor(t)
	pat, _ := e.user("patient", "Zoé Lefèvre")
	other, otherAcct := e.user("patient", "Louis Bernard")

	// Onboarding: the practitioner gets a link; a patient is not told the route exists.
	var link struct {
		URL string `json:"url"`
	}
	if st := doc.json("POST", "/api/v1/practitioner/payouts/onboard", nil, &link); st != 200 || link.URL == "" {
		t.Fatalf("onboard: %d %+v", st, link)
	}
	if resp, _ := pat.do("POST", "/api/v1/practitioner/payouts/onboard", nil); resp.StatusCode != 404 {
		t.Fatalf("patient onboarding: %d", resp.StatusCode)
	}

	// Book, pay, confirmed, completed, captured, receipt.
	a := e.bookPaid(t, pat, docID, paidID, 0)
	var pv payments.View
	if st := pat.json("GET", "/api/v1/appointments/"+a.ID+"/payment", nil, &pv); st != 200 || pv.State != "checkout_open" ||
		pv.CheckoutURL != a.Payment.CheckoutURL || pv.Amount != 5000 || !pv.TestMode {
		t.Fatalf("payment view: %d %+v", st, pv)
	}
	pv = payments.View{}
	if st := doc.json("GET", "/api/v1/appointments/"+a.ID+"/payment", nil, &pv); st != 200 || pv.CheckoutURL != "" {
		t.Fatalf("practitioner's payment view: %d %+v", st, pv)
	}
	if resp, _ := other.do("GET", "/api/v1/appointments/"+a.ID+"/payment", nil); resp.StatusCode != 404 {
		t.Fatalf("someone else's payment: %d", resp.StatusCode)
	}
	resp := pressButton(t, pat, a.Payment.CheckoutURL, "pay")
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "/appointments/"+a.ID) {
		t.Fatalf("redirect after pay: %s", loc)
	}
	e.waitStatus(t, pat, a.ID, "confirmed", store.PaymentAuthorized)
	if resp, _ := pat.do("GET", "/api/v1/appointments/"+a.ID+"/receipt", nil); resp.StatusCode != 404 {
		t.Fatalf("receipt before capture: %d", resp.StatusCode)
	}
	ctx := context.Background()
	if err := store.TransitionAppointment(ctx, e.DB.Pool, a.ID, []string{"confirmed"}, "completed", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.pay.OnCompleted(ctx, a.ID); err != nil { // what consult does when the consult ends
		t.Fatal(err)
	}
	p, _ := e.pay.Payment(ctx, a.ID)
	if p.State != store.PaymentCaptured || p.AmountCaptured != 5000 || p.Destination == "" {
		t.Fatalf("after completion: %+v", p)
	}
	resp, pdf := pat.do("GET", "/api/v1/appointments/"+a.ID+"/receipt", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Fatalf("receipt: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), pdf[:min(len(pdf), 40)])
	}
	for _, c := range []*client{other, doc, e.client()} {
		if resp, _ := c.do("GET", "/api/v1/appointments/"+a.ID+"/receipt", nil); resp.StatusCode != 404 && resp.StatusCode != 401 {
			t.Fatalf("someone else's receipt: %d", resp.StatusCode)
		}
	}
	if resp, _ := pat.do("GET", "/api/v1/appointments/not-an-id/receipt", nil); resp.StatusCode != 404 {
		t.Fatalf("receipt of a malformed id: %d", resp.StatusCode)
	}

	// Operators see payments by state; nobody else sees the route.
	adm, _ := e.user("admin", "Ops")
	var list struct {
		Payments []payments.Summary `json:"payments"`
	}
	if st := adm.json("GET", "/api/v1/admin/payments?status=captured", nil, &list); st != 200 || len(list.Payments) != 1 ||
		list.Payments[0].AppointmentID != a.ID || list.Payments[0].AmountCaptured != 5000 {
		t.Fatalf("admin payments: %d %+v", st, list)
	}
	if resp, _ := adm.do("GET", "/api/v1/admin/payments?status=nonsense", nil); resp.StatusCode != 400 {
		t.Fatalf("bad status filter: %d", resp.StatusCode)
	}
	if resp, _ := pat.do("GET", "/api/v1/admin/payments", nil); resp.StatusCode != 404 {
		t.Fatalf("patient on the admin route: %d", resp.StatusCode)
	}

	// Book, pay, cancel: the hold is released, nothing charged.
	b := e.bookPaid(t, pat, docID, paidID, 1)
	pressButton(t, pat, b.Payment.CheckoutURL, "pay")
	e.waitStatus(t, pat, b.ID, "confirmed", store.PaymentAuthorized)
	if st := pat.json("POST", "/api/v1/appointments/"+b.ID+"/cancel", map[string]string{}, nil); st != 200 {
		t.Fatalf("cancel: %d", st)
	}
	e.waitStatus(t, pat, b.ID, "cancelled", store.PaymentCanceled)

	// Book, decline: the slot is freed, offered to the waiting list, and
	// can be booked again.
	c := e.bookPaid(t, pat, docID, paidID, 2)
	if st := other.json("POST", "/api/v1/waitlist", map[string]any{"practitioner_id": docID, "consultation_type_id": paidID}, nil); st != 201 && st != 200 {
		t.Fatalf("join waiting list: %d", st)
	}
	pressButton(t, pat, c.Payment.CheckoutURL, "decline")
	e.waitStatus(t, pat, c.ID, "expired", store.PaymentFailed)
	var offers int
	if err := e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE kind = 'waitlist.offer' AND recipient_id = $1`, otherAcct.ID).Scan(&offers); err != nil || offers != 1 {
		t.Fatalf("waiting list offers for the freed slot: %d %v", offers, err)
	}
	freed, err := store.AppointmentByID(ctx, e.DB.Pool, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st := other.json("POST", "/api/v1/appointments", map[string]any{"practitioner_id": docID, "consultation_type_id": paidID,
		"start": freed.StartsAt.Format(time.RFC3339)}, nil); st != 201 {
		t.Fatalf("re-booking the freed slot: %d", st)
	}
}

// signed returns an event delivery: body and Stripe-Signature header.
func signed(t *testing.T, id, typ, apiVersion string, object map[string]any, secret string, at time.Time) ([]byte, string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"id": id, "object": "event", "api_version": apiVersion, "created": at.Unix(),
		"type": typ, "livemode": false, "data": map[string]any{"object": object}})
	if err != nil {
		t.Fatal(err)
	}
	s := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at})
	return body, s.Header
}

func deliver(t *testing.T, base string, body []byte, sig string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/v1/payments/stripe/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestPaymentsWebhookAPI drives the payment state machine through the
// webhook endpoint with events signed like Stripe's: bad deliveries are
// refused with 400 and change nothing; a good one applies once, however
// often and however concurrently it comes; late news never moves a
// payment backwards.
func TestPaymentsWebhookAPI(t *testing.T) {
	e := newPaymentsEnv(t, false)
	_, docID, _, paidID := e.doctor(t)
	pat, _ := e.user("patient", "Zoé Lefèvre")
	ctx := context.Background()
	base := e.Srv.URL

	count := func(sql string, args ...any) int {
		var n int
		if err := e.DB.Pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	confirmations := func(id string) int {
		return count(`SELECT count(*) FROM appointment_events WHERE appointment_id = $1 AND to_status = 'confirmed'`, id)
	}

	a := e.bookPaid(t, pat, docID, paidID, 0)
	pressButton(t, pat, a.Payment.CheckoutURL, "pay") // paid at "Stripe"; no webhook sent
	p, _ := e.pay.Payment(ctx, a.ID)
	session := map[string]any{"id": p.CheckoutSession, "object": "checkout.session", "mode": "payment", "status": "complete",
		"metadata": map[string]string{"appointment_id": a.ID}}
	now := time.Now()

	good, goodSig := signed(t, "evt_completed_1", "checkout.session.completed", stripe.APIVersion, session, testWebhookSecret, now)
	tampered := bytes.Replace(good, []byte(`"livemode":false`), []byte(`"livemode":true `), 1)
	oldBody, oldSig := signed(t, "evt_old", "checkout.session.completed", stripe.APIVersion, session, testWebhookSecret, now.Add(-10*time.Minute))
	otherBody, otherSig := signed(t, "evt_other", "checkout.session.completed", stripe.APIVersion, session, "whsec_wrong", now)
	verBody, verSig := signed(t, "evt_ver", "checkout.session.completed", "2020-08-27", session, testWebhookSecret, now)
	for _, c := range []struct {
		name string
		body []byte
		sig  string
	}{
		{"missing signature", good, ""},
		{"malformed signature", good, "this is not a signature"},
		{"signature without v1", good, fmt.Sprintf("t=%d", now.Unix())},
		{"tampered body", tampered, goodSig},
		{"wrong secret", otherBody, otherSig},
		{"too old", oldBody, oldSig},
		{"wrong API version", verBody, verSig},
		{"not JSON", []byte("{{{"), goodSig},
	} {
		if st := deliver(t, base, c.body, c.sig); st != 400 {
			t.Errorf("%s: %d, want 400", c.name, st)
		}
	}
	if n := count(`SELECT count(*) FROM stripe_events`); n != 0 {
		t.Fatalf("%d events recorded from bad deliveries", n)
	}
	if p, _ := e.pay.Payment(ctx, a.ID); p.State != store.PaymentCheckoutOpen || confirmations(a.ID) != 0 {
		t.Fatalf("bad deliveries changed the payment: %s", p.State)
	}

	// Valid, then the same event again (Stripe retries sign anew).
	if st := deliver(t, base, good, goodSig); st != 200 {
		t.Fatalf("valid event: %d", st)
	}
	again, againSig := signed(t, "evt_completed_1", "checkout.session.completed", stripe.APIVersion, session, testWebhookSecret, time.Now())
	if st := deliver(t, base, again, againSig); st != 200 {
		t.Fatalf("duplicate: %d", st)
	}
	if p, _ := e.pay.Payment(ctx, a.ID); p.State != store.PaymentAuthorized || confirmations(a.ID) != 1 {
		t.Fatalf("after valid and duplicate: %s, %d confirmations", p.State, confirmations(a.ID))
	}

	// Out of order: the consult is captured, then late news arrives.
	if err := store.TransitionAppointment(ctx, e.DB.Pool, a.ID, []string{"confirmed"}, "completed", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.pay.OnCompleted(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	p, _ = e.pay.Payment(ctx, a.ID)
	intent := map[string]any{"id": p.PaymentIntent, "object": "payment_intent", "status": "requires_capture", "amount": 5000,
		"amount_capturable": 5000, "metadata": map[string]string{"appointment_id": a.ID}}
	late1, late1Sig := signed(t, "evt_late_capturable", "payment_intent.amount_capturable_updated", stripe.APIVersion, intent, testWebhookSecret, time.Now())
	expiredSession := map[string]any{"id": p.CheckoutSession, "object": "checkout.session", "status": "expired"}
	late2, late2Sig := signed(t, "evt_late_expired", "checkout.session.expired", stripe.APIVersion, expiredSession, testWebhookSecret, time.Now())
	for _, d := range [][2][]byte{{late1, []byte(late1Sig)}, {late2, []byte(late2Sig)}, {good, []byte(goodSig)}} {
		if st := deliver(t, base, d[0], string(d[1])); st != 200 {
			t.Fatalf("late event: %d", st)
		}
	}
	if p, _ := e.pay.Payment(ctx, a.ID); p.State != store.PaymentCaptured || p.AmountCaptured != 5000 {
		t.Fatalf("late events moved the payment: %s", p.State)
	}
	var status string
	e.DB.Pool.QueryRow(ctx, `SELECT status FROM appointments WHERE id = $1`, a.ID).Scan(&status)
	if status != "completed" {
		t.Fatalf("late events moved the appointment: %s", status)
	}

	// 50 concurrent deliveries of one event change the state once.
	b := e.bookPaid(t, pat, docID, paidID, 1)
	pressButton(t, pat, b.Payment.CheckoutURL, "pay")
	pb, _ := e.pay.Payment(ctx, b.ID)
	sessionB := map[string]any{"id": pb.CheckoutSession, "object": "checkout.session", "status": "complete"}
	var wg sync.WaitGroup
	statuses := make(chan int, 50)
	began := time.Now()
	for i := range 50 {
		body, sig := signed(t, "evt_completed_b", "checkout.session.completed", stripe.APIVersion, sessionB, testWebhookSecret, time.Now().Add(-time.Duration(i)*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- deliver(t, base, body, sig)
		}()
	}
	wg.Wait()
	close(statuses)
	t.Logf("50 concurrent deliveries of one event answered in %v", time.Since(began))
	for st := range statuses {
		if st != 200 {
			t.Errorf("concurrent delivery: %d", st)
		}
	}
	if n := confirmations(b.ID); n != 1 {
		t.Fatalf("%d confirmations from 50 deliveries", n)
	}
	if n := count(`SELECT count(*) FROM stripe_events WHERE id = 'evt_completed_b'`); n != 1 {
		t.Fatalf("event recorded %d times", n)
	}
	if pb, _ := e.pay.Payment(ctx, b.ID); pb.State != store.PaymentAuthorized {
		t.Fatalf("after 50 deliveries: %s", pb.State)
	}
}
