package rx

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"teleconsult/store/storetest"
)

// countedWorld is a world whose pool counts what it sends. Its vault
// trusts its cache for an hour, so that no check of destroyed keys
// joins the count.
func countedWorld(t *testing.T) (*world, *storetest.QueryCounter) {
	t.Helper()
	db, counter := storetest.NewCounted(t)
	w := newWorldOn(t, db)
	w.vault.MaxStale = time.Hour
	return w, counter
}

// TestSignRoundTrips keeps a signature at two round trips to PostgreSQL:
// one batch of reads, then the transaction (BEGIN to COMMIT) as one
// batch, so that no session sits idle in a transaction while the service
// renders, signs or waits for its turn on the CPU.
func TestSignRoundTrips(t *testing.T) {
	w, counter := countedWorld(t)
	// The first signature issues the practitioner's certificate.
	orig := w.signed(sampleContent())

	tests := []struct {
		name        string
		draft       func() string
		statements  int64
		wantReplace bool
	}{
		{"draft", func() string {
			d, err := w.svc.Create(ctx, w.practitioner, w.appointment.ID, sampleContent())
			if err != nil {
				t.Fatal(err)
			}
			return d.ID
		}, 11, false},
		{"correction", func() string {
			d, err := w.svc.Correct(ctx, w.practitioner, orig.ID, sampleContent())
			if err != nil {
				t.Fatal(err)
			}
			return d.ID
		}, 12, true},
	}
	for _, tt := range tests {
		id := tt.draft()
		counter.Reset()
		v, err := w.svc.Sign(ctx, w.practitioner, id)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		statements, rounds := counter.Counts()
		batches := counter.Batches()
		t.Logf("%s: %d statements in %d round trips", tt.name, statements, rounds)
		if rounds != 2 || batches != 2 || statements > tt.statements {
			t.Errorf("%s: %d statements in %d round trips (%d batches); want at most %d in 2 batches", tt.name, statements, rounds, batches, tt.statements)
		}
		// What Sign returns is what a read finds.
		got, err := w.svc.Get(ctx, w.practitioner, id)
		if err != nil {
			t.Fatal(err)
		}
		// The API shows the JSON of a view.
		if a, b := mustJSON(t, v), mustJSON(t, got); v.Status != StatusReady || a != b {
			t.Errorf("%s: Sign returned\n%s\na read finds\n%s", tt.name, a, b)
		}
		if tt.wantReplace {
			if o, err := w.svc.Get(ctx, w.practitioner, orig.ID); err != nil || o.Status != StatusCancelled {
				t.Errorf("%s: original %+v %v", tt.name, o.Status, err)
			}
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// signedOnce checks that prescription id was signed exactly once: one
// number, one history event, one outbox event, one audit entry.
func (w *world) signedOnce(id string) {
	w.t.Helper()
	for what, sql := range map[string]string{
		"signed rows":     `SELECT count(*) FROM prescriptions WHERE id = $1 AND status = 'ready' AND number IS NOT NULL AND document IS NOT NULL`,
		"sign events":     `SELECT count(*) FROM prescription_events WHERE prescription_id = $1 AND action = 'sign'`,
		"outbox events":   `SELECT count(*) FROM outbox_events WHERE prescription_id = $1 AND kind = 'prescription.ready'`,
		"audit sign rows": `SELECT count(*) FROM audit_log WHERE object_id = $1::text AND action = 'sign'`,
	} {
		if n := w.count(sql, id); n != 1 {
			w.t.Errorf("%s: %d, want 1", what, n)
		}
	}
}

// TestConcurrentSignsSignOnce signs one draft from several requests at
// once (a double click, two tabs): one signs it, the others are told it
// is signed, and nothing is written twice.
func TestConcurrentSignsSignOnce(t *testing.T) {
	w := newWorld(t)
	w.signed(sampleContent()) // issue the certificate first
	for round := range 3 {
		d, err := w.svc.Create(ctx, w.practitioner, w.appointment.ID, sampleContent())
		if err != nil {
			t.Fatal(err)
		}
		const callers = 6
		var wg sync.WaitGroup
		errs := make([]error, callers)
		views := make([]View, callers)
		start := make(chan struct{})
		for i := range callers {
			wg.Go(func() {
				<-start
				views[i], errs[i] = w.svc.Sign(ctx, w.practitioner, d.ID)
			})
		}
		close(start)
		wg.Wait()
		var signed View
		for i, err := range errs {
			switch {
			case err == nil && signed.ID == "":
				signed = views[i]
			case err == nil:
				t.Fatalf("round %d: two signatures: %s and %s", round, signed.Number, views[i].Number)
			case !errors.Is(err, ErrNotDraft):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if signed.ID == "" {
			t.Fatalf("round %d: no signature: %v", round, errs)
		}
		got, err := w.svc.Get(ctx, w.practitioner, d.ID)
		if err != nil || got.Number != signed.Number || got.DocumentSHA256 != signed.DocumentSHA256 {
			t.Fatalf("round %d: stored %+v %v; the winner returned %s", round, got, err, signed.Number)
		}
		w.signedOnce(d.ID)
	}
}

// TestLateSignatureWritesNothing is the race TestConcurrentSignsSignOnce
// may or may not hit: a signature computed from the draft as read before
// another request signed it reaches the transaction second. It is
// refused and writes nothing: no second number, event, notification or
// audit entry.
func TestLateSignatureWritesNothing(t *testing.T) {
	w := newWorld(t)
	d, err := w.svc.Create(ctx, w.practitioner, w.appointment.ID, sampleContent())
	if err != nil {
		t.Fatal(err)
	}
	in, err := w.svc.readSignInputs(ctx, w.practitioner, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.svc.Sign(ctx, w.practitioner, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	c, err := w.svc.openContent(ctx, w.db.Pool, in.draft)
	if err != nil {
		t.Fatal(err)
	}
	now := w.clock.now()
	doc := Document{Number: NewNumber(), AccessCode: NewAccessCode(), Content: c.Content, SignedAt: now, ValidUntil: c.ValidUntil(now)}
	key, err := w.vault.AccountKey(ctx, w.db.Pool, w.patient.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.commitSignature(ctx, w.practitioner, in.draft, nil, c, doc, []byte("%PDF-late"), key)
	if !errors.Is(err, ErrNotDraft) {
		t.Fatalf("late signature: %v, want ErrNotDraft", err)
	}
	if got, _ := w.svc.Get(ctx, w.practitioner, d.ID); got.Number != first.Number {
		t.Fatalf("number after the late signature: %s, want %s", got.Number, first.Number)
	}
	w.signedOnce(d.ID)
	// The connection went back to the pool out of its failed transaction.
	if n := w.count(`SELECT count(*) FROM prescriptions WHERE number = $1`, doc.Number); n != 0 {
		t.Fatalf("late number stored %d times", n)
	}
}

// TestCorrectionOfAHeldPrescriptionWritesNothing: a correction whose
// original a pharmacy took meanwhile is refused as a whole; it stays a
// draft, unsigned.
func TestCorrectionOfAHeldPrescriptionWritesNothing(t *testing.T) {
	w := newWorld(t)
	orig := w.signed(sampleContent())
	draft, err := w.svc.Correct(ctx, w.practitioner, orig.ID, sampleContent())
	if err != nil {
		t.Fatal(err)
	}
	code := func() string { g, _ := w.svc.Get(ctx, w.patient, orig.ID); return g.AccessCode }()
	_, pharmacist := w.pharmacy("Pharmacie des Terreaux", "Lyon")
	if _, err := w.svc.Accept(ctx, pharmacist, orig.Number, code); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Sign(ctx, w.practitioner, draft.ID); !errors.Is(err, ErrNotCancellable) {
		t.Fatalf("signing the correction of a held prescription: %v, want ErrNotCancellable", err)
	}
	got, err := w.svc.Get(ctx, w.practitioner, draft.ID)
	if err != nil || got.Status != StatusDraft || got.Number != "" {
		t.Fatalf("correction after the refusal: %+v %v", got, err)
	}
	if o, _ := w.svc.Get(ctx, w.practitioner, orig.ID); o.Status != StatusInProgress {
		t.Fatalf("original after the refusal: %s", o.Status)
	}
	for what, sql := range map[string]string{
		"events":  `SELECT count(*) FROM prescription_events WHERE prescription_id = $1 AND action <> 'create'`,
		"outbox":  `SELECT count(*) FROM outbox_events WHERE prescription_id = $1`,
		"audited": `SELECT count(*) FROM audit_log WHERE object_id = $1::text AND action = 'sign'`,
	} {
		if n := w.count(sql, draft.ID); n != 0 {
			t.Errorf("%s of the refused correction: %d", what, n)
		}
	}
}
