package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
)

// ErrLeaseLost is returned when a worker settles a delivery whose lease it
// no longer holds (another worker claimed it after the lease ran out).
var ErrLeaseLost = problem.New(problem.Conflict, "outbox_lease_lost", "the delivery was claimed by another worker")

// Delivery statuses of an outbox message.
const (
	MessagePending   = "pending"
	MessageSending   = "sending"
	MessageSent      = "sent"
	MessageFailed    = "failed"
	MessageCancelled = "cancelled"
	MessageHeld      = "held"
)

// OutboxDelivery is a claimed delivery with the event it delivers.
type OutboxDelivery struct {
	ID             string            `db:"id"`
	EventID        string            `db:"event_id"`
	Channel        string            `db:"channel"`
	Attempts       int               `db:"attempts"` // including this one
	ClaimedUntil   time.Time         `db:"claimed_until"`
	Kind           string            `db:"kind"`
	RecipientID    string            `db:"recipient_id"`
	AppointmentID  string            `db:"appointment_id"`
	PrescriptionID string            `db:"prescription_id"`
	Data           map[string]string `db:"data"`
	CreatedAt      time.Time         `db:"created_at"`
}

// ClaimOutbox claims up to limit deliveries that are due at now: pending
// ones whose next attempt has come, and ones whose lease ran out (their
// worker died between claim and send). Each claim counts as an attempt and
// holds a lease until now+lease under claimID. Rows another worker is
// claiming at the same moment are skipped, never waited for.
func ClaimOutbox(ctx context.Context, q Q, claimID string, now time.Time, lease time.Duration, limit int) ([]OutboxDelivery, error) {
	rows, err := q.Query(ctx, `
		WITH due AS (
			SELECT id FROM outbox_messages
			WHERE (status = 'pending' AND coalesce(next_attempt_at, '-infinity'::timestamptz) <= $2)
			   OR (status = 'sending' AND claimed_until <= $2)
			ORDER BY coalesce(next_attempt_at, '-infinity'::timestamptz), created_at
			LIMIT $4
			FOR UPDATE SKIP LOCKED),
		claimed AS (
			UPDATE outbox_messages m
			SET status = 'sending', claim_id = $1, claimed_until = $3,
			    attempts = m.attempts + 1, updated_at = now()
			FROM due WHERE m.id = due.id
			RETURNING m.id, m.event_id, m.channel, m.attempts, m.claimed_until)
		SELECT c.id, c.event_id, c.channel, c.attempts, c.claimed_until,
		       e.kind, e.recipient_id::text, coalesce(e.appointment_id::text, '') AS appointment_id,
		       coalesce(e.prescription_id::text, '') AS prescription_id, e.data, e.created_at
		FROM claimed c JOIN outbox_events e ON e.id = c.event_id
		ORDER BY e.created_at`,
		claimID, now, now.Add(lease), limit)
	if err != nil {
		return nil, fmt.Errorf("store: claim outbox: %w", err)
	}
	ds, err := pgx.CollectRows(rows, pgx.RowToStructByName[OutboxDelivery])
	if err != nil {
		return nil, fmt.Errorf("store: claim outbox: %w", err)
	}
	return ds, nil
}

// OutboxOutcome is what became of one delivery attempt.
type OutboxOutcome struct {
	Status        string    // MessageSent, MessagePending (retry), MessageFailed, MessageCancelled or MessageHeld
	At            time.Time // when it happened (sent_at for MessageSent)
	NextAttemptAt time.Time // for MessagePending
	LastError     string    // short, without addresses or message content
	Subject, Body string    // as rendered, secret links redacted; empty keeps the stored ones
	// Postponed, with MessagePending, says the message was not due after
	// all (it waits for something else): the attempt is not counted.
	Postponed bool
}

// SettleOutbox records the outcome of a delivery claimed under claimID.
// It fails with ErrLeaseLost if the claim is no longer this worker's.
func SettleOutbox(ctx context.Context, q Q, id, claimID string, o OutboxOutcome) error {
	var sentAt, next *time.Time
	switch o.Status {
	case MessageSent:
		sentAt = &o.At
	case MessagePending:
		next = &o.NextAttemptAt
	case MessageFailed, MessageCancelled, MessageHeld:
	default:
		return fmt.Errorf("store: settle outbox: bad status %q", o.Status)
	}
	tag, err := q.Exec(ctx, `
		UPDATE outbox_messages
		SET status = $3, sent_at = $4, next_attempt_at = $5, last_error = $6,
		    subject = CASE WHEN $7 = '' THEN subject ELSE $7 END,
		    body = CASE WHEN $8 = '' THEN body ELSE $8 END,
		    attempts = attempts - CASE WHEN $9 THEN 1 ELSE 0 END,
		    claim_id = NULL, claimed_until = NULL, updated_at = now()
		WHERE id = $1 AND claim_id = $2 AND status = 'sending'`,
		id, claimID, o.Status, sentAt, next, o.LastError, o.Subject, o.Body, o.Postponed && o.Status == MessagePending)
	if err != nil {
		return fmt.Errorf("store: settle outbox: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// OutboxMessage is a delivery as the admin page shows it.
type OutboxMessage struct {
	ID            string     `db:"id" json:"id"`
	EventID       string     `db:"event_id" json:"event_id"`
	Kind          string     `db:"kind" json:"kind"`
	RecipientID   string     `db:"recipient_id" json:"recipient_id"`
	Channel       string     `db:"channel" json:"channel"`
	Status        string     `db:"status" json:"status"`
	Attempts      int        `db:"attempts" json:"attempts"`
	NextAttemptAt *time.Time `db:"next_attempt_at" json:"next_attempt_at,omitempty"`
	LastError     string     `db:"last_error" json:"last_error"`
	Subject       string     `db:"subject" json:"subject"`
	Body          string     `db:"body" json:"body"`
	SentAt        *time.Time `db:"sent_at" json:"sent_at,omitempty"`
	CreatedAt     time.Time  `db:"created_at" json:"created_at"`
}

// ListOutbox returns the most recent deliveries, newest first, optionally
// only those with the given status ("" for all).
func ListOutbox(ctx context.Context, q Q, status string, limit int) ([]OutboxMessage, error) {
	rows, err := q.Query(ctx, `
		SELECT m.id, m.event_id, e.kind, e.recipient_id::text, m.channel, m.status, m.attempts,
		       m.next_attempt_at, m.last_error, m.subject, m.body, m.sent_at, m.created_at
		FROM outbox_messages m JOIN outbox_events e ON e.id = m.event_id
		WHERE $1 = '' OR m.status = $1
		ORDER BY m.created_at DESC, m.id
		LIMIT $2`, status, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list outbox: %w", err)
	}
	ms, err := pgx.CollectRows(rows, pgx.RowToStructByName[OutboxMessage])
	if err != nil {
		return nil, fmt.Errorf("store: list outbox: %w", err)
	}
	return ms, nil
}

// NotificationPrefs are the channels a person accepts notifications on.
type NotificationPrefs struct {
	Email bool `db:"email" json:"email"`
	SMS   bool `db:"sms" json:"sms"`
}

// GetNotificationPrefs returns an account's channel choices (both on when
// the account never chose).
func GetNotificationPrefs(ctx context.Context, q Q, accountID string) (NotificationPrefs, error) {
	var p NotificationPrefs
	err := q.QueryRow(ctx, `SELECT email, sms FROM notification_prefs WHERE account_id = $1`, accountID).Scan(&p.Email, &p.SMS)
	if errors.Is(err, pgx.ErrNoRows) {
		return NotificationPrefs{Email: true, SMS: true}, nil
	}
	if err != nil {
		return p, fmt.Errorf("store: notification prefs: %w", err)
	}
	return p, nil
}

// SetNotificationPrefs records an account's channel choices.
func SetNotificationPrefs(ctx context.Context, q Q, accountID string, p NotificationPrefs) error {
	_, err := q.Exec(ctx, `
		INSERT INTO notification_prefs (account_id, email, sms) VALUES ($1, $2, $3)
		ON CONFLICT (account_id) DO UPDATE SET email = $2, sms = $3, updated_at = now()`,
		accountID, p.Email, p.SMS)
	if err != nil {
		if ConstraintViolated(err, "notification_prefs_account_id_fkey") {
			return ErrNotFound.With("account not found")
		}
		return fmt.Errorf("store: set notification prefs: %w", err)
	}
	return nil
}

// Recipient is what the notify worker needs to address a person.
type Recipient struct {
	ID       string `db:"id"`
	Name     string `db:"name"`
	Email    string `db:"email"`
	Phone    string `db:"phone"`
	Language string `db:"language"`
	Erased   bool   `db:"erased"`
}

// GetRecipient returns the addresses and language of an account.
func GetRecipient(ctx context.Context, q Q, accountID string) (Recipient, error) {
	rows, err := q.Query(ctx, `
		SELECT id::text, name, email, phone, language, erased_at IS NOT NULL AS erased
		FROM accounts WHERE id = $1`, accountID)
	if err != nil {
		return Recipient{}, fmt.Errorf("store: recipient: %w", err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Recipient])
	if err != nil {
		return r, notFound(err, "account")
	}
	return r, nil
}

// ClaimReminder records that reminder kind for the appointment starting at
// startsAt is being enqueued. It reports false when another node (or an
// earlier scan) already did: the caller must then not enqueue it again.
// Call it in the transaction that enqueues the reminder.
func ClaimReminder(ctx context.Context, q Q, appointmentID, kind string, startsAt time.Time) (bool, error) {
	tag, err := q.Exec(ctx, `
		INSERT INTO appointment_reminders (appointment_id, kind, starts_at) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, appointmentID, kind, startsAt)
	if err != nil {
		return false, fmt.Errorf("store: claim reminder: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// AppointmentNotice is what a notification about an appointment may say:
// when, with whom, where. It holds no health data (no reason, no
// specialty).
type AppointmentNotice struct {
	ID               string    `db:"id"`
	Status           string    `db:"status"`
	Mode             string    `db:"mode"`
	StartsAt         time.Time `db:"starts_at"`
	EndsAt           time.Time `db:"ends_at"`
	DelayMinutes     int       `db:"delay_minutes"`
	CreatedAt        time.Time `db:"created_at"`
	UpdatedAt        time.Time `db:"updated_at"`
	PatientID        string    `db:"patient_id"`
	PatientName      string    `db:"patient_name"`
	PractitionerID   string    `db:"practitioner_id"`
	PractitionerName string    `db:"practitioner_name"`
	TimeZone         string    `db:"time_zone"`
	Address          string    `db:"address"`
	City             string    `db:"city"`
	Postcode         string    `db:"postcode"`
	CancelCutoff     int       `db:"cancel_cutoff_minutes"`
}

const appointmentNoticeSelect = `
	SELECT a.id::text, a.status, a.mode, a.starts_at, a.ends_at, a.delay_minutes, a.created_at, a.updated_at,
	       a.patient_id::text, pa.name AS patient_name,
	       a.practitioner_id::text, dr.name AS practitioner_name, p.time_zone, p.address, p.city, p.postcode,
	       p.cancel_cutoff_minutes
	FROM appointments a
	JOIN accounts pa ON pa.id = a.patient_id
	JOIN practitioners p ON p.account_id = a.practitioner_id
	JOIN accounts dr ON dr.id = a.practitioner_id`

// GetAppointmentNotice returns what notifications say about appointment id.
func GetAppointmentNotice(ctx context.Context, q Q, id string) (AppointmentNotice, error) {
	if !IsUUID(id) {
		return AppointmentNotice{}, ErrNotFound.With("appointment not found")
	}
	rows, err := q.Query(ctx, appointmentNoticeSelect+` WHERE a.id = $1`, id)
	if err != nil {
		return AppointmentNotice{}, fmt.Errorf("store: appointment notice: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[AppointmentNotice])
	if err != nil {
		return n, notFound(err, "appointment")
	}
	return n, nil
}

// ReminderCandidates returns the confirmed appointments starting in
// (from, to] that have no reminder of this kind recorded for their
// current start time, in start order, at most limit of them.
func ReminderCandidates(ctx context.Context, q Q, kind string, from, to time.Time, limit int) ([]AppointmentNotice, error) {
	rows, err := q.Query(ctx, appointmentNoticeSelect+`
		WHERE a.status = 'confirmed' AND a.starts_at > $1 AND a.starts_at <= $2
		  AND NOT EXISTS (SELECT 1 FROM appointment_reminders r
		                  WHERE r.appointment_id = a.id AND r.kind = $3 AND r.starts_at = a.starts_at)
		ORDER BY a.starts_at, a.id
		LIMIT $4`, from, to, kind, limit)
	if err != nil {
		return nil, fmt.Errorf("store: reminder candidates: %w", err)
	}
	ns, err := pgx.CollectRows(rows, pgx.RowToStructByName[AppointmentNotice])
	if err != nil {
		return nil, fmt.Errorf("store: reminder candidates: %w", err)
	}
	return ns, nil
}

// PractitionerNotice is how notifications name a practitioner.
type PractitionerNotice struct {
	ID       string `db:"id"`
	Name     string `db:"name"`
	TimeZone string `db:"time_zone"`
}

// GetPractitionerNotice returns a practitioner's name and time zone.
func GetPractitionerNotice(ctx context.Context, q Q, id string) (PractitionerNotice, error) {
	if !IsUUID(id) {
		return PractitionerNotice{}, ErrNotFound.With("practitioner not found")
	}
	rows, err := q.Query(ctx, `SELECT p.account_id::text AS id, a.name, p.time_zone
		FROM practitioners p JOIN accounts a ON a.id = p.account_id WHERE p.account_id = $1`, id)
	if err != nil {
		return PractitionerNotice{}, fmt.Errorf("store: practitioner notice: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[PractitionerNotice])
	if err != nil {
		return n, notFound(err, "practitioner")
	}
	return n, nil
}

// RetryOutbox puts a failed or held delivery back in the queue with a
// fresh set of attempts (an admin's decision, once the cause is fixed).
// Any other status is ErrWrongOutboxStatus.
func RetryOutbox(ctx context.Context, q Q, id string) error {
	if !IsUUID(id) {
		return ErrNotFound.With("message not found")
	}
	var status string
	err := q.QueryRow(ctx, `
		WITH old AS (SELECT id, status FROM outbox_messages WHERE id = $1 FOR UPDATE)
		UPDATE outbox_messages m SET status = 'pending', attempts = 0, next_attempt_at = NULL,
		       last_error = '', updated_at = now()
		FROM old WHERE m.id = old.id AND old.status IN ('failed', 'held')
		RETURNING old.status`, id).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := q.QueryRow(ctx, `SELECT status FROM outbox_messages WHERE id = $1`, id).Scan(&status); err != nil {
			return notFound(err, "message")
		}
		return ErrWrongOutboxStatus.Withf("this message is %s; only failed or held messages can be retried", status)
	}
	if err != nil {
		return fmt.Errorf("store: retry outbox: %w", err)
	}
	return nil
}

// ErrWrongOutboxStatus is a retry of a message that is not failed or held.
var ErrWrongOutboxStatus = problem.New(problem.Conflict, "outbox_wrong_status", "only failed or held messages can be retried")

// OutboxBacklog counts the deliveries waiting (pending) or in flight
// (sending), per status and channel: what the metrics report.
func OutboxBacklog(ctx context.Context, q Q) (map[[2]string]int, error) {
	rows, err := q.Query(ctx, `SELECT status, channel, count(*) FROM outbox_messages
		WHERE status IN ('pending', 'sending') GROUP BY status, channel`)
	if err != nil {
		return nil, fmt.Errorf("store: outbox backlog: %w", err)
	}
	defer rows.Close()
	out := map[[2]string]int{}
	for rows.Next() {
		var status, channel string
		var n int
		if err := rows.Scan(&status, &channel, &n); err != nil {
			return nil, fmt.Errorf("store: outbox backlog: %w", err)
		}
		out[[2]string{status, channel}] = n
	}
	return out, rows.Err()
}

// PruneOutbox deletes up to limit events created before before whose
// deliveries are all settled (sent, failed, cancelled or held), with
// their deliveries, and the reminder records of appointments that
// started before before. Rendered messages name people and times: they
// are not kept for ever.
func PruneOutbox(ctx context.Context, q Q, before time.Time, limit int) (int64, error) {
	tag, err := q.Exec(ctx, `
		DELETE FROM outbox_events WHERE id IN (
			SELECT e.id FROM outbox_events e
			WHERE e.created_at < $1
			  AND NOT EXISTS (SELECT 1 FROM outbox_messages m
			                  WHERE m.event_id = e.id AND m.status IN ('pending', 'sending'))
			LIMIT $2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("store: prune outbox: %w", err)
	}
	if _, err := q.Exec(ctx, `DELETE FROM appointment_reminders WHERE starts_at < $1`, before); err != nil {
		return 0, fmt.Errorf("store: prune reminders: %w", err)
	}
	return tag.RowsAffected(), nil
}
