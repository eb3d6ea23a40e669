package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"teleconsult/booking"
	"teleconsult/store"
)

// fakeCheckout stands in for payments: it hands out a checkout URL.
type fakeCheckout struct{}

func (fakeCheckout) StartCheckout(_ context.Context, _ store.Q, a store.Appointment) (string, time.Time, error) {
	return "https://pay.example.test/" + a.ID, *a.HoldExpiresAt, nil
}

type bookingEnv struct {
	*testEnv
	svc *booking.Service
}

func newBookingEnv(t *testing.T) *bookingEnv {
	e := newEnv(t)
	svc := booking.New(e.DB, e.API.Vault, booking.Config{Checkout: fakeCheckout{}, BaseURL: e.API.BaseURL})
	e.start(func(mux *http.ServeMux) { e.API.bookingRoutes(mux, svc) })
	return &bookingEnv{testEnv: e, svc: svc}
}

type slotsBody struct {
	Slots []struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	} `json:"slots"`
}

type typeBody struct {
	ID string `json:"id"`
}

// doctor sets up a practitioner over the API: profile in Lyon, a free
// video type and a paid in-person type, open every day.
func (e *bookingEnv) doctor(t *testing.T) (*client, string, string, string) {
	t.Helper()
	doc, acct := e.user("practitioner", "Dr Jeanne Test")
	lat, lon := 45.764, 4.8357
	if st := doc.json("PUT", "/api/v1/practitioner/profile", map[string]any{"specialty": "dermatology", "rpps": "10003456789",
		"address": "1 place Bellecour", "city": "Lyon", "postcode": "69002", "latitude": lat, "longitude": lon, "languages": []string{"fr", "en"}}, nil); st != 200 {
		t.Fatalf("profile: %d", st)
	}
	var video, paid typeBody
	if st := doc.json("POST", "/api/v1/practitioner/consultation-types", map[string]any{"name": "Téléconsultation", "mode": "video", "duration_minutes": 30}, &video); st != 201 {
		t.Fatalf("video type: %d", st)
	}
	if st := doc.json("POST", "/api/v1/practitioner/consultation-types", map[string]any{"name": "Cabinet", "mode": "in_person", "duration_minutes": 30, "fee_cents": 5000}, &paid); st != 201 {
		t.Fatalf("paid type: %d", st)
	}
	var hours []map[string]any
	for d := 0; d < 7; d++ {
		hours = append(hours, map[string]any{"consultation_type_id": video.ID, "weekday": d, "start": "00:00", "end": "23:30"},
			map[string]any{"consultation_type_id": paid.ID, "weekday": d, "start": "00:00", "end": "23:30"})
	}
	if resp, b := doc.do("PUT", "/api/v1/practitioner/opening-hours", map[string]any{"opening_hours": hours}); resp.StatusCode != 200 {
		t.Fatalf("hours: %d %s", resp.StatusCode, b)
	}
	return doc, acct.ID, video.ID, paid.ID
}

// freeSlots lists the free slots of a type over the next two days.
func freeSlots(t *testing.T, c *client, docID, typeID string) []time.Time {
	t.Helper()
	now := time.Now().UTC()
	var s slotsBody
	path := fmt.Sprintf("/api/v1/practitioners/%s/slots?from=%s&to=%s&consultation_type_id=%s", docID,
		now.Format(time.RFC3339), now.Add(48*time.Hour).Format(time.RFC3339), typeID)
	if st := c.json("GET", path, nil, &s); st != 200 {
		t.Fatalf("slots: %d", st)
	}
	var out []time.Time
	for _, x := range s.Slots {
		out = append(out, x.Start)
	}
	return out
}

type apptBody struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Payment *struct {
		CheckoutURL string    `json:"checkout_url"`
		ExpiresAt   time.Time `json:"expires_at"`
	} `json:"payment"`
}

func TestBookingAPI(t *testing.T) {
	e := newBookingEnv(t)
	doc, docID, videoID, paidID := e.doctor(t)
	pat, patAcct := e.user("patient", "Camille Durand")
	other, _ := e.user("patient", "Louis Bernard")
	anon := e.client()

	// Directory.
	var specs struct {
		Specialties []booking.Specialty `json:"specialties"`
	}
	if st := anon.json("GET", "/api/v1/specialties", nil, &specs); st != 200 || len(specs.Specialties) < 30 {
		t.Fatalf("specialties: %d %d", st, len(specs.Specialties))
	}
	var found struct {
		Results []struct {
			ID        string `json:"id"`
			Name      string `json:"name"`
			Specialty string `json:"specialty"`
			City      string `json:"city"`
			NextSlot  *struct {
				Start              time.Time `json:"start"`
				End                time.Time `json:"end"`
				ConsultationTypeID string    `json:"consultation_type_id"`
			} `json:"next_slot"`
		} `json:"results"`
	}
	for _, q := range []string{"specialty=dermatology&city=lyon", "postcode=69002", "near=45.76,4.84&radius_km=5", "mode=video&language=en", "near=45.76,4.84&sort=distance"} {
		if st := anon.json("GET", "/api/v1/practitioners?"+q, nil, &found); st != 200 || len(found.Results) != 1 {
			t.Fatalf("search %s: %d %+v", q, st, found.Results)
		}
		r := found.Results[0]
		if r.ID != docID || r.Name != "Dr Jeanne Test" || r.City != "Lyon" || r.NextSlot == nil || !r.NextSlot.End.After(r.NextSlot.Start) {
			t.Fatalf("search %s: %+v", q, r)
		}
	}
	for _, q := range []string{"city=Paris", "near=48.85,2.35&radius_km=20", "language=de", "specialty=pediatrics"} {
		if st := anon.json("GET", "/api/v1/practitioners?"+q, nil, &found); st != 200 || len(found.Results) != 0 {
			t.Fatalf("search %s should find nothing: %d %+v", q, st, found.Results)
		}
	}
	for _, q := range []string{"specialty=astrology", "near=abc", "page=0", "mode=phone"} {
		if resp, _ := anon.do("GET", "/api/v1/practitioners?"+q, nil); resp.StatusCode != 400 {
			t.Fatalf("search %s: %d, want 400", q, resp.StatusCode)
		}
	}
	var prof struct {
		ID                string `json:"id"`
		ConsultationTypes []struct {
			ID       string `json:"id"`
			Mode     string `json:"mode"`
			FeeCents int    `json:"fee_cents"`
		} `json:"consultation_types"`
	}
	if st := anon.json("GET", "/api/v1/practitioners/"+docID, nil, &prof); st != 200 || len(prof.ConsultationTypes) != 2 {
		t.Fatalf("profile: %d %+v", st, prof)
	}
	if resp, _ := anon.do("GET", "/api/v1/practitioners/not-a-uuid", nil); resp.StatusCode != 404 {
		t.Fatalf("bad id: %d", resp.StatusCode)
	}

	// Slots and booking.
	slots := freeSlots(t, pat, docID, videoID)
	if len(slots) < 10 {
		t.Fatalf("only %d slots", len(slots))
	}
	first := slots[0]
	if first.Before(time.Now().Add(2*time.Hour - time.Minute)) {
		t.Fatalf("first slot %v is inside the 2 h notice", first)
	}
	book := func(c *client, typ string, start time.Time, extra map[string]any) (int, apptBody, string) {
		body := map[string]any{"practitioner_id": docID, "consultation_type_id": typ, "start": start.Format(time.RFC3339)}
		for k, v := range extra {
			body[k] = v
		}
		var a apptBody
		resp, b := c.do("POST", "/api/v1/appointments", body)
		if resp.StatusCode == 201 {
			c.t.Helper()
			if err := jsonUnmarshal(b, &a); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, a, string(b)
	}
	if st, _, _ := book(anon, videoID, first, nil); st != 401 {
		t.Fatalf("anonymous booking: %d", st)
	}
	st, a, body := book(pat, videoID, first, map[string]any{"reason": "eczema flare"})
	if st != 201 || a.Status != "confirmed" || a.Payment != nil {
		t.Fatalf("book: %d %s", st, body)
	}
	if st, _, body := book(other, videoID, first, nil); st != 409 || errorCode([]byte(body)) != "slot_taken" {
		t.Fatalf("taken slot: %d %s", st, body)
	}
	for name, start := range map[string]time.Time{
		"past":           time.Now().Add(-time.Hour).Truncate(30 * time.Minute),
		"off the grid":   slots[3].Add(10 * time.Minute),
		"in the notice":  time.Now().Add(time.Hour).Truncate(30 * time.Minute),
		"beyond horizon": first.Add(70 * 24 * time.Hour),
	} {
		st, _, body := book(other, videoID, start, nil)
		if st != 400 || !strings.Contains(body, `"message"`) || errorCode([]byte(body)) == "invalid" {
			t.Errorf("%s: %d %s", name, st, body)
		}
	}
	if st, _, body := book(other, videoID, first, map[string]any{"bogus": 1}); st != 400 {
		t.Fatalf("unknown field: %d %s", st, body)
	}
	// The slot is gone from the list.
	if s := freeSlots(t, other, docID, videoID); len(s) > 0 && s[0].Equal(first) {
		t.Fatal("booked slot still listed")
	}

	// A paid type is held pending payment, with the checkout.
	paidSlots := freeSlots(t, pat, docID, paidID)
	st, p, body := book(pat, paidID, paidSlots[len(paidSlots)-1], nil)
	if st != 201 || p.Status != "pending_payment" || p.Payment == nil || !strings.HasPrefix(p.Payment.CheckoutURL, "https://pay.example.test/") {
		t.Fatalf("paid booking: %d %s", st, body)
	}

	// Reading.
	var mine struct {
		Appointments []apptBody `json:"appointments"`
	}
	if st := pat.json("GET", "/api/v1/appointments", nil, &mine); st != 200 || len(mine.Appointments) != 2 {
		t.Fatalf("mine: %d %+v", st, mine)
	}
	if st := other.json("GET", "/api/v1/appointments", nil, &mine); st != 200 || len(mine.Appointments) != 0 {
		t.Fatalf("other's list: %d %+v", st, mine)
	}
	var got apptBody
	if st := pat.json("GET", "/api/v1/appointments/"+a.ID, nil, &got); st != 200 || got.Reason != "eczema flare" {
		t.Fatalf("get: %d %+v", st, got)
	}
	if st := doc.json("GET", "/api/v1/appointments/"+a.ID, nil, &got); st != 200 || got.Reason != "eczema flare" {
		t.Fatalf("practitioner get: %d %+v", st, got)
	}
	resp, b := other.do("GET", "/api/v1/appointments/"+a.ID, nil)
	if resp.StatusCode != 404 || strings.Contains(string(b), "eczema") || strings.Contains(string(b), a.ID) {
		t.Fatalf("another patient's appointment: %d %s", resp.StatusCode, b)
	}
	resp404, b404 := other.do("GET", "/api/v1/appointments/"+store.NewUUID(), nil)
	if resp404.StatusCode != 404 || errorCode(b404) != errorCode(b) {
		t.Fatalf("a missing appointment answers differently: %s vs %s", b404, b)
	}
	var agenda struct {
		Appointments []apptBody `json:"appointments"`
	}
	day := first.In(mustParis(t)).Format("2006-01-02")
	if st := doc.json("GET", "/api/v1/agenda?view=week&date="+day, nil, &agenda); st != 200 || len(agenda.Appointments) == 0 {
		t.Fatalf("agenda: %d %+v", st, agenda)
	}
	if st := doc.json("GET", "/api/v1/appointments?from="+first.Add(-time.Hour).Format(time.RFC3339)+"&to="+first.Add(time.Hour).Format(time.RFC3339), nil, &agenda); st != 200 || len(agenda.Appointments) != 1 {
		t.Fatalf("practitioner's appointments in a range: %d %+v", st, agenda)
	}

	// History: who changed what, for the two parties only.
	var hist struct {
		Events []struct {
			From string `json:"from"`
			To   string `json:"to"`
		} `json:"events"`
	}
	if st := pat.json("GET", "/api/v1/appointments/"+a.ID+"/history", nil, &hist); st != 200 || len(hist.Events) != 1 || hist.Events[0].To != "confirmed" {
		t.Fatalf("history: %d %+v", st, hist)
	}
	if resp, _ := other.do("GET", "/api/v1/appointments/"+a.ID+"/history", nil); resp.StatusCode != 404 {
		t.Fatalf("another's history: %d", resp.StatusCode)
	}

	// Calendar file.
	resp, ics := pat.do("GET", "/api/v1/appointments/"+a.ID+"/ics", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/calendar") ||
		!strings.Contains(string(ics), "\r\nDTSTART:"+first.UTC().Format("20060102T150405Z")+"\r\n") || strings.Contains(string(ics), "eczema") {
		t.Fatalf("ics: %d %s", resp.StatusCode, ics)
	}
	if resp, _ := other.do("GET", "/api/v1/appointments/"+a.ID+"/ics", nil); resp.StatusCode != 404 {
		t.Fatalf("another's ics: %d", resp.StatusCode)
	}

	// Within the 4 h cut-off the patient can no longer change it online.
	if resp, b := pat.do("POST", "/api/v1/appointments/"+a.ID+"/reschedule", map[string]string{"start": slots[20].Format(time.RFC3339)}); resp.StatusCode != 409 || errorCode(b) != "too_late_to_cancel" {
		t.Fatalf("late reschedule: %d %s", resp.StatusCode, b)
	}
	// Reschedule a later one, then cancel it.
	st, later, body := book(pat, videoID, slots[20], nil)
	if st != 201 {
		t.Fatalf("book later: %d %s", st, body)
	}
	var moved apptBody
	if st := pat.json("POST", "/api/v1/appointments/"+later.ID+"/reschedule", map[string]string{"start": slots[22].Format(time.RFC3339)}, &moved); st != 200 {
		t.Fatalf("reschedule: %d", st)
	}
	if st, _, body := book(other, videoID, slots[20], nil); st != 201 {
		t.Fatalf("old slot not freed by reschedule: %d %s", st, body)
	}
	if resp, _ := other.do("POST", "/api/v1/appointments/"+later.ID+"/cancel", map[string]string{"reason": "x"}); resp.StatusCode != 404 {
		t.Fatalf("another patient cancels: %d", resp.StatusCode)
	}
	var cancelled apptBody
	if st := pat.json("POST", "/api/v1/appointments/"+later.ID+"/cancel", map[string]string{"reason": "feeling better"}, &cancelled); st != 200 || cancelled.Status != "cancelled" {
		t.Fatalf("cancel: %d %+v", st, cancelled)
	}
	if resp, b := pat.do("POST", "/api/v1/appointments/"+later.ID+"/cancel", map[string]string{}); resp.StatusCode != 409 {
		t.Fatalf("cancel twice: %d %s", resp.StatusCode, b)
	}
	// The practitioner cancels the near one, with a reason the patient reads.
	if st := doc.json("POST", "/api/v1/appointments/"+a.ID+"/cancel", map[string]string{"reason": "emergency at the hospital"}, &cancelled); st != 200 {
		t.Fatalf("practitioner cancels: %d", st)
	}
	var seen struct {
		CancelReason string `json:"cancel_reason"`
	}
	if st := pat.json("GET", "/api/v1/appointments/"+a.ID, nil, &seen); st != 200 || seen.CancelReason != "emergency at the hospital" {
		t.Fatalf("patient sees why: %d %+v", st, seen)
	}

	// Blocks: a blocked patient gets 403.
	if st := doc.json("PUT", "/api/v1/blocks/"+patAcct.ID, map[string]bool{"blocked": true}, nil); st != 200 {
		t.Fatalf("block: %d", st)
	}
	if st, _, body := book(pat, videoID, slots[8], nil); st != 403 || errorCode([]byte(body)) != "patient_blocked" {
		t.Fatalf("blocked booking: %d %s", st, body)
	}
	if st := pat.json("PUT", "/api/v1/blocks/"+patAcct.ID, map[string]bool{"blocked": false}, nil); st != 404 {
		t.Fatalf("a patient unblocks themselves: %d", st)
	}
	if st := doc.json("PUT", "/api/v1/blocks/"+patAcct.ID, map[string]bool{"blocked": false}, nil); st != 200 {
		t.Fatalf("unblock: %d", st)
	}

	// Relatives: book for a child.
	var child struct {
		ID string `json:"id"`
	}
	if st := pat.json("POST", "/api/v1/relatives", map[string]any{"relationship": "child", "family_name": "Durand", "given_names": "Léa", "sex": "F", "birth_date": "2019-05-04", "weight_kg": 21.5}, &child); st != 201 {
		t.Fatalf("relative: %d", st)
	}
	if st, _, body := book(pat, videoID, slots[8], map[string]any{"relative_id": child.ID}); st != 201 {
		t.Fatalf("book for a child: %d %s", st, body)
	}
	if st, _, _ := book(other, videoID, slots[9], map[string]any{"relative_id": child.ID}); st != 404 {
		t.Fatalf("book for someone else's child: %d", st)
	}
	var rel struct {
		Relatives []booking.PatientProfile `json:"relatives"`
	}
	if st := pat.json("GET", "/api/v1/relatives", nil, &rel); st != 200 || len(rel.Relatives) != 1 || rel.Relatives[0].WeightKg == nil || *rel.Relatives[0].WeightKg != 21.5 {
		t.Fatalf("relatives: %d %+v", st, rel)
	}
	if st := pat.json("PUT", "/api/v1/patient/profile", map[string]any{"family_name": "Durand", "given_names": "Camille", "sex": "F", "birth_date": "1990-01-02"}, nil); st != 200 {
		t.Fatalf("own profile: %d", st)
	}
	if resp, b := pat.do("PUT", "/api/v1/patient/profile", map[string]any{"family_name": "Durand", "given_names": "Camille", "sex": "Q", "birth_date": "1990-01-02"}); resp.StatusCode != 400 {
		t.Fatalf("bad sex: %d %s", resp.StatusCode, b)
	}

	// Waiting list.
	var entry struct {
		ID string `json:"id"`
	}
	if st := other.json("POST", "/api/v1/waitlist", map[string]string{"practitioner_id": docID}, &entry); st != 201 {
		t.Fatalf("join waitlist: %d", st)
	}
	if st := other.json("POST", "/api/v1/waitlist", map[string]string{"practitioner_id": docID}, nil); st != 409 {
		t.Fatalf("join twice: %d", st)
	}
	if resp, _ := other.do("DELETE", "/api/v1/waitlist/"+entry.ID, nil); resp.StatusCode != 204 {
		t.Fatalf("leave waitlist: %d", resp.StatusCode)
	}

	// Practitioner's private calendar feed, revocable.
	var feed struct {
		URL string `json:"url"`
	}
	if st := doc.json("POST", "/api/v1/practitioner/calendar-token", nil, &feed); st != 201 || !strings.HasSuffix(feed.URL, ".ics") {
		t.Fatalf("feed token: %d %+v", st, feed)
	}
	path := feed.URL[strings.Index(feed.URL, "/calendar/"):]
	resp, cal := anon.do("GET", path, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(cal), "BEGIN:VEVENT") || strings.Contains(string(cal), "Camille") || strings.Contains(string(cal), "eczema") {
		t.Fatalf("feed: %d %s", resp.StatusCode, cal)
	}
	if resp, _ := doc.do("DELETE", "/api/v1/practitioner/calendar-token", nil); resp.StatusCode != 204 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if resp, _ := anon.do("GET", path, nil); resp.StatusCode != 404 {
		t.Fatalf("revoked feed: %d", resp.StatusCode)
	}

	// Settings are for practitioners only.
	if resp, _ := pat.do("PUT", "/api/v1/practitioner/opening-hours", map[string]any{"opening_hours": []any{}}); resp.StatusCode != 404 {
		t.Fatalf("patient edits hours: %d", resp.StatusCode)
	}
	if resp, b := doc.do("POST", "/api/v1/practitioner/absences", map[string]string{"start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"}); resp.StatusCode != 400 {
		t.Fatalf("backwards absence: %d %s", resp.StatusCode, b)
	}
	// An absence by dates, both included, in the practitioner's time zone.
	var abs struct {
		Start time.Time `json:"start"`
		End   time.Time `json:"end"`
	}
	if st := doc.json("POST", "/api/v1/practitioner/absences", map[string]string{"start": "2030-07-01", "end": "2030-07-02"}, &abs); st != 201 ||
		!abs.Start.Equal(time.Date(2030, 6, 30, 22, 0, 0, 0, time.UTC)) || !abs.End.Equal(time.Date(2030, 7, 2, 22, 0, 0, 0, time.UTC)) {
		t.Fatalf("absence by dates: %d %+v", st, abs)
	}
	for name, body := range map[string]map[string]any{
		"unknown specialty": {"specialty": "astrology", "rpps": "10003456789"},
		"short RPPS":        {"specialty": "dermatology", "rpps": "123"},
		"bad time zone":     {"specialty": "dermatology", "rpps": "10003456789", "time_zone": "Mars/Olympus"},
		"half a position":   {"specialty": "dermatology", "rpps": "10003456789", "latitude": 45.0},
	} {
		if resp, b := doc.do("PUT", "/api/v1/practitioner/profile", body); resp.StatusCode != 400 {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
	for name, body := range map[string]map[string]any{
		"no name":        {"mode": "video", "duration_minutes": 30},
		"bad mode":       {"name": "X", "mode": "phone", "duration_minutes": 30},
		"too short":      {"name": "X", "mode": "video", "duration_minutes": 2},
		"negative fee":   {"name": "X", "mode": "video", "duration_minutes": 30, "fee_cents": -1},
		"other currency": {"name": "X", "mode": "video", "duration_minutes": 30, "currency": "USD"},
	} {
		if resp, b := doc.do("POST", "/api/v1/practitioner/consultation-types", body); resp.StatusCode != 400 {
			t.Errorf("consultation type, %s: %d %s", name, resp.StatusCode, b)
		}
	}
	if resp, b := doc.do("PUT", "/api/v1/practitioner/opening-hours", map[string]any{"opening_hours": []map[string]any{{"consultation_type_id": videoID, "weekday": 1, "start": "12:00", "end": "09:00"}}}); resp.StatusCode != 400 {
		t.Fatalf("backwards hours: %d %s", resp.StatusCode, b)
	}
	if len(freeSlots(t, anon, docID, videoID)) == 0 {
		t.Fatal("refused opening hours changed the existing ones")
	}
}

func TestPharmacySearchAPI(t *testing.T) {
	e := newBookingEnv(t)
	ctx := context.Background()
	lat, lon := 43.2965, 5.3698
	if _, err := store.SavePharmacy(ctx, e.DB.Pool, store.Pharmacy{Name: "Pharmacie du Vieux-Port", City: "Marseille", Postcode: "13001", Latitude: &lat, Longitude: &lon}); err != nil {
		t.Fatal(err)
	}
	anon := e.client()
	var res struct {
		Results []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
			City string `json:"city"`
		} `json:"results"`
	}
	for _, q := range []string{"city=marseille", "postcode=13001", "near=43.30,5.37"} {
		if st := anon.json("GET", "/api/v1/pharmacies?"+q, nil, &res); st != 200 || len(res.Results) != 1 || res.Results[0].City != "Marseille" {
			t.Fatalf("pharmacies %s: %d %+v", q, st, res)
		}
	}
	if st := anon.json("GET", "/api/v1/pharmacies?city=Lille", nil, &res); st != 200 || len(res.Results) != 0 {
		t.Fatalf("Lille: %+v", res)
	}
}

func mustParis(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func TestBookingRaceAPI(t *testing.T) {
	e := newBookingEnv(t)
	_, docID, videoID, _ := e.doctor(t)
	var patients []*client
	for i := 0; i < 10; i++ {
		c, _ := e.user("patient", fmt.Sprintf("Patient %d", i))
		patients = append(patients, c)
	}
	slot := freeSlots(t, patients[0], docID, videoID)[4]
	body := map[string]any{"practitioner_id": docID, "consultation_type_id": videoID, "start": slot.Format(time.RFC3339)}
	const n = 100
	codes := make(chan string, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		go func(c *client) {
			<-start
			resp, b := c.do("POST", "/api/v1/appointments", body)
			codes <- fmt.Sprintf("%d %s", resp.StatusCode, errorCode(b))
		}(patients[i%len(patients)])
	}
	close(start)
	count := map[string]int{}
	for i := 0; i < n; i++ {
		count[<-codes]++
	}
	if count["201 "] != 1 || count["409 slot_taken"] != n-1 {
		t.Fatalf("outcomes: %v", count)
	}
	var rows int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM appointments WHERE starts_at = $1`, slot).Scan(&rows)
	if rows != 1 {
		t.Fatalf("%d appointments for one slot", rows)
	}
}
