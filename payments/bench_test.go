package payments

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

func signedEvent(b *testing.B, secret, id, typ string, obj map[string]any) ([]byte, string) {
	body, err := json.Marshal(map[string]any{"id": id, "object": "event", "api_version": stripe.APIVersion,
		"created": time.Now().Unix(), "type": typ, "data": map[string]any{"object": obj}})
	if err != nil {
		b.Fatal(err)
	}
	return body, webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret}).Header
}

// BenchmarkWebhook measures one delivery: a fresh event (signature,
// re-read from the gateway, the event row and the payment update in one
// transaction) and a redelivered one (signature and one lookup).
func BenchmarkWebhook(b *testing.B) {
	e := newEnv(b, false, Config{})
	appt, url := e.book(24*time.Hour, 3000)
	e.checkout(url, "pay")
	e.advance(3 * time.Minute)
	if _, err := e.svc.Reconcile(context.Background()); err != nil {
		b.Fatal(err)
	}
	p := e.payment(appt)
	obj := map[string]any{"id": p.PaymentIntent, "object": "payment_intent", "metadata": metadata(appt)}
	ctx := context.Background()
	b.Run("fresh", func(b *testing.B) {
		for i := range b.N {
			body, sig := signedEvent(b, e.svc.cfg.WebhookSecret, fmt.Sprintf("%s_%d", randomID("evt_bench_"), i), "payment_intent.amount_capturable_updated", obj)
			if err := e.svc.HandleWebhook(ctx, body, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		body, sig := signedEvent(b, e.svc.cfg.WebhookSecret, "evt_bench_dup", "payment_intent.amount_capturable_updated", obj)
		if err := e.svc.HandleWebhook(ctx, body, sig); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if err := e.svc.HandleWebhook(ctx, body, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}
