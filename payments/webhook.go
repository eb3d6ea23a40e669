package payments

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"teleconsult/store"
)

// MaxWebhookBody bounds a webhook request body (Stripe events are a few
// kilobytes).
const MaxWebhookBody = 256 << 10

// HandleWebhook verifies and applies one Stripe event delivery. payload is
// the raw request body and signature the Stripe-Signature header. A
// missing or wrong signature, a timestamp older than 5 minutes or another
// API version is ErrBadSignature (400) and changes nothing. Each event id
// is applied at most once, whatever the number of deliveries; the objects
// are re-read from Stripe, so an event arriving late or out of order
// cannot move a payment backwards. An error other than ErrBadSignature
// means "try again later" (Stripe retries for three days).
func (s *Service) HandleWebhook(ctx context.Context, payload []byte, signature string) error {
	outcome, err := s.handleWebhook(ctx, payload, signature)
	if err != nil {
		outcome = "error"
		if errors.Is(err, ErrBadSignature) {
			outcome = "rejected"
		}
	}
	s.metrics.webhooks.WithLabelValues(outcome).Inc()
	return err
}

func (s *Service) handleWebhook(ctx context.Context, payload []byte, signature string) (outcome string, err error) {
	ev, err := webhook.ConstructEvent(payload, signature, s.cfg.WebhookSecret)
	if err != nil && s.cfg.ConnectWebhookSecret != "" {
		var cerr error
		if ev, cerr = webhook.ConstructEvent(payload, signature, s.cfg.ConnectWebhookSecret); cerr == nil {
			err = nil
		}
	}
	if err != nil {
		return "", ErrBadSignature.Wrap(err)
	}
	if ev.ID == "" || ev.Data == nil {
		return "", ErrBadSignature.With("the event has no id or data")
	}
	defer func() {
		// A verified event we could not process is shown to operators
		// (a forged delivery never gets this far, so it cannot fill the
		// table).
		if err == nil {
			return
		}
		if rerr := store.RecordWebhookFailure(context.WithoutCancel(ctx), s.db.Pool, ev.ID, string(ev.Type), err.Error()); rerr != nil {
			s.log.Warn("record webhook failure", "event_id", ev.ID, "err", rerr)
		}
	}()
	// A cheap early answer for redeliveries; the unique row inserted with
	// the effect is what guarantees at most once.
	if done, err := store.StripeEventProcessed(ctx, s.db.Pool, ev.ID); err != nil || done {
		return "duplicate", err
	}
	appointmentID, o, known, err := s.eventTarget(ctx, ev)
	if err != nil {
		return "", err
	}
	if !known {
		// Not about a payment of ours (or a type we do not act on): note
		// it so that redeliveries stop here.
		return "ignored", s.db.Tx(ctx, func(tx pgx.Tx) error {
			_, err := store.MarkStripeEvent(ctx, tx, ev.ID, string(ev.Type))
			return err
		})
	}
	settle, err := s.apply(ctx, ev.ID, string(ev.Type), appointmentID, o)
	if err != nil {
		return "", err
	}
	if settle {
		if err := s.settle(ctx, appointmentID); err != nil {
			// The event is applied; the reconciliation job finishes this.
			s.log.Warn("settle after webhook", "appointment_id", appointmentID, "err", err)
		}
	}
	return "applied", nil
}

// eventTarget finds the payment an event is about and what Stripe says of
// it now. known is false for events that concern no payment of ours.
func (s *Service) eventTarget(ctx context.Context, ev stripe.Event) (appointmentID string, o observation, known bool, err error) {
	var p store.Payment
	switch ev.Type {
	case "checkout.session.completed", "checkout.session.expired", "checkout.session.async_payment_failed",
		"checkout.session.async_payment_succeeded":
		var cs stripe.CheckoutSession
		if err := json.Unmarshal(ev.Data.Raw, &cs); err != nil {
			return "", o, false, ErrBadSignature.With("the event's object is not a checkout session")
		}
		p, err = store.PaymentByCheckoutSession(ctx, s.db.Pool, cs.ID)
	case "payment_intent.amount_capturable_updated", "payment_intent.succeeded", "payment_intent.canceled",
		"payment_intent.payment_failed", "payment_intent.requires_action":
		var pi stripe.PaymentIntent
		if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil {
			return "", o, false, ErrBadSignature.With("the event's object is not a payment intent")
		}
		p, err = store.PaymentByIntent(ctx, s.db.Pool, pi.ID)
		if errors.Is(err, store.ErrNotFound) {
			// An intent not known to us yet: a checkout's, or an
			// off-session one whose answer we never got.
			p, err = store.PaymentOf(ctx, s.db.Pool, pi.Metadata["appointment_id"])
			if err == nil && p.State == store.PaymentCardSaved && pi.ID != "" {
				return s.observeOffSession(ctx, p, pi.ID)
			}
		}
	case "charge.refunded":
		var ch stripe.Charge
		if err := json.Unmarshal(ev.Data.Raw, &ch); err != nil || ch.PaymentIntent == nil {
			return "", o, false, ErrBadSignature.With("the event's object is not a charge")
		}
		p, err = store.PaymentByIntent(ctx, s.db.Pool, ch.PaymentIntent.ID)
		if err == nil {
			// Refunds only grow: the largest amount seen is the truth.
			return p.AppointmentID, observation{refunded: ch.AmountRefunded}, true, nil
		}
	case "account.updated":
		var a stripe.Account
		if err := json.Unmarshal(ev.Data.Raw, &a); err != nil {
			return "", o, false, ErrBadSignature.With("the event's object is not an account")
		}
		return "", o, false, store.SetPayoutChargesEnabled(ctx, s.db.Pool, a.ID, a.ChargesEnabled)
	default:
		return "", o, false, nil
	}
	if errors.Is(err, store.ErrNotFound) {
		s.log.Info("stripe event for no payment of ours", "event_id", ev.ID, "type", ev.Type)
		return "", o, false, nil
	}
	if err != nil {
		return "", o, false, err
	}
	o, err = s.observe(ctx, p)
	if err != nil {
		return "", o, false, err
	}
	return p.AppointmentID, o, true, nil
}

// observeOffSession reads an off-session intent of a saved-card payment
// that we learn of from an event (the answer to our own request was lost).
func (s *Service) observeOffSession(ctx context.Context, p store.Payment, intentID string) (string, observation, bool, error) {
	pi, err := s.gw.GetPaymentIntent(ctx, intentID)
	if err != nil {
		return "", observation{}, false, err
	}
	if pi.AppointmentID != p.AppointmentID || pi.Status != IntentRequiresCapture {
		// A failed attempt is handled by the job that made it.
		return "", observation{}, false, nil
	}
	return p.AppointmentID, observeIntent(pi), true, nil
}
