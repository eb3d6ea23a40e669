package booking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store"
	"teleconsult/vault"
)

// Demo account emails created by `teleconsult demo` before LoadDemo runs.
const (
	DemoDoctorEmail     = "dr.martin@demo.test"
	DemoPharmacistEmail = "pharmacie@demo.test"
	DemoPatientEmail    = "patient@demo.test"
	DemoPatient2Email   = "patient2@demo.test"
)

type demoType struct {
	name     string
	mode     string
	duration int
	fee      int
	// hours: weekdays (0 = Sunday) and local ranges.
	days   []int
	ranges [][2]string
}

type demoDoctor struct {
	email, name, specialty, rpps, address, city, postcode string
	lat, lon                                              float64
	languages                                             []string
	presentation                                          string
	noticeMinutes                                         int
	types                                                 []demoType
}

var (
	weekdays = []int{1, 2, 3, 4, 5}
	everyDay = []int{0, 1, 2, 3, 4, 5, 6}
	office   = [][2]string{{"09:00", "12:00"}, {"14:00", "18:00"}}
)

var demoDoctors = []demoDoctor{
	{DemoDoctorEmail, "Dr Sophie Martin", "general_practice", "10101234567", "12 rue Oberkampf", "Paris", "75011", 48.8649, 2.3800,
		[]string{"fr", "en"}, "Médecin généraliste, consultations au cabinet et en vidéo, 7 jours sur 7.", 15, []demoType{
			{"Téléconsultation", "video", 15, 0, everyDay, [][2]string{{"07:00", "22:00"}}},
			{"Téléconsultation longue", "video", 30, 2500, weekdays, [][2]string{{"18:00", "20:00"}}},
			{"Consultation au cabinet", "in_person", 20, 3000, weekdays, office},
		}},
	{"dr.lefebvre@demo.test", "Dr Paul Lefebvre", "pediatrics", "10102345678", "5 place Bellecour", "Lyon", "69002", 45.7578, 4.8320,
		[]string{"fr"}, "Pédiatre : suivi du nourrisson et de l'enfant.", 120, []demoType{
			{"Consultation pédiatrique", "in_person", 30, 3500, weekdays, office},
			{"Téléconsultation pédiatrique", "video", 20, 0, []int{3, 6}, [][2]string{{"09:00", "12:00"}}},
		}},
	{"dr.nguyen@demo.test", "Dr Linh Nguyen", "dermatology", "10103456789", "40 La Canebière", "Marseille", "13001", 43.2976, 5.3790,
		[]string{"fr", "en", "vi"}, "Dermatologue.", 120, []demoType{
			{"Consultation dermatologique", "in_person", 20, 5000, weekdays, office},
			{"Avis dermatologique en vidéo", "video", 15, 3000, []int{2, 4}, [][2]string{{"12:30", "14:00"}}},
		}},
	{"dr.dubois@demo.test", "Dr Claire Dubois", "psychiatry", "10104567890", "18 cours de l'Intendance", "Bordeaux", "33000", 44.8420, -0.5760,
		[]string{"fr", "es"}, "Psychiatre, consultations en vidéo uniquement.", 240, []demoType{
			{"Consultation en vidéo", "video", 45, 6000, weekdays, [][2]string{{"10:00", "13:00"}, {"15:00", "19:00"}}},
		}},
	{"dr.benali@demo.test", "Dr Karim Benali", "cardiology", "10105678901", "3 rue Nationale", "Lille", "59000", 50.6360, 3.0590,
		[]string{"fr", "ar", "en"}, "Cardiologue.", 120, []demoType{
			{"Consultation de cardiologie", "in_person", 30, 5000, weekdays, office},
		}},
	{"dr.moreau@demo.test", "Dr Anne Moreau", "general_practice", "10106789012", "25 rue des Martyrs", "Paris", "75009", 48.8790, 2.3400,
		[]string{"fr", "de"}, "Médecin généraliste.", 120, []demoType{
			{"Consultation", "in_person", 15, 2650, weekdays, office},
			{"Téléconsultation", "video", 15, 2500, []int{1, 3, 5}, [][2]string{{"18:00", "20:00"}}},
		}},
}

// demoAccount returns the id of the account with email, creating it when
// create is set.
func demoAccount(ctx context.Context, q store.Q, email, name, role, passwordHash string, create bool) (string, error) {
	a, _, err := store.AccountByEmail(ctx, q, email)
	if err == nil {
		return a.ID, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if !create {
		return "", fmt.Errorf("booking: demo account %s does not exist; create the demo accounts first", email)
	}
	a, err = store.InsertAccount(ctx, q, email, name, role, passwordHash, "fr")
	if err != nil {
		return "", err
	}
	return a.ID, nil
}

// LoadDemo creates the demo directory: practitioner profiles (Dr Martin
// and five more in Paris, Lyon, Marseille, Bordeaux and Lille, whose
// accounts it creates with passwordHash), their consultation types and
// opening hours, a pharmacy for the pharmacist, and the demo patients'
// profiles. The fixed demo accounts must exist. Running it again changes
// nothing that is already there.
func LoadDemo(ctx context.Context, db *store.DB, v *vault.Vault, now time.Time, passwordHash string) error {
	return db.Tx(ctx, func(tx pgx.Tx) error {
		for _, d := range demoDoctors {
			id, err := demoAccount(ctx, tx, d.email, d.name, "practitioner", passwordHash, d.email != DemoDoctorEmail)
			if err != nil {
				return err
			}
			lat, lon := d.lat, d.lon
			p := DefaultPractitioner(id)
			p.Specialty, p.RPPS, p.Address, p.City, p.Postcode = d.specialty, d.rpps, d.address, d.city, d.postcode
			p.Latitude, p.Longitude, p.Languages, p.Presentation = &lat, &lon, d.languages, d.presentation
			p.MinNoticeMinutes, p.Phone = d.noticeMinutes, "+33100000000"
			if err := store.UpsertPractitioner(ctx, tx, p); err != nil {
				return err
			}
			if err := store.LockPractitioner(ctx, tx, id); err != nil {
				return err
			}
			existing, err := store.ConsultationTypes(ctx, tx, id, true)
			if err != nil {
				return err
			}
			var hours []store.OpeningHours
			for _, t := range d.types {
				var ct store.ConsultationType
				for _, e := range existing {
					if e.Name == t.name {
						ct = e
					}
				}
				if ct.ID == "" {
					if ct, err = store.SaveConsultationType(ctx, tx, store.ConsultationType{PractitionerID: id, Name: t.name, Mode: t.mode,
						DurationMinutes: t.duration, FeeCents: t.fee, Currency: "EUR", NewPatients: true, Active: true}); err != nil {
						return err
					}
				}
				for _, day := range t.days {
					for _, r := range t.ranges {
						hours = append(hours, store.OpeningHours{ConsultationTypeID: ct.ID, Weekday: day, Start: r[0], End: r[1]})
					}
				}
			}
			if err := store.ReplaceOpeningHours(ctx, tx, id, hours); err != nil {
				return err
			}
			if err := refreshNextFree(ctx, tx, id, now); err != nil {
				return err
			}
		}

		pharmacistID, err := demoAccount(ctx, tx, DemoPharmacistEmail, "", "pharmacist", "", false)
		if err != nil {
			return err
		}
		if _, err := store.PharmacyOfPharmacist(ctx, tx, pharmacistID); errors.Is(err, store.ErrNotFound) {
			lat, lon := 48.8630, 2.3770
			ph, err := store.SavePharmacy(ctx, tx, store.Pharmacy{Name: "Pharmacie du Marché", Address: "8 rue de la Folie-Méricourt",
				City: "Paris", Postcode: "75011", Latitude: &lat, Longitude: &lon, Phone: "+33100000001"})
			if err != nil {
				return err
			}
			if err := store.SetPharmacist(ctx, tx, pharmacistID, ph.ID); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}

		type demoProfile struct {
			relationship, family, given, sex, birth string
			weight, height                          float64
		}
		patients := []struct {
			email    string
			profiles []demoProfile
		}{
			{DemoPatientEmail, []demoProfile{{"self", "Durand", "Camille", "F", "1988-04-12", 62, 168}, {"child", "Durand", "Léa", "F", "2018-09-03", 22, 118}}},
			{DemoPatient2Email, []demoProfile{{"self", "Bernard", "Louis", "M", "1975-11-30", 0, 0}}},
		}
		for _, pt := range patients {
			id, err := demoAccount(ctx, tx, pt.email, "", "patient", "", false)
			if err != nil {
				return err
			}
			have, err := store.ProfilesOf(ctx, tx, id)
			if err != nil {
				return err
			}
			if len(have) > 0 {
				continue
			}
			for _, dp := range pt.profiles {
				bd, _ := time.Parse("2006-01-02", dp.birth)
				sp := store.PatientProfile{ID: store.NewUUID(), AccountID: id, Relationship: dp.relationship,
					FamilyName: dp.family, GivenNames: dp.given, Sex: dp.sex, BirthDate: bd}
				if dp.weight > 0 && v != nil {
					w, h := dp.weight, dp.height
					b, _ := json.Marshal(measurements{WeightKg: &w, HeightCm: &h})
					keyID, err := v.AccountKey(ctx, tx, id)
					if err != nil {
						return err
					}
					if sp.Measurements, err = v.Seal(ctx, tx, keyID, measurementsAAD(sp.ID), b); err != nil {
						return err
					}
				}
				if _, err := store.SavePatientProfile(ctx, tx, sp); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// DemoConsultNow gives the demo patient a confirmed, free video
// appointment with Dr Martin starting at the next quarter hour after now
// (ignoring notice and opening hours), so that a video consultation can
// be tried at once. Called again within the same quarter hour it returns
// the same appointment.
func DemoConsultNow(ctx context.Context, db *store.DB, now time.Time) (store.Appointment, error) {
	start := now.UTC().Truncate(15 * time.Minute).Add(15 * time.Minute)
	var out store.Appointment
	err := db.Tx(ctx, func(tx pgx.Tx) error {
		doc, _, err := store.AccountByEmail(ctx, tx, DemoDoctorEmail)
		if err != nil {
			return fmt.Errorf("booking: demo doctor: %w", err)
		}
		pat, _, err := store.AccountByEmail(ctx, tx, DemoPatientEmail)
		if err != nil {
			return fmt.Errorf("booking: demo patient: %w", err)
		}
		if err := store.LockPractitioner(ctx, tx, doc.ID); err != nil {
			return err
		}
		list, err := store.AppointmentsOfPatient(ctx, tx, pat.ID, start, start.Add(time.Second))
		if err != nil {
			return err
		}
		for _, a := range list {
			if a.PractitionerID == doc.ID && a.Mode == "video" && a.Status != store.StatusCancelled && a.Status != store.StatusExpired {
				out = a
				return nil
			}
		}
		types, err := store.ConsultationTypes(ctx, tx, doc.ID, false)
		if err != nil {
			return err
		}
		var ct store.ConsultationType
		for _, t := range types {
			if t.Mode == "video" && t.FeeCents == 0 {
				ct = t
				break
			}
		}
		if ct.ID == "" {
			return fmt.Errorf("booking: Dr Martin has no free video consultation; run LoadDemo first")
		}
		a := store.Appointment{ID: store.NewUUID(), PractitionerID: doc.ID, ConsultationTypeID: ct.ID, PatientID: pat.ID,
			Mode: "video", StartsAt: start, EndsAt: start.Add(time.Duration(ct.DurationMinutes) * time.Minute),
			Status: store.StatusConfirmed, Currency: ct.Currency}
		if out, err = store.InsertAppointment(ctx, tx, a, ""); err != nil {
			return err
		}
		if err := store.Enqueue(ctx, tx, store.OutboxEvent{Kind: "appointment.booked", RecipientID: pat.ID, AppointmentID: out.ID,
			Data: map[string]string{"audience": rolePatient, "status": out.Status}}); err != nil {
			return err
		}
		return refreshNextFree(ctx, tx, doc.ID, now)
	})
	return out, err
}
