package payments

import (
	"context"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"teleconsult/problem"
)

// FuzzWebhook feeds arbitrary payloads to the webhook handler, both with
// a garbage signature and correctly signed: it must refuse or apply them
// with a clear error, never panic and never answer an internal error for
// a malformed event.
func FuzzWebhook(f *testing.F) {
	for _, s := range []string{
		`{"id":"evt_1","type":"checkout.session.completed","api_version":"2023-10-16","data":{"object":{"id":"cs_1","metadata":{"appointment_id":"x"}}}}`,
		`{"id":"evt_2","type":"payment_intent.amount_capturable_updated","api_version":"2023-10-16","data":{"object":{}}}`,
		`{}`, `[]`, `{"id":`, `{"id":"evt","api_version":"2023-10-16","data":null}`,
	} {
		f.Add([]byte(s), "t=1,v1=00")
	}
	e := newEnv(f, false, Config{WebhookSecret: "whsec_fuzz"})
	f.Fuzz(func(t *testing.T, payload []byte, sig string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.svc.HandleWebhook(ctx, payload, sig); err == nil && sig == "" {
			t.Fatal("an unsigned payload was accepted")
		}
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: "whsec_fuzz"})
		err := e.svc.HandleWebhook(ctx, signed.Payload, signed.Header)
		if err != nil && problem.KindOf(err) == problem.Internal && ctx.Err() == nil {
			t.Fatalf("signed payload %q: internal error %v", payload, err)
		}
	})
}
