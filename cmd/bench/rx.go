package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"teleconsult/audit"
	"teleconsult/rx"
	"teleconsult/store"
	"teleconsult/vault"
)

const targetSignedPerSec = 200.0

// rxWorld is a practitioner, a patient with a profile and a consultation
// in progress between them, in the service's database.
type rxWorld struct {
	practitioner audit.Actor
	appointment  string
}

func newRxWorld(ctx context.Context, e *serviceEnv) (rxWorld, error) {
	db, v := e.srv.DB, e.srv.Vault
	account := func(role, name string) (audit.Actor, error) {
		a, err := store.InsertAccount(ctx, db.Pool, fmt.Sprintf("%s-%s@bench.test", role, store.NewUUID()[:8]), name, role, "not-a-real-hash", "fr")
		return audit.Actor{ID: a.ID, Role: role, IP: "127.0.0.1"}, err
	}
	doc, err := account("practitioner", "Dr Hélène Garçon")
	if err != nil {
		return rxWorld{}, err
	}
	if err := store.UpsertPractitioner(ctx, db.Pool, store.Practitioner{AccountID: doc.ID, Specialty: "general_practice", RPPS: "10101234567",
		Address: "12 rue de l'Église", City: "Lyon", Postcode: "69003", Phone: "04 78 00 00 00", TimeZone: "Europe/Paris",
		HorizonDays: 60, NoShowLimit: 3}); err != nil {
		return rxWorld{}, err
	}
	pat, err := account("patient", "Éloïse Lefèvre")
	if err != nil {
		return rxWorld{}, err
	}
	key, err := v.AccountKey(ctx, db.Pool, pat.ID)
	if err != nil {
		return rxWorld{}, err
	}
	profileID := store.NewUUID()
	m, _ := json.Marshal(map[string]float64{"weight_kg": 58.5, "height_cm": 165})
	sealed, err := v.Seal(ctx, db.Pool, key, vault.AAD{Table: "patient_profiles", Column: "measurements", RowID: profileID}, m)
	if err != nil {
		return rxWorld{}, err
	}
	bd, _ := time.Parse(time.DateOnly, "1990-03-12")
	if _, err := store.SavePatientProfile(ctx, db.Pool, store.PatientProfile{ID: profileID, AccountID: pat.ID, Relationship: "self",
		FamilyName: "Lefèvre", GivenNames: "Éloïse", Sex: "F", BirthDate: bd, Measurements: sealed}); err != nil {
		return rxWorld{}, err
	}
	ct, err := store.SaveConsultationType(ctx, db.Pool, store.ConsultationType{PractitionerID: doc.ID, Name: "Téléconsultation",
		Mode: "video", DurationMinutes: 15, FeeCents: 2500, NewPatients: true, Active: true})
	if err != nil {
		return rxWorld{}, err
	}
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	a, err := store.InsertAppointment(ctx, db.Pool, store.Appointment{ID: store.NewUUID(), PractitionerID: doc.ID, ConsultationTypeID: ct.ID,
		PatientID: pat.ID, Mode: "video", StartsAt: start, EndsAt: start.Add(15 * time.Minute), Status: store.StatusInProgress,
		FeeCents: 2500, Currency: "EUR"}, doc.ID)
	if err != nil {
		return rxWorld{}, err
	}
	return rxWorld{practitioner: doc, appointment: a.ID}, nil
}

func rxContent() rx.Content {
	return rx.Content{
		Items: []rx.Item{
			{Drug: "Amoxicilline", Strength: "500 mg", Form: "gélule", Dosage: "1 gélule matin, midi et soir", DurationDays: 7, Substitutable: true},
			{Drug: "Salbutamol", Strength: "100 µg/dose", Form: "suspension pour inhalation", Dosage: "2 bouffées si gêne respiratoire", Quantity: 1, Renewals: 2},
		},
		Instructions: "Revoir un médecin si la fièvre dure plus de 72 heures.",
	}
}

// runRx measures prescriptions signed per second through rx.Service.Sign
// (render the PDF, sign it, seal and commit), with drafts written first.
func runRx(ctx context.Context, o options, rep *Report) error {
	perRun, workers := 240, 4
	if o.Quick {
		perRun = 8
	}
	e, err := startService(ctx, "bench_rx_")
	if err != nil {
		rep.section("Prescriptions", "Not measured: "+err.Error()+"\n")
		return err
	}
	defer e.close()
	w, err := newRxWorld(ctx, e)
	if err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	svc := e.srv.Rx
	// The practitioner's signing certificate is issued, and the embedded
	// font prepared (once per process), at the first signature: do it
	// outside the measure.
	d, err := svc.Create(ctx, w.practitioner, w.appointment, rxContent())
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if _, err := svc.Sign(ctx, w.practitioner, d.ID); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	var perSec, p50s, cpuMs []float64
	var waits string
	for run := range o.Runs {
		ids := make([]string, perRun)
		for i := range ids {
			d, err := svc.Create(ctx, w.practitioner, w.appointment, rxContent())
			if err != nil {
				return fmt.Errorf("create: %w", err)
			}
			ids[i] = d.ID
		}
		var next atomic.Int64
		var mu sync.Mutex
		var lat []time.Duration
		var firstErr error
		var wg sync.WaitGroup
		var prof *os.File
		if o.Profile && run == 0 {
			if prof, err = os.Create(filepath.Join(o.Out, "rx-cpu.pprof")); err == nil && pprof.StartCPUProfile(prof) != nil {
				prof.Close()
				prof = nil
			}
		}
		var ws *waitSampler
		if run == 0 {
			ws = sampleWaits(e)
		}
		cpu0 := selfCPU()
		start := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if int(i) >= len(ids) {
						return
					}
					t := time.Now()
					_, err := svc.Sign(ctx, w.practitioner, ids[i])
					d := time.Since(t)
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					} else if err == nil {
						lat = append(lat, d)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		cpu := selfCPU() - cpu0
		if ws != nil {
			waits, _ = ws.end()
		}
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
			rep.Profiles["rx-cpu.pprof"] = "this process during the first signing run"
		}
		if firstErr != nil {
			return fmt.Errorf("sign: %w", firstErr)
		}
		perSec = append(perSec, float64(len(lat))/elapsed.Seconds())
		p50s = append(p50s, percentileMs(lat, 50))
		cpuMs = append(cpuMs, float64(cpu.Microseconds())/1000/float64(max(1, len(lat))))
		logf("rx run %d: %.0f signed/s, p50 %.1f ms, %.2f CPU ms each", run+1, perSec[run], p50s[run], cpuMs[run])
	}
	ps, p50, cm := statOf(perSec), statOf(p50s), statOf(cpuMs)
	rep.put("rx", "signed_per_second", ps.Median)
	rep.put("rx", "p50_ms", p50.Median)
	rep.put("rx", "service_cpu_ms_per_signature", cm.Median)
	rep.put("rx", "workers", float64(workers))
	rep.row("Prescriptions", "signed PDFs per second", "/s", ps, 0, ">= 200/s", verdict(!math.IsNaN(ps.Median), ps.Median >= targetSignedPerSec))
	rep.row("Prescriptions", "time to sign one document p50", "ms", p50, 1, "", "")
	rep.row("Prescriptions", "service CPU per signature (PostgreSQL's not counted)", "ms", cm, 2, "", "")
	var b strings.Builder
	fmt.Fprintf(&b, "**What:** prescriptions signed per second, end to end through `rx.Service.Sign` as the API calls it: read the draft, the profiles and the signing key (one pipelined batch, no transaction), "+
		"render the A4 PDF (QR code; Go Regular embedded, prepared once per process for Windows-1252 text, subset per document by fpdf otherwise), embed the PKCS#7 signature, seal the content, access code and PDF, "+
		"and commit them with the history, outbox and audit rows (BEGIN to COMMIT in a second batch: two round trips per signature, 11 statements; `go test -run SignRoundTrips ./rx/` counts them). "+
		"**How:** the service (`server.New`) in this process on a fresh database; the practitioner's certificate is issued and the font prepared before the clock starts; "+
		"each run writes %d drafts first, then %d concurrent workers sign them all.\n\n", perRun, workers)
	fmt.Fprintf(&b, "| Figure | Median | Spread |\n|---|---:|---:|\n| signed per second | %s | %s |\n| time per document p50 (ms) | %s | %s |\n| service CPU per signature (ms) | %s | %s |\n\n",
		ps.med(0), ps.spread(0), p50.med(1), p50.spread(1), cm.med(2), cm.spread(2))
	fmt.Fprintf(&b, "**Target** >= 200 signed prescriptions per second: %s.\n\n", verdict(!math.IsNaN(ps.Median), ps.Median >= targetSignedPerSec))
	// What limits the rate: this process's CPU (render, sign, seal, pgx)
	// and, for the rest, PostgreSQL and the waits it reports.
	if cm.Median > 0 {
		fmt.Fprintf(&b, "**What limits it:** the service's own CPU is %.2f ms per signature (CPU time of this process over the run, divided by the documents signed), "+
			"so the %d cores would sign at most %.0f per second if PostgreSQL cost nothing; the rest is PostgreSQL on the same cores "+
			"and what its sessions wait on (first run, `pg_stat_activity`): %s. `go test -bench SignPrescription ./rx/` measures the same split "+
			"(`document`: render and sign alone; `service`: `Service.Sign`).\n\n",
			cm.Median, runtime.NumCPU(), float64(runtime.NumCPU())*1000/cm.Median, waits)
	}
	if o.Profile {
		p := filepath.Join(o.Out, "rx-cpu.pprof")
		fmt.Fprintf(&b, "Where the CPU went during the first run, by cumulative cost (`go tool pprof -top -cum %s`):\n\n```\n%s```\n", p, pprofTop(p, " -cum"))
	}
	rep.section("Prescriptions", b.String())
	return nil
}
