package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
)

// Payment states. See migrations/003_payments.sql for their meaning and
// for the moves allowed between them.
const (
	PaymentCheckoutOpen   = "checkout_open"
	PaymentSetupOpen      = "setup_open"
	PaymentCardSaved      = "card_saved"
	PaymentActionRequired = "action_required"
	PaymentAuthorized     = "authorized"
	PaymentCaptured       = "captured"
	PaymentRefunded       = "refunded"
	PaymentCanceled       = "canceled"
	PaymentFailed         = "failed"
	PaymentExpired        = "expired"
)

// ErrPaymentBackwards is the trigger payments_forward_only refusing a move
// that would take a payment back to an earlier state.
var ErrPaymentBackwards = problem.New(problem.Conflict, "payment_state", "this payment cannot go back to an earlier state")

// Payment is the money side of one appointment.
type Payment struct {
	AppointmentID     string     `db:"appointment_id"`
	PatientID         string     `db:"patient_id"`
	PractitionerID    string     `db:"practitioner_id"`
	State             string     `db:"state"`
	Amount            int64      `db:"amount"`
	Currency          string     `db:"currency"`
	ApplicationFee    int64      `db:"application_fee"`
	Destination       string     `db:"destination"`
	CheckoutSession   string     `db:"checkout_session"`
	CheckoutURL       string     `db:"checkout_url"`
	CheckoutExpiresAt *time.Time `db:"checkout_expires_at"`
	Customer          string     `db:"customer"`
	PaymentMethod     string     `db:"payment_method"`
	PaymentIntent     string     `db:"payment_intent"`
	AmountCaptured    int64      `db:"amount_captured"`
	AmountRefunded    int64      `db:"amount_refunded"`
	AuthorizeAt       *time.Time `db:"authorize_at"`
	ActionDeadline    *time.Time `db:"action_deadline"`
	AuthorizedAt      *time.Time `db:"authorized_at"`
	CapturedAt        *time.Time `db:"captured_at"`
	RefundedAt        *time.Time `db:"refunded_at"`
	LeaseUntil        *time.Time `db:"lease_until"`
	CreatedAt         time.Time  `db:"created_at"`
	UpdatedAt         time.Time  `db:"updated_at"`
}

const paymentColumns = `appointment_id, patient_id, practitioner_id, state, amount, currency, application_fee,
	destination, checkout_session, checkout_url, checkout_expires_at, customer, payment_method, payment_intent,
	amount_captured, amount_refunded, authorize_at, action_deadline, authorized_at, captured_at, refunded_at,
	lease_until, created_at, updated_at`

// InsertPayment stores the payment of a new appointment. A second payment
// for the same appointment is a conflict.
func InsertPayment(ctx context.Context, q Q, p Payment) error {
	_, err := q.Exec(ctx, `INSERT INTO payments (appointment_id, patient_id, practitioner_id, state, amount,
		currency, application_fee, destination, customer, authorize_at, checkout_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		p.AppointmentID, p.PatientID, p.PractitionerID, p.State, p.Amount, p.Currency, p.ApplicationFee,
		p.Destination, p.Customer, p.AuthorizeAt, p.CheckoutExpiresAt)
	if err != nil {
		if ConstraintViolated(err, "payments_pkey") {
			return problem.ErrConflict.With("this appointment already has a payment").Wrap(err)
		}
		return fmt.Errorf("store: insert payment: %w", err)
	}
	return nil
}

func onePayment(rows pgx.Rows, err error) (Payment, error) {
	if err != nil {
		return Payment{}, fmt.Errorf("store: payment: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Payment])
	if err != nil {
		return Payment{}, notFound(err, "payment")
	}
	return p, nil
}

// PaymentOf returns the payment of an appointment.
func PaymentOf(ctx context.Context, q Q, appointmentID string) (Payment, error) {
	if !IsUUID(appointmentID) {
		return Payment{}, ErrNotFound.With("payment not found")
	}
	rows, err := q.Query(ctx, `SELECT `+paymentColumns+` FROM payments WHERE appointment_id = $1`, appointmentID)
	return onePayment(rows, err)
}

// LockPayment is PaymentOf with a row lock held until the end of q's
// transaction.
func LockPayment(ctx context.Context, q Q, appointmentID string) (Payment, error) {
	if !IsUUID(appointmentID) {
		return Payment{}, ErrNotFound.With("payment not found")
	}
	rows, err := q.Query(ctx, `SELECT `+paymentColumns+` FROM payments WHERE appointment_id = $1 FOR UPDATE`, appointmentID)
	return onePayment(rows, err)
}

// PaymentByCheckoutSession returns the payment a Checkout Session belongs to.
func PaymentByCheckoutSession(ctx context.Context, q Q, sessionID string) (Payment, error) {
	rows, err := q.Query(ctx, `SELECT `+paymentColumns+` FROM payments WHERE checkout_session = $1 AND $1 <> ''`, sessionID)
	return onePayment(rows, err)
}

// PaymentByIntent returns the payment a PaymentIntent belongs to.
func PaymentByIntent(ctx context.Context, q Q, intentID string) (Payment, error) {
	rows, err := q.Query(ctx, `SELECT `+paymentColumns+` FROM payments WHERE payment_intent = $1 AND $1 <> ''`, intentID)
	return onePayment(rows, err)
}

// UpdatePayment writes p's mutable fields. A move the trigger
// payments_forward_only refuses is ErrPaymentBackwards, and changes nothing.
func UpdatePayment(ctx context.Context, q Q, p Payment) error {
	tag, err := q.Exec(ctx, `UPDATE payments SET state = $2, checkout_session = $3, checkout_url = $4,
		checkout_expires_at = $5, customer = $6, payment_method = $7, payment_intent = $8,
		amount_captured = $9, amount_refunded = $10, authorize_at = $11, action_deadline = $12,
		authorized_at = $13, captured_at = $14, refunded_at = $15, updated_at = now()
		WHERE appointment_id = $1`,
		p.AppointmentID, p.State, p.CheckoutSession, p.CheckoutURL, p.CheckoutExpiresAt, p.Customer,
		p.PaymentMethod, p.PaymentIntent, p.AmountCaptured, p.AmountRefunded, p.AuthorizeAt, p.ActionDeadline,
		p.AuthorizedAt, p.CapturedAt, p.RefundedAt)
	if err != nil {
		if ConstraintViolated(err, "payments_forward_only") {
			return ErrPaymentBackwards.Wrap(err)
		}
		return fmt.Errorf("store: update payment: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound.With("payment not found")
	}
	return nil
}

// ExtendHold sets the hold expiry of a pending_payment appointment, so
// that the slot stays held exactly as long as its checkout can be paid.
func ExtendHold(ctx context.Context, q Q, appointmentID string, until time.Time) error {
	_, err := q.Exec(ctx, `UPDATE appointments SET hold_expires_at = $2, updated_at = now()
		WHERE id = $1 AND status = 'pending_payment'`, appointmentID, until)
	if err != nil {
		return fmt.Errorf("store: extend hold: %w", err)
	}
	return nil
}

// ClaimDuePayments leases up to limit payments that a payments job must
// look at (see the WHERE clause), for lease, and returns them: open
// checkouts not heard of for staleAfter, saved cards within
// authorizeLead of their appointment, holds to capture or release. Rows
// another node holds (locked now, or leased) are skipped, so several nodes
// can run the job at once without doing the same work.
func ClaimDuePayments(ctx context.Context, q Q, now time.Time, staleAfter, lease, authorizeLead time.Duration, limit int) ([]Payment, error) {
	rows, err := q.Query(ctx, `UPDATE payments p SET lease_until = $1::timestamptz + $3::interval
		WHERE p.appointment_id IN (
			SELECT p2.appointment_id FROM payments p2 JOIN appointments a ON a.id = p2.appointment_id
			WHERE (p2.lease_until IS NULL OR p2.lease_until < $1)
			  AND (
				-- a checkout whose webhook may have been lost, or that must be given up
				(p2.state IN ('checkout_open', 'setup_open', 'action_required')
				   AND (p2.updated_at < $1::timestamptz - $2::interval
				        OR p2.checkout_expires_at < $1 OR a.status NOT IN ('pending_payment', 'confirmed')))
				-- a saved card due for its authorisation (from the appointment's
				-- current start: it may have been rescheduled), or whose
				-- appointment went away
				OR (p2.state = 'card_saved' AND (a.starts_at - $5::interval <= $1 OR a.status NOT IN ('pending_payment', 'confirmed')))
				-- a hold whose appointment was completed, cancelled or missed
				OR (p2.state = 'authorized' AND a.status NOT IN ('pending_payment', 'confirmed', 'arrived', 'in_progress'))
				-- a hold Stripe has released after 7 days uncaptured
				OR (p2.state = 'authorized' AND p2.authorized_at < $1::timestamptz - interval '7 days')
			  )
			ORDER BY p2.updated_at
			LIMIT $4
			FOR UPDATE OF p2 SKIP LOCKED)
		RETURNING `+paymentColumns, now, staleAfter, lease, limit, authorizeLead)
	if err != nil {
		return nil, fmt.Errorf("store: claim payments: %w", err)
	}
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByName[Payment])
	if err != nil {
		return nil, fmt.Errorf("store: claim payments: %w", err)
	}
	return ps, nil
}

// ReleasePaymentLease lets the jobs look at a payment again. When retryAt
// is set, not before then.
func ReleasePaymentLease(ctx context.Context, q Q, appointmentID string, retryAt *time.Time) error {
	_, err := q.Exec(ctx, `UPDATE payments SET lease_until = $2 WHERE appointment_id = $1`, appointmentID, retryAt)
	if err != nil {
		return fmt.Errorf("store: release payment lease: %w", err)
	}
	return nil
}

// MarkStripeEvent records that the Stripe event id is being processed in
// q's transaction. It returns false if it was processed already (or is
// being processed by a transaction that then commits), in which case the
// caller must not apply it again.
func MarkStripeEvent(ctx context.Context, q Q, id, typ string) (bool, error) {
	tag, err := q.Exec(ctx, `INSERT INTO stripe_events (id, type) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, id, typ)
	if err != nil {
		return false, fmt.Errorf("store: mark stripe event: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// StripeEventProcessed reports whether the event id was processed.
func StripeEventProcessed(ctx context.Context, q Q, id string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM stripe_events WHERE id = $1)`, id).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: stripe event: %w", err)
	}
	return ok, nil
}

// PaymentCustomer returns the Stripe customer id of an account.
func PaymentCustomer(ctx context.Context, q Q, accountID string) (string, error) {
	var c string
	err := q.QueryRow(ctx, `SELECT customer FROM payment_customers WHERE account_id = $1`, accountID).Scan(&c)
	if err != nil {
		return "", notFound(err, "payment customer")
	}
	return c, nil
}

// SavePaymentCustomer records an account's Stripe customer id (keeping the
// first one if two requests raced).
func SavePaymentCustomer(ctx context.Context, q Q, accountID, customer string) error {
	_, err := q.Exec(ctx, `INSERT INTO payment_customers (account_id, customer) VALUES ($1, $2)
		ON CONFLICT (account_id) DO NOTHING`, accountID, customer)
	if err != nil {
		return fmt.Errorf("store: save payment customer: %w", err)
	}
	return nil
}

// PayoutAccount is a practitioner's Stripe Connect account.
type PayoutAccount struct {
	PractitionerID string    `db:"practitioner_id"`
	Account        string    `db:"account"`
	ChargesEnabled bool      `db:"charges_enabled"`
	CreatedAt      time.Time `db:"created_at"`
	UpdatedAt      time.Time `db:"updated_at"`
}

// PayoutAccountOf returns a practitioner's Connect account.
func PayoutAccountOf(ctx context.Context, q Q, practitionerID string) (PayoutAccount, error) {
	rows, err := q.Query(ctx, `SELECT practitioner_id, account, charges_enabled, created_at, updated_at
		FROM payout_accounts WHERE practitioner_id = $1`, practitionerID)
	if err != nil {
		return PayoutAccount{}, fmt.Errorf("store: payout account: %w", err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[PayoutAccount])
	if err != nil {
		return PayoutAccount{}, notFound(err, "payout account")
	}
	return a, nil
}

// SavePayoutAccount records a practitioner's Connect account (keeping the
// first one if two requests raced) and returns the one recorded.
func SavePayoutAccount(ctx context.Context, q Q, practitionerID, account string, chargesEnabled bool) (PayoutAccount, error) {
	_, err := q.Exec(ctx, `INSERT INTO payout_accounts (practitioner_id, account, charges_enabled) VALUES ($1, $2, $3)
		ON CONFLICT (practitioner_id) DO NOTHING`, practitionerID, account, chargesEnabled)
	if err != nil {
		return PayoutAccount{}, fmt.Errorf("store: save payout account: %w", err)
	}
	return PayoutAccountOf(ctx, q, practitionerID)
}

// SetPayoutChargesEnabled records whether Stripe lets a Connect account
// take charges (from account.updated events).
func SetPayoutChargesEnabled(ctx context.Context, q Q, account string, enabled bool) error {
	_, err := q.Exec(ctx, `UPDATE payout_accounts SET charges_enabled = $2, updated_at = now() WHERE account = $1`, account, enabled)
	if err != nil {
		return fmt.Errorf("store: payout charges enabled: %w", err)
	}
	return nil
}

// ReceiptFacts is what a payment receipt shows: who paid whom, for which
// appointment, and how much. It carries no reason or clinical note.
type ReceiptFacts struct {
	AppointmentID      string     `db:"appointment_id"`
	PatientID          string     `db:"patient_id"`
	PatientName        string     `db:"patient_name"`
	PatientLanguage    string     `db:"language"`
	PractitionerName   string     `db:"practitioner_name"`
	PractitionerRPPS   string     `db:"rpps"`
	PractitionerAddr   string     `db:"address"`
	PractitionerCity   string     `db:"city"`
	PractitionerPost   string     `db:"postcode"`
	Specialty          string     `db:"specialty"`
	Mode               string     `db:"mode"`
	StartsAt           time.Time  `db:"starts_at"`
	State              string     `db:"state"`
	Currency           string     `db:"currency"`
	AmountCaptured     int64      `db:"amount_captured"`
	AmountRefunded     int64      `db:"amount_refunded"`
	CapturedAt         *time.Time `db:"captured_at"`
	RefundedAt         *time.Time `db:"refunded_at"`
	PaymentIntent      string     `db:"payment_intent"`
	PractitionerTZ     string     `db:"time_zone"`
	ConsultationTypeID string     `db:"consultation_type_id"`
}

// ReceiptFactsOf gathers the facts of an appointment's receipt.
func ReceiptFactsOf(ctx context.Context, q Q, appointmentID string) (ReceiptFacts, error) {
	if !IsUUID(appointmentID) {
		return ReceiptFacts{}, ErrNotFound.With("receipt not found")
	}
	rows, err := q.Query(ctx, `SELECT p.appointment_id, p.patient_id, pa.name AS patient_name, pa.language,
			pr.name AS practitioner_name, coalesce(d.rpps, '') AS rpps, coalesce(d.address, '') AS address,
			coalesce(d.city, '') AS city, coalesce(d.postcode, '') AS postcode, coalesce(d.specialty, '') AS specialty,
			coalesce(d.time_zone, 'UTC') AS time_zone,
			a.mode, a.starts_at, a.consultation_type_id, p.state, p.currency, p.amount_captured, p.amount_refunded,
			p.captured_at, p.refunded_at, p.payment_intent
		FROM payments p
		JOIN appointments a ON a.id = p.appointment_id
		JOIN accounts pa ON pa.id = p.patient_id
		JOIN accounts pr ON pr.id = p.practitioner_id
		LEFT JOIN practitioners d ON d.account_id = p.practitioner_id
		WHERE p.appointment_id = $1`, appointmentID)
	if err != nil {
		return ReceiptFacts{}, fmt.Errorf("store: receipt: %w", err)
	}
	f, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[ReceiptFacts])
	if err != nil {
		return ReceiptFacts{}, notFound(err, "receipt")
	}
	return f, nil
}

// TestGatewayObject returns the JSON body of an object of the in-process
// test gateway, locked until the end of q's transaction when lock is set.
func TestGatewayObject(ctx context.Context, q Q, id string, lock bool) (json.RawMessage, error) {
	sql := `SELECT body FROM test_gateway_objects WHERE id = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	var body json.RawMessage
	if err := q.QueryRow(ctx, sql, id).Scan(&body); err != nil {
		return nil, notFound(err, "object")
	}
	return body, nil
}

// PutTestGatewayObject creates or replaces an object of the test gateway.
func PutTestGatewayObject(ctx context.Context, q Q, id, kind string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("store: test gateway object: %w", err)
	}
	_, err = q.Exec(ctx, `INSERT INTO test_gateway_objects (id, kind, body) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = now()`, id, kind, b)
	if err != nil {
		return fmt.Errorf("store: test gateway object: %w", err)
	}
	return nil
}

// TestGatewayObjectsOf lists the ids of the test gateway's objects of kind
// whose JSON field has the given string value.
func TestGatewayObjectsOf(ctx context.Context, q Q, kind, field, value string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT id FROM test_gateway_objects WHERE kind = $1 AND body->>$2 = $3 ORDER BY created_at`,
		kind, field, value)
	if err != nil {
		return nil, fmt.Errorf("store: test gateway objects: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ErrIdempotencyMismatch is an idempotency key reused with other parameters.
var ErrIdempotencyMismatch = errors.New("store: idempotency key reused with different parameters")

// TestGatewayIdempotent looks up an idempotency key of the test gateway.
// It returns the response stored with it, nil if the key is new, or
// ErrIdempotencyMismatch if it was used with another fingerprint. The
// key's row is locked until the end of q's transaction, so concurrent
// requests with one key are served one after the other.
func TestGatewayIdempotent(ctx context.Context, q Q, key, fingerprint string) (json.RawMessage, error) {
	if _, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, key); err != nil {
		return nil, fmt.Errorf("store: idempotency lock: %w", err)
	}
	var fp string
	var resp json.RawMessage
	err := q.QueryRow(ctx, `SELECT fingerprint, response FROM test_gateway_idempotency WHERE key = $1`, key).Scan(&fp, &resp)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: idempotency: %w", err)
	}
	if fp != fingerprint {
		return nil, ErrIdempotencyMismatch
	}
	return resp, nil
}

// SaveTestGatewayIdempotent stores the response given to a key.
func SaveTestGatewayIdempotent(ctx context.Context, q Q, key, fingerprint string, response any) error {
	b, err := json.Marshal(response)
	if err != nil {
		return fmt.Errorf("store: idempotency: %w", err)
	}
	_, err = q.Exec(ctx, `INSERT INTO test_gateway_idempotency (key, fingerprint, response) VALUES ($1, $2, $3)`, key, fingerprint, b)
	if err != nil {
		return fmt.Errorf("store: idempotency: %w", err)
	}
	return nil
}

// RecentPayments lists up to limit payments, newest first, in the given
// state (any state when state is empty), for operators.
func RecentPayments(ctx context.Context, q Q, state string, limit int) ([]Payment, error) {
	rows, err := q.Query(ctx, `SELECT `+paymentColumns+` FROM payments
		WHERE $1 = '' OR state = $1 ORDER BY updated_at DESC, appointment_id LIMIT $2`, state, limit)
	if err != nil {
		return nil, fmt.Errorf("store: recent payments: %w", err)
	}
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByName[Payment])
	if err != nil {
		return nil, fmt.Errorf("store: recent payments: %w", err)
	}
	return ps, nil
}
