package payments

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestConfigFromEnv(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		ok   bool
		want Config
	}{
		{map[string]string{}, true, Config{}},
		{map[string]string{"STRIPE_SECRET_KEY": "sk_test_1", "STRIPE_WEBHOOK_SECRET": "whsec_1", "STRIPE_API_BASE": "http://127.0.0.1:12111",
			"STRIPE_CONNECT_WEBHOOK_SECRET": "whsec_2", "PAYMENTS_PLATFORM_FEE_BPS": "750", "PAYMENTS_NO_SHOW_FEE_PERCENT": "50"}, true,
			Config{SecretKey: "sk_test_1", WebhookSecret: "whsec_1", ConnectWebhookSecret: "whsec_2", APIBase: "http://127.0.0.1:12111",
				PlatformFeeBasisPoints: 750, NoShowFeePercent: 50}},
		{map[string]string{"PAYMENTS_PLATFORM_FEE_BPS": "10001"}, false, Config{}},
		{map[string]string{"PAYMENTS_NO_SHOW_FEE_PERCENT": "-1"}, false, Config{}},
		{map[string]string{"PAYMENTS_NO_SHOW_FEE_PERCENT": "half"}, false, Config{}},
	} {
		got, err := ConfigFromEnv(func(k string) string { return c.env[k] })
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("%v: %+v, %v", c.env, got, err)
		}
	}
}

func TestNewModes(t *testing.T) {
	db := storetest.New(t)
	if _, err := New(db, Config{SecretKey: "sk_test_1"}, nil); err == nil {
		t.Error("a Stripe key without a webhook secret was accepted")
	}
	s, err := New(db, Config{SecretKey: "sk_test_1", WebhookSecret: "whsec_1", APIBase: "http://127.0.0.1:1"}, nil)
	if err != nil || s.TestMode() || s.TestCheckoutHandler() != nil {
		t.Errorf("with a key: test mode %v, %v", s != nil && s.TestMode(), err)
	}
	s, err = New(db, Config{}, nil)
	if err != nil || !s.TestMode() || s.TestCheckoutHandler() == nil || s.cfg.WebhookSecret == "" {
		t.Errorf("without a key: %v", err)
	}
	s.Close()
	// Test mode never sends anything off this machine.
	if _, err := New(db, Config{TestWebhookURL: "https://example.org/hook"}, nil); err == nil {
		t.Error("a non-loopback test webhook URL was accepted")
	}
}

func TestLoopbackWebhookURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080/api/v1/payments/stripe/webhook",
		"0.0.0.0:9000":   "http://127.0.0.1:9000/api/v1/payments/stripe/webhook",
		"[::]:8080":      "http://127.0.0.1:8080/api/v1/payments/stripe/webhook",
		"127.0.0.1:4321": "http://127.0.0.1:4321/api/v1/payments/stripe/webhook",
		"localhost":      "",
		":0":             "",
	} {
		got, err := LoopbackWebhookURL(addr)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("%q: %q, %v; want %q", addr, got, err, want)
		}
	}
}

func TestRegisterMetrics(t *testing.T) {
	e := newEnv(t, true, Config{})
	reg := prometheus.NewRegistry()
	if err := e.svc.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	appt, url := e.book(24*time.Hour, 3000)
	e.checkout(url, "pay")
	e.waitFor(appt, store.StatusConfirmed, store.PaymentAuthorized)
	e.settleDeliveries()
	if err := e.svc.HandleWebhook(context.Background(), []byte("{}"), "t=1,v1=00"); err == nil {
		t.Fatal("unsigned delivery accepted")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	if got["teleconsult_payments_webhook_events_total/applied"] < 1 || got["teleconsult_payments_webhook_events_total/rejected"] != 1 {
		t.Fatalf("metrics: %v", got)
	}
}

// TestConnectAccountUpdated: an account.updated event signed with the
// Connect endpoint's secret turns destination charges on for the
// practitioner's next bookings.
func TestConnectAccountUpdated(t *testing.T) {
	e := newEnv(t, false, Config{ConnectWebhookSecret: "whsec_connect"})
	ctx := context.Background()
	if _, err := store.SavePayoutAccount(ctx, e.db.Pool, e.practitioner, "acct_live_1", false); err != nil {
		t.Fatal(err)
	}
	before, _ := e.book(24*time.Hour, 3000)
	if p := e.payment(before); p.Destination != "" || p.ApplicationFee != 0 {
		t.Fatalf("destination before onboarding: %q", p.Destination)
	}
	body := []byte(`{"id":"evt_acct_1","object":"event","api_version":"` + stripe.APIVersion + `","type":"account.updated","data":{"object":{"id":"acct_live_1","object":"account","charges_enabled":true}}}`)
	bad := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: "whsec_other"})
	if err := e.svc.HandleWebhook(ctx, body, bad.Header); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong secret: %v", err)
	}
	good := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: "whsec_connect"})
	if err := e.svc.HandleWebhook(ctx, body, good.Header); err != nil {
		t.Fatal(err)
	}
	acct, err := store.PayoutAccountOf(ctx, e.db.Pool, e.practitioner)
	if err != nil || !acct.ChargesEnabled {
		t.Fatalf("account after account.updated: %+v %v", acct, err)
	}
	appt, _ := e.book(26*time.Hour, 3000)
	if p := e.payment(appt); p.Destination != "acct_live_1" {
		t.Fatalf("destination after onboarding: %q", p.Destination)
	}
}
