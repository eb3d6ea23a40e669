// Package booking is the directory and booking core: practitioners and
// their consultation types, opening hours and absences, the free slots
// computed from them, appointments (book, cancel, reschedule, agenda),
// the waiting list, the no-show rule and calendar files.
//
// Every change of a practitioner's agenda runs in one transaction that
// first takes the practitioner's row lock, writes the change, records it
// in appointment_events, refreshes the practitioner's precomputed next
// free slot (which the directory search sorts on), enqueues the
// notifications in the outbox, and audits the access last. The database
// itself refuses overlapping appointments (appointments_no_overlap), so
// the lock is for consistency of derived data, not for correctness.
package booking

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/problem"
	"teleconsult/store"
	"teleconsult/vault"
)

// Tuning constants.
const (
	// HoldDuration is how long a paid booking holds its slot while the
	// patient pays.
	HoldDuration = 30 * time.Minute
	// OfferDuration is how long a waiting-list offer stays exclusive.
	OfferDuration = 30 * time.Minute
	// NoShowWindow is the period over which no-shows count.
	NoShowWindow = 365 * 24 * time.Hour
)

// Booking problems.
var (
	ErrBlocked          = problem.New(problem.Forbidden, "patient_blocked", "you can no longer book this practitioner online; please contact the practice")
	ErrNoNewPatients    = problem.New(problem.Forbidden, "no_new_patients", "this consultation is for the practitioner's existing patients only")
	ErrSlotOffered      = problem.New(problem.Conflict, "slot_offered", "this slot is being offered to a patient on the waiting list; please choose another")
	ErrTooLateToCancel  = problem.New(problem.Conflict, "too_late_to_cancel", "it is too late to change this appointment online; please contact the practice")
	ErrPatientsOnly     = problem.New(problem.Forbidden, "patients_only", "only patients can do this")
	ErrPractitionerOnly = problem.New(problem.Forbidden, "practitioners_only", "only practitioners can do this")
	ErrInvalid          = problem.New(problem.Invalid, "invalid", "the request is not valid")
	ErrCheckoutFailed   = problem.New(problem.Unavailable, "checkout_failed", "payment could not be started; the slot was released, please try again")
)

// Checkout starts the payment of an appointment created in
// pending_payment. It is implemented by payments and is nil when payments
// are not wired. It is called after the booking commits, with q the pool,
// and returns where to send the patient and when the hold lapses.
type Checkout interface {
	StartCheckout(ctx context.Context, q store.Q, a store.Appointment) (url string, expires time.Time, err error)
}

// PaymentRelease is told, inside the cancellation's transaction, that an
// appointment was cancelled, so that payments can release the card hold
// (or refund) once it commits. Optional.
type PaymentRelease interface {
	AppointmentCancelled(ctx context.Context, q store.Q, a store.Appointment, byPatient bool) error
}

// RescheduleCheck says whether an appointment may move to newStart as
// far as its payment goes (a card hold must outlive the consultation).
// It is called inside the reschedule's transaction; an error refuses the
// move and changes nothing. Optional.
type RescheduleCheck interface {
	CheckReschedule(ctx context.Context, q store.Q, a store.Appointment, newStart time.Time) error
}

// Config is the booking service's configuration.
type Config struct {
	Checkout       Checkout       // nil: paid bookings stay pending until their hold lapses
	PaymentRelease PaymentRelease // nil: nothing to release
	// RescheduleCheck, when set, may refuse a move (payments implements it).
	RescheduleCheck RescheduleCheck
	Now             func() time.Time // nil: time.Now
	// BaseURL is the service's public URL, used in calendar files.
	BaseURL string
}

// Service is the booking core.
type Service struct {
	db    *store.DB
	vault *vault.Vault
	cfg   Config
}

// New returns the booking service.
func New(db *store.DB, v *vault.Vault, cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{db: db, vault: v, cfg: cfg}
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

// tx runs fn in a transaction.
func (s *Service) tx(ctx context.Context, fn func(pgx.Tx) error) error { return s.db.Tx(ctx, fn) }

// denied records a refused access to an appointment (in its own
// transaction: the refused request changes nothing else).
func (s *Service) denied(ctx context.Context, who audit.Actor, a store.Appointment, action string) {
	_ = audit.Record(ctx, s.db.Pool, audit.Entry{Actor: who, Action: action, ObjectType: "appointment",
		ObjectID: a.ID, SubjectID: a.PatientID, Outcome: audit.Denied})
}
