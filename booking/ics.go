package booking

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"
	"unicode/utf8"

	"teleconsult/audit"
	"teleconsult/store"
)

// Event is one VEVENT of an iCalendar file. It never carries health data:
// the reason for a visit stays in the service.
type Event struct {
	UID         string
	Summary     string
	Location    string
	Description string
	URL         string
	Start, End  time.Time
	Status      string // CONFIRMED, TENTATIVE or CANCELLED
}

// Calendar renders events as an RFC 5545 iCalendar object: CRLF line
// ends, lines folded at 75 octets (never inside a UTF-8 sequence), text
// escaped, times in UTC.
func Calendar(name string, events []Event, stamp time.Time) []byte {
	var b bytes.Buffer
	line := func(s string) { writeFolded(&b, s) }
	line("BEGIN:VCALENDAR")
	line("VERSION:2.0")
	line("PRODID:-//teleconsult//booking//EN")
	line("CALSCALE:GREGORIAN")
	line("METHOD:PUBLISH")
	if name != "" {
		line("X-WR-CALNAME:" + escapeText(name))
	}
	for _, e := range events {
		line("BEGIN:VEVENT")
		line("UID:" + e.UID)
		line("DTSTAMP:" + icsTime(stamp))
		line("DTSTART:" + icsTime(e.Start))
		line("DTEND:" + icsTime(e.End))
		line("SUMMARY:" + escapeText(e.Summary))
		if e.Location != "" {
			line("LOCATION:" + escapeText(e.Location))
		}
		if e.Description != "" {
			line("DESCRIPTION:" + escapeText(e.Description))
		}
		if e.URL != "" {
			line("URL:" + e.URL)
		}
		if e.Status != "" {
			line("STATUS:" + e.Status)
		}
		line("END:VEVENT")
	}
	line("END:VCALENDAR")
	return b.Bytes()
}

func icsTime(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// escapeText escapes a TEXT value (RFC 5545 section 3.3.11).
func escapeText(s string) string {
	r := strings.NewReplacer(`\`, `\\`, ";", `\;`, ",", `\,`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`)
	return r.Replace(s)
}

// writeFolded writes one content line, folded so that no line exceeds 75
// octets (continuation lines start with a space, which counts).
func writeFolded(b *bytes.Buffer, s string) {
	limit := 75
	for len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		b.WriteString(s[:cut])
		b.WriteString("\r\n ")
		s = s[cut:]
		limit = 74
	}
	b.WriteString(s)
	b.WriteString("\r\n")
}

func icsStatus(status string) string {
	switch status {
	case store.StatusPendingPayment:
		return "TENTATIVE"
	case store.StatusCancelled, store.StatusExpired:
		return "CANCELLED"
	}
	return "CONFIRMED"
}

func modeLabel(mode string) string {
	if mode == "video" {
		return "vidéo / video"
	}
	return "au cabinet / in person"
}

// appointmentEvent describes a as seen by its patient or practitioner.
func (s *Service) appointmentEvent(v View, p store.Practitioner, forPractitioner bool) Event {
	e := Event{
		UID:    v.ID + "@teleconsult",
		Start:  v.StartsAt,
		End:    v.EndsAt,
		Status: icsStatus(v.Status),
		URL:    strings.TrimRight(s.cfg.BaseURL, "/") + "/appointments/" + v.ID,
	}
	if forPractitioner {
		e.Summary = "Consultation (" + modeLabel(v.Mode) + ") - " + initials(v.PatientName)
	} else {
		e.Summary = "Consultation (" + modeLabel(v.Mode) + ") - " + p.Name
	}
	if v.Mode == "in_person" {
		e.Location = strings.TrimSpace(p.Address + ", " + p.Postcode + " " + p.City)
	} else {
		e.Location = e.URL
	}
	if s.cfg.BaseURL == "" {
		e.URL = ""
	}
	return e
}

// initials keeps a practitioner's private feed free of patients' full
// names: a calendar app may sync it to third parties.
func initials(name string) string {
	var out []string
	for _, f := range strings.Fields(name) {
		r, _ := utf8.DecodeRuneInString(f)
		out = append(out, string(r)+".")
	}
	return strings.Join(out, " ")
}

// AppointmentICS returns the .ics file of an appointment for its patient
// or practitioner (anyone else: ErrNotFound).
func (s *Service) AppointmentICS(ctx context.Context, who audit.Actor, id string) ([]byte, error) {
	a, err := store.AppointmentByID(ctx, s.db.Pool, id)
	if err != nil {
		return nil, err
	}
	if !canSee(who, a) {
		s.denied(ctx, who, a, "read")
		return nil, errNotYours
	}
	v, err := s.view(ctx, s.db.Pool, a)
	if err != nil {
		return nil, err
	}
	p, err := store.PractitionerByID(ctx, s.db.Pool, a.PractitionerID)
	if err != nil {
		return nil, err
	}
	return Calendar("", []Event{s.appointmentEvent(v, p, who.ID == a.PractitionerID)}, s.now()), nil
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// NewCalendarToken creates (replacing any previous one, which stops
// working) the token of the calling practitioner's private feed, served
// at /calendar/{token}.ics. Only its hash is stored.
func (s *Service) NewCalendarToken(ctx context.Context, who audit.Actor) (string, error) {
	if who.Role != rolePractitioner {
		return "", ErrPractitionerOnly
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	if err := store.SetCalendarTokenHash(ctx, s.db.Pool, who.ID, hashToken(token)); err != nil {
		return "", err
	}
	return token, nil
}

// RevokeCalendarToken turns the calling practitioner's feed off.
func (s *Service) RevokeCalendarToken(ctx context.Context, who audit.Actor) error {
	if who.Role != rolePractitioner {
		return ErrPractitionerOnly
	}
	return store.SetCalendarTokenHash(ctx, s.db.Pool, who.ID, nil)
}

// CalendarFeed renders the practitioner's feed (30 days back, the
// horizon ahead) for a feed token; an unknown or revoked token is
// ErrNotFound.
func (s *Service) CalendarFeed(ctx context.Context, token string) ([]byte, error) {
	if len(token) < 20 || len(token) > 100 {
		return nil, store.ErrNotFound.With("calendar not found")
	}
	p, err := store.PractitionerByCalendarTokenHash(ctx, s.db.Pool, hashToken(token))
	if err != nil {
		return nil, err
	}
	now := s.now()
	list, err := store.AppointmentsOfPractitioner(ctx, s.db.Pool, p.AccountID, now.Add(-30*24*time.Hour), now.Add(time.Duration(p.HorizonDays+30)*24*time.Hour))
	if err != nil {
		return nil, err
	}
	var events []Event
	cache := &viewCache{}
	for _, a := range list {
		if a.Status == store.StatusExpired {
			continue
		}
		v, err := s.viewCached(ctx, s.db.Pool, a, cache)
		if err != nil {
			return nil, err
		}
		events = append(events, s.appointmentEvent(v, p, true))
	}
	return Calendar(p.Name, events, now), nil
}
