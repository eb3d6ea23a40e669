package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
)

// ErrAlreadyWaiting is a second entry in one practitioner's waiting list.
var ErrAlreadyWaiting = problem.New(problem.Conflict, "already_waiting", "you are already on this practitioner's waiting list")

// WaitlistEntry is a patient waiting for an earlier slot.
type WaitlistEntry struct {
	ID                 string     `db:"id" json:"id"`
	PractitionerID     string     `db:"practitioner_id" json:"practitioner_id"`
	PatientID          string     `db:"patient_id" json:"patient_id"`
	ConsultationTypeID *string    `db:"consultation_type_id" json:"consultation_type_id"`
	BeforeAt           *time.Time `db:"before_at" json:"before"`
	Status             string     `db:"status" json:"status"`
	CreatedAt          time.Time  `db:"created_at" json:"created_at"`
}

const waitlistColumns = `id, practitioner_id, patient_id, consultation_type_id, before_at, status, created_at`

// JoinWaitlist puts a patient at the end of a practitioner's waiting list.
func JoinWaitlist(ctx context.Context, q Q, e WaitlistEntry) (WaitlistEntry, error) {
	rows, err := q.Query(ctx, `INSERT INTO waitlist_entries (practitioner_id, patient_id, consultation_type_id, before_at)
		VALUES ($1, $2, $3, $4) RETURNING `+waitlistColumns, e.PractitionerID, e.PatientID, e.ConsultationTypeID, e.BeforeAt)
	if err != nil {
		return WaitlistEntry{}, fmt.Errorf("store: join waitlist: %w", err)
	}
	got, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[WaitlistEntry])
	if err != nil {
		if ConstraintViolated(err, "waitlist_entries_one_key") {
			return WaitlistEntry{}, ErrAlreadyWaiting.Wrap(err)
		}
		return WaitlistEntry{}, fmt.Errorf("store: join waitlist: %w", err)
	}
	return got, nil
}

// LeaveWaitlist takes a patient's entry off the list.
func LeaveWaitlist(ctx context.Context, q Q, patientID, entryID string) error {
	if !ValidID(entryID) {
		return ErrNotFound.With("waiting list entry not found")
	}
	tag, err := q.Exec(ctx, `UPDATE waitlist_entries SET status = 'left' WHERE id = $1 AND patient_id = $2 AND status = 'waiting'`, entryID, patientID)
	if err != nil {
		return fmt.Errorf("store: leave waitlist: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound.With("waiting list entry not found")
	}
	_, err = q.Exec(ctx, `UPDATE waitlist_offers SET status = 'void' WHERE entry_id = $1 AND status = 'offered'`, entryID)
	return err
}

// WaitlistOfPatient returns a patient's current entries.
func WaitlistOfPatient(ctx context.Context, q Q, patientID string) ([]WaitlistEntry, error) {
	rows, err := q.Query(ctx, `SELECT `+waitlistColumns+` FROM waitlist_entries WHERE patient_id = $1 AND status = 'waiting' ORDER BY created_at`, patientID)
	if err != nil {
		return nil, fmt.Errorf("store: waitlist of patient: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[WaitlistEntry])
}

// WaitlistOffer is a freed slot offered to one waiting patient until ExpiresAt.
type WaitlistOffer struct {
	ID                 string    `db:"id" json:"id"`
	EntryID            string    `db:"entry_id" json:"entry_id"`
	PractitionerID     string    `db:"practitioner_id" json:"practitioner_id"`
	PatientID          string    `db:"patient_id" json:"patient_id"`
	ConsultationTypeID string    `db:"consultation_type_id" json:"consultation_type_id"`
	StartsAt           time.Time `db:"starts_at" json:"start"`
	EndsAt             time.Time `db:"ends_at" json:"end"`
	ExpiresAt          time.Time `db:"expires_at" json:"expires_at"`
	Status             string    `db:"status" json:"status"`
}

const offerColumns = `id, entry_id, practitioner_id, patient_id, consultation_type_id, starts_at, ends_at, expires_at, status`

// NextInLine returns the first waiting entry of a practitioner that wants
// a slot of this consultation type starting at start, has not been
// offered this slot before and holds no other standing offer.
func NextInLine(ctx context.Context, q Q, practitionerID, typeID string, start time.Time) (WaitlistEntry, error) {
	rows, err := q.Query(ctx, `SELECT `+waitlistColumns+` FROM waitlist_entries e
		WHERE e.practitioner_id = $1 AND e.status = 'waiting'
		  AND (e.consultation_type_id IS NULL OR e.consultation_type_id = $2)
		  AND (e.before_at IS NULL OR e.before_at > $3)
		  AND NOT EXISTS (SELECT 1 FROM waitlist_offers o WHERE o.entry_id = e.id
			AND (o.status = 'offered' OR o.starts_at = $3))
		ORDER BY e.created_at, e.id LIMIT 1`, practitionerID, typeID, start)
	if err != nil {
		return WaitlistEntry{}, fmt.Errorf("store: next in line: %w", err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[WaitlistEntry])
	if err != nil {
		return WaitlistEntry{}, notFound(err, "waiting patient")
	}
	return e, nil
}

// InsertOffer records a standing offer. A slot already under offer is
// ErrWrongStatus.
func InsertOffer(ctx context.Context, q Q, o WaitlistOffer) (WaitlistOffer, error) {
	rows, err := q.Query(ctx, `INSERT INTO waitlist_offers (entry_id, practitioner_id, patient_id, consultation_type_id, starts_at, ends_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+offerColumns,
		o.EntryID, o.PractitionerID, o.PatientID, o.ConsultationTypeID, o.StartsAt, o.EndsAt, o.ExpiresAt)
	if err != nil {
		return WaitlistOffer{}, fmt.Errorf("store: insert offer: %w", err)
	}
	got, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[WaitlistOffer])
	if err != nil {
		if ConstraintViolated(err, "waitlist_offers_one_standing") {
			return WaitlistOffer{}, ErrWrongStatus.With("this slot is already offered").Wrap(err)
		}
		return WaitlistOffer{}, fmt.Errorf("store: insert offer: %w", err)
	}
	return got, nil
}

// StandingOffers returns the offers of a practitioner still standing at
// now that overlap [from, to).
func StandingOffers(ctx context.Context, q Q, practitionerID string, from, to, now time.Time) ([]WaitlistOffer, error) {
	rows, err := q.Query(ctx, `SELECT `+offerColumns+` FROM waitlist_offers
		WHERE practitioner_id = $1 AND status = 'offered' AND expires_at > $4 AND starts_at < $3 AND ends_at > $2
		ORDER BY starts_at`, practitionerID, from, to, now)
	if err != nil {
		return nil, fmt.Errorf("store: standing offers: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[WaitlistOffer])
}

// OffersOfPatient returns a patient's offers still standing at now.
func OffersOfPatient(ctx context.Context, q Q, patientID string, now time.Time) ([]WaitlistOffer, error) {
	rows, err := q.Query(ctx, `SELECT `+offerColumns+` FROM waitlist_offers
		WHERE patient_id = $1 AND status = 'offered' AND expires_at > $2 ORDER BY starts_at`, patientID, now)
	if err != nil {
		return nil, fmt.Errorf("store: offers of patient: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[WaitlistOffer])
}

// TakeOffer marks an offer taken and its entry booked.
func TakeOffer(ctx context.Context, q Q, offerID string) error {
	_, err := q.Exec(ctx, `WITH o AS (UPDATE waitlist_offers SET status = 'taken' WHERE id = $1 AND status = 'offered' RETURNING entry_id)
		UPDATE waitlist_entries SET status = 'booked' WHERE id IN (SELECT entry_id FROM o)`, offerID)
	if err != nil {
		return fmt.Errorf("store: take offer: %w", err)
	}
	return nil
}

// ExpireOffers marks the offers that lapsed before now as expired and
// returns them (one practitioner's when practitionerID is not empty).
func ExpireOffers(ctx context.Context, q Q, practitionerID string, now time.Time) ([]WaitlistOffer, error) {
	rows, err := q.Query(ctx, `UPDATE waitlist_offers SET status = 'expired'
		WHERE status = 'offered' AND expires_at <= $1 AND ($2 = '' OR practitioner_id = nullif($2, '')::uuid)
		RETURNING `+offerColumns, now, practitionerID)
	if err != nil {
		return nil, fmt.Errorf("store: expire offers: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[WaitlistOffer])
}

// VoidOffersOverlapping voids standing offers of a practitioner that
// overlap [from, to): the slot was taken by its offeree or is gone.
func VoidOffersOverlapping(ctx context.Context, q Q, practitionerID string, from, to time.Time) error {
	_, err := q.Exec(ctx, `UPDATE waitlist_offers SET status = 'void'
		WHERE practitioner_id = $1 AND status = 'offered' AND starts_at < $3 AND ends_at > $2`, practitionerID, from, to)
	if err != nil {
		return fmt.Errorf("store: void offers: %w", err)
	}
	return nil
}

// PractitionersWithLapsed returns the practitioners that have a payment
// hold or a waiting-list offer lapsed before now.
func PractitionersWithLapsed(ctx context.Context, q Q, now time.Time) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT practitioner_id::text FROM appointments WHERE status = 'pending_payment' AND hold_expires_at < $1
		UNION SELECT practitioner_id::text FROM waitlist_offers WHERE status = 'offered' AND expires_at <= $1`, now)
	if err != nil {
		return nil, fmt.Errorf("store: practitioners with lapsed holds: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
