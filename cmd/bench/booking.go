package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"teleconsult/audit"
	"teleconsult/server"
	"teleconsult/sfu"
)

// Booking targets (the issue's).
const (
	targetBookingsPerSec = 1000.0
	targetBookingP99     = 100.0 // ms
	contentionClients    = 100
	contentionSlots      = 10
	benchPassword        = "bench password, long enough"
)

// serviceEnv is the whole service (server.New) on a fresh database,
// served on a loopback port in this process.
type serviceEnv struct {
	srv   *server.Server
	base  string
	hs    *http.Server
	drop  func()
	dbURL string
}

func startService(ctx context.Context, prefix string) (*serviceEnv, error) {
	dbURL, drop, err := scratchDB(ctx, prefix)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		drop()
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	secret := make([]byte, 32)
	rand.Read(secret)
	dir, err := os.MkdirTemp("", "bench-key-")
	if err != nil {
		drop()
		return nil, err
	}
	srv, err := server.New(ctx, server.Config{
		DatabaseURL:   dbURL,
		BaseURL:       base,
		MasterKeyFile: filepath.Join(dir, "master.key"),
		Secret:        secret,
		MFARoles:      map[string]bool{}, // staff log in with a password here
		Media:         sfu.Config{IncludeLoopback: true},
		Log:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		drop()
		return nil, err
	}
	srv.Start()
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	return &serviceEnv{srv: srv, base: base, hs: hs, dbURL: dbURL, drop: func() { drop(); os.RemoveAll(dir) }}, nil
}

func (e *serviceEnv) close() {
	e.hs.Close()
	e.srv.Close()
	e.drop()
}

// apiClient is one user's HTTP session.
type apiClient struct {
	base string
	c    *http.Client
}

func (e *serviceEnv) client() *apiClient {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	return &apiClient{base: e.base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: tr}}
}

// call sends a JSON request and decodes a JSON answer into out.
func (a *apiClient) call(method, path string, body, out any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, nil, err
	}
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, b, err
		}
	}
	return res.StatusCode, b, nil
}

// user creates an account and logs it in.
func (e *serviceEnv) user(ctx context.Context, role, name string) (*apiClient, string, error) {
	b := make([]byte, 6)
	rand.Read(b)
	email := fmt.Sprintf("%s-%x@bench.test", role, b)
	acct, err := e.srv.Auth.Create(ctx, role, email, benchPassword, name, "fr")
	if err != nil {
		return nil, "", err
	}
	c := e.client()
	if st, body, err := c.call("POST", "/api/v1/login", map[string]string{"email": email, "password": benchPassword}, nil); err != nil || st != 200 {
		return nil, "", fmt.Errorf("login %s: %d %s %v", role, st, body, err)
	}
	return c, acct.ID, nil
}

// bookable is one practitioner's free slots of one consultation type.
type bookable struct {
	practitioner, typeID string
	slots                []time.Time
}

// practitioner sets up a practitioner over the API: profile, a free
// 15-minute video consultation, open every day from 00:00 to 23:30, and
// returns the free slots of the next two weeks.
func (e *serviceEnv) practitioner(ctx context.Context, i int) (bookable, error) {
	c, id, err := e.user(ctx, "practitioner", fmt.Sprintf("Dr Bench %d", i))
	if err != nil {
		return bookable{}, err
	}
	lat, lon := 45.764, 4.8357
	notice := 0
	prof := map[string]any{"specialty": "general_practice", "rpps": fmt.Sprintf("1%010d", i), "address": "1 place Bellecour",
		"city": "Lyon", "postcode": "69002", "latitude": lat, "longitude": lon, "languages": []string{"fr"}, "min_notice_minutes": notice}
	if st, b, err := c.call("PUT", "/api/v1/practitioner/profile", prof, nil); err != nil || st != 200 {
		return bookable{}, fmt.Errorf("profile: %d %s %v", st, b, err)
	}
	var ct struct {
		ID string `json:"id"`
	}
	if st, b, err := c.call("POST", "/api/v1/practitioner/consultation-types", map[string]any{"name": "Téléconsultation", "mode": "video", "duration_minutes": 15}, &ct); err != nil || st != 201 {
		return bookable{}, fmt.Errorf("consultation type: %d %s %v", st, b, err)
	}
	var hours []map[string]any
	for d := range 7 {
		hours = append(hours, map[string]any{"consultation_type_id": ct.ID, "weekday": d, "start": "00:00", "end": "23:30"})
	}
	if st, b, err := c.call("PUT", "/api/v1/practitioner/opening-hours", map[string]any{"opening_hours": hours}, nil); err != nil || st != 200 {
		return bookable{}, fmt.Errorf("opening hours: %d %s %v", st, b, err)
	}
	now := time.Now().UTC().Add(time.Hour)
	var s struct {
		Slots []struct {
			Start time.Time `json:"start"`
		} `json:"slots"`
	}
	path := fmt.Sprintf("/api/v1/practitioners/%s/slots?from=%s&to=%s&consultation_type_id=%s", id,
		now.Format(time.RFC3339), now.Add(14*24*time.Hour).Format(time.RFC3339), ct.ID)
	if st, b, err := c.call("GET", path, nil, &s); err != nil || st != 200 {
		return bookable{}, fmt.Errorf("slots: %d %s %v", st, b, err)
	}
	bk := bookable{practitioner: id, typeID: ct.ID}
	for _, x := range s.Slots {
		bk.slots = append(bk.slots, x.Start)
	}
	if len(bk.slots) == 0 {
		return bk, errors.New("practitioner has no free slot")
	}
	return bk, nil
}

// attempt is one booking request's outcome.
type attempt struct {
	status  int
	code    string
	latency time.Duration
}

func book(c *apiClient, practitioner, typeID string, start time.Time) attempt {
	body := map[string]any{"practitioner_id": practitioner, "consultation_type_id": typeID, "start": start.Format(time.RFC3339)}
	t0 := time.Now()
	st, b, err := c.call("POST", "/api/v1/appointments", body, nil)
	a := attempt{status: st, latency: time.Since(t0)}
	if err != nil {
		a.code = err.Error()
	} else if st != 201 {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		a.code = e.Error.Code
	}
	return a
}

// waitSampler counts what the database's active sessions of one database
// are waiting on, sampled every 50 ms: PostgreSQL's own profile of where
// booking transactions spend their time.
type waitSampler struct {
	mu       sync.Mutex
	counts   map[string]int
	advisory map[int64]int // waiting sessions per advisory lock key
	samples  int
	stop     chan struct{}
	done     chan struct{}
}

func sampleWaits(e *serviceEnv) *waitSampler {
	w := &waitSampler{counts: map[string]int{}, advisory: map[int64]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			// A session idle in a transaction is waiting for the service's
			// next statement: a round trip, seen from PostgreSQL.
			rows, err := e.srv.DB.Pool.Query(ctx, `SELECT CASE WHEN state = 'active' THEN coalesce(wait_event_type || ':' || wait_event, 'running (CPU)')
				ELSE 'idle in transaction' END FROM pg_stat_activity
				WHERE datname = current_database() AND state IN ('active', 'idle in transaction') AND pid <> pg_backend_pid()`)
			if err == nil {
				w.mu.Lock()
				for rows.Next() {
					var s string
					if rows.Scan(&s) == nil {
						w.counts[s]++
					}
				}
				w.samples++
				w.mu.Unlock()
				rows.Close()
			}
			// Which advisory lock they queue on (the key of a one-bigint
			// pg_advisory_xact_lock is in objid for keys under 2^32).
			rows, err = e.srv.DB.Pool.Query(ctx, `SELECT objid::bigint FROM pg_locks
				WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
			if err == nil {
				w.mu.Lock()
				for rows.Next() {
					var k int64
					if rows.Scan(&k) == nil {
						w.advisory[k]++
					}
				}
				w.mu.Unlock()
				rows.Close()
			}
			cancel()
		}
	}()
	return w
}

// auditLocks are the advisory lock keys of the audit log: 7215_0002 is
// the global lock with which audit.Record used to order writers of the
// hash chain (gone: entries are sealed into the chain off the request
// path), 7215_0003 the sealer's, only ever tried, never waited for. A
// share of waits on either would be a regression.
var auditLocks = []int64{7215_0002, 7215_0003}

// waitShares is what the sampled active sessions were doing, as shares
// of all samples of active sessions.
type waitShares struct {
	CPU, WAL, RowLocks, Client, InTx, Audit float64
}

// end stops sampling and describes the busiest waits, and returns the
// shares of the main kinds.
func (w *waitSampler) end() (string, waitShares) {
	close(w.stop)
	<-w.done
	type kv struct {
		k string
		n int
	}
	var all []kv
	total := 0
	for k, n := range w.counts {
		all = append(all, kv{k, n})
		total += n
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n })
	if total == 0 {
		return "no active database session was seen", waitShares{}
	}
	var parts []string
	for _, x := range all[:min(6, len(all))] {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", x.k, 100*float64(x.n)/float64(total)))
	}
	var sh waitShares
	for k, n := range w.counts {
		f := float64(n) / float64(total)
		switch {
		case k == "running (CPU)":
			sh.CPU += f
		case k == "IO:WALSync" || k == "IO:WALWrite" || strings.HasPrefix(k, "LWLock:WAL"):
			sh.WAL += f
		case k == "Lock:transactionid" || k == "Lock:tuple":
			sh.RowLocks += f
		case k == "Client:ClientRead":
			sh.Client += f
		case k == "idle in transaction":
			sh.InTx += f
		}
	}
	adv, audit := 0, 0
	for k, n := range w.advisory {
		adv += n
		if slices.Contains(auditLocks, k) {
			audit += n
		}
	}
	sh.Audit = float64(audit) / float64(total)
	desc := fmt.Sprintf("%.1f sessions in a transaction on average over %d samples; %s", float64(total)/float64(max(1, w.samples)), w.samples, strings.Join(parts, ", "))
	if adv > 0 {
		desc += fmt.Sprintf("; of the sessions waiting on an advisory lock, %.0f%% waited on the audit log's keys", 100*float64(audit)/float64(adv))
	} else {
		desc += "; no session waited on an advisory lock"
	}
	return desc, sh
}

// machineBusy reads the CPU time of the whole machine (all processes)
// from /proc/stat: busy and total jiffies since boot.
func machineBusy() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, x := range f[1:] {
		v, _ := strconv.ParseUint(x, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// processCPU is this process's CPU time (the service and the HTTP clients).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runBooking measures bookings on distinct slots, then contention over
// a few slots, then pgbench on the same PostgreSQL.
func runBooking(ctx context.Context, o options, rep *Report) error {
	practitioners, clients, window := 40, 32, 5*time.Second
	if o.Quick {
		practitioners, clients, window = 3, 4, 700*time.Millisecond
	}
	nContention := contentionClients
	if o.Quick {
		nContention = 20
	}
	e, err := startService(ctx, "bench_booking_")
	if err != nil {
		rep.section("Booking", "Not measured: "+err.Error()+"\n")
		return err
	}
	defer e.close()
	t0 := time.Now()
	// Set up practitioners and patients, a few at a time.
	docs := make([]bookable, practitioners)
	patients := make([]*apiClient, max(clients, nContention))
	var setupErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			d, err := e.practitioner(ctx, i)
			mu.Lock()
			defer mu.Unlock()
			docs[i] = d
			if err != nil && setupErr == nil {
				setupErr = err
			}
		}()
	}
	for i := range patients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, _, err := e.user(ctx, "patient", fmt.Sprintf("Patient Bench %d", i))
			mu.Lock()
			defer mu.Unlock()
			patients[i] = c
			if err != nil && setupErr == nil {
				setupErr = err
			}
		}()
	}
	wg.Wait()
	if setupErr != nil {
		rep.section("Booking", "Not measured: set-up failed: "+setupErr.Error()+"\n")
		return setupErr
	}
	logf("booking: %d practitioners and %d patients set up in %v", practitioners, len(patients), time.Since(t0).Round(time.Millisecond))

	// The contention slots come from the first practitioner, the rest of
	// the slots interleave practitioners so that concurrent clients work
	// on different agendas.
	contended := docs[0].slots[:contentionSlots*o.Runs]
	docs[0].slots = docs[0].slots[contentionSlots*o.Runs:]
	type slotRef struct {
		doc   *bookable
		start time.Time
	}
	var pool []slotRef
	for k := 0; ; k++ {
		added := false
		for i := range docs {
			if k < len(docs[i].slots) {
				pool = append(pool, slotRef{&docs[i], docs[i].slots[k]})
				added = true
			}
		}
		if !added {
			break
		}
	}

	// Distinct slots.
	var perSec, p50s, p99s []float64
	outcomes := map[string]int{}
	var next atomic.Int64
	var waits string
	var shares waitShares
	var machineShare, processCores, load, acquireMs float64
	for run := range o.Runs {
		var profFile *os.File
		if o.Profile && run == 0 {
			if profFile, err = os.Create(filepath.Join(o.Out, "booking-cpu.pprof")); err == nil {
				if err := pprof.StartCPUProfile(profFile); err != nil {
					profFile.Close()
					profFile = nil
				}
			}
		}
		var ws *waitSampler
		if run == 0 {
			ws = sampleWaits(e)
		}
		var lat []time.Duration
		var ok int
		busy0, total0 := machineBusy()
		cpu0 := processCPU()
		pool0 := e.srv.DB.Pool.Stat()
		start := time.Now()
		end := start.Add(window)
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var local []attempt
				for time.Now().Before(end) && ctx.Err() == nil {
					i := next.Add(1) - 1
					if int(i) >= len(pool) {
						return
					}
					s := pool[i]
					local = append(local, book(patients[w], s.doc.practitioner, s.doc.typeID, s.start))
				}
				mu.Lock()
				defer mu.Unlock()
				for _, a := range local {
					lat = append(lat, a.latency)
					if a.status == 201 {
						ok++
					}
					outcomes[fmt.Sprintf("%d %s", a.status, a.code)]++
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		if ws != nil {
			waits, shares = ws.end()
			busy1, total1 := machineBusy()
			if total1 > total0 {
				machineShare = float64(busy1-busy0) / float64(total1-total0)
			}
			processCores = (processCPU() - cpu0).Seconds() / elapsed.Seconds()
			pool1 := e.srv.DB.Pool.Stat()
			if n := pool1.AcquireCount() - pool0.AcquireCount(); n > 0 {
				acquireMs = float64((pool1.AcquireDuration() - pool0.AcquireDuration()).Milliseconds()) / float64(n)
			}
			if b, err := os.ReadFile("/proc/loadavg"); err == nil {
				load, _ = strconv.ParseFloat(strings.Fields(string(b))[0], 64)
			}
		}
		if profFile != nil {
			pprof.StopCPUProfile()
			profFile.Close()
			rep.Profiles["booking-cpu.pprof"] = "this process (service and HTTP clients) during the first distinct-slot booking run"
			if f, err := os.Create(filepath.Join(o.Out, "booking-allocs.pprof")); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
				rep.Profiles["booking-allocs.pprof"] = "allocations of this process up to the end of the first booking run (-sample_index=alloc_objects)"
			}
		}
		perSec = append(perSec, float64(ok)/elapsed.Seconds())
		p50s = append(p50s, percentileMs(lat, 50))
		p99s = append(p99s, percentileMs(lat, 99))
		logf("booking run %d: %.0f bookings/s, p50 %.1f ms, p99 %.1f ms (%d requests)", run+1, perSec[run], p50s[run], p99s[run], len(lat))
	}

	// Contention: nContention clients over contentionSlots slots at once.
	var cP50, cP99 []float64
	exact := true
	var oneWinner []float64 // slots with exactly one winner, per run
	var contentionNotes []string
	for run := range o.Runs {
		slots := contended[run*contentionSlots : (run+1)*contentionSlots]
		start := make(chan struct{})
		results := make([]attempt, nContention)
		for i := range nContention {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i] = book(patients[i], docs[0].practitioner, docs[0].typeID, slots[i%contentionSlots])
			}()
		}
		close(start)
		wg.Wait()
		winners := make([]int, contentionSlots)
		other := map[string]int{}
		var lat []time.Duration
		for i, a := range results {
			lat = append(lat, a.latency)
			switch {
			case a.status == 201:
				winners[i%contentionSlots]++
			case a.status == 409 && a.code == "slot_taken":
			default:
				other[fmt.Sprintf("%d %s", a.status, a.code)]++
			}
		}
		good := 0
		for i, s := range slots {
			var rows int
			err := e.srv.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments WHERE practitioner_id = $1 AND starts_at = $2`, docs[0].practitioner, s).Scan(&rows)
			if err != nil || rows != 1 || winners[i] != 1 {
				exact = false
				contentionNotes = append(contentionNotes, fmt.Sprintf("run %d slot %d: %d winners over HTTP, %d rows (%v)", run+1, i, winners[i], rows, err))
			} else {
				good++
			}
		}
		oneWinner = append(oneWinner, float64(good))
		if len(other) > 0 {
			contentionNotes = append(contentionNotes, fmt.Sprintf("run %d: answers other than 201 or 409 slot_taken: %v", run+1, other))
		}
		cP50 = append(cP50, percentileMs(lat, 50))
		cP99 = append(cP99, percentileMs(lat, 99))
		logf("booking contention run %d: winners per slot %v, p50 %.1f ms, p99 %.1f ms", run+1, winners, cP50[run], cP99[run])
	}

	// pgbench on the same server, after the booking runs.
	tps, pgNote, pgErr := runPgbench(ctx, o, clients)

	ps, p50, p99 := statOf(perSec), statOf(p50s), statOf(p99s)
	cs50, cs99 := statOf(cP50), statOf(cP99)
	tpsStat := statOf(tps)
	ratio := ps.Median / tpsStat.Median
	var ratios []float64
	for _, x := range perSec {
		ratios = append(ratios, finite(x/tpsStat.Median)...)
	}
	sec := "booking"
	rep.put(sec, "per_second", ps.Median)
	rep.put(sec, "p50_ms", p50.Median)
	rep.put(sec, "p99_ms", p99.Median)
	rep.put(sec, "clients", float64(clients))
	rep.put(sec, "practitioners", float64(practitioners))
	rep.put(sec, "pgbench_tps", tpsStat.Median)
	rep.put(sec, "ratio_to_pgbench", ratio)
	rep.put(sec, "contention_exactly_one_winner", exact)
	rep.put(sec, "contention_clients", float64(nContention))
	rep.put(sec, "contention_slots", float64(contentionSlots))
	rep.put(sec, "contention_p50_ms", cs50.Median)
	rep.put(sec, "contention_p99_ms", cs99.Median)
	rep.put(sec, "per_second_runs", ps)
	rep.put(sec, "p99_ms_runs", p99)
	rep.put(sec, "pgbench_tps_runs", tpsStat)

	measured := !math.IsNaN(ps.Median)
	rep.row("Booking", fmt.Sprintf("bookings per second, distinct slots, %d clients", clients), "/s", ps, 0, ">= 1,000/s", verdict(measured, ps.Median >= targetBookingsPerSec))
	rep.row("Booking", "booking latency p99 (distinct slots)", "ms", p99, 1, "< 100 ms", verdict(measured, p99.Median < targetBookingP99))
	rep.row("Booking", "pgbench TPS on the same PostgreSQL", "tps", tpsStat, 0, "", "")
	rep.row("Booking", "bookings per second / pgbench TPS", "", statOf(ratios), 3, "", "")
	rep.row("Booking", fmt.Sprintf("%d clients over %d slots: slots with exactly one winner", nContention, contentionSlots), fmt.Sprintf("of %d", contentionSlots), statOf(oneWinner), 0, "exactly one per slot", verdict(len(oneWinner) > 0, exact))
	rep.row("Booking", "contended booking latency p99", "ms", cs99, 1, "", "")

	var b strings.Builder
	fmt.Fprintf(&b, "**What:** appointments booked per second through the JSON API (`POST /api/v1/appointments`), as patients do. "+
		"**How:** the whole service (`server.New`) runs in this process on a fresh database of the same PostgreSQL, served on a loopback port; "+
		"%d practitioners are set up over the API (profile, a free 15-minute video consultation, open every day 00:00-23:30), "+
		"and %d concurrent patient clients (each its own session) book distinct free slots, interleaved across practitioners, for %.1f s per run. "+
		"Latency is per request, as the client sees it.\n\n", practitioners, clients, window.Seconds())
	fmt.Fprintf(&b, "| Figure | Median | Spread |\n|---|---:|---:|\n")
	fmt.Fprintf(&b, "| bookings per second | %s | %s |\n| latency p50 (ms) | %s | %s |\n| latency p99 (ms) | %s | %s |\n", ps.med(0), ps.spread(0), p50.med(1), p50.spread(1), p99.med(1), p99.spread(1))
	fmt.Fprintf(&b, "| pgbench TPS | %s | %s |\n| bookings/s over pgbench TPS | %s | |\n\n", tpsStat.med(0), tpsStat.spread(0), fmtf(ratio, 3))
	fmt.Fprintf(&b, "Answers over all distinct-slot runs: %s.\n\n", fmtCounts(outcomes))
	fmt.Fprintf(&b, "**Contention:** %d clients (distinct patients) released at once on %d slots of one practitioner (each slot wanted by %d clients), %d runs on fresh slots. "+
		"Exactly one winner per slot, over HTTP (one 201, the rest 409 `slot_taken`) and in the database (one row per slot): **%s**. Latency p50 %s ms, p99 %s ms (spread %s).\n\n",
		nContention, contentionSlots, nContention/contentionSlots, o.Runs, yesNo(exact), cs50.med(1), cs99.med(1), cs99.spread(1))
	for _, n := range contentionNotes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	fmt.Fprintf(&b, "**pgbench:** %s\n\n", pgNote)
	if pgErr != nil {
		fmt.Fprintf(&b, "pgbench failed: %v\n\n", pgErr)
	}
	fmt.Fprintf(&b, "**What the database was doing** during the first booking run (PostgreSQL's `pg_stat_activity` of the booking database, sampled every 50 ms; `Lock:*` waits are transactions queued behind another's lock, `IO:WALSync`/`LWLock:WAL*` is commit flushing, `Client:ClientRead` and `idle in transaction` are the server waiting for the service's next statement): %s.\n\n", waits)
	fmt.Fprintf(&b, "**Targets.** >= 1,000 bookings/s on distinct slots: %s. p99 < 100 ms: %s. Exactly one winner per slot: %s.\n\n",
		verdict(measured, ps.Median >= targetBookingsPerSec), verdict(measured, p99.Median < targetBookingP99), verdict(true, exact))
	rep.put(sec, "audit_lock_wait_share", shares.Audit)
	rep.put(sec, "machine_cpu_busy_share", machineShare)
	rep.put(sec, "process_cpu_cores", processCores)
	rep.put(sec, "pool_acquire_ms", acquireMs)
	fmt.Fprintf(&b, "**The audit log is off the booking's critical path.** `audit.Record` inserts the entry in the booking's transaction without any lock; "+
		"a sealer on each node (one at a time across the cluster, every %v) gives committed entries their place in the hash chain afterwards. "+
		"Share of the sampled active sessions queued on the audit log's advisory locks: %.0f%% (87-93%% when Record took a global lock for the chain).\n\n",
		audit.DefaultSealInterval, 100*shares.Audit)
	if !(measured && ps.Median >= targetBookingsPerSec && p99.Median < targetBookingP99) {
		fmt.Fprintf(&b, "**What limits it** (first run): the machine's %d cores were %.0f%% busy (all processes; load average %.1f at the end of the run), "+
			"this process (service and HTTP clients) used %.2f of them; PostgreSQL's sampled sessions in a transaction were running on CPU %.0f%% of the time, "+
			"writing or flushing WAL for commits %.0f%%, queued on another transaction's row lock (same practitioner) %.0f%%, waiting for the service's next statement %.0f%%; "+
			"a booking waited %.1f ms on average for a pooled connection. ",
			runtime.NumCPU(), 100*machineShare, load, processCores, 100*shares.CPU, 100*shares.WAL, 100*shares.RowLocks, 100*(shares.Client+shares.InTx), acquireMs)
		switch {
		case shares.Audit >= 0.25:
			fmt.Fprintf(&b, "The audit log's locks are the limit again: a regression.")
		case shares.Client+shares.InTx >= 0.5:
			fmt.Fprintf(&b, "Open transactions spend most of their time waiting for the service's next statement: the gap between a booking's two round trips (its reads, then its writes with the commit: 14 statements, `go test -bench Book ./booking/` counts both), "+
				"a wake-up of the service on cores the rest of the machine keeps busy, costs more than the work itself; no lock dominates.")
		case machineShare >= 0.9:
			fmt.Fprintf(&b, "The cores are saturated: what limits bookings is CPU, PostgreSQL's (14 statements in two round trips and one WAL flush per booking, `go test -bench Book ./booking/` counts them) "+
				"and the rest of the machine's, not a lock; pgbench, measured on the same busy machine, is the yardstick for what its PostgreSQL can commit.")
		case shares.WAL >= 0.3:
			fmt.Fprintf(&b, "Commit flushing dominates: each booking is one durable commit, and the disk's flush rate bounds them.")
		case shares.RowLocks >= 0.3:
			fmt.Fprintf(&b, "Bookings of one practitioner serialise on its row lock by design; more practitioners in the run would spread them.")
		default:
			fmt.Fprintf(&b, "No single wait dominates.")
		}
		b.WriteString("\n\n")
	}
	fmt.Fprintf(&b, "Each booking is one transaction in two round trips: BEGIN, the practitioner's row lock and the agenda's reads in one pipelined batch; the slot checked in the service; "+
		"then the appointment with its event, the next free slots, its outbox and audit rows and COMMIT in a second batch (lapsed holds and offers, rare, are expired in between); "+
		"bookings for one practitioner therefore serialise by design, and distinct practitioners proceed in parallel up to the connection pool (20) and the cores.\n\n")
	if o.Profile {
		p := filepath.Join(o.Out, "booking-cpu.pprof")
		fmt.Fprintf(&b, "Where this process's CPU went during the first run (`go tool pprof -top %s`; the HTTP clients run in the same process):\n\n```\n%s```\n\n", p, pprofTop(p, ""))
	} else {
		b.WriteString("Run `make bench PROFILE=1` for CPU and allocation profiles of the booking run.\n\n")
	}
	rep.section("Booking", b.String())
	if !measured {
		return errors.New("no booking measured")
	}
	return nil
}

func finite(f float64) []float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return []float64{f}
}

func fmtf(f float64, prec int) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "not measured"
	}
	return strconv.FormatFloat(f, 'f', prec, 64)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("`%s` x %d", strings.TrimSpace(k), m[k]))
	}
	return strings.Join(parts, ", ")
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbenchPath finds pgbench in PATH or Debian's PostgreSQL directories.
func pgbenchPath() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(matches) == 0 {
		return "", errors.New("pgbench not found (PATH or /usr/lib/postgresql/*/bin)")
	}
	slices.Sort(matches)
	return matches[len(matches)-1], nil
}

// runPgbench initialises a scratch database and runs pgbench's simple
// write transaction with as many clients as the booking run, Runs times.
func runPgbench(ctx context.Context, o options, clients int) (tps []float64, note string, err error) {
	bin, err := pgbenchPath()
	if err != nil {
		return nil, "not measured: " + err.Error(), err
	}
	scale, secs := 10, 6
	if o.Quick {
		scale, secs = 1, 1
	}
	url, drop, err := scratchDB(ctx, "bench_pgbench_")
	if err != nil {
		return nil, "not measured: " + err.Error(), err
	}
	defer drop()
	if out, err := exec.CommandContext(ctx, bin, "-i", "-q", "-s", strconv.Itoa(scale), url).CombinedOutput(); err != nil {
		return nil, "not measured: pgbench -i failed", fmt.Errorf("pgbench -i: %v: %s", err, out)
	}
	for run := range o.Runs {
		out, err := exec.CommandContext(ctx, bin, "-N", "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(secs), url).CombinedOutput()
		if err != nil {
			return tps, "failed", fmt.Errorf("pgbench: %v: %s", err, out)
		}
		m := tpsRe.FindSubmatch(out)
		if m == nil {
			return tps, "failed", fmt.Errorf("pgbench: no tps in %s", out)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		tps = append(tps, v)
		logf("pgbench run %d: %.0f tps", run+1, v)
	}
	note = fmt.Sprintf("`%s -i -s %d` on a scratch database of the same server, then %d runs of `pgbench -N -c %d -j 2 -T %d` "+
		"(the built-in simple-update transaction: one UPDATE, one SELECT and one INSERT committed per transaction, with as many clients as the booking run). "+
		"Median %.0f TPS (spread %s); the booking figure divided by it shows how much of what the database itself can commit the service turns into bookings.",
		filepath.Base(bin), scale, o.Runs, clients, secs, statOf(tps).Median, statOf(tps).spread(0))
	return tps, note, nil
}
