package booking

import (
	"testing"
	"time"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

// countedFixture is a fixture whose pool counts what it sends.
func countedFixture(t testing.TB) (*fixture, *storetest.QueryCounter) {
	t.Helper()
	db, counter := storetest.NewCounted(t)
	return newFixtureOn(t, db), counter
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
		counter.Reset()
		if _, err := f.book(pat, tt.typ, start, ""); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		statements, rounds := counter.Counts()
		t.Logf("%s: %d statements in %d round trips", tt.name, statements, rounds)
		if statements > tt.statements || rounds > tt.rounds {
			t.Errorf("%s: %d statements in %d round trips; want at most %d in %d", tt.name, statements, rounds, tt.statements, tt.rounds)
		}
	}
	// A reason is sealed before the transaction begins (the vault reads
	// the patient's key id): the transaction itself is still two batches.
	start := first(f.free).Add(24 * time.Hour)
	counter.Reset()
	if _, err := f.book(pat, f.free, start, "fever"); err != nil {
		t.Fatal(err)
	}
	if n := counter.Batches(); n != 2 {
		t.Errorf("with a reason: %d batches; want 2", n)
	}
}
