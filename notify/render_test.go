package notify

import (
	"context"
	"strings"
	"testing"
	"time"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

// TestEveryKindRenders enqueues each kind with the Data its producer
// (booking, payments, rx, auth) sends, and checks the message a person
// would get, held for lack of a transport.
func TestEveryKindRenders(t *testing.T) {
	db := storetest.New(t)
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	w := newWorker(t, db, Config{}, c)
	f := newFixture(t, db, fixtureOptions{lang: "en", phone: "+33612345678", mode: "video"})
	appt := f.book(t, march3, c.Now())
	drain(t, w)

	tests := []struct {
		kind, recipient, appt string
		data                  map[string]string
		subject               string
		body                  []string // in the email body
		sms                   string   // "" when no SMS is expected
	}{
		{store.EventAppointmentCancelled, f.patient, appt, map[string]string{"audience": "patient", "cancelled_by": "practitioner"},
			"Cancelled: your appointment on Tue 3 March at 10:30 with Dr Martin",
			[]string{"cancelled by the practitioner", "/practitioners/" + f.practitioner}, "Cancelled: your appointment on Tue 3 March at 10:30 with Dr Martin."},
		{store.EventAppointmentCancelled, f.practitioner, appt, map[string]string{"audience": "practitioner", "cancelled_by": "patient"},
			"Annulé : le rendez-vous du mar. 3 mars à 10:30 avec Alice Durand",
			[]string{"annulé par le patient", "/agenda"}, ""},
		{store.EventAppointmentCancelled, f.patient, appt, map[string]string{"by": "payment"},
			"Cancelled: your appointment on Tue 3 March at 10:30 with Dr Martin",
			[]string{"payment was not completed"}, "Cancelled: your appointment on Tue 3 March at 10:30 with Dr Martin."},
		{store.EventAppointmentRescheduled, f.patient, appt, map[string]string{"old_start": "2026-03-02T09:30:00Z"},
			"Moved: your appointment on Tue 3 March at 10:30 with Dr Martin",
			[]string{"planned on Mon 2 March at 10:30", "/a/" + redacted, "/consult/" + appt}, "Moved: your appointment on Tue 3 March at 10:30 with Dr Martin."},
		{store.EventAppointmentDelayed, f.patient, appt, map[string]string{"minutes": "20"},
			"Delay: your appointment on Tue 3 March at 10:30 with Dr Martin",
			[]string{"about 20 minutes late"}, "Dr Martin is running about 20 minutes late. Your appointment on Tue 3 March at 10:30 will start later than planned."},
		{store.EventPaymentActionRequired, f.patient, appt, map[string]string{"url": "https://checkout.stripe.com/c/pay/cs_test_secret", "deadline": "2026-03-01T12:30:00Z"},
			"Action needed for your appointment on Tue 3 March at 10:30 with Dr Martin",
			[]string{"before Sun 1 March at 13:30", redacted}, ""},
		{store.EventWaitlistOffer, f.patient, "", map[string]string{"offer_id": "x", "practitioner_id": f.practitioner,
			"start": "2026-03-02T08:00:00Z", "expires_at": "2026-03-01T12:30:00Z"},
			"A slot is available on Mon 2 March at 09:00 with Dr Martin",
			[]string{"until Sun 1 March at 13:30", "/practitioners/" + f.practitioner}, "A slot is available on Mon 2 March at 09:00 with Dr Martin: https://rdv.example.org/practitioners/" + f.practitioner},
		{store.EventPrescriptionReady, f.patient, "", nil,
			"A new document is available in your account",
			[]string{"/prescriptions"}, "A new document is available in your account: https://rdv.example.org/prescriptions"},
	}
	for _, tt := range tests {
		t.Run(tt.kind+" to "+map[bool]string{true: "patient", false: "practitioner"}[tt.recipient == f.patient], func(t *testing.T) {
			before := map[string]bool{}
			for _, m := range outbox(t, db, "") {
				before[m.ID] = true
			}
			if err := store.Enqueue(context.Background(), db.Pool, store.OutboxEvent{Kind: tt.kind, RecipientID: tt.recipient,
				AppointmentID: tt.appt, Data: tt.data}); err != nil {
				t.Fatal(err)
			}
			drain(t, w)
			var email, sms *store.OutboxMessage
			for _, m := range outbox(t, db, tt.kind) {
				if before[m.ID] {
					continue
				}
				if m.Channel == "email" {
					email = &m
				} else {
					sms = &m
				}
			}
			if email == nil || email.Status != store.MessageHeld {
				t.Fatalf("email delivery %+v", email)
			}
			if email.Subject != tt.subject {
				t.Errorf("subject %q, want %q", email.Subject, tt.subject)
			}
			for _, want := range tt.body {
				if !strings.Contains(email.Body, want) {
					t.Errorf("body lacks %q:\n%s", want, email.Body)
				}
			}
			for _, secret := range []string{"psychiatr", "anxiété", "Suivi", "cs_test_secret"} {
				if strings.Contains(email.Body+email.Subject, secret) {
					t.Errorf("message shows %q", secret)
				}
			}
			if tt.sms != "" && (sms == nil || sms.Body != tt.sms) {
				t.Errorf("SMS %+v, want %q", sms, tt.sms)
			}
		})
	}
}

func TestConfirmationWaitsForPayment(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	w := newWorker(t, db, Config{SMTPURL: srv.url(), MaxAttempts: 2}, c)
	f := newFixture(t, db, fixtureOptions{})
	appt := f.book(t, march3, c.Now())
	if _, err := db.Pool.Exec(context.Background(), `UPDATE appointments SET status = 'pending_payment', hold_expires_at = $2 WHERE id = $1`,
		appt, c.Now().Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Unpaid for five minutes: the confirmation waits, and waiting costs
	// no attempt (MaxAttempts is 2).
	for range 5 {
		drain(t, w)
		c.Advance(time.Minute)
	}
	if n := len(srv.messages()); n != 0 {
		t.Fatalf("%d messages sent before payment", n)
	}
	if d := outbox(t, db, store.EventAppointmentBooked)[0]; d.Status != store.MessagePending || d.Attempts != 0 {
		t.Errorf("while unpaid: %s after %d attempts", d.Status, d.Attempts)
	}
	if err := store.TransitionAppointment(context.Background(), db.Pool, appt, []string{store.StatusPendingPayment}, store.StatusConfirmed, "", "paid"); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	drain(t, w)
	if n := len(srv.messages()); n != 1 {
		t.Fatalf("%d messages after payment, want the confirmation", n)
	}
}
