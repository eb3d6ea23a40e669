package rx

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// reportSigning adds signed-per-second and median figures to b.
func reportSigning(b *testing.B, start time.Time, durations []time.Duration) {
	elapsed := time.Since(start)
	slices.Sort(durations)
	if len(durations) > 0 {
		b.ReportMetric(float64(len(durations))/elapsed.Seconds(), "signed/s")
		b.ReportMetric(float64(durations[len(durations)/2].Microseconds())/1000, "median-ms")
	}
}

// BenchmarkSignPrescription measures signing on all cores.
//
// "document" is the work of a signature alone: render the A4 PDF (fonts,
// QR code) and embed the PKCS#7 signature. "service" is Service.Sign
// end to end: read the draft and profiles, render, sign, seal content,
// access code and PDF, commit with the history, the outbox event and the
// audit record (drafts are written before the clock starts).
func BenchmarkSignPrescription(b *testing.B) {
	now := time.Now()
	b.Run("document", func(b *testing.B) {
		a, err := NewAuthority("Bench", now)
		if err != nil {
			b.Fatal(err)
		}
		id, err := a.Issue("Dr Hélène Garçon", "10101234567", "", now)
		if err != nil {
			b.Fatal(err)
		}
		doc := sampleDocument(b, id, a, now)
		var mu sync.Mutex
		var durations []time.Duration
		start := time.Now()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var local []time.Duration
			for pb.Next() {
				t0 := time.Now()
				unsigned, err := Render(doc)
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := signPDF(unsigned, id, a.Cert, "bench", now); err != nil {
					b.Error(err)
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			durations = append(durations, local...)
			mu.Unlock()
		})
		reportSigning(b, start, durations)
	})
	b.Run("service", func(b *testing.B) {
		w := newWorld(b)
		// Issue the practitioner's certificate outside the measure.
		w.signed(sampleContent())
		ids := make([]string, b.N)
		for i := range ids {
			d, err := w.svc.Create(ctx, w.practitioner, w.appointment.ID, sampleContent())
			if err != nil {
				b.Fatal(err)
			}
			ids[i] = d.ID
		}
		var next sync.Mutex
		i := 0
		var mu sync.Mutex
		var durations []time.Duration
		start := time.Now()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var local []time.Duration
			for pb.Next() {
				next.Lock()
				id := ids[i]
				i++
				next.Unlock()
				t0 := time.Now()
				if _, err := w.svc.Sign(ctx, w.practitioner, id); err != nil {
					b.Error(err)
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			durations = append(durations, local...)
			mu.Unlock()
		})
		reportSigning(b, start, durations)
	})
}
