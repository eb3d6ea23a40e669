package payments

import "github.com/prometheus/client_golang/prometheus"

// metrics counts what operators watch: webhook deliveries by outcome
// (a steady stream of "rejected" is a wrong STRIPE_WEBHOOK_SECRET or an
// attack), and the payments the reconciliation job had to look at (a
// steady stream means webhooks are not arriving).
type metrics struct {
	webhooks   *prometheus.CounterVec
	reconciled prometheus.Counter
	gateway    *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "teleconsult_payments_webhook_events_total",
			Help: "Stripe webhook deliveries by outcome: applied, duplicate, ignored, rejected (bad signature), error (to be retried).",
		}, []string{"outcome"}),
		reconciled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "teleconsult_payments_reconciled_total",
			Help: "Payments the reconciliation job looked at.",
		}),
		gateway: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "teleconsult_payments_gateway_errors_total",
			Help: "Failed calls to Stripe (or the test gateway) by kind: unavailable, declined, other.",
		}, []string{"kind"}),
	}
}

// RegisterMetrics registers the payments metrics with reg.
func (s *Service) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.metrics.webhooks, s.metrics.reconciled, s.metrics.gateway} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
