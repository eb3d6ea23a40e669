package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"teleconsult/auth"
	"teleconsult/rx"
	"teleconsult/store"
)

// rxEnv is an API serving prescriptions, with a consultation between a
// practitioner and a patient, and a pharmacy with its pharmacist.
type rxEnv struct {
	*testEnv
	doctor, patient, pharmacist, stranger *client
	appointment                           string
	pharmacyID                            string
}

func newRxEnv(t *testing.T) *rxEnv {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t)
	ca, err := rx.LoadOrCreateAuthority(ctx, e.DB, e.API.Vault, "", "")
	if err != nil {
		t.Fatal(err)
	}
	svc := rx.NewService(e.DB, e.API.Vault, ca, nil)
	e.start(func(mux *http.ServeMux) { e.API.prescriptionRoutes(mux, svc) })
	env := &rxEnv{testEnv: e}

	var doc, pat, pharm auth.Account
	env.doctor, doc = e.user("practitioner", "Dr Hélène Garçon")
	env.patient, pat = e.user("patient", "Éloïse Lefèvre")
	env.pharmacist, pharm = e.user("pharmacist", "Paul Pharmacien")
	env.stranger, _ = e.user("patient", "Jean Martin")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(store.UpsertPractitioner(ctx, e.DB.Pool, store.Practitioner{AccountID: doc.ID, Specialty: "general_practice", RPPS: "10101234567",
		Address: "12 rue de l'Église", City: "Lyon", Postcode: "69003", Phone: "04 78 00 00 00", TimeZone: "Europe/Paris",
		HorizonDays: 60, NoShowLimit: 3}))
	_, err = store.SavePatientProfile(ctx, e.DB.Pool, store.PatientProfile{ID: store.NewUUID(), AccountID: pat.ID, Relationship: "self",
		FamilyName: "Lefèvre", GivenNames: "Éloïse", Sex: "F", BirthDate: time.Date(1990, 3, 12, 0, 0, 0, 0, time.UTC)})
	must(err)
	ct, err := store.SaveConsultationType(ctx, e.DB.Pool, store.ConsultationType{PractitionerID: doc.ID, Name: "Vidéo", Mode: "video",
		DurationMinutes: 15, NewPatients: true, Active: true})
	must(err)
	start := time.Now().Add(-time.Hour).Truncate(time.Minute)
	a, err := store.InsertAppointment(ctx, e.DB.Pool, store.Appointment{ID: store.NewUUID(), PractitionerID: doc.ID, ConsultationTypeID: ct.ID,
		PatientID: pat.ID, Mode: "video", StartsAt: start, EndsAt: start.Add(15 * time.Minute), Status: store.StatusCompleted, Currency: "EUR"}, doc.ID)
	must(err)
	env.appointment = a.ID
	ph, err := store.SavePharmacy(ctx, e.DB.Pool, store.Pharmacy{Name: "Pharmacie de la Croix-Rousse", City: "Lyon", Postcode: "69004"})
	must(err)
	must(store.SetPharmacist(ctx, e.DB.Pool, pharm.ID, ph.ID))
	env.pharmacyID = ph.ID
	return env
}

type rxView struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Number     string `json:"number"`
	AccessCode string `json:"access_code"`
	Items      []struct {
		Drug          string `json:"drug"`
		Substitutable bool   `json:"substitutable"`
	} `json:"items"`
}

func TestPrescriptionsOverHTTP(t *testing.T) {
	e := newRxEnv(t)
	item := map[string]any{"drug": "Salbutamol", "strength": "100 µg/dose", "form": "suspension pour inhalation",
		"dosage": "2 bouffées si gêne", "quantity": 1, "renewals": 0}
	body := map[string]any{"items": []any{item}, "instructions": "Consulter si aggravation."}

	// Bad input is refused and creates nothing.
	bad := []struct {
		name   string
		c      *client
		path   string
		body   any
		status int
		code   string
	}{
		{"not logged in", e.client(), "/api/v1/appointments/" + e.appointment + "/prescriptions", body, 401, ""},
		{"patient writes", e.patient, "/api/v1/appointments/" + e.appointment + "/prescriptions", body, 404, "appointment_not_found"},
		{"unknown appointment", e.doctor, "/api/v1/appointments/" + store.NewUUID() + "/prescriptions", body, 404, "appointment_not_found"},
		{"malformed appointment", e.doctor, "/api/v1/appointments/x/prescriptions", body, 404, "appointment_not_found"},
		{"empty items", e.doctor, "/api/v1/appointments/" + e.appointment + "/prescriptions", map[string]any{"items": []any{}}, 400, "invalid_prescription"},
		{"dosage without drug", e.doctor, "/api/v1/appointments/" + e.appointment + "/prescriptions",
			map[string]any{"items": []any{map[string]any{"dosage": "1 le soir", "duration_days": 5}}}, 400, "invalid_prescription"},
		{"misspelt item field", e.doctor, "/api/v1/appointments/" + e.appointment + "/prescriptions",
			map[string]any{"items": []any{map[string]any{"drug": "X", "dosage": "1/j", "duration": 5}}}, 400, "bad_json"},
		{"unknown field", e.doctor, "/api/v1/appointments/" + e.appointment + "/prescriptions", map[string]any{"items": []any{item}, "signed": true}, 400, "bad_json"},
	}
	for _, tc := range bad {
		resp, b := tc.c.do("POST", tc.path, tc.body)
		if resp.StatusCode != tc.status || (tc.code != "" && errorCode(b) != tc.code) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, b, tc.status, tc.code)
		}
	}
	var n int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM prescriptions`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d prescriptions after bad input", n)
	}

	var draft rxView
	if st := e.doctor.json("POST", "/api/v1/appointments/"+e.appointment+"/prescriptions", body, &draft); st != 201 || draft.Status != "draft" || draft.ID == "" {
		t.Fatalf("create: %d %+v", st, draft)
	}
	if !draft.Items[0].Substitutable {
		t.Error("substitution is not allowed by default")
	}
	item["substitutable"] = false
	if st := e.doctor.json("PUT", "/api/v1/prescriptions/"+draft.ID, body, &draft); st != 200 || draft.Items[0].Substitutable {
		t.Fatalf("edit: %d %+v", st, draft)
	}
	// The prescriber previews the draft: a PDF the call page may frame,
	// never cached; to anyone else it does not exist.
	preview := "/api/v1/prescriptions/" + draft.ID + "/preview.pdf"
	resp, pv := e.doctor.do("GET", preview, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(pv, []byte("%PDF-")) {
		t.Fatalf("preview: %d %s %.40q", resp.StatusCode, resp.Header.Get("Content-Type"), pv)
	}
	for h, want := range map[string]string{"Cache-Control": "no-store", "X-Frame-Options": "SAMEORIGIN",
		"Content-Disposition": `inline; filename="brouillon-ordonnance.pdf"`} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("preview %s: %q, want %q", h, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self'") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("preview CSP: %q", csp)
	}
	if !bytes.Contains(pv, []byte("Salbutamol")) || !bytes.Contains(pv, []byte("BROUILLON")) {
		t.Error("the preview lacks the draft's drug or its draft banner")
	}
	for name, c := range map[string]*client{"patient": e.patient, "stranger": e.stranger, "pharmacist": e.pharmacist, "anonymous": e.client()} {
		want := 404
		if name == "anonymous" {
			want = 401
		}
		if resp, b := c.do("GET", preview, nil); resp.StatusCode != want || bytes.Contains(b, []byte("Salbutamol")) {
			t.Errorf("%s previews the draft: %d, want %d", name, resp.StatusCode, want)
		}
	}
	var signed rxView
	if st := e.doctor.json("POST", "/api/v1/prescriptions/"+draft.ID+"/sign", nil, &signed); st != 200 || signed.Status != "ready" || signed.Number == "" {
		t.Fatalf("sign: %d %+v", st, signed)
	}
	if resp, b := e.doctor.do("GET", preview, nil); resp.StatusCode != 409 || errorCode(b) != "prescription_signed" {
		t.Errorf("preview after signing: %d %s, want 409 prescription_signed", resp.StatusCode, b)
	}
	if resp, b := e.doctor.do("PUT", "/api/v1/prescriptions/"+draft.ID, body); resp.StatusCode != 409 {
		t.Errorf("edit after signing: %d %s", resp.StatusCode, b)
	}

	var mine rxView
	if st := e.patient.json("GET", "/api/v1/prescriptions/"+draft.ID, nil, &mine); st != 200 || mine.AccessCode == "" || mine.Number != signed.Number {
		t.Fatalf("patient get: %d %+v", st, mine)
	}
	var list struct{ Results []rxView }
	if st := e.patient.json("GET", "/api/v1/prescriptions", nil, &list); st != 200 || len(list.Results) != 1 {
		t.Fatalf("patient list: %d %+v", st, list)
	}
	resp, pdf := e.patient.do("GET", "/api/v1/prescriptions/"+draft.ID+"/pdf", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(pdf, []byte("%PDF")) {
		t.Fatalf("patient pdf: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for name, c := range map[string]*client{"stranger": e.stranger, "pharmacist before send": e.pharmacist} {
		if resp, _ := c.do("GET", "/api/v1/prescriptions/"+draft.ID+"/pdf", nil); resp.StatusCode != 404 {
			t.Errorf("%s reads the PDF: %d", name, resp.StatusCode)
		}
	}
	if resp, _ := e.client().do("GET", "/api/v1/prescriptions/authority.pem", nil); resp.StatusCode != 200 {
		t.Errorf("authority certificate: %d", resp.StatusCode)
	}

	if st := e.patient.json("POST", "/api/v1/prescriptions/"+draft.ID+"/send", map[string]string{"pharmacy_id": e.pharmacyID}, nil); st != 200 {
		t.Fatalf("send: %d", st)
	}
	var inbox struct{ Results []rxView }
	if st := e.pharmacist.json("GET", "/api/v1/pharmacy/prescriptions", nil, &inbox); st != 200 || len(inbox.Results) != 1 || inbox.Results[0].AccessCode != mine.AccessCode {
		t.Fatalf("inbox: %d %+v", st, inbox)
	}
	if resp, _ := e.pharmacist.do("GET", "/api/v1/prescriptions/"+draft.ID+"/pdf", nil); resp.StatusCode != 200 {
		t.Errorf("pharmacy it was sent to reads the PDF: %d", resp.StatusCode)
	}

	// The pharmacy checks the PDF it was handed: this one, byte for byte.
	verify := func(pdf []byte) (int, map[string]any) {
		req, _ := http.NewRequest("POST", e.Srv.URL+"/api/v1/pharmacy/prescriptions/verify", bytes.NewReader(pdf))
		req.Header.Set("Content-Type", "application/pdf")
		resp, err := e.pharmacist.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if st, v := verify(pdf); st != 200 || v["authentic"] != true || v["number"] != signed.Number || v["status"] != "ready" {
		t.Errorf("verify the genuine PDF: %d %v", st, v)
	}
	altered := bytes.Clone(pdf)
	altered[len(altered)/2] ^= 1
	if st, v := verify(altered); st != 200 || v["authentic"] != false {
		t.Errorf("verify an altered PDF: %d %v", st, v)
	}

	// Tampered access code, then accept, then a second accept.
	tampered := strings.Map(func(r rune) rune {
		if r == '2' {
			return '3'
		}
		if r == '3' {
			return '2'
		}
		return r
	}, mine.AccessCode)
	if tampered == mine.AccessCode {
		tampered = "ZZZZ-ZZZZ"
	}
	if resp, b := e.pharmacist.do("POST", "/api/v1/pharmacy/prescriptions/accept", map[string]string{"number": signed.Number, "access_code": tampered}); resp.StatusCode != 404 {
		t.Errorf("tampered access code: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.pharmacist.do("POST", "/api/v1/pharmacy/prescriptions/accept", map[string]string{"qr": "https://example.test/"}); resp.StatusCode != 400 {
		t.Errorf("foreign QR code: %d %s", resp.StatusCode, b)
	}
	var acc struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if st := e.pharmacist.json("POST", "/api/v1/pharmacy/prescriptions/accept", map[string]string{"qr": signed.Number + "/" + mine.AccessCode}, &acc); st != 200 || acc.Secret == "" || acc.ID != draft.ID {
		t.Fatalf("accept: %d %+v", st, acc)
	}
	if resp, b := e.pharmacist.do("POST", "/api/v1/pharmacy/prescriptions/accept", map[string]string{"number": signed.Number, "access_code": mine.AccessCode}); resp.StatusCode != 409 {
		t.Errorf("second accept: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.pharmacist.do("POST", "/api/v1/pharmacy/prescriptions/"+acc.ID+"/dispense", map[string]string{"secret": "wrong"}); resp.StatusCode != 403 {
		t.Errorf("wrong secret: %d %s", resp.StatusCode, b)
	}
	var d struct {
		Status  string         `json:"status"`
		Receipt map[string]any `json:"receipt"`
	}
	if st := e.pharmacist.json("POST", "/api/v1/pharmacy/prescriptions/"+acc.ID+"/dispense", map[string]string{"secret": acc.Secret}, &d); st != 200 || d.Status != "completed" || d.Receipt["signature"] == nil {
		t.Fatalf("dispense: %d %+v", st, d)
	}
	if resp, _ := e.pharmacist.do("POST", "/api/v1/pharmacy/prescriptions/"+acc.ID+"/reject", map[string]string{"secret": acc.Secret}); resp.StatusCode != 409 {
		t.Errorf("reject after dispense: %d", resp.StatusCode)
	}

	resp, b := e.patient.do("GET", "/api/v1/prescriptions/"+draft.ID+"/fhir", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/fhir+json") ||
		!strings.Contains(string(b), `"MedicationRequest"`) || !strings.Contains(string(b), `"MedicationDispense"`) {
		t.Errorf("fhir: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
}
