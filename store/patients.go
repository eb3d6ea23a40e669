package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
)

// PatientProfile is a person a patient account books for: the account
// holder ('self') or a relative ('child', 'parent'). Measurements (weight
// and height) are health data, sealed with the account's vault key under
// vault.AAD{Table: "patient_profiles", Column: "measurements", RowID: ID}.
type PatientProfile struct {
	ID           string    `db:"id" json:"id"`
	AccountID    string    `db:"account_id" json:"account_id"`
	Relationship string    `db:"relationship" json:"relationship"`
	FamilyName   string    `db:"family_name" json:"family_name"`
	GivenNames   string    `db:"given_names" json:"given_names"`
	Sex          string    `db:"sex" json:"sex"`
	BirthDate    time.Time `db:"birth_date" json:"birth_date"`
	Measurements []byte    `db:"measurements" json:"-"`
	Phone        string    `db:"phone" json:"phone"`
}

const profileColumns = `id, account_id, relationship, family_name, given_names, sex, birth_date, measurements, phone`

// SavePatientProfile inserts p (p.ID chosen by the caller with NewUUID)
// or, when a profile with that id exists for the same account, updates it.
// An account's 'self' profile is unique.
func SavePatientProfile(ctx context.Context, q Q, p PatientProfile) (PatientProfile, error) {
	rows, err := q.Query(ctx, `INSERT INTO patient_profiles (id, account_id, relationship, family_name, given_names, sex, birth_date, measurements, phone)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (id) DO UPDATE SET family_name = $4, given_names = $5, sex = $6, birth_date = $7,
			measurements = $8, phone = $9
			WHERE patient_profiles.account_id = $2 AND patient_profiles.relationship = $3
		RETURNING `+profileColumns,
		p.ID, p.AccountID, p.Relationship, p.FamilyName, p.GivenNames, p.Sex, p.BirthDate, p.Measurements, p.Phone)
	if err != nil {
		return PatientProfile{}, fmt.Errorf("store: save patient profile: %w", err)
	}
	got, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[PatientProfile])
	if err != nil {
		if UniqueViolation(err) {
			return PatientProfile{}, ErrConflictProfile
		}
		return PatientProfile{}, notFound(err, "profile")
	}
	return got, nil
}

// ErrConflictProfile is a second 'self' profile for one account.
var ErrConflictProfile = problem.New(problem.Conflict, "profile_exists", "this account already has its own profile")

// SelfProfile returns the account holder's own profile.
func SelfProfile(ctx context.Context, q Q, accountID string) (PatientProfile, error) {
	rows, err := q.Query(ctx, `SELECT `+profileColumns+` FROM patient_profiles WHERE account_id = $1 AND relationship = 'self'`, accountID)
	if err != nil {
		return PatientProfile{}, fmt.Errorf("store: self profile: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[PatientProfile])
	if err != nil {
		return PatientProfile{}, notFound(err, "profile")
	}
	return p, nil
}

// ProfileOf returns profile id if it belongs to accountID, else ErrNotFound.
func ProfileOf(ctx context.Context, q Q, accountID, id string) (PatientProfile, error) {
	if !ValidID(id) {
		return PatientProfile{}, ErrNotFound.With("profile not found")
	}
	rows, err := q.Query(ctx, `SELECT `+profileColumns+` FROM patient_profiles WHERE id = $1 AND account_id = $2`, id, accountID)
	if err != nil {
		return PatientProfile{}, fmt.Errorf("store: profile: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[PatientProfile])
	if err != nil {
		return PatientProfile{}, notFound(err, "profile")
	}
	return p, nil
}

// ProfileByID returns a profile whoever owns it (for the practitioner of
// an appointment, and for prescriptions).
func ProfileByID(ctx context.Context, q Q, id string) (PatientProfile, error) {
	if !ValidID(id) {
		return PatientProfile{}, ErrNotFound.With("profile not found")
	}
	rows, err := q.Query(ctx, `SELECT `+profileColumns+` FROM patient_profiles WHERE id = $1`, id)
	if err != nil {
		return PatientProfile{}, fmt.Errorf("store: profile: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[PatientProfile])
	if err != nil {
		return PatientProfile{}, notFound(err, "profile")
	}
	return p, nil
}

// ProfilesOf returns an account's profiles, its own first.
func ProfilesOf(ctx context.Context, q Q, accountID string) ([]PatientProfile, error) {
	rows, err := q.Query(ctx, `SELECT `+profileColumns+` FROM patient_profiles WHERE account_id = $1
		ORDER BY relationship <> 'self', given_names, id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("store: profiles: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[PatientProfile])
}

// DeleteRelative removes a relative's profile from an account. A relative
// with appointments cannot be removed (the foreign key refuses).
func DeleteRelative(ctx context.Context, q Q, accountID, id string) error {
	if !ValidID(id) {
		return ErrNotFound.With("relative not found")
	}
	tag, err := q.Exec(ctx, `DELETE FROM patient_profiles WHERE id = $1 AND account_id = $2 AND relationship <> 'self'`, id, accountID)
	if err != nil {
		return ErrWrongStatus.With("this relative has appointments and cannot be removed").Wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound.With("relative not found")
	}
	return nil
}

// PatientBlock is a practitioner's block state for one patient.
type PatientBlock struct {
	PractitionerID string     `db:"practitioner_id" json:"practitioner_id"`
	PatientID      string     `db:"patient_id" json:"patient_id"`
	Blocked        bool       `db:"blocked" json:"blocked"`
	LiftedAt       *time.Time `db:"lifted_at" json:"lifted_at"`
}

// BlockOf returns the block row of (practitioner, patient); a pair with
// none is an unblocked PatientBlock.
func BlockOf(ctx context.Context, q Q, practitionerID, patientID string) (PatientBlock, error) {
	rows, err := q.Query(ctx, `SELECT practitioner_id, patient_id, blocked, lifted_at FROM patient_blocks
		WHERE practitioner_id = $1 AND patient_id = $2`, practitionerID, patientID)
	if err != nil {
		return PatientBlock{}, fmt.Errorf("store: block: %w", err)
	}
	b, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[PatientBlock])
	if err == pgx.ErrNoRows {
		return PatientBlock{PractitionerID: practitionerID, PatientID: patientID}, nil
	}
	return b, err
}

// SetBlock blocks a patient by hand (blocked true), or lifts every block
// (blocked false): no-shows before now then no longer count.
func SetBlock(ctx context.Context, q Q, practitionerID, patientID string, blocked bool, now time.Time) error {
	var lifted *time.Time
	if !blocked {
		lifted = &now
	}
	_, err := q.Exec(ctx, `INSERT INTO patient_blocks (practitioner_id, patient_id, blocked, lifted_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (practitioner_id, patient_id) DO UPDATE SET blocked = $3,
			lifted_at = coalesce($4, patient_blocks.lifted_at), updated_at = now()`,
		practitionerID, patientID, blocked, lifted)
	if err != nil {
		return fmt.Errorf("store: set block: %w", err)
	}
	return nil
}

// BlocksOf returns a practitioner's block rows.
func BlocksOf(ctx context.Context, q Q, practitionerID string) ([]PatientBlock, error) {
	rows, err := q.Query(ctx, `SELECT practitioner_id, patient_id, blocked, lifted_at FROM patient_blocks
		WHERE practitioner_id = $1 ORDER BY updated_at DESC`, practitionerID)
	if err != nil {
		return nil, fmt.Errorf("store: blocks: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[PatientBlock])
}

// PatientsWithNoShows returns the patients with a no-show with the
// practitioner for an appointment that started after since.
func PatientsWithNoShows(ctx context.Context, q Q, practitionerID string, since time.Time) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT patient_id::text FROM appointments
		WHERE practitioner_id = $1 AND status = 'no_show' AND starts_at > $2`, practitionerID, since)
	if err != nil {
		return nil, fmt.Errorf("store: patients with no-shows: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
