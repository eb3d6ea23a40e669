package booking

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/problem"
	"teleconsult/store"
	"teleconsult/store/storetest"
	"teleconsult/vault"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// clock is a settable clock for the service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a booking service on a fresh database with one practitioner
// open every day 08:00-20:00 (Paris) for a free 30-minute video
// consultation and a paid 20-minute in-person one.
type fixture struct {
	t      testing.TB
	ctx    context.Context
	db     *store.DB
	v      *vault.Vault
	clock  *clock
	svc    *Service
	doc    audit.Actor
	free   store.ConsultationType
	paid   store.ConsultationType
	checks []store.Appointment
}

// monday0700 is Monday 2 March 2026, 08:00 in Paris.
var monday0700 = time.Date(2026, 3, 2, 7, 0, 0, 0, time.UTC)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureOn(t, storetest.New(t))
}

// newFixtureOn is newFixture on a database the caller opened.
func newFixtureOn(t testing.TB, db *store.DB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, ctx: ctx, db: db, v: vault.NewForTest(t, db), clock: &clock{t: monday0700}}
	f.svc = New(db, f.v, Config{Now: f.clock.Now, BaseURL: "https://consult.example.test"})
	f.doc = f.account("practitioner", "Dr Alice Test")
	p := DefaultPractitioner(f.doc.ID)
	p.Specialty, p.RPPS, p.City, p.Postcode = "general_practice", "10001234567", "Paris", "75011"
	if _, err := f.svc.SaveProfile(ctx, f.doc, p); err != nil {
		t.Fatal(err)
	}
	var err error
	f.free, err = f.svc.SaveConsultationType(ctx, f.doc, store.ConsultationType{Name: "Video", Mode: "video", DurationMinutes: 30, NewPatients: true, Active: true})
	if err != nil {
		t.Fatal(err)
	}
	f.paid, err = f.svc.SaveConsultationType(ctx, f.doc, store.ConsultationType{Name: "Cabinet", Mode: "in_person", DurationMinutes: 20, FeeCents: 3000, NewPatients: true, Active: true})
	if err != nil {
		t.Fatal(err)
	}
	var hours []store.OpeningHours
	for d := 0; d < 7; d++ {
		hours = append(hours, store.OpeningHours{ConsultationTypeID: f.free.ID, Weekday: d, Start: "08:00", End: "20:00"},
			store.OpeningHours{ConsultationTypeID: f.paid.ID, Weekday: d, Start: "08:00", End: "12:00"})
	}
	if err := f.svc.SetOpeningHours(ctx, f.doc, hours); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) account(role, name string) audit.Actor {
	f.t.Helper()
	a, err := store.InsertAccount(f.ctx, f.db.Pool, store.NewUUID()+"@example.test", name, role, "x", "en")
	if err != nil {
		f.t.Fatal(err)
	}
	return audit.Actor{ID: a.ID, Role: role, IP: "127.0.0.1"}
}

// at is a time on the fixture's Monday in Paris (UTC+1 in early March).
func at(hhmm string) time.Time {
	t, _ := time.Parse("15:04", hhmm)
	return time.Date(2026, 3, 2, t.Hour()-1, t.Minute(), 0, 0, time.UTC)
}

func (f *fixture) book(who audit.Actor, typ store.ConsultationType, start time.Time, reason string) (Booked, error) {
	return f.svc.Book(f.ctx, who, BookRequest{PractitionerID: f.doc.ID, ConsultationTypeID: typ.ID, Start: start, Reason: reason})
}

func kindOf(err error) problem.Kind { return problem.KindOf(err) }

func TestBookFreeAndPaid(t *testing.T) {
	f := newFixture(t)
	pat := f.account("patient", "Camille Durand")
	b, err := f.book(pat, f.free, at("10:00"), "sore throat")
	if err != nil {
		t.Fatal(err)
	}
	if b.Appointment.Status != store.StatusConfirmed || b.Payment != nil {
		t.Fatalf("free booking: status %s payment %v", b.Appointment.Status, b.Payment)
	}
	// The reason is stored sealed, never in clear.
	var raw []byte
	if err := f.db.Pool.QueryRow(f.ctx, `SELECT reason FROM appointments WHERE id = $1`, b.Appointment.ID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || bytesContains(raw, "sore throat") {
		t.Fatalf("reason stored in clear or not at all: %q", raw)
	}
	v, err := f.svc.Get(f.ctx, pat, b.Appointment.ID)
	if err != nil || v.Reason != "sore throat" {
		t.Fatalf("patient reads reason: %q %v", v.Reason, err)
	}
	v, err = f.svc.Get(f.ctx, f.doc, b.Appointment.ID)
	if err != nil || v.Reason != "sore throat" {
		t.Fatalf("practitioner reads reason: %q %v", v.Reason, err)
	}
	other := f.account("patient", "Other Patient")
	if _, err := f.svc.Get(f.ctx, other, b.Appointment.ID); kindOf(err) != problem.NotFound {
		t.Fatalf("another patient reads the appointment: %v", err)
	}
	// Reads and the refusal are audited.
	var reads, denied int
	f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FILTER (WHERE action = 'read' AND outcome = 'ok'), count(*) FILTER (WHERE outcome = 'denied')
		FROM audit_log WHERE object_id = $1`, b.Appointment.ID).Scan(&reads, &denied)
	if reads != 2 || denied != 1 {
		t.Fatalf("audit: %d reads, %d denied; want 2, 1", reads, denied)
	}

	p, err := f.book(pat, f.paid, at("11:00"), "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Appointment.Status != store.StatusPendingPayment || p.Appointment.HoldExpiresAt == nil || !p.Appointment.HoldExpiresAt.Equal(monday0700.Add(HoldDuration)) {
		t.Fatalf("paid booking: %+v", p.Appointment)
	}
	// Events and outbox.
	evs, _ := store.AppointmentEvents(f.ctx, f.db.Pool, b.Appointment.ID)
	if len(evs) != 1 || evs[0].ToStatus != store.StatusConfirmed || evs[0].ActorID == nil || *evs[0].ActorID != pat.ID {
		t.Fatalf("events: %+v", evs)
	}
	var n int
	f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM outbox_events WHERE kind = 'appointment.booked' AND appointment_id = $1`, b.Appointment.ID).Scan(&n)
	if n != 2 {
		t.Fatalf("outbox: %d appointment.booked events, want 2 (patient and practitioner)", n)
	}
}

func bytesContains(b []byte, s string) bool {
	return len(s) > 0 && string(b) != "" && containsStr(string(b), s)
}
func containsStr(a, b string) bool {
	for i := 0; i+len(b) <= len(a); i++ {
		if a[i:i+len(b)] == b {
			return true
		}
	}
	return false
}

func TestBookRefusals(t *testing.T) {
	f := newFixture(t)
	pat := f.account("patient", "Camille Durand")
	if _, err := f.book(pat, f.free, at("12:00"), ""); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		who   audit.Actor
		typ   store.ConsultationType
		start time.Time
		want  error
	}{
		{"taken", pat, f.free, at("12:00"), ErrSlotTaken},
		{"overlapping another type", pat, f.paid, at("11:40"), nil}, // 11:40-12:00 does not overlap 12:00
		{"past", pat, f.free, at("07:00"), ErrSlotPast},
		{"inside the notice", pat, f.free, at("09:30"), ErrSlotTooSoon},
		{"off the grid", pat, f.free, at("13:10"), ErrSlotOffGrid},
		{"outside hours", pat, f.free, at("21:00"), ErrSlotOutsideHours},
		{"paid type outside its hours", pat, f.paid, at("14:00"), ErrSlotOutsideHours},
		{"beyond the horizon", pat, f.free, at("10:00").Add(61 * 24 * time.Hour), ErrSlotBeyondHorizon},
		{"practitioner cannot book", f.doc, f.free, at("15:00"), ErrPatientsOnly},
	}
	for _, tt := range tests {
		_, err := f.book(tt.who, tt.typ, tt.start, "")
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
	// The overlap with the 11:40 paid booking is refused by the database.
	if _, err := f.book(pat, f.free, at("11:30"), ""); !errors.Is(err, ErrSlotTaken) {
		t.Errorf("overlap across types: %v", err)
	}
	if _, err := f.svc.Book(f.ctx, pat, BookRequest{PractitionerID: f.doc.ID, ConsultationTypeID: "nope", Start: at("15:00")}); kindOf(err) != problem.NotFound {
		t.Errorf("unknown type: %v", err)
	}
	if _, err := f.svc.Book(f.ctx, pat, BookRequest{PractitionerID: store.NewUUID(), ConsultationTypeID: f.free.ID, Start: at("15:00")}); kindOf(err) != problem.NotFound {
		t.Errorf("unknown practitioner: %v", err)
	}
	if _, err := f.svc.Book(f.ctx, pat, BookRequest{PractitionerID: f.doc.ID, ConsultationTypeID: f.free.ID, Start: at("15:00"), RelativeID: store.NewUUID()}); kindOf(err) != problem.NotFound {
		t.Errorf("someone else's relative: %v", err)
	}
}

// TestConcurrentBookings releases 100 patients at once on 10 slots (ten
// for each): every slot gets exactly one appointment, and every other
// patient is told it was taken.
func TestConcurrentBookings(t *testing.T) {
	f := newFixture(t)
	const n, nSlots = 100, 10
	slots := make([]time.Time, nSlots)
	for i := range slots {
		slots[i] = at("14:00").Add(time.Duration(i) * 30 * time.Minute)
	}
	patients := make([]audit.Actor, n)
	for i := range patients {
		patients[i] = f.account("patient", "Patient")
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			_, errs[i] = f.book(patients[i], f.free, slots[i%nSlots], "")
		}(i)
	}
	close(start)
	wg.Wait()
	won := make([]int, nSlots)
	for i, err := range errs {
		switch {
		case err == nil:
			won[i%nSlots]++
		case errors.Is(err, ErrSlotTaken):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	for i, s := range slots {
		var rows int
		f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM appointments WHERE practitioner_id = $1 AND starts_at = $2`, f.doc.ID, s).Scan(&rows)
		if won[i] != 1 || rows != 1 {
			t.Errorf("slot %v: %d booked, %d rows; want 1, 1", s, won[i], rows)
		}
	}
	// The losers' transactions left nothing behind.
	var evs, audits int
	f.db.Pool.QueryRow(f.ctx, `SELECT (SELECT count(*) FROM appointment_events), (SELECT count(*) FROM audit_log WHERE action = 'create' AND object_type = 'appointment')`).Scan(&evs, &audits)
	if evs != nSlots || audits != nSlots {
		t.Errorf("%d appointment events, %d audit entries; want %d each", evs, audits, nSlots)
	}
}

func TestHoldExpiry(t *testing.T) {
	f := newFixture(t)
	a, b := f.account("patient", "A"), f.account("patient", "B")
	if _, err := f.book(a, f.paid, at("11:00"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.book(b, f.paid, at("11:00"), ""); !errors.Is(err, ErrSlotTaken) {
		t.Fatalf("held slot: %v", err)
	}
	f.clock.Advance(HoldDuration + time.Minute)
	got, err := f.book(b, f.paid, at("11:00"), "")
	if err != nil {
		t.Fatalf("after the hold lapsed: %v", err)
	}
	if got.Appointment.PatientID != b.ID {
		t.Fatal("wrong patient")
	}
	var expired int
	f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM appointment_events WHERE from_status = 'pending_payment' AND to_status = 'expired'`).Scan(&expired)
	if expired != 1 {
		t.Fatalf("expired events: %d", expired)
	}
}

func TestTransitionAppointment(t *testing.T) {
	f := newFixture(t)
	pat := f.account("patient", "A")
	b, err := f.book(pat, f.paid, at("11:00"), "")
	if err != nil {
		t.Fatal(err)
	}
	id := b.Appointment.ID
	if err := store.TransitionAppointment(f.ctx, f.db.Pool, id, []string{store.StatusPendingPayment}, store.StatusConfirmed, "", "paid"); err != nil {
		t.Fatal(err)
	}
	if err := store.TransitionAppointment(f.ctx, f.db.Pool, id, []string{store.StatusPendingPayment}, store.StatusConfirmed, "", "paid again"); !errors.Is(err, store.ErrWrongStatus) {
		t.Fatalf("second transition: %v", err)
	}
	if err := store.TransitionAppointment(f.ctx, f.db.Pool, store.NewUUID(), []string{store.StatusPendingPayment}, store.StatusConfirmed, "", ""); kindOf(err) != problem.NotFound {
		t.Fatalf("missing appointment: %v", err)
	}
	a, _ := store.AppointmentByID(f.ctx, f.db.Pool, id)
	if a.Status != store.StatusConfirmed || a.HoldExpiresAt != nil {
		t.Fatalf("after payment: %s hold %v", a.Status, a.HoldExpiresAt)
	}
	evs, _ := store.AppointmentEvents(f.ctx, f.db.Pool, id)
	if len(evs) != 2 || evs[1].FromStatus != store.StatusPendingPayment || evs[1].ToStatus != store.StatusConfirmed || evs[1].Note != "paid" {
		t.Fatalf("events: %+v", evs)
	}
}

func TestCancelAndReschedule(t *testing.T) {
	f := newFixture(t)
	pat := f.account("patient", "A")
	b, err := f.book(pat, f.free, at("15:00"), "")
	if err != nil {
		t.Fatal(err)
	}
	// Reschedule by 15 minutes less than its length: overlaps its own old slot.
	if _, err := f.svc.Reschedule(f.ctx, pat, b.Appointment.ID, at("15:30")); err != nil {
		t.Fatalf("reschedule: %v", err)
	}
	other := f.account("patient", "B")
	if _, err := f.book(other, f.free, at("15:00"), ""); err != nil {
		t.Fatalf("the old slot is free again: %v", err)
	}
	if _, err := f.svc.Reschedule(f.ctx, pat, b.Appointment.ID, at("15:00")); !errors.Is(err, ErrSlotTaken) {
		t.Fatalf("reschedule onto a taken slot: %v", err)
	}
	if _, err := f.svc.Reschedule(f.ctx, other, b.Appointment.ID, at("17:00")); kindOf(err) != problem.NotFound {
		t.Fatalf("someone else's reschedule: %v", err)
	}
	if _, err := f.svc.Cancel(f.ctx, other, b.Appointment.ID, ""); kindOf(err) != problem.NotFound {
		t.Fatalf("someone else's cancel: %v", err)
	}
	// Past the cut-off (4 h before 15:30 is 11:30) the patient cannot cancel...
	f.clock.Advance(4*time.Hour + 31*time.Minute) // 12:31
	if _, err := f.svc.Cancel(f.ctx, pat, b.Appointment.ID, ""); !errors.Is(err, ErrTooLateToCancel) {
		t.Fatalf("late cancel: %v", err)
	}
	// ...but the practitioner can, and the patient is told why.
	got, err := f.svc.Cancel(f.ctx, f.doc, b.Appointment.ID, "I am ill today")
	if err != nil || got.Status != store.StatusCancelled {
		t.Fatalf("practitioner cancel: %v %s", err, got.Status)
	}
	v, err := f.svc.Get(f.ctx, pat, b.Appointment.ID)
	if err != nil || v.CancelReason != "I am ill today" {
		t.Fatalf("patient sees why: %q %v", v.CancelReason, err)
	}
	stored, _ := store.AppointmentByID(f.ctx, f.db.Pool, b.Appointment.ID)
	if why, err := f.svc.CancelReasonForNotice(f.ctx, f.db.Pool, stored); err != nil || why != "I am ill today" {
		t.Fatalf("reason for the notice: %q %v", why, err)
	}
	var told int
	f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM outbox_events WHERE kind = 'appointment.cancelled' AND recipient_id = $1`, pat.ID).Scan(&told)
	if told != 1 {
		t.Fatalf("patient not told: %d", told)
	}
	if _, err := f.svc.Cancel(f.ctx, f.doc, b.Appointment.ID, ""); !errors.Is(err, store.ErrWrongStatus) {
		t.Fatalf("cancel twice: %v", err)
	}
}

func TestNoShowRule(t *testing.T) {
	f := newFixture(t)
	pat := f.account("patient", "A")
	// Three appointments the patient does not come to.
	var ids []string
	for i := 0; i < 3; i++ {
		b, err := f.book(pat, f.free, at("10:00").Add(time.Duration(i)*time.Hour), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.Appointment.ID)
	}
	f.clock.Advance(5 * time.Hour) // 13:00
	for _, id := range ids {
		if _, err := f.svc.Mark(f.ctx, f.doc, id, store.StatusNoShow); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.book(pat, f.free, at("18:00"), ""); !errors.Is(err, ErrBlocked) || kindOf(err) != problem.Forbidden {
		t.Fatalf("after 3 no-shows: %v", err)
	}
	blocks, err := f.svc.Blocks(f.ctx, f.doc)
	if err != nil || len(blocks) != 1 || !blocks[0].Blocked || blocks[0].NoShows != 3 {
		t.Fatalf("blocks: %+v %v", blocks, err)
	}
	if err := f.svc.SetBlock(f.ctx, f.doc, pat.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.book(pat, f.free, at("18:00"), ""); err != nil {
		t.Fatalf("after lifting: %v", err)
	}
	other := f.account("patient", "B")
	// A patient who never booked this practitioner cannot be blocked (nor
	// told apart from a missing one).
	if err := f.svc.SetBlock(f.ctx, f.doc, other.ID, true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("blocking a stranger: %v", err)
	}
	if _, err := f.book(other, f.free, at("19:30"), ""); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SetBlock(f.ctx, f.doc, other.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.book(other, f.free, at("18:30"), ""); !errors.Is(err, ErrBlocked) {
		t.Fatalf("blocked by hand: %v", err)
	}
	// A no-show cannot be marked before the appointment starts.
	b, _ := f.book(pat, f.free, at("19:00"), "")
	if _, err := f.svc.Mark(f.ctx, f.doc, b.Appointment.ID, store.StatusNoShow); !errors.Is(err, store.ErrWrongStatus) {
		t.Fatalf("early no-show: %v", err)
	}
}

func TestWaitlistOffers(t *testing.T) {
	f := newFixture(t)
	booker, first, second, stranger := f.account("patient", "Booker"), f.account("patient", "First"), f.account("patient", "Second"), f.account("patient", "Stranger")
	b, err := f.book(booker, f.free, at("14:00"), "")
	if err != nil {
		t.Fatal(err)
	}
	// First in line, but only wants a slot before 12:00: 14:00 is not for them.
	early := f.account("patient", "Early")
	before := at("12:00")
	if _, err := f.svc.JoinWaitlist(f.ctx, early, f.doc.ID, "", &before); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	if _, err := f.svc.JoinWaitlist(f.ctx, first, f.doc.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.JoinWaitlist(f.ctx, first, f.doc.ID, "", nil); !errors.Is(err, store.ErrAlreadyWaiting) {
		t.Fatalf("joining twice: %v", err)
	}
	f.clock.Advance(time.Second)
	if _, err := f.svc.JoinWaitlist(f.ctx, second, f.doc.ID, f.free.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Cancel(f.ctx, booker, b.Appointment.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, offers, _ := f.svc.Waitlist(f.ctx, early); len(offers) != 0 {
		t.Fatalf("offer after the 'before' date: %+v", offers)
	}
	_, offers, _ := f.svc.Waitlist(f.ctx, first)
	if len(offers) != 1 || !offers[0].StartsAt.Equal(at("14:00")) {
		t.Fatalf("first in line has no offer: %+v", offers)
	}
	// Only the offered patient sees and can take the slot.
	slots, _ := f.svc.Slots(f.ctx, stranger.ID, f.doc.ID, f.free.ID, at("13:30"), at("15:00"))
	if len(slots) != 2 || slots[0].Start.Equal(at("14:00")) {
		t.Fatalf("stranger's slots: %v", starts(slots))
	}
	if _, err := f.book(stranger, f.free, at("14:00"), ""); !errors.Is(err, ErrSlotOffered) {
		t.Fatalf("stranger books the offered slot: %v", err)
	}
	// The offer lapses: the job passes it to the next in line.
	f.clock.Advance(OfferDuration + time.Minute)
	if _, err := f.svc.ExpireAll(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, offers, _ := f.svc.Waitlist(f.ctx, first); len(offers) != 0 {
		t.Fatalf("first still has the offer: %+v", offers)
	}
	_, offers, _ = f.svc.Waitlist(f.ctx, second)
	if len(offers) != 1 {
		t.Fatalf("second in line has no offer")
	}
	if _, err := f.book(first, f.free, at("14:00"), ""); !errors.Is(err, ErrSlotOffered) {
		t.Fatalf("first books after the offer passed on: %v", err)
	}
	if _, err := f.book(second, f.free, at("14:00"), ""); err != nil {
		t.Fatalf("second takes the offer: %v", err)
	}
	entries, offers, _ := f.svc.Waitlist(f.ctx, second)
	if len(entries) != 0 || len(offers) != 0 {
		t.Fatalf("second still waiting after booking: %+v %+v", entries, offers)
	}
	var n int
	f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM outbox_events WHERE kind = 'waitlist.offer'`).Scan(&n)
	if n != 2 {
		t.Fatalf("waitlist.offer events: %d", n)
	}
}

func TestNextFreeAndSearch(t *testing.T) {
	f := newFixture(t)
	res, _, err := f.svc.Search(f.ctx, SearchQuery{City: "paris", Specialty: "general_practice"})
	if err != nil || len(res) != 1 {
		t.Fatalf("search: %+v %v", res, err)
	}
	// Notice 2 h from 08:00 local: the first free slot is at 10:00 (both types open then).
	if res[0].NextSlot == nil || !res[0].NextSlot.Start.Equal(at("10:00")) {
		t.Fatalf("next slot: %+v", res[0].NextSlot)
	}
	pat := f.account("patient", "A")
	if _, err := f.book(pat, f.free, at("10:00"), ""); err != nil {
		t.Fatal(err)
	}
	res, _, _ = f.svc.Search(f.ctx, SearchQuery{VideoOnly: true})
	if len(res) != 1 || !res[0].NextSlot.Start.Equal(at("10:30")) {
		t.Fatalf("after booking 10:00, video next slot: %+v", res[0].NextSlot)
	}
	if res, _, _ := f.svc.Search(f.ctx, SearchQuery{City: "Lyon"}); len(res) != 0 {
		t.Fatalf("Lyon: %+v", res)
	}
	if _, _, err := f.svc.Search(f.ctx, SearchQuery{Specialty: "astrology"}); kindOf(err) != problem.Invalid {
		t.Fatalf("unknown specialty: %v", err)
	}
	// A disabled account is no longer listed.
	if _, err := f.db.Pool.Exec(f.ctx, `UPDATE accounts SET disabled_at = now() WHERE id = $1`, f.doc.ID); err != nil {
		t.Fatal(err)
	}
	if res, _, _ := f.svc.Search(f.ctx, SearchQuery{City: "Paris"}); len(res) != 0 {
		t.Fatalf("disabled practitioner listed: %+v", res)
	}
}

func TestDelayAbsenceAndStaleRefresh(t *testing.T) {
	f := newFixture(t)
	pat := f.account("patient", "A")
	b1, _ := f.book(pat, f.free, at("10:00"), "")
	b2, _ := f.book(pat, f.free, at("19:00"), "")
	f.clock.Advance(2*time.Hour + 30*time.Minute) // 10:30: the first one is under way
	if _, err := f.svc.Mark(f.ctx, f.doc, b1.Appointment.ID, store.StatusArrived); err != nil {
		t.Fatal(err)
	}
	n, err := f.svc.AnnounceDelay(f.ctx, f.doc, 25)
	if err != nil || n != 2 {
		t.Fatalf("delay told %d appointments: %v", n, err)
	}
	a, _ := store.AppointmentByID(f.ctx, f.db.Pool, b2.Appointment.ID)
	if a.DelayMinutes != 25 {
		t.Fatalf("delay not recorded: %d", a.DelayMinutes)
	}
	if _, err := f.svc.AnnounceDelay(f.ctx, pat, 10); !errors.Is(err, ErrPractitionerOnly) {
		t.Fatalf("a patient announces a delay: %v", err)
	}
	var told int
	f.db.Pool.QueryRow(f.ctx, `SELECT count(*) FROM outbox_events WHERE kind = 'appointment.delay' AND recipient_id = $1`, pat.ID).Scan(&told)
	if told != 2 {
		t.Fatalf("appointment.delay events: %d", told)
	}

	// An absence over the rest of the week moves the next free slot.
	if _, err := f.svc.AddAbsence(f.ctx, f.doc, at("00:00"), at("00:00").Add(5*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	p, _ := store.PractitionerByID(f.ctx, f.db.Pool, f.doc.ID)
	if p.NextFreeAt == nil || p.NextFreeAt.Before(at("00:00").Add(5*24*time.Hour)) {
		t.Fatalf("next free during the absence: %v", p.NextFreeAt)
	}
	// Time passes beyond it: the periodic refresh catches up.
	f.clock.Advance(8 * 24 * time.Hour)
	if n, err := f.svc.RefreshStale(f.ctx, 100); err != nil || n != 1 {
		t.Fatalf("refresh stale: %d %v", n, err)
	}
	p, _ = store.PractitionerByID(f.ctx, f.db.Pool, f.doc.ID)
	if p.NextFreeAt == nil || p.NextFreeAt.Before(f.clock.Now()) {
		t.Fatalf("next free after refresh: %v (now %v)", p.NextFreeAt, f.clock.Now())
	}
}

func TestReleasedByAnotherPackage(t *testing.T) {
	f := newFixture(t)
	pat, waiting := f.account("patient", "A"), f.account("patient", "W")
	b, err := f.book(pat, f.paid, at("10:00"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.JoinWaitlist(f.ctx, waiting, f.doc.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	// Payments gives up on the payment and releases the slot.
	err = f.db.Tx(f.ctx, func(tx pgx.Tx) error {
		if err := store.TransitionAppointment(f.ctx, tx, b.Appointment.ID, []string{store.StatusPendingPayment}, store.StatusExpired, "", "payment failed"); err != nil {
			return err
		}
		return f.svc.Released(f.ctx, tx, b.Appointment)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, offers, _ := f.svc.Waitlist(f.ctx, waiting); len(offers) != 1 || !offers[0].StartsAt.Equal(at("10:00")) {
		t.Fatalf("freed slot not offered: %+v", offers)
	}
}

func TestExistingPatientsOnly(t *testing.T) {
	f := newFixture(t)
	followUp, err := f.svc.SaveConsultationType(f.ctx, f.doc, store.ConsultationType{Name: "Suivi", Mode: "video", DurationMinutes: 30, NewPatients: false, Active: true})
	if err != nil {
		t.Fatal(err)
	}
	hours, _ := f.svc.OpeningHours(f.ctx, f.doc.ID)
	for d := 0; d < 7; d++ {
		hours = append(hours, store.OpeningHours{ConsultationTypeID: followUp.ID, Weekday: d, Start: "20:00", End: "22:00"})
	}
	if err := f.svc.SetOpeningHours(f.ctx, f.doc, hours); err != nil {
		t.Fatal(err)
	}
	known, stranger := f.account("patient", "Known"), f.account("patient", "Stranger")
	b, err := f.book(known, f.free, at("10:00"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.book(known, followUp, at("20:00"), ""); !errors.Is(err, ErrNoNewPatients) {
		t.Fatalf("before the first consultation: %v", err)
	}
	f.clock.Advance(2*time.Hour + 35*time.Minute)
	if _, err := f.svc.Mark(f.ctx, f.doc, b.Appointment.ID, store.StatusCompleted); err != nil {
		t.Fatal(err)
	}
	if _, err := f.book(known, followUp, at("20:00"), ""); err != nil {
		t.Fatalf("a known patient books a follow-up: %v", err)
	}
	if _, err := f.book(stranger, followUp, at("20:30"), ""); !errors.Is(err, ErrNoNewPatients) || kindOf(err) != problem.Forbidden {
		t.Fatalf("a new patient books a follow-up: %v", err)
	}
}

type failingCheckout struct{}

func (failingCheckout) StartCheckout(context.Context, store.Q, store.Appointment) (string, time.Time, error) {
	return "", time.Time{}, errors.New("stripe is down")
}

func TestCheckoutFailureReleasesTheSlot(t *testing.T) {
	f := newFixture(t)
	f.svc.cfg.Checkout = failingCheckout{}
	pat := f.account("patient", "A")
	if _, err := f.book(pat, f.paid, at("11:00"), ""); !errors.Is(err, ErrCheckoutFailed) || kindOf(err) != problem.Unavailable {
		t.Fatalf("book with payments down: %v", err)
	}
	f.svc.cfg.Checkout = nil
	if _, err := f.book(f.account("patient", "B"), f.paid, at("11:00"), ""); err != nil {
		t.Fatalf("the slot stayed held: %v", err)
	}
}

type refuseFarMoves struct{ limit time.Time }

func (r refuseFarMoves) CheckReschedule(_ context.Context, _ store.Q, _ store.Appointment, start time.Time) error {
	if start.After(r.limit) {
		return problem.New(problem.Conflict, "hold_too_short", "the card hold would lapse before this date")
	}
	return nil
}

func TestRescheduleCheck(t *testing.T) {
	f := newFixture(t)
	f.svc.cfg.RescheduleCheck = refuseFarMoves{limit: at("23:59")}
	pat := f.account("patient", "A")
	b, err := f.book(pat, f.free, at("16:00"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Reschedule(f.ctx, pat, b.Appointment.ID, at("16:00").Add(48*time.Hour)); kindOf(err) != problem.Conflict {
		t.Fatalf("refused move: %v", err)
	}
	if a, _ := store.AppointmentByID(f.ctx, f.db.Pool, b.Appointment.ID); !a.StartsAt.Equal(at("16:00")) {
		t.Fatalf("a refused move changed the time: %v", a.StartsAt)
	}
	if _, err := f.svc.Reschedule(f.ctx, pat, b.Appointment.ID, at("17:00")); err != nil {
		t.Fatalf("allowed move: %v", err)
	}
}
