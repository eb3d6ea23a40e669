package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

// march3 is Tuesday 3 March 2026, 10:30 in Paris (CET, UTC+1).
var march3 = time.Date(2026, 3, 3, 9, 30, 0, 0, time.UTC)

func TestConfirmationEmailOverSMTP(t *testing.T) {
	tests := []struct {
		name        string
		opts        smtpOptions
		lang        string
		wantSubject string
		wantICS     string
	}{
		{"plain, French", smtpOptions{}, "fr",
			"Votre rendez-vous du mar. 3 mars à 10:30 avec Dr Martin", "rendez-vous.ics"},
		{"STARTTLS and auth, English", smtpOptions{tls: true, user: "mailer", pass: "s3cret p@ss"}, "en",
			"Your appointment on Tue 3 March at 10:30 with Dr Martin", "appointment.ics"},
		{"implicit TLS (smtps) and auth, French", smtpOptions{implicit: true, user: "mailer", pass: "pw"}, "fr",
			"Votre rendez-vous du mar. 3 mars à 10:30 avec Dr Martin", "rendez-vous.ics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := storetest.New(t)
			srv := startSMTP(t, tt.opts)
			c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			smtpURL := srv.url()
			if tt.opts.user != "" {
				scheme := map[bool]string{false: "smtp", true: "smtps"}[tt.opts.implicit]
				smtpURL = (&url.URL{Scheme: scheme, User: url.UserPassword(tt.opts.user, tt.opts.pass), Host: srv.addr}).String()
			}
			w := newWorker(t, db, Config{SMTPURL: smtpURL, SMTPTLS: srv.tlsConfig()}, c)
			f := newFixture(t, db, fixtureOptions{lang: tt.lang, phone: "+33612345678"})
			appt := f.book(t, march3, c.Now())

			drain(t, w)
			msgs := srv.messages()
			if len(msgs) != 1 {
				t.Fatalf("server received %d messages, want 1", len(msgs))
			}
			got := msgs[0]
			if len(got.To) != 1 || got.To[0] != f.patientEmail {
				t.Errorf("recipients %v, want [%s]", got.To, f.patientEmail)
			}
			if got.From != "noreply@rdv.example.org" {
				t.Errorf("envelope sender %q", got.From)
			}
			wantTLS := tt.opts.tls || tt.opts.implicit
			if got.TLS != wantTLS || got.Authed != (tt.opts.user != "") {
				t.Errorf("TLS %v auth %v, want %v %v", got.TLS, got.Authed, wantTLS, tt.opts.user != "")
			}
			m := parseMail(t, got.Data)
			if m.Subject != tt.wantSubject {
				t.Errorf("subject %q, want %q", m.Subject, tt.wantSubject)
			}
			if m.ContentType != "multipart/mixed" || m.Text == "" || m.HTML == "" {
				t.Errorf("structure: %s, text %d bytes, html %d bytes", m.ContentType, len(m.Text), len(m.HTML))
			}
			ics, ok := m.Attachments[tt.wantICS]
			if !ok {
				t.Fatalf("no %s attached (have %v)", tt.wantICS, m.Attachments)
			}
			for _, want := range []string{"BEGIN:VCALENDAR", "METHOD:PUBLISH", "UID:" + appt + "@teleconsult",
				"DTSTART:20260303T093000Z", "DTEND:20260303T100000Z", "SUMMARY:", "Dr Martin"} {
				if !strings.Contains(string(ics.Data), want) {
					t.Errorf(".ics lacks %q:\n%s", want, ics.Data)
				}
			}
			if !strings.HasPrefix(ics.ContentType, "text/calendar") {
				t.Errorf(".ics content type %q", ics.ContentType)
			}
			// No health data anywhere: not the specialty, not the
			// consultation type's name.
			for _, part := range []string{m.Subject, m.Text, m.HTML, string(ics.Data)} {
				for _, secret := range []string{"psychiatr", "anxiété", "Suivi"} {
					if strings.Contains(part, secret) {
						t.Errorf("message carries health data %q", secret)
					}
				}
			}
			if !strings.Contains(m.Text, "1 rue de la Paix") {
				t.Errorf("in-person confirmation lacks the address:\n%s", m.Text)
			}
			if tt.lang == "fr" && !strings.Contains(m.Text, "Annuler ce rendez-vous") {
				t.Errorf("French text lacks the cancel link label:\n%s", m.Text)
			}
			if tt.lang == "en" && !strings.Contains(m.Text, "Cancel this appointment") {
				t.Errorf("English text lacks the cancel link label:\n%s", m.Text)
			}
			if id := m.Header.Get("Message-Id"); !strings.Contains(id, "@rdv.example.org") {
				t.Errorf("Message-ID %q", id)
			}

			// The SMS has no transport configured: held, not sent.
			for _, d := range outbox(t, db, store.EventAppointmentBooked) {
				want := map[string]string{"email": store.MessageSent, "sms": store.MessageHeld}[d.Channel]
				if d.Status != want {
					t.Errorf("%s delivery is %s, want %s", d.Channel, d.Status, want)
				}
				if d.Channel == "email" && d.Subject != tt.wantSubject {
					t.Errorf("stored subject %q", d.Subject)
				}
				if strings.Contains(d.Body, "/a/") && !strings.Contains(d.Body, "/a/"+redacted) {
					t.Errorf("stored body keeps a live action link:\n%s", d.Body)
				}
			}
		})
	}
}

func TestAuthRefusedWithoutTLS(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{user: "mailer", pass: "pw"}) // no STARTTLS offered
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	w := newWorker(t, db, Config{SMTPURL: srv.url(), MaxAttempts: 1}, c)
	f := newFixture(t, db, fixtureOptions{})
	f.book(t, march3, c.Now())
	drain(t, w)
	if n := len(srv.messages()); n != 0 {
		t.Fatalf("server received %d messages", n)
	}
	d := outbox(t, db, store.EventAppointmentBooked)[0]
	if d.Status != store.MessageFailed || !strings.Contains(d.LastError, "TLS") {
		t.Errorf("status %s, error %q: want failed for lack of TLS", d.Status, d.LastError)
	}
}

var linkPattern = regexp.MustCompile(`https?://[^\s"<>]+/a/[A-Za-z0-9_-]+`)

// links returns the one-click links of a text part: reschedule, cancel.
func actionLinks(t *testing.T, text string) (reschedule, cancel string) {
	t.Helper()
	ls := linkPattern.FindAllString(text, -1)
	if len(ls) != 2 {
		t.Fatalf("want 2 action links, found %v in:\n%s", ls, text)
	}
	return ls[0], ls[1]
}

func TestCancelLinkFromEmail(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	mux := http.NewServeMux()
	web := httptest.NewServer(mux)
	defer web.Close()
	cfg := Config{BaseURL: web.URL, SMTPURL: srv.url(), TokenKey: testKey}
	w := newWorker(t, db, cfg, c)
	NewActionPages(db, cfg, c.Now).Routes(mux)

	f := newFixture(t, db, fixtureOptions{lang: "en"})
	appt := f.book(t, march3, c.Now())
	drain(t, w)
	m := parseMail(t, srv.messages()[0].Data)
	_, cancelURL := actionLinks(t, m.Text)
	if !strings.Contains(m.HTML, cancelURL) {
		t.Errorf("HTML part lacks the cancel link")
	}

	// Opening the link (as a mail scanner would) changes nothing.
	resp, err := http.Get(cancelURL)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "Yes, cancel it") || !strings.Contains(body, "Dr Martin") {
		t.Fatalf("GET: %d\n%s", resp.StatusCode, body)
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("the token may leak through Referer")
	}
	if s := f.status(t, appt); s != store.StatusConfirmed {
		t.Fatalf("after GET the appointment is %s", s)
	}

	// Confirming cancels it, without any login.
	resp, err = http.Post(cancelURL, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "cancelled") {
		t.Fatalf("POST: %d\n%s", resp.StatusCode, body)
	}
	if s := f.status(t, appt); s != store.StatusCancelled {
		t.Fatalf("after POST the appointment is %s", s)
	}
	// The patient and the practitioner are told.
	drain(t, w)
	var to []string
	for _, r := range srv.messages()[1:] {
		to = append(to, r.To...)
		pm := parseMail(t, r.Data)
		if !strings.HasPrefix(pm.Subject, "Cancelled: ") && !strings.HasPrefix(pm.Subject, "Annulé : ") {
			t.Errorf("cancellation subject %q", pm.Subject)
		}
	}
	slices.Sort(to)
	want := []string{f.patientEmail, f.practitionerEm}
	slices.Sort(want)
	if !slices.Equal(to, want) {
		t.Errorf("cancellation sent to %v", to)
	}

	// A second use finds nothing to cancel.
	resp, _ = http.Post(cancelURL, "", nil)
	readAll(t, resp)
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("second POST: %d, want 409", resp.StatusCode)
	}
}

func TestActionLinkRejected(t *testing.T) {
	db := storetest.New(t)
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	mux := http.NewServeMux()
	web := httptest.NewServer(mux)
	defer web.Close()
	cfg := Config{BaseURL: web.URL, TokenKey: testKey}
	NewActionPages(db, cfg, c.Now).Routes(mux)
	f := newFixture(t, db, fixtureOptions{})
	appt := f.book(t, march3, c.Now())
	valid, _ := SignActionToken(testKey, PurposeCancel, appt, march3)
	forged, _ := SignActionToken([]byte("another key, another key, 12345"), PurposeCancel, appt, march3)
	tampered := valid[:len(valid)-2] + "AA"
	if tampered == valid {
		tampered = valid[:len(valid)-2] + "BB"
	}

	tests := []struct {
		name  string
		token string
		at    time.Time
		want  int
	}{
		{"forged", forged, c.Now(), http.StatusNotFound},
		{"tampered", tampered, c.Now(), http.StatusNotFound},
		{"garbage", "not-a-token", c.Now(), http.StatusNotFound},
		{"expired", valid, march3.Add(time.Minute), http.StatusGone},
		{"too late to cancel online", valid, march3.Add(-time.Hour), http.StatusConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Set(tt.at)
			resp, err := http.Post(web.URL+"/a/"+tt.token, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, resp)
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if s := f.status(t, appt); s != store.StatusConfirmed {
				t.Errorf("appointment is %s", s)
			}
		})
	}
}

// fixedSlots offers the same times for any appointment.
type fixedSlots []time.Time

func (s fixedSlots) FreeSlots(context.Context, string, int) ([]time.Time, error) { return s, nil }

func TestRescheduleLinkFromEmail(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	mux := http.NewServeMux()
	web := httptest.NewServer(mux)
	defer web.Close()
	cfg := Config{BaseURL: web.URL, SMTPURL: srv.url(), TokenKey: testKey}
	w := newWorker(t, db, cfg, c)
	pages := NewActionPages(db, cfg, c.Now)
	newStart := march3.Add(48 * time.Hour) // Thu 5 March 10:30
	pages.Slots = fixedSlots{newStart}
	pages.Routes(mux)

	f := newFixture(t, db, fixtureOptions{lang: "fr"})
	appt := f.book(t, march3, c.Now())
	drain(t, w)
	moveURL, _ := actionLinks(t, parseMail(t, srv.messages()[0].Data).Text)

	resp, err := http.Get(moveURL)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "Jeu. 5 mars à 10:30") {
		t.Fatalf("GET: %d\n%s", resp.StatusCode, body)
	}
	// A time that was not offered is refused.
	resp, _ = http.PostForm(moveURL, url.Values{"start": {march3.Add(time.Hour).Format(time.RFC3339)}})
	readAll(t, resp)
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("unoffered time: %d, want 409", resp.StatusCode)
	}
	resp, _ = http.PostForm(moveURL, url.Values{"start": {newStart.Format(time.RFC3339)}})
	body = readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d\n%s", resp.StatusCode, body)
	}
	a, err := store.AppointmentByID(context.Background(), db.Pool, appt)
	if err != nil {
		t.Fatal(err)
	}
	if !a.StartsAt.Equal(newStart) || a.Status != store.StatusConfirmed {
		t.Fatalf("appointment at %v (%s), want %v", a.StartsAt, a.Status, newStart)
	}
	drain(t, w)
	var pm parsedMail
	for _, m := range srv.messages()[1:] {
		if m.To[0] == f.patientEmail {
			pm = parseMail(t, m.Data)
		}
	}
	if pm.Subject != "Déplacé : votre rendez-vous du jeu. 5 mars à 10:30 avec Dr Martin" {
		t.Errorf("reschedule subject %q", pm.Subject)
	}
	if !strings.Contains(pm.Text, "mar. 3 mars à 10:30") {
		t.Errorf("reschedule email does not say the old time:\n%s", pm.Text)
	}
	if !strings.Contains(string(pm.Attachments["rendez-vous.ics"].Data), "DTSTART:20260305T093000Z") {
		t.Errorf("reschedule .ics is not at the new time")
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

// TestUntrustedCertificateSendsNothing: a server offering STARTTLS with a
// certificate we do not trust gets nothing, not even in clear.
func TestUntrustedCertificateSendsNothing(t *testing.T) {
	db := storetest.New(t)
	srv := startSMTP(t, smtpOptions{tls: true})
	c := newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	w := newWorker(t, db, Config{SMTPURL: srv.url()}, c) // system roots only
	f := newFixture(t, db, fixtureOptions{})
	f.book(t, march3, c.Now())
	drain(t, w)
	if n := len(srv.messages()); n != 0 {
		t.Fatalf("server received %d messages", n)
	}
	d := outbox(t, db, store.EventAppointmentBooked)[0]
	if d.Status != store.MessagePending || !strings.Contains(d.LastError, "certificate") {
		t.Errorf("status %s, error %q: want a retry for the certificate", d.Status, d.LastError)
	}
}
