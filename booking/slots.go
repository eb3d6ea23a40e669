package booking

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"teleconsult/problem"
	"teleconsult/store"
)

// Interval is a half-open time range [Start, End).
type Interval = store.Interval

// Range is a weekly opening range in local wall-clock time: on Weekday,
// from Start to End minutes after midnight (End may be 24*60).
type Range struct {
	Weekday    time.Weekday
	Start, End int
}

// Rules are what decides the free slots of one consultation type.
type Rules struct {
	Location  *time.Location // the practitioner's time zone
	Hours     []Range        // weekly opening hours of this consultation type
	Duration  time.Duration  // one slot; slots follow each other from the start of a range
	Absences  []Interval     // the practitioner is away
	Horizon   time.Duration  // slots start before now+Horizon
	MinNotice time.Duration  // slots start at or after now+MinNotice
}

// Slot is a bookable time.
type Slot struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Reasons a start time is not a free slot.
var (
	ErrSlotPast          = problem.New(problem.Invalid, "slot_past", "this time is in the past")
	ErrSlotTooSoon       = problem.New(problem.Invalid, "slot_too_soon", "this practitioner takes bookings only with some notice")
	ErrSlotBeyondHorizon = problem.New(problem.Invalid, "slot_beyond_horizon", "this practitioner does not take bookings that far ahead")
	ErrSlotOutsideHours  = problem.New(problem.Invalid, "slot_outside_hours", "the practitioner does not consult at this time")
	ErrSlotOffGrid       = problem.New(problem.Invalid, "slot_off_grid", "this time is not the start of a slot")
	ErrPractitionerAway  = problem.New(problem.Conflict, "practitioner_away", "the practitioner is away at this time")
	ErrSlotTaken         = store.ErrSlotTaken
)

// grid returns every slot of the opening hours whose start lies in
// [lo, hi), ignoring appointments, absences, notice and horizon, sorted
// and without duplicates. Slots step in absolute time from the start of
// each range, so a range that spans a daylight-saving change holds as
// many slots as it has real time for: 01:00-04:00 on the last Sunday of
// March in Paris is two hours long, on the last Sunday of October four.
func grid(r Rules, lo, hi time.Time) []Slot {
	if r.Duration <= 0 || !lo.Before(hi) {
		return nil
	}
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	var byDay [7][]Range
	for _, h := range r.Hours {
		if h.Weekday < time.Sunday || h.Weekday > time.Saturday {
			continue // no day of the calendar
		}
		byDay[h.Weekday] = append(byDay[h.Weekday], h)
	}
	var out []Slot
	l := lo.In(loc)
	// Start a day early: a range of the previous local day can end after
	// lo (and wall-clock days are not always 24 hours long).
	day := time.Date(l.Year(), l.Month(), l.Day()-1, 0, 0, 0, 0, loc)
	for y, m, d := day.Date(); ; d++ {
		date := time.Date(y, m, d, 12, 0, 0, 0, loc)
		if date.Add(-36 * time.Hour).After(hi) {
			break
		}
		for _, h := range byDay[date.Weekday()] {
			start := time.Date(date.Year(), date.Month(), date.Day(), h.Start/60, h.Start%60, 0, 0, loc)
			end := time.Date(date.Year(), date.Month(), date.Day(), h.End/60, h.End%60, 0, 0, loc)
			for t := start; !t.Add(r.Duration).After(end); t = t.Add(r.Duration) {
				if t.Before(lo) {
					continue
				}
				if !t.Before(hi) {
					break
				}
				out = append(out, Slot{Start: t.UTC(), End: t.Add(r.Duration).UTC()})
			}
		}
	}
	// Ranges come in the order of the opening hours, not of time.
	slices.SortFunc(out, func(a, b Slot) int { return a.Start.Compare(b.Start) })
	uniq := out[:0]
	for i, s := range out {
		if i == 0 || !s.Start.Equal(out[i-1].Start) {
			uniq = append(uniq, s)
		}
	}
	return uniq
}

// overlaps reports whether [s, e) meets any interval of merged, which
// sortIntervals returned (sorted, disjoint).
func overlaps(merged []Interval, s, e time.Time) bool {
	i := sort.Search(len(merged), func(i int) bool { return merged[i].End.After(s) })
	return i < len(merged) && merged[i].Start.Before(e)
}

// sortIntervals returns the intervals sorted by start, with overlapping
// ones merged, so that overlaps can binary-search them.
func sortIntervals(in []Interval) []Interval {
	s := append([]Interval(nil), in...)
	slices.SortFunc(s, func(a, b Interval) int { return a.Start.Compare(b.Start) })
	out := s[:0]
	for _, iv := range s {
		if n := len(out); n > 0 && !iv.Start.After(out[n-1].End) {
			if iv.End.After(out[n-1].End) {
				out[n-1].End = iv.End
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// Slots returns the free slots starting in [from, to): the opening hours
// cut into slots, minus those that overlap busy (appointments) or an
// absence, minus those inside the minimum notice or beyond the horizon
// counted from now. It is a pure function of its arguments.
func Slots(r Rules, busy []Interval, from, to, now time.Time) []Slot {
	lo, hi := from, to
	if earliest := now.Add(r.MinNotice); lo.Before(earliest) {
		lo = earliest
	}
	if r.Horizon > 0 {
		if latest := now.Add(r.Horizon); hi.After(latest) {
			hi = latest
		}
	}
	taken := sortIntervals(append(append([]Interval(nil), busy...), r.Absences...))
	var out []Slot
	for _, s := range grid(r, lo, hi) {
		if !overlaps(taken, s.Start, s.End) {
			out = append(out, s)
		}
	}
	return out
}

// NextSlot returns the earliest free slot from now on, within the horizon.
func NextSlot(r Rules, busy []Interval, now time.Time) (Slot, bool) {
	end := now.Add(r.Horizon)
	taken := sortIntervals(append(append([]Interval(nil), busy...), r.Absences...))
	lo := now
	if earliest := now.Add(r.MinNotice); lo.Before(earliest) {
		lo = earliest
	}
	// A day at a time: the earliest free slot is most often within the
	// first day or two, and a week of slots costs seven times a day's to
	// build (every booking computes it). No slot starting inside a taken
	// interval is free, so the slots are cut only in the gaps between
	// taken intervals: a booked-up stretch is skipped whole.
	for lo.Before(end) {
		i := sort.Search(len(taken), func(i int) bool { return taken[i].End.After(lo) })
		if i < len(taken) && !taken[i].Start.After(lo) {
			lo = taken[i].End
			continue
		}
		to := lo.Add(24 * time.Hour)
		if i < len(taken) && taken[i].Start.Before(to) {
			to = taken[i].Start
		}
		if to.After(end) {
			to = end
		}
		for _, s := range grid(r, lo, to) {
			if !overlaps(taken, s.Start, s.End) {
				return s, true
			}
		}
		lo = to
	}
	return Slot{}, false
}

// CheckStart says why start is not a free slot under r, or returns the
// slot when it is.
func CheckStart(r Rules, busy []Interval, start, now time.Time) (Slot, error) {
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	switch {
	case !start.After(now):
		return Slot{}, ErrSlotPast
	case start.Before(now.Add(r.MinNotice)):
		return Slot{}, ErrSlotTooSoon.Withf("this practitioner takes bookings at least %s ahead", human(r.MinNotice))
	case r.Horizon > 0 && !start.Before(now.Add(r.Horizon)):
		return Slot{}, ErrSlotBeyondHorizon.Withf("this practitioner takes bookings up to %d days ahead", int(r.Horizon.Hours()/24))
	}
	var slot Slot
	found := false
	for _, s := range grid(r, start.Add(-r.Duration), start.Add(time.Second)) {
		if s.Start.Equal(start) {
			slot, found = s, true
		}
	}
	if !found {
		// Inside opening hours but not on a slot boundary?
		for _, s := range grid(r, start.Add(-r.Duration), start.Add(time.Second)) {
			if s.Start.Before(start) && s.End.After(start) {
				return Slot{}, ErrSlotOffGrid.Withf("slots start at %s, %s, ...; %s is not one of them",
					s.Start.In(loc).Format("15:04"), s.End.In(loc).Format("15:04"), start.In(loc).Format("15:04"))
			}
		}
		return Slot{}, ErrSlotOutsideHours.Withf("the practitioner does not consult at %s", start.In(loc).Format("Monday 2 January 15:04 MST"))
	}
	if overlaps(sortIntervals(r.Absences), slot.Start, slot.End) {
		return Slot{}, ErrPractitionerAway
	}
	if overlaps(sortIntervals(busy), slot.Start, slot.End) {
		return Slot{}, ErrSlotTaken
	}
	return slot, nil
}

func human(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%d h", int(d.Hours()))
	}
	return fmt.Sprintf("%d min", int(d.Minutes()))
}
