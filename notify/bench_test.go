package notify

import (
	"context"
	"testing"
	"time"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

// BenchmarkEnqueue measures writing one event with its deliveries (email
// and SMS) in its own transaction, as a booking does.
func BenchmarkEnqueue(b *testing.B) {
	db := storetest.New(b)
	id, _ := newAccount(b, db, "patient", "Bench", "fr", "+33612345678")
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if err := store.Enqueue(ctx, db.Pool, store.OutboxEvent{Kind: store.EventPrescriptionReady, RecipientID: id}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeliverEmail measures one worker claiming, rendering (with
// .ics and signed links) and submitting confirmations to an SMTP server
// on loopback, one connection per message.
func BenchmarkDeliverEmail(b *testing.B) {
	db := storetest.New(b)
	srv := startSMTP(b, smtpOptions{})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	w := newWorker(b, db, Config{SMTPURL: srv.url()}, c)
	f := newFixture(b, db, fixtureOptions{})
	for i := range b.N {
		f.book(b, march3.Add(time.Duration(i)*time.Hour), c.Now())
	}
	b.ResetTimer()
	n := drain(b, w)
	b.StopTimer()
	if n != b.N || len(srv.messages()) != b.N {
		b.Fatalf("delivered %d (server got %d), want %d", n, len(srv.messages()), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
