package payments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
	"teleconsult/store"
)

// Tuning constants.
const (
	// CheckoutTTL is how long a Checkout Session (and so the slot's hold)
	// stays open. Stripe accepts 30 minutes to 24 hours; the extra minute
	// absorbs clock skew and latency so Stripe never sees less than 30.
	CheckoutTTL = 31 * time.Minute
	// HoldWindow is how far ahead a consult can be for a card hold taken at
	// booking: holds last 7 days, and the capture comes after the consult.
	HoldWindow = 6 * 24 * time.Hour
	// AuthorizeLead is how long before a far consult its saved card is
	// authorised off-session: late enough for the hold to outlast the
	// consult, early enough for the patient to answer their bank.
	AuthorizeLead = 48 * time.Hour
	// actionTTL is how long the patient has to answer their bank (Stripe's
	// maximum checkout lifetime is 24 hours).
	actionTTL = 23 * time.Hour
	// staleAfter is how long an open checkout waits for its webhook before
	// the reconciliation job asks Stripe itself.
	staleAfter = 2 * time.Minute
	// jobLease is how long a node owns a payment it is reconciling.
	jobLease = time.Minute
)

// Problems of the payments service.
var (
	ErrBadSignature  = problem.New(problem.Invalid, "bad_signature", "the webhook signature is missing or not valid")
	ErrNotPaid       = problem.New(problem.NotFound, "not_found", "not found")
	ErrNotAuthorized = problem.New(problem.Conflict, "payment_not_authorized",
		"the payment of this appointment is not authorised")
	ErrInvalidBooking = problem.New(problem.Invalid, "invalid_payment", "this booking cannot be paid")
)

// Config configures the payments service.
type Config struct {
	// SecretKey is STRIPE_SECRET_KEY. Empty means TEST MODE: the in-process
	// test gateway stands in for Stripe.
	SecretKey string
	// WebhookSecret is STRIPE_WEBHOOK_SECRET (whsec_...). In test mode it
	// may be empty: a random one is made for the test gateway.
	WebhookSecret string
	// ConnectWebhookSecret is STRIPE_CONNECT_WEBHOOK_SECRET, the secret of
	// a Connect webhook endpoint (events of practitioners' accounts, such
	// as account.updated) pointed at the same URL. Optional.
	ConnectWebhookSecret string
	// APIBase is STRIPE_API_BASE: another Stripe API base URL (tests).
	APIBase string
	// PlatformFeeBasisPoints is our fee on each charge, in 1/100 of a
	// percent (500 = 5%), taken as application_fee_amount.
	PlatformFeeBasisPoints int
	// NoShowFeePercent is the share of the fee charged for a no-show
	// (0 releases the hold).
	NoShowFeePercent int
	// BaseURL is the service's public URL, for the pages Stripe sends
	// the patient back to (and the test checkout page).
	BaseURL string
	// TestWebhookURL is where the test gateway delivers its events: our
	// own webhook endpoint on loopback, e.g.
	// http://127.0.0.1:8080/api/v1/payments/stripe/webhook.
	TestWebhookURL string
}

// ConfigFromEnv reads STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET,
// STRIPE_CONNECT_WEBHOOK_SECRET, STRIPE_API_BASE, PAYMENTS_PLATFORM_FEE_BPS and
// PAYMENTS_NO_SHOW_FEE_PERCENT with getenv (os.Getenv).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		SecretKey:            getenv("STRIPE_SECRET_KEY"),
		WebhookSecret:        getenv("STRIPE_WEBHOOK_SECRET"),
		ConnectWebhookSecret: getenv("STRIPE_CONNECT_WEBHOOK_SECRET"),
		APIBase:              getenv("STRIPE_API_BASE"),
	}
	for _, v := range []struct {
		name string
		dst  *int
		max  int
	}{{"PAYMENTS_PLATFORM_FEE_BPS", &c.PlatformFeeBasisPoints, 10000}, {"PAYMENTS_NO_SHOW_FEE_PERCENT", &c.NoShowFeePercent, 100}} {
		s := getenv(v.name)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > v.max {
			return c, fmt.Errorf("payments: %s must be an integer from 0 to %d", v.name, v.max)
		}
		*v.dst = n
	}
	return c, nil
}

// Service takes and moves the money of appointments.
type Service struct {
	db   *store.DB
	gw   Gateway
	test *testGateway // nil with real Stripe
	cfg  Config
	log  *slog.Logger
	// skew shifts the service's clock (tests jump ahead with it).
	skew atomic.Int64

	metrics  *metrics
	releaser SlotReleaser

	bg      sync.WaitGroup // background settlements
	closing chan struct{}
	closed  sync.Once
}

// now is the service's clock.
func (s *Service) now() time.Time { return time.Now().Add(time.Duration(s.skew.Load())) }

// New returns the payments service: with real Stripe when cfg.SecretKey is
// set (then cfg.WebhookSecret is required), in TEST MODE otherwise.
func New(db *store.DB, cfg Config, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.PlatformFeeBasisPoints < 0 || cfg.PlatformFeeBasisPoints > 10000 || cfg.NoShowFeePercent < 0 || cfg.NoShowFeePercent > 100 {
		return nil, errors.New("payments: platform fee must be 0-10000 basis points and no-show fee 0-100%")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	s := &Service{db: db, cfg: cfg, log: log.With("component", "payments"), closing: make(chan struct{}), metrics: newMetrics()}
	if cfg.SecretKey != "" {
		if cfg.WebhookSecret == "" {
			return nil, errors.New("payments: STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY")
		}
		s.gw = NewStripeGateway(cfg.SecretKey, cfg.APIBase, nil)
		return s, nil
	}
	if s.cfg.WebhookSecret == "" {
		b := make([]byte, 24)
		rand.Read(b)
		s.cfg.WebhookSecret = "whsec_test_" + hex.EncodeToString(b)
	}
	tg, err := newTestGateway(db, cfg.BaseURL, cfg.TestWebhookURL, s.cfg.WebhookSecret, s.log, s.now)
	if err != nil {
		return nil, err
	}
	s.gw, s.test = tg, tg
	s.log.Warn("payments in TEST MODE: no Stripe key, no real money; checkout pages say so")
	return s, nil
}

// SlotReleaser is told, in the same transaction, that payments freed an
// appointment's slot (an unpaid booking expired, failed or was released),
// so that the slot goes to the waiting list. booking.Service is one.
type SlotReleaser interface {
	Released(ctx context.Context, q store.Q, a store.Appointment) error
}

// SetSlotReleaser sets who is told of slots that payments frees. Call it
// once, before serving (booking and payments each need the other).
func (s *Service) SetSlotReleaser(r SlotReleaser) { s.releaser = r }

// TestMode reports whether the in-process test gateway stands in for Stripe.
func (s *Service) TestMode() bool { return s.test != nil }

// TestCheckoutHandler serves the test checkout pages under
// TestCheckoutPattern, or is nil with real Stripe.
func (s *Service) TestCheckoutHandler() http.Handler {
	if s.test == nil {
		return nil
	}
	return s.test
}

// TestCheckoutPattern is the ServeMux pattern of the test checkout pages.
const TestCheckoutPattern = testCheckoutPath + "{session}"

// Close stops background work (delayed settlements, the test gateway's
// webhook deliveries) and waits for what is in flight.
func (s *Service) Close() {
	s.closed.Do(func() { close(s.closing) })
	s.bg.Wait()
	if s.test != nil {
		s.test.close()
	}
}

// fee returns our platform fee on amount.
func (s *Service) fee(amount int64) int64 {
	return amount * int64(s.cfg.PlatformFeeBasisPoints) / 10000
}

func (s *Service) returnURLs(appointmentID string) (success, cancel string) {
	base := s.cfg.BaseURL + "/appointments/" + appointmentID
	return base + "?payment=done", base + "?payment=cancelled"
}

// StartCheckout creates the payment of an appointment a just inserted in
// pending_payment (its fee, in its currency, paid by its patient account)
// and its Stripe Checkout Session, and returns the URL to send the patient
// to and when it expires (the appointment's hold is set to the same time).
// A consult within HoldWindow gets a card hold (mode=payment,
// capture_method=manual); a later one saves the card (mode=setup) for an
// off-session authorisation AuthorizeLead before.
//
// q may be the booking's transaction (then a Stripe failure rolls the
// booking back) or the pool after the booking committed (then the caller
// releases the slot on error). Either way, a lost answer from Stripe is
// repaired by Reconcile with the same idempotency key.
func (s *Service) StartCheckout(ctx context.Context, q store.Q, a store.Appointment) (checkoutURL string, expiresAt time.Time, err error) {
	if a.Status != store.StatusPendingPayment || a.FeeCents <= 0 || len(a.Currency) != 3 || strings.ToUpper(a.Currency) != a.Currency {
		return "", time.Time{}, ErrInvalidBooking.With("only a pending paid booking with an ISO currency can be paid")
	}
	now := s.now()
	// The expiry is stored before Stripe is called: a repair after a
	// crash sends the very same request, which the idempotency key makes
	// return the session already created.
	exp := now.Add(CheckoutTTL).Truncate(time.Second)
	p := store.Payment{
		AppointmentID: a.ID, PatientID: a.PatientID, PractitionerID: a.PractitionerID,
		State: store.PaymentCheckoutOpen, Amount: int64(a.FeeCents), Currency: a.Currency,
		CheckoutExpiresAt: &exp,
	}
	if acct, err := store.PayoutAccountOf(ctx, q, a.PractitionerID); err == nil && acct.ChargesEnabled {
		p.Destination, p.ApplicationFee = acct.Account, s.fee(p.Amount)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", time.Time{}, err
	}
	if a.StartsAt.Sub(now) > HoldWindow {
		p.State = store.PaymentSetupOpen
		authAt := a.StartsAt.Add(-AuthorizeLead)
		p.AuthorizeAt = &authAt
		if p.Customer, err = s.customer(ctx, q, a.PatientID); err != nil {
			return "", time.Time{}, err
		}
	}
	if err := store.InsertPayment(ctx, q, p); err != nil {
		return "", time.Time{}, err
	}
	cs, err := s.createSession(ctx, p)
	if err != nil {
		return "", time.Time{}, err
	}
	p.CheckoutSession, p.CheckoutURL = cs.ID, cs.URL
	if err := store.UpdatePayment(ctx, q, p); err != nil {
		return "", time.Time{}, err
	}
	if err := store.ExtendHold(ctx, q, a.ID, exp); err != nil {
		return "", time.Time{}, err
	}
	return cs.URL, exp, nil
}

// createSession sends the checkout request of p (payment or setup mode,
// from its state) with its idempotency key.
func (s *Service) createSession(ctx context.Context, p store.Payment) (CheckoutSession, error) {
	success, cancel := s.returnURLs(p.AppointmentID)
	r := CheckoutRequest{
		AppointmentID: p.AppointmentID, Amount: p.Amount, Currency: p.Currency, Customer: p.Customer,
		Destination: p.Destination, ApplicationFee: p.ApplicationFee, SuccessURL: success, CancelURL: cancel,
		ExpiresAt: *p.CheckoutExpiresAt,
	}
	if p.State == store.PaymentSetupOpen {
		r.IdempotencyKey = setupKey(p.AppointmentID)
		return s.gw.CreateSetupSession(ctx, r)
	}
	r.IdempotencyKey = checkoutKey(p.AppointmentID)
	return s.gw.CreateCheckout(ctx, r)
}

// customer returns the patient's Stripe customer, creating it once.
func (s *Service) customer(ctx context.Context, q store.Q, accountID string) (string, error) {
	c, err := store.PaymentCustomer(ctx, q, accountID)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	c, err = s.gw.CreateCustomer(ctx, accountID, customerKey(accountID))
	if err != nil {
		return "", err
	}
	if err := store.SavePaymentCustomer(ctx, q, accountID, c); err != nil {
		return "", err
	}
	return store.PaymentCustomer(ctx, q, accountID)
}

// Payment returns the payment of an appointment.
func (s *Service) Payment(ctx context.Context, appointmentID string) (store.Payment, error) {
	return store.PaymentOf(ctx, s.db.Pool, appointmentID)
}

// observation is what Stripe says of a payment, after reading its objects.
type observation struct {
	state         string // the payment state Stripe's objects amount to; "" if nothing new
	intent        string
	paymentMethod string
	customer      string
	captured      int64
	refunded      int64
}

// observeIntent reads a PaymentIntent as a payment state.
func observeIntent(pi PaymentIntent) observation {
	o := observation{intent: pi.ID, customer: pi.Customer, paymentMethod: pi.PaymentMethod}
	switch pi.Status {
	case IntentRequiresCapture:
		o.state = store.PaymentAuthorized
	case IntentSucceeded:
		o.state, o.captured = store.PaymentCaptured, pi.AmountReceived
	case IntentCanceled:
		o.state = store.PaymentCanceled
	}
	return o
}

// observe asks Stripe where payment p stands. Re-reading the objects
// (rather than trusting an event's copy) makes duplicate and out-of-order
// events harmless.
func (s *Service) observe(ctx context.Context, p store.Payment) (observation, error) {
	switch p.State {
	case store.PaymentCheckoutOpen, store.PaymentSetupOpen, store.PaymentActionRequired:
		if p.CheckoutSession == "" {
			return observation{}, nil
		}
		cs, err := s.gw.GetCheckoutSession(ctx, p.CheckoutSession)
		if err != nil {
			return observation{}, err
		}
		return s.observeSession(ctx, p, cs, true)
	case store.PaymentCardSaved:
		return observation{}, nil
	}
	if p.PaymentIntent == "" {
		return observation{}, nil
	}
	pi, err := s.gw.GetPaymentIntent(ctx, p.PaymentIntent)
	if err != nil {
		return observation{}, err
	}
	return observeIntent(pi), nil
}

func (s *Service) observeSession(ctx context.Context, p store.Payment, cs CheckoutSession, mayExpire bool) (observation, error) {
	switch cs.Status {
	case SessionComplete:
		if cs.Mode == ModeSetup {
			return observation{state: store.PaymentCardSaved, paymentMethod: cs.PaymentMethod, customer: cs.Customer}, nil
		}
		if cs.PaymentIntent == "" {
			return observation{}, nil
		}
		pi, err := s.gw.GetPaymentIntent(ctx, cs.PaymentIntent)
		if err != nil {
			return observation{}, err
		}
		return observeIntent(pi), nil
	case SessionExpired:
		if p.State == store.PaymentActionRequired {
			return observation{state: store.PaymentFailed}, nil
		}
		if cs.PaymentIntent != "" {
			// Ended by a decline rather than by time: it failed.
			pi, err := s.gw.GetPaymentIntent(ctx, cs.PaymentIntent)
			if err != nil {
				return observation{}, err
			}
			if pi.LastErrorCode != "" {
				return observation{state: store.PaymentFailed, intent: pi.ID}, nil
			}
		}
		return observation{state: store.PaymentExpired}, nil
	}
	// Open. A declined card ends the checkout: it is expired at Stripe (so
	// it cannot be paid after the slot is freed) and the slot is freed.
	if cs.PaymentIntent == "" || !mayExpire {
		return observation{}, nil
	}
	pi, err := s.gw.GetPaymentIntent(ctx, cs.PaymentIntent)
	if err != nil {
		return observation{}, err
	}
	if pi.Status != IntentRequiresPaymentMethod || pi.LastErrorCode == "" {
		return observation{}, nil
	}
	cs, err = s.gw.ExpireCheckout(ctx, cs.ID, expireKey(p.AppointmentID, cs.ID))
	if err != nil {
		return observation{}, err
	}
	if cs.Status == SessionComplete {
		return s.observeSession(ctx, p, cs, false)
	}
	return observation{state: store.PaymentFailed, intent: pi.ID}, nil
}

// allowed mirrors payment_transition_allowed in 003_payments.sql (the
// trigger there is the backstop).
var allowed = map[string][]string{
	store.PaymentCheckoutOpen:   {store.PaymentAuthorized, store.PaymentExpired, store.PaymentFailed, store.PaymentCanceled},
	store.PaymentSetupOpen:      {store.PaymentCardSaved, store.PaymentExpired, store.PaymentFailed, store.PaymentCanceled},
	store.PaymentCardSaved:      {store.PaymentAuthorized, store.PaymentActionRequired, store.PaymentFailed, store.PaymentCanceled},
	store.PaymentActionRequired: {store.PaymentAuthorized, store.PaymentFailed, store.PaymentCanceled},
	store.PaymentAuthorized:     {store.PaymentCaptured, store.PaymentCanceled},
	store.PaymentCaptured:       {store.PaymentRefunded},
	store.PaymentExpired:        {store.PaymentCanceled},
	store.PaymentFailed:         {store.PaymentCanceled},
}

func transitionAllowed(from, to string) bool {
	for _, s := range allowed[from] {
		if s == to {
			return true
		}
	}
	return false
}

// openStates are the payment states in which the appointment waits for
// the patient's card.
func open(state string) bool {
	return state == store.PaymentCheckoutOpen || state == store.PaymentSetupOpen || state == store.PaymentActionRequired
}

// apply records observation o on the payment of an appointment and moves
// the appointment accordingly, in one transaction. With an event id, the
// event is marked processed in the same transaction, and an event already
// processed changes nothing. It reports whether the payment needs
// settling (a hold arrived for an appointment that is gone).
func (s *Service) apply(ctx context.Context, eventID, eventType, appointmentID string, o observation) (settle bool, err error) {
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		settle = false
		if eventID != "" {
			fresh, err := store.MarkStripeEvent(ctx, tx, eventID, eventType)
			if err != nil || !fresh {
				return err
			}
		}
		// Lock order, as booking does: the practitioner, then the
		// payment, then the appointment.
		p, err := store.PaymentOf(ctx, tx, appointmentID)
		if err != nil {
			return err
		}
		if err := store.LockPractitioner(ctx, tx, p.PractitionerID); err != nil {
			return err
		}
		if p, err = store.LockPayment(ctx, tx, appointmentID); err != nil {
			return err
		}
		settle, err = s.applyLocked(ctx, tx, &p, o)
		return err
	})
	return settle, err
}

// release moves appointment a out of its slot (to expired or cancelled)
// and tells the releaser, in transaction tx.
func (s *Service) release(ctx context.Context, tx pgx.Tx, a store.Appointment, from, to, note string) error {
	if err := store.TransitionAppointment(ctx, tx, a.ID, []string{from}, to, "", note); err != nil {
		return err
	}
	if s.releaser != nil {
		return s.releaser.Released(ctx, tx, a)
	}
	return nil
}

func (s *Service) applyLocked(ctx context.Context, tx pgx.Tx, p *store.Payment, o observation) (settle bool, err error) {
	now := s.now()
	from := p.State
	if o.intent != "" && p.PaymentIntent == "" {
		p.PaymentIntent = o.intent
	}
	if o.paymentMethod != "" && p.PaymentMethod == "" {
		p.PaymentMethod = o.paymentMethod
	}
	if o.customer != "" && p.Customer == "" {
		p.Customer = o.customer
	}
	if o.refunded > p.AmountRefunded && o.refunded <= p.AmountCaptured {
		p.AmountRefunded = o.refunded
		p.RefundedAt = &now
		if p.State == store.PaymentCaptured {
			o.state = store.PaymentRefunded
		}
	}
	move := o.state != "" && o.state != from && transitionAllowed(from, o.state)
	if o.state != "" && o.state != from && !move {
		s.log.Info("stale payment news ignored", "appointment_id", p.AppointmentID, "state", from, "news", o.state)
	}
	if move {
		p.State = o.state
		switch o.state {
		case store.PaymentAuthorized:
			p.AuthorizedAt = &now
			p.ActionDeadline = nil
		case store.PaymentCaptured:
			p.AmountCaptured, p.CapturedAt = o.captured, &now
		}
	}
	if err := store.UpdatePayment(ctx, tx, *p); err != nil {
		return false, err
	}
	if !move {
		return false, nil
	}
	appt, err := store.LockAppointment(ctx, tx, p.AppointmentID)
	if err != nil {
		return false, err
	}
	switch {
	case o.state == store.PaymentAuthorized || o.state == store.PaymentCardSaved:
		switch appt.Status {
		case store.StatusPendingPayment:
			note := "payment authorised"
			if o.state == store.PaymentCardSaved {
				note = "card saved; authorised 48 hours before"
			}
			if err := store.TransitionAppointment(ctx, tx, appt.ID, []string{store.StatusPendingPayment}, store.StatusConfirmed, "", note); err != nil {
				return false, err
			}
		case store.StatusCancelled, store.StatusExpired:
			// Paid after the slot was given up: the hold is released next.
			return true, nil
		}
	case open(from) && (o.state == store.PaymentExpired || o.state == store.PaymentFailed || o.state == store.PaymentCanceled):
		switch appt.Status {
		case store.StatusPendingPayment:
			note := "checkout expired"
			if o.state == store.PaymentFailed {
				note = "payment failed"
			}
			return false, s.release(ctx, tx, appt, store.StatusPendingPayment, store.StatusExpired, note)
		case store.StatusConfirmed:
			if from != store.PaymentActionRequired {
				return false, nil
			}
			// The patient did not confirm the payment their bank asked
			// for: the appointment is released.
			if err := s.release(ctx, tx, appt, store.StatusConfirmed, store.StatusCancelled, "payment not authorised"); err != nil {
				return false, err
			}
			return false, store.Enqueue(ctx, tx, store.OutboxEvent{
				Kind: store.EventAppointmentCancelled, RecipientID: appt.PatientID, AppointmentID: appt.ID,
				Data: map[string]string{"by": "payment"},
			})
		}
	}
	return false, nil
}

// record applies o and settles the payment when needed.
func (s *Service) record(ctx context.Context, appointmentID string, o observation) error {
	settle, err := s.apply(ctx, "", "", appointmentID, o)
	if err != nil {
		return err
	}
	if settle {
		return s.settle(ctx, appointmentID)
	}
	return nil
}

// OnCompleted captures the hold of a completed consultation. A free
// appointment (no payment) is not an error. Safe to call again: the
// capture's idempotency key makes a retry the same request.
func (s *Service) OnCompleted(ctx context.Context, appointmentID string) error {
	p, err := store.PaymentOf(ctx, s.db.Pool, appointmentID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	switch p.State {
	case store.PaymentCaptured, store.PaymentRefunded:
		return nil
	case store.PaymentAuthorized:
		return s.capture(ctx, p, p.Amount, captureKey(appointmentID))
	}
	return ErrNotAuthorized.Withf("the payment of this appointment is %s", p.State)
}

// OnNoShow charges the no-show fee (NoShowFeePercent of the hold) and
// releases the rest, or releases it all when the fee is 0.
func (s *Service) OnNoShow(ctx context.Context, appointmentID string) error {
	p, err := store.PaymentOf(ctx, s.db.Pool, appointmentID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.State != store.PaymentAuthorized {
		return s.settle(ctx, appointmentID)
	}
	fee := p.Amount * int64(s.cfg.NoShowFeePercent) / 100
	if fee == 0 {
		return s.cancelHold(ctx, p)
	}
	return s.capture(ctx, p, fee, noShowKey(appointmentID))
}

// AppointmentCancelled is booking's PaymentRelease hook, called inside the
// cancellation's transaction q. Stripe is not called from there (the
// transaction could still roll back): the payment is settled a moment
// after, once the cancellation is visible, and the reconciliation job
// settles it in any case.
func (s *Service) AppointmentCancelled(ctx context.Context, q store.Q, a store.Appointment, byPatient bool) error {
	if _, err := store.PaymentOf(ctx, q, a.ID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil // a free consultation
		}
		return err
	}
	s.later(settleDelay, func(ctx context.Context) {
		if err := s.OnCancelled(ctx, a.ID, !byPatient); err != nil {
			s.log.Warn("settle cancelled appointment", "appointment_id", a.ID, "err", err)
		}
	})
	return nil
}

// settleDelay lets the cancelling transaction commit before the payment
// is settled; if it takes longer, the reconciliation job does it.
const settleDelay = time.Second

// later runs fn after d in the background, unless the service is closed.
func (s *Service) later(d time.Duration, fn func(ctx context.Context)) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		select {
		case <-s.closing:
			return
		case <-time.After(d):
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fn(ctx)
	}()
}

// OnCancelled settles the payment of a cancelled appointment: an open
// checkout is expired, a saved card forgotten, a hold released (free).
// After a capture, the policy refunds in full when the practitioner
// cancelled, and nothing otherwise.
func (s *Service) OnCancelled(ctx context.Context, appointmentID string, byPractitioner bool) error {
	p, err := store.PaymentOf(ctx, s.db.Pool, appointmentID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.State == store.PaymentCaptured {
		if !byPractitioner {
			return nil
		}
		return s.refund(ctx, p, p.AmountCaptured-p.AmountRefunded)
	}
	return s.settle(ctx, appointmentID)
}

func (s *Service) capture(ctx context.Context, p store.Payment, amount int64, key string) error {
	r := CaptureRequest{PaymentIntent: p.PaymentIntent, Amount: amount, IdempotencyKey: key}
	if p.Destination != "" {
		r.Destination, r.ApplicationFee = true, p.ApplicationFee*amount/p.Amount
	}
	pi, err := s.gw.Capture(ctx, r)
	if errors.Is(err, ErrUnexpectedState) {
		// Captured (or released) already, e.g. by a run that crashed
		// before writing it down: read what Stripe has.
		pi, err = s.gw.GetPaymentIntent(ctx, p.PaymentIntent)
	}
	if err != nil {
		return err
	}
	return s.record(ctx, p.AppointmentID, observeIntent(pi))
}

func (s *Service) cancelHold(ctx context.Context, p store.Payment) error {
	pi, err := s.gw.CancelHold(ctx, p.PaymentIntent, cancelKey(p.AppointmentID))
	if errors.Is(err, ErrUnexpectedState) {
		pi, err = s.gw.GetPaymentIntent(ctx, p.PaymentIntent)
	}
	if err != nil {
		return err
	}
	return s.record(ctx, p.AppointmentID, observeIntent(pi))
}

func (s *Service) refund(ctx context.Context, p store.Payment, amount int64) error {
	if amount <= 0 {
		return nil
	}
	r := RefundRequest{PaymentIntent: p.PaymentIntent, Amount: amount, IdempotencyKey: refundKey(p.AppointmentID)}
	if p.Destination != "" {
		r.ReverseTransfer, r.RefundApplicationFee = true, true
	}
	rf, err := s.gw.Refund(ctx, r)
	if err != nil {
		return err
	}
	return s.record(ctx, p.AppointmentID, observation{refunded: p.AmountRefunded + rf.Amount})
}

// settle brings the payment of an appointment in line with Stripe and
// with the appointment: it finishes a checkout whose webhook never came,
// re-sends a checkout whose creation was lost, expires a checkout whose
// slot is gone, authorises a saved card when due, and captures or releases
// a hold whose consultation is over or cancelled. Every step is
// idempotent, so two nodes settling one payment do no harm.
func (s *Service) settle(ctx context.Context, appointmentID string) error {
	p, err := store.PaymentOf(ctx, s.db.Pool, appointmentID)
	if err != nil {
		return err
	}
	appt, err := store.AppointmentByID(ctx, s.db.Pool, appointmentID)
	if err != nil {
		return err
	}
	now := s.now()
	switch p.State {
	case store.PaymentCheckoutOpen, store.PaymentSetupOpen, store.PaymentActionRequired:
		if p.CheckoutSession == "" && p.CheckoutExpiresAt != nil {
			// The answer to our checkout request was lost: the same
			// request returns the same session.
			cs, err := s.createSession(ctx, p)
			if err != nil {
				return err
			}
			if err := s.db.Tx(ctx, func(tx pgx.Tx) error {
				lp, err := store.LockPayment(ctx, tx, appointmentID)
				if err != nil || lp.CheckoutSession != "" {
					return err
				}
				lp.CheckoutSession, lp.CheckoutURL = cs.ID, cs.URL
				return store.UpdatePayment(ctx, tx, lp)
			}); err != nil {
				return err
			}
			p.CheckoutSession = cs.ID
		}
		o, err := s.observe(ctx, p)
		if err != nil {
			return err
		}
		gone := appt.Status != store.StatusPendingPayment && !(p.State == store.PaymentActionRequired && appt.Status == store.StatusConfirmed)
		lapsed := p.CheckoutExpiresAt != nil && !now.Before(*p.CheckoutExpiresAt)
		if o.state == "" && p.CheckoutSession != "" && (gone || lapsed) {
			cs, err := s.gw.ExpireCheckout(ctx, p.CheckoutSession, expireKey(appointmentID, p.CheckoutSession))
			if err != nil {
				return err
			}
			if o, err = s.observeSession(ctx, p, cs, false); err != nil {
				return err
			}
			if o.state == "" {
				o.state = store.PaymentExpired
			}
		}
		if o.state == "" && gone && p.CheckoutSession == "" {
			o.state = store.PaymentCanceled
		}
		if gone && o.state == store.PaymentExpired {
			o.state = store.PaymentCanceled
		}
		return s.record(ctx, appointmentID, o)
	case store.PaymentCardSaved:
		if appt.Status != store.StatusPendingPayment && appt.Status != store.StatusConfirmed {
			return s.record(ctx, appointmentID, observation{state: store.PaymentCanceled})
		}
		// From the current start: the appointment may have been moved.
		if authAt := appt.StartsAt.Add(-AuthorizeLead); !now.Before(authAt) {
			return s.authorizeOffSession(ctx, p, appt)
		}
	case store.PaymentAuthorized:
		switch appt.Status {
		case store.StatusConfirmed, store.StatusArrived, store.StatusInProgress:
			if p.AuthorizedAt != nil && now.Sub(*p.AuthorizedAt) > holdLifetime {
				// Stripe releases a hold after 7 days: learn if it has.
				o, err := s.observe(ctx, p)
				if err != nil {
					return err
				}
				return s.record(ctx, appointmentID, o)
			}
		case store.StatusCompleted:
			return s.capture(ctx, p, p.Amount, captureKey(appointmentID))
		case store.StatusNoShow:
			return s.OnNoShow(ctx, appointmentID)
		case store.StatusCancelled, store.StatusExpired:
			return s.cancelHold(ctx, p)
		}
	}
	return nil
}

// authorizeOffSession puts the hold on a saved card. When the bank wants
// the patient, they get a Checkout link by email (payment.action_required)
// valid until shortly before the consult; if they do not use it, the
// checkout expires and the appointment is released.
func (s *Service) authorizeOffSession(ctx context.Context, p store.Payment, appt store.Appointment) error {
	pi, err := s.gw.AuthorizeOffSession(ctx, OffSessionRequest{
		AppointmentID: p.AppointmentID, Customer: p.Customer, PaymentMethod: p.PaymentMethod,
		Amount: p.Amount, Currency: p.Currency, Destination: p.Destination, ApplicationFee: p.ApplicationFee,
		IdempotencyKey: authorizeKey(p.AppointmentID),
	})
	if err == nil {
		return s.record(ctx, p.AppointmentID, observeIntent(pi))
	}
	if !errors.Is(err, ErrAuthenticationRequired) && !errors.Is(err, ErrCardDeclined) {
		return err
	}
	if pi.ID != "" {
		if _, err := s.gw.CancelHold(ctx, pi.ID, cancelOffSessionKey(p.AppointmentID)); err != nil && !errors.Is(err, ErrUnexpectedState) {
			s.log.Warn("cancel failed off-session intent", "appointment_id", p.AppointmentID, "err", err)
		}
	}
	// Deterministic from our own data, so that a retry is the same request.
	deadline := appt.StartsAt.Add(-AuthorizeLead + actionTTL)
	if last := appt.StartsAt.Add(-time.Hour); deadline.After(last) {
		deadline = last
	}
	if min := s.now().Add(CheckoutTTL); deadline.Before(min) {
		deadline = min.Truncate(time.Second)
	}
	success, cancel := s.returnURLs(p.AppointmentID)
	cs, err := s.gw.CreateCheckout(ctx, CheckoutRequest{
		AppointmentID: p.AppointmentID, Amount: p.Amount, Currency: p.Currency, Customer: p.Customer,
		Destination: p.Destination, ApplicationFee: p.ApplicationFee, SuccessURL: success, CancelURL: cancel,
		ExpiresAt: deadline, IdempotencyKey: actionCheckoutKey(p.AppointmentID),
	})
	if err != nil {
		return err
	}
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		lp, err := store.LockPayment(ctx, tx, p.AppointmentID)
		if err != nil || lp.State != store.PaymentCardSaved {
			return err
		}
		lp.State, lp.CheckoutSession, lp.CheckoutURL = store.PaymentActionRequired, cs.ID, cs.URL
		lp.CheckoutExpiresAt, lp.ActionDeadline = &cs.ExpiresAt, &cs.ExpiresAt
		if err := store.UpdatePayment(ctx, tx, lp); err != nil {
			return err
		}
		return store.Enqueue(ctx, tx, store.OutboxEvent{
			Kind: store.EventPaymentActionRequired, RecipientID: lp.PatientID, AppointmentID: lp.AppointmentID,
			Data: map[string]string{"url": cs.URL, "deadline": cs.ExpiresAt.UTC().Format(time.RFC3339)},
		})
	})
}

// View is the payment of an appointment as its patient or practitioner
// sees it.
type View struct {
	State          string     `json:"state"`
	Amount         int64      `json:"amount_cents"`
	Currency       string     `json:"currency"`
	CheckoutURL    string     `json:"checkout_url,omitempty"` // the patient's, while the checkout is open
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`   // of that checkout
	AuthorizeAt    *time.Time `json:"authorize_at,omitempty"` // when a saved card is authorised
	AmountCaptured int64      `json:"captured_cents"`
	AmountRefunded int64      `json:"refunded_cents"`
	PaidAt         *time.Time `json:"paid_at,omitempty"`
	TestMode       bool       `json:"test_mode"`
}

// ViewFor returns the payment of an appointment to its patient or its
// practitioner; anyone else gets ErrNotFound, as for a free appointment.
func (s *Service) ViewFor(ctx context.Context, appointmentID, accountID string) (View, error) {
	p, err := store.PaymentOf(ctx, s.db.Pool, appointmentID)
	if err != nil {
		return View{}, err
	}
	if accountID == "" || (accountID != p.PatientID && accountID != p.PractitionerID) {
		return View{}, store.ErrNotFound.With("payment not found")
	}
	if p.State == store.PaymentCardSaved {
		appt, err := store.AppointmentByID(ctx, s.db.Pool, appointmentID)
		if err != nil {
			return View{}, err
		}
		at := appt.StartsAt.Add(-AuthorizeLead)
		p.AuthorizeAt = &at
	} else {
		p.AuthorizeAt = nil
	}
	v := View{State: p.State, Amount: p.Amount, Currency: p.Currency, AuthorizeAt: p.AuthorizeAt,
		AmountCaptured: p.AmountCaptured, AmountRefunded: p.AmountRefunded, PaidAt: p.CapturedAt, TestMode: s.TestMode()}
	if open(p.State) && accountID == p.PatientID && p.CheckoutURL != "" {
		v.CheckoutURL, v.ExpiresAt = p.CheckoutURL, p.CheckoutExpiresAt
	}
	return v, nil
}

// WebhookPath is where Stripe (and the test gateway) deliver events.
const WebhookPath = "/api/v1/payments/stripe/webhook"

// LoopbackWebhookURL returns our webhook endpoint on the loopback
// interface for a server listening on listenAddr (":8080",
// "0.0.0.0:8080", "[::]:8080", "127.0.0.1:8080"): where the test gateway
// delivers its events in TEST MODE.
func LoopbackWebhookURL(listenAddr string) (string, error) {
	_, port, err := net.SplitHostPort(listenAddr)
	if err != nil || port == "" || port == "0" {
		return "", fmt.Errorf("payments: listen address %q has no port", listenAddr)
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + WebhookPath, nil
}

// Summary is a payment as an operator sees it: ids and amounts, no
// card or health data.
type Summary struct {
	AppointmentID  string    `json:"appointment_id"`
	Status         string    `json:"status"`
	Amount         int64     `json:"amount_cents"`
	Currency       string    `json:"currency"`
	AmountCaptured int64     `json:"captured_cents"`
	AmountRefunded int64     `json:"refunded_cents"`
	PaymentIntent  string    `json:"payment_intent,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// ErrBadState is a payment state filter that is not one.
var ErrBadState = problem.New(problem.Invalid, "bad_status", "status must be a payment state")

var paymentStates = []string{store.PaymentCheckoutOpen, store.PaymentSetupOpen, store.PaymentCardSaved,
	store.PaymentActionRequired, store.PaymentAuthorized, store.PaymentCaptured, store.PaymentRefunded,
	store.PaymentCanceled, store.PaymentFailed, store.PaymentExpired}

// Recent lists the 100 most recently changed payments in a state (any
// when state is empty), for the operators' page.
func (s *Service) Recent(ctx context.Context, state string) ([]Summary, error) {
	if state != "" && !slices.Contains(paymentStates, state) {
		return nil, ErrBadState.Withf("status must be one of %s", strings.Join(paymentStates, ", "))
	}
	ps, err := store.RecentPayments(ctx, s.db.Pool, state, 100)
	if err != nil {
		return nil, err
	}
	out := make([]Summary, 0, len(ps))
	for _, p := range ps {
		out = append(out, Summary{AppointmentID: p.AppointmentID, Status: p.State, Amount: p.Amount, Currency: p.Currency,
			AmountCaptured: p.AmountCaptured, AmountRefunded: p.AmountRefunded, PaymentIntent: p.PaymentIntent,
			CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt})
	}
	return out, nil
}

// ErrBeyondHold is a reschedule that would put the consultation after the
// card hold lapses (Stripe keeps an uncaptured hold for 7 days).
var ErrBeyondHold = problem.New(problem.Conflict, "beyond_card_hold",
	"this appointment's payment cannot be held that long; please cancel it (free) and book the new date")

// CheckReschedule tells booking whether appointment a may move to start
// at newStart as far as its payment goes: a card hold taken at booking
// must still be valid at the end of the consult. A saved card (far
// booking) follows the appointment, and a free appointment may move
// anywhere.
func (s *Service) CheckReschedule(ctx context.Context, q store.Q, a store.Appointment, newStart time.Time) error {
	p, err := store.PaymentOf(ctx, q, a.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.State != store.PaymentAuthorized || p.AuthorizedAt == nil {
		return nil
	}
	end := newStart.Add(a.EndsAt.Sub(a.StartsAt))
	// The consult must end a day before the hold lapses, to leave time
	// for the capture.
	if end.After(p.AuthorizedAt.Add(holdLifetime - 24*time.Hour)) {
		return ErrBeyondHold
	}
	return nil
}
