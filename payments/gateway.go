// Package payments takes the money for consultations through Stripe: a
// card hold (manual capture) taken through Checkout at booking and
// captured after the consult, or, for a consult more than six days away,
// a card saved at booking and authorised off-session about 48 hours
// before. Practitioners are paid through Stripe Connect destination
// charges with a platform fee.
//
// Stripe is behind the small Gateway interface, with two implementations:
// stripeGateway (stripe-go against api.stripe.com or STRIPE_API_BASE) and
// testGateway, an in-process stand-in used when no key is configured,
// which keeps Stripe-like state in PostgreSQL, serves a test checkout page
// and delivers signed webhooks to our own endpoint.
//
// The payment state of an appointment only ever moves forward (a trigger
// in the database refuses anything else), every Stripe event is applied at
// most once (its id is inserted in the same transaction as its effect),
// and every call that creates or moves money carries an idempotency key
// derived from our own ids, so a retry after a crash never charges twice.
// No health data goes to Stripe: descriptions say "Consultation" and
// metadata carries the opaque appointment id only.
package payments

import (
	"context"
	"time"

	"teleconsult/problem"
)

// Checkout modes.
const (
	ModePayment = "payment" // take a card hold now
	ModeSetup   = "setup"   // save the card for a later hold
)

// Checkout Session statuses, as Stripe names them.
const (
	SessionOpen     = "open"
	SessionComplete = "complete"
	SessionExpired  = "expired"
)

// PaymentIntent statuses, as Stripe names them.
const (
	IntentRequiresPaymentMethod = "requires_payment_method"
	IntentRequiresConfirmation  = "requires_confirmation"
	IntentRequiresAction        = "requires_action"
	IntentProcessing            = "processing"
	IntentRequiresCapture       = "requires_capture"
	IntentCanceled              = "canceled"
	IntentSucceeded             = "succeeded"
)

// Description is the only description we ever give Stripe: no specialty,
// reason or consultation type, which could be health data.
const Description = "Consultation"

// Gateway problems.
var (
	// ErrAuthenticationRequired is the bank asking the card holder to
	// authenticate an off-session payment (3-D Secure).
	ErrAuthenticationRequired = problem.New(problem.Conflict, "authentication_required", "your bank asks you to confirm this payment")
	// ErrCardDeclined is the card being refused.
	ErrCardDeclined = problem.New(problem.Conflict, "card_declined", "the card was declined")
	// ErrUnexpectedState is Stripe refusing an operation because the
	// object is not in a state that allows it (e.g. capturing twice).
	ErrUnexpectedState = problem.New(problem.Conflict, "payment_state", "the payment is not in a state that allows this")
	// ErrGatewayNotFound is an object Stripe does not know.
	ErrGatewayNotFound = problem.New(problem.NotFound, "payment_not_found", "payment not found")
	// ErrGatewayUnavailable is Stripe (or the network to it) failing.
	ErrGatewayUnavailable = problem.New(problem.Unavailable, "payments_unavailable", "the payment service is not available; please try again in a moment")
)

// CheckoutRequest asks for a Checkout Session.
type CheckoutRequest struct {
	AppointmentID  string
	Amount         int64  // minor units (cents); payment mode
	Currency       string // ISO 4217, upper case
	Customer       string // Stripe customer; required in setup mode
	Destination    string // practitioner's Connect account, or "" for none
	ApplicationFee int64  // platform fee, with Destination
	SuccessURL     string
	CancelURL      string
	ExpiresAt      time.Time
	IdempotencyKey string
}

// CheckoutSession is what we need of a Stripe Checkout Session.
type CheckoutSession struct {
	ID            string
	URL           string
	Mode          string // ModePayment or ModeSetup
	Status        string // SessionOpen, SessionComplete, SessionExpired
	PaymentIntent string // payment mode, once the patient has paid (or tried)
	PaymentMethod string // setup mode, once the card is saved
	Customer      string
	ExpiresAt     time.Time
	AppointmentID string // from metadata
}

// OffSessionRequest asks for a card hold on a saved card, without the
// card holder present.
type OffSessionRequest struct {
	AppointmentID  string
	Customer       string
	PaymentMethod  string
	Amount         int64
	Currency       string
	Destination    string
	ApplicationFee int64
	IdempotencyKey string
}

// PaymentIntent is what we need of a Stripe PaymentIntent.
type PaymentIntent struct {
	ID               string
	Status           string // Intent* constants
	Amount           int64
	AmountCapturable int64
	AmountReceived   int64
	Currency         string
	Customer         string
	PaymentMethod    string
	LastErrorCode    string // why the last attempt failed, if it did
	AppointmentID    string // from metadata
}

// CaptureRequest charges (part of) a hold.
type CaptureRequest struct {
	PaymentIntent  string
	Amount         int64 // at most the hold; the rest is released
	ApplicationFee int64 // for a destination charge; 0 otherwise
	Destination    bool  // whether the intent is a destination charge
	IdempotencyKey string
}

// RefundRequest gives money back after a capture.
type RefundRequest struct {
	PaymentIntent        string
	Amount               int64
	ReverseTransfer      bool // take it back from the practitioner's account
	RefundApplicationFee bool // and give back our fee
	IdempotencyKey       string
}

// Refund is a refund Stripe made.
type Refund struct {
	ID     string
	Amount int64
	Status string
}

// ConnectAccount is a practitioner's Stripe Connect account.
type ConnectAccount struct {
	ID             string
	ChargesEnabled bool
}

// Gateway is what the payments service needs of Stripe. Every method that
// creates or moves money takes an idempotency key.
type Gateway interface {
	// CreateCheckout creates a Checkout Session in payment mode with a
	// manual-capture PaymentIntent.
	CreateCheckout(ctx context.Context, r CheckoutRequest) (CheckoutSession, error)
	// CreateSetupSession creates a Checkout Session in setup mode that
	// saves a card on r.Customer for an off-session payment.
	CreateSetupSession(ctx context.Context, r CheckoutRequest) (CheckoutSession, error)
	// ExpireCheckout ends an open Checkout Session so it can no longer be
	// paid, and returns it. A session that completed first is returned as
	// complete, with no error.
	ExpireCheckout(ctx context.Context, id, idempotencyKey string) (CheckoutSession, error)
	// GetCheckoutSession reads a Checkout Session.
	GetCheckoutSession(ctx context.Context, id string) (CheckoutSession, error)
	// CreateCustomer creates a customer holding saved cards.
	CreateCustomer(ctx context.Context, accountID, idempotencyKey string) (string, error)
	// AuthorizeOffSession puts a hold on a saved card. When the bank wants
	// the card holder, it returns ErrAuthenticationRequired (or
	// ErrCardDeclined) together with the intent.
	AuthorizeOffSession(ctx context.Context, r OffSessionRequest) (PaymentIntent, error)
	// Capture charges (part of) a hold.
	Capture(ctx context.Context, r CaptureRequest) (PaymentIntent, error)
	// CancelHold releases a hold (or an intent never authorised), for free.
	CancelHold(ctx context.Context, intentID, idempotencyKey string) (PaymentIntent, error)
	// Refund gives back captured money.
	Refund(ctx context.Context, r RefundRequest) (Refund, error)
	// GetPaymentIntent reads a PaymentIntent.
	GetPaymentIntent(ctx context.Context, id string) (PaymentIntent, error)
	// CreateExpressAccount creates a Connect Express account for a practitioner.
	CreateExpressAccount(ctx context.Context, practitionerID, idempotencyKey string) (ConnectAccount, error)
	// AccountLink returns a one-time onboarding URL for a Connect account.
	AccountLink(ctx context.Context, accountID, refreshURL, returnURL string) (string, error)
}
