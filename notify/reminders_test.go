package notify

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

// reminders returns the reminder deliveries, as "name channel" strings.
func reminderDeliveries(t *testing.T, db *store.DB) []store.OutboxMessage {
	t.Helper()
	return outbox(t, db, store.EventAppointmentReminder)
}

func TestReminderDayBeforeAcrossDaylightSaving(t *testing.T) {
	tests := []struct {
		name  string
		start time.Time // appointment, 10:30 in Paris
		due   time.Time // 10:30 in Paris the day before
	}{
		// Clocks go forward on Sunday 29 March 2026: Saturday 10:30 CET is
		// 09:30 UTC, 23 hours before Sunday 10:30 CEST (08:30 UTC).
		{"spring forward", time.Date(2026, 3, 29, 8, 30, 0, 0, time.UTC), time.Date(2026, 3, 28, 9, 30, 0, 0, time.UTC)},
		// Clocks go back on Sunday 25 October 2026: Saturday 10:30 CEST is
		// 08:30 UTC, 25 hours before Sunday 10:30 CET (09:30 UTC).
		{"fall back", time.Date(2026, 10, 25, 9, 30, 0, 0, time.UTC), time.Date(2026, 10, 24, 8, 30, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := storetest.New(t)
			c := newClock(tt.start.AddDate(0, -1, 0))
			w := newWorker(t, db, Config{Reminders: []Reminder{DefaultReminders[1]}}, c)
			f := newFixture(t, db, fixtureOptions{phone: "+33612345678"})
			f.book(t, tt.start, c.Now())

			for _, at := range []time.Time{tt.start.Add(-25 * time.Hour), tt.start.Add(-24 * time.Hour), tt.due.Add(-time.Second)} {
				if at.Before(tt.due) {
					c.Set(at)
					if n, err := w.ScheduleReminders(context.Background()); err != nil || n != 0 {
						t.Fatalf("at %v: %d reminders (%v), want none before %v", at, n, err, tt.due)
					}
				}
			}
			c.Set(tt.due)
			n, err := w.ScheduleReminders(context.Background())
			if err != nil || n != 1 {
				t.Fatalf("at %v: %d reminders (%v), want 1", tt.due, n, err)
			}
			// Another node scanning at the same moment adds nothing.
			w2 := newWorker(t, db, Config{Reminders: []Reminder{DefaultReminders[1]}}, c)
			if n, _ := w2.ScheduleReminders(context.Background()); n != 0 {
				t.Errorf("second node enqueued %d more", n)
			}
			drain(t, w)
			var channels []string
			for _, d := range reminderDeliveries(t, db) {
				channels = append(channels, d.Channel)
				if !strings.Contains(d.Body, "10:30") {
					t.Errorf("%s reminder does not say 10:30 local time:\n%s", d.Channel, d.Body)
				}
			}
			if len(channels) != 2 {
				t.Errorf("reminder channels %v, want email and sms", channels)
			}
		})
	}
}

func TestReminderSchedule(t *testing.T) {
	// Thursday 12 March 2026 at 10:30 in Paris.
	start := time.Date(2026, 3, 12, 9, 30, 0, 0, time.UTC)
	tests := []struct {
		name     string
		mode     string
		bookedAt time.Time
		scans    []time.Time
		want     []string // "reminder channel", in order of scheduling
	}{
		{"booked a month ahead, in person", "in_person", start.AddDate(0, -1, 0),
			[]time.Time{start.AddDate(0, 0, -7), start.AddDate(0, 0, -1), start.Add(-time.Hour)},
			[]string{"1d email", "1d sms", "7d email"}},
		{"booked a month ahead, video", "video", start.AddDate(0, -1, 0),
			[]time.Time{start.AddDate(0, 0, -7), start.AddDate(0, 0, -1), start.Add(-time.Hour)},
			[]string{"1d email", "1d sms", "1h sms", "7d email"}},
		{"booked three days ahead: no week reminder", "in_person", start.AddDate(0, 0, -3),
			[]time.Time{start.AddDate(0, 0, -3).Add(time.Minute), start.AddDate(0, 0, -1)},
			[]string{"1d email", "1d sms"}},
		{"worker down overnight: no late day-before reminder", "in_person", start.AddDate(0, -1, 0),
			[]time.Time{start.AddDate(0, 0, -7), start.Add(-2 * time.Hour)},
			[]string{"7d email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := storetest.New(t)
			c := newClock(tt.bookedAt)
			w := newWorker(t, db, Config{}, c)
			f := newFixture(t, db, fixtureOptions{mode: tt.mode, phone: "+33612345678"})
			appt := f.book(t, start, tt.bookedAt)
			var got []string
			for _, at := range tt.scans {
				c.Set(at)
				if _, err := w.ScheduleReminders(context.Background()); err != nil {
					t.Fatal(err)
				}
				drain(t, w)
				ms := reminderDeliveries(t, db)
				for _, m := range ms[len(got):] {
					got = append(got, reminderName(t, db, m.EventID)+" "+m.Channel)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("reminders %v, want %v", got, tt.want)
			}
			if tt.mode == "video" {
				for _, m := range reminderDeliveries(t, db) {
					if reminderName(t, db, m.EventID) == "1h" && !strings.Contains(m.Body, "https://rdv.example.org/consult/"+appt) {
						t.Errorf("1h SMS lacks the join link: %q", m.Body)
					}
				}
			}
		})
	}
}

func reminderName(t *testing.T, db *store.DB, eventID string) string {
	t.Helper()
	var name string
	if err := db.Pool.QueryRow(context.Background(), `SELECT data->>'reminder' FROM outbox_events WHERE id = $1`, eventID).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestCancelledAppointmentSendsNoLaterReminder(t *testing.T) {
	start := time.Date(2026, 3, 12, 9, 30, 0, 0, time.UTC)
	cancelWithEvent := func(t *testing.T, f fixture, appt string) {
		err := f.db.Tx(context.Background(), func(tx pgx.Tx) error {
			if err := store.TransitionAppointment(context.Background(), tx, appt, store.UpcomingStatuses, store.StatusCancelled, f.patient, ""); err != nil {
				return err
			}
			return store.Enqueue(context.Background(), tx, store.OutboxEvent{Kind: store.EventAppointmentCancelled,
				RecipientID: f.patient, AppointmentID: appt, Data: map[string]string{"cancelled_by": "patient"}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cancelQuietly := func(t *testing.T, f fixture, appt string) {
		// A status change that enqueues nothing: the worker must still
		// notice at send time.
		if err := store.TransitionAppointment(context.Background(), f.db.Pool, appt, store.UpcomingStatuses, store.StatusCancelled, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	moveQuietly := func(t *testing.T, f fixture, appt string) {
		if err := store.MoveAppointment(context.Background(), f.db.Pool, appt, start.Add(2*time.Hour), start.Add(150*time.Minute), f.patient); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name          string
		change        func(*testing.T, fixture, string)
		beforeQueued  bool // change before the reminder is even enqueued
		wantReminders int  // reminder emails that reach the server
	}{
		{"cancelled before the reminder is due", cancelWithEvent, true, 0},
		{"cancelled with the reminder queued", cancelWithEvent, false, 0},
		{"cancelled without an event, reminder queued", cancelQuietly, false, 0},
		{"moved with the old reminder queued", moveQuietly, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := storetest.New(t)
			srv := startSMTP(t, smtpOptions{})
			c := newClock(start.AddDate(0, 0, -20))
			w := newWorker(t, db, Config{SMTPURL: srv.url(), Reminders: []Reminder{DefaultReminders[1]}}, c)
			f := newFixture(t, db, fixtureOptions{})
			appt := f.book(t, start, c.Now())
			drain(t, w) // the confirmation
			base := len(srv.messages())

			if tt.beforeQueued {
				tt.change(t, f, appt)
			}
			c.Set(start.AddDate(0, 0, -1))
			if _, err := w.ScheduleReminders(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !tt.beforeQueued {
				if n := len(reminderDeliveries(t, db)); n != 1 {
					t.Fatalf("%d reminders queued, want 1", n)
				}
				tt.change(t, f, appt)
			}
			drain(t, w)
			reminders := 0
			for _, m := range srv.messages()[base:] {
				if strings.HasPrefix(parseMail(t, m.Data).Subject, "Rappel") {
					reminders++
				}
			}
			if reminders != tt.wantReminders {
				t.Errorf("%d reminders reached the server, want %d", reminders, tt.wantReminders)
			}
			for _, d := range reminderDeliveries(t, db) {
				if d.Status != store.MessageCancelled {
					t.Errorf("reminder is %s, want cancelled", d.Status)
				}
			}
		})
	}

	t.Run("a moved appointment is reminded at its new time", func(t *testing.T) {
		db := storetest.New(t)
		c := newClock(start.AddDate(0, 0, -20))
		w := newWorker(t, db, Config{Reminders: []Reminder{DefaultReminders[1]}}, c)
		f := newFixture(t, db, fixtureOptions{})
		appt := f.book(t, start, c.Now())
		c.Set(start.AddDate(0, 0, -1))
		w.ScheduleReminders(context.Background())
		moveQuietly(t, f, appt)
		c.Set(start.Add(2*time.Hour).AddDate(0, 0, -1))
		if n, err := w.ScheduleReminders(context.Background()); err != nil || n != 1 {
			t.Fatalf("%d reminders for the new time (%v), want 1", n, err)
		}
		drain(t, w)
		var statuses []string
		for _, d := range reminderDeliveries(t, db) {
			statuses = append(statuses, d.Status)
		}
		if strings.Join(statuses, ",") != "cancelled,held" {
			t.Errorf("reminder statuses %v, want the old one cancelled and the new one held", statuses)
		}
	})
}

func TestTwilioAdapter(t *testing.T) {
	type request struct {
		method, path, user, pass, ctype string
		form                            url.Values
	}
	var mu sync.Mutex
	var got []request
	status := http.StatusCreated
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		r.ParseForm()
		mu.Lock()
		got = append(got, request{r.Method, r.URL.Path, user, pass, r.Header.Get("Content-Type"), r.PostForm})
		s := status
		mu.Unlock()
		w.WriteHeader(s)
		io.WriteString(w, `{"sid":"SM1","to":"+33612345678"}`)
	}))
	defer provider.Close()
	tw := &Twilio{BaseURL: provider.URL, AccountSID: "AC123", AuthToken: "tok", From: "+33700000000"}

	if err := tw.SendSMS(context.Background(), "+33612345678", "Bonjour"); err != nil {
		t.Fatal(err)
	}
	r := got[0]
	if r.method != "POST" || r.path != "/2010-04-01/Accounts/AC123/Messages.json" || r.user != "AC123" || r.pass != "tok" ||
		r.ctype != "application/x-www-form-urlencoded" {
		t.Errorf("request %+v", r)
	}
	if r.form.Get("To") != "+33612345678" || r.form.Get("From") != "+33700000000" || r.form.Get("Body") != "Bonjour" {
		t.Errorf("form %v", r.form)
	}

	for _, tt := range []struct {
		status    int
		permanent bool
	}{{400, true}, {401, true}, {429, false}, {503, false}} {
		status = tt.status
		err := tw.SendSMS(context.Background(), "+33612345678", "x")
		if err == nil || errorsIs(err, ErrPermanent) != tt.permanent {
			t.Errorf("status %d: err %v, permanent %v", tt.status, err, tt.permanent)
		}
		if err != nil && strings.Contains(err.Error(), "612345678") {
			t.Errorf("error shows the number: %v", err)
		}
	}

	t.Run("worker sends the 1h video reminder by SMS", func(t *testing.T) {
		status = http.StatusCreated
		mu.Lock()
		got = nil
		mu.Unlock()
		db := storetest.New(t)
		start := time.Date(2026, 3, 12, 9, 30, 0, 0, time.UTC)
		c := newClock(start.AddDate(0, 0, -10))
		w := newWorker(t, db, Config{SMSURL: provider.URL, SMSAccount: "AC123", SMSToken: "tok", SMSFrom: "+33700000000",
			Reminders: []Reminder{DefaultReminders[2]}}, c)
		f := newFixture(t, db, fixtureOptions{mode: "video", phone: "+33612345678", lang: "en"})
		appt := f.book(t, start, c.Now())
		drain(t, w) // confirmation: email held, SMS sent
		c.Set(start.Add(-time.Hour))
		if n, err := w.ScheduleReminders(context.Background()); err != nil || n != 1 {
			t.Fatalf("%d reminders (%v)", n, err)
		}
		drain(t, w)
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 2 {
			t.Fatalf("provider got %d requests, want 2", len(got))
		}
		body := got[1].form.Get("Body")
		want := "Reminder: your appointment on Thu 12 March at 10:30 with Dr Martin. Join: https://rdv.example.org/consult/" + appt
		if body != want || got[1].form.Get("To") != "+33612345678" {
			t.Errorf("SMS body %q\nwant %q", body, want)
		}
	})
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
