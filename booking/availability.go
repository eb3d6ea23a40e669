package booking

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store"
)

// MaxSlotsWindow bounds one slots request, so that a client cannot make
// the server compute a year of slots at once.
const MaxSlotsWindow = 62 * 24 * time.Hour

// parseClock parses "HH:MM" (or "HH:MM:SS") into minutes after midnight;
// "24:00" is the end of the day.
func parseClock(s string) (int, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, ErrInvalid.Withf("%q is not a time of day (HH:MM)", s)
	}
	h, err1 := strconv.Atoi(parts[0])
	m, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || h < 0 || h > 24 || m < 0 || m > 59 || h == 24 && m != 0 {
		return 0, ErrInvalid.Withf("%q is not a time of day (HH:MM)", s)
	}
	return h*60 + m, nil
}

// zones keeps the time zones loaded so far, by name. Why: time.LoadLocation
// reads and parses the zone's file at every call, and every booking needs
// its practitioner's zone once per consultation type. A Location never
// changes and only names that load are kept, so it holds at most the
// zone database.
var zones sync.Map

// location loads a practitioner's time zone.
func location(name string) (*time.Location, error) {
	if name == "" {
		name = "Europe/Paris"
	}
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, ErrInvalid.Withf("unknown time zone %q", name)
	}
	zones.Store(name, loc)
	return loc, nil
}

// rulesFor assembles the rules of one consultation type.
func rulesFor(p store.Practitioner, ct store.ConsultationType, hours []store.OpeningHours, absences []store.Absence) (Rules, error) {
	loc, err := location(p.TimeZone)
	if err != nil {
		return Rules{}, err
	}
	r := Rules{
		Location:  loc,
		Duration:  time.Duration(ct.DurationMinutes) * time.Minute,
		Horizon:   time.Duration(p.HorizonDays) * 24 * time.Hour,
		MinNotice: time.Duration(p.MinNoticeMinutes) * time.Minute,
	}
	for _, h := range hours {
		if h.ConsultationTypeID != ct.ID {
			continue
		}
		start, err := parseClock(h.Start)
		if err != nil {
			return Rules{}, err
		}
		end, err := parseClock(h.End)
		if err != nil {
			return Rules{}, err
		}
		if h.End == "00:00" {
			end = 24 * 60
		}
		r.Hours = append(r.Hours, Range{Weekday: time.Weekday(h.Weekday), Start: start, End: end})
	}
	for _, a := range absences {
		r.Absences = append(r.Absences, Interval{Start: a.StartsAt, End: a.EndsAt})
	}
	return r, nil
}

// agenda is what slot computations for one practitioner need.
type agenda struct {
	p        store.Practitioner
	types    []store.ConsultationType
	hours    []store.OpeningHours
	absences []store.Absence
	busy     []Interval
	offers   []store.WaitlistOffer
}

// loadAgenda reads a practitioner's rules and occupied times from now to
// the end of the horizon.
func loadAgenda(ctx context.Context, q store.Q, practitionerID string, now time.Time) (agenda, error) {
	var ag agenda
	var err error
	if ag.p, err = store.PractitionerByID(ctx, q, practitionerID); err != nil {
		return ag, err
	}
	if ag.types, err = store.ConsultationTypes(ctx, q, practitionerID, false); err != nil {
		return ag, err
	}
	if ag.hours, err = store.OpeningHoursOf(ctx, q, practitionerID); err != nil {
		return ag, err
	}
	if ag.absences, err = store.AbsencesOf(ctx, q, practitionerID, now.Add(-24*time.Hour)); err != nil {
		return ag, err
	}
	end := now.Add(time.Duration(ag.p.HorizonDays+1) * 24 * time.Hour)
	if ag.busy, err = store.BusyIntervals(ctx, q, practitionerID, now.Add(-24*time.Hour), end); err != nil {
		return ag, err
	}
	if ag.offers, err = store.StandingOffers(ctx, q, practitionerID, now.Add(-24*time.Hour), end, now); err != nil {
		return ag, err
	}
	return ag, nil
}

func (ag agenda) typeByID(id string) (store.ConsultationType, bool) {
	for _, t := range ag.types {
		if t.ID == id {
			return t, true
		}
	}
	return store.ConsultationType{}, false
}

// busyFor is the occupied time as patientID sees it: appointments, and
// the slots offered to other waiting patients.
func (ag agenda) busyFor(patientID string) []Interval {
	b := append([]Interval(nil), ag.busy...)
	for _, o := range ag.offers {
		if o.PatientID != patientID {
			b = append(b, Interval{Start: o.StartsAt, End: o.EndsAt})
		}
	}
	return b
}

// refreshNextFree recomputes and stores a practitioner's earliest free
// slot per consultation type. Call it in the transaction that changed the
// agenda, after the change.
func refreshNextFree(ctx context.Context, q store.Q, practitionerID string, now time.Time) error {
	ag, err := loadAgenda(ctx, q, practitionerID, now)
	if err != nil {
		return err
	}
	return storeNextFree(ctx, q, ag, now)
}

// storeNextFree computes and stores the earliest free slot per
// consultation type of ag, which must be the practitioner's agenda as the
// transaction now sees it (ag.p.AccountID's lock held).
func storeNextFree(ctx context.Context, q store.Q, ag agenda, now time.Time) error {
	next, err := nextFree(ag, now)
	if err != nil {
		return err
	}
	return writeNextFree(ctx, q, ag, next)
}

// writeNextFree stores next, the earliest free slots of ag.types, and on
// the practitioner their minimum overall and for video, in one
// statement, and marks the practitioner as refreshed now (what
// store.StalePractitioners looks at). ag.types must be every active type
// of the practitioner, read under its lock, with the next free slot
// stored then: a type whose slot did not move is not written again (each
// row updated costs its own heap tuple and WAL record).
func writeNextFree(ctx context.Context, q store.Q, ag agenda, next []nextFreeSlot) error {
	ids := make([]string, 0, len(next))
	ats := make([]*time.Time, 0, len(next))
	var first, firstVideo *time.Time
	offersVideo := false
	for i, n := range next {
		if !sameTime(ag.types[i].NextFreeAt, n.At) {
			ids, ats = append(ids, n.ConsultationTypeID), append(ats, n.At)
		}
		if n.At != nil && (first == nil || n.At.Before(*first)) {
			first = n.At
		}
		if ag.types[i].Mode != "video" {
			continue
		}
		offersVideo = true
		if n.At != nil && (firstVideo == nil || n.At.Before(*firstVideo)) {
			firstVideo = n.At
		}
	}
	_, err := q.Exec(ctx, `WITH t AS (
			UPDATE consultation_types c SET next_free_at = u.at
			FROM unnest($2::uuid[], $3::timestamptz[]) AS u(id, at)
			WHERE c.id = u.id AND c.practitioner_id = $1)
		UPDATE practitioners SET next_free_at = $4, next_video_free_at = $5, offers_video = $6, updated_at = now()
		WHERE account_id = $1`, ag.p.AccountID, ids, ats, first, firstVideo, offersVideo)
	if err != nil {
		return fmt.Errorf("booking: store next free slots: %w", err)
	}
	return nil
}

// nextFreeSlot is the earliest free slot of one consultation type (nil
// when none within the horizon).
type nextFreeSlot struct {
	ConsultationTypeID string
	At                 *time.Time
}

// nextFree computes the earliest free slot of each consultation type of ag.
func nextFree(ag agenda, now time.Time) ([]nextFreeSlot, error) {
	busy := ag.busyFor("")
	next := make([]nextFreeSlot, 0, len(ag.types))
	for _, ct := range ag.types {
		r, err := rulesFor(ag.p, ct, ag.hours, ag.absences)
		if err != nil {
			return nil, err
		}
		n := nextFreeSlot{ConsultationTypeID: ct.ID}
		if s, ok := NextSlot(r, busy, now); ok {
			at := s.Start
			n.At = &at
		}
		next = append(next, n)
	}
	return next, nil
}

// nextFreeChanged reports whether next differs from the earliest free
// slots stored with types (as loaded with the agenda).
func nextFreeChanged(types []store.ConsultationType, next []nextFreeSlot) bool {
	for i, n := range next {
		if !sameTime(types[i].NextFreeAt, n.At) {
			return true
		}
	}
	return false
}

// sameTime reports whether a and b are both nil or the same instant.
func sameTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

// Slots returns the free slots of a consultation type starting in
// [from, to), as patientID (empty for anyone) may book them.
func (s *Service) Slots(ctx context.Context, patientID, practitionerID, typeID string, from, to time.Time) ([]Slot, error) {
	if !to.After(from) {
		return nil, ErrInvalid.With("to must be after from")
	}
	if to.Sub(from) > MaxSlotsWindow {
		return nil, ErrInvalid.Withf("ask for at most %d days of slots at once", int(MaxSlotsWindow.Hours()/24))
	}
	now := s.now()
	ag, err := loadAgenda(ctx, s.db.Pool, practitionerID, now)
	if err != nil {
		return nil, err
	}
	ct, ok := ag.typeByID(typeID)
	if !ok {
		return nil, store.ErrNotFound.With("consultation type not found")
	}
	r, err := rulesFor(ag.p, ct, ag.hours, ag.absences)
	if err != nil {
		return nil, err
	}
	slots := Slots(r, ag.busyFor(patientID), from, to, now)
	if slots == nil {
		slots = []Slot{}
	}
	return slots, nil
}

// RefreshStale recomputes the next free slot of up to limit practitioners
// whose precomputed one has passed, each in its own short transaction,
// and returns how many it refreshed. The periodic job calls it.
func (s *Service) RefreshStale(ctx context.Context, limit int) (int, error) {
	now := s.now()
	ids, err := store.StalePractitioners(ctx, s.db.Pool, now, limit)
	if err != nil {
		return 0, err
	}
	for i, id := range ids {
		err := s.db.Tx(ctx, func(tx pgx.Tx) error {
			if err := store.LockPractitioner(ctx, tx, id); err != nil {
				return err
			}
			return refreshNextFree(ctx, tx, id, now)
		})
		if err != nil {
			return i, fmt.Errorf("booking: refresh %s: %w", id, err)
		}
	}
	return len(ids), nil
}

// RefreshPractitioner recomputes one practitioner's next free slot.
func (s *Service) RefreshPractitioner(ctx context.Context, practitionerID string) error {
	return s.db.Tx(ctx, func(tx pgx.Tx) error {
		if err := store.LockPractitioner(ctx, tx, practitionerID); err != nil {
			return err
		}
		return refreshNextFree(ctx, tx, practitionerID, s.now())
	})
}
