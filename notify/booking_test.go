package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"teleconsult/booking"
	"teleconsult/store"
	"teleconsult/store/storetest"
	"teleconsult/vault"
)

// bookingSlots is the adapter cmd/teleconsult wires: the free slots of
// the appointment's consultation type over the next two weeks.
func bookingSlots(db *store.DB, svc *booking.Service, now func() time.Time) SlotFinder {
	return SlotFinderFunc(func(ctx context.Context, id string, limit int) ([]time.Time, error) {
		a, err := store.AppointmentByID(ctx, db.Pool, id)
		if err != nil {
			return nil, err
		}
		slots, err := svc.Slots(ctx, a.PatientID, a.PractitionerID, a.ConsultationTypeID, now(), now().Add(14*24*time.Hour))
		if err != nil {
			return nil, err
		}
		var out []time.Time
		for _, s := range slots {
			if len(out) == limit {
				break
			}
			out = append(out, s.Start)
		}
		return out, nil
	})
}

// TestLinksThroughBookingService follows the email links with the booking
// service wired, as in production: its rules apply (who cancelled is
// recorded, the practitioner is told, slots come from opening hours).
func TestLinksThroughBookingService(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	mux := http.NewServeMux()
	web := httptest.NewServer(mux)
	defer web.Close()
	cfg := Config{BaseURL: web.URL, SMTPURL: srv.url(), TokenKey: testKey}
	w := newWorker(t, db, cfg, c)
	svc := booking.New(db, vault.NewForTest(t, db), booking.Config{Now: c.Now, BaseURL: web.URL})
	pages := NewActionPages(db, cfg, c.Now)
	pages.Booking = svc
	pages.Slots = bookingSlots(db, svc, c.Now)
	pages.Routes(mux)

	f := newFixture(t, db, fixtureOptions{lang: "en"})
	// Open Tuesdays and Thursdays, 09:00-12:00 Paris time.
	for _, day := range []int{2, 4} {
		if _, err := db.Pool.Exec(context.Background(), `INSERT INTO opening_hours (practitioner_id, consultation_type_id, weekday, start_time, end_time)
			VALUES ($1, $2, $3, '09:00', '12:00')`, f.practitioner, f.consultType, day); err != nil {
			t.Fatal(err)
		}
	}
	first := f.book(t, march3, c.Now())
	second := f.book(t, march3.Add(-time.Hour), c.Now()) // 09:30
	drain(t, w)
	links := map[string][2]string{}
	for _, m := range srv.messages() {
		pm := parseMail(t, m.Data)
		move, cancel := actionLinks(t, pm.Text)
		if strings.Contains(pm.Subject, "10:30") {
			links[first] = [2]string{move, cancel}
		} else {
			links[second] = [2]string{move, cancel}
		}
	}

	// Move the first: the page offers the free times of the agenda.
	resp, err := http.Get(links[first][0])
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "Tue 3 March at 09:00") || strings.Contains(body, "Tue 3 March at 09:30") {
		t.Fatalf("reschedule page: %d\n%s", resp.StatusCode, body)
	}
	newStart := time.Date(2026, 3, 5, 10, 0, 0, 0, time.UTC) // Thu 5 March 11:00 Paris
	resp, _ = http.PostForm(links[first][0], url.Values{"start": {newStart.Format(time.RFC3339)}})
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("move: %d\n%s", resp.StatusCode, body)
	}
	a, _ := store.AppointmentByID(context.Background(), db.Pool, first)
	if !a.StartsAt.Equal(newStart) {
		t.Errorf("moved to %v, want %v", a.StartsAt, newStart)
	}

	// Cancel the second.
	resp, _ = http.Post(links[second][1], "", nil)
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("cancel: %d\n%s", resp.StatusCode, body)
	}
	b, _ := store.AppointmentByID(context.Background(), db.Pool, second)
	if b.Status != store.StatusCancelled || b.CancelledBy == nil || *b.CancelledBy != f.patient {
		t.Errorf("second is %s, cancelled by %v", b.Status, b.CancelledBy)
	}

	// The practitioner hears of both, with the booking service's data.
	base := len(srv.messages())
	drain(t, w)
	var subjects []string
	for _, m := range srv.messages()[base:] {
		subjects = append(subjects, m.To[0]+" "+parseMail(t, m.Data).Subject)
	}
	want := []string{
		f.practitionerEm + " Annulé : le rendez-vous du mar. 3 mars à 09:30 avec Alice Durand",
		f.practitionerEm + " Déplacé : le rendez-vous du jeu. 5 mars à 11:00 avec Alice Durand",
		f.patientEmail + " Moved: your appointment on Thu 5 March at 11:00 with Dr Martin",
	}
	for _, w := range want {
		found := false
		for _, s := range subjects {
			found = found || s == w
		}
		if !found {
			t.Errorf("missing %q in %q", w, subjects)
		}
	}
}
