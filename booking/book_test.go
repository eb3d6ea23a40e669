package booking

import (
	"errors"
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
// (what it reads, then what it writes with the commit) and at most 14
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
		{"free", f.free, func() time.Time { return first(f.free) }, 14, 2},
		{"free, not the next free slot", f.free, func() time.Time { return first(f.free).Add(4 * time.Hour) }, 13, 2},
		{"paid", f.paid, func() time.Time { return first(f.paid) }, 14, 2},
		{"known patients only", known, func() time.Time { return first(known) }, 14, 2},
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

// TestBookBackToBack books an agenda back to back: a booking reads the
// busy times merged into one interval, and must still refuse every slot
// that meets one of the appointments, take the one right after, and
// store the next free slot after the block.
func TestBookBackToBack(t *testing.T) {
	f := newFixture(t)
	pat := f.account("patient", "Camille Durand")
	for _, hhmm := range []string{"10:00", "10:30", "11:00"} { // 10:00-11:30
		if _, err := f.book(pat, f.free, at(hhmm), ""); err != nil {
			t.Fatalf("%s: %v", hhmm, err)
		}
	}
	tests := []struct {
		typ   store.ConsultationType
		start string
		want  error
	}{
		{f.paid, "10:40", ErrSlotTaken}, // inside the block
		{f.paid, "11:20", ErrSlotTaken}, // overlaps its last half hour
		{f.free, "10:30", ErrSlotTaken}, // one of the three
		{f.free, "11:30", nil},          // right after it
		{f.paid, "11:40", ErrSlotTaken}, // now taken too
	}
	for _, tt := range tests {
		_, err := f.book(pat, tt.typ, at(tt.start), "")
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s %s: got %v, want %v", tt.typ.Name, tt.start, err, tt.want)
		}
	}
	// 10:00-12:00 is taken: the video type's next free slot is 12:00.
	res, _, err := f.svc.Search(f.ctx, SearchQuery{VideoOnly: true})
	if err != nil || len(res) != 1 || res[0].NextSlot == nil || !res[0].NextSlot.Start.Equal(at("12:00")) {
		t.Fatalf("video next slot after the block: %+v %v", res, err)
	}
}

// TestBookStoresNextFree checks, after each booking of either type, that
// the next free slot stored for each consultation type (what search
// shows) is the first slot listed for it, whether the booking moved it
// or not.
func TestBookStoresNextFree(t *testing.T) {
	f := newFixture(t)
	pat := f.account("patient", "Camille Durand")
	check := func(step string) {
		t.Helper()
		now := f.clock.Now()
		for _, typ := range []store.ConsultationType{f.free, f.paid} {
			slots, err := f.svc.Slots(f.ctx, "", f.doc.ID, typ.ID, now, now.Add(60*24*time.Hour))
			if err != nil || len(slots) == 0 {
				t.Fatalf("%s: slots of %s: %v %v", step, typ.Name, slots, err)
			}
			var stored *time.Time
			if err := f.db.Pool.QueryRow(f.ctx, `SELECT next_free_at FROM consultation_types WHERE id = $1`, typ.ID).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if stored == nil || !stored.Equal(slots[0].Start) {
				t.Errorf("%s: %s next free stored %v, first slot %v", step, typ.Name, stored, slots[0].Start)
			}
		}
	}
	check("before")
	for _, b := range []struct {
		typ   store.ConsultationType
		start string
	}{
		{f.free, "15:00"}, // moves neither
		{f.paid, "11:00"}, // moves neither
		{f.free, "10:00"}, // moves both
		{f.paid, "10:40"}, // moves both
		{f.free, "12:00"}, // moves neither
		{f.paid, "11:40"}, // moves the free one only
		{f.paid, "11:20"}, // moves the paid one only
	} {
		if _, err := f.book(pat, b.typ, at(b.start), ""); err != nil {
			t.Fatalf("%s %s: %v", b.typ.Name, b.start, err)
		}
		check(b.typ.Name + " " + b.start)
	}
}
