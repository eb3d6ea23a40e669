package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store"
)

// Reminder is one entry of the reminder schedule: a message sent Days
// calendar days plus Before ahead of an appointment, on Channels.
//
// Days counts calendar days in the practitioner's time zone, so "the day
// before" an appointment at 10:30 is 10:30 the previous day even across a
// daylight-saving change (23 or 25 hours earlier); Before is exact time.
type Reminder struct {
	Name      string        // stable id, part of the once-only key: "7d", "1d", "1h"
	Days      int           // calendar days before the start
	Before    time.Duration // and this much earlier
	Channels  []string      // store.ChannelEmail, store.ChannelSMS
	VideoOnly bool          // only for video consultations
}

// DefaultReminders: an email a week before (when booked further ahead),
// an email and an SMS the day before, and for video consultations an SMS
// an hour before with the link to join.
var DefaultReminders = []Reminder{
	{Name: "7d", Days: 7, Channels: []string{store.ChannelEmail}},
	{Name: "1d", Days: 1, Channels: []string{store.ChannelEmail, store.ChannelSMS}},
	{Name: "1h", Before: time.Hour, Channels: []string{store.ChannelSMS}, VideoOnly: true},
}

func (r Reminder) check() error {
	if r.Name == "" || len(r.Name) > 20 {
		return ErrConfig.With("notify: a reminder needs a short name")
	}
	if r.Days < 0 || r.Before < 0 || (r.Days == 0 && r.Before < time.Minute) {
		return ErrConfig.Withf("notify: reminder %s must be at least a minute before", r.Name)
	}
	if len(r.Channels) == 0 {
		return ErrConfig.Withf("notify: reminder %s has no channel", r.Name)
	}
	for _, c := range r.Channels {
		if c != store.ChannelEmail && c != store.ChannelSMS {
			return ErrConfig.Withf("notify: reminder %s: unknown channel %q", r.Name, c)
		}
	}
	return nil
}

// dueAt is when the reminder of an appointment starting at start is due.
func (r Reminder) dueAt(start time.Time, loc *time.Location) time.Time {
	return start.In(loc).AddDate(0, 0, -r.Days).Add(-r.Before)
}

// reminderScanLimit bounds one scan; the next scan continues.
const reminderScanLimit = 500

// ScheduleReminders enqueues the reminders that are due now, each once
// across all nodes (store.ClaimReminder), and returns how many it
// enqueued. A reminder is sent only if the appointment was booked before
// the reminder was due (one booked two days ahead gets no "in a week"
// email), and not once half its lead time has passed (a node down all
// night does not send "tomorrow" an hour before). Either way it is then
// recorded, so it is not considered again.
func (w *Worker) ScheduleReminders(ctx context.Context) (int, error) {
	now := w.now()
	sent := 0
	for _, r := range w.cfg.Reminders {
		// Why +2h: a calendar day is up to 25 hours long across a
		// daylight-saving change, and zones differ; dueAt decides exactly.
		horizon := now.Add(time.Duration(r.Days)*24*time.Hour + r.Before + 2*time.Hour)
		cands, err := store.ReminderCandidates(ctx, w.db.Pool, r.Name, now, horizon, reminderScanLimit)
		if err != nil {
			return sent, err
		}
		for _, a := range cands {
			if r.VideoOnly && a.Mode != "video" {
				continue
			}
			due := r.dueAt(a.StartsAt, loadLocation(a.TimeZone))
			if now.Before(due) {
				continue
			}
			lead := a.StartsAt.Sub(due)
			send := !a.CreatedAt.After(due) && now.Before(a.StartsAt.Add(-lead/2))
			err := w.db.Tx(ctx, func(tx pgx.Tx) error {
				ok, err := store.ClaimReminder(ctx, tx, a.ID, r.Name, a.StartsAt)
				if err != nil || !ok || !send {
					return err
				}
				sent++
				return store.Enqueue(ctx, tx, store.OutboxEvent{
					Kind:          store.EventAppointmentReminder,
					RecipientID:   a.PatientID,
					AppointmentID: a.ID,
					Data:          map[string]string{"reminder": r.Name, "starts_at": a.StartsAt.UTC().Format(time.RFC3339)},
					Channels:      r.Channels,
				})
			})
			if err != nil {
				return sent, fmt.Errorf("notify: reminder %s: %w", r.Name, err)
			}
		}
	}
	return sent, nil
}
