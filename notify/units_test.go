package notify

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"teleconsult/store"
)

func TestActionToken(t *testing.T) {
	const appt = "5f1969f1-19e9-4bfb-8a2c-000000000001"
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tok, err := SignActionToken(testKey, PurposeCancel, appt, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > 60 || strings.ContainsAny(tok, "+/=") {
		t.Errorf("token %q is not short and URL-safe", tok)
	}
	tests := []struct {
		name    string
		key     []byte
		token   string
		purpose string
		at      time.Time
		want    error
	}{
		{"valid", testKey, tok, PurposeCancel, now, nil},
		{"other purpose", testKey, tok, PurposeReschedule, now, ErrActionToken},
		{"other key", []byte("another secret, another secret!!"), tok, PurposeCancel, now, ErrActionToken},
		{"expired", testKey, tok, PurposeCancel, now.Add(time.Hour), ErrActionExpired},
		{"truncated", testKey, tok[:len(tok)-1], PurposeCancel, now, ErrActionToken},
		{"empty", testKey, "", PurposeCancel, now, ErrActionToken},
		{"unknown purpose", testKey, tok, "delete", now, ErrActionToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := VerifyActionToken(tt.key, tt.token, tt.purpose, tt.at)
			if tt.want == nil {
				if err != nil || id != appt {
					t.Errorf("got %q, %v; want %q", id, err, appt)
				}
				return
			}
			if !errors.Is(err, tt.want) || id != "" {
				t.Errorf("got %q, %v; want %v", id, err, tt.want)
			}
		})
	}
	// Flipping any bit of the token breaks it.
	raw := []byte(tok)
	for i := range raw {
		c := raw[i]
		raw[i] = map[bool]byte{true: 'B', false: 'A'}[c == 'A']
		if _, err := VerifyActionToken(testKey, string(raw), PurposeCancel, now); err == nil {
			t.Errorf("token altered at %d still verifies", i)
		}
		raw[i] = c
	}
}

func TestParseSMTPURL(t *testing.T) {
	tests := []struct {
		in      string
		want    SMTPConfig
		wantErr bool
	}{
		{"smtp://user:p%40ss@mail.example.org:2525", SMTPConfig{Host: "mail.example.org", Port: "2525", Username: "user", Password: "p@ss"}, false},
		{"smtp://mail.example.org", SMTPConfig{Host: "mail.example.org", Port: "587"}, false},
		{"smtps://u:p@mail.example.org", SMTPConfig{Host: "mail.example.org", Port: "465", Username: "u", Password: "p", ImplicitTLS: true}, false},
		{"http://mail.example.org", SMTPConfig{}, true},
		{"smtp://", SMTPConfig{}, true},
		{"smtp://mail.example.org/inbox", SMTPConfig{}, true},
		{"::", SMTPConfig{}, true},
	}
	for _, tt := range tests {
		got, err := ParseSMTPURL(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSMTPURL(%q) = %+v, %v; want %+v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "p@ss") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

func TestNewWorkerConfig(t *testing.T) {
	base := Config{BaseURL: "https://rdv.example.org", TokenKey: testKey}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"nothing configured: all held", func(*Config) {}, true},
		{"SMTP without sender", func(c *Config) { c.SMTPURL = "smtp://127.0.0.1:25" }, false},
		{"bad SMTP URL", func(c *Config) { c.SMTPURL = "mail.example.org"; c.MailFrom = "a@b.c" }, false},
		{"partial SMS settings", func(c *Config) { c.SMSURL = "https://api.twilio.com" }, false},
		{"full SMS settings", func(c *Config) {
			c.SMSURL, c.SMSAccount, c.SMSToken, c.SMSFrom = "https://x", "AC1", "t", "+33700000000"
		}, true},
		{"short key", func(c *Config) { c.TokenKey = []byte("short") }, false},
		{"no base URL", func(c *Config) { c.BaseURL = "" }, false},
		{"reminder without channel", func(c *Config) { c.Reminders = []Reminder{{Name: "x", Days: 1}} }, false},
	}
	for _, tt := range tests {
		cfg := base
		tt.mod(&cfg)
		_, err := NewWorker(nil, cfg, nil)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
}

func TestWhen(t *testing.T) {
	paris := loadLocation("Europe/Paris")
	at := time.Date(2026, 8, 15, 7, 5, 0, 0, time.UTC)
	if got := when("fr", at, paris); got != "sam. 15 août à 09:05" {
		t.Errorf("fr: %q", got)
	}
	if got := when("en", at, paris); got != "Sat 15 August at 09:05" {
		t.Errorf("en: %q", got)
	}
	if got := when("en", at, loadLocation("America/New_York")); got != "Sat 15 August at 03:05" {
		t.Errorf("New York: %q", got)
	}
}

func TestICSFolding(t *testing.T) {
	ev := calendarEvent{UID: "x@teleconsult", Start: time.Now(), End: time.Now().Add(time.Hour), Stamp: time.Now(),
		Summary: strings.Repeat("Rendez-vous avec Dr Éloïse Martin-Dupont; ", 4)}
	ics := string(ev.ics())
	for _, line := range strings.Split(strings.TrimSuffix(ics, "\r\n"), "\r\n") {
		if len(line) > 75 || !utf8.ValidString(line) {
			t.Errorf("line of %d octets (valid UTF-8 %v): %q", len(line), utf8.ValidString(line), line)
		}
	}
	unfolded := strings.ReplaceAll(ics, "\r\n ", "")
	if !strings.Contains(unfolded, `Dr Éloïse Martin-Dupont\; Rendez-vous`) {
		t.Errorf("summary not escaped or not unfolded intact:\n%s", ics)
	}
}

func TestMaskAddresses(t *testing.T) {
	in := `smtp rcpt to: 550 5.1.1 <alice.durand@example.org> unknown; sms to +33 6 12 34 56 78 refused; dial tcp 127.0.0.1:25`
	got := maskAddresses(in)
	for _, leak := range []string{"alice.durand", "12 34 56"} {
		if strings.Contains(got, leak) {
			t.Errorf("%q still shows %q", got, leak)
		}
	}
	if !strings.Contains(got, "@example.org") || !strings.Contains(got, "127.0.0.1:25") {
		t.Errorf("masked too much: %q", got)
	}
}

// FuzzVerifyActionToken feeds the link verifier what anyone can put in a
// URL: it must never panic, and must accept nothing it did not sign.
func FuzzVerifyActionToken(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	good, _ := SignActionToken(testKey, PurposeCancel, "5f1969f1-19e9-4bfb-8a2c-000000000001", now.Add(time.Hour))
	f.Add(good)
	f.Add("")
	f.Add(strings.Repeat("A", 55))
	f.Add(good[:40] + "====")
	f.Fuzz(func(t *testing.T, token string) {
		for _, purpose := range []string{PurposeCancel, PurposeReschedule, TokenPurpose(token)} {
			id, err := VerifyActionToken(testKey, token, purpose, now)
			if err == nil && (token != good || purpose != PurposeCancel) {
				t.Fatalf("accepted %q for %s (appointment %s)", token, purpose, id)
			}
		}
	})
}

func TestEnvConfig(t *testing.T) {
	env := map[string]string{"SMTP_URL": "smtps://u:p@mail.example.org", "MAIL_FROM": "Téléconsult <noreply@example.org>",
		"SMS_URL": "https://api.twilio.com", "SMS_ACCOUNT": "AC1", "SMS_TOKEN": "tok", "SMS_FROM": "+33700000000"}
	cfg := EnvConfig(func(k string) string { return env[k] })
	cfg.BaseURL, cfg.TokenKey = "https://rdv.example.org", testKey
	w, err := NewWorker(nil, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := w.mailer.(*SMTPMailer)
	if !ok || !m.Config.ImplicitTLS || m.Config.Host != "mail.example.org" || m.Config.Port != "465" {
		t.Errorf("mailer %+v", w.mailer)
	}
	if tw, ok := w.sms.(*Twilio); !ok || tw.AccountSID != "AC1" || tw.From != "+33700000000" {
		t.Errorf("sms %+v", w.sms)
	}
	if w.cfg.MailFrom != "=?utf-8?q?T=C3=A9l=C3=A9consult?= <noreply@example.org>" {
		t.Errorf("From header %q", w.cfg.MailFrom)
	}
	empty, err := NewWorker(nil, Config{BaseURL: "http://localhost:8080", TokenKey: testKey}, nil)
	if err != nil || empty.mailer != nil || empty.sms != nil {
		t.Errorf("an empty environment must hold everything: %v", err)
	}
}

func TestNamesCannotInjectHeaders(t *testing.T) {
	in := renderInput{Kind: "appointment.booked", Recipient: store.Recipient{ID: "p", Name: "Eve\r\nBcc: x@evil.example", Language: "en"},
		Appt: &store.AppointmentNotice{ID: "5f1969f1-19e9-4bfb-8a2c-000000000001", Status: "confirmed", Mode: "video",
			StartsAt: march3, EndsAt: march3.Add(time.Hour), PractitionerName: "Mal\r\nory", TimeZone: "Europe/Paris"},
		Now: march3.Add(-time.Hour)}
	m, err := render(in, linker{base: "https://rdv.example.org", secret: testKey}, "rdv")
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(m.Subject+m.Greeting, "\r\n") {
		t.Errorf("line break kept: %q / %q", m.Subject, m.Greeting)
	}
	e := Email{From: "a@b.example", To: "c@d.example", Subject: m.Subject, Text: m.text()}
	if _, err := e.bytes(); err != nil {
		t.Errorf("message refused: %v", err)
	}
}
