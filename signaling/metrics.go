package signaling

import (
	"github.com/prometheus/client_golang/prometheus"

	"teleconsult/sfu"
)

// Collector exports the SFU's counters to Prometheus. Register it once:
// prometheus.MustRegister(signaling.NewCollector(srv.Media())).
type Collector struct {
	media                                             *sfu.SFU
	rooms, participants                               *prometheus.Desc
	packets, bytes, nacks, retransmissions, keyframes *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector reading media's counters at each scrape.
func NewCollector(media *sfu.SFU) *Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("teleconsult_sfu_"+name, help, nil, nil)
	}
	return &Collector{
		media:           media,
		rooms:           d("rooms", "Video rooms open."),
		participants:    d("participants", "Participants connected to the SFU."),
		packets:         d("forwarded_packets_total", "RTP packets forwarded to receivers."),
		bytes:           d("forwarded_bytes_total", "RTP bytes forwarded to receivers."),
		nacks:           d("nacks_total", "NACK packets received from receivers."),
		retransmissions: d("retransmissions_total", "Packets resent from the cache on NACK."),
		keyframes:       d("plis_total", "Keyframe requests (PLI) sent to publishers."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rooms, c.participants, c.packets, c.bytes, c.nacks, c.retransmissions, c.keyframes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	n := c.media.Counters()
	ch <- prometheus.MustNewConstMetric(c.rooms, prometheus.GaugeValue, float64(n.Rooms))
	ch <- prometheus.MustNewConstMetric(c.participants, prometheus.GaugeValue, float64(n.Participants))
	ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(n.ForwardedPackets))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(n.ForwardedBytes))
	ch <- prometheus.MustNewConstMetric(c.nacks, prometheus.CounterValue, float64(n.NACKs))
	ch <- prometheus.MustNewConstMetric(c.retransmissions, prometheus.CounterValue, float64(n.Retransmissions))
	ch <- prometheus.MustNewConstMetric(c.keyframes, prometheus.CounterValue, float64(n.PLIs))
}
