package payments

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"teleconsult/problem"
)

// stripeGateway is the Gateway backed by Stripe's API through stripe-go.
type stripeGateway struct {
	api *client.API
}

var _ Gateway = (*stripeGateway)(nil)

// NewStripeGateway returns a Gateway talking to Stripe with the secret
// key. apiBase, when not empty, replaces https://api.stripe.com (for
// stripe-mock in tests, or a proxy).
func NewStripeGateway(secretKey, apiBase string, httpClient *http.Client) Gateway {
	if httpClient == nil {
		// Why 20 s: Stripe answers in well under a second; anything longer is
		// an outage, and the idempotency key makes the retry safe.
		httpClient = &http.Client{Timeout: 20 * time.Second}
	}
	cfg := &stripe.BackendConfig{
		HTTPClient: httpClient,
		// stripe-go retries network errors and 409/5xx itself, reusing our
		// idempotency key, so a retry cannot charge twice.
		MaxNetworkRetries: stripe.Int64(2),
		// Errors are returned to us and logged (without secrets) by the caller.
		LeveledLogger:   &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry: stripe.Bool(false),
	}
	if apiBase != "" {
		cfg.URL = stripe.String(strings.TrimRight(apiBase, "/"))
	}
	api := &client.API{}
	api.Init(secretKey, &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, cfg),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, cfg),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, cfg),
	})
	return &stripeGateway{api: api}
}

// stripeError maps a stripe-go error to our problems, keeping the cause.
func stripeError(err error) error {
	if err == nil {
		return nil
	}
	var se *stripe.Error
	if !errors.As(err, &se) {
		return ErrGatewayUnavailable.Wrap(err)
	}
	switch {
	case se.Code == stripe.ErrorCodeAuthenticationRequired:
		return ErrAuthenticationRequired.Wrap(err)
	case se.Type == stripe.ErrorTypeCard:
		return ErrCardDeclined.Wrap(err)
	case se.Code == stripe.ErrorCodePaymentIntentUnexpectedState:
		return ErrUnexpectedState.Wrap(err)
	case se.HTTPStatusCode == http.StatusNotFound || se.Code == stripe.ErrorCodeResourceMissing:
		return ErrGatewayNotFound.Wrap(err)
	case se.HTTPStatusCode >= 500 || se.HTTPStatusCode == http.StatusTooManyRequests || se.HTTPStatusCode == 0:
		return ErrGatewayUnavailable.Wrap(err)
	}
	// A request Stripe finds invalid is our bug: an internal error.
	return problem.As(err)
}

func metadata(appointmentID string) map[string]string {
	return map[string]string{"appointment_id": appointmentID}
}

func fromStripeSession(s *stripe.CheckoutSession) CheckoutSession {
	c := CheckoutSession{
		ID: s.ID, URL: s.URL, Mode: string(s.Mode), Status: string(s.Status),
		ExpiresAt:     time.Unix(s.ExpiresAt, 0),
		AppointmentID: s.Metadata["appointment_id"],
	}
	if c.AppointmentID == "" {
		c.AppointmentID = s.ClientReferenceID
	}
	if s.PaymentIntent != nil {
		c.PaymentIntent = s.PaymentIntent.ID
	}
	if s.Customer != nil {
		c.Customer = s.Customer.ID
	}
	if s.SetupIntent != nil && s.SetupIntent.PaymentMethod != nil {
		c.PaymentMethod = s.SetupIntent.PaymentMethod.ID
	}
	return c
}

func fromStripeIntent(pi *stripe.PaymentIntent) PaymentIntent {
	p := PaymentIntent{
		ID: pi.ID, Status: string(pi.Status), Amount: pi.Amount, AmountCapturable: pi.AmountCapturable,
		AmountReceived: pi.AmountReceived, Currency: strings.ToUpper(string(pi.Currency)),
		AppointmentID: pi.Metadata["appointment_id"],
	}
	if pi.Customer != nil {
		p.Customer = pi.Customer.ID
	}
	if pi.PaymentMethod != nil {
		p.PaymentMethod = pi.PaymentMethod.ID
	}
	if pi.LastPaymentError != nil {
		p.LastErrorCode = string(pi.LastPaymentError.Code)
		if p.LastErrorCode == "" {
			p.LastErrorCode = string(pi.LastPaymentError.Type)
		}
	}
	return p
}

// CreateCheckout implements Gateway.
func (g *stripeGateway) CreateCheckout(ctx context.Context, r CheckoutRequest) (CheckoutSession, error) {
	pid := &stripe.CheckoutSessionPaymentIntentDataParams{
		CaptureMethod: stripe.String(string(stripe.PaymentIntentCaptureMethodManual)),
		Description:   stripe.String(Description),
		Metadata:      metadata(r.AppointmentID),
	}
	if r.Destination != "" {
		pid.TransferData = &stripe.CheckoutSessionPaymentIntentDataTransferDataParams{Destination: stripe.String(r.Destination)}
		pid.OnBehalfOf = stripe.String(r.Destination)
		pid.ApplicationFeeAmount = stripe.Int64(r.ApplicationFee)
	}
	params := &stripe.CheckoutSessionParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModePayment)),
		SuccessURL:        stripe.String(r.SuccessURL),
		CancelURL:         stripe.String(r.CancelURL),
		ClientReferenceID: stripe.String(r.AppointmentID),
		ExpiresAt:         stripe.Int64(r.ExpiresAt.Unix()),
		Metadata:          metadata(r.AppointmentID),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{
			Quantity: stripe.Int64(1),
			PriceData: &stripe.CheckoutSessionLineItemPriceDataParams{
				Currency:    stripe.String(strings.ToLower(r.Currency)),
				UnitAmount:  stripe.Int64(r.Amount),
				ProductData: &stripe.CheckoutSessionLineItemPriceDataProductDataParams{Name: stripe.String(Description)},
			},
		}},
		PaymentIntentData: pid,
		// Cards only: a card hold is what manual capture means here (and
		// its 7-day life is what the scheduling relies on).
		PaymentMethodTypes: []*string{stripe.String("card")},
	}
	if r.Customer != "" {
		params.Customer = stripe.String(r.Customer)
	}
	params.Context = ctx
	params.SetIdempotencyKey(r.IdempotencyKey)
	s, err := g.api.CheckoutSessions.New(params)
	if err != nil {
		return CheckoutSession{}, stripeError(err)
	}
	return fromStripeSession(s), nil
}

// CreateSetupSession implements Gateway.
func (g *stripeGateway) CreateSetupSession(ctx context.Context, r CheckoutRequest) (CheckoutSession, error) {
	sid := &stripe.CheckoutSessionSetupIntentDataParams{
		Description: stripe.String(Description),
		Metadata:    metadata(r.AppointmentID),
	}
	if r.Destination != "" {
		sid.OnBehalfOf = stripe.String(r.Destination)
	}
	params := &stripe.CheckoutSessionParams{
		Mode:               stripe.String(string(stripe.CheckoutSessionModeSetup)),
		Currency:           stripe.String(strings.ToLower(r.Currency)),
		Customer:           stripe.String(r.Customer),
		SuccessURL:         stripe.String(r.SuccessURL),
		CancelURL:          stripe.String(r.CancelURL),
		ClientReferenceID:  stripe.String(r.AppointmentID),
		ExpiresAt:          stripe.Int64(r.ExpiresAt.Unix()),
		Metadata:           metadata(r.AppointmentID),
		PaymentMethodTypes: []*string{stripe.String("card")},
		SetupIntentData:    sid,
	}
	params.Context = ctx
	params.SetIdempotencyKey(r.IdempotencyKey)
	s, err := g.api.CheckoutSessions.New(params)
	if err != nil {
		return CheckoutSession{}, stripeError(err)
	}
	return fromStripeSession(s), nil
}

// ExpireCheckout implements Gateway.
func (g *stripeGateway) ExpireCheckout(ctx context.Context, id, key string) (CheckoutSession, error) {
	params := &stripe.CheckoutSessionExpireParams{}
	params.Context = ctx
	params.SetIdempotencyKey(key)
	s, err := g.api.CheckoutSessions.Expire(id, params)
	if err != nil {
		// Stripe refuses to expire a session that is no longer open: read
		// it to learn whether it completed.
		var se *stripe.Error
		if errors.As(err, &se) && se.HTTPStatusCode == http.StatusBadRequest {
			return g.GetCheckoutSession(ctx, id)
		}
		return CheckoutSession{}, stripeError(err)
	}
	return fromStripeSession(s), nil
}

// GetCheckoutSession implements Gateway.
func (g *stripeGateway) GetCheckoutSession(ctx context.Context, id string) (CheckoutSession, error) {
	params := &stripe.CheckoutSessionParams{}
	params.Context = ctx
	params.AddExpand("setup_intent")
	s, err := g.api.CheckoutSessions.Get(id, params)
	if err != nil {
		return CheckoutSession{}, stripeError(err)
	}
	return fromStripeSession(s), nil
}

// CreateCustomer implements Gateway.
func (g *stripeGateway) CreateCustomer(ctx context.Context, accountID, key string) (string, error) {
	params := &stripe.CustomerParams{}
	params.Context = ctx
	params.AddMetadata("account_id", accountID)
	params.SetIdempotencyKey(key)
	c, err := g.api.Customers.New(params)
	if err != nil {
		return "", stripeError(err)
	}
	return c.ID, nil
}

// AuthorizeOffSession implements Gateway.
func (g *stripeGateway) AuthorizeOffSession(ctx context.Context, r OffSessionRequest) (PaymentIntent, error) {
	params := &stripe.PaymentIntentParams{
		Amount:        stripe.Int64(r.Amount),
		Currency:      stripe.String(strings.ToLower(r.Currency)),
		Customer:      stripe.String(r.Customer),
		PaymentMethod: stripe.String(r.PaymentMethod),
		CaptureMethod: stripe.String(string(stripe.PaymentIntentCaptureMethodManual)),
		Confirm:       stripe.Bool(true),
		OffSession:    stripe.Bool(true),
		Description:   stripe.String(Description),
		Metadata:      metadata(r.AppointmentID),
	}
	if r.Destination != "" {
		params.TransferData = &stripe.PaymentIntentTransferDataParams{Destination: stripe.String(r.Destination)}
		params.OnBehalfOf = stripe.String(r.Destination)
		params.ApplicationFeeAmount = stripe.Int64(r.ApplicationFee)
	}
	params.Context = ctx
	params.SetIdempotencyKey(r.IdempotencyKey)
	pi, err := g.api.PaymentIntents.New(params)
	if err != nil {
		var se *stripe.Error
		if errors.As(err, &se) && se.PaymentIntent != nil {
			return fromStripeIntent(se.PaymentIntent), stripeError(err)
		}
		return PaymentIntent{}, stripeError(err)
	}
	return fromStripeIntent(pi), nil
}

// Capture implements Gateway.
func (g *stripeGateway) Capture(ctx context.Context, r CaptureRequest) (PaymentIntent, error) {
	params := &stripe.PaymentIntentCaptureParams{AmountToCapture: stripe.Int64(r.Amount)}
	if r.Destination {
		params.ApplicationFeeAmount = stripe.Int64(r.ApplicationFee)
	}
	params.Context = ctx
	params.SetIdempotencyKey(r.IdempotencyKey)
	pi, err := g.api.PaymentIntents.Capture(r.PaymentIntent, params)
	if err != nil {
		return PaymentIntent{}, stripeError(err)
	}
	return fromStripeIntent(pi), nil
}

// CancelHold implements Gateway.
func (g *stripeGateway) CancelHold(ctx context.Context, intentID, key string) (PaymentIntent, error) {
	params := &stripe.PaymentIntentCancelParams{}
	params.Context = ctx
	params.SetIdempotencyKey(key)
	pi, err := g.api.PaymentIntents.Cancel(intentID, params)
	if err != nil {
		return PaymentIntent{}, stripeError(err)
	}
	return fromStripeIntent(pi), nil
}

// Refund implements Gateway.
func (g *stripeGateway) Refund(ctx context.Context, r RefundRequest) (Refund, error) {
	params := &stripe.RefundParams{
		PaymentIntent: stripe.String(r.PaymentIntent),
		Amount:        stripe.Int64(r.Amount),
	}
	if r.ReverseTransfer {
		params.ReverseTransfer = stripe.Bool(true)
	}
	if r.RefundApplicationFee {
		params.RefundApplicationFee = stripe.Bool(true)
	}
	params.Context = ctx
	params.SetIdempotencyKey(r.IdempotencyKey)
	rf, err := g.api.Refunds.New(params)
	if err != nil {
		return Refund{}, stripeError(err)
	}
	return Refund{ID: rf.ID, Amount: rf.Amount, Status: string(rf.Status)}, nil
}

// GetPaymentIntent implements Gateway.
func (g *stripeGateway) GetPaymentIntent(ctx context.Context, id string) (PaymentIntent, error) {
	params := &stripe.PaymentIntentParams{}
	params.Context = ctx
	pi, err := g.api.PaymentIntents.Get(id, params)
	if err != nil {
		return PaymentIntent{}, stripeError(err)
	}
	return fromStripeIntent(pi), nil
}

// CreateExpressAccount implements Gateway.
func (g *stripeGateway) CreateExpressAccount(ctx context.Context, practitionerID, key string) (ConnectAccount, error) {
	params := &stripe.AccountParams{
		Type: stripe.String(string(stripe.AccountTypeExpress)),
		Capabilities: &stripe.AccountCapabilitiesParams{
			CardPayments: &stripe.AccountCapabilitiesCardPaymentsParams{Requested: stripe.Bool(true)},
			Transfers:    &stripe.AccountCapabilitiesTransfersParams{Requested: stripe.Bool(true)},
		},
	}
	params.Context = ctx
	params.AddMetadata("practitioner_id", practitionerID)
	params.SetIdempotencyKey(key)
	a, err := g.api.Accounts.New(params)
	if err != nil {
		return ConnectAccount{}, stripeError(err)
	}
	return ConnectAccount{ID: a.ID, ChargesEnabled: a.ChargesEnabled}, nil
}

// AccountLink implements Gateway.
func (g *stripeGateway) AccountLink(ctx context.Context, accountID, refreshURL, returnURL string) (string, error) {
	params := &stripe.AccountLinkParams{
		Account:    stripe.String(accountID),
		RefreshURL: stripe.String(refreshURL),
		ReturnURL:  stripe.String(returnURL),
		Type:       stripe.String("account_onboarding"),
	}
	params.Context = ctx
	l, err := g.api.AccountLinks.New(params)
	if err != nil {
		return "", stripeError(err)
	}
	return l.URL, nil
}
