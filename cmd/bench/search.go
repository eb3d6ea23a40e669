package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"teleconsult/booking"
	"teleconsult/store"
)

const targetSearchP95 = 50.0 // ms at 150,000 practitioners

// searchQueries are the mix of BenchmarkSearch150k: by specialty and
// city, postcode, distance, video, language, unfiltered, deep pages.
func searchQueries() []booking.SearchQuery {
	paris := &store.GeoPoint{Lat: 48.8566, Lon: 2.3522}
	lyon := &store.GeoPoint{Lat: 45.7640, Lon: 4.8357}
	return []booking.SearchQuery{
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
}

// runSearch grows one directory from 10,000 to 50,000 to 150,000
// practitioners and measures search latency at each size.
func runSearch(ctx context.Context, o options, rep *Report) error {
	sizes := []int{10_000, 50_000, 150_000}
	perRun := 130 // ten passes over the query mix
	if o.Quick {
		sizes = []int{300, 600, 1000}
		perRun = 26
	}
	url, drop, err := scratchDB(ctx, "bench_search_")
	if err != nil {
		rep.section("Search", "Not measured: "+err.Error()+"\n")
		return err
	}
	defer drop()
	db, err := store.Open(ctx, url)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	svc := booking.New(db, nil, booking.Config{})
	queries := searchQueries()
	type sizeStats struct {
		n            int
		gen          time.Duration
		p50, p95     Stat
		slowest      string
		slowestMedMs float64
	}
	var results []sizeStats
	have := 0
	for i, n := range sizes {
		t0 := time.Now()
		// Each growth step is a new seed: GenerateDirectory adds n-have
		// practitioners and does nothing when run again with a seed.
		if err := booking.GenerateDirectory(ctx, db, n-have, int64(1000+i)); err != nil {
			return fmt.Errorf("generate %d: %w", n, err)
		}
		gen := time.Since(t0)
		have = n
		if _, err := db.Pool.Exec(ctx, "ANALYZE"); err != nil {
			return err
		}
		// One pass to warm the caches, not measured.
		for _, q := range queries {
			if _, _, err := svc.Search(ctx, q); err != nil {
				return fmt.Errorf("search %+v: %w", q, err)
			}
		}
		var p50s, p95s []float64
		perQuery := make([][]time.Duration, len(queries))
		for run := range o.Runs {
			var lat []time.Duration
			for k := range perRun {
				q := queries[k%len(queries)]
				t := time.Now()
				if _, _, err := svc.Search(ctx, q); err != nil {
					return fmt.Errorf("search %+v: %w", q, err)
				}
				d := time.Since(t)
				lat = append(lat, d)
				perQuery[k%len(queries)] = append(perQuery[k%len(queries)], d)
			}
			p50s = append(p50s, percentileMs(lat, 50))
			p95s = append(p95s, percentileMs(lat, 95))
			logf("search %d practitioners run %d: p50 %.2f ms, p95 %.2f ms", n, run+1, p50s[run], p95s[run])
		}
		s := sizeStats{n: n, gen: gen, p50: statOf(p50s), p95: statOf(p95s)}
		for qi, ds := range perQuery {
			if m := percentileMs(ds, 50); m > s.slowestMedMs {
				s.slowestMedMs = m
				s.slowest = fmt.Sprintf("%+v", queries[qi])
			}
		}
		results = append(results, s)
	}
	last := results[len(results)-1]
	sec := "search"
	keys := []string{"10k", "50k", "150k"}
	for i, s := range results {
		rep.put(sec, "p50_ms_"+keys[i], s.p50.Median)
		rep.put(sec, "p95_ms_"+keys[i], s.p95.Median)
		rep.put(sec, "practitioners_"+keys[i], float64(s.n))
		rep.put(sec, "generate_seconds_"+keys[i], s.gen.Seconds())
	}
	for _, s := range results {
		v := ""
		if s.n == last.n {
			v = verdict(!math.IsNaN(s.p95.Median), s.p95.Median < targetSearchP95)
		}
		target := ""
		if s.n == last.n {
			target = "< 50 ms at 150k"
		}
		rep.row("Search", fmt.Sprintf("search p95 at %d practitioners", s.n), "ms", s.p95, 2, target, v)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "**What:** directory search latency (`booking.Service.Search`, what `GET /api/v1/practitioners` runs) as the directory grows. "+
		"**How:** one fresh database is filled by `booking.GenerateDirectory` (COPY) to %d, then grown to %d and %d practitioners; "+
		"after each step, ANALYZE and one warm-up pass, then %d runs of %d sequential searches cycling through %d queries "+
		"(specialty and city, postcode, within a radius, sorted by distance, video only, language, unfiltered, deep pages).\n\n",
		sizes[0], sizes[1], sizes[2], o.Runs, perRun, len(queries))
	b.WriteString("| Practitioners | generated in | p50 ms | p50 spread | p95 ms | p95 spread | slowest query (its median) |\n|---:|---:|---:|---:|---:|---:|---|\n")
	for _, s := range results {
		fmt.Fprintf(&b, "| %d | %v | %s | %s | %s | %s | `%s` (%.1f ms) |\n", s.n, s.gen.Round(time.Second), s.p50.med(2), s.p50.spread(2), s.p95.med(2), s.p95.spread(2), s.slowest, s.slowestMedMs)
	}
	if len(results) >= 2 {
		fmt.Fprintf(&b, "\nGrowth: p95 goes from %.2f ms to %.2f ms while the directory grows %.0fx.\n", results[0].p95.Median, last.p95.Median, float64(last.n)/float64(results[0].n))
	}
	fmt.Fprintf(&b, "\n**Target** p95 < 50 ms at %d practitioners: %s.\n", last.n, verdict(!math.IsNaN(last.p95.Median), last.p95.Median < targetSearchP95))
	rep.put(sec, "p95_ms_150k", last.p95.Median)
	rep.section("Search", b.String())
	return nil
}
