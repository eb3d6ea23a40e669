package rx

import (
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time this process has used (all threads, GC too).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportSigning adds signed-per-second and median figures to b, and the
// CPU time per signature of this process (PostgreSQL's is not counted):
// on a machine shared with other work, 2 cores / cpu-ms is the rate an
// idle machine would reach.
func reportSigning(b *testing.B, start time.Time, cpu0 time.Duration, durations []time.Duration) {
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	slices.Sort(durations)
	if n := len(durations); n > 0 {
		b.ReportMetric(float64(n)/elapsed.Seconds(), "signed/s")
		b.ReportMetric(float64(durations[n/2].Microseconds())/1000, "median-ms")
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(n), "cpu-ms/op")
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
		b.ReportAllocs()
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
		start, cpu0 := time.Now(), cpuTime()
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
		reportSigning(b, start, cpu0, durations)
	})
	b.Run("service", func(b *testing.B) {
		b.ReportAllocs()
		// Two signers per core, as the 4 workers of cmd/bench on 2 cores:
		// with one per core the CPU idles while each waits on PostgreSQL,
		// and requests do arrive concurrently.
		b.SetParallelism(2)
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
		start, cpu0 := time.Now(), cpuTime()
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
		reportSigning(b, start, cpu0, durations)
	})
}

// BenchmarkRender measures drawing one prescription on one core: with the
// Windows-1252 font prepared once per process (French text), and with
// fpdf's UTF-8 font subset per document (a name outside Windows-1252,
// drawn once with each font).
func BenchmarkRender(b *testing.B) {
	now := time.Now()
	a, err := NewAuthority("Bench", now)
	if err != nil {
		b.Fatal(err)
	}
	id, err := a.Issue("Dr Hélène Garçon", "10101234567", "", now)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, surname string }{{"windows-1252", "Lefèvre"}, {"utf-8", "Wałęsa"}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			doc := sampleDocument(b, id, a, now)
			doc.Patient.Surname = tc.surname
			for b.Loop() {
				if _, err := Render(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignPDF measures embedding the PKCS#7 signature in a rendered
// prescription on one core.
func BenchmarkSignPDF(b *testing.B) {
	b.ReportAllocs()
	now := time.Now()
	a, err := NewAuthority("Bench", now)
	if err != nil {
		b.Fatal(err)
	}
	id, err := a.Issue("Dr Hélène Garçon", "10101234567", "", now)
	if err != nil {
		b.Fatal(err)
	}
	unsigned, err := Render(sampleDocument(b, id, a, now))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := signPDF(unsigned, id, a.Cert, "bench", now); err != nil {
			b.Fatal(err)
		}
	}
}
