package booking

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"teleconsult/audit"
	"teleconsult/problem"
	"teleconsult/store"
)

// Book books a slot for the calling patient (or one of their relatives).
// A paid consultation is created pending_payment with a 30-minute hold
// and, when payments are wired, a checkout is started after the commit.
//
// The transaction is two round trips to PostgreSQL (bookTx): everything
// it reads, then everything it writes with the commit. The reason is
// sealed before it begins, so that the practitioner's lock is held for
// the database's work only.
func (s *Service) Book(ctx context.Context, who audit.Actor, req BookRequest) (Booked, error) {
	if who.Role != rolePatient {
		return Booked{}, ErrPatientsOnly.With("only patients can book appointments")
	}
	if err := checkText("reason", req.Reason); err != nil {
		return Booked{}, err
	}
	if req.Start.IsZero() {
		return Booked{}, ErrInvalid.With("start is required")
	}
	if !store.ValidID(req.PractitionerID) {
		return Booked{}, store.ErrNotFound.With("practitioner not found")
	}
	if req.RelativeID != "" && !store.ValidID(req.RelativeID) {
		return Booked{}, store.ErrNotFound.With("relative not found")
	}
	now := s.now()
	id := store.NewUUID()
	// The patient's data key is created on first use and kept whether or
	// not this booking commits.
	reason, err := s.seal(ctx, s.db.Pool, who.ID, reasonAAD(id), req.Reason)
	if err != nil {
		return Booked{}, err
	}
	booked, err := s.bookTx(ctx, who, req, id, reason, now)
	if err != nil {
		return Booked{}, err
	}
	out := Booked{Appointment: booked}
	if booked.Status == store.StatusPendingPayment && s.cfg.Checkout != nil {
		url, expires, err := s.cfg.Checkout.StartCheckout(ctx, s.db.Pool, booked)
		if err != nil {
			// Release the slot at once rather than leave it held for 30
			// minutes by a booking nobody can pay.
			_ = s.tx(ctx, func(tx pgx.Tx) error {
				if err := store.LockPractitioner(ctx, tx, booked.PractitionerID); err != nil {
					return err
				}
				if err := store.TransitionAppointment(ctx, tx, booked.ID, []string{store.StatusPendingPayment}, store.StatusExpired, "", "checkout could not start"); err != nil {
					return err
				}
				return refreshNextFree(ctx, tx, booked.PractitionerID, s.now())
			})
			return Booked{}, ErrCheckoutFailed.Wrap(err)
		}
		out.Payment = &Payment{CheckoutURL: url, ExpiresAt: expires}
	}
	return out, nil
}

// bookChecks is what a booking checks about the patient and the
// practitioner's lapsed holds and offers, read in one statement.
type bookChecks struct {
	blocked bool
	noShows int  // since the no-show window or the last lifted block
	seen    bool // the practitioner has had a consultation with the patient
	lapsed  bool // the practitioner has lapsed payment holds or offers to expire
	profile *string
}

// SQL of bookTx's first round trip. The lock comes first; each statement
// after it reads with a snapshot taken once the lock is held, as
// loadAgenda would.
const (
	sqlLockPractitioner = `SELECT p.account_id, p.time_zone, p.horizon_days, p.min_notice_minutes, p.no_show_limit
		FROM practitioners p JOIN accounts a ON a.id = p.account_id
		WHERE p.account_id = $1 AND a.disabled_at IS NULL
		FOR NO KEY UPDATE OF p`
	sqlTypes = `SELECT id, practitioner_id, name, mode, duration_minutes, fee_cents, currency, new_patients, active, next_free_at
		FROM consultation_types WHERE practitioner_id = $1 AND active ORDER BY mode DESC, duration_minutes, name`
	sqlHours = `SELECT consultation_type_id, weekday, to_char(start_time, 'HH24:MI') AS start_time,
		to_char(end_time, 'HH24:MI') AS end_time FROM opening_hours
		WHERE practitioner_id = $1 ORDER BY consultation_type_id, weekday, start_time`
	sqlAbsences = `SELECT id, practitioner_id, starts_at, ends_at FROM absences
		WHERE practitioner_id = $1 AND ends_at > $2 ORDER BY starts_at`
	// Busy times and standing offers up to the end of the horizon, as
	// loadAgenda reads them, except that the busy times come merged:
	// range_agg joins the appointments that meet or overlap into one
	// interval. Why: a practitioner's agenda is mostly booked back to
	// back, so a few intervals stand for hundreds of appointments, which
	// PostgreSQL would otherwise send and the service decode, sort and
	// search at every booking. Slots overlap the merged intervals exactly
	// when they overlap one of the appointments (sortIntervals merges
	// them the same way). range_agg and unnest of a multirange need
	// PostgreSQL 14 or later.
	sqlBusy = `SELECT lower(r) AS starts_at, upper(r) AS ends_at
		FROM unnest((SELECT range_agg(tstzrange(starts_at, ends_at)) FROM appointments
			WHERE practitioner_id = $1 AND status = ANY($2) AND ends_at > $3
			  AND starts_at < $4::timestamptz + make_interval(days => (SELECT horizon_days + 1 FROM practitioners WHERE account_id = $1)))) AS r
		ORDER BY 1`
	sqlOffers = `SELECT id, entry_id, practitioner_id, patient_id, consultation_type_id, starts_at, ends_at, expires_at, status
		FROM waitlist_offers
		WHERE practitioner_id = $1 AND status = 'offered' AND expires_at > $3 AND ends_at > $2
		  AND starts_at < $3::timestamptz + make_interval(days => (SELECT horizon_days + 1 FROM practitioners WHERE account_id = $1))
		ORDER BY starts_at`
	// The block, the no-shows since the window or the last lift
	// (checkBlock), whether the practitioner has seen the patient
	// (store.HasSeenPatient), whether holds or offers have lapsed
	// (store.ExpireHolds, store.ExpireOffers) and the relative's profile
	// (store.ProfileOf).
	sqlChecks = `SELECT coalesce(b.blocked, false),
		(SELECT count(*) FROM appointments WHERE practitioner_id = $1 AND patient_id = $2 AND status = 'no_show'
			AND starts_at > greatest($3::timestamptz, b.lifted_at)),
		EXISTS (SELECT 1 FROM appointments WHERE practitioner_id = $1 AND patient_id = $2
			AND status IN ('completed', 'arrived', 'in_progress')),
		EXISTS (SELECT 1 FROM appointments WHERE practitioner_id = $1 AND status = 'pending_payment' AND hold_expires_at < $4)
			OR EXISTS (SELECT 1 FROM waitlist_offers WHERE practitioner_id = $1 AND status = 'offered' AND expires_at <= $4),
		(SELECT id FROM patient_profiles WHERE id = $5::uuid AND account_id = $2)
		FROM (VALUES (1)) AS one LEFT JOIN patient_blocks b ON b.practitioner_id = $1 AND b.patient_id = $2`
	// sqlInsert is store.InsertAppointment in one statement: the
	// appointment, and its creation by the patient in appointment_events
	// (store.RecordAppointmentEvent's row). The values it returns are the
	// ones the database sets.
	sqlInsert = `WITH a AS (
			INSERT INTO appointments
				(id, practitioner_id, consultation_type_id, patient_id, profile_id, mode, starts_at, ends_at,
				 status, fee_cents, currency, reason, hold_expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			RETURNING id, patient_id, status, delay_minutes, created_at, updated_at),
		e AS (
			INSERT INTO appointment_events (appointment_id, actor_id, from_status, to_status, note)
			SELECT id, patient_id, '', status, '' FROM a)
		SELECT delay_minutes, created_at, updated_at FROM a`
)

// bookTx runs the booking's transaction on one connection in two round
// trips: BEGIN, the practitioner's lock and every read the checks need,
// pipelined; then, once the checks pass, the appointment, its event, the
// next free slots, the notifications, the audit entry and COMMIT,
// pipelined. Lapsed holds or offers (rare) are expired between the two
// with the ordinary, one statement at a time, code.
func (s *Service) bookTx(ctx context.Context, who audit.Actor, req BookRequest, id string, reason []byte, now time.Time) (store.Appointment, error) {
	conn, err := s.db.Pool.Acquire(ctx)
	if err != nil {
		return store.Appointment{}, fmt.Errorf("booking: book: %w", err)
	}
	defer func() {
		// Not committed: roll back. A connection that cannot is closed by
		// Release, since it is not idle.
		if !conn.Conn().IsClosed() && conn.Conn().PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		conn.Release()
	}()

	pid := req.PractitionerID
	var ag agenda
	var chk bookChecks
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(sqlLockPractitioner, pid).QueryRow(func(row pgx.Row) error {
		return store.NotFound(row.Scan(&ag.p.AccountID, &ag.p.TimeZone, &ag.p.HorizonDays, &ag.p.MinNoticeMinutes, &ag.p.NoShowLimit), "practitioner")
	})
	b.Queue(sqlTypes, pid).Query(func(rows pgx.Rows) (err error) {
		ag.types, err = pgx.CollectRows(rows, pgx.RowToStructByName[store.ConsultationType])
		return err
	})
	b.Queue(sqlHours, pid).Query(func(rows pgx.Rows) (err error) {
		ag.hours, err = pgx.CollectRows(rows, pgx.RowToStructByName[store.OpeningHours])
		return err
	})
	b.Queue(sqlAbsences, pid, now.Add(-24*time.Hour)).Query(func(rows pgx.Rows) (err error) {
		ag.absences, err = pgx.CollectRows(rows, pgx.RowToStructByName[store.Absence])
		return err
	})
	b.Queue(sqlBusy, pid, store.OccupyingStatuses, now.Add(-24*time.Hour), now).Query(func(rows pgx.Rows) (err error) {
		ag.busy, err = pgx.CollectRows(rows, pgx.RowToStructByName[Interval])
		return err
	})
	b.Queue(sqlOffers, pid, now.Add(-24*time.Hour), now).Query(func(rows pgx.Rows) (err error) {
		ag.offers, err = pgx.CollectRows(rows, pgx.RowToStructByName[store.WaitlistOffer])
		return err
	})
	var relative *string
	if req.RelativeID != "" {
		relative = &req.RelativeID
	}
	b.Queue(sqlChecks, pid, who.ID, now.Add(-NoShowWindow), now, relative).QueryRow(func(row pgx.Row) error {
		return row.Scan(&chk.blocked, &chk.noShows, &chk.seen, &chk.lapsed, &chk.profile)
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return store.Appointment{}, bookErr(err)
	}
	if chk.lapsed {
		if err := s.expireHoldsLocked(ctx, conn, pid, now); err != nil {
			return store.Appointment{}, err
		}
		if err := s.expireOffersLocked(ctx, conn, pid, now); err != nil {
			return store.Appointment{}, err
		}
		if ag, err = loadAgenda(ctx, conn, pid, now); err != nil {
			return store.Appointment{}, err
		}
	}

	ct, ok := ag.typeByID(req.ConsultationTypeID)
	if !ok {
		return store.Appointment{}, store.ErrNotFound.With("consultation type not found")
	}
	if req.RelativeID != "" && chk.profile == nil {
		return store.Appointment{}, store.ErrNotFound.With("relative not found")
	}
	if chk.blocked {
		return store.Appointment{}, ErrBlocked
	}
	if err := checkNoShows(chk.noShows, ag.p.NoShowLimit); err != nil {
		return store.Appointment{}, err
	}
	if !ct.NewPatients && !chk.seen {
		return store.Appointment{}, ErrNoNewPatients
	}
	r, err := rulesFor(ag.p, ct, ag.hours, ag.absences)
	if err != nil {
		return store.Appointment{}, err
	}
	slot, err := CheckStart(r, ag.busy, req.Start.UTC(), now)
	if err != nil {
		return store.Appointment{}, err
	}
	var myOffer *store.WaitlistOffer
	for _, o := range ag.offers {
		if o.StartsAt.Before(slot.End) && o.EndsAt.After(slot.Start) {
			if o.PatientID != who.ID {
				return store.Appointment{}, ErrSlotOffered
			}
			myOffer = &o
		}
	}
	a := store.Appointment{
		ID: id, PractitionerID: ag.p.AccountID, ConsultationTypeID: ct.ID,
		PatientID: who.ID, ProfileID: chk.profile, Mode: ct.Mode, StartsAt: slot.Start, EndsAt: slot.End,
		Status: store.StatusConfirmed, FeeCents: ct.FeeCents, Currency: ct.Currency, Reason: reason,
	}
	if ct.FeeCents > 0 {
		hold := now.Add(HoldDuration)
		a.Status, a.HoldExpiresAt = store.StatusPendingPayment, &hold
	}

	// The next free slots: the agenda loaded above, under the
	// practitioner's lock, plus this booking is what a reload would read.
	ag.busy = append(ag.busy, Interval{Start: a.StartsAt, End: a.EndsAt})
	if myOffer != nil {
		ag.offers = slices.DeleteFunc(ag.offers, func(o store.WaitlistOffer) bool { return o.ID == myOffer.ID })
	}
	next, err := nextFree(ag, now)
	if err != nil {
		return store.Appointment{}, err
	}

	b = &pgx.Batch{}
	b.Queue(sqlInsert, a.ID, a.PractitionerID, a.ConsultationTypeID, a.PatientID, a.ProfileID, a.Mode, a.StartsAt, a.EndsAt,
		a.Status, a.FeeCents, a.Currency, a.Reason, a.HoldExpiresAt).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&a.DelayMinutes, &a.CreatedAt, &a.UpdatedAt)
		if store.ConstraintViolated(err, "appointments_no_overlap") {
			return ErrSlotTaken.Wrap(err)
		}
		return err
	})
	q := store.Queue{Batch: b}
	if myOffer != nil {
		if err := store.TakeOffer(ctx, q, myOffer.ID); err != nil {
			return store.Appointment{}, err
		}
	}
	if nextFreeChanged(ag.types, next) {
		if err := writeNextFree(ctx, q, ag, next); err != nil {
			return store.Appointment{}, err
		}
	}
	for _, ev := range []store.OutboxEvent{
		{Kind: "appointment.booked", RecipientID: who.ID, AppointmentID: a.ID, Data: map[string]string{"audience": rolePatient, "status": a.Status}},
		{Kind: "appointment.booked", RecipientID: ag.p.AccountID, AppointmentID: a.ID, Data: map[string]string{"audience": rolePractitioner, "status": a.Status}},
	} {
		if err := store.Enqueue(ctx, q, ev); err != nil {
			return store.Appointment{}, err
		}
	}
	if err := audit.Record(ctx, q, audit.Entry{Actor: who, Action: "create", ObjectType: "appointment",
		ObjectID: a.ID, SubjectID: who.ID, Outcome: audit.OK}); err != nil {
		return store.Appointment{}, err
	}
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		if ct.String() != "COMMIT" {
			return fmt.Errorf("booking: book: commit answered %q", ct.String())
		}
		return nil
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return store.Appointment{}, bookErr(err)
	}
	return a, nil
}

// bookErr keeps the booking's own errors (problems) as they are and
// gives the others context.
func bookErr(err error) error {
	var p *problem.Error
	if errors.As(err, &p) {
		return err
	}
	return fmt.Errorf("booking: book: %w", err)
}
