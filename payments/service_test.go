package payments

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"teleconsult/audit"
	"teleconsult/store"
)

// TestJourneyPayCompleteCapture: book, pay on the test page, confirmed by
// the signed webhook, consult completed, captured once, receipt.
func TestJourneyPayCompleteCapture(t *testing.T) {
	e := newEnv(t, true, Config{PlatformFeeBasisPoints: 1000})
	ctx := context.Background()
	if _, err := e.svc.OnboardingLink(ctx, e.practitioner); err != nil {
		t.Fatal(err)
	}
	appt, url := e.book(2*24*time.Hour, 4500)
	if !strings.HasPrefix(url, e.srv.URL+"/payments/test-checkout/cs_test_") {
		t.Fatalf("checkout url %q", url)
	}
	if st := e.status(appt); st != store.StatusPendingPayment {
		t.Fatalf("after booking: %s", st)
	}
	resp := e.checkout(url, "pay")
	if resp.StatusCode != 303 || !strings.Contains(resp.Header.Get("Location"), "/appointments/"+appt+"?payment=done") {
		t.Fatalf("after pay: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.waitFor(appt, store.StatusConfirmed, store.PaymentAuthorized)
	p := e.payment(appt)
	pi := e.intent(p.PaymentIntent)
	if pi.Status != IntentRequiresCapture || pi.AmountCapturable != 4500 || pi.Destination == "" || pi.ApplicationFee != 450 {
		t.Fatalf("hold at Stripe: %+v", pi)
	}
	if _, err := e.svc.Receipt(ctx, audit.Actor{ID: e.patient, Role: "patient"}, appt); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("receipt before capture: %v", err)
	}

	e.transition(appt, store.StatusConfirmed, store.StatusCompleted)
	if err := e.svc.OnCompleted(ctx, appt); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.OnCompleted(ctx, appt); err != nil { // a retry changes nothing
		t.Fatal(err)
	}
	e.settleDeliveries()
	p = e.payment(appt)
	pi = e.intent(p.PaymentIntent)
	if p.State != store.PaymentCaptured || p.AmountCaptured != 4500 || pi.Status != IntentSucceeded || pi.AmountReceived != 4500 {
		t.Fatalf("after completion: payment %+v, intent %+v", p, pi)
	}
	if n := e.intentsOf(appt); n != 1 {
		t.Fatalf("%d payment intents for one appointment", n)
	}
	pdf, err := e.svc.Receipt(ctx, audit.Actor{ID: e.patient, Role: "patient"}, appt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) || len(pdf) < 1000 {
		t.Fatalf("receipt is not a PDF (%d bytes)", len(pdf))
	}
	if _, err := e.svc.Receipt(ctx, audit.Actor{ID: e.practitioner, Role: "practitioner"}, appt); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("receipt for someone else: %v", err)
	}
	var ok, denied int
	e.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE outcome = 'ok'), count(*) FILTER (WHERE outcome = 'denied')
		FROM audit_log WHERE object_type = 'receipt' AND object_id = $1 AND subject_id = $2`, appt, e.patient).Scan(&ok, &denied)
	if ok != 1 || denied != 1 {
		t.Fatalf("audit: %d reads, %d refusals of the receipt", ok, denied)
	}
}

// TestJourneyPayThenCancelReleasesHold: a cancellation before the consult
// releases the hold for free; nothing is captured.
func TestJourneyPayThenCancelReleasesHold(t *testing.T) {
	e := newEnv(t, true, Config{})
	ctx := context.Background()
	appt, url := e.book(24*time.Hour, 3000)
	e.checkout(url, "pay")
	e.waitFor(appt, store.StatusConfirmed, store.PaymentAuthorized)
	if _, err := store.CancelAppointment(ctx, e.db.Pool, appt, e.patient, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.OnCancelled(ctx, appt, false); err != nil {
		t.Fatal(err)
	}
	e.settleDeliveries()
	p := e.payment(appt)
	if pi := e.intent(p.PaymentIntent); p.State != store.PaymentCanceled || pi.Status != IntentCanceled || pi.AmountReceived != 0 {
		t.Fatalf("after cancel: payment %s, intent %+v", p.State, pi)
	}
	if _, err := e.svc.Receipt(ctx, audit.Actor{ID: e.patient, Role: "patient"}, appt); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("receipt of a released hold: %v", err)
	}
}

// TestJourneyDeclineFreesSlot: a declined card ends the checkout, frees
// the slot (another booking can take it) and the session can no longer
// be paid.
func TestJourneyDeclineFreesSlot(t *testing.T) {
	e := newEnv(t, true, Config{})
	appt, url := e.book(24*time.Hour, 3000)
	resp := e.checkout(url, "decline")
	if !strings.Contains(resp.Header.Get("Location"), "payment=cancelled") {
		t.Fatalf("after decline: %s", resp.Header.Get("Location"))
	}
	e.waitFor(appt, store.StatusExpired, store.PaymentFailed)
	e.settleDeliveries()
	cs, err := e.svc.test.GetCheckoutSession(context.Background(), e.payment(appt).CheckoutSession)
	if err != nil || cs.Status != SessionExpired {
		t.Fatalf("declined session: %+v %v", cs, err)
	}
	// The same slot can be booked again.
	a, err := store.AppointmentByID(context.Background(), e.db.Pool, appt)
	if err != nil {
		t.Fatal(err)
	}
	hold := time.Now().Add(30 * time.Minute)
	if _, err := store.InsertAppointment(context.Background(), e.db.Pool, store.Appointment{
		ID: store.NewUUID(), PractitionerID: a.PractitionerID, ConsultationTypeID: a.ConsultationTypeID,
		PatientID: e.patient, Mode: a.Mode, StartsAt: a.StartsAt, EndsAt: a.EndsAt,
		Status: store.StatusPendingPayment, Currency: "EUR", HoldExpiresAt: &hold,
	}, e.patient); err != nil {
		t.Fatalf("slot not freed: %v", err)
	}
}

// TestReconcileRepairsLostWebhook: with no webhook delivered at all, the
// reconciliation job finds the paid checkout and confirms the appointment;
// an unpaid one past its expiry frees the slot.
func TestReconcileRepairsLostWebhook(t *testing.T) {
	e := newEnv(t, false, Config{})
	ctx := context.Background()
	paid, url := e.book(24*time.Hour, 3000)
	unpaid, _ := e.book(25*time.Hour, 3000)
	e.checkout(url, "pay")
	if st := e.status(paid); st != store.StatusPendingPayment {
		t.Fatalf("no webhook yet, but %s", st)
	}
	e.advance(3 * time.Minute)
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st, p := e.status(paid), e.payment(paid); st != store.StatusConfirmed || p.State != store.PaymentAuthorized {
		t.Fatalf("paid: %s / %s", st, p.State)
	}
	if st := e.status(unpaid); st != store.StatusPendingPayment {
		t.Fatalf("unpaid but not expired yet: %s", st)
	}
	e.advance(30 * time.Minute)
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st, p := e.status(unpaid), e.payment(unpaid); st != store.StatusExpired || p.State != store.PaymentExpired {
		t.Fatalf("unpaid after expiry: %s / %s", st, p.State)
	}
}

// TestCrashRepairedWithOneCharge: Stripe does the work but our process
// never hears back (crash or timeout between the call and our write). The
// retry, or the reconciliation job, repeats the call with the same
// idempotency key and gets the same object: one checkout, one hold, one
// capture, one refund.
func TestCrashRepairedWithOneCharge(t *testing.T) {
	// No webhooks: the repair must come from the retry or the job alone.
	e := newEnv(t, false, Config{})
	ctx := context.Background()
	l := &lossy{Gateway: e.svc.gw, lose: map[string]int{"capture": 1, "refund": 1}}
	e.svc.gw = l

	appt, url := e.book(24*time.Hour, 3000)
	e.checkout(url, "pay")
	e.advance(3 * time.Minute)
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitFor(appt, store.StatusConfirmed, store.PaymentAuthorized)
	e.transition(appt, store.StatusConfirmed, store.StatusCompleted)

	// Captured at Stripe, answer lost: we still think it is authorised.
	if err := e.svc.OnCompleted(ctx, appt); !errors.Is(err, ErrGatewayUnavailable) {
		t.Fatalf("lost capture: %v", err)
	}
	p := e.payment(appt)
	if p.State != store.PaymentAuthorized || e.intent(p.PaymentIntent).Status != IntentSucceeded {
		t.Fatalf("after the lost answer: ours %s, Stripe %s", p.State, e.intent(p.PaymentIntent).Status)
	}
	// Two nodes run the job at once (once the lease of the run that
	// confirmed the appointment has run out); one repairs it, with the
	// same key.
	e.advance(2 * jobLease)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.svc.Reconcile(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	e.settleDeliveries()
	p = e.payment(appt)
	pi := e.intent(p.PaymentIntent)
	if p.State != store.PaymentCaptured || p.AmountCaptured != 3000 || pi.AmountReceived != 3000 || e.intentsOf(appt) != 1 {
		t.Fatalf("after repair: ours %+v, Stripe %+v, %d intents", p, pi, e.intentsOf(appt))
	}

	// A refund whose answer is lost is retried with the same key: one refund.
	if err := e.svc.OnCancelled(ctx, appt, true); !errors.Is(err, ErrGatewayUnavailable) {
		t.Fatalf("lost refund: %v", err)
	}
	if err := e.svc.OnCancelled(ctx, appt, true); err != nil {
		t.Fatal(err)
	}
	e.settleDeliveries()
	p = e.payment(appt)
	refunds, _ := store.TestGatewayObjectsOf(ctx, e.db.Pool, "refund", "Status", "succeeded")
	if pi := e.intent(p.PaymentIntent); p.State != store.PaymentRefunded || p.AmountRefunded != 3000 || pi.AmountRefunded != 3000 || len(refunds) != 1 {
		t.Fatalf("after refund retry: ours %s/%d, Stripe refunded %d, %d refunds", p.State, p.AmountRefunded, pi.AmountRefunded, len(refunds))
	}
}

// TestCrashDuringCheckoutCreation: the session was created at Stripe but
// the answer was lost after our payment row committed; the job re-sends
// the same request and gets the same session, not a second one.
func TestCrashDuringCheckoutCreation(t *testing.T) {
	e := newEnv(t, false, Config{})
	ctx := context.Background()
	// Lose the answer, and commit the booking anyway: the booking engineer
	// might call StartCheckout after committing.
	l := &lossy{Gateway: e.svc.gw, lose: map[string]int{"checkout": 1}}
	e.svc.gw = l
	var ctID string
	if err := e.db.Pool.QueryRow(ctx, `INSERT INTO consultation_types (practitioner_id, name, mode, duration_minutes, fee_cents)
		VALUES ($1, 'Consultation', 'video', 20, 3000) RETURNING id`, e.practitioner).Scan(&ctID); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(24 * time.Hour)
	hold := time.Now().Add(30 * time.Minute)
	a, err := store.InsertAppointment(ctx, e.db.Pool, store.Appointment{
		ID: store.NewUUID(), PractitionerID: e.practitioner, ConsultationTypeID: ctID, PatientID: e.patient,
		Mode: "video", StartsAt: start, EndsAt: start.Add(20 * time.Minute), Status: store.StatusPendingPayment,
		FeeCents: 3000, Currency: "EUR", HoldExpiresAt: &hold,
	}, e.patient)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.StartCheckout(ctx, e.db.Pool, a); !errors.Is(err, ErrGatewayUnavailable) {
		t.Fatalf("lost checkout: %v", err)
	}
	sessions, _ := store.TestGatewayObjectsOf(ctx, e.db.Pool, "checkout.session", "appointment_id", a.ID)
	if len(sessions) != 1 || e.payment(a.ID).CheckoutSession != "" {
		t.Fatalf("before repair: %d sessions at Stripe, ours %q", len(sessions), e.payment(a.ID).CheckoutSession)
	}
	e.advance(3 * time.Minute)
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	sessions, _ = store.TestGatewayObjectsOf(ctx, e.db.Pool, "checkout.session", "appointment_id", a.ID)
	if p := e.payment(a.ID); len(sessions) != 1 || p.CheckoutSession != sessions[0] {
		t.Fatalf("after repair: %d sessions at Stripe, ours %q", len(sessions), p.CheckoutSession)
	}
}

// TestFarBookingSavesCardThenAuthorizes: a consult 10 days away saves the
// card at booking and is authorised off-session 48 hours before; a lost
// answer to that authorisation does not make a second hold. Webhooks are
// off here: the reconciliation job does all of it.
func TestFarBookingSavesCardThenAuthorizes(t *testing.T) {
	e := newEnv(t, false, Config{})
	ctx := context.Background()
	appt, url := e.book(10*24*time.Hour, 6000)
	e.checkout(url, "save")
	e.advance(3 * time.Minute)
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st, p := e.status(appt), e.payment(appt); st != store.StatusConfirmed || p.State != store.PaymentCardSaved || p.PaymentMethod == "" {
		t.Fatalf("after saving the card: %s / %+v", st, p)
	}
	if n := e.intentsOf(appt); n != 0 {
		t.Fatalf("%d holds at booking; want none", n)
	}
	e.advance(7 * 24 * time.Hour) // 3 days before: not yet
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if p := e.payment(appt); p.State != store.PaymentCardSaved {
		t.Fatalf("authorised too early: %s", p.State)
	}
	e.svc.gw = &lossy{Gateway: e.svc.gw, lose: map[string]int{"authorize": 1}}
	e.advance(25 * time.Hour) // less than 48 hours before
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if p := e.payment(appt); p.State != store.PaymentCardSaved || e.intentsOf(appt) != 1 {
		t.Fatalf("lost answer but %s, %d intents", p.State, e.intentsOf(appt))
	}
	e.advance(2 * jobLease)
	if n, err := e.svc.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("reconcile: %d, %v", n, err)
	}
	p := e.payment(appt)
	if p.State != store.PaymentAuthorized || e.intentsOf(appt) != 1 || e.intent(p.PaymentIntent).Status != IntentRequiresCapture {
		t.Fatalf("after the job: %s, %d intents\n%s", p.State, e.intentsOf(appt), e.logs.String())
	}
}

// TestFarBookingAuthenticationRequired: the bank wants the patient; they
// are emailed a link (payment.action_required); not answering releases the
// appointment, answering authorises it.
func TestFarBookingAuthenticationRequired(t *testing.T) {
	for _, answer := range []bool{false, true} {
		t.Run(map[bool]string{false: "ignored", true: "answered"}[answer], func(t *testing.T) {
			e := newEnv(t, true, Config{})
			ctx := context.Background()
			appt, url := e.book(10*24*time.Hour, 6000)
			e.checkout(url, "save_auth")
			e.waitFor(appt, store.StatusConfirmed, store.PaymentCardSaved)
			e.advance(8*24*time.Hour + time.Hour)
			if _, err := e.svc.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			p := e.payment(appt)
			if p.State != store.PaymentActionRequired || p.CheckoutURL == "" || p.ActionDeadline == nil {
				t.Fatalf("after authentication required: %+v", p)
			}
			var data map[string]string
			if err := e.db.Pool.QueryRow(ctx, `SELECT data FROM outbox_events WHERE kind = 'payment.action_required'
				AND appointment_id = $1 AND recipient_id = $2`, appt, e.patient).Scan(&data); err != nil {
				t.Fatalf("no payment.action_required for the patient: %v", err)
			}
			if data["url"] != p.CheckoutURL {
				t.Fatalf("action email data %v", data)
			}
			if answer {
				e.checkout(p.CheckoutURL, "pay")
				e.waitFor(appt, store.StatusConfirmed, store.PaymentAuthorized)
				return
			}
			e.advance(24 * time.Hour)
			if _, err := e.svc.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			e.waitFor(appt, store.StatusCancelled, store.PaymentFailed)
		})
	}
}

// TestNoShowFee captures the configured share of the hold.
func TestNoShowFee(t *testing.T) {
	e := newEnv(t, true, Config{NoShowFeePercent: 50})
	ctx := context.Background()
	appt, url := e.book(24*time.Hour, 3000)
	e.checkout(url, "pay")
	e.waitFor(appt, store.StatusConfirmed, store.PaymentAuthorized)
	e.transition(appt, store.StatusConfirmed, store.StatusNoShow)
	if err := e.svc.OnNoShow(ctx, appt); err != nil {
		t.Fatal(err)
	}
	p := e.payment(appt)
	if pi := e.intent(p.PaymentIntent); p.State != store.PaymentCaptured || p.AmountCaptured != 1500 || pi.AmountReceived != 1500 {
		t.Fatalf("no-show: %s %d / Stripe %d", p.State, p.AmountCaptured, pi.AmountReceived)
	}
}

// TestPaymentNeverMovesBackwards: the database refuses a backward move
// whoever asks.
func TestPaymentNeverMovesBackwards(t *testing.T) {
	e := newEnv(t, true, Config{})
	ctx := context.Background()
	appt, url := e.book(24*time.Hour, 3000)
	e.checkout(url, "pay")
	e.waitFor(appt, store.StatusConfirmed, store.PaymentAuthorized)
	p := e.payment(appt)
	p.State = store.PaymentCheckoutOpen
	if err := store.UpdatePayment(ctx, e.db.Pool, p); !errors.Is(err, store.ErrPaymentBackwards) {
		t.Fatalf("backward move: %v", err)
	}
	if got := e.payment(appt).State; got != store.PaymentAuthorized {
		t.Fatalf("state %s", got)
	}
}

// TestLapsedHoldIsNoticed: Stripe releases a hold left uncaptured for 7
// days; the job notices and the payment says so.
func TestLapsedHoldIsNoticed(t *testing.T) {
	e := newEnv(t, true, Config{})
	ctx := context.Background()
	appt, url := e.book(5*24*time.Hour, 3000)
	e.checkout(url, "pay")
	e.waitFor(appt, store.StatusConfirmed, store.PaymentAuthorized)
	e.settleDeliveries()
	e.advance(6 * 24 * time.Hour)
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if p := e.payment(appt); p.State != store.PaymentAuthorized {
		t.Fatalf("hold still valid but %s", p.State)
	}
	e.advance(2 * 24 * time.Hour)
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitFor(appt, store.StatusConfirmed, store.PaymentCanceled)
	if err := e.svc.OnCompleted(ctx, appt); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("capture of a lapsed hold: %v", err)
	}
}

// TestRescheduledFarBookingAuthorizesFromNewStart: moving a consult whose
// card is saved moves its off-session authorisation with it.
func TestRescheduledFarBookingAuthorizesFromNewStart(t *testing.T) {
	e := newEnv(t, true, Config{})
	ctx := context.Background()
	appt, url := e.book(10*24*time.Hour, 6000)
	e.checkout(url, "save")
	e.waitFor(appt, store.StatusConfirmed, store.PaymentCardSaved)
	a, err := store.AppointmentByID(ctx, e.db.Pool, appt)
	if err != nil {
		t.Fatal(err)
	}
	later := a.StartsAt.Add(3 * 24 * time.Hour)
	if err := store.MoveAppointment(ctx, e.db.Pool, appt, later, later.Add(20*time.Minute), e.patient); err != nil {
		t.Fatal(err)
	}
	v, err := e.svc.ViewFor(ctx, appt, e.patient)
	if err != nil || v.AuthorizeAt == nil || !v.AuthorizeAt.Equal(later.Add(-AuthorizeLead)) {
		t.Fatalf("view after reschedule: %+v %v", v, err)
	}
	e.advance(9 * 24 * time.Hour) // 48 h before the old start, 4 days before the new one
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if p := e.payment(appt); p.State != store.PaymentCardSaved {
		t.Fatalf("authorised for the old start: %s", p.State)
	}
	e.advance(3 * 24 * time.Hour)
	if _, err := e.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitFor(appt, store.StatusConfirmed, store.PaymentAuthorized)
}

// TestPaidAfterSlotReleasedIsReleasedForFree: the hold arrives after the
// booking side gave the slot up; the hold is released at once, nothing is
// charged, and the slot stays free.
func TestPaidAfterSlotReleasedIsReleasedForFree(t *testing.T) {
	e := newEnv(t, true, Config{})
	ctx := context.Background()
	appt, url := e.book(24*time.Hour, 3000)
	if _, err := store.ExpireHolds(ctx, e.db.Pool, "", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.checkout(url, "pay")
	e.waitFor(appt, store.StatusExpired, store.PaymentCanceled)
	e.settleDeliveries()
	if pi := e.intent(e.payment(appt).PaymentIntent); pi.Status != IntentCanceled || pi.AmountReceived != 0 {
		t.Fatalf("late hold: %+v", pi)
	}
}

// TestCancelSavedCardAndOpenCheckout: cancelling before any hold exists
// moves no money: a saved card is forgotten, an open checkout is expired
// at Stripe so it can no longer be paid.
func TestCancelSavedCardAndOpenCheckout(t *testing.T) {
	e := newEnv(t, true, Config{})
	ctx := context.Background()
	saved, url := e.book(10*24*time.Hour, 6000)
	e.checkout(url, "save")
	e.waitFor(saved, store.StatusConfirmed, store.PaymentCardSaved)
	open, _ := e.book(24*time.Hour, 3000)
	for _, appt := range []string{saved, open} {
		if _, err := store.CancelAppointment(ctx, e.db.Pool, appt, e.patient, nil); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.OnCancelled(ctx, appt, false); err != nil {
			t.Fatal(err)
		}
		e.waitFor(appt, store.StatusCancelled, store.PaymentCanceled)
	}
	cs, err := e.svc.gw.GetCheckoutSession(ctx, e.payment(open).CheckoutSession)
	if err != nil || cs.Status != SessionExpired {
		t.Fatalf("checkout of a cancelled appointment: %+v %v", cs, err)
	}
	if e.intentsOf(saved)+e.intentsOf(open) != 0 {
		t.Fatal("a hold was taken for a cancelled appointment")
	}
}

// TestCheckReschedule: a held payment cannot follow its appointment past
// the hold's lifetime; a saved card or a free appointment can move.
func TestCheckReschedule(t *testing.T) {
	e := newEnv(t, true, Config{})
	ctx := context.Background()
	held, url := e.book(2*24*time.Hour, 3000)
	e.checkout(url, "pay")
	e.waitFor(held, store.StatusConfirmed, store.PaymentAuthorized)
	saved, url2 := e.book(10*24*time.Hour, 3000)
	e.checkout(url2, "save")
	e.waitFor(saved, store.StatusConfirmed, store.PaymentCardSaved)
	for _, c := range []struct {
		appt string
		in   time.Duration
		ok   bool
	}{
		{held, 4 * 24 * time.Hour, true},
		{held, 6*24*time.Hour + 12*time.Hour, false},
		{saved, 30 * 24 * time.Hour, true},
	} {
		a, err := store.AppointmentByID(ctx, e.db.Pool, c.appt)
		if err != nil {
			t.Fatal(err)
		}
		err = e.svc.CheckReschedule(ctx, e.db.Pool, a, time.Now().Add(c.in))
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrBeyondHold)) {
			t.Errorf("move %s to +%v: %v", c.appt, c.in, err)
		}
	}
}
