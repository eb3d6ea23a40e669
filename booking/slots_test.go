package booking

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func starts(slots []Slot) []string {
	var out []string
	for _, s := range slots {
		out = append(out, s.Start.UTC().Format(time.RFC3339))
	}
	return out
}

func TestSlots(t *testing.T) {
	paris := mustLoc(t, "Europe/Paris")
	morning := []Range{{Weekday: time.Monday, Start: 9 * 60, End: 12 * 60}}
	night := []Range{{Weekday: time.Sunday, Start: 1 * 60, End: 4 * 60}}
	longAgo := utc("2026-01-01T00:00:00Z")
	tests := []struct {
		name     string
		rules    Rules
		busy     []Interval
		from, to string
		now      time.Time
		want     []string
	}{
		{
			name:  "a plain Monday morning in winter (UTC+1)",
			rules: Rules{Location: paris, Hours: morning, Duration: 30 * time.Minute, Horizon: 365 * 24 * time.Hour},
			from:  "2026-02-02T00:00:00Z", to: "2026-02-03T00:00:00Z", now: longAgo,
			want: []string{"2026-02-02T08:00:00Z", "2026-02-02T08:30:00Z", "2026-02-02T09:00:00Z", "2026-02-02T09:30:00Z", "2026-02-02T10:00:00Z", "2026-02-02T10:30:00Z"},
		},
		{
			name:  "appointments and an absence are removed",
			rules: Rules{Location: paris, Hours: morning, Duration: 30 * time.Minute, Horizon: 365 * 24 * time.Hour, Absences: []Interval{{Start: utc("2026-02-02T10:00:00Z"), End: utc("2026-02-05T00:00:00Z")}}},
			busy:  []Interval{{Start: utc("2026-02-02T08:30:00Z"), End: utc("2026-02-02T09:15:00Z")}},
			from:  "2026-02-02T00:00:00Z", to: "2026-02-10T00:00:00Z", now: longAgo,
			want: []string{"2026-02-02T08:00:00Z", "2026-02-02T09:30:00Z", "2026-02-09T08:00:00Z", "2026-02-09T08:30:00Z", "2026-02-09T09:00:00Z", "2026-02-09T09:30:00Z", "2026-02-09T10:00:00Z", "2026-02-09T10:30:00Z"},
		},
		{
			name:  "minimum notice hides the next two hours",
			rules: Rules{Location: paris, Hours: morning, Duration: 30 * time.Minute, Horizon: 365 * 24 * time.Hour, MinNotice: 2 * time.Hour},
			from:  "2026-02-02T00:00:00Z", to: "2026-02-03T00:00:00Z", now: utc("2026-02-02T07:45:00Z"),
			want: []string{"2026-02-02T10:00:00Z", "2026-02-02T10:30:00Z"},
		},
		{
			name:  "the horizon cuts the week after",
			rules: Rules{Location: paris, Hours: morning, Duration: 60 * time.Minute, Horizon: 8 * 24 * time.Hour},
			from:  "2026-02-01T00:00:00Z", to: "2026-03-01T00:00:00Z", now: utc("2026-02-01T09:00:00Z"),
			want: []string{"2026-02-02T08:00:00Z", "2026-02-02T09:00:00Z", "2026-02-02T10:00:00Z", "2026-02-09T08:00:00Z"},
		},
		{
			name:  "summer time begins: 01:00-04:00 on 29 March 2026 is two hours",
			rules: Rules{Location: paris, Hours: night, Duration: 30 * time.Minute, Horizon: 365 * 24 * time.Hour},
			from:  "2026-03-28T00:00:00Z", to: "2026-03-30T00:00:00Z", now: longAgo,
			want: []string{"2026-03-29T00:00:00Z", "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"},
		},
		{
			name:  "summer time ends: 01:00-04:00 on 25 October 2026 is four hours",
			rules: Rules{Location: paris, Hours: night, Duration: 30 * time.Minute, Horizon: 365 * 24 * time.Hour},
			from:  "2026-10-24T00:00:00Z", to: "2026-10-26T00:00:00Z", now: longAgo,
			want: []string{"2026-10-24T23:00:00Z", "2026-10-24T23:30:00Z", "2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z",
				"2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z", "2026-10-25T02:30:00Z"},
		},
		{
			name:  "a slot that would run past the end of the range is not offered",
			rules: Rules{Location: paris, Hours: []Range{{Weekday: time.Monday, Start: 9 * 60, End: 10*60 + 40}}, Duration: 45 * time.Minute, Horizon: 365 * 24 * time.Hour},
			from:  "2026-02-02T00:00:00Z", to: "2026-02-03T00:00:00Z", now: longAgo,
			want: []string{"2026-02-02T08:00:00Z", "2026-02-02T08:45:00Z"},
		},
		{
			name:  "two ranges a day, in New York",
			rules: Rules{Location: mustLoc(t, "America/New_York"), Hours: []Range{{time.Monday, 9 * 60, 10 * 60}, {time.Monday, 14 * 60, 15 * 60}}, Duration: time.Hour, Horizon: 365 * 24 * time.Hour},
			from:  "2026-02-02T00:00:00Z", to: "2026-02-03T12:00:00Z", now: longAgo,
			want: []string{"2026-02-02T14:00:00Z", "2026-02-02T19:00:00Z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := starts(Slots(tt.rules, tt.busy, utc(tt.from), utc(tt.to), tt.now))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d slots %v, want %d %v", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("slot %d = %s, want %s (all: %v)", i, got[i], tt.want[i], got)
				}
			}
		})
	}
}

func TestCheckStart(t *testing.T) {
	paris := mustLoc(t, "Europe/Paris")
	r := Rules{Location: paris, Hours: []Range{{time.Monday, 9 * 60, 12 * 60}}, Duration: 30 * time.Minute,
		Horizon: 60 * 24 * time.Hour, MinNotice: 2 * time.Hour,
		Absences: []Interval{{Start: utc("2026-02-09T00:00:00Z"), End: utc("2026-02-10T00:00:00Z")}}}
	busy := []Interval{{Start: utc("2026-02-02T09:00:00Z"), End: utc("2026-02-02T09:30:00Z")}}
	now := utc("2026-02-02T06:00:00Z")
	tests := []struct {
		start string
		want  error
	}{
		{"2026-02-02T08:30:00Z", nil},
		{"2026-02-01T08:30:00Z", ErrSlotPast},
		{"2026-02-02T07:30:00Z", ErrSlotTooSoon},
		{"2026-05-04T08:00:00Z", ErrSlotBeyondHorizon},
		{"2026-02-02T08:10:00Z", ErrSlotOffGrid},
		{"2026-02-02T13:00:00Z", ErrSlotOutsideHours},
		{"2026-02-03T08:00:00Z", ErrSlotOutsideHours},
		{"2026-02-09T08:00:00Z", ErrPractitionerAway},
		{"2026-02-02T09:00:00Z", ErrSlotTaken},
	}
	for _, tt := range tests {
		_, err := CheckStart(r, busy, utc(tt.start), now)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("CheckStart(%s) = %v, want %v", tt.start, err, tt.want)
		}
	}
}

func TestNextSlot(t *testing.T) {
	paris := mustLoc(t, "Europe/Paris")
	r := Rules{Location: paris, Hours: []Range{{time.Friday, 9 * 60, 10 * 60}}, Duration: 30 * time.Minute, Horizon: 60 * 24 * time.Hour}
	// Fully booked this Friday: the next slot is the Friday after.
	busy := []Interval{{Start: utc("2026-02-06T08:00:00Z"), End: utc("2026-02-06T09:00:00Z")}}
	s, ok := NextSlot(r, busy, utc("2026-02-02T06:00:00Z"))
	if !ok || !s.Start.Equal(utc("2026-02-13T08:00:00Z")) {
		t.Fatalf("NextSlot = %v %v, want 2026-02-13T08:00Z", s, ok)
	}
	r.Horizon = 7 * 24 * time.Hour
	if s, ok := NextSlot(r, busy, utc("2026-02-02T06:00:00Z")); ok {
		t.Fatalf("NextSlot beyond the horizon = %v", s)
	}
}

// TestNextSlotIsFirstOfSlots checks NextSlot, which skips booked-up
// stretches, against the first slot Slots lists over the whole horizon,
// on agendas booked at random (overlapping, back to back, across
// daylight-saving changes, with a notice and an absence).
func TestNextSlotIsFirstOfSlots(t *testing.T) {
	paris := mustLoc(t, "Europe/Paris")
	rng := rand.New(rand.NewPCG(1, 2))
	hours := []Range{{time.Monday, 8 * 60, 12 * 60}, {time.Monday, 14 * 60, 18 * 60}, {time.Wednesday, 0, 24 * 60}, {time.Sunday, 60, 4 * 60}}
	for i := range 300 {
		now := utc("2026-03-20T07:13:00Z").Add(time.Duration(rng.IntN(60*24*20)) * time.Minute)
		r := Rules{Location: paris, Hours: hours, Duration: time.Duration(10+rng.IntN(4)*10) * time.Minute,
			Horizon: time.Duration(1+rng.IntN(20)) * 24 * time.Hour, MinNotice: time.Duration(rng.IntN(3)) * time.Hour}
		if rng.IntN(3) == 0 {
			a := now.Add(time.Duration(rng.IntN(5*24)) * time.Hour)
			r.Absences = []Interval{{Start: a, End: a.Add(time.Duration(1+rng.IntN(72)) * time.Hour)}}
		}
		var busy []Interval
		at := now.Add(-2 * time.Hour)
		for range rng.IntN(400) {
			at = at.Add(time.Duration(rng.IntN(4)*10) * time.Minute) // back to back a quarter of the time
			d := time.Duration(10+rng.IntN(9)*10) * time.Minute
			busy = append(busy, Interval{Start: at, End: at.Add(d)})
			at = at.Add(d)
		}
		rng.Shuffle(len(busy), func(i, j int) { busy[i], busy[j] = busy[j], busy[i] })
		all := Slots(r, busy, now, now.Add(r.Horizon), now)
		got, ok := NextSlot(r, busy, now)
		if len(all) == 0 {
			if ok {
				t.Fatalf("case %d: NextSlot = %v, Slots lists none", i, got)
			}
			continue
		}
		if !ok || got != all[0] {
			t.Fatalf("case %d: NextSlot = %v %v, want %v", i, got, ok, all[0])
		}
	}
}
