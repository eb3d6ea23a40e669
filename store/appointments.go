package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
)

// Appointment statuses. See migrations/002_booking.sql for their meaning.
const (
	StatusPendingPayment = "pending_payment"
	StatusConfirmed      = "confirmed"
	StatusArrived        = "arrived"
	StatusInProgress     = "in_progress"
	StatusCompleted      = "completed"
	StatusNoShow         = "no_show"
	StatusCancelled      = "cancelled"
	StatusExpired        = "expired"
)

// OccupyingStatuses are the statuses in which an appointment holds its
// time slot (the exclusion constraint appointments_no_overlap).
var OccupyingStatuses = []string{StatusPendingPayment, StatusConfirmed, StatusArrived, StatusInProgress, StatusCompleted, StatusNoShow}

// UpcomingStatuses are the statuses of an appointment that is still to
// happen: it can be cancelled, rescheduled or delayed.
var UpcomingStatuses = []string{StatusPendingPayment, StatusConfirmed}

// Appointment problems.
var (
	// ErrSlotTaken is the exclusion constraint speaking: another active
	// appointment of this practitioner overlaps.
	ErrSlotTaken = problem.New(problem.Conflict, "slot_taken", "this slot has just been taken; please choose another")
	// ErrWrongStatus is a transition that does not apply to the
	// appointment's current status.
	ErrWrongStatus = problem.New(problem.Conflict, "wrong_status", "this appointment cannot change to that status now")
)

// Appointment is a booked (or once booked) consultation. Reason and
// CancelReason are sealed with the patient's vault key; open them with
// vault.AAD{Table: "appointments", Column: "reason"|"cancel_reason", RowID: ID}.
type Appointment struct {
	ID                 string     `db:"id" json:"id"`
	PractitionerID     string     `db:"practitioner_id" json:"practitioner_id"`
	ConsultationTypeID string     `db:"consultation_type_id" json:"consultation_type_id"`
	PatientID          string     `db:"patient_id" json:"patient_id"`
	ProfileID          *string    `db:"profile_id" json:"relative_id,omitempty"`
	Mode               string     `db:"mode" json:"mode"`
	StartsAt           time.Time  `db:"starts_at" json:"start"`
	EndsAt             time.Time  `db:"ends_at" json:"end"`
	Status             string     `db:"status" json:"status"`
	FeeCents           int        `db:"fee_cents" json:"fee_cents"`
	Currency           string     `db:"currency" json:"currency"`
	Reason             []byte     `db:"reason" json:"-"`
	CancelReason       []byte     `db:"cancel_reason" json:"-"`
	CancelledBy        *string    `db:"cancelled_by" json:"cancelled_by,omitempty"`
	HoldExpiresAt      *time.Time `db:"hold_expires_at" json:"hold_expires_at,omitempty"`
	DelayMinutes       int        `db:"delay_minutes" json:"delay_minutes"`
	CreatedAt          time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt          time.Time  `db:"updated_at" json:"updated_at"`
}

const appointmentColumns = `id, practitioner_id, consultation_type_id, patient_id, profile_id, mode,
	starts_at, ends_at, status, fee_cents, currency, reason, cancel_reason, cancelled_by,
	hold_expires_at, delay_minutes, created_at, updated_at`

// InsertAppointment stores a new appointment with the given ID (callers
// choose it with NewUUID so that sealed columns can bind it) and records
// its creation in appointment_events. An overlap with another active
// appointment of the practitioner is ErrSlotTaken.
func InsertAppointment(ctx context.Context, q Q, a Appointment, actorID string) (Appointment, error) {
	rows, err := q.Query(ctx, `INSERT INTO appointments
		(id, practitioner_id, consultation_type_id, patient_id, profile_id, mode, starts_at, ends_at,
		 status, fee_cents, currency, reason, hold_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		RETURNING `+appointmentColumns,
		a.ID, a.PractitionerID, a.ConsultationTypeID, a.PatientID, a.ProfileID, a.Mode, a.StartsAt, a.EndsAt,
		a.Status, a.FeeCents, a.Currency, a.Reason, a.HoldExpiresAt)
	if err != nil {
		return Appointment{}, fmt.Errorf("store: insert appointment: %w", err)
	}
	got, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Appointment])
	if err != nil {
		if ConstraintViolated(err, "appointments_no_overlap") {
			return Appointment{}, ErrSlotTaken.Wrap(err)
		}
		return Appointment{}, fmt.Errorf("store: insert appointment: %w", err)
	}
	if err := RecordAppointmentEvent(ctx, q, got.ID, actorID, "", got.Status, ""); err != nil {
		return Appointment{}, err
	}
	return got, nil
}

// AppointmentByID returns the appointment, whoever it belongs to: callers
// check that the caller may see it.
func AppointmentByID(ctx context.Context, q Q, id string) (Appointment, error) {
	if !ValidID(id) {
		return Appointment{}, ErrNotFound.With("appointment not found")
	}
	rows, err := q.Query(ctx, `SELECT `+appointmentColumns+` FROM appointments WHERE id = $1`, id)
	if err != nil {
		return Appointment{}, fmt.Errorf("store: appointment: %w", err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Appointment])
	if err != nil {
		return Appointment{}, notFound(err, "appointment")
	}
	return a, nil
}

// LockAppointment is AppointmentByID with a row lock held until the end
// of q's transaction.
func LockAppointment(ctx context.Context, q Q, id string) (Appointment, error) {
	if !ValidID(id) {
		return Appointment{}, ErrNotFound.With("appointment not found")
	}
	rows, err := q.Query(ctx, `SELECT `+appointmentColumns+` FROM appointments WHERE id = $1 FOR UPDATE`, id)
	if err != nil {
		return Appointment{}, fmt.Errorf("store: lock appointment: %w", err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Appointment])
	if err != nil {
		return Appointment{}, notFound(err, "appointment")
	}
	return a, nil
}

// AppointmentsOfPatient returns the appointments booked by a patient
// account (for themselves or relatives) starting in [from, to), in time order.
func AppointmentsOfPatient(ctx context.Context, q Q, patientID string, from, to time.Time) ([]Appointment, error) {
	rows, err := q.Query(ctx, `SELECT `+appointmentColumns+` FROM appointments
		WHERE patient_id = $1 AND starts_at >= $2 AND starts_at < $3 ORDER BY starts_at, id`, patientID, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: appointments of patient: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Appointment])
}

// AppointmentsOfPractitioner returns a practitioner's agenda: appointments
// starting in [from, to), cancelled ones included, in time order.
func AppointmentsOfPractitioner(ctx context.Context, q Q, practitionerID string, from, to time.Time) ([]Appointment, error) {
	rows, err := q.Query(ctx, `SELECT `+appointmentColumns+` FROM appointments
		WHERE practitioner_id = $1 AND starts_at >= $2 AND starts_at < $3 ORDER BY starts_at, id`, practitionerID, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: appointments of practitioner: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Appointment])
}

// Interval is a half-open time range [Start, End).
type Interval struct {
	Start time.Time `db:"starts_at"`
	End   time.Time `db:"ends_at"`
}

// BusyIntervals returns the times a practitioner is taken by appointments
// that hold their slot, overlapping [from, to).
func BusyIntervals(ctx context.Context, q Q, practitionerID string, from, to time.Time) ([]Interval, error) {
	rows, err := q.Query(ctx, `SELECT starts_at, ends_at FROM appointments
		WHERE practitioner_id = $1 AND status = ANY($2) AND starts_at < $4 AND ends_at > $3
		ORDER BY starts_at`, practitionerID, OccupyingStatuses, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: busy intervals: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Interval])
}

// TransitionAppointment moves appointment id from one of the statuses in
// from to status to, and records who did it. It is a conditional update:
// if the appointment does not exist it returns ErrNotFound, and if its
// status is not in from, ErrWrongStatus (nothing changes). Leaving
// pending_payment clears the hold. Payments and video use it, inside their
// own transaction when they pass one.
func TransitionAppointment(ctx context.Context, q Q, id string, from []string, to string, actorID, note string) error {
	if !ValidID(id) {
		return ErrNotFound.With("appointment not found")
	}
	var prev string
	err := q.QueryRow(ctx, `WITH old AS (SELECT id, status FROM appointments WHERE id = $1 FOR UPDATE)
		UPDATE appointments a SET status = $3, updated_at = now(),
			hold_expires_at = CASE WHEN $3 = 'pending_payment' THEN a.hold_expires_at END
		FROM old WHERE a.id = old.id AND old.status = ANY($2)
		RETURNING old.status`, id, from, to).Scan(&prev)
	if err == pgx.ErrNoRows {
		var cur string
		if err := q.QueryRow(ctx, `SELECT status FROM appointments WHERE id = $1`, id).Scan(&cur); err != nil {
			return notFound(err, "appointment")
		}
		return ErrWrongStatus.Withf("this appointment is %s; it cannot become %s", cur, to)
	}
	if err != nil {
		if ConstraintViolated(err, "appointments_no_overlap") {
			return ErrSlotTaken.Wrap(err)
		}
		return fmt.Errorf("store: transition appointment: %w", err)
	}
	return RecordAppointmentEvent(ctx, q, id, actorID, prev, to, note)
}

// CancelAppointment moves an upcoming appointment to cancelled, keeping
// who cancelled and the sealed reason. It returns the status it had.
func CancelAppointment(ctx context.Context, q Q, id, actorID string, sealedReason []byte) (string, error) {
	var prev string
	err := q.QueryRow(ctx, `WITH old AS (SELECT id, status FROM appointments WHERE id = $1 FOR UPDATE)
		UPDATE appointments a SET status = 'cancelled', cancelled_by = $3, cancel_reason = $4,
			hold_expires_at = NULL, updated_at = now()
		FROM old WHERE a.id = old.id AND old.status = ANY($2)
		RETURNING old.status`, id, UpcomingStatuses, nullUUID(actorID), sealedReason).Scan(&prev)
	if err == pgx.ErrNoRows {
		return "", ErrWrongStatus.With("this appointment can no longer be cancelled")
	}
	if err != nil {
		return "", fmt.Errorf("store: cancel appointment: %w", err)
	}
	return prev, RecordAppointmentEvent(ctx, q, id, actorID, prev, StatusCancelled, "")
}

// MoveAppointment gives an upcoming appointment a new time in a single
// UPDATE, so the new slot is taken and the old one released atomically.
// An overlap with another appointment is ErrSlotTaken.
func MoveAppointment(ctx context.Context, q Q, id string, start, end time.Time, actorID string) error {
	var status string
	var oldStart time.Time
	err := q.QueryRow(ctx, `WITH old AS (SELECT id, starts_at FROM appointments WHERE id = $1 FOR UPDATE)
		UPDATE appointments a SET starts_at = $3, ends_at = $4, delay_minutes = 0, updated_at = now()
		FROM old WHERE a.id = old.id AND a.status = ANY($2)
		RETURNING a.status, old.starts_at`, id, UpcomingStatuses, start, end).Scan(&status, &oldStart)
	if err == pgx.ErrNoRows {
		return ErrWrongStatus.With("this appointment can no longer be rescheduled")
	}
	if err != nil {
		if ConstraintViolated(err, "appointments_no_overlap") {
			return ErrSlotTaken.Wrap(err)
		}
		return fmt.Errorf("store: move appointment: %w", err)
	}
	return RecordAppointmentEvent(ctx, q, id, actorID, status, status,
		"rescheduled from "+oldStart.UTC().Format(time.RFC3339)+" to "+start.UTC().Format(time.RFC3339))
}

// SetAppointmentDelay records a delay announced by the practitioner.
func SetAppointmentDelay(ctx context.Context, q Q, id string, minutes int, actorID string) error {
	tag, err := q.Exec(ctx, `UPDATE appointments SET delay_minutes = $2, updated_at = now() WHERE id = $1`, id, minutes)
	if err != nil {
		return fmt.Errorf("store: set delay: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound.With("appointment not found")
	}
	return nil
}

// ExpireHolds moves the pending_payment appointments whose hold lapsed
// before now to expired -- all of them, or one practitioner's when
// practitionerID is not empty -- and returns them as they were.
func ExpireHolds(ctx context.Context, q Q, practitionerID string, now time.Time) ([]Appointment, error) {
	rows, err := q.Query(ctx, `UPDATE appointments SET status = 'expired', hold_expires_at = NULL, updated_at = now()
		WHERE status = 'pending_payment' AND hold_expires_at < $1
		  AND ($2 = '' OR practitioner_id = nullif($2, '')::uuid)
		RETURNING `+appointmentColumns, now, practitionerID)
	if err != nil {
		return nil, fmt.Errorf("store: expire holds: %w", err)
	}
	expired, err := pgx.CollectRows(rows, pgx.RowToStructByName[Appointment])
	if err != nil {
		return nil, fmt.Errorf("store: expire holds: %w", err)
	}
	for _, a := range expired {
		if err := RecordAppointmentEvent(ctx, q, a.ID, "", StatusPendingPayment, StatusExpired, "payment hold expired"); err != nil {
			return nil, err
		}
	}
	return expired, nil
}

// AppointmentEvent is one recorded status change.
type AppointmentEvent struct {
	ID            int64     `db:"id" json:"-"`
	AppointmentID string    `db:"appointment_id" json:"appointment_id"`
	At            time.Time `db:"at" json:"at"`
	ActorID       *string   `db:"actor_id" json:"actor_id"`
	FromStatus    string    `db:"from_status" json:"from"`
	ToStatus      string    `db:"to_status" json:"to"`
	Note          string    `db:"note" json:"note"`
}

// RecordAppointmentEvent appends a status change to the history; actorID
// is empty for the system. note must not carry health data.
func RecordAppointmentEvent(ctx context.Context, q Q, appointmentID, actorID, from, to, note string) error {
	_, err := q.Exec(ctx, `INSERT INTO appointment_events (appointment_id, actor_id, from_status, to_status, note)
		VALUES ($1, $2, $3, $4, $5)`, appointmentID, nullUUID(actorID), from, to, note)
	if err != nil {
		return fmt.Errorf("store: record appointment event: %w", err)
	}
	return nil
}

// AppointmentEvents returns an appointment's history, oldest first.
func AppointmentEvents(ctx context.Context, q Q, appointmentID string) ([]AppointmentEvent, error) {
	rows, err := q.Query(ctx, `SELECT id, appointment_id, at, actor_id, from_status, to_status, note
		FROM appointment_events WHERE appointment_id = $1 ORDER BY id`, appointmentID)
	if err != nil {
		return nil, fmt.Errorf("store: appointment events: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[AppointmentEvent])
}

// CountNoShows counts a patient's no-shows with a practitioner for
// appointments that started after since.
func CountNoShows(ctx context.Context, q Q, practitionerID, patientID string, since time.Time) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM appointments
		WHERE practitioner_id = $1 AND patient_id = $2 AND status = 'no_show' AND starts_at > $3`,
		practitionerID, patientID, since).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count no-shows: %w", err)
	}
	return n, nil
}

// HasSeenPatient reports whether a practitioner has already had a
// consultation (attended or completed) with a patient account.
func HasSeenPatient(ctx context.Context, q Q, practitionerID, patientID string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM appointments WHERE practitioner_id = $1 AND patient_id = $2
		AND status IN ('completed', 'arrived', 'in_progress'))`, practitionerID, patientID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: has seen patient: %w", err)
	}
	return ok, nil
}

func nullUUID(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// HasAppointmentWith reports whether patientID ever booked practitionerID.
func HasAppointmentWith(ctx context.Context, q Q, practitionerID, patientID string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM appointments WHERE practitioner_id = $1 AND patient_id = $2)`, practitionerID, patientID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: has appointment with: %w", err)
	}
	return ok, nil
}
