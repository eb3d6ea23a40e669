// Package privacy carries out the patient's GDPR rights: a download of
// everything held about them (Export, a zip of JSON and their PDFs) and
// the erasure of their account (Erase).
//
// Erasure deletes or anonymises personal data and destroys the account's
// data key, which makes every value sealed with it unreadable. What the
// law requires to be kept (signed prescriptions, dispenses, payment
// receipts) is first re-sealed to a "legal hold" public key whose private
// half the data-protection officer holds offline: the running platform
// keeps those documents but cannot open them.
//
// The legal-hold key is configured as a PEM public key (X25519 or ECDH
// P-256), LEGAL_HOLD_PUBLIC_KEY; the officer makes the pair offline, e.g.
//
//	openssl genpkey -algorithm X25519 -out legal-hold-private.pem
//	openssl pkey -in legal-hold-private.pem -pubout
//
// Without one, a demo pair is generated at first start into DATA_DIR
// (legal-hold-public.pem, legal-hold-private.pem): for demonstrations
// only, since a private key beside the service defeats the purpose. The
// records are in legal_hold_records; the officer opens one with
// ParseLegalHoldPrivateKey and OpenLegalHold(key, HoldAAD(subject, kind,
// ref), sealed), which yields a HeldDocument in JSON.
package privacy

import (
	"context"
	"crypto/ecdh"
	"time"

	"teleconsult/audit"
	"teleconsult/problem"
	"teleconsult/store"
	"teleconsult/vault"
)

// Canceller cancels an upcoming appointment the way its patient would
// (booking.Service): the slot is freed and the practitioner told.
type Canceller interface {
	Cancel(ctx context.Context, who audit.Actor, id, reason string) (store.Appointment, error)
}

// Receipter renders the payment receipt of an appointment for its
// patient (payments.Service); a missing receipt is store.ErrNotFound.
type Receipter interface {
	Receipt(ctx context.Context, who audit.Actor, appointmentID string) ([]byte, error)
}

// Problems of erasure.
var (
	// ErrNotSelfService refuses erasure of accounts other than patients':
	// the operator closes a practitioner's or pharmacist's account.
	ErrNotSelfService = problem.New(problem.Conflict, "erase_not_self_service",
		"only patient accounts can be erased online; the operator closes professional accounts")
	// ErrAppointmentTooClose refuses erasure while an appointment can no
	// longer be cancelled online: nothing is changed.
	ErrAppointmentTooClose = problem.New(problem.Conflict, "appointment_too_close",
		"an appointment is too close to be cancelled online; contact the practice or erase the account after it")
	// ErrBookedMeanwhile refuses an erasure during which a new
	// appointment was booked: nothing is erased, the caller tries again.
	ErrBookedMeanwhile = problem.New(problem.Conflict, "booked_meanwhile",
		"an appointment was booked while the account was being erased; nothing was erased, please try again")
	// ErrNoLegalHold means no legal-hold key is configured.
	ErrNoLegalHold = problem.New(problem.Unavailable, "legal_hold_unconfigured",
		"account erasure is not available: no legal-hold key is configured")
)

// Service exports and erases accounts.
type Service struct {
	db        *store.DB
	vault     *vault.Vault
	booking   Canceller
	receipts  Receipter
	legalHold *ecdh.PublicKey
	now       func() time.Time
}

// Config holds the optional parts of a Service.
type Config struct {
	// Booking cancels upcoming appointments at erasure; nil when booking
	// is not served.
	Booking Canceller
	// Receipts renders payment receipts; nil when payments are not served.
	Receipts Receipter
	// LegalHold is the public key retained documents are sealed to (see
	// LegalHoldKey); erasure is refused without it.
	LegalHold *ecdh.PublicKey
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// New returns a Service over db and v.
func New(db *store.DB, v *vault.Vault, cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{db: db, vault: v, booking: cfg.Booking, receipts: cfg.Receipts, legalHold: cfg.LegalHold, now: cfg.Now}
}
