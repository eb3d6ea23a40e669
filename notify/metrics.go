package notify

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"teleconsult/store"
)

// metrics counts what the worker did; the backlog is read at scrape time.
type metrics struct {
	deliveries *prometheus.CounterVec
	backlog    *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "teleconsult_notify_deliveries_total",
			Help: "Delivery attempts by channel and outcome (sent, pending = will retry, failed, cancelled, held).",
		}, []string{"channel", "outcome"}),
		backlog: prometheus.NewDesc("teleconsult_notify_outbox_messages",
			"Messages waiting (pending) or being sent (sending), by channel.", []string{"status", "channel"}, nil),
	}
}

var _ prometheus.Collector = (*Worker)(nil)

// Describe implements prometheus.Collector: register the worker to
// export its delivery counts and the outbox backlog.
func (w *Worker) Describe(ch chan<- *prometheus.Desc) {
	w.metrics.deliveries.Describe(ch)
	ch <- w.metrics.backlog
}

// Collect implements prometheus.Collector.
func (w *Worker) Collect(ch chan<- prometheus.Metric) {
	w.metrics.deliveries.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	backlog, err := store.OutboxBacklog(ctx, w.db.Pool)
	if err != nil {
		slog.Warn("notify: metrics", "err", err)
		return
	}
	for _, status := range []string{store.MessagePending, store.MessageSending} {
		for _, channel := range []string{store.ChannelEmail, store.ChannelSMS} {
			ch <- prometheus.MustNewConstMetric(w.metrics.backlog, prometheus.GaugeValue,
				float64(backlog[[2]string{status, channel}]), status, channel)
		}
	}
}
