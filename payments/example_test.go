package payments_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"teleconsult/booking"
	"teleconsult/payments"
	"teleconsult/store"
	"teleconsult/vault"
)

// Example shows the wiring in cmd/teleconsult: configuration from the
// environment, test mode delivering webhooks to our own listener, the
// booking hooks, the metrics and the jobs.
func Example() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var (
		db       *store.DB    // store.Open(...)
		v        *vault.Vault // vault.New(...)
		baseURL  = "http://localhost:8080"
		listenOn = ":8080"
		reg      = prometheus.NewRegistry()
		log      = slog.New(slog.NewTextHandler(os.Stderr, nil))
	)
	if db == nil {
		return // this example only shows the calls
	}
	cfg, err := payments.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("payments config", "err", err)
		return
	}
	cfg.BaseURL = baseURL
	if cfg.SecretKey == "" { // TEST MODE: deliver webhooks to ourselves
		if cfg.TestWebhookURL, err = payments.LoopbackWebhookURL(listenOn); err != nil {
			log.Error("payments", "err", err)
			return
		}
	}
	pay, err := payments.New(db, cfg, log)
	if err != nil {
		log.Error("payments", "err", err)
		return
	}
	defer pay.Close()
	if err := pay.RegisterMetrics(reg); err != nil {
		log.Error("payments metrics", "err", err)
	}
	bookings := booking.New(db, v, booking.Config{Checkout: pay, PaymentRelease: pay, BaseURL: baseURL})
	pay.SetSlotReleaser(bookings) // freed slots go to the waiting list
	// consult.Service{..., Completer: pay}; httpapi.API{..., Payments: pay}
	go pay.RunJobs(ctx, 30*time.Second)
}
