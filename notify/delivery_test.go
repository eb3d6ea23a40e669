package notify

import (
	"context"
	"errors"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestRetryWithBackoff(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{failFirst: 2})
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := newClock(start)
	w := newWorker(t, db, Config{SMTPURL: srv.url(), RetryBase: 30 * time.Second}, c)
	f := newFixture(t, db, fixtureOptions{})
	f.book(t, march3, c.Now())

	steps := []struct {
		advance      time.Duration
		wantClaimed  int
		wantStatus   string
		wantAttempts int
		wantNext     time.Duration // from start
	}{
		{0, 1, store.MessagePending, 1, 30 * time.Second},                // 451: retry in 30s
		{29 * time.Second, 0, store.MessagePending, 1, 30 * time.Second}, // not yet
		{time.Second, 1, store.MessagePending, 2, 90 * time.Second},      // 451 again: 60s more
		{59 * time.Second, 0, store.MessagePending, 2, 90 * time.Second},
		{time.Second, 1, store.MessageSent, 3, 0},
	}
	for i, s := range steps {
		c.Advance(s.advance)
		n, err := w.DeliverDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n != s.wantClaimed {
			t.Errorf("step %d: claimed %d, want %d", i, n, s.wantClaimed)
		}
		d := outbox(t, db, store.EventAppointmentBooked)[0]
		if d.Status != s.wantStatus || d.Attempts != s.wantAttempts {
			t.Errorf("step %d: %s after %d attempts, want %s after %d", i, d.Status, d.Attempts, s.wantStatus, s.wantAttempts)
		}
		if s.wantNext != 0 && (d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(start.Add(s.wantNext))) {
			t.Errorf("step %d: next attempt %v, want %v", i, d.NextAttemptAt, start.Add(s.wantNext))
		}
		if s.wantStatus == store.MessagePending && !strings.Contains(d.LastError, "451") {
			t.Errorf("step %d: last error %q", i, d.LastError)
		}
	}
	if n := len(srv.messages()); n != 1 {
		t.Errorf("server accepted %d messages, want 1", n)
	}
}

func TestGiveUpAfterLastAttempt(t *testing.T) {
	tests := []struct {
		name         string
		opts         smtpOptions
		wantAttempts int
	}{
		{"temporary failures exhaust the attempts", smtpOptions{failFirst: 100}, 3},
		{"a permanent refusal fails at once", smtpOptions{permanent: true}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := storetest.New(t)
			srv := startSMTP(t, tt.opts)
			c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			w := newWorker(t, db, Config{SMTPURL: srv.url(), MaxAttempts: 3}, c)
			f := newFixture(t, db, fixtureOptions{})
			f.book(t, march3, c.Now())
			for range 10 {
				drain(t, w)
				c.Advance(time.Hour)
			}
			d := outbox(t, db, store.EventAppointmentBooked)[0]
			if d.Status != store.MessageFailed || d.Attempts != tt.wantAttempts {
				t.Errorf("%s after %d attempts, want failed after %d", d.Status, d.Attempts, tt.wantAttempts)
			}
			if strings.Contains(d.LastError, f.patientEmail) {
				t.Errorf("last error shows the address: %q", d.LastError)
			}
			failed, err := store.ListOutbox(context.Background(), db.Pool, store.MessageFailed, 10)
			if err != nil || len(failed) != 1 {
				t.Errorf("admins see %d failed messages (%v), want 1", len(failed), err)
			}
		})
	}
}

func TestTwoWorkersDeliverEachMessageOnce(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	f := newFixture(t, db, fixtureOptions{})
	const n = 40
	for i := range n {
		f.book(t, march3.Add(time.Duration(i)*time.Hour), c.Now())
	}
	var wg sync.WaitGroup
	claimed := make([]int, 2)
	for i := range 2 {
		w := newWorker(t, db, Config{SMTPURL: srv.url(), Batch: 3}, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k, err := w.DeliverDue(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if k == 0 {
					return
				}
				claimed[i] += k
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, m := range srv.messages() {
		msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
		if err != nil {
			t.Fatal(err)
		}
		seen[msg.Header.Get("Message-Id")]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct messages delivered, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("%s delivered %d times", id, k)
		}
	}
	if claimed[0]+claimed[1] != n {
		t.Errorf("claims %v add up to %d, want %d", claimed, claimed[0]+claimed[1], n)
	}
	t.Logf("worker claims: %v", claimed)
}

func TestCrashBetweenClaimAndSendIsRetriedAfterLease(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	w := newWorker(t, db, Config{SMTPURL: srv.url(), Lease: 2 * time.Minute}, c)
	f := newFixture(t, db, fixtureOptions{})
	f.book(t, march3, c.Now())

	// A worker claims the message and dies before sending it.
	ds, err := store.ClaimOutbox(context.Background(), db.Pool, newClaimID(), c.Now(), 2*time.Minute, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("claim: %d, %v", len(ds), err)
	}
	// While its lease runs, nobody else sends it.
	c.Advance(119 * time.Second)
	if n := drain(t, w); n != 0 {
		t.Fatalf("claimed %d messages under another worker's lease", n)
	}
	// After the lease, it is sent.
	c.Advance(time.Second)
	if n := drain(t, w); n != 1 {
		t.Fatalf("claimed %d after the lease, want 1", n)
	}
	if len(srv.messages()) != 1 {
		t.Fatalf("server received %d messages, want 1", len(srv.messages()))
	}
	d := outbox(t, db, store.EventAppointmentBooked)[0]
	if d.Status != store.MessageSent || d.Attempts != 2 {
		t.Errorf("%s after %d attempts, want sent after 2", d.Status, d.Attempts)
	}
	// The dead worker, were it to wake, cannot overwrite the outcome.
	err = store.SettleOutbox(context.Background(), db.Pool, ds[0].ID, "00000000-0000-4000-8000-000000000000",
		store.OutboxOutcome{Status: store.MessageFailed, At: c.Now(), LastError: "late"})
	if !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("late settle: %v, want ErrLeaseLost", err)
	}
}

func TestRestartLosesNothing(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	f := newFixture(t, db, fixtureOptions{})
	f.book(t, march3, c.Now())

	// The process stops before delivering: Run returns when ctx ends.
	w1 := newWorker(t, db, Config{SMTPURL: "smtp://127.0.0.1:1"}, c) // unreachable
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w1.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A new process delivers it.
	w2 := newWorker(t, db, Config{SMTPURL: srv.url()}, c)
	c.Advance(time.Hour)
	drain(t, w2)
	if len(srv.messages()) != 1 {
		t.Errorf("server received %d messages after restart, want 1", len(srv.messages()))
	}
}

func TestHeldWithoutConfiguration(t *testing.T) {
	db := storetest.New(t)
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	w := newWorker(t, db, Config{}, c) // no SMTP, no SMS
	f := newFixture(t, db, fixtureOptions{phone: "+33612345678", lang: "en"})
	f.book(t, march3, c.Now())
	err := store.Enqueue(context.Background(), db.Pool, store.OutboxEvent{
		Kind: store.EventPasswordReset, RecipientID: f.patient, Data: map[string]string{"token": "s3cr3t-reset-token"}})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, w)
	ms := outbox(t, db, "")
	if len(ms) != 3 {
		t.Fatalf("%d deliveries, want 3 (booking email and SMS, reset email)", len(ms))
	}
	for _, m := range ms {
		if m.Status != store.MessageHeld {
			t.Errorf("%s %s is %s, want held", m.Kind, m.Channel, m.Status)
		}
		if m.Body == "" {
			t.Errorf("%s %s has no rendered body for the admin page", m.Kind, m.Channel)
		}
		if strings.Contains(m.Body, "s3cr3t-reset-token") {
			t.Errorf("the reset token is stored in the outbox body")
		}
	}
	by := map[string]store.OutboxMessage{}
	for _, m := range ms {
		by[m.Kind+" "+m.Channel] = m
	}
	if r := by["password.reset email"]; r.Subject != "Reset your password" || !strings.Contains(r.Body, "/reset?token="+redacted) {
		t.Errorf("reset message: %q\n%s", r.Subject, r.Body)
	}
	if s := by["appointment.booked sms"]; s.Body != "Your appointment on Tue 3 March at 10:30 with Dr Martin." {
		t.Errorf("SMS body %q", s.Body)
	}
}

func TestChannelPreferences(t *testing.T) {
	tests := []struct {
		name  string
		phone string
		prefs *store.NotificationPrefs
		kind  string
		want  string // channels delivered, comma-separated
	}{
		{"defaults with a phone", "+33612345678", nil, store.EventAppointmentBooked, "email,sms"},
		{"no phone, no SMS", "", nil, store.EventAppointmentBooked, "email"},
		{"SMS off", "+33612345678", &store.NotificationPrefs{Email: true}, store.EventAppointmentBooked, "email"},
		{"email off", "+33612345678", &store.NotificationPrefs{SMS: true}, store.EventAppointmentBooked, "sms"},
		{"all off", "+33612345678", &store.NotificationPrefs{}, store.EventAppointmentBooked, ""},
		{"a password reset ignores the email switch", "+33612345678", &store.NotificationPrefs{}, store.EventPasswordReset, "email"},
	}
	db := storetest.New(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, _ := newAccount(t, db, "patient", "Bob", "fr", tt.phone)
			ctx := context.Background()
			if tt.prefs != nil {
				if err := store.SetNotificationPrefs(ctx, db.Pool, id, *tt.prefs); err != nil {
					t.Fatal(err)
				}
				got, err := store.GetNotificationPrefs(ctx, db.Pool, id)
				if err != nil || got != *tt.prefs {
					t.Fatalf("prefs read back %+v, %v", got, err)
				}
			}
			if err := store.Enqueue(ctx, db.Pool, store.OutboxEvent{Kind: tt.kind, RecipientID: id,
				Data: map[string]string{"token": "t"}}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range outbox(t, db, tt.kind) {
				if m.RecipientID == id {
					got = append(got, m.Channel)
				}
			}
			slices.Sort(got)
			if strings.Join(got, ",") != tt.want {
				t.Errorf("channels %v, want %q", got, tt.want)
			}
		})
	}
	t.Run("unknown kind is refused", func(t *testing.T) {
		id, _ := newAccount(t, db, "patient", "Carol", "fr", "")
		err := store.Enqueue(context.Background(), db.Pool, store.OutboxEvent{Kind: "appointment.teleported", RecipientID: id})
		if !errors.Is(err, store.ErrOutboxEvent) {
			t.Errorf("err = %v, want ErrOutboxEvent", err)
		}
	})
}

func TestEnqueueRollsBackWithItsTransaction(t *testing.T) {
	db := storetest.New(t)
	id, _ := newAccount(t, db, "patient", "Dan", "fr", "")
	boom := errors.New("booking failed")
	err := db.Tx(context.Background(), func(tx pgx.Tx) error {
		if err := store.Enqueue(context.Background(), tx, store.OutboxEvent{Kind: store.EventPrescriptionReady, RecipientID: id}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if n := len(outbox(t, db, "")); n != 0 {
		t.Errorf("%d deliveries survived a rolled-back transaction", n)
	}
}

// TestRunDeliversAndReminds runs the worker loop as a node does, on the
// real clock: a new booking's confirmation and a due reminder go out
// without anyone calling DeliverDue.
func TestRunDeliversAndReminds(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{})
	w, err := NewWorker(db, Config{BaseURL: "https://rdv.example.org", TokenKey: testKey, MailFrom: "noreply@rdv.example.org",
		SMTPURL: srv.url(), PollInterval: 20 * time.Millisecond, ReminderInterval: 20 * time.Millisecond}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	f := newFixture(t, db, fixtureOptions{})
	start := time.Now().Add(23 * time.Hour).Truncate(time.Minute)
	f.book(t, start, time.Now().Add(-48*time.Hour))
	deadline := time.Now().Add(10 * time.Second)
	for len(srv.messages()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var subjects []string
	for _, m := range srv.messages() {
		subjects = append(subjects, parseMail(t, m.Data).Subject)
	}
	slices.Sort(subjects)
	if len(subjects) != 2 || !strings.HasPrefix(subjects[0], "Rappel : votre rendez-vous du") || !strings.HasPrefix(subjects[1], "Votre rendez-vous du") {
		t.Errorf("subjects %q, want the confirmation and the day-before reminder", subjects)
	}
}

// slowMailer records emails and takes advance of the fake clock per send.
type slowMailer struct {
	c       *clock
	advance time.Duration
	mu      sync.Mutex
	sent    []Email
}

func (m *slowMailer) SendEmail(_ context.Context, e Email) error {
	m.c.Advance(m.advance)
	m.mu.Lock()
	m.sent = append(m.sent, e)
	m.mu.Unlock()
	return nil
}

func TestSlowBatchHandsBackItsTail(t *testing.T) {
	db := storetest.New(t)
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	m := &slowMailer{c: c, advance: 45 * time.Second}
	w := newWorker(t, db, Config{Mailer: m, Lease: time.Minute, Batch: 3}, c)
	f := newFixture(t, db, fixtureOptions{})
	for i := range 3 {
		f.book(t, march3.Add(time.Duration(i)*time.Hour), c.Now())
	}
	// Each send takes 45s of a 60s lease: one send per claim, the rest
	// handed back at once rather than left to their lease.
	rounds := 0
	for {
		n, err := w.DeliverDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		rounds++
	}
	if len(m.sent) != 3 || rounds != 3 {
		t.Fatalf("%d sent in %d rounds, want 3 in 3", len(m.sent), rounds)
	}
	for _, d := range outbox(t, db, store.EventAppointmentBooked) {
		if d.Status != store.MessageSent || d.Attempts != 1 {
			t.Errorf("%s after %d attempts, want sent after 1", d.Status, d.Attempts)
		}
	}
}

func TestPruneKeepsWhatIsNotSettled(t *testing.T) {
	db := storetest.New(t)
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	w := newWorker(t, db, Config{Retention: 30 * 24 * time.Hour}, c)
	f := newFixture(t, db, fixtureOptions{})
	old := f.book(t, march3, c.Now())
	drain(t, w) // held: settled
	f.book(t, march3.Add(time.Hour), c.Now())
	// Both events are two months old; only the first is settled.
	if _, err := db.Pool.Exec(context.Background(), `UPDATE outbox_events SET created_at = $1`, c.Now().AddDate(0, -2, 0)); err != nil {
		t.Fatal(err)
	}
	n, err := w.Prune(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("pruned %d (%v), want 1", n, err)
	}
	left := outbox(t, db, "")
	if len(left) != 1 || left[0].Status != store.MessagePending {
		t.Errorf("left %+v, want the pending message only", left)
	}
	var events int
	db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_events WHERE appointment_id = $1`, old).Scan(&events)
	if events != 0 {
		t.Errorf("the settled event is still there")
	}
}

func TestMetrics(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{failFirst: 1})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	w := newWorker(t, db, Config{SMTPURL: srv.url()}, c)
	reg := prometheus.NewRegistry()
	reg.MustRegister(w)
	f := newFixture(t, db, fixtureOptions{phone: "+33612345678"})
	f.book(t, march3, c.Now())
	drain(t, w) // email: 451, will retry; SMS: held
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			if c := m.GetCounter(); c != nil {
				got[key] = c.GetValue()
			} else {
				got[key] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{
		"teleconsult_notify_deliveries_total channel=email outcome=pending": 1,
		"teleconsult_notify_deliveries_total channel=sms outcome=held":      1,
		"teleconsult_notify_outbox_messages channel=email status=pending":   1,
		"teleconsult_notify_outbox_messages channel=email status=sending":   0,
		"teleconsult_notify_outbox_messages channel=sms status=pending":     0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
