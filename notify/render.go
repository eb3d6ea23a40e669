package notify

import (
	"bytes"
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"teleconsult/store"
)

// message is a notification rendered for one person, before it is cut
// into an email or an SMS.
type message struct {
	Lang       string
	Subject    string
	Greeting   string
	Paragraphs []string
	Links      []link
	Footer     string
	SMS        string
	Calendar   *calendarEvent
}

type link struct{ Label, URL string }

// redacted replaces secrets (tokens) in the copy of a message kept for
// the admin page.
const redacted = "[redacted]"

var (
	enWeekdays = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	enMonths   = [...]string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}
	frWeekdays = [...]string{"dim.", "lun.", "mar.", "mer.", "jeu.", "ven.", "sam."}
	frMonths   = [...]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"}
)

// when formats t for lang in loc: "Tue 3 March at 10:30" or
// "mar. 3 mars à 10:30".
func when(lang string, t time.Time, loc *time.Location) string {
	t = t.In(loc)
	if lang == "fr" {
		return fmt.Sprintf("%s %d %s à %s", frWeekdays[t.Weekday()], t.Day(), frMonths[t.Month()-1], t.Format("15:04"))
	}
	return fmt.Sprintf("%s %d %s at %s", enWeekdays[t.Weekday()], t.Day(), enMonths[t.Month()-1], t.Format("15:04"))
}

// doctor names a practitioner as patients address them.
func doctor(name string) string {
	if strings.HasPrefix(name, "Dr ") || strings.HasPrefix(name, "Dr. ") {
		return name
	}
	return "Dr " + name
}

// texts is one language's wording. Each %s is filled in order as named
// in the comment beside it.
type texts struct {
	greeting, footer string
	yourAppt         string // when, doctor -> "your appointment on ... with ..."
	apptWith         string // when, patient -> "the appointment on ... with ..."
	booked, bookedDr string
	cancelledBy      map[string]string
	cancelled        string
	moved, movedFrom string // movedFrom: previous time
	delayed          string // doctor, minutes
	reminder         string
	joinVideo        string
	address          string
	cancelLink       string
	rescheduleLink   string
	rebookLink       string
	agendaLink       string
	joinLink         string
	offer, offerSubj string // offer: doctor, when; offerSubj: when, doctor
	offerLink        string
	offerUntil       string // when
	payBy            string // when
	rxReady, rxSubj  string
	rxLink           string
	resetSubj, reset string
	resetLink        string
	paySubj, pay     string
	payLink          string
	subjBooked       string
	subjCancelled    string
	subjMoved        string
	subjDelayed      string
	subjReminder     string
	calSummary       string // doctor
	smsJoin          string
}

var wording = map[string]texts{
	"en": {
		greeting: "Hello %s,",
		footer:   "You receive this message because you have an account on %s. Choose your notification channels in your account settings.",
		yourAppt: "your appointment on %s with %s",
		apptWith: "the appointment on %s with %s",
		booked:   "Your appointment is confirmed: %s with %s.",
		bookedDr: "New booking: %s with %s.",
		cancelledBy: map[string]string{"patient": "It was cancelled by the patient.", "practitioner": "It was cancelled by the practitioner.",
			"payment": "It was cancelled because the payment was not completed."},
		cancelled:      "This appointment is cancelled: %s.",
		moved:          "Your appointment has moved. New time: %s with %s.",
		movedFrom:      "It was planned on %s.",
		delayed:        "%s is running about %s minutes late. Your appointment on %s will start later than planned.",
		reminder:       "A reminder of %s.",
		joinVideo:      "This is a video consultation: join from your phone or computer a few minutes before the start.",
		address:        "Address: %s",
		cancelLink:     "Cancel this appointment",
		rescheduleLink: "Move this appointment",
		rebookLink:     "Book another appointment",
		agendaLink:     "Open my agenda",
		joinLink:       "Join the video consultation",
		offer:          "A slot has become available with %s on %s. It is kept for you for a short time.",
		offerSubj:      "A slot is available on %s with %s",
		offerLink:      "Book this slot",
		offerUntil:     "This offer is yours until %s.",
		payBy:          "Please do it before %s.",
		rxReady:        "A new prescription is available in your account.",
		rxSubj:         "A new document is available in your account",
		rxLink:         "Open my prescriptions",
		resetSubj:      "Reset your password",
		reset:          "Someone asked to reset the password of your account. If it was you, use the link below; it expires soon. If not, ignore this message: your password is unchanged.",
		resetLink:      "Choose a new password",
		paySubj:        "Action needed for your appointment on %s with %s",
		pay:            "Your bank asks you to confirm the payment for your appointment on %s with %s. Without it the appointment cannot be kept.",
		payLink:        "Confirm the payment",
		subjBooked:     "Your appointment on %s with %s",
		subjCancelled:  "Cancelled: %s",
		subjMoved:      "Moved: %s",
		subjDelayed:    "Delay: %s",
		subjReminder:   "Reminder: %s",
		calSummary:     "Appointment with %s",
		smsJoin:        "Join: %s",
	},
	"fr": {
		greeting: "Bonjour %s,",
		footer:   "Vous recevez ce message car vous avez un compte sur %s. Choisissez vos canaux de notification dans les réglages de votre compte.",
		yourAppt: "votre rendez-vous du %s avec %s",
		apptWith: "le rendez-vous du %s avec %s",
		booked:   "Votre rendez-vous est confirmé : %s avec %s.",
		bookedDr: "Nouvelle réservation : %s avec %s.",
		cancelledBy: map[string]string{"patient": "Il a été annulé par le patient.", "practitioner": "Il a été annulé par le praticien.",
			"payment": "Il a été annulé car le paiement n'a pas été finalisé."},
		cancelled:      "Ce rendez-vous est annulé : %s.",
		moved:          "Votre rendez-vous a été déplacé. Nouvel horaire : %s avec %s.",
		movedFrom:      "Il était prévu le %s.",
		delayed:        "%s a environ %s minutes de retard. Votre rendez-vous du %s commencera plus tard que prévu.",
		reminder:       "Nous vous rappelons %s.",
		joinVideo:      "Il s'agit d'une téléconsultation : rejoignez-la depuis votre téléphone ou votre ordinateur quelques minutes avant l'heure.",
		address:        "Adresse : %s",
		cancelLink:     "Annuler ce rendez-vous",
		rescheduleLink: "Déplacer ce rendez-vous",
		rebookLink:     "Prendre un autre rendez-vous",
		agendaLink:     "Ouvrir mon agenda",
		joinLink:       "Rejoindre la téléconsultation",
		offer:          "Un créneau s'est libéré avec %s le %s. Il vous est réservé pour peu de temps.",
		offerSubj:      "Un créneau est disponible le %s avec %s",
		offerLink:      "Réserver ce créneau",
		offerUntil:     "Cette offre vous est réservée jusqu'au %s.",
		payBy:          "Merci de le faire avant le %s.",
		rxReady:        "Une nouvelle ordonnance est disponible dans votre compte.",
		rxSubj:         "Un nouveau document est disponible dans votre compte",
		rxLink:         "Voir mes ordonnances",
		resetSubj:      "Réinitialisez votre mot de passe",
		reset:          "Quelqu'un a demandé à réinitialiser le mot de passe de votre compte. Si c'est vous, utilisez le lien ci-dessous ; il expire bientôt. Sinon, ignorez ce message : votre mot de passe n'a pas changé.",
		resetLink:      "Choisir un nouveau mot de passe",
		paySubj:        "Action requise pour votre rendez-vous du %s avec %s",
		pay:            "Votre banque vous demande de confirmer le paiement de votre rendez-vous du %s avec %s. Sans cela, le rendez-vous ne peut pas être maintenu.",
		payLink:        "Confirmer le paiement",
		subjBooked:     "Votre rendez-vous du %s avec %s",
		subjCancelled:  "Annulé : %s",
		subjMoved:      "Déplacé : %s",
		subjDelayed:    "Retard : %s",
		subjReminder:   "Rappel : %s",
		calSummary:     "Rendez-vous avec %s",
		smsJoin:        "Rejoindre : %s",
	},
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// renderInput is everything a message may be built from.
type renderInput struct {
	Kind      string
	Data      map[string]string
	Recipient store.Recipient
	Appt      *store.AppointmentNotice  // for appointment kinds
	Dr        *store.PractitionerNotice // for waiting-list offers
	RxID      string
	Now       time.Time
}

// linker makes the links of a message. The real one signs tokens; the
// redacting one, used for the copy kept in the database, does not.
type linker struct {
	base   string
	secret []byte
	redact bool
}

func (l linker) url(path string) string { return l.base + path }

func (l linker) action(purpose, apptID string, expires time.Time) (string, error) {
	if l.redact {
		return l.base + "/a/" + redacted, nil
	}
	tok, err := SignActionToken(l.secret, purpose, apptID, expires)
	if err != nil {
		return "", err
	}
	return l.base + "/a/" + tok, nil
}

// secretURL returns u, a link that is itself a credential, or a redacted
// stand-in.
func (l linker) secretURL(u string) string {
	if l.redact {
		return redacted
	}
	return u
}

func (l linker) secretParam(path, name, value string) string {
	if l.redact {
		return l.base + path + "?" + name + "=" + redacted
	}
	return l.base + path + "?" + name + "=" + url.QueryEscape(value)
}

// ErrUnrenderable marks an event the worker cannot turn into a message
// (unknown kind, missing data): retrying cannot help.
var ErrUnrenderable = fmt.Errorf("notify: cannot render: %w", ErrPermanent)

// render builds the message for in, in the recipient's language.
func render(in renderInput, l linker, siteName string) (message, error) {
	// Names come from people: keep them on one line, whatever they typed,
	// since they end up in headers.
	in.Recipient.Name = oneLine(in.Recipient.Name)
	if in.Appt != nil {
		a := *in.Appt
		a.PractitionerName, a.PatientName = oneLine(a.PractitionerName), oneLine(a.PatientName)
		in.Appt = &a
	}
	if in.Dr != nil {
		dr := *in.Dr
		dr.Name = oneLine(dr.Name)
		in.Dr = &dr
	}
	lang := in.Recipient.Language
	if _, ok := wording[lang]; !ok {
		lang = "fr"
	}
	w := wording[lang]
	m := message{
		Lang:     lang,
		Greeting: fmt.Sprintf(w.greeting, in.Recipient.Name),
		Footer:   fmt.Sprintf(w.footer, siteName),
	}

	if in.Appt != nil {
		a := in.Appt
		loc := loadLocation(a.TimeZone)
		at := when(lang, a.StartsAt, loc)
		isDr := in.Recipient.ID == a.PractitionerID
		other := doctor(a.PractitionerName)
		phrase := fmt.Sprintf(w.yourAppt, at, other)
		if isDr {
			other = a.PatientName
			phrase = fmt.Sprintf(w.apptWith, at, other)
		}
		upcoming := a.Status == store.StatusConfirmed || a.Status == store.StatusPendingPayment
		joinURL := l.url("/consult/" + a.ID)
		addLinks := func() error {
			if isDr {
				m.Links = append(m.Links, link{w.agendaLink, l.url("/agenda")})
				return nil
			}
			if a.Mode == "video" {
				m.Links = append(m.Links, link{w.joinLink, joinURL})
			}
			if !upcoming || !a.StartsAt.After(in.Now) {
				return nil
			}
			cancel, err := l.action(PurposeCancel, a.ID, a.StartsAt)
			if err != nil {
				return err
			}
			move, err := l.action(PurposeReschedule, a.ID, a.StartsAt)
			if err != nil {
				return err
			}
			m.Links = append(m.Links, link{w.rescheduleLink, move}, link{w.cancelLink, cancel})
			return nil
		}
		where := func() {
			if isDr {
				return
			}
			if a.Mode == "video" {
				m.Paragraphs = append(m.Paragraphs, w.joinVideo)
			} else if addr := joinNonEmpty(", ", a.Address, joinNonEmpty(" ", a.Postcode, a.City)); addr != "" {
				m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.address, addr))
			}
		}
		cal := func(cancelled bool) {
			ev := calendarEvent{
				UID: a.ID + "@teleconsult", Start: a.StartsAt, End: a.EndsAt, Stamp: in.Now,
				// Why: SEQUENCE must grow with each change of the event;
				// seconds since booking at the last change do, without a
				// counter column.
				Sequence:  int(a.UpdatedAt.Sub(a.CreatedAt) / time.Second),
				Summary:   fmt.Sprintf(w.calSummary, doctor(a.PractitionerName)),
				URL:       l.url("/appointments/" + a.ID),
				Cancelled: cancelled,
			}
			if a.Mode == "video" {
				ev.Location = joinURL
			} else {
				ev.Location = joinNonEmpty(", ", a.Address, joinNonEmpty(" ", a.Postcode, a.City))
			}
			m.Calendar = &ev
		}
		switch in.Kind {
		case store.EventAppointmentBooked:
			m.Subject = fmt.Sprintf(w.subjBooked, at, other)
			if isDr {
				m.Subject = strings.TrimSuffix(fmt.Sprintf(w.bookedDr, at, other), ".")
				m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.bookedDr, at, other))
			} else {
				m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.booked, at, other))
			}
			where()
			if err := addLinks(); err != nil {
				return m, err
			}
			cal(false)
			m.SMS = upperFirst(m.Subject) + "."
		case store.EventAppointmentCancelled:
			m.Subject = fmt.Sprintf(w.subjCancelled, phrase)
			m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.cancelled, phrase))
			by := in.Data["cancelled_by"]
			if by == "" {
				by = in.Data["by"]
			}
			if by := w.cancelledBy[by]; by != "" {
				m.Paragraphs = append(m.Paragraphs, by)
			}
			if isDr {
				m.Links = append(m.Links, link{w.agendaLink, l.url("/agenda")})
			} else {
				m.Links = append(m.Links, link{w.rebookLink, l.url("/practitioners/" + a.PractitionerID)})
			}
			cal(true)
			m.SMS = m.Subject + "."
		case store.EventAppointmentRescheduled:
			m.Subject = fmt.Sprintf(w.subjMoved, phrase)
			m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.moved, at, other))
			if prev, err := time.Parse(time.RFC3339, in.Data["old_start"]); err == nil {
				m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.movedFrom, when(lang, prev, loc)))
			}
			where()
			if err := addLinks(); err != nil {
				return m, err
			}
			cal(false)
			m.SMS = m.Subject + "."
		case store.EventAppointmentDelayed:
			mins := in.Data["minutes"]
			if _, err := strconv.Atoi(mins); err != nil {
				mins = strconv.Itoa(a.DelayMinutes)
			}
			m.Subject = fmt.Sprintf(w.subjDelayed, phrase)
			m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.delayed, doctor(a.PractitionerName), mins, at))
			m.SMS = m.Paragraphs[0]
			if a.Mode == "video" && !isDr {
				m.Links = append(m.Links, link{w.joinLink, joinURL})
			}
		case store.EventAppointmentReminder:
			m.Subject = fmt.Sprintf(w.subjReminder, phrase)
			m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.reminder, phrase))
			where()
			if err := addLinks(); err != nil {
				return m, err
			}
			m.SMS = m.Subject + "."
			if a.Mode == "video" && !isDr {
				m.SMS += " " + fmt.Sprintf(w.smsJoin, joinURL)
			}
		case store.EventPaymentActionRequired:
			m.Subject = fmt.Sprintf(w.paySubj, at, doctor(a.PractitionerName))
			m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.pay, at, doctor(a.PractitionerName)))
			target := l.url("/appointments/" + a.ID)
			if u := in.Data["url"]; strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
				// The payment page URL is a bearer link: redacted in the
				// stored copy like a token.
				target = l.secretURL(u)
			}
			if d, err := time.Parse(time.RFC3339, in.Data["deadline"]); err == nil {
				m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.payBy, when(lang, d, loc)))
			}
			m.Links = append(m.Links, link{w.payLink, target})
			m.SMS = m.Subject + ": " + target
		default:
			return m, fmt.Errorf("%w: kind %q", ErrUnrenderable, in.Kind)
		}
		return m, nil
	}

	switch in.Kind {
	case store.EventWaitlistOffer:
		if in.Dr == nil {
			return m, fmt.Errorf("%w: offer without practitioner", ErrUnrenderable)
		}
		start, err := time.Parse(time.RFC3339, in.Data["start"])
		if err != nil {
			return m, fmt.Errorf("%w: offer without start", ErrUnrenderable)
		}
		loc := loadLocation(in.Dr.TimeZone)
		at := when(lang, start, loc)
		dr := doctor(in.Dr.Name)
		path := in.Data["path"]
		if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
			path = "/practitioners/" + in.Dr.ID
		}
		m.Subject = fmt.Sprintf(w.offerSubj, at, dr)
		m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.offer, dr, at))
		if exp, err := time.Parse(time.RFC3339, in.Data["expires_at"]); err == nil {
			m.Paragraphs = append(m.Paragraphs, fmt.Sprintf(w.offerUntil, when(lang, exp, loc)))
		}
		m.Links = append(m.Links, link{w.offerLink, l.url(path)})
		m.SMS = m.Subject + ": " + l.url(path)
	case store.EventPrescriptionReady:
		m.Subject = w.rxSubj
		m.Paragraphs = append(m.Paragraphs, w.rxReady)
		m.Links = append(m.Links, link{w.rxLink, l.url("/prescriptions")})
		m.SMS = m.Subject + ": " + l.url("/prescriptions")
	case store.EventPasswordReset:
		tok := in.Data["token"]
		if tok == "" {
			return m, fmt.Errorf("%w: reset without token", ErrUnrenderable)
		}
		m.Subject = w.resetSubj
		m.Paragraphs = append(m.Paragraphs, w.reset)
		m.Links = append(m.Links, link{w.resetLink, l.secretParam("/reset", "token", tok)})
	default:
		return m, fmt.Errorf("%w: kind %q", ErrUnrenderable, in.Kind)
	}
	return m, nil
}

// oneLine replaces control characters (line breaks included) with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func joinNonEmpty(sep string, parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, sep)
}

// loadLocation returns the named zone, or Europe/Paris (the service's
// home) if the name is unknown, so that a bad zone delays no message.
func loadLocation(name string) *time.Location {
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		return time.UTC
	}
	return loc
}

// text renders m as the plain-text part of an email.
func (m message) text() string {
	var b strings.Builder
	b.WriteString(m.Greeting + "\n\n")
	for _, p := range m.Paragraphs {
		b.WriteString(p + "\n\n")
	}
	colon := ":"
	if m.Lang == "fr" {
		colon = "\u00a0:" // French puts a (no-break) space before a colon
	}
	for _, l := range m.Links {
		b.WriteString(l.Label + colon + "\n" + l.URL + "\n\n")
	}
	b.WriteString("-- \n" + m.Footer + "\n")
	return b.String()
}

var htmlTemplate = template.Must(template.New("email").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{{.Subject}}</title></head>
<body style="font-family:-apple-system,Segoe UI,Roboto,sans-serif;line-height:1.5;color:#1b1b1b;max-width:36em;margin:0 auto;padding:1em">
<p>{{.Greeting}}</p>
{{range .Paragraphs}}<p>{{.}}</p>
{{end}}{{range .Links}}<p><a href="{{.URL}}" style="display:inline-block;padding:.5em 1em;border:1px solid #0b5cad;border-radius:4px;color:#0b5cad;text-decoration:none">{{.Label}}</a></p>
{{end}}<hr style="border:0;border-top:1px solid #ddd">
<p style="color:#666;font-size:small">{{.Footer}}</p>
</body>
</html>
`))

// html renders m as the HTML part of an email.
func (m message) html() (string, error) {
	var b bytes.Buffer
	if err := htmlTemplate.Execute(&b, m); err != nil {
		return "", err
	}
	return b.String(), nil
}
