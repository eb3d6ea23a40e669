package booking

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/store"
	"teleconsult/vault"
)

// PatientProfile is a profile as its account holder edits it, with the
// sealed measurements opened.
type PatientProfile struct {
	ID           string   `json:"id"`
	Relationship string   `json:"relationship"`
	FamilyName   string   `json:"family_name"`
	GivenNames   string   `json:"given_names"`
	Sex          string   `json:"sex"`
	BirthDate    string   `json:"birth_date"` // YYYY-MM-DD
	WeightKg     *float64 `json:"weight_kg,omitempty"`
	HeightCm     *float64 `json:"height_cm,omitempty"`
	Phone        string   `json:"phone"`
}

type measurements struct {
	WeightKg *float64 `json:"weight_kg,omitempty"`
	HeightCm *float64 `json:"height_cm,omitempty"`
}

func measurementsAAD(id string) vault.AAD {
	return vault.AAD{Table: "patient_profiles", Column: "measurements", RowID: id}
}

// checkPatientProfile validates p and returns its birth date.
func checkPatientProfile(p *PatientProfile, now time.Time) (time.Time, error) {
	p.FamilyName, p.GivenNames = strings.TrimSpace(p.FamilyName), strings.TrimSpace(p.GivenNames)
	if p.FamilyName == "" || p.GivenNames == "" || len(p.FamilyName) > 100 || len(p.GivenNames) > 200 {
		return time.Time{}, ErrInvalid.With("family name and given names are required")
	}
	if p.Sex != "F" && p.Sex != "M" && p.Sex != "X" {
		return time.Time{}, ErrInvalid.With("sex must be F, M or X")
	}
	bd, err := time.Parse("2006-01-02", p.BirthDate)
	if err != nil || bd.After(now) || bd.Year() < 1901 {
		return time.Time{}, ErrInvalid.With("birth_date must be a past date, YYYY-MM-DD")
	}
	if p.WeightKg != nil && (*p.WeightKg <= 0 || *p.WeightKg > 500) {
		return time.Time{}, ErrInvalid.With("weight_kg must be between 0 and 500")
	}
	if p.HeightCm != nil && (*p.HeightCm <= 0 || *p.HeightCm > 300) {
		return time.Time{}, ErrInvalid.With("height_cm must be between 0 and 300")
	}
	if len(p.Phone) > 30 {
		return time.Time{}, ErrInvalid.With("the phone number is too long")
	}
	return bd, nil
}

// SaveProfile creates or updates a profile of the calling patient: their
// own (relationship "self", one per account) or a relative's ("child",
// "parent"). An empty ID creates.
func (s *Service) SavePatientProfile(ctx context.Context, who audit.Actor, p PatientProfile) (PatientProfile, error) {
	if who.Role != rolePatient {
		return p, ErrPatientsOnly
	}
	if p.Relationship == "" {
		p.Relationship = "self"
	}
	if p.Relationship != "self" && p.Relationship != "child" && p.Relationship != "parent" {
		return p, ErrInvalid.With("relationship must be self, child or parent")
	}
	bd, err := checkPatientProfile(&p, s.now())
	if err != nil {
		return p, err
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if p.ID == "" && p.Relationship == "self" {
			if cur, err := store.SelfProfile(ctx, tx, who.ID); err == nil {
				p.ID = cur.ID
			}
		}
		if p.ID == "" {
			p.ID = store.NewUUID()
		} else if _, err := store.ProfileOf(ctx, tx, who.ID, p.ID); err != nil {
			return err
		}
		var sealed []byte
		if p.WeightKg != nil || p.HeightCm != nil {
			b, _ := json.Marshal(measurements{WeightKg: p.WeightKg, HeightCm: p.HeightCm})
			keyID, err := s.vault.AccountKey(ctx, tx, who.ID)
			if err != nil {
				return err
			}
			if sealed, err = s.vault.Seal(ctx, tx, keyID, measurementsAAD(p.ID), b); err != nil {
				return err
			}
		}
		if _, err := store.SavePatientProfile(ctx, tx, store.PatientProfile{ID: p.ID, AccountID: who.ID, Relationship: p.Relationship,
			FamilyName: p.FamilyName, GivenNames: p.GivenNames, Sex: p.Sex, BirthDate: bd, Measurements: sealed, Phone: p.Phone}); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "write", ObjectType: "patient_profile",
			ObjectID: p.ID, SubjectID: who.ID, Outcome: audit.OK})
	})
	return p, err
}

// OpenProfile opens a stored profile's measurements (q should be the
// transaction that audits the read).
func (s *Service) OpenProfile(ctx context.Context, q store.Q, sp store.PatientProfile) (PatientProfile, error) {
	p := PatientProfile{ID: sp.ID, Relationship: sp.Relationship, FamilyName: sp.FamilyName, GivenNames: sp.GivenNames,
		Sex: sp.Sex, BirthDate: sp.BirthDate.Format("2006-01-02"), Phone: sp.Phone}
	if sp.Measurements != nil {
		b, err := s.vault.Open(ctx, q, measurementsAAD(sp.ID), sp.Measurements)
		if err != nil {
			return p, err
		}
		var m measurements
		if err := json.Unmarshal(b, &m); err != nil {
			return p, err
		}
		p.WeightKg, p.HeightCm = m.WeightKg, m.HeightCm
	}
	return p, nil
}

// PatientProfiles returns the calling patient's profiles (their own
// first, then relatives); the read is audited.
func (s *Service) PatientProfiles(ctx context.Context, who audit.Actor) ([]PatientProfile, error) {
	if who.Role != rolePatient {
		return nil, ErrPatientsOnly
	}
	out := []PatientProfile{}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		list, err := store.ProfilesOf(ctx, tx, who.ID)
		if err != nil {
			return err
		}
		for _, sp := range list {
			p, err := s.OpenProfile(ctx, tx, sp)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "read", ObjectType: "patient_profile",
			SubjectID: who.ID, Outcome: audit.OK})
	})
	return out, err
}

// DeleteRelative removes a relative's profile of the calling patient.
func (s *Service) DeleteRelative(ctx context.Context, who audit.Actor, id string) error {
	return s.tx(ctx, func(tx pgx.Tx) error { return store.DeleteRelative(ctx, tx, who.ID, id) })
}
