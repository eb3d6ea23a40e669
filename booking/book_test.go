package booking

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

// queryCounter counts the statements sent to PostgreSQL (BEGIN and COMMIT
// included) and the round trips they take (a batch is one): figures that
// the load of the machine does not change, unlike the time.
type queryCounter struct{ statements, roundTrips, batches atomic.Int64 }

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.statements.Add(1)
	c.roundTrips.Add(1)
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *queryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.roundTrips.Add(1)
	c.batches.Add(1)
	return ctx
}

func (c *queryCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	c.statements.Add(1)
}

func (c *queryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (c *queryCounter) reset() { c.statements.Store(0); c.roundTrips.Store(0); c.batches.Store(0) }

func (c *queryCounter) counts() (statements, roundTrips int64) {
	return c.statements.Load(), c.roundTrips.Load()
}

// countedFixture is a fixture whose pool counts what it sends.
func countedFixture(t testing.TB) (*fixture, *queryCounter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(storetest.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	counter := &queryCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return newFixtureOn(t, &store.DB{Pool: pool}), counter
}

// TestBookRoundTrips keeps a booking at two round trips to PostgreSQL
// (what it reads, then what it writes with the commit) and at most 15
// statements, whatever it must check: each round trip more is a wait of
// the open transaction, holding the practitioner's lock, on a busy
// machine.
func TestBookRoundTrips(t *testing.T) {
	f, counter := countedFixture(t)
	pat := f.account("patient", "Camille Durand")
	// A patient already seen, for the type reserved to known patients.
	seen, err := f.book(pat, f.free, at("10:00"), "")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(3 * time.Hour)
	if _, err := f.svc.Mark(f.ctx, f.doc, seen.Appointment.ID, store.StatusCompleted); err != nil {
		t.Fatal(err)
	}
	known, err := f.svc.SaveConsultationType(f.ctx, f.doc, store.ConsultationType{Name: "Suivi", Mode: "video", DurationMinutes: 30, Active: true})
	if err != nil {
		t.Fatal(err)
	}
	var hours []store.OpeningHours
	for d := 0; d < 7; d++ {
		hours = append(hours, store.OpeningHours{ConsultationTypeID: f.free.ID, Weekday: d, Start: "08:00", End: "20:00"},
			store.OpeningHours{ConsultationTypeID: f.paid.ID, Weekday: d, Start: "08:00", End: "12:00"},
			store.OpeningHours{ConsultationTypeID: known.ID, Weekday: d, Start: "20:00", End: "22:00"})
	}
	if err := f.svc.SetOpeningHours(f.ctx, f.doc, hours); err != nil {
		t.Fatal(err)
	}
	// The earliest free slot of a type: booking it moves the type's next
	// free slot, which the booking then stores.
	first := func(typ store.ConsultationType) time.Time {
		now := f.clock.Now()
		slots, err := f.svc.Slots(f.ctx, "", f.doc.ID, typ.ID, now, now.Add(48*time.Hour))
		if err != nil || len(slots) == 0 {
			t.Fatalf("slots of %s: %v %v", typ.Name, slots, err)
		}
		return slots[0].Start
	}
	tests := []struct {
		name               string
		typ                store.ConsultationType
		start              func() time.Time
		statements, rounds int64
	}{
		{"free", f.free, func() time.Time { return first(f.free) }, 15, 2},
		{"free, not the next free slot", f.free, func() time.Time { return first(f.free).Add(4 * time.Hour) }, 14, 2},
		{"paid", f.paid, func() time.Time { return first(f.paid) }, 15, 2},
		{"known patients only", known, func() time.Time { return first(known) }, 15, 2},
	}
	for _, tt := range tests {
		start := tt.start()
		counter.reset()
		if _, err := f.book(pat, tt.typ, start, ""); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		statements, rounds := counter.counts()
		t.Logf("%s: %d statements in %d round trips", tt.name, statements, rounds)
		if statements > tt.statements || rounds > tt.rounds {
			t.Errorf("%s: %d statements in %d round trips; want at most %d in %d", tt.name, statements, rounds, tt.statements, tt.rounds)
		}
	}
	// A reason is sealed before the transaction begins (the vault reads
	// the patient's key id): the transaction itself is still two batches.
	start := first(f.free).Add(24 * time.Hour)
	counter.reset()
	if _, err := f.book(pat, f.free, start, "fever"); err != nil {
		t.Fatal(err)
	}
	if n := counter.batches.Load(); n != 2 {
		t.Errorf("with a reason: %d batches; want 2", n)
	}
}
