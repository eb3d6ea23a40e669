package rx

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"teleconsult/problem"
	"teleconsult/store"
)

func wantKind(t *testing.T, err error, kind problem.Kind, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s error, got none", code)
	}
	p := problem.As(err)
	if p.Kind != kind || (code != "" && p.Code != code) {
		t.Fatalf("want kind %d code %q, got kind %d code %q: %v", kind, code, p.Kind, p.Code, err)
	}
}

func TestWriteSignAndVerify(t *testing.T) {
	w := newWorld(t)
	draft, err := w.svc.Create(ctx, w.practitioner, w.appointment.ID, sampleContent())
	if err != nil {
		t.Fatal(err)
	}
	if draft.Status != StatusDraft || draft.Number != "" {
		t.Fatalf("new prescription: status %s number %q", draft.Status, draft.Number)
	}
	// The patient does not see drafts.
	if _, err := w.svc.Get(ctx, w.patient, draft.ID); problem.KindOf(err) != problem.NotFound {
		t.Fatalf("patient reads a draft: %v", err)
	}
	edited := sampleContent()
	edited.Items[0].Strength = "1 g"
	edited.Items[0].Dosage = "1 comprimé matin et soir"
	if _, err := w.svc.Update(ctx, w.practitioner, draft.ID, edited); err != nil {
		t.Fatal(err)
	}
	v, err := w.svc.Sign(ctx, w.practitioner, draft.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.Status != StatusReady || !strings.HasPrefix(v.Number, "RX-") || v.Renewals != 2 {
		t.Fatalf("signed: %+v", v)
	}
	if n := w.count(`SELECT count(*) FROM outbox_events WHERE kind = 'prescription.ready' AND recipient_id = $1 AND prescription_id = $2`,
		w.patient.ID, v.ID); n != 1 {
		t.Errorf("outbox events for the patient: %d, want 1", n)
	}

	got, err := w.svc.Get(ctx, w.patient, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessCode == "" || got.Number != v.Number || len(got.Items) != 2 || got.Items[0].Strength != "1 g" {
		t.Fatalf("patient view: %+v", got)
	}
	if got.Patient.Surname != "Lefèvre" || got.Patient.WeightKg != 58.5 || got.Prescriber.Specialty != "Médecine générale" {
		t.Errorf("blocks: %+v %+v", got.Patient, got.Prescriber)
	}
	byPrescriber, err := w.svc.Get(ctx, w.practitioner, v.ID)
	if err != nil || byPrescriber.AccessCode != "" {
		t.Errorf("prescriber view: access code %q, err %v", byPrescriber.AccessCode, err)
	}

	pdf, name, err := w.svc.PDF(ctx, w.patient, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(name, ".pdf") || !strings.Contains(name, v.Number) {
		t.Errorf("file name %q", name)
	}
	path := writeTemp(t, "rx.pdf", pdf)
	if r := runPdfsig(t, path, ""); !r.Valid || !r.Total {
		t.Fatalf("pdfsig: %s", r.Output)
	}
	if r := runPdfsig(t, path, nssWithCA(t, w.ca)); !r.Trusted || !r.Valid {
		t.Fatalf("pdfsig with the deployment CA: %s", r.Output)
	}
	needTool(t, "qpdf")
	if out, err := exec.Command("qpdf", "--check", path).CombinedOutput(); err != nil {
		t.Fatalf("qpdf --check: %v\n%s", err, out)
	}
	text := pdfText(t, pdf)
	for _, want := range []string{"LEFÈVRE Éloïse", "Née le 12/03/1990", "Poids : 58,5 kg", "Taille : 165 cm",
		"Dr Hélène Garçon", "Médecine générale", "10101234567", "69003 Lyon", "Amoxicilline 1 g, gélule", "1 comprimé matin et soir",
		"Salbutamol 100 µg/dose", "Non substituable", "À renouveler 2 fois", v.Number, got.AccessCode, "Signé électroniquement par"} {
		if !strings.Contains(text, want) {
			t.Errorf("PDF text lacks %q", want)
		}
	}

	// A flipped byte inside the signed range breaks the signature.
	bad := bytes.Clone(pdf)
	i := bytes.Index(bad, []byte("/Title"))
	bad[i+1] ^= 0x20
	if r := runPdfsig(t, writeTemp(t, "bad.pdf", bad), ""); r.Valid {
		t.Fatalf("tampered PDF still valid: %s", r.Output)
	}
	if r := runPdfsig(t, writeTemp(t, "more.pdf", append(bytes.Clone(pdf), "%%more\n"...)), ""); r.Total {
		t.Fatalf("appended bytes still total: %s", r.Output)
	}

	// The PDF and contents are stored sealed, not in the clear.
	var doc, content []byte
	if err := w.db.Pool.QueryRow(ctx, `SELECT document, content FROM prescriptions WHERE id = $1`, v.ID).Scan(&doc, &content); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(doc, []byte("%PDF")) || bytes.Contains(content, []byte("Amoxicilline")) {
		t.Error("prescription stored in the clear")
	}
	var key []byte
	if err := w.db.Pool.QueryRow(ctx, `SELECT key_sealed FROM rx_signing_keys WHERE practitioner_id = $1`, w.practitioner.ID).Scan(&key); err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(key); err == nil {
		t.Error("signing key stored in the clear")
	}
}

func TestSignedPrescriptionNeverChanges(t *testing.T) {
	w := newWorld(t)
	v := w.signed(sampleContent())
	if _, err := w.svc.Update(ctx, w.practitioner, v.ID, sampleContent()); !errors.Is(err, ErrNotDraft) {
		t.Fatalf("update of a signed prescription: %v", err)
	}
	if _, err := w.svc.Sign(ctx, w.practitioner, v.ID); !errors.Is(err, ErrNotDraft) {
		t.Fatalf("second sign: %v", err)
	}
	// The database refuses too, whoever asks.
	for _, sql := range []string{
		`UPDATE prescriptions SET content = '\x00'::bytea WHERE id = $1`,
		`UPDATE prescriptions SET document = '\x00'::bytea WHERE id = $1`,
		`UPDATE prescriptions SET valid_until = valid_until + interval '1 year' WHERE id = $1`,
		`UPDATE prescriptions SET status = 'draft' WHERE id = $1`,
		`DELETE FROM prescriptions WHERE id = $1`,
	} {
		_, err := w.db.Pool.Exec(ctx, sql, v.ID)
		if !store.ConstraintViolated(err, store.PrescriptionsConstraintImmutable) {
			t.Errorf("%s: want refused by prescriptions_immutable, got %v", sql, err)
		}
	}
	// Cancelled stays cancelled.
	if _, err := w.svc.Cancel(ctx, w.practitioner, v.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.db.Pool.Exec(ctx, `UPDATE prescriptions SET status = 'ready' WHERE id = $1`, v.ID); !store.ConstraintViolated(err, store.PrescriptionsConstraintImmutable) {
		t.Errorf("revive a cancelled prescription: %v", err)
	}
	if _, err := w.svc.Cancel(ctx, w.practitioner, v.ID); !errors.Is(err, ErrNotCancellable) {
		t.Errorf("cancel twice: %v", err)
	}
	// The patient still sees it, cancelled, with its PDF.
	got, err := w.svc.Get(ctx, w.patient, v.ID)
	if err != nil || got.Status != StatusCancelled {
		t.Fatalf("patient view of a cancelled prescription: %+v %v", got, err)
	}
}

func TestCorrectionCancelsAndReplaces(t *testing.T) {
	w := newWorld(t)
	orig := w.signed(sampleContent())
	fixed := sampleContent()
	fixed.Items[0].DurationDays = 10
	draft, err := w.svc.Correct(ctx, w.practitioner, orig.ID, fixed)
	if err != nil {
		t.Fatal(err)
	}
	if draft.ReplacesID == nil || *draft.ReplacesID != orig.ID {
		t.Fatalf("correction does not name the original: %+v", draft)
	}
	if _, err := w.svc.Correct(ctx, w.practitioner, orig.ID, fixed); !errors.Is(err, ErrAlreadyCorrected) {
		t.Fatalf("second correction: %v", err)
	}
	// A correction abandoned as a draft does not block another one.
	if _, err := w.svc.Cancel(ctx, w.practitioner, draft.ID); err != nil {
		t.Fatal(err)
	}
	if draft, err = w.svc.Correct(ctx, w.practitioner, orig.ID, fixed); err != nil {
		t.Fatalf("correction after an abandoned one: %v", err)
	}
	// Until the correction is signed the original stands.
	if o, _ := w.svc.Get(ctx, w.patient, orig.ID); o.Status != StatusReady {
		t.Fatalf("original before the correction is signed: %s", o.Status)
	}
	nv, err := w.svc.Sign(ctx, w.practitioner, draft.ID)
	if err != nil {
		t.Fatal(err)
	}
	o, err := w.svc.Get(ctx, w.patient, orig.ID)
	if err != nil || o.Status != StatusCancelled || o.ReplacedByID == nil || *o.ReplacedByID != nv.ID {
		t.Fatalf("original after correction: %+v %v", o, err)
	}
	pdf, _, err := w.svc.PDF(ctx, w.patient, nv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if text := pdfText(t, pdf); !strings.Contains(text, "Annule et remplace l'ordonnance n° "+orig.Number) {
		t.Errorf("correction PDF does not say what it replaces:\n%s", text)
	}
	list, err := w.svc.List(ctx, w.patient)
	if err != nil || len(list) != 2 {
		t.Fatalf("patient list (the abandoned draft is not the patient's): %d %v", len(list), err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	w := newWorld(t)
	other := w.newPractitioner("Dr Zoé Müller", "10109999999")
	otherAppt := w.newAppointment(other, w.patient, store.StatusCompleted)
	cancelled := w.newAppointment(w.practitioner, w.patient, store.StatusCancelled)
	good := sampleContent()
	noDrug := sampleContent()
	noDrug.Items[1].Drug = "  "
	noDosage := sampleContent()
	noDosage.Items[0].Dosage = ""
	noAmount := sampleContent()
	noAmount.Items[0].DurationDays, noAmount.Items[0].Quantity = 0, 0
	tooMany := sampleContent()
	tooMany.Items[0].Renewals = 40
	tests := []struct {
		name        string
		who         Caller
		appointment string
		content     Content
		kind        problem.Kind
		code        string
	}{
		{"unknown appointment", w.practitioner, store.NewUUID(), good, problem.NotFound, "appointment_not_found"},
		{"malformed appointment id", w.practitioner, "42", good, problem.NotFound, "appointment_not_found"},
		{"another practitioner's appointment", w.practitioner, otherAppt.ID, good, problem.NotFound, "appointment_not_found"},
		{"patient writes", w.patient, w.appointment.ID, good, problem.NotFound, "appointment_not_found"},
		{"cancelled appointment", w.practitioner, cancelled.ID, good, problem.Conflict, "appointment_not_consulted"},
		{"no items", w.practitioner, w.appointment.ID, Content{Instructions: "Repos"}, problem.Invalid, "invalid_prescription"},
		{"dosage without a drug", w.practitioner, w.appointment.ID, noDrug, problem.Invalid, "invalid_prescription"},
		{"drug without a dosage", w.practitioner, w.appointment.ID, noDosage, problem.Invalid, "invalid_prescription"},
		{"neither duration nor packs", w.practitioner, w.appointment.ID, noAmount, problem.Invalid, "invalid_prescription"},
		{"too many renewals", w.practitioner, w.appointment.ID, tooMany, problem.Invalid, "invalid_prescription"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.svc.Create(ctx, tc.who, tc.appointment, tc.content)
			wantKind(t, err, tc.kind, tc.code)
			if n := w.count(`SELECT count(*) FROM prescriptions`); n != 0 {
				t.Fatalf("%d prescriptions after a refused create", n)
			}
		})
	}
	if msg := problem.As(func() error { _, err := w.svc.Create(ctx, w.practitioner, w.appointment.ID, noDrug); return err }()).Message; !strings.Contains(msg, "item 2") {
		t.Errorf("the message does not say which item: %q", msg)
	}

	// Foreign prescriptions answer 404 like missing ones, and the refusal is audited.
	v := w.signed(good)
	stranger := w.newPatient("Martin", "Jean", "M", "1980-01-01", 0, 0)
	_, strangerPharmacist := w.pharmacy("Pharmacie du Rhône", "Lyon")
	before := w.denied()
	for _, who := range []Caller{stranger, other, strangerPharmacist} {
		if _, _, err := w.svc.PDF(ctx, who, v.ID); problem.KindOf(err) != problem.NotFound {
			t.Errorf("%s reads another's PDF: %v", who.Role, err)
		}
		if _, err := w.svc.Get(ctx, who, v.ID); problem.KindOf(err) != problem.NotFound {
			t.Errorf("%s reads another's prescription: %v", who.Role, err)
		}
	}
	if _, err := w.svc.Cancel(ctx, other, v.ID); problem.KindOf(err) != problem.NotFound {
		t.Errorf("another practitioner cancels: %v", err)
	}
	if got := w.denied() - before; got != 7 {
		t.Errorf("audited refusals: %d, want 7", got)
	}
	if _, err := w.svc.Send(ctx, w.patient, v.ID, store.NewUUID()); !errors.Is(err, ErrPharmacyNotFound) {
		t.Errorf("send to an unknown pharmacy: %v", err)
	}
	if got, _ := w.svc.Get(ctx, w.patient, v.ID); got.Status != StatusReady || got.PharmacyID != nil {
		t.Errorf("after bad input: %+v", got)
	}
}

func TestPharmacyFlow(t *testing.T) {
	w := newWorld(t)
	v := w.signed(sampleContent())
	code := func() string { g, _ := w.svc.Get(ctx, w.patient, v.ID); return g.AccessCode }()
	ph, pharmacist := w.pharmacy("Pharmacie de la Croix-Rousse", "Lyon")
	_, elsewhere := w.pharmacy("Pharmacie Saint-Jean", "Lyon")

	// Not sent yet: the pharmacist cannot read it, and finds nothing in the inbox.
	if _, _, err := w.svc.PDF(ctx, pharmacist, v.ID); problem.KindOf(err) != problem.NotFound {
		t.Fatalf("pharmacy reads an unsent prescription: %v", err)
	}
	if _, err := w.svc.Send(ctx, w.patient, v.ID, ph.ID); err != nil {
		t.Fatal(err)
	}
	inbox, err := w.svc.Inbox(ctx, pharmacist)
	if err != nil || len(inbox) != 1 || inbox[0].ID != v.ID || inbox[0].AccessCode != code {
		t.Fatalf("inbox: %+v %v", inbox, err)
	}
	if _, _, err := w.svc.PDF(ctx, pharmacist, v.ID); err != nil {
		t.Fatalf("the pharmacy it was sent to cannot read the PDF: %v", err)
	}
	if other, _ := w.svc.Inbox(ctx, elsewhere); len(other) != 0 {
		t.Fatalf("another pharmacy's inbox: %+v", other)
	}

	// A tampered access code is refused like an unknown number.
	tampered := []byte(strings.ReplaceAll(code, "-", ""))
	tampered[0] = alphabet[(strings.IndexByte(alphabet, tampered[0])+1)%len(alphabet)]
	_, err = w.svc.Accept(ctx, pharmacist, v.Number, string(tampered))
	wantKind(t, err, problem.NotFound, "prescription_not_found")
	_, err = w.svc.Accept(ctx, pharmacist, "RX-0000", code)
	wantKind(t, err, problem.Invalid, "invalid_prescription")

	// Any pharmacy may accept with the number and code (the QR code).
	acc, err := w.svc.Accept(ctx, elsewhere, strings.ToLower(v.Number), code)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Secret == "" || acc.Status != StatusInProgress || len(acc.Items) != 2 || acc.RenewalIndex != 0 {
		t.Fatalf("acceptance: %+v", acc)
	}
	_, err = w.svc.Accept(ctx, pharmacist, v.Number, code)
	wantKind(t, err, problem.Conflict, "prescription_in_progress")
	if _, err := w.svc.Cancel(ctx, w.practitioner, v.ID); !errors.Is(err, ErrNotCancellable) {
		t.Errorf("cancel while a pharmacy holds it: %v", err)
	}

	// Wrong secret: refused, nothing changes. Reject gives it back.
	_, err = w.svc.Dispense(ctx, elsewhere, v.ID, strings.Repeat("0", 64), nil)
	wantKind(t, err, problem.Forbidden, "bad_secret")
	_, err = w.svc.Reject(ctx, elsewhere, v.ID, "nope")
	wantKind(t, err, problem.Forbidden, "bad_secret")
	_, err = w.svc.Dispense(ctx, pharmacist, v.ID, acc.Secret, nil)
	wantKind(t, err, problem.Conflict, "prescription_not_ready")
	back, err := w.svc.Reject(ctx, elsewhere, v.ID, acc.Secret)
	if err != nil || back.Status != StatusReady {
		t.Fatalf("reject: %+v %v", back, err)
	}
	// Once given back, the pharmacy that held it no longer sees it.
	_, err = w.svc.Dispense(ctx, elsewhere, v.ID, acc.Secret, nil)
	wantKind(t, err, problem.NotFound, "prescription_not_found")

	// The pharmacy it was sent to accepts and dispenses, with a generic for item 1.
	acc, err = w.svc.Accept(ctx, pharmacist, v.Number, code)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Dispense(ctx, pharmacist, v.ID, acc.Secret, []DispensedItem{{Item: 2, Drug: "Ventoline"}})
	wantKind(t, err, problem.Invalid, "not_substitutable")
	_, err = w.svc.Dispense(ctx, pharmacist, v.ID, acc.Secret, []DispensedItem{{Item: 3}})
	wantKind(t, err, problem.Invalid, "invalid_prescription")
	d, err := w.svc.Dispense(ctx, pharmacist, v.ID, acc.Secret, []DispensedItem{
		{Item: 1, Drug: "Amoxicilline Biogaran", Quantity: 1}, {Item: 2, Quantity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if d.RenewalIndex != 0 || d.Status != StatusReady || !d.Items[0].Substituted || d.Items[1].Substituted {
		t.Fatalf("first dispense: %+v", d)
	}
	rc, err := VerifyReceipt(d.Receipt, w.ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if rc.PrescriptionID != v.ID || rc.Number != v.Number || rc.RenewalIndex != 0 || rc.Pharmacy.ID != ph.ID || len(rc.Items) != 2 {
		t.Errorf("receipt says %+v", rc)
	}
	forged := bytes.Replace(d.Receipt, []byte(`"signature":"`), []byte(`"signature":"A`), 1)
	if _, err := VerifyReceipt(forged, w.ca.Pool()); err == nil {
		t.Error("a forged receipt verifies")
	}
	otherCA, _ := NewAuthority("Autre", time.Now())
	if _, err := VerifyReceipt(d.Receipt, otherCA.Pool()); err == nil {
		t.Error("a receipt verifies against another authority")
	}

	// Renewals: item 2 may be dispensed twice more, item 1 not.
	for k := 1; k <= 2; k++ {
		acc, err := w.svc.Accept(ctx, pharmacist, v.Number, code)
		if err != nil {
			t.Fatalf("renewal %d: %v", k, err)
		}
		if acc.RenewalIndex != k || len(acc.Items) != 1 || acc.Items[0].Drug != "Salbutamol" {
			t.Fatalf("renewal %d acceptance: %+v", k, acc)
		}
		d, err := w.svc.Dispense(ctx, pharmacist, v.ID, acc.Secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := StatusReady
		if k == 2 {
			want = StatusCompleted
		}
		if d.RenewalIndex != k || d.Status != want || len(d.Items) != 1 {
			t.Fatalf("renewal %d dispense: %+v", k, d)
		}
	}
	_, err = w.svc.Accept(ctx, pharmacist, v.Number, code)
	wantKind(t, err, problem.Conflict, "prescription_completed")
	if n := w.count(`SELECT count(*) FROM prescription_dispenses WHERE prescription_id = $1`, v.ID); n != 3 {
		t.Errorf("dispense rows: %d, want 3", n)
	}
	// The database keeps one dispense per renewal whatever the code does.
	_, err = w.db.Pool.Exec(ctx, `INSERT INTO prescription_dispenses (id, prescription_id, renewal_index, pharmacy_id, pharmacist_id, items, receipt, dispensed_at)
		SELECT gen_random_uuid(), prescription_id, renewal_index, pharmacy_id, pharmacist_id, items, receipt, now()
		FROM prescription_dispenses WHERE prescription_id = $1 AND renewal_index = 0`, v.ID)
	if !store.ConstraintViolated(err, store.PrescriptionsConstraintDispenseOnce) {
		t.Errorf("a second dispense of the same renewal: %v", err)
	}

	events, err := store.PrescriptionEvents(ctx, w.db.Pool, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range events {
		steps = append(steps, e.Action)
	}
	if got := strings.Join(steps, ","); got != "create,sign,send,accept,reject,accept,dispense,accept,dispense,accept,dispense" {
		t.Errorf("history: %s", got)
	}

	// FHIR: two MedicationRequests and four MedicationDispenses.
	b, err := w.svc.FHIR(ctx, w.patient, v.ID, "https://consult.example.test/fhir")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(b)
	var parsed struct {
		ResourceType string
		Entry        []struct{ Resource map[string]any }
	}
	json.Unmarshal(raw, &parsed)
	kinds := map[string]int{}
	for _, e := range parsed.Entry {
		kinds[e.Resource["resourceType"].(string)]++
	}
	if parsed.ResourceType != "Bundle" || kinds["MedicationRequest"] != 2 || kinds["MedicationDispense"] != 4 {
		t.Errorf("FHIR bundle: %v", kinds)
	}
	mr := parsed.Entry[1].Resource
	if mr["status"] != "completed" || mr["intent"] != "order" ||
		mr["substitution"].(map[string]any)["allowedBoolean"] != false ||
		mr["dispenseRequest"].(map[string]any)["numberOfRepeatsAllowed"] != float64(2) {
		t.Errorf("MedicationRequest: %v", mr)
	}
}

func TestExpiredPrescriptionIsRefused(t *testing.T) {
	w := newWorld(t)
	v := w.signed(sampleContent())
	code := func() string { g, _ := w.svc.Get(ctx, w.patient, v.ID); return g.AccessCode }()
	_, pharmacist := w.pharmacy("Pharmacie des Terreaux", "Lyon")
	w.clock.advance(400 * 24 * time.Hour)
	_, err := w.svc.Accept(ctx, pharmacist, v.Number, code)
	wantKind(t, err, problem.Gone, "prescription_expired")
}

// TestAcceptRace has 20 pharmacies accept one prescription at once:
// exactly one gets it, the others a conflict.
func TestAcceptRace(t *testing.T) {
	w := newWorld(t)
	v := w.signed(sampleContent())
	code := func() string { g, _ := w.svc.Get(ctx, w.patient, v.ID); return g.AccessCode }()
	const n = 20
	var pharmacists []Caller
	for i := range n {
		_, c := w.pharmacy("Pharmacie n°"+string(rune('A'+i)), "Lyon")
		pharmacists = append(pharmacists, c)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i, c := range pharmacists {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = w.svc.Accept(ctx, c, v.Number, code)
		}()
	}
	close(start)
	wg.Wait()
	wins, conflicts := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, ErrAlreadyAccepted):
			conflicts++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if wins != 1 || conflicts != n-1 {
		t.Fatalf("%d accepted, %d conflicts; want 1 and %d", wins, conflicts, n-1)
	}
	if k := w.count(`SELECT count(*) FROM prescription_events WHERE prescription_id = $1 AND action = 'accept'`, v.ID); k != 1 {
		t.Errorf("%d accept events", k)
	}
}

func TestAuthorityStoredSealedAndImported(t *testing.T) {
	w := newWorld(t)
	again, err := LoadOrCreateAuthority(ctx, w.db, w.vault, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(w.ca.Cert) {
		t.Fatal("a second start made another authority")
	}
	var sealed []byte
	if err := w.db.Pool.QueryRow(ctx, `SELECT key_sealed FROM rx_authority`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(sealed); err == nil {
		t.Fatal("authority key stored in the clear")
	}

	// An operator's own CA, from PEM files: prescriptions chain to it and
	// practitioners get new certificates from it.
	own, err := NewAuthority("Autorité de l'opérateur", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyDER, _ := x509.MarshalPKCS8PrivateKey(own.key)
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	os.WriteFile(certPath, own.CertPEM, 0o600)
	os.WriteFile(keyPath, pemBlock("PRIVATE KEY", keyDER), 0o600)
	imported, err := LoadOrCreateAuthority(ctx, w.db, w.vault, certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	w.signed(sampleContent()) // issues a certificate from the first CA
	svc := NewService(w.db, w.vault, imported, nil)
	d, err := svc.Create(ctx, w.practitioner, w.appointment.ID, sampleContent())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Sign(ctx, w.practitioner, d.ID); err != nil {
		t.Fatal(err)
	}
	pdf, _, err := svc.PDF(ctx, w.patient, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, "own.pdf", pdf)
	if r := runPdfsig(t, path, nssWithCA(t, imported)); !r.Valid || !r.Trusted {
		t.Fatalf("signed under the imported CA: %s", r.Output)
	}
	if r := runPdfsig(t, path, nssWithCA(t, w.ca)); r.Trusted {
		t.Fatalf("trusted by the old CA: %s", r.Output)
	}
	if _, err := LoadOrCreateAuthority(ctx, w.db, w.vault, certPath, ""); err == nil {
		t.Error("a certificate without its key is accepted")
	}
}

func TestCertificateFollowsThePractitioner(t *testing.T) {
	w := newWorld(t)
	w.signed(sampleContent())
	certOf := func() *x509.Certificate {
		var der []byte
		if err := w.db.Pool.QueryRow(ctx, `SELECT cert_der FROM rx_signing_keys WHERE practitioner_id = $1`, w.practitioner.ID).Scan(&der); err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := certOf()
	if first.Subject.CommonName != "Dr Hélène Garçon" || first.Subject.SerialNumber != "10101234567" {
		t.Fatalf("certificate subject %v", first.Subject)
	}
	if _, err := first.Verify(x509.VerifyOptions{Roots: w.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
		t.Fatalf("certificate does not chain to the authority: %v", err)
	}
	w.signed(sampleContent())
	if again := certOf(); !again.Equal(first) {
		t.Error("a new certificate for every signature")
	}
	if _, err := w.db.Pool.Exec(ctx, `UPDATE accounts SET name = 'Dr Hélène Garçon-Dupré' WHERE id = $1`, w.practitioner.ID); err != nil {
		t.Fatal(err)
	}
	v := w.signed(sampleContent())
	if c := certOf(); c.Subject.CommonName != "Dr Hélène Garçon-Dupré" {
		t.Errorf("after a change of name the certificate says %q", c.Subject.CommonName)
	}
	pdf, _, err := w.svc.PDF(ctx, w.patient, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pdfText(t, pdf), "Dr Hélène Garçon-Dupré") {
		t.Error("the PDF does not carry the new name")
	}
}

func TestPrescriptionForARelative(t *testing.T) {
	w := newWorld(t)
	child := store.NewUUID()
	if _, err := store.SavePatientProfile(ctx, w.db.Pool, store.PatientProfile{ID: child, AccountID: w.patient.ID, Relationship: "child",
		FamilyName: "Lefèvre", GivenNames: "Noé", Sex: "M", BirthDate: time.Date(2019, 6, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	a := w.newAppointment(w.practitioner, w.patient, store.StatusCompleted)
	if _, err := w.db.Pool.Exec(ctx, `UPDATE appointments SET profile_id = $2 WHERE id = $1`, a.ID, child); err != nil {
		t.Fatal(err)
	}
	d, err := w.svc.Create(ctx, w.practitioner, a.ID, sampleContent())
	if err != nil {
		t.Fatal(err)
	}
	v, err := w.svc.Sign(ctx, w.practitioner, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.Patient.FirstNames != "Noé" || v.Patient.Sex != "M" {
		t.Fatalf("patient block: %+v", v.Patient)
	}
	// The parent's account receives it.
	pdf, _, err := w.svc.PDF(ctx, w.patient, v.ID)
	if err != nil {
		t.Fatal(err)
	}
	if text := pdfText(t, pdf); !strings.Contains(text, "LEFÈVRE Noé") || !strings.Contains(text, "Né le 01/06/2019") {
		t.Errorf("PDF patient block:\n%s", text)
	}
}
