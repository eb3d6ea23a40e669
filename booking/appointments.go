package booking

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/store"
	"teleconsult/vault"
)

// MaxReasonLength bounds the reason for a visit and a cancellation note.
const MaxReasonLength = 2000

// Roles as booking sees them (the values of auth's roles).
const (
	rolePatient      = "patient"
	rolePractitioner = "practitioner"
)

// BookRequest asks for an appointment.
type BookRequest struct {
	PractitionerID     string
	ConsultationTypeID string
	Start              time.Time
	Reason             string // health data: sealed, never logged
	RelativeID         string // a relative's profile of the patient, or "" for themselves
}

// Payment is where the patient pays for a booking.
type Payment struct {
	CheckoutURL string    `json:"checkout_url"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// Booked is the result of a booking.
type Booked struct {
	Appointment store.Appointment
	Payment     *Payment // nil for a free consultation or when payments are not wired
}

func reasonAAD(id string) vault.AAD {
	return vault.AAD{Table: "appointments", Column: "reason", RowID: id}
}

func cancelReasonAAD(id string) vault.AAD {
	return vault.AAD{Table: "appointments", Column: "cancel_reason", RowID: id}
}

// seal seals text with the patient's key, or returns nil for "".
func (s *Service) seal(ctx context.Context, q store.Q, patientID string, aad vault.AAD, text string) ([]byte, error) {
	if text == "" {
		return nil, nil
	}
	keyID, err := s.vault.AccountKey(ctx, q, patientID)
	if err != nil {
		return nil, err
	}
	return s.vault.Seal(ctx, q, keyID, aad, []byte(text))
}

func checkText(field, text string) error {
	if !utf8.ValidString(text) {
		return ErrInvalid.Withf("%s is not valid text", field)
	}
	if utf8.RuneCountInString(text) > MaxReasonLength {
		return ErrInvalid.Withf("%s is longer than %d characters", field, MaxReasonLength)
	}
	return nil
}

// checkBlock refuses a patient blocked by the practitioner, by hand or by
// the no-show rule.
func checkBlock(ctx context.Context, q store.Q, p store.Practitioner, patientID string, now time.Time) error {
	b, err := store.BlockOf(ctx, q, p.AccountID, patientID)
	if err != nil {
		return err
	}
	if b.Blocked {
		return ErrBlocked
	}
	since := now.Add(-NoShowWindow)
	if b.LiftedAt != nil && b.LiftedAt.After(since) {
		since = *b.LiftedAt
	}
	n, err := store.CountNoShows(ctx, q, p.AccountID, patientID, since)
	if err != nil {
		return err
	}
	return checkNoShows(n, p.NoShowLimit)
}

// checkNoShows refuses a patient with n no-shows when the practitioner's
// limit is reached.
func checkNoShows(n, limit int) error {
	if n >= limit {
		return ErrBlocked.Withf("after %d missed appointments you can no longer book this practitioner online; please contact the practice", n)
	}
	return nil
}

// expireHoldsLocked releases the practitioner's lapsed payment holds and
// offers the freed slots to the waiting list. The caller holds the
// practitioner's lock.
func (s *Service) expireHoldsLocked(ctx context.Context, q store.Q, practitionerID string, now time.Time) error {
	expired, err := store.ExpireHolds(ctx, q, practitionerID, now)
	if err != nil {
		return err
	}
	for _, a := range expired {
		if err := s.offerFreedLocked(ctx, q, a.PractitionerID, a.ConsultationTypeID, a.StartsAt, a.EndsAt, now); err != nil {
			return err
		}
	}
	return nil
}

// canSee reports whether who is the appointment's patient or practitioner.
func canSee(who audit.Actor, a store.Appointment) bool {
	return who.ID != "" && (who.ID == a.PatientID || who.ID == a.PractitionerID)
}

// View is an appointment as its patient or practitioner sees it.
type View struct {
	store.Appointment
	Reason             string `json:"reason,omitempty"`
	CancelReason       string `json:"cancel_reason,omitempty"`
	PractitionerName   string `json:"practitioner_name"`
	ConsultationName   string `json:"consultation_name"`
	PatientName        string `json:"patient_name"`
	CancellableOnline  bool   `json:"cancellable_online"`
	CancelCutoffBefore string `json:"cancel_cutoff,omitempty"`
}

// Get returns an appointment with its reason opened, for its patient or
// practitioner only (anyone else gets ErrNotFound, and the refusal is
// audited); the read is audited.
func (s *Service) Get(ctx context.Context, who audit.Actor, id string) (View, error) {
	a, err := store.AppointmentByID(ctx, s.db.Pool, id)
	if err != nil {
		return View{}, err
	}
	if !canSee(who, a) {
		s.denied(ctx, who, a, "read")
		return View{}, store.ErrNotFound.With("appointment not found")
	}
	var v View
	err = s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		if v, err = s.view(ctx, tx, a); err != nil {
			return err
		}
		if a.Reason != nil {
			r, err := s.vault.Open(ctx, tx, reasonAAD(a.ID), a.Reason)
			if err != nil && !errors.Is(err, vault.ErrKeyDestroyed) {
				return err
			}
			v.Reason = string(r)
		}
		if a.CancelReason != nil {
			r, err := s.vault.Open(ctx, tx, cancelReasonAAD(a.ID), a.CancelReason)
			if err != nil && !errors.Is(err, vault.ErrKeyDestroyed) {
				return err
			}
			v.CancelReason = string(r)
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "read", ObjectType: "appointment",
			ObjectID: a.ID, SubjectID: a.PatientID, Outcome: audit.OK})
	})
	return v, err
}

// viewCache keeps the rows several views of one listing share.
type viewCache struct {
	practitioners map[string]store.Practitioner
	types         map[string]string
}

// view adds names and the cancellation policy to a, without health data.
func (s *Service) view(ctx context.Context, q store.Q, a store.Appointment) (View, error) {
	return s.viewCached(ctx, q, a, &viewCache{})
}

func (s *Service) viewCached(ctx context.Context, q store.Q, a store.Appointment, c *viewCache) (View, error) {
	if c.practitioners == nil {
		c.practitioners, c.types = map[string]store.Practitioner{}, map[string]string{}
	}
	v := View{Appointment: a}
	p, ok := c.practitioners[a.PractitionerID]
	if !ok {
		var err error
		if p, err = store.PractitionerByID(ctx, q, a.PractitionerID); err != nil {
			return v, err
		}
		c.practitioners[a.PractitionerID] = p
	}
	v.PractitionerName = p.Name
	name, ok := c.types[a.ConsultationTypeID]
	if !ok {
		if ct, err := store.ConsultationTypeByID(ctx, q, a.ConsultationTypeID); err == nil {
			name = ct.Name
		}
		c.types[a.ConsultationTypeID] = name
	}
	v.ConsultationName = name
	if a.ProfileID != nil {
		if prof, err := store.ProfileByID(ctx, q, *a.ProfileID); err == nil {
			v.PatientName = prof.GivenNames + " " + prof.FamilyName
		}
	} else if acct, err := store.AccountByID(ctx, q, a.PatientID); err == nil {
		v.PatientName = acct.Name
	}
	cutoff := a.StartsAt.Add(-time.Duration(p.CancelCutoffMinutes) * time.Minute)
	v.CancellableOnline = slices.Contains(store.UpcomingStatuses, a.Status) && s.now().Before(cutoff)
	v.CancelCutoffBefore = cutoff.UTC().Format(time.RFC3339)
	return v, nil
}

// List returns the caller's appointments starting in [from, to): a
// patient's bookings, or a practitioner's agenda. Reasons are not
// included (open one appointment to read it).
func (s *Service) List(ctx context.Context, who audit.Actor, from, to time.Time) ([]View, error) {
	if !to.After(from) || to.Sub(from) > 400*24*time.Hour {
		return nil, ErrInvalid.With("to must be after from, at most 400 days later")
	}
	var list []store.Appointment
	var err error
	switch who.Role {
	case rolePatient:
		list, err = store.AppointmentsOfPatient(ctx, s.db.Pool, who.ID, from, to)
	case rolePractitioner:
		list, err = store.AppointmentsOfPractitioner(ctx, s.db.Pool, who.ID, from, to)
	default:
		return nil, ErrPatientsOnly.With("only patients and practitioners have appointments")
	}
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(list))
	cache := &viewCache{}
	for _, a := range list {
		v, err := s.viewCached(ctx, s.db.Pool, a, cache)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// lockOwned loads appointment id for a change by who, taking the
// practitioner's lock first (the order every agenda change uses) and then
// the appointment's row lock.
func (s *Service) lockOwned(ctx context.Context, tx pgx.Tx, who audit.Actor, id string) (store.Appointment, store.Practitioner, error) {
	a, err := store.AppointmentByID(ctx, tx, id)
	if err != nil {
		return a, store.Practitioner{}, err
	}
	if !canSee(who, a) {
		return a, store.Practitioner{}, errNotYours
	}
	if err := store.LockPractitioner(ctx, tx, a.PractitionerID); err != nil {
		return a, store.Practitioner{}, err
	}
	if a, err = store.LockAppointment(ctx, tx, id); err != nil {
		return a, store.Practitioner{}, err
	}
	p, err := store.PractitionerByID(ctx, tx, a.PractitionerID)
	return a, p, err
}

var errNotYours = store.ErrNotFound.With("appointment not found")

// Cancel cancels an upcoming appointment. Its patient may cancel until
// the practitioner's cut-off before the start; its practitioner at any
// time (the patient is told, with reason). The freed slot goes to the
// waiting list.
func (s *Service) Cancel(ctx context.Context, who audit.Actor, id, reason string) (store.Appointment, error) {
	if err := checkText("reason", reason); err != nil {
		return store.Appointment{}, err
	}
	now := s.now()
	var out store.Appointment
	err := s.tx(ctx, func(tx pgx.Tx) error {
		a, p, err := s.lockOwned(ctx, tx, who, id)
		if err != nil {
			return err
		}
		byPatient := who.ID == a.PatientID && who.ID != a.PractitionerID
		if !slices.Contains(store.UpcomingStatuses, a.Status) {
			return store.ErrWrongStatus.Withf("this appointment is %s and can no longer be cancelled", a.Status)
		}
		if byPatient && a.Status != store.StatusPendingPayment && !now.Before(a.StartsAt.Add(-time.Duration(p.CancelCutoffMinutes)*time.Minute)) {
			return ErrTooLateToCancel.Withf("online cancellation closes %s before the appointment; please contact the practice", human(time.Duration(p.CancelCutoffMinutes)*time.Minute))
		}
		sealed, err := s.seal(ctx, tx, a.PatientID, cancelReasonAAD(a.ID), reason)
		if err != nil {
			return err
		}
		if _, err := store.CancelAppointment(ctx, tx, a.ID, who.ID, sealed); err != nil {
			return err
		}
		if s.cfg.PaymentRelease != nil {
			if err := s.cfg.PaymentRelease.AppointmentCancelled(ctx, tx, a, byPatient); err != nil {
				return err
			}
		}
		if a.StartsAt.After(now) {
			if err := s.offerFreedLocked(ctx, tx, a.PractitionerID, a.ConsultationTypeID, a.StartsAt, a.EndsAt, now); err != nil {
				return err
			}
		}
		if err := refreshNextFree(ctx, tx, a.PractitionerID, now); err != nil {
			return err
		}
		recipient, audience, by := a.PractitionerID, rolePractitioner, rolePatient
		if !byPatient {
			recipient, audience, by = a.PatientID, rolePatient, rolePractitioner
		}
		if err := store.Enqueue(ctx, tx, store.OutboxEvent{Kind: "appointment.cancelled", RecipientID: recipient, AppointmentID: a.ID,
			Data: map[string]string{"audience": audience, "cancelled_by": by, "has_reason": boolString(reason != "")}}); err != nil {
			return err
		}
		if out, err = store.AppointmentByID(ctx, tx, a.ID); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "write", ObjectType: "appointment",
			ObjectID: a.ID, SubjectID: a.PatientID, Outcome: audit.OK, Detail: "cancel"})
	})
	if errors.Is(err, errNotYours) {
		if a, e := store.AppointmentByID(ctx, s.db.Pool, id); e == nil {
			s.denied(ctx, who, a, "write")
		}
	}
	return out, err
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// Reschedule moves the caller's upcoming appointment to another free slot
// of the same consultation type, in one statement: the new slot is taken
// and the old one released atomically. The patient may reschedule until
// the cancellation cut-off.
func (s *Service) Reschedule(ctx context.Context, who audit.Actor, id string, start time.Time) (store.Appointment, error) {
	if start.IsZero() {
		return store.Appointment{}, ErrInvalid.With("start is required")
	}
	now := s.now()
	var out store.Appointment
	err := s.tx(ctx, func(tx pgx.Tx) error {
		a, p, err := s.lockOwned(ctx, tx, who, id)
		if err != nil {
			return err
		}
		if who.ID != a.PatientID {
			return ErrPatientsOnly.With("only the patient can reschedule; a practitioner cancels with a reason")
		}
		if !slices.Contains(store.UpcomingStatuses, a.Status) {
			return store.ErrWrongStatus.Withf("this appointment is %s and can no longer be rescheduled", a.Status)
		}
		if !now.Before(a.StartsAt.Add(-time.Duration(p.CancelCutoffMinutes) * time.Minute)) {
			return ErrTooLateToCancel.Withf("online changes close %s before the appointment; please contact the practice", human(time.Duration(p.CancelCutoffMinutes)*time.Minute))
		}
		if err := s.expireOffersLocked(ctx, tx, a.PractitionerID, now); err != nil {
			return err
		}
		ag, err := loadAgenda(ctx, tx, a.PractitionerID, now)
		if err != nil {
			return err
		}
		ct, ok := ag.typeByID(a.ConsultationTypeID)
		if !ok {
			return store.ErrNotFound.With("this consultation type is no longer offered")
		}
		if err := checkBlock(ctx, tx, ag.p, who.ID, now); err != nil {
			return err
		}
		// The appointment's own time does not count as busy: moving it by
		// less than its length is allowed.
		var busy []Interval
		for _, b := range ag.busy {
			if !(b.Start.Equal(a.StartsAt) && b.End.Equal(a.EndsAt)) {
				busy = append(busy, b)
			}
		}
		r, err := rulesFor(ag.p, ct, ag.hours, ag.absences)
		if err != nil {
			return err
		}
		slot, err := CheckStart(r, busy, start.UTC(), now)
		if err != nil {
			return err
		}
		for _, o := range ag.offers {
			if o.StartsAt.Before(slot.End) && o.EndsAt.After(slot.Start) {
				if o.PatientID != who.ID {
					return ErrSlotOffered
				}
				if err := store.TakeOffer(ctx, tx, o.ID); err != nil {
					return err
				}
			}
		}
		if s.cfg.RescheduleCheck != nil {
			if err := s.cfg.RescheduleCheck.CheckReschedule(ctx, tx, a, slot.Start); err != nil {
				return err
			}
		}
		if err := store.MoveAppointment(ctx, tx, a.ID, slot.Start, slot.End, who.ID); err != nil {
			return err
		}
		if err := s.offerFreedLocked(ctx, tx, a.PractitionerID, a.ConsultationTypeID, a.StartsAt, a.EndsAt, now); err != nil {
			return err
		}
		if err := refreshNextFree(ctx, tx, a.PractitionerID, now); err != nil {
			return err
		}
		if err := store.Enqueue(ctx, tx, store.OutboxEvent{Kind: "appointment.rescheduled", RecipientID: a.PractitionerID, AppointmentID: a.ID,
			Data: map[string]string{"audience": rolePractitioner, "old_start": a.StartsAt.UTC().Format(time.RFC3339)}}); err != nil {
			return err
		}
		if err := store.Enqueue(ctx, tx, store.OutboxEvent{Kind: "appointment.rescheduled", RecipientID: a.PatientID, AppointmentID: a.ID,
			Data: map[string]string{"audience": rolePatient, "old_start": a.StartsAt.UTC().Format(time.RFC3339)}}); err != nil {
			return err
		}
		if out, err = store.AppointmentByID(ctx, tx, a.ID); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "write", ObjectType: "appointment",
			ObjectID: a.ID, SubjectID: a.PatientID, Outcome: audit.OK, Detail: "reschedule"})
	})
	if errors.Is(err, errNotYours) {
		if a, e := store.AppointmentByID(ctx, s.db.Pool, id); e == nil {
			s.denied(ctx, who, a, "write")
		}
	}
	return out, err
}

// practitionerMarks are the statuses a practitioner sets by hand, and
// from which statuses.
var practitionerMarks = map[string][]string{
	store.StatusArrived:   {store.StatusConfirmed},
	store.StatusCompleted: {store.StatusConfirmed, store.StatusArrived, store.StatusInProgress},
	store.StatusNoShow:    {store.StatusConfirmed, store.StatusArrived},
}

// Mark sets an appointment of the calling practitioner to arrived,
// completed or no_show. Completed and no_show are only possible once the
// appointment has started.
func (s *Service) Mark(ctx context.Context, who audit.Actor, id, status string) (store.Appointment, error) {
	from, ok := practitionerMarks[status]
	if !ok {
		return store.Appointment{}, ErrInvalid.With("status must be arrived, completed or no_show")
	}
	now := s.now()
	var out store.Appointment
	err := s.tx(ctx, func(tx pgx.Tx) error {
		a, _, err := s.lockOwned(ctx, tx, who, id)
		if err != nil {
			return err
		}
		if who.ID != a.PractitionerID {
			return errNotYours
		}
		if status != store.StatusArrived && now.Before(a.StartsAt) {
			return store.ErrWrongStatus.Withf("this appointment has not started yet; it cannot be marked %s", status)
		}
		if err := store.TransitionAppointment(ctx, tx, a.ID, from, status, who.ID, ""); err != nil {
			return err
		}
		out, err = store.AppointmentByID(ctx, tx, a.ID)
		return err
	})
	return out, err
}

// AnnounceDelay tells the patients of the calling practitioner's
// remaining appointments today (in the practitioner's time zone) that
// they run minutes late. It returns how many appointments were told.
func (s *Service) AnnounceDelay(ctx context.Context, who audit.Actor, minutes int) (int, error) {
	if who.Role != rolePractitioner {
		return 0, ErrPractitionerOnly
	}
	if minutes < 0 || minutes > 720 {
		return 0, ErrInvalid.With("the delay must be between 0 and 720 minutes")
	}
	now := s.now()
	n := 0
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := store.LockPractitioner(ctx, tx, who.ID); err != nil {
			return err
		}
		p, err := store.PractitionerByID(ctx, tx, who.ID)
		if err != nil {
			return err
		}
		loc, err := location(p.TimeZone)
		if err != nil {
			return err
		}
		l := now.In(loc)
		endOfDay := time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, loc)
		list, err := store.AppointmentsOfPractitioner(ctx, tx, who.ID, now.Add(-4*time.Hour), endOfDay)
		if err != nil {
			return err
		}
		for _, a := range list {
			if !slices.Contains([]string{store.StatusConfirmed, store.StatusArrived}, a.Status) || a.EndsAt.Before(now) {
				continue
			}
			if err := store.SetAppointmentDelay(ctx, tx, a.ID, minutes, who.ID); err != nil {
				return err
			}
			if err := store.Enqueue(ctx, tx, store.OutboxEvent{Kind: "appointment.delay", RecipientID: a.PatientID, AppointmentID: a.ID,
				Data: map[string]string{"minutes": strconv.Itoa(minutes)}}); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// CancelReasonForNotice opens the reason given for a cancellation so
// that the notification to the patient can say why, and audits the read
// as the system's. It audits, so call it last in q's transaction. An
// appointment cancelled without a reason gives "".
func (s *Service) CancelReasonForNotice(ctx context.Context, q store.Q, a store.Appointment) (string, error) {
	if a.CancelReason == nil {
		return "", nil
	}
	b, err := s.vault.Open(ctx, q, cancelReasonAAD(a.ID), a.CancelReason)
	if err != nil {
		return "", err
	}
	if err := audit.Record(ctx, q, audit.Entry{Actor: audit.System, Action: "read", ObjectType: "appointment",
		ObjectID: a.ID, SubjectID: a.PatientID, Outcome: audit.OK, Detail: "cancellation notice"}); err != nil {
		return "", err
	}
	return string(b), nil
}
