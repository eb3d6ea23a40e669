package httpapi

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"teleconsult/auth"
	"teleconsult/booking"
	"teleconsult/rx"
	"teleconsult/store"
)

// practiceEnv is an API with booking, for FHIR and authorization tests.
func practiceEnv(t *testing.T) *bookingEnv {
	e := newEnv(t)
	svc := booking.New(e.DB, e.API.Vault, booking.Config{BaseURL: e.API.BaseURL})
	e.API.Booking = svc
	e.API.ProbeBudget = 30
	e.start()
	return &bookingEnv{testEnv: e, svc: svc}
}

// bookFirst books the first free slot of typeID for patient.
func bookFirst(t *testing.T, patient *client, docID, typeID, reason string) string {
	t.Helper()
	slots := freeSlots(t, patient, docID, typeID)
	if len(slots) == 0 {
		t.Fatal("no free slot")
	}
	var ap apptBody
	if st := patient.json("POST", "/api/v1/appointments", map[string]any{"practitioner_id": docID, "consultation_type_id": typeID,
		"start": slots[0].Format(time.RFC3339), "reason": reason}, &ap); st != 201 {
		t.Fatalf("book: %d", st)
	}
	return ap.ID
}

func newToken(t *testing.T, e *testEnv, doc *client, scopes ...string) string {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	if st := doc.json("POST", "/api/v1/api-tokens", map[string]any{"name": "PMS", "scopes": scopes}, &tok); st != 201 {
		t.Fatalf("token: %d", st)
	}
	return tok.Token
}

func TestFHIRScopedToOnePractice(t *testing.T) {
	e := practiceEnv(t)
	docX, x, videoX, _ := e.doctor(t)
	_, y, videoY, _ := e.doctor(t)
	patientA, _ := e.user("patient", "Anne")
	patientB, _ := e.user("patient", "Bruno")
	apX := bookFirst(t, patientA, x, videoX, "toux persistante")
	apY := bookFirst(t, patientB, y, videoY, "éruption cutanée")

	pms := e.bearer(newToken(t, e.testEnv, docX, auth.ScopeAgendaRead))
	resp, b := pms.do("GET", "/fhir/Practitioner/"+x, nil)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "application/fhir+json") || !strings.Contains(string(b), `"resourceType":"Practitioner"`) || !strings.Contains(string(b), "10003456789") {
		t.Fatalf("own Practitioner: %d %s", resp.StatusCode, b)
	}
	if resp, b := pms.do("GET", "/fhir/Practitioner/"+y, nil); resp.StatusCode != 404 || !strings.Contains(string(b), "OperationOutcome") {
		t.Errorf("other Practitioner: %d %s", resp.StatusCode, b)
	}
	_, b = pms.do("GET", "/fhir/Appointment", nil)
	if !strings.Contains(string(b), apX) || strings.Contains(string(b), apY) || !strings.Contains(string(b), `"status":"booked"`) {
		t.Errorf("appointments bundle: %s", b)
	}
	for _, s := range []string{"toux", "éruption", "cutanée"} {
		if strings.Contains(string(b), s) {
			t.Errorf("the reason %q leaked into FHIR", s)
		}
	}
	if resp, _ := pms.do("GET", "/fhir/Appointment/"+apX, nil); resp.StatusCode != 200 {
		t.Errorf("own Appointment: %d", resp.StatusCode)
	}
	if resp, b := pms.do("GET", "/fhir/Appointment/"+apY, nil); resp.StatusCode != 404 || strings.Contains(string(b), y) {
		t.Errorf("other Appointment: %d %s", resp.StatusCode, b)
	}
	_, b = pms.do("GET", "/fhir/Schedule", nil)
	if !strings.Contains(string(b), videoX) || strings.Contains(string(b), videoY) {
		t.Errorf("schedules: %s", b)
	}
	if resp, b := pms.do("GET", "/fhir/Slot?schedule=Schedule/"+videoX, nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"free"`) {
		t.Errorf("own slots: %d %s", resp.StatusCode, b)
	}
	if resp, _ := pms.do("GET", "/fhir/Slot?schedule=Schedule/"+videoY, nil); resp.StatusCode != 404 {
		t.Errorf("other practice's slots: %d", resp.StatusCode)
	}
	// Writing needs appointments:write, and only on one's own.
	if resp, _ := pms.do("PUT", "/fhir/Appointment/"+apX, map[string]string{"resourceType": "Appointment", "status": "cancelled"}); resp.StatusCode != 403 {
		t.Errorf("update without appointments:write: %d", resp.StatusCode)
	}
	writer := e.bearer(newToken(t, e.testEnv, docX, auth.ScopeAppointmentsWrite))
	if resp, _ := writer.do("PUT", "/fhir/Appointment/"+apY, map[string]string{"resourceType": "Appointment", "status": "cancelled"}); resp.StatusCode != 404 {
		t.Errorf("update of another practice's appointment: %d", resp.StatusCode)
	}
	if resp, b := writer.do("PUT", "/fhir/Appointment/"+apX, map[string]string{"resourceType": "Appointment", "status": "bogus"}); resp.StatusCode != 400 {
		t.Errorf("bad status: %d %s", resp.StatusCode, b)
	}
	if resp, b := writer.do("PUT", "/fhir/Appointment/"+apX, map[string]string{"resourceType": "Appointment", "status": "cancelled"}); resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"cancelled"`) {
		t.Errorf("cancel through FHIR: %d %s", resp.StatusCode, b)
	}
	// Scope and role checks.
	noAgenda := e.bearer(newToken(t, e.testEnv, docX, auth.ScopePrescriptionsRead))
	if resp, _ := noAgenda.do("GET", "/fhir/Appointment", nil); resp.StatusCode != 403 {
		t.Errorf("token without agenda:read: %d", resp.StatusCode)
	}
	if resp, _ := patientA.do("GET", "/fhir/Appointment", nil); resp.StatusCode != 403 {
		t.Errorf("patient on FHIR: %d", resp.StatusCode)
	}
	if resp, _ := e.client().do("GET", "/fhir/Appointment", nil); resp.StatusCode != 401 {
		t.Errorf("anonymous on FHIR: %d", resp.StatusCode)
	}
}

// TestEnumeration2020 plays the 2020 leak: an attacker with a valid API
// token, and another with an ordinary patient account, walk through
// random and sequential ids. They get nothing that is not theirs, and
// they are slowed down.
func TestEnumeration2020(t *testing.T) {
	e := practiceEnv(t)
	docX, _, _, _ := e.doctor(t)
	_, y, videoY, _ := e.doctor(t)
	victim, _ := e.user("patient", "Victime")
	victimAppt := bookFirst(t, victim, y, videoY, "motif confidentiel")

	attackers := map[string]struct {
		c    *client
		path string
	}{
		"api token":       {e.bearer(newToken(t, e.testEnv, docX, auth.ScopeAgendaRead)), "/fhir/Appointment/"},
		"patient account": {func() *client { c, _ := e.user("patient", "Mallory"); return c }(), "/api/v1/appointments/"},
	}
	for name, at := range attackers {
		t.Run(name, func(t *testing.T) {
			ids := []string{victimAppt}
			for i := 1; i <= 20; i++ {
				ids = append(ids, fmt.Sprintf("00000000-0000-4000-8000-%012d", i))
			}
			for i := 0; i < 20; i++ {
				id := randomUUID()
				if !store.ValidID(id) {
					t.Fatalf("bad test id %s", id)
				}
				ids = append(ids, id)
			}
			limited := 0
			for _, id := range ids {
				resp, b := at.c.do("GET", at.path+id, nil)
				switch resp.StatusCode {
				case 404:
				case 429:
					limited++
				default:
					t.Fatalf("%s%s answered %d: %s", at.path, id, resp.StatusCode, b)
				}
				for _, leak := range []string{y, "Victime", "confidentiel", victimAppt} {
					if strings.Contains(string(b), leak) {
						t.Fatalf("response leaks %q: %s", leak, b)
					}
				}
			}
			if limited == 0 {
				t.Fatal("41 guessed ids were never slowed down")
			}
		})
	}
	var denied int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE object_id = $1 AND outcome = 'denied'`, victimAppt).Scan(&denied)
	if denied < 2 {
		t.Errorf("refused accesses to the victim's appointment audited %d times, want 2", denied)
	}
}

func randomUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = 0x40 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func TestFHIRMedicationRequests(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	ca, err := rx.LoadOrCreateAuthority(ctx, e.DB, e.API.Vault, "", "")
	if err != nil {
		t.Fatal(err)
	}
	e.API.Rx = rx.NewService(e.DB, e.API.Vault, ca, nil)
	e.API.Booking = booking.New(e.DB, e.API.Vault, booking.Config{})
	e.start()
	doctor, doc := e.user("practitioner", "Dr Rx")
	other, otherDoc := e.user("practitioner", "Dr Autre")
	_, pat := e.user("patient", "Patiente")
	for _, d := range []string{doc.ID, otherDoc.ID} {
		if err := store.UpsertPractitioner(ctx, e.DB.Pool, store.Practitioner{AccountID: d, Specialty: "general_practice", RPPS: "10101234567",
			City: "Lyon", TimeZone: "Europe/Paris", HorizonDays: 60, NoShowLimit: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.SavePatientProfile(ctx, e.DB.Pool, store.PatientProfile{ID: store.NewUUID(), AccountID: pat.ID, Relationship: "self",
		FamilyName: "Durand", GivenNames: "Lise", Sex: "F", BirthDate: time.Date(1985, 1, 2, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	write := func(c *client, docID, drug string) string {
		ct, err := store.SaveConsultationType(ctx, e.DB.Pool, store.ConsultationType{PractitionerID: docID, Name: "Vidéo", Mode: "video", DurationMinutes: 15, NewPatients: true, Active: true})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now().Add(-time.Hour).Truncate(time.Minute)
		a, err := store.InsertAppointment(ctx, e.DB.Pool, store.Appointment{ID: store.NewUUID(), PractitionerID: docID, ConsultationTypeID: ct.ID,
			PatientID: pat.ID, Mode: "video", StartsAt: start, EndsAt: start.Add(15 * time.Minute), Status: store.StatusCompleted, Currency: "EUR"}, docID)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			ID string `json:"id"`
		}
		if st := c.json("POST", "/api/v1/appointments/"+a.ID+"/prescriptions", map[string]any{"items": []map[string]any{{"drug": drug, "strength": "500 mg",
			"form": "comprimé", "dosage": "1 matin et soir", "duration_days": 5, "quantity": 1}}}, &v); st != 201 {
			t.Fatalf("write: %d", st)
		}
		if st := c.json("POST", "/api/v1/prescriptions/"+v.ID+"/sign", nil, nil); st != 200 {
			t.Fatalf("sign: %d", st)
		}
		return v.ID
	}
	mine := write(doctor, doc.ID, "Amoxicilline")
	theirs := write(other, otherDoc.ID, "Ibuprofène")

	pms := e.bearer(newToken(t, e, doctor, auth.ScopePrescriptionsRead))
	resp, b := pms.do("GET", "/fhir/MedicationRequest", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "Amoxicilline") || strings.Contains(string(b), "Ibuprofène") || strings.Contains(string(b), theirs) {
		t.Fatalf("search: %d %s", resp.StatusCode, b)
	}
	if resp, b := pms.do("GET", "/fhir/MedicationRequest/"+mine+"-1", nil); resp.StatusCode != 200 || !strings.Contains(string(b), `"resourceType":"MedicationRequest"`) {
		t.Errorf("read own: %d %s", resp.StatusCode, b)
	}
	if resp, b := pms.do("GET", "/fhir/MedicationRequest/"+theirs+"-1", nil); resp.StatusCode != 404 || strings.Contains(string(b), "Ibuprofène") {
		t.Errorf("read another practice's: %d %s", resp.StatusCode, b)
	}
	agendaOnly := e.bearer(newToken(t, e, doctor, auth.ScopeAgendaRead))
	if resp, _ := agendaOnly.do("GET", "/fhir/MedicationRequest", nil); resp.StatusCode != 403 {
		t.Errorf("token without prescriptions:read: %d", resp.StatusCode)
	}
}
