package booking

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/store"
)

// offerFreedLocked offers a freed slot [start, end) of a consultation
// type to the first patient in line on the practitioner's waiting list,
// exclusively for OfferDuration. The caller holds the practitioner's lock.
func (s *Service) offerFreedLocked(ctx context.Context, q store.Q, practitionerID, typeID string, start, end, now time.Time) error {
	p, err := store.PractitionerByID(ctx, q, practitionerID)
	if err != nil {
		return err
	}
	if start.Before(now.Add(time.Duration(p.MinNoticeMinutes) * time.Minute)) {
		return nil // too soon for anyone to book it
	}
	busy, err := store.BusyIntervals(ctx, q, practitionerID, start, end)
	if err != nil || len(busy) > 0 {
		return err
	}
	standing, err := store.StandingOffers(ctx, q, practitionerID, start, end, now)
	if err != nil || len(standing) > 0 {
		return err
	}
	e, err := store.NextInLine(ctx, q, practitionerID, typeID, start)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	o, err := store.InsertOffer(ctx, q, store.WaitlistOffer{EntryID: e.ID, PractitionerID: practitionerID, PatientID: e.PatientID,
		ConsultationTypeID: typeID, StartsAt: start, EndsAt: end, ExpiresAt: now.Add(OfferDuration)})
	if err != nil {
		return err
	}
	return store.Enqueue(ctx, q, store.OutboxEvent{Kind: "waitlist.offer", RecipientID: e.PatientID,
		Data: map[string]string{"offer_id": o.ID, "practitioner_id": practitionerID, "consultation_type_id": typeID,
			"start": start.UTC().Format(time.RFC3339), "expires_at": o.ExpiresAt.UTC().Format(time.RFC3339)}})
}

// expireOffersLocked ends the practitioner's lapsed offers and passes
// each slot on to the next in line. The caller holds the lock.
func (s *Service) expireOffersLocked(ctx context.Context, q store.Q, practitionerID string, now time.Time) error {
	expired, err := store.ExpireOffers(ctx, q, practitionerID, now)
	if err != nil {
		return err
	}
	for _, o := range expired {
		if err := s.offerFreedLocked(ctx, q, o.PractitionerID, o.ConsultationTypeID, o.StartsAt, o.EndsAt, now); err != nil {
			return err
		}
	}
	return nil
}

// JoinWaitlist puts the calling patient on a practitioner's waiting list,
// for any consultation type or one (typeID), for any date or before one.
func (s *Service) JoinWaitlist(ctx context.Context, who audit.Actor, practitionerID, typeID string, before *time.Time) (store.WaitlistEntry, error) {
	if who.Role != rolePatient {
		return store.WaitlistEntry{}, ErrPatientsOnly
	}
	now := s.now()
	if before != nil && !before.After(now) {
		return store.WaitlistEntry{}, ErrInvalid.With("the 'before' date is already past")
	}
	var out store.WaitlistEntry
	err := s.tx(ctx, func(tx pgx.Tx) error {
		p, err := store.PractitionerByID(ctx, tx, practitionerID)
		if err != nil {
			return err
		}
		if err := checkBlock(ctx, tx, p, who.ID, now); err != nil {
			return err
		}
		var tid *string
		if typeID != "" {
			ct, err := store.ConsultationTypeByID(ctx, tx, typeID)
			if err != nil || ct.PractitionerID != p.AccountID || !ct.Active {
				return store.ErrNotFound.With("consultation type not found")
			}
			tid = &ct.ID
		}
		out, err = store.JoinWaitlist(ctx, tx, store.WaitlistEntry{PractitionerID: p.AccountID, PatientID: who.ID, ConsultationTypeID: tid, BeforeAt: before})
		return err
	})
	return out, err
}

// LeaveWaitlist takes the calling patient's entry off a waiting list.
func (s *Service) LeaveWaitlist(ctx context.Context, who audit.Actor, entryID string) error {
	return s.tx(ctx, func(tx pgx.Tx) error { return store.LeaveWaitlist(ctx, tx, who.ID, entryID) })
}

// Waitlist returns the calling patient's entries and standing offers.
func (s *Service) Waitlist(ctx context.Context, who audit.Actor) ([]store.WaitlistEntry, []store.WaitlistOffer, error) {
	entries, err := store.WaitlistOfPatient(ctx, s.db.Pool, who.ID)
	if err != nil {
		return nil, nil, err
	}
	offers, err := store.OffersOfPatient(ctx, s.db.Pool, who.ID, s.now())
	return entries, offers, err
}

// ExpireAll is the periodic job's pass: it releases lapsed payment holds
// and lapsed waiting-list offers everywhere, passing each freed slot to
// the waiting list, one practitioner per transaction. It returns how many
// practitioners it touched.
func (s *Service) ExpireAll(ctx context.Context) (int, error) {
	now := s.now()
	ids, err := store.PractitionersWithLapsed(ctx, s.db.Pool, now)
	if err != nil {
		return 0, err
	}
	for i, id := range ids {
		err := s.tx(ctx, func(tx pgx.Tx) error {
			if err := store.LockPractitioner(ctx, tx, id); err != nil {
				return err
			}
			if err := s.expireHoldsLocked(ctx, tx, id, now); err != nil {
				return err
			}
			if err := s.expireOffersLocked(ctx, tx, id, now); err != nil {
				return err
			}
			return refreshNextFree(ctx, tx, id, now)
		})
		if err != nil {
			return i, err
		}
	}
	return len(ids), nil
}

// RunJobs runs the periodic booking jobs every interval until ctx ends:
// expiring holds and offers, and refreshing stale next free slots.
func (s *Service) RunJobs(ctx context.Context, interval time.Duration, log func(msg string, args ...any)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.ExpireAll(ctx); err != nil && ctx.Err() == nil {
			log("booking: expire holds and offers", "err", err)
		}
		if _, err := s.RefreshStale(ctx, 2000); err != nil && ctx.Err() == nil {
			log("booking: refresh next free slots", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Released is for other packages that free an appointment's slot with
// store.TransitionAppointment (payments expiring or cancelling an unpaid
// booking, say): called in the same transaction, after the transition,
// it offers the slot to the waiting list and refreshes the practitioner's
// next free slot, as a cancellation here does.
func (s *Service) Released(ctx context.Context, q store.Q, a store.Appointment) error {
	if err := store.LockPractitioner(ctx, q, a.PractitionerID); err != nil {
		return err
	}
	now := s.now()
	if a.StartsAt.After(now) {
		if err := s.offerFreedLocked(ctx, q, a.PractitionerID, a.ConsultationTypeID, a.StartsAt, a.EndsAt, now); err != nil {
			return err
		}
	}
	return refreshNextFree(ctx, q, a.PractitionerID, now)
}

// History returns an appointment's status changes to its patient or
// practitioner (anyone else: ErrNotFound).
func (s *Service) History(ctx context.Context, who audit.Actor, id string) ([]store.AppointmentEvent, error) {
	a, err := store.AppointmentByID(ctx, s.db.Pool, id)
	if err != nil {
		return nil, err
	}
	if !canSee(who, a) {
		s.denied(ctx, who, a, "read")
		return nil, errNotYours
	}
	return store.AppointmentEvents(ctx, s.db.Pool, id)
}
