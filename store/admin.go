package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// WebhookFailure is a Stripe event whose processing failed, as operators
// see it. Status is "failed" while the event was never processed, and
// "recovered" once a later delivery succeeded.
type WebhookFailure struct {
	EventID       string    `db:"event_id" json:"event_id"`
	Type          string    `db:"type" json:"type"`
	Status        string    `db:"status" json:"status"`
	Reason        string    `db:"reason" json:"reason"`
	Attempts      int       `db:"attempts" json:"attempts"`
	FirstFailedAt time.Time `db:"first_failed_at" json:"first_failed_at"`
	LastFailedAt  time.Time `db:"last_failed_at" json:"last_failed_at"`
}

// Statuses of a webhook failure.
const (
	WebhookFailed    = "failed"
	WebhookRecovered = "recovered"
)

// maxFailureReason bounds the stored reason (error texts can nest).
const maxFailureReason = 500

// RecordWebhookFailure notes that processing the event failed with reason,
// counting the attempts of the same event.
func RecordWebhookFailure(ctx context.Context, q Q, eventID, typ, reason string) error {
	if len(reason) > maxFailureReason {
		reason = reason[:maxFailureReason]
	}
	_, err := q.Exec(ctx, `INSERT INTO stripe_event_failures (event_id, type, reason) VALUES ($1, $2, $3)
		ON CONFLICT (event_id) DO UPDATE SET reason = $3, attempts = stripe_event_failures.attempts + 1, last_failed_at = now()`,
		eventID, typ, reason)
	if err != nil {
		return fmt.Errorf("store: record webhook failure: %w", err)
	}
	return nil
}

// ListWebhookFailures returns the failures, newest first: those in status
// (WebhookFailed or WebhookRecovered), or all when status is empty.
func ListWebhookFailures(ctx context.Context, q Q, status string, limit int) ([]WebhookFailure, error) {
	rows, err := q.Query(ctx, `SELECT * FROM (
			SELECT f.event_id, f.type, f.reason, f.attempts, f.first_failed_at, f.last_failed_at,
				CASE WHEN e.id IS NULL THEN 'failed' ELSE 'recovered' END AS status
			FROM stripe_event_failures f LEFT JOIN stripe_events e ON e.id = f.event_id) x
		WHERE $1 = '' OR status = $1
		ORDER BY last_failed_at DESC, event_id LIMIT $2`, status, limit)
	if err != nil {
		return nil, fmt.Errorf("store: webhook failures: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[WebhookFailure])
	if err != nil {
		return nil, fmt.Errorf("store: webhook failures: %w", err)
	}
	return out, nil
}

// SetAccountLanguage changes the language an account's messages are
// written in.
func SetAccountLanguage(ctx context.Context, q Q, accountID, language string) error {
	tag, err := q.Exec(ctx, `UPDATE accounts SET language = $2 WHERE id = $1 AND erased_at IS NULL`, accountID, language)
	if err != nil {
		return fmt.Errorf("store: set account language: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound.With("account not found")
	}
	return nil
}

// AdminPractitioner is a practitioner as the operators' list shows it.
type AdminPractitioner struct {
	ID        string    `db:"id" json:"id"`
	Name      string    `db:"name" json:"name"`
	Email     string    `db:"email" json:"email"`
	Specialty string    `db:"specialty" json:"specialty"`
	RPPS      string    `db:"rpps" json:"rpps"`
	Address   string    `db:"address" json:"address"`
	Postcode  string    `db:"postcode" json:"postcode"`
	City      string    `db:"city" json:"city"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
}

// ListPractitionersForAdmin returns the practitioners with a directory
// entry, newest account first.
func ListPractitionersForAdmin(ctx context.Context, q Q, limit int) ([]AdminPractitioner, error) {
	rows, err := q.Query(ctx, `SELECT a.id::text AS id, a.name, a.email, p.specialty, p.rpps, p.address, p.postcode, p.city, a.created_at
		FROM practitioners p JOIN accounts a ON a.id = p.account_id
		WHERE a.erased_at IS NULL ORDER BY a.created_at DESC, a.id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: practitioners for admin: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[AdminPractitioner])
	if err != nil {
		return nil, fmt.Errorf("store: practitioners for admin: %w", err)
	}
	return out, nil
}

// ListPharmaciesForAdmin returns the pharmacies by name.
func ListPharmaciesForAdmin(ctx context.Context, q Q, limit int) ([]Pharmacy, error) {
	rows, err := q.Query(ctx, `SELECT `+pharmacyColumns+` FROM pharmacies ORDER BY name, id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: pharmacies for admin: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[Pharmacy])
	if err != nil {
		return nil, fmt.Errorf("store: pharmacies for admin: %w", err)
	}
	return out, nil
}

// PharmacyListed reports whether a pharmacy of that name is listed at
// that address and postcode (letter case aside).
func PharmacyListed(ctx context.Context, q Q, name, address, postcode string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pharmacies WHERE postcode = $3
		AND lower(name) = lower($1) AND lower(address) = lower($2))`, name, address, postcode).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: pharmacy listed: %w", err)
	}
	return ok, nil
}
