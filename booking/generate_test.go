package booking

import (
	"context"
	"sort"
	"testing"
	"time"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestGenerateDirectory(t *testing.T) {
	ctx := context.Background()
	db := storetest.New(t)
	if err := GenerateDirectory(ctx, db, 300, 42); err != nil {
		t.Fatal(err)
	}
	if err := GenerateDirectory(ctx, db, 300, 42); err != nil {
		t.Fatalf("second run: %v", err)
	}
	var n, withNext, hours, appts int
	db.Pool.QueryRow(ctx, `SELECT count(*), count(next_free_at) FROM practitioners`).Scan(&n, &withNext)
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM opening_hours`).Scan(&hours)
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments`).Scan(&appts)
	if n != 300 || withNext < 290 || hours < 300*5 || appts == 0 {
		t.Fatalf("%d practitioners (%d with a next slot), %d opening ranges, %d appointments", n, withNext, hours, appts)
	}
	// The precomputed next slot agrees with the slots computed on demand.
	svc := New(db, nil, Config{})
	res, _, err := svc.Search(ctx, SearchQuery{City: "Paris"})
	if err != nil || len(res) == 0 {
		t.Fatalf("search: %v %d", err, len(res))
	}
	for _, r := range res[:3] {
		if r.NextSlot == nil {
			t.Fatalf("no next slot: %+v", r)
		}
		slots, err := svc.Slots(ctx, "", r.ID, r.NextSlot.ConsultationTypeID, time.Now().Add(-time.Hour), r.NextSlot.Start.Add(time.Minute))
		if err != nil || len(slots) == 0 || !slots[0].Start.Equal(r.NextSlot.Start) {
			t.Fatalf("next slot %v, computed %v (%v)", r.NextSlot.Start, slots, err)
		}
	}
	for i := 1; i < len(res); i++ {
		if res[i].NextSlot != nil && res[i-1].NextSlot != nil && res[i].NextSlot.Start.Before(res[i-1].NextSlot.Start) {
			t.Fatal("results not sorted by next availability")
		}
	}
	near, _, err := svc.Search(ctx, SearchQuery{Near: &store.GeoPoint{Lat: 48.8566, Lon: 2.3522}, RadiusKm: 5, Sort: "distance"})
	if err != nil || len(near) == 0 {
		t.Fatalf("near: %v %d", err, len(near))
	}
	for i, r := range near {
		if r.DistanceKm == nil || *r.DistanceKm > 5 || i > 0 && *r.DistanceKm < *near[i-1].DistanceKm {
			t.Fatalf("distance order or radius broken at %d: %+v", i, r)
		}
	}
}

// BenchmarkSearch150k measures directory search latency over 150,000
// generated practitioners (generated once per run; allow a minute).
func BenchmarkSearch150k(b *testing.B) {
	ctx := context.Background()
	// b.Loop runs this function once, so the directory is generated once.
	db := storetest.New(b)
	start := time.Now()
	if err := GenerateDirectory(ctx, db, 150_000, 1); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated 150,000 practitioners in %v", time.Since(start).Round(time.Millisecond))
	svc := New(db, nil, Config{})
	paris := &store.GeoPoint{Lat: 48.8566, Lon: 2.3522}
	lyon := &store.GeoPoint{Lat: 45.7640, Lon: 4.8357}
	queries := []SearchQuery{
		{Specialty: "general_practice", City: "Paris"},
		{Specialty: "dermatology", City: "Lyon"},
		{Specialty: "pediatrics"},
		{City: "Bordeaux", Page: 3},
		{Postcode: "75011"},
		{Near: paris, RadiusKm: 3},
		{Near: lyon, RadiusKm: 10, Specialty: "general_practice", Sort: "distance"},
		{VideoOnly: true},
		{VideoOnly: true, Specialty: "psychiatry"},
		{Language: "en", Specialty: "general_practice", City: "Paris"},
		{Language: "de"},
		{},
		{Specialty: "cardiology", Page: 10},
	}
	var lat []time.Duration
	perQuery := make([][]time.Duration, len(queries))
	for i := 0; b.Loop(); i++ {
		q := queries[i%len(queries)]
		t0 := time.Now()
		if _, _, err := svc.Search(ctx, q); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		lat = append(lat, d)
		perQuery[i%len(queries)] = append(perQuery[i%len(queries)], d)
	}
	b.StopTimer()
	for i, ds := range perQuery {
		if len(ds) == 0 {
			continue
		}
		sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
		b.Logf("median %6.2f ms, max %6.2f ms: %+v", float64(ds[len(ds)/2].Microseconds())/1000, float64(ds[len(ds)-1].Microseconds())/1000, queries[i])
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.95), "p95_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

func TestSearchPages(t *testing.T) {
	ctx := context.Background()
	db := storetest.New(t)
	if err := GenerateDirectory(ctx, db, 200, 7); err != nil {
		t.Fatal(err)
	}
	svc := New(db, nil, Config{})
	seen := map[string]bool{}
	var last *time.Time
	for page := 1; ; page++ {
		res, more, err := svc.Search(ctx, SearchQuery{Page: page})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if seen[r.ID] {
				t.Fatalf("%s on two pages", r.ID)
			}
			seen[r.ID] = true
			if r.NextSlot != nil {
				if last != nil && r.NextSlot.Start.Before(*last) {
					t.Fatalf("page %d out of order", page)
				}
				last = &r.NextSlot.Start
			}
		}
		if !more {
			if page != 10 || len(res) != PageSize {
				t.Fatalf("last page %d with %d results", page, len(res))
			}
			break
		}
	}
	if len(seen) != 200 {
		t.Fatalf("%d practitioners over all pages, want 200", len(seen))
	}
}
