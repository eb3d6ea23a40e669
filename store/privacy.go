package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErasedName is the name an erased account keeps.
const ErasedName = "Compte supprimé"

// AccountForErasure locks an account row for its erasure and returns its
// data key id ("" when it never had one). An erased or unknown account is
// ErrNotFound.
func AccountForErasure(ctx context.Context, q Q, accountID string) (string, error) {
	if !IsUUID(accountID) {
		return "", ErrNotFound.With("account not found")
	}
	var key *string
	err := q.QueryRow(ctx, `SELECT data_key_id::text FROM accounts WHERE id = $1 AND erased_at IS NULL FOR UPDATE`, accountID).Scan(&key)
	if err != nil {
		return "", notFound(err, "account")
	}
	if key == nil {
		return "", nil
	}
	return *key, nil
}

// AllAppointmentsOfPatient returns every appointment an account booked
// (for itself or a relative), oldest first.
func AllAppointmentsOfPatient(ctx context.Context, q Q, patientID string) ([]Appointment, error) {
	rows, err := q.Query(ctx, `SELECT `+appointmentColumns+` FROM appointments WHERE patient_id = $1 ORDER BY starts_at, id`, patientID)
	if err != nil {
		return nil, fmt.Errorf("store: appointments of patient: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Appointment])
}

// PaymentsOfPatient returns every payment an account made, oldest first.
func PaymentsOfPatient(ctx context.Context, q Q, patientID string) ([]Payment, error) {
	rows, err := q.Query(ctx, `SELECT `+paymentColumns+` FROM payments WHERE patient_id = $1 ORDER BY created_at, appointment_id`, patientID)
	if err != nil {
		return nil, fmt.Errorf("store: payments of patient: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Payment])
}

// AllPrescriptionsOfPatient returns every prescription written for an
// account, drafts included, oldest first.
func AllPrescriptionsOfPatient(ctx context.Context, q Q, patientID string) ([]Prescription, error) {
	rows, err := q.Query(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions p WHERE p.patient_id = $1
		ORDER BY p.created_at, p.id`, patientID)
	if err != nil {
		return nil, fmt.Errorf("store: prescriptions of patient: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Prescription])
}

// SessionsOfAccount returns every session of an account, newest first,
// revoked and expired ones included.
func SessionsOfAccount(ctx context.Context, q Q, accountID string) ([]Session, error) {
	rows, err := q.Query(ctx, `SELECT token_hash, account_id::text, created_at, last_seen_at, expires_at, revoked_at,
		mfa_at, reauth_at, ip, user_agent FROM sessions WHERE account_id = $1 ORDER BY created_at DESC`, accountID)
	if err != nil {
		return nil, fmt.Errorf("store: sessions of account: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Session])
}

// UpcomingToCancel is an upcoming appointment of a patient with the
// practitioner's online cancellation cut-off.
type UpcomingToCancel struct {
	ID       string    `db:"id"`
	Status   string    `db:"status"`
	StartsAt time.Time `db:"starts_at"`
	Cutoff   int       `db:"cancel_cutoff_minutes"`
}

// UpcomingAppointmentsOfPatient returns the appointments of an account
// that are still to come after now (held for payment or confirmed).
func UpcomingAppointmentsOfPatient(ctx context.Context, q Q, patientID string, now time.Time) ([]UpcomingToCancel, error) {
	rows, err := q.Query(ctx, `SELECT a.id::text, a.status, a.starts_at, p.cancel_cutoff_minutes
		FROM appointments a JOIN practitioners p ON p.account_id = a.practitioner_id
		WHERE a.patient_id = $1 AND a.status = ANY($2) AND a.starts_at > $3 ORDER BY a.starts_at`, patientID, UpcomingStatuses, now)
	if err != nil {
		return nil, fmt.Errorf("store: upcoming appointments: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[UpcomingToCancel])
}

// LegalHoldRecord is a document kept for the law after an erasure, sealed
// to the data-protection officer's offline key.
type LegalHoldRecord struct {
	SubjectID string
	Kind      string // prescription, dispense, receipt, identity
	RefID     string
	Sealed    []byte
}

// SaveLegalHold stores (or replaces) a legal-hold record.
func SaveLegalHold(ctx context.Context, q Q, r LegalHoldRecord) error {
	_, err := q.Exec(ctx, `INSERT INTO legal_hold_records (subject_id, kind, ref_id, sealed) VALUES ($1, $2, $3, $4)
		ON CONFLICT (subject_id, kind, ref_id) DO UPDATE SET sealed = EXCLUDED.sealed, created_at = now()`,
		r.SubjectID, r.Kind, r.RefID, r.Sealed)
	if err != nil {
		return fmt.Errorf("store: save legal hold: %w", err)
	}
	return nil
}

// LegalHoldRecords returns the legal-hold records of an erased account.
func LegalHoldRecords(ctx context.Context, q Q, subjectID string) ([]LegalHoldRecord, error) {
	rows, err := q.Query(ctx, `SELECT subject_id::text, kind, ref_id, sealed FROM legal_hold_records
		WHERE subject_id = $1 ORDER BY kind, ref_id`, subjectID)
	if err != nil {
		return nil, fmt.Errorf("store: legal hold records: %w", err)
	}
	var out []LegalHoldRecord
	for rows.Next() {
		var r LegalHoldRecord
		if err := rows.Scan(&r.SubjectID, &r.Kind, &r.RefID, &r.Sealed); err != nil {
			return nil, fmt.Errorf("store: legal hold records: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// EraseAccountData deletes or anonymises everything an account holds,
// except the records the law requires to be kept (signed prescriptions,
// dispenses, payments, the audit log), whose sealed columns become
// unreadable once the account's data key is destroyed. Run it in the
// erasure's transaction, after AccountForErasure.
func EraseAccountData(ctx context.Context, q Q, accountID string, at time.Time) error {
	steps := []struct {
		what, sql string
	}{
		// Chat of the patient's consultations, both sides: it is about them.
		{"chat", `DELETE FROM consult_messages WHERE appointment_id IN (SELECT id FROM appointments WHERE patient_id = $1)`},
		{"reasons", `UPDATE appointments SET reason = NULL, cancel_reason = NULL, profile_id = NULL, updated_at = now() WHERE patient_id = $1`},
		// Drafts never signed are not records: they are cancelled (their
		// history is append-only, so the rows stay, unreadable once the
		// key is destroyed).
		{"draft prescriptions history", `INSERT INTO prescription_events (prescription_id, action, from_status, to_status)
			SELECT id, 'cancel', 'draft', 'cancelled' FROM prescriptions WHERE patient_id = $1 AND status = 'draft'`},
		{"draft prescriptions", `UPDATE prescriptions SET status = 'cancelled', cancelled_at = now() WHERE patient_id = $1 AND status = 'draft'`},
		// Profiles a signed prescription names cannot be deleted (the
		// prescription is immutable): they keep no personal data.
		{"kept profiles", `UPDATE patient_profiles SET family_name = '` + ErasedName + `', given_names = '-', sex = 'X',
			birth_date = '1900-01-02', measurements = NULL, phone = ''
			WHERE account_id = $1 AND id IN (SELECT profile_id FROM prescriptions WHERE profile_id IS NOT NULL)`},
		{"profiles", `DELETE FROM patient_profiles WHERE account_id = $1
			AND id NOT IN (SELECT profile_id FROM prescriptions WHERE profile_id IS NOT NULL)`},
		{"waiting list", `DELETE FROM waitlist_entries WHERE patient_id = $1`},
		{"waiting list offers", `DELETE FROM waitlist_offers WHERE patient_id = $1`},
		{"blocks", `DELETE FROM patient_blocks WHERE patient_id = $1`},
		{"notifications", `DELETE FROM outbox_events WHERE recipient_id = $1`},
		{"notification preferences", `DELETE FROM notification_prefs WHERE account_id = $1`},
		{"payment customer", `DELETE FROM payment_customers WHERE account_id = $1`},
		{"sessions", `DELETE FROM sessions WHERE account_id = $1`},
		{"recovery codes", `DELETE FROM recovery_codes WHERE account_id = $1`},
		{"password resets", `DELETE FROM password_resets WHERE account_id = $1`},
		{"api tokens", `DELETE FROM api_tokens WHERE owner_id = $1`},
	}
	for _, s := range steps {
		if _, err := q.Exec(ctx, s.sql, accountID); err != nil {
			return fmt.Errorf("store: erase %s: %w", s.what, err)
		}
	}
	// The password hash "!erased" is no argon2id hash: no password matches it.
	tag, err := q.Exec(ctx, `UPDATE accounts SET email = 'erased-' || id::text || '@erased.invalid', name = $2,
		phone = '', password_hash = '!erased', totp_secret = NULL, totp_enabled = false, totp_last_step = 0,
		disabled_at = coalesce(disabled_at, $3), erased_at = $3
		WHERE id = $1 AND erased_at IS NULL`, accountID, ErasedName, at)
	if err != nil {
		return fmt.Errorf("store: erase account: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return ErrNotFound.With("account not found")
	}
	return nil
}
