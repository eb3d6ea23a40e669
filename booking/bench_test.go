package booking

import (
	"testing"
	"time"

	"teleconsult/audit"
	"teleconsult/store/storetest"
)

// BenchmarkBook books distinct free slots of one practitioner, one after
// the other, as POST /api/v1/appointments does (no reason given), and
// reports the statements each booking sends and the round trips they
// take.
func BenchmarkBook(b *testing.B) {
	db, counter := storetest.NewCounted(b)
	f := newFixtureOn(b, db)
	var patients []audit.Actor
	for range 20 {
		patients = append(patients, f.account("patient", "Bench Patient"))
	}
	var slots []Slot
	for from := monday0700; len(slots) < 2000 && from.Before(monday0700.Add(80*24*time.Hour)); from = from.Add(7 * 24 * time.Hour) {
		s, err := f.svc.Slots(f.ctx, "", f.doc.ID, f.free.ID, from, from.Add(7*24*time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		slots = append(slots, s...)
	}

	b.ReportAllocs()
	counter.Reset()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i >= len(slots) {
			b.Fatalf("only %d free slots: run with -benchtime=%dx or fewer", len(slots), len(slots))
		}
		if _, err := f.book(patients[i%len(patients)], f.free, slots[i].Start, ""); err != nil {
			b.Fatalf("booking %d (%v): %v", i, slots[i].Start, err)
		}
	}
	b.StopTimer()
	statements, roundTrips := counter.Counts()
	b.ReportMetric(float64(statements)/float64(b.N), "queries/op")
	b.ReportMetric(float64(roundTrips)/float64(b.N), "roundtrips/op")
}
