package payments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"teleconsult/problem"
	"teleconsult/store"
)

// testGateway stands in for Stripe when no secret key is configured (make
// run on a fresh machine, browser tests). It keeps Stripe-like objects
// (Checkout Sessions, PaymentIntents with holds, captures and refunds,
// customers, Connect accounts) and the idempotency keys it has seen in
// PostgreSQL -- so that they survive a restart of the server and are
// shared by several nodes, like Stripe's own state -- serves a test
// checkout page, and delivers correctly signed webhook events to our own
// webhook endpoint.
type testGateway struct {
	db         *store.DB
	baseURL    string // our public URL: the checkout page lives under it
	webhookURL string // our webhook endpoint, on loopback
	secret     string // webhook signing secret
	http       *http.Client
	log        *slog.Logger
	now        func() time.Time

	mu      sync.Mutex
	closed  bool
	wg      sync.WaitGroup
	stop    chan struct{}
	pending int // deliveries in flight, for tests
}

var _ Gateway = (*testGateway)(nil)

// holdLifetime is how long Stripe keeps an uncaptured card hold.
const holdLifetime = 7 * 24 * time.Hour

// testCheckoutPath is where the test checkout page is served.
const testCheckoutPath = "/payments/test-checkout/"

func newTestGateway(db *store.DB, baseURL, webhookURL, secret string, log *slog.Logger, now func() time.Time) (*testGateway, error) {
	if webhookURL != "" {
		u, err := url.Parse(webhookURL)
		if err != nil {
			return nil, fmt.Errorf("payments: test mode webhook url: %w", err)
		}
		// The test gateway must never send anything off this machine.
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("payments: test mode delivers webhooks to loopback only, not %q", u.Host)
		}
	}
	return &testGateway{
		db: db, baseURL: strings.TrimRight(baseURL, "/"), webhookURL: webhookURL, secret: secret,
		http: &http.Client{Timeout: 10 * time.Second}, log: log, now: now, stop: make(chan struct{}),
	}, nil
}

func randomID(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// tgSession is a test Checkout Session.
type tgSession struct {
	ID             string `json:"id"`
	Mode           string `json:"mode"`
	Status         string `json:"status"`
	AppointmentID  string `json:"appointment_id"`
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	Customer       string `json:"customer"`
	Destination    string `json:"destination"`
	ApplicationFee int64  `json:"application_fee"`
	SuccessURL     string `json:"success_url"`
	CancelURL      string `json:"cancel_url"`
	ExpiresAt      int64  `json:"expires_at"`
	PaymentIntent  string `json:"payment_intent"`
	SetupIntent    string `json:"setup_intent"`
	PaymentMethod  string `json:"payment_method"`
}

// tgIntent is a test PaymentIntent.
type tgIntent struct {
	ID               string `json:"id"`
	Status           string `json:"status"`
	Amount           int64  `json:"amount"`
	AmountCapturable int64  `json:"amount_capturable"`
	AmountReceived   int64  `json:"amount_received"`
	AmountRefunded   int64  `json:"amount_refunded"`
	Currency         string `json:"currency"`
	Customer         string `json:"customer"`
	PaymentMethod    string `json:"payment_method"`
	Destination      string `json:"destination"`
	ApplicationFee   int64  `json:"application_fee"`
	AppointmentID    string `json:"appointment_id"`
	LastErrorCode    string `json:"last_error_code"`
	Created          int64  `json:"created"`
}

// Test cards, chosen on the test checkout page. A saved card's id says
// how it behaves later, off-session.
const (
	pmPrefixOK   = "pm_test_ok_"
	pmPrefixAuth = "pm_test_auth_" // the bank asks for authentication off-session
)

func (s tgSession) public(baseURL string) CheckoutSession {
	c := CheckoutSession{
		ID: s.ID, Mode: s.Mode, Status: s.Status, PaymentIntent: s.PaymentIntent, PaymentMethod: s.PaymentMethod,
		Customer: s.Customer, ExpiresAt: time.Unix(s.ExpiresAt, 0), AppointmentID: s.AppointmentID,
	}
	if s.Status == SessionOpen {
		c.URL = baseURL + testCheckoutPath + s.ID
	}
	return c
}

func (p tgIntent) public() PaymentIntent {
	return PaymentIntent{
		ID: p.ID, Status: p.Status, Amount: p.Amount, AmountCapturable: p.AmountCapturable,
		AmountReceived: p.AmountReceived, Currency: p.Currency, Customer: p.Customer,
		PaymentMethod: p.PaymentMethod, LastErrorCode: p.LastErrorCode, AppointmentID: p.AppointmentID,
	}
}

// stripeJSON renders the session as Stripe would in an event.
func (s tgSession) stripeJSON() map[string]any {
	m := map[string]any{
		"id": s.ID, "object": "checkout.session", "mode": s.Mode, "status": s.Status,
		"client_reference_id": s.AppointmentID, "metadata": metadata(s.AppointmentID),
		"expires_at": s.ExpiresAt, "currency": strings.ToLower(s.Currency), "amount_total": s.Amount,
		"payment_status": "unpaid", "livemode": false,
	}
	if s.PaymentIntent != "" {
		m["payment_intent"] = s.PaymentIntent
	}
	if s.SetupIntent != "" {
		m["setup_intent"] = s.SetupIntent
		m["payment_status"] = "no_payment_required"
	}
	if s.Customer != "" {
		m["customer"] = s.Customer
	}
	return m
}

func (p tgIntent) stripeJSON() map[string]any {
	m := map[string]any{
		"id": p.ID, "object": "payment_intent", "status": p.Status, "amount": p.Amount,
		"amount_capturable": p.AmountCapturable, "amount_received": p.AmountReceived,
		"currency": strings.ToLower(p.Currency), "capture_method": "manual", "description": Description,
		"metadata": metadata(p.AppointmentID), "created": p.Created, "livemode": false,
	}
	if p.Customer != "" {
		m["customer"] = p.Customer
	}
	if p.PaymentMethod != "" {
		m["payment_method"] = p.PaymentMethod
	}
	if p.LastErrorCode != "" {
		m["last_payment_error"] = map[string]any{"type": "card_error", "code": p.LastErrorCode}
	}
	if p.Destination != "" {
		m["transfer_data"] = map[string]any{"destination": p.Destination}
		m["on_behalf_of"] = p.Destination
		m["application_fee_amount"] = p.ApplicationFee
	}
	return m
}

type tgEvent struct {
	typ    string
	object map[string]any
}

// tx runs fn in a transaction and then delivers the events it produced.
func (g *testGateway) tx(ctx context.Context, fn func(tx pgx.Tx, emit func(string, map[string]any)) error) error {
	var events []tgEvent
	err := g.db.Tx(ctx, func(tx pgx.Tx) error {
		events = nil
		return fn(tx, func(typ string, obj map[string]any) { events = append(events, tgEvent{typ, obj}) })
	})
	if err != nil {
		return err
	}
	g.deliver(events)
	return nil
}

// idempotent runs op once per key, as Stripe does: a second request with
// the same key and parameters gets the first answer (its error included),
// and with other parameters an error.
func (g *testGateway) idempotent(ctx context.Context, key string, params any, out any, op func(tx pgx.Tx, emit func(string, map[string]any)) (any, error)) error {
	fp, _ := json.Marshal(params)
	type answer struct {
		Object json.RawMessage `json:"object"`
		Code   string          `json:"code"`
	}
	var result error
	err := g.tx(ctx, func(tx pgx.Tx, emit func(string, map[string]any)) error {
		result = nil
		if key != "" {
			prev, err := store.TestGatewayIdempotent(ctx, tx, key, string(fp))
			if errors.Is(err, store.ErrIdempotencyMismatch) {
				return problem.Newf(problem.Internal, "idempotency_key_in_use", "idempotency key %s reused with other parameters", key)
			}
			if err != nil {
				return err
			}
			if prev != nil {
				var a answer
				if err := json.Unmarshal(prev, &a); err != nil {
					return err
				}
				if err := json.Unmarshal(a.Object, out); err != nil {
					return err
				}
				result = codeError(a.Code)
				return nil
			}
		}
		obj, opErr := op(tx, emit)
		code := errorCode(opErr)
		if opErr != nil && code == "" {
			return opErr // not a Stripe answer: nothing is kept
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, out); err != nil {
			return err
		}
		result = opErr
		if key != "" {
			return store.SaveTestGatewayIdempotent(ctx, tx, key, string(fp), answer{Object: b, Code: code})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return result
}

// errorCode and codeError turn the errors Stripe would answer (and keep
// for an idempotency key) into a code and back.
func errorCode(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrAuthenticationRequired):
		return "authentication_required"
	case errors.Is(err, ErrCardDeclined):
		return "card_declined"
	case errors.Is(err, ErrUnexpectedState):
		return "payment_intent_unexpected_state"
	}
	return ""
}

func codeError(code string) error {
	switch code {
	case "authentication_required":
		return ErrAuthenticationRequired
	case "card_declined":
		return ErrCardDeclined
	case "payment_intent_unexpected_state":
		return ErrUnexpectedState
	}
	return nil
}

func (g *testGateway) loadSession(ctx context.Context, q store.Q, id string, lock bool) (tgSession, error) {
	var s tgSession
	b, err := store.TestGatewayObject(ctx, q, id, lock)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return s, ErrGatewayNotFound.Withf("no such checkout session: %s", id)
		}
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func (g *testGateway) loadIntent(ctx context.Context, q store.Q, id string, lock bool) (tgIntent, error) {
	var p tgIntent
	b, err := store.TestGatewayObject(ctx, q, id, lock)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return p, ErrGatewayNotFound.Withf("no such payment intent: %s", id)
		}
		return p, err
	}
	return p, json.Unmarshal(b, &p)
}

// lapse applies the passing of time, as Stripe does on its side: an open
// session past its expiry expires, a hold older than 7 days is released.
func (g *testGateway) lapseSession(ctx context.Context, tx pgx.Tx, s *tgSession, emit func(string, map[string]any)) error {
	if s.Status == SessionOpen && g.now().Unix() >= s.ExpiresAt {
		s.Status = SessionExpired
		if err := store.PutTestGatewayObject(ctx, tx, s.ID, "checkout.session", s); err != nil {
			return err
		}
		emit("checkout.session.expired", s.stripeJSON())
	}
	return nil
}

func (g *testGateway) lapseIntent(ctx context.Context, tx pgx.Tx, p *tgIntent, emit func(string, map[string]any)) error {
	if p.Status == IntentRequiresCapture && g.now().Sub(time.Unix(p.Created, 0)) > holdLifetime {
		p.Status, p.AmountCapturable = IntentCanceled, 0
		if err := store.PutTestGatewayObject(ctx, tx, p.ID, "payment_intent", p); err != nil {
			return err
		}
		emit("payment_intent.canceled", p.stripeJSON())
	}
	return nil
}

func (g *testGateway) newSession(ctx context.Context, r CheckoutRequest, mode string) (CheckoutSession, error) {
	// Stripe sees expires_at as Unix seconds: so does the fingerprint.
	r.ExpiresAt = time.Unix(r.ExpiresAt.Unix(), 0).UTC()
	var out tgSession
	err := g.idempotent(ctx, r.IdempotencyKey, r, &out, func(tx pgx.Tx, _ func(string, map[string]any)) (any, error) {
		// Stripe checks parameters after replaying a known key.
		if r.ExpiresAt.Sub(g.now()) < 30*time.Minute-time.Minute || r.ExpiresAt.Sub(g.now()) > 24*time.Hour {
			// Stripe's rule: between 30 minutes and 24 hours from now.
			return nil, problem.New(problem.Internal, "invalid_expires_at", "checkout expires_at must be 30 minutes to 24 hours ahead")
		}
		if mode == ModeSetup && r.Customer == "" {
			return nil, problem.New(problem.Internal, "missing_customer", "a setup session needs a customer")
		}
		s := tgSession{
			ID: randomID("cs_test_"), Mode: mode, Status: SessionOpen, AppointmentID: r.AppointmentID,
			Amount: r.Amount, Currency: r.Currency, Customer: r.Customer, Destination: r.Destination,
			ApplicationFee: r.ApplicationFee, SuccessURL: r.SuccessURL, CancelURL: r.CancelURL,
			ExpiresAt: r.ExpiresAt.Unix(),
		}
		return s, store.PutTestGatewayObject(ctx, tx, s.ID, "checkout.session", s)
	})
	if err != nil {
		return CheckoutSession{}, err
	}
	return out.public(g.baseURL), nil
}

// CreateCheckout implements Gateway.
func (g *testGateway) CreateCheckout(ctx context.Context, r CheckoutRequest) (CheckoutSession, error) {
	if r.Amount <= 0 {
		return CheckoutSession{}, problem.New(problem.Internal, "invalid_amount", "amount must be positive")
	}
	return g.newSession(ctx, r, ModePayment)
}

// CreateSetupSession implements Gateway.
func (g *testGateway) CreateSetupSession(ctx context.Context, r CheckoutRequest) (CheckoutSession, error) {
	return g.newSession(ctx, r, ModeSetup)
}

// ExpireCheckout implements Gateway.
func (g *testGateway) ExpireCheckout(ctx context.Context, id, key string) (CheckoutSession, error) {
	var out tgSession
	err := g.tx(ctx, func(tx pgx.Tx, emit func(string, map[string]any)) error {
		s, err := g.loadSession(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if err := g.lapseSession(ctx, tx, &s, emit); err != nil {
			return err
		}
		if s.Status == SessionOpen {
			s.Status = SessionExpired
			if err := store.PutTestGatewayObject(ctx, tx, s.ID, "checkout.session", s); err != nil {
				return err
			}
			emit("checkout.session.expired", s.stripeJSON())
		}
		out = s
		return nil
	})
	return out.public(g.baseURL), err
}

// GetCheckoutSession implements Gateway.
func (g *testGateway) GetCheckoutSession(ctx context.Context, id string) (CheckoutSession, error) {
	var out tgSession
	err := g.tx(ctx, func(tx pgx.Tx, emit func(string, map[string]any)) error {
		s, err := g.loadSession(ctx, tx, id, true)
		if err != nil {
			return err
		}
		out = s
		return g.lapseSession(ctx, tx, &out, emit)
	})
	return out.public(g.baseURL), err
}

// CreateCustomer implements Gateway.
func (g *testGateway) CreateCustomer(ctx context.Context, accountID, key string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := g.idempotent(ctx, key, accountID, &out, func(tx pgx.Tx, _ func(string, map[string]any)) (any, error) {
		c := map[string]any{"id": randomID("cus_test_"), "object": "customer", "metadata": map[string]string{"account_id": accountID}}
		return c, store.PutTestGatewayObject(ctx, tx, c["id"].(string), "customer", c)
	})
	return out.ID, err
}

// AuthorizeOffSession implements Gateway.
func (g *testGateway) AuthorizeOffSession(ctx context.Context, r OffSessionRequest) (PaymentIntent, error) {
	var out tgIntent
	err := g.idempotent(ctx, r.IdempotencyKey, r, &out, func(tx pgx.Tx, emit func(string, map[string]any)) (any, error) {
		p := tgIntent{
			ID: randomID("pi_test_"), Amount: r.Amount, Currency: r.Currency, Customer: r.Customer,
			PaymentMethod: r.PaymentMethod, Destination: r.Destination, ApplicationFee: r.ApplicationFee,
			AppointmentID: r.AppointmentID, Created: g.now().Unix(),
		}
		var opErr error
		switch {
		case strings.HasPrefix(r.PaymentMethod, pmPrefixOK):
			p.Status, p.AmountCapturable = IntentRequiresCapture, r.Amount
			emit("payment_intent.amount_capturable_updated", p.stripeJSON())
		case strings.HasPrefix(r.PaymentMethod, pmPrefixAuth):
			p.Status, p.LastErrorCode = IntentRequiresPaymentMethod, "authentication_required"
			opErr = ErrAuthenticationRequired
			emit("payment_intent.payment_failed", p.stripeJSON())
		default:
			p.Status, p.LastErrorCode = IntentRequiresPaymentMethod, "card_declined"
			opErr = ErrCardDeclined
			emit("payment_intent.payment_failed", p.stripeJSON())
		}
		if err := store.PutTestGatewayObject(ctx, tx, p.ID, "payment_intent", p); err != nil {
			return nil, err
		}
		return p, opErr
	})
	return out.public(), err
}

// Capture implements Gateway.
func (g *testGateway) Capture(ctx context.Context, r CaptureRequest) (PaymentIntent, error) {
	var out tgIntent
	err := g.idempotent(ctx, r.IdempotencyKey, r, &out, func(tx pgx.Tx, emit func(string, map[string]any)) (any, error) {
		p, err := g.loadIntent(ctx, tx, r.PaymentIntent, true)
		if err != nil {
			return nil, err
		}
		if err := g.lapseIntent(ctx, tx, &p, emit); err != nil {
			return nil, err
		}
		if p.Status != IntentRequiresCapture {
			return p, ErrUnexpectedState.Withf("this PaymentIntent is %s; it cannot be captured", p.Status)
		}
		if r.Amount <= 0 || r.Amount > p.AmountCapturable {
			return nil, problem.New(problem.Internal, "invalid_amount_to_capture", "amount_to_capture must be within the hold")
		}
		p.Status, p.AmountReceived, p.AmountCapturable = IntentSucceeded, r.Amount, 0
		if r.Destination {
			p.ApplicationFee = r.ApplicationFee
		}
		if err := store.PutTestGatewayObject(ctx, tx, p.ID, "payment_intent", p); err != nil {
			return nil, err
		}
		emit("payment_intent.succeeded", p.stripeJSON())
		return p, nil
	})
	return out.public(), err
}

// CancelHold implements Gateway.
func (g *testGateway) CancelHold(ctx context.Context, intentID, key string) (PaymentIntent, error) {
	var out tgIntent
	err := g.idempotent(ctx, key, intentID, &out, func(tx pgx.Tx, emit func(string, map[string]any)) (any, error) {
		p, err := g.loadIntent(ctx, tx, intentID, true)
		if err != nil {
			return nil, err
		}
		switch p.Status {
		case IntentRequiresCapture, IntentRequiresPaymentMethod, IntentRequiresAction, IntentRequiresConfirmation:
		default:
			return p, ErrUnexpectedState.Withf("this PaymentIntent is %s; it cannot be canceled", p.Status)
		}
		p.Status, p.AmountCapturable = IntentCanceled, 0
		if err := store.PutTestGatewayObject(ctx, tx, p.ID, "payment_intent", p); err != nil {
			return nil, err
		}
		emit("payment_intent.canceled", p.stripeJSON())
		return p, nil
	})
	return out.public(), err
}

// Refund implements Gateway.
func (g *testGateway) Refund(ctx context.Context, r RefundRequest) (Refund, error) {
	var out Refund
	err := g.idempotent(ctx, r.IdempotencyKey, r, &out, func(tx pgx.Tx, emit func(string, map[string]any)) (any, error) {
		p, err := g.loadIntent(ctx, tx, r.PaymentIntent, true)
		if err != nil {
			return nil, err
		}
		if p.Status != IntentSucceeded || r.Amount <= 0 || r.Amount > p.AmountReceived-p.AmountRefunded {
			return nil, problem.New(problem.Internal, "invalid_refund", "nothing (or not that much) to refund on this PaymentIntent")
		}
		p.AmountRefunded += r.Amount
		if err := store.PutTestGatewayObject(ctx, tx, p.ID, "payment_intent", p); err != nil {
			return nil, err
		}
		rf := Refund{ID: randomID("re_test_"), Amount: r.Amount, Status: "succeeded"}
		if err := store.PutTestGatewayObject(ctx, tx, rf.ID, "refund", rf); err != nil {
			return nil, err
		}
		emit("charge.refunded", map[string]any{
			"id": "ch_" + strings.TrimPrefix(p.ID, "pi_"), "object": "charge", "payment_intent": p.ID,
			"amount": p.AmountReceived, "amount_refunded": p.AmountRefunded, "refunded": p.AmountRefunded == p.AmountReceived,
			"currency": strings.ToLower(p.Currency), "metadata": metadata(p.AppointmentID),
		})
		return rf, nil
	})
	return out, err
}

// GetPaymentIntent implements Gateway.
func (g *testGateway) GetPaymentIntent(ctx context.Context, id string) (PaymentIntent, error) {
	var out tgIntent
	err := g.tx(ctx, func(tx pgx.Tx, emit func(string, map[string]any)) error {
		p, err := g.loadIntent(ctx, tx, id, true)
		if err != nil {
			return err
		}
		out = p
		return g.lapseIntent(ctx, tx, &out, emit)
	})
	return out.public(), err
}

// CreateExpressAccount implements Gateway.
func (g *testGateway) CreateExpressAccount(ctx context.Context, practitionerID, key string) (ConnectAccount, error) {
	var out ConnectAccount
	err := g.idempotent(ctx, key, practitionerID, &out, func(tx pgx.Tx, _ func(string, map[string]any)) (any, error) {
		// Test mode has no onboarding to do: the account can take charges.
		a := ConnectAccount{ID: randomID("acct_test_"), ChargesEnabled: true}
		return a, store.PutTestGatewayObject(ctx, tx, a.ID, "account", a)
	})
	return out, err
}

// AccountLink implements Gateway.
func (g *testGateway) AccountLink(ctx context.Context, accountID, refreshURL, returnURL string) (string, error) {
	if _, err := store.TestGatewayObject(ctx, g.db.Pool, accountID, false); err != nil {
		return "", ErrGatewayNotFound.Withf("no such account: %s", accountID)
	}
	// Test mode onboarding is instant: the link leads straight back.
	return returnURL, nil
}

// pay, decline and saveCard are what the test checkout page does.
func (g *testGateway) pay(ctx context.Context, sessionID, action string) (tgSession, error) {
	var out tgSession
	err := g.tx(ctx, func(tx pgx.Tx, emit func(string, map[string]any)) error {
		s, err := g.loadSession(ctx, tx, sessionID, true)
		if err != nil {
			return err
		}
		if err := g.lapseSession(ctx, tx, &s, emit); err != nil {
			return err
		}
		out = s
		if s.Status != SessionOpen {
			return nil
		}
		switch {
		case s.Mode == ModePayment && (action == "pay" || action == "decline"):
			p := tgIntent{
				ID: s.PaymentIntent, Amount: s.Amount, Currency: s.Currency, Customer: s.Customer,
				PaymentMethod: randomID(pmPrefixOK), Destination: s.Destination, ApplicationFee: s.ApplicationFee,
				AppointmentID: s.AppointmentID, Created: g.now().Unix(),
			}
			if p.ID == "" {
				p.ID = randomID("pi_test_")
			}
			s.PaymentIntent = p.ID
			if action == "pay" {
				p.Status, p.AmountCapturable = IntentRequiresCapture, s.Amount
				s.Status = SessionComplete
			} else {
				p.Status, p.LastErrorCode = IntentRequiresPaymentMethod, "card_declined"
			}
			if err := store.PutTestGatewayObject(ctx, tx, p.ID, "payment_intent", p); err != nil {
				return err
			}
			if err := store.PutTestGatewayObject(ctx, tx, s.ID, "checkout.session", s); err != nil {
				return err
			}
			if action == "pay" {
				emit("checkout.session.completed", s.stripeJSON())
				emit("payment_intent.amount_capturable_updated", p.stripeJSON())
			} else {
				emit("payment_intent.payment_failed", p.stripeJSON())
			}
		case s.Mode == ModeSetup && (action == "save" || action == "save_auth"):
			prefix := pmPrefixOK
			if action == "save_auth" {
				prefix = pmPrefixAuth
			}
			s.PaymentMethod, s.SetupIntent, s.Status = randomID(prefix), randomID("seti_test_"), SessionComplete
			if err := store.PutTestGatewayObject(ctx, tx, s.ID, "checkout.session", s); err != nil {
				return err
			}
			emit("checkout.session.completed", s.stripeJSON())
		case s.Mode == ModeSetup && action == "decline":
			// Setup has no payment to fail: the patient just goes back.
		default:
			return problem.New(problem.Invalid, "bad_action", "unknown test checkout action")
		}
		out = s
		return nil
	})
	return out, err
}

// deliver sends events to our webhook endpoint in the background, signed
// like Stripe's, retrying a few times like Stripe does (which retries for
// three days; an event lost here is what the reconciliation job repairs).
func (g *testGateway) deliver(events []tgEvent) {
	if len(events) == 0 || g.webhookURL == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	g.pending++
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer func() { g.mu.Lock(); g.pending--; g.mu.Unlock() }()
		for _, ev := range events {
			body, err := json.Marshal(map[string]any{
				"id": randomID("evt_test_"), "object": "event", "api_version": stripe.APIVersion,
				"created": g.now().Unix(), "type": ev.typ, "livemode": false, "pending_webhooks": 1,
				"data": map[string]any{"object": ev.object},
			})
			if err != nil {
				g.log.Error("test gateway: encode event", "err", err)
				continue
			}
			g.send(ev.typ, body)
		}
	}()
}

func (g *testGateway) send(typ string, body []byte) {
	backoff := 200 * time.Millisecond
	for attempt := 1; attempt <= 6; attempt++ {
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: g.secret, Timestamp: time.Now()})
		req, err := http.NewRequest(http.MethodPost, g.webhookURL, strings.NewReader(string(body)))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Stripe-Signature", signed.Header)
		req.Header.Set("User-Agent", "teleconsult-test-gateway")
		resp, err := g.http.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		g.log.Warn("test gateway: webhook delivery failed", "type", typ, "attempt", attempt, "err", err)
		select {
		case <-g.stop:
			return
		case <-time.After(backoff):
		}
		backoff *= 3
	}
}

// idle reports whether no delivery is in flight.
func (g *testGateway) idle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending == 0
}

// close stops deliveries and waits for those in flight.
func (g *testGateway) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.stop)
	}
	g.mu.Unlock()
	g.wg.Wait()
}
