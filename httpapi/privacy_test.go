package httpapi

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"teleconsult/audit"
	"teleconsult/auth"
	"teleconsult/privacy"
	"teleconsult/store"
	"teleconsult/vault"
)

// journey is a patient's history with a practitioner, made through the
// API: a consultation with a reason, chat and a signed prescription, a
// paid and captured consultation, and an upcoming appointment.
type journey struct {
	doc, pat                   *client
	docID, videoID             string
	acct                       auth.Account
	reason, chat, drug, upcome string
	done, paid, upcoming       string
	rx                         rxView
}

func (e *fullEnv) journey(t *testing.T) *journey {
	t.Helper()
	ctx := context.Background()
	j := &journey{reason: marker("motif-confidentiel-"), chat: marker("ligne-de-chat-"), drug: marker("Medicamentum-"), upcome: marker("motif-futur-")}
	var paidID string
	j.doc, j.docID, j.videoID, paidID = e.doctor(t)
	j.pat, j.acct = e.user("patient", marker("Annabelle Zorglub "))
	if st := j.pat.json("PUT", "/api/v1/patient/profile", map[string]any{"family_name": "Zorglub", "given_names": "Annabelle", "sex": "F", "birth_date": "1990-01-02"}, nil); st != 200 {
		t.Fatalf("profile: %d", st)
	}
	if st := j.pat.json("POST", "/api/v1/relatives", map[string]any{"relationship": "child", "family_name": "Zorglub", "given_names": "Petit", "sex": "M", "birth_date": "2018-05-06"}, nil); st != 201 {
		t.Fatalf("relative: %d", st)
	}
	j.done = bookFirst(t, j.pat, j.docID, j.videoID, j.reason)
	e.consulted(t, j.doc, j.done)
	// The chat line goes the way the signalling server hands it over.
	e.consult.Chat(j.done, auth.JoinClaims{Room: j.done, Participant: j.acct.ID, Name: "Annabelle", Role: "patient"}, j.chat)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if lines, _ := store.ConsultMessages(ctx, e.DB.Pool, j.done); len(lines) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the chat line was not kept")
		}
	}
	j.rx = prescribe(t, j.doc, j.done, j.drug)

	pe := &paymentsEnv{bookingEnv: e.bookingEnv, pay: e.pay}
	a := pe.bookPaid(t, j.pat, j.docID, paidID, 0)
	pressButton(t, j.pat, a.Payment.CheckoutURL, "pay")
	pe.waitStatus(t, j.pat, a.ID, "confirmed", store.PaymentAuthorized)
	if err := store.TransitionAppointment(ctx, e.DB.Pool, a.ID, []string{"confirmed"}, "completed", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.pay.OnCompleted(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	j.paid = a.ID

	// Upcoming, well outside the cancellation cut-off: the latest free slot.
	slots := freeSlots(t, j.pat, j.docID, j.videoID)
	var up apptBody
	if st := j.pat.json("POST", "/api/v1/appointments", map[string]any{"practitioner_id": j.docID, "consultation_type_id": j.videoID,
		"start": slots[len(slots)-1].Format(time.RFC3339), "reason": j.upcome}, &up); st != 201 {
		t.Fatalf("book upcoming: %d", st)
	}
	j.upcoming = up.ID
	return j
}

// readExport unzips an export: data.json and the files.
func readExport(t *testing.T, b []byte) (privacy.Export, map[string][]byte, string) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("export is not a zip: %v", err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	var ex privacy.Export
	if err := json.Unmarshal(files["data.json"], &ex); err != nil {
		t.Fatalf("data.json: %v", err)
	}
	return ex, files, string(files["data.json"])
}

func TestPrivacyExport(t *testing.T) {
	e := newFullEnv(t)
	j := e.journey(t)

	if resp, _ := e.client().do("GET", "/api/v1/account/export", nil); resp.StatusCode != 401 {
		t.Fatalf("anonymous export: %d", resp.StatusCode)
	}
	resp, b := j.pat.do("GET", "/api/v1/account/export", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/zip" {
		t.Fatalf("export: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ex, files, data := readExport(t, b)
	for _, want := range []string{j.reason, j.chat, j.drug, j.upcome, j.acct.Email, "Petit"} {
		if !strings.Contains(data, want) {
			t.Errorf("data.json lacks %q", want)
		}
	}
	if ex.Account.ID != j.acct.ID || len(ex.Profiles) != 2 || len(ex.Appointments) != 3 || len(ex.Sessions) == 0 || len(ex.AccessLog) == 0 {
		t.Errorf("export: account %s, %d profiles, %d appointments, %d sessions, %d accesses",
			ex.Account.ID, len(ex.Profiles), len(ex.Appointments), len(ex.Sessions), len(ex.AccessLog))
	}
	for _, a := range ex.Appointments {
		if a.ID == j.done && (len(a.History) < 2 || len(a.Chat) != 1 || a.Chat[0].Text != j.chat) {
			t.Errorf("consulted appointment: history %d, chat %+v", len(a.History), a.Chat)
		}
	}
	if len(ex.Prescriptions) != 1 || !bytes.HasPrefix(files[ex.Prescriptions[0].Document], []byte("%PDF")) {
		t.Errorf("prescriptions %+v, files %d", ex.Prescriptions, len(files))
	}
	if len(ex.Payments) != 1 || ex.Payments[0].AmountCaptured != 5000 || !bytes.HasPrefix(files[ex.Payments[0].Receipt], []byte("%PDF")) {
		t.Errorf("payments %+v", ex.Payments)
	}
	// The download itself is on record.
	var n int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'export' AND subject_id = $1`, j.acct.ID).Scan(&n)
	if n != 1 {
		t.Errorf("%d export audit rows", n)
	}

	// Another patient's export holds nothing of the first.
	other, _ := e.user("patient", "Bruno Autre")
	resp, b = other.do("GET", "/api/v1/account/export", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("other export: %d", resp.StatusCode)
	}
	_, _, data = readExport(t, b)
	for _, secret := range []string{j.reason, j.chat, j.drug, j.acct.ID, j.done} {
		if strings.Contains(data, secret) {
			t.Errorf("another patient's export carries %q", secret)
		}
	}
}

func TestPrivacyErase(t *testing.T) {
	e := newFullEnv(t)
	ctx := context.Background()
	j := e.journey(t)
	// A draft the practitioner never signed is no record: it goes too.
	var draft rxView
	if st := j.doc.json("POST", "/api/v1/appointments/"+j.done+"/prescriptions", map[string]any{"items": []any{map[string]any{"drug": j.drug, "dosage": "1/j", "duration_days": 2}}}, &draft); st != 201 {
		t.Fatalf("draft: %d", st)
	}
	var keyID string
	e.DB.Pool.QueryRow(ctx, `SELECT data_key_id::text FROM accounts WHERE id = $1`, j.acct.ID).Scan(&keyID)

	// A login is a password entry: eleven minutes later, it no longer counts.
	age := func(accountID string) {
		t.Helper()
		if _, err := e.DB.Pool.Exec(ctx, `UPDATE sessions SET created_at = created_at - interval '11 minutes', reauth_at = NULL WHERE account_id = $1`, accountID); err != nil {
			t.Fatal(err)
		}
	}
	age(j.acct.ID)
	// Without the password again: refused, nothing changes.
	if resp, b := j.pat.do("POST", "/api/v1/account/erase", nil); resp.StatusCode != 401 || errorCode(b) != "reauth_required" {
		t.Fatalf("erase without reauth: %d %s", resp.StatusCode, b)
	}
	if st := j.pat.json("GET", "/api/v1/me", nil, nil); st != 200 {
		t.Fatalf("still logged in: %d", st)
	}
	// A practitioner's account is closed by the operator.
	if st := j.doc.json("POST", "/api/v1/account/reauth", map[string]string{"password": testPassword}, nil); st != 204 {
		t.Fatalf("reauth: %d", st)
	}
	if resp, b := j.doc.do("POST", "/api/v1/account/erase", nil); resp.StatusCode != 409 || errorCode(b) != "erase_not_self_service" {
		t.Fatalf("practitioner erase: %d %s", resp.StatusCode, b)
	}
	// An appointment too close to cancel online: refused, nothing changes.
	soon, soonAcct := e.user("patient", "Sophie Bientôt")
	soonAp := bookFirst(t, soon, j.docID, j.videoID, "")
	e.DB.Pool.Exec(ctx, `UPDATE appointments SET starts_at = now() + interval '1 hour', ends_at = now() + interval '90 minutes' WHERE id = $1`, soonAp)
	soon.json("POST", "/api/v1/account/reauth", map[string]string{"password": testPassword}, nil)
	if resp, b := soon.do("POST", "/api/v1/account/erase", nil); resp.StatusCode != 409 || errorCode(b) != "appointment_too_close" {
		t.Fatalf("erase with an appointment in an hour: %d %s", resp.StatusCode, b)
	}
	if a, _ := store.AppointmentByID(ctx, e.DB.Pool, soonAp); a.Status != "confirmed" {
		t.Errorf("refused erasure changed the appointment: %s", a.Status)
	}
	if _, err := store.AccountByID(ctx, e.DB.Pool, soonAcct.ID); err != nil {
		t.Errorf("refused erasure erased: %v", err)
	}

	// A past appointment the practitioner never marked does not stand in the way.
	stale := bookFirst(t, j.pat, j.docID, j.videoID, "")
	if _, err := e.DB.Pool.Exec(ctx, `UPDATE appointments SET starts_at = starts_at - interval '5 days', ends_at = ends_at - interval '5 days' WHERE id = $1`, stale); err != nil {
		t.Fatal(err)
	}
	age(j.acct.ID)
	var upcoming store.Appointment
	upcoming, _ = store.AppointmentByID(ctx, e.DB.Pool, j.upcoming)
	if st := j.pat.json("POST", "/api/v1/account/reauth", map[string]string{"password": testPassword}, nil); st != 204 {
		t.Fatalf("reauth: %d", st)
	}
	var out struct {
		Status    string   `json:"status"`
		Cancelled []string `json:"cancelled_appointments"`
		Held      int      `json:"documents_kept_for_the_law"`
	}
	if st := j.pat.json("POST", "/api/v1/account/erase", nil, &out); st != 200 || out.Status != "erased" || len(out.Cancelled) != 1 || out.Cancelled[0] != j.upcoming {
		t.Fatalf("erase: %d %+v", st, out)
	}

	// Logged out for good; the email can no longer log in.
	if st := j.pat.json("GET", "/api/v1/me", nil, nil); st != 401 {
		t.Errorf("old session after erasure: %d", st)
	}
	if st := e.client().json("POST", "/api/v1/login", map[string]string{"email": j.acct.Email, "password": testPassword}, nil); st != 401 {
		t.Errorf("login after erasure: %d", st)
	}
	var email, name, phone string
	var erased *time.Time
	e.DB.Pool.QueryRow(ctx, `SELECT email, name, phone, erased_at FROM accounts WHERE id = $1`, j.acct.ID).Scan(&email, &name, &phone, &erased)
	if email != "erased-"+j.acct.ID+"@erased.invalid" || name != "Compte supprimé" || phone != "" || erased == nil {
		t.Errorf("account after erasure: %q %q %q %v", email, name, phone, erased)
	}
	counts := map[string]string{
		"sessions":          `SELECT count(*) FROM sessions WHERE account_id = $1`,
		"chat":              `SELECT count(*) FROM consult_messages m JOIN appointments a ON a.id = m.appointment_id WHERE a.patient_id = $1`,
		"reasons":           `SELECT count(*) FROM appointments WHERE patient_id = $1 AND (reason IS NOT NULL OR cancel_reason IS NOT NULL)`,
		"relatives":         `SELECT count(*) FROM patient_profiles WHERE account_id = $1 AND relationship <> 'self'`,
		"named profiles":    `SELECT count(*) FROM patient_profiles WHERE account_id = $1 AND family_name <> 'Compte supprimé'`,
		"live data key":     `SELECT count(*) FROM data_keys k JOIN accounts a ON a.data_key_id = k.id WHERE a.id = $1 AND k.destroyed_at IS NULL`,
		"upcoming":          `SELECT count(*) FROM appointments WHERE patient_id = $1 AND status IN ('pending_payment', 'confirmed') AND starts_at > now()`,
		"notification pref": `SELECT count(*) FROM notification_prefs WHERE account_id = $1`,
	}
	for what, q := range counts {
		var n int
		if err := e.DB.Pool.QueryRow(ctx, q, j.acct.ID).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s after erasure: %d %v", what, n, err)
		}
	}
	// The slot is free again and the practitioner told.
	free := false
	for _, s := range freeSlots(t, j.doc, j.docID, j.videoID) {
		free = free || s.Equal(upcoming.StartsAt)
	}
	if !free {
		t.Error("the cancelled appointment's slot is not free again")
	}
	var told int
	e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE kind = 'appointment.cancelled' AND recipient_id = $1 AND appointment_id = $2`, j.docID, j.upcoming).Scan(&told)
	if told != 1 {
		t.Errorf("practitioner told %d times", told)
	}

	// Kept for the law: the prescription and the payment still exist, and
	// the platform cannot read them...
	p, err := store.PrescriptionByID(ctx, e.DB.Pool, j.rx.ID)
	if err != nil || p.Status != "ready" {
		t.Fatalf("signed prescription after erasure: %+v %v", p.Status, err)
	}
	if _, err := e.API.Vault.Open(ctx, e.DB.Pool, vault.AAD{Table: "prescriptions", Column: "content", RowID: p.ID}, p.Content); !errors.Is(err, vault.ErrKeyDestroyed) {
		t.Errorf("the platform still opens the prescription: %v", err)
	}
	if _, err := store.PaymentOf(ctx, e.DB.Pool, j.paid); err != nil {
		t.Errorf("payment record after erasure: %v", err)
	}
	if resp, b := j.doc.do("GET", "/api/v1/prescriptions/"+j.rx.ID, nil); resp.StatusCode >= 500 || bytes.Contains(b, []byte(j.drug)) {
		t.Errorf("practitioner reads an erased patient's prescription: %d %s", resp.StatusCode, b)
	}
	if d, err := store.PrescriptionByID(ctx, e.DB.Pool, draft.ID); err != nil || d.Status != "cancelled" {
		t.Errorf("draft after erasure: %q %v", d.Status, err)
	}
	// ...but the data-protection officer, with the offline key, can.
	recs, err := store.LegalHoldRecords(ctx, e.DB.Pool, j.acct.ID)
	if err != nil || len(recs) != out.Held {
		t.Fatalf("legal hold: %d records (%d said) %v", len(recs), out.Held, err)
	}
	kinds := map[string]int{}
	for _, r := range recs {
		kinds[r.Kind]++
		if bytes.Contains(r.Sealed, []byte(j.drug)) {
			t.Error("a legal-hold record is in the clear")
		}
		plain, err := privacy.OpenLegalHold(e.holdPriv, privacy.HoldAAD(r.SubjectID, r.Kind, r.RefID), r.Sealed)
		if err != nil {
			t.Fatalf("open %s: %v", r.Kind, err)
		}
		var d privacy.HeldDocument
		if err := json.Unmarshal(plain, &d); err != nil {
			t.Fatal(err)
		}
		switch r.Kind {
		case "prescription":
			if !bytes.Contains(d.Facts, []byte(j.drug)) || !bytes.HasPrefix(d.Files["prescription.pdf"], []byte("%PDF")) {
				t.Errorf("held prescription: %s, %d files", d.Facts, len(d.Files))
			}
		case "receipt":
			if !bytes.HasPrefix(d.Files["receipt.pdf"], []byte("%PDF")) {
				t.Errorf("held receipt without its PDF: %s", d.Facts)
			}
		}
		// Bound to its row: moved to another, it does not open.
		if _, err := privacy.OpenLegalHold(e.holdPriv, privacy.HoldAAD(r.SubjectID, r.Kind, "another"), r.Sealed); err == nil {
			t.Error("a legal-hold record opens for another row")
		}
	}
	if kinds["prescription"] != 1 || kinds["receipt"] != 1 || kinds["identity"] != 1 {
		t.Errorf("legal hold kinds %v", kinds)
	}
	var audited int
	e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'erase' AND subject_id = $1`, j.acct.ID).Scan(&audited)
	if audited != 1 {
		t.Errorf("%d erase audit rows", audited)
	}
	// Erasing twice is not possible: the session is gone.
	if resp, _ := j.pat.do("POST", "/api/v1/account/erase", nil); resp.StatusCode != 401 {
		t.Errorf("second erase: %d", resp.StatusCode)
	}
	_ = keyID
}

// bookingDuringCancel cancels through booking, and books once more from
// another session meanwhile, the first time it is called.
type bookingDuringCancel struct {
	privacy.Canceller
	book func()
}

func (b *bookingDuringCancel) Cancel(ctx context.Context, who audit.Actor, id, reason string) (store.Appointment, error) {
	a, err := b.Canceller.Cancel(ctx, who, id, reason)
	if b.book != nil {
		b.book()
		b.book = nil
	}
	return a, err
}

// TestPrivacyEraseRacesABooking: an appointment booked while the others
// are cancelled stops the erasure, which changes nothing, and a second
// attempt cancels it too.
func TestPrivacyEraseRacesABooking(t *testing.T) {
	e := newFullEnv(t)
	ctx := context.Background()
	j := e.journey(t)
	racing := &bookingDuringCancel{Canceller: e.svc}
	racing.book = func() {
		slots := freeSlots(t, j.pat, j.docID, j.videoID)
		if st := j.pat.json("POST", "/api/v1/appointments", map[string]any{"practitioner_id": j.docID, "consultation_type_id": j.videoID,
			"start": slots[len(slots)-2].Format(time.RFC3339), "reason": "meanwhile"}, nil); st != 201 {
			t.Errorf("booking meanwhile: %d", st)
		}
	}
	svc := privacy.New(e.DB, e.API.Vault, privacy.Config{Booking: racing, Receipts: e.pay, LegalHold: e.holdPriv.PublicKey()})
	who := audit.Actor{ID: j.acct.ID, Role: "patient", IP: "127.0.0.1"}
	if _, err := svc.Erase(ctx, who); !errors.Is(err, privacy.ErrBookedMeanwhile) {
		t.Fatalf("erase racing a booking: %v", err)
	}
	if _, err := store.AccountByID(ctx, e.DB.Pool, j.acct.ID); err != nil {
		t.Fatalf("the refused erasure erased: %v", err)
	}
	var chat int
	e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM consult_messages WHERE appointment_id = $1`, j.done).Scan(&chat)
	if chat != 1 {
		t.Fatalf("the refused erasure deleted the chat: %d", chat)
	}
	out, err := svc.Erase(ctx, who)
	if err != nil || len(out.Cancelled) != 1 {
		t.Fatalf("second erase: %+v %v", out, err)
	}
	var upcoming int
	e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM appointments WHERE patient_id = $1 AND status IN ('pending_payment', 'confirmed')`, j.acct.ID).Scan(&upcoming)
	if upcoming != 0 {
		t.Errorf("%d upcoming appointments after erasure", upcoming)
	}
}

// TestPrivacyErasedPatientLeavesOthersWorking: once a patient is erased,
// their practitioner's lists and the pharmacy's inbox still work (the
// erased patient's documents show as erased or not at all), and the
// practitioner's views of the past consultation answer without error.
func TestPrivacyErasedPatientLeavesOthersWorking(t *testing.T) {
	e := newFullEnv(t)
	ctx := context.Background()
	j := e.journey(t)
	pharm, pAcct := e.user("pharmacist", "Paula Pharma")
	ph, err := store.SavePharmacy(ctx, e.DB.Pool, store.Pharmacy{Name: "Pharmacie du Parc", City: "Lyon", Postcode: "69006"})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetPharmacist(ctx, e.DB.Pool, pAcct.ID, ph.ID); err != nil {
		t.Fatal(err)
	}
	if resp, b := j.pat.do("POST", "/api/v1/prescriptions/"+j.rx.ID+"/send", map[string]any{"pharmacy_id": ph.ID}); resp.StatusCode != 200 {
		t.Fatalf("send: %d %s", resp.StatusCode, b)
	}
	j.pat.json("POST", "/api/v1/account/reauth", map[string]string{"password": testPassword}, nil)
	if st := j.pat.json("POST", "/api/v1/account/erase", nil, nil); st != 200 {
		t.Fatalf("erase: %d", st)
	}
	for _, c := range []struct {
		who  *client
		path string
	}{
		{j.doc, "/api/v1/prescriptions"}, {pharm, "/api/v1/pharmacy/prescriptions"}, {j.doc, "/api/v1/agenda"},
		{j.doc, "/api/v1/appointments/" + j.done}, {j.doc, "/api/v1/appointments/" + j.done + "/chat"},
		{j.doc, "/api/v1/appointments/" + j.done + "/history"},
	} {
		resp, b := c.who.do("GET", c.path, nil)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s after a patient's erasure: %d %.200s", c.path, resp.StatusCode, b)
		}
		if bytes.Contains(b, []byte(j.drug)) || bytes.Contains(b, []byte(j.reason)) {
			t.Errorf("GET %s after a patient's erasure still shows their health data", c.path)
		}
	}
}
