package rx

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"teleconsult/audit"
	"teleconsult/store"
	"teleconsult/store/storetest"
	"teleconsult/vault"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// world is a fresh database with a practitioner, a patient with a profile,
// a consultation between them, and the prescription service.
type world struct {
	t            testing.TB
	db           *store.DB
	vault        *vault.Vault
	ca           *Authority
	svc          *Service
	practitioner Caller
	patient      Caller
	appointment  store.Appointment
	clock        *clock
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var ctx = context.Background()

func newWorld(t testing.TB) *world {
	t.Helper()
	return newWorldOn(t, storetest.New(t))
}

// newWorldOn is newWorld on db, a fresh database.
func newWorldOn(t testing.TB, db *store.DB) *world {
	t.Helper()
	v := vault.NewForTest(t, db)
	ca, err := LoadOrCreateAuthority(ctx, db, v, "", "")
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().Truncate(time.Second)}
	w := &world{t: t, db: db, vault: v, ca: ca, svc: NewService(db, v, ca, clk.now), clock: clk}
	w.practitioner = w.newPractitioner("Dr Hélène Garçon", "10101234567")
	w.patient = w.newPatient("Lefèvre", "Éloïse", "F", "1990-03-12", 58.5, 165)
	w.appointment = w.newAppointment(w.practitioner, w.patient, store.StatusInProgress)
	return w
}

func (w *world) account(role, name string) Caller {
	w.t.Helper()
	email := fmt.Sprintf("%s-%s@example.test", role, store.NewUUID()[:8])
	a, err := store.InsertAccount(ctx, w.db.Pool, email, name, role, "not-a-real-hash", "fr")
	if err != nil {
		w.t.Fatal(err)
	}
	return Caller{ID: a.ID, Role: role, IP: "127.0.0.1"}
}

func (w *world) newPractitioner(name, rpps string) Caller {
	w.t.Helper()
	c := w.account(rolePractitioner, name)
	err := store.UpsertPractitioner(ctx, w.db.Pool, store.Practitioner{AccountID: c.ID, Specialty: "general_practice", RPPS: rpps,
		Address: "12 rue de l'Église", City: "Lyon", Postcode: "69003", Phone: "04 78 00 00 00", TimeZone: "Europe/Paris",
		HorizonDays: 60, MinNoticeMinutes: 0, CancelCutoffMinutes: 0, NoShowLimit: 3})
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

func (w *world) newPatient(family, given, sex, birth string, weight, height float64) Caller {
	w.t.Helper()
	c := w.account(rolePatient, given+" "+family)
	id := store.NewUUID()
	key, err := w.vault.AccountKey(ctx, w.db.Pool, c.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	m, _ := json.Marshal(map[string]float64{"weight_kg": weight, "height_cm": height})
	sealed, err := w.vault.Seal(ctx, w.db.Pool, key, vault.AAD{Table: "patient_profiles", Column: "measurements", RowID: id}, m)
	if err != nil {
		w.t.Fatal(err)
	}
	bd, _ := time.Parse(time.DateOnly, birth)
	_, err = store.SavePatientProfile(ctx, w.db.Pool, store.PatientProfile{ID: id, AccountID: c.ID, Relationship: "self",
		FamilyName: family, GivenNames: given, Sex: sex, BirthDate: bd, Measurements: sealed})
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

var slot = struct {
	mu   sync.Mutex
	next time.Time
}{next: time.Now().Add(-48 * time.Hour).Truncate(time.Hour)}

func (w *world) newAppointment(practitioner, patient Caller, status string) store.Appointment {
	w.t.Helper()
	ct, err := store.SaveConsultationType(ctx, w.db.Pool, store.ConsultationType{PractitionerID: practitioner.ID, Name: "Téléconsultation",
		Mode: "video", DurationMinutes: 15, FeeCents: 2500, NewPatients: true, Active: true})
	if err != nil {
		w.t.Fatal(err)
	}
	slot.mu.Lock()
	start := slot.next
	slot.next = slot.next.Add(20 * time.Minute)
	slot.mu.Unlock()
	a, err := store.InsertAppointment(ctx, w.db.Pool, store.Appointment{ID: store.NewUUID(), PractitionerID: practitioner.ID,
		ConsultationTypeID: ct.ID, PatientID: patient.ID, Mode: "video", StartsAt: start, EndsAt: start.Add(15 * time.Minute),
		Status: status, FeeCents: 2500, Currency: "EUR"}, practitioner.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	return a
}

// pharmacy creates a pharmacy with one pharmacist and returns both.
func (w *world) pharmacy(name, city string) (store.Pharmacy, Caller) {
	w.t.Helper()
	ph, err := store.SavePharmacy(ctx, w.db.Pool, store.Pharmacy{Name: name, City: city, Postcode: "69003", Address: "1 place Bellecour"})
	if err != nil {
		w.t.Fatal(err)
	}
	c := w.account(rolePharmacist, "Pharmacien "+name)
	if err := store.SetPharmacist(ctx, w.db.Pool, c.ID, ph.ID); err != nil {
		w.t.Fatal(err)
	}
	return ph, c
}

func sampleContent() Content {
	return Content{
		Items: []Item{
			{Drug: "Amoxicilline", Strength: "500 mg", Form: "gélule", Dosage: "1 gélule matin, midi et soir", DurationDays: 7, Substitutable: true},
			{Drug: "Salbutamol", Strength: "100 µg/dose", Form: "suspension pour inhalation", Dosage: "2 bouffées si gêne respiratoire", Quantity: 1, Renewals: 2},
		},
		Instructions: "Revoir un médecin si la fièvre dure plus de 72 heures.",
	}
}

// signed writes and signs a prescription for the world's consultation.
func (w *world) signed(c Content) View {
	w.t.Helper()
	d, err := w.svc.Create(ctx, w.practitioner, w.appointment.ID, c)
	if err != nil {
		w.t.Fatal(err)
	}
	v, err := w.svc.Sign(ctx, w.practitioner, d.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	return v
}

func (w *world) count(sql string, args ...any) int {
	w.t.Helper()
	var n int
	if err := w.db.Pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		w.t.Fatal(err)
	}
	return n
}

// denied counts refused accesses in the audit log.
func (w *world) denied() int {
	return w.count(`SELECT count(*) FROM audit_log WHERE outcome = $1`, audit.Denied)
}
