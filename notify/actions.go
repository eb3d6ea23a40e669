package notify

import (
	"context"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/problem"
	"teleconsult/store"
)

// Action page problems.
var (
	ErrTooLateToCancel = problem.New(problem.Conflict, "cancel_too_late", "this appointment is too close to be changed online; please call the practice")
	ErrNotUpcoming     = problem.New(problem.Conflict, "appointment_not_upcoming", "this appointment can no longer be changed")
	ErrSlotUnavailable = problem.New(problem.Conflict, "slot_unavailable", "this time is not available; please choose another")
)

// SlotFinder proposes the times an appointment may move to (same
// practitioner and consultation type, within opening hours). The booking
// service implements it; without one, the reschedule page sends the
// patient to their account.
type SlotFinder interface {
	FreeSlots(ctx context.Context, appointmentID string, limit int) ([]time.Time, error)
}

// SlotFinderFunc adapts a function to SlotFinder.
type SlotFinderFunc func(ctx context.Context, appointmentID string, limit int) ([]time.Time, error)

// FreeSlots calls f.
func (f SlotFinderFunc) FreeSlots(ctx context.Context, appointmentID string, limit int) ([]time.Time, error) {
	return f(ctx, appointmentID, limit)
}

// Booking is the booking service as the action pages use it: the
// patient's own cancel and reschedule, with every booking rule (cut-off,
// payment release, waiting list, audit). *booking.Service satisfies it.
type Booking interface {
	Cancel(ctx context.Context, who audit.Actor, id, reason string) (store.Appointment, error)
	Reschedule(ctx context.Context, who audit.Actor, id string, start time.Time) (store.Appointment, error)
}

// ActionPages serves the one-click links of appointment emails:
// GET /a/{token} shows what the link will do and asks for confirmation
// (mail scanners follow links, so GET never acts), POST /a/{token} does
// it. The token is the only credential: no login is needed.
type ActionPages struct {
	db      *store.DB
	secret  []byte
	baseURL string
	now     func() time.Time
	// Slots, if set, lists the times offered on the reschedule page.
	Slots SlotFinder
	// Booking, if set, does the cancel and the move. Without it they are
	// done here with the store (store.TransitionAppointment,
	// store.MoveAppointment) and both parties are told; a payment hold is
	// then not released, so wire Booking wherever payments are on.
	Booking Booking
}

// NewActionPages returns the handlers for the links signed with
// cfg.TokenKey.
func NewActionPages(db *store.DB, cfg Config, now func() time.Time) *ActionPages {
	cfg.defaults()
	if now == nil {
		now = time.Now
	}
	return &ActionPages{db: db, secret: cfg.TokenKey, baseURL: cfg.BaseURL, now: now}
}

// Routes registers GET and POST /a/{token} on mux.
func (p *ActionPages) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /a/{token}", p.show)
	mux.HandleFunc("POST /a/{token}", p.act)
}

// pageSlots bounds the times offered on one reschedule page.
const pageSlots = 12

// page is what the action template shows.
type page struct {
	Lang    string
	Title   string
	Message string
	Detail  string
	Button  string
	Slots   []slotChoice
	Link    *link
	Status  int
}

type slotChoice struct {
	Value, Label string
}

var pageWording = map[string]map[string]string{
	"en": {
		"cancel.title": "Cancel your appointment", "cancel.ask": "Do you want to cancel %s?", "cancel.button": "Yes, cancel it",
		"cancel.done": "Your appointment is cancelled. The practitioner has been told.",
		"move.title":  "Move your appointment", "move.ask": "Choose a new time for %s.", "move.button": "Move my appointment",
		"move.none": "There is no free time to offer right now.", "move.account": "Choose a new time from your account.",
		"move.open": "Open my appointments", "move.done": "Your appointment is moved to %s.",
		"error.title": "This link cannot be used",
	},
	"fr": {
		"cancel.title": "Annuler votre rendez-vous", "cancel.ask": "Voulez-vous annuler %s ?", "cancel.button": "Oui, annuler",
		"cancel.done": "Votre rendez-vous est annulé. Le praticien en est informé.",
		"move.title":  "Déplacer votre rendez-vous", "move.ask": "Choisissez un nouvel horaire pour %s.", "move.button": "Déplacer mon rendez-vous",
		"move.none": "Aucun horaire libre à proposer pour le moment.", "move.account": "Choisissez un nouvel horaire depuis votre compte.",
		"move.open": "Voir mes rendez-vous", "move.done": "Votre rendez-vous est déplacé au %s.",
		"error.title": "Ce lien ne peut pas être utilisé",
	},
}

var errorWording = map[string]map[string]string{
	"fr": {
		"link_invalid":             "Ce lien n'est pas valide.",
		"link_expired":             "Ce lien a expiré.",
		"cancel_too_late":          "Ce rendez-vous est trop proche pour être modifié en ligne ; veuillez appeler le cabinet.",
		"appointment_not_upcoming": "Ce rendez-vous ne peut plus être modifié.",
		"slot_unavailable":         "Cet horaire n'est pas disponible ; veuillez en choisir un autre.",
		"slot_taken":               "Cet horaire vient d'être pris ; veuillez en choisir un autre.",
		"not_found":                "Ce rendez-vous n'existe pas.",
		"too_late_to_cancel":       "Il est trop tard pour modifier ce rendez-vous en ligne ; veuillez contacter le cabinet.",
		"wrong_status":             "Ce rendez-vous ne peut plus être modifié.",
		"slot_offered":             "Cet horaire est proposé à un patient de la liste d'attente ; veuillez en choisir un autre.",
	},
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{{.Title}}</title>
<style>body{font-family:-apple-system,Segoe UI,Roboto,sans-serif;line-height:1.5;max-width:32em;margin:2em auto;padding:0 1em;color:#1b1b1b}
button{font:inherit;padding:.6em 1.2em;border-radius:4px;border:1px solid #0b5cad;background:#0b5cad;color:#fff}
label{display:block;margin:.3em 0}</style></head>
<body>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Detail}}<p>{{.Detail}}</p>{{end}}
{{if .Button}}<form method="post">
{{range .Slots}}<label><input type="radio" name="start" value="{{.Value}}" required> {{.Label}}</label>
{{end}}<p><button type="submit">{{.Button}}</button></p>
</form>{{end}}
{{with .Link}}<p><a href="{{.URL}}">{{.Label}}</a></p>{{end}}
</body>
</html>
`))

func (p *ActionPages) write(w http.ResponseWriter, pg page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The token is in the URL: keep it out of caches and Referer headers,
	// and refuse framing so the button cannot be clickjacked.
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	if pg.Status == 0 {
		pg.Status = http.StatusOK
	}
	w.WriteHeader(pg.Status)
	if err := pageTemplate.Execute(w, pg); err != nil {
		slog.Error("notify: action page", "err", err)
	}
}

func (p *ActionPages) fail(w http.ResponseWriter, lang string, err error) {
	pe := problem.As(err)
	status := map[problem.Kind]int{
		problem.Invalid: http.StatusBadRequest, problem.Unauthorized: http.StatusUnauthorized,
		problem.Forbidden: http.StatusForbidden, problem.NotFound: http.StatusNotFound,
		problem.Conflict: http.StatusConflict, problem.Gone: http.StatusGone,
		problem.TooMany: http.StatusTooManyRequests, problem.Unavailable: http.StatusServiceUnavailable,
	}[pe.Kind]
	if status == 0 {
		slog.Error("notify: action link", "err", err)
		status = http.StatusInternalServerError
	}
	msg := pe.Message
	if m := errorWording[lang][pe.Code]; m != "" {
		msg = m
	}
	if _, ok := pageWording[lang]; !ok {
		lang = "fr"
	}
	p.write(w, page{Lang: lang, Title: pageWording[lang]["error.title"], Message: msg, Status: status})
}

// target is an appointment reached through a verified link.
type target struct {
	purpose string
	appt    store.AppointmentNotice
	lang    string
	loc     *time.Location
}

func (t target) words(key string) string { return pageWording[t.lang][key] }

// phrase is "your appointment on ... with Dr ..." in the patient's language.
func (t target) phrase() string {
	return fmt.Sprintf(wording[t.lang].yourAppt, when(t.lang, t.appt.StartsAt, t.loc), doctor(t.appt.PractitionerName))
}

// resolve verifies the token and loads the appointment it acts on.
func (p *ActionPages) resolve(r *http.Request) (target, error) {
	tok := r.PathValue("token")
	purpose := TokenPurpose(tok)
	id, err := VerifyActionToken(p.secret, tok, purpose, p.now())
	if err != nil {
		return target{lang: "fr"}, err
	}
	a, err := store.GetAppointmentNotice(r.Context(), p.db.Pool, id)
	if err != nil {
		return target{lang: "fr"}, err
	}
	t := target{purpose: purpose, appt: a, lang: "fr", loc: loadLocation(a.TimeZone)}
	if rc, err := store.GetRecipient(r.Context(), p.db.Pool, a.PatientID); err == nil && rc.Language == "en" {
		t.lang = "en"
	}
	if !slices.Contains(store.UpcomingStatuses, a.Status) || !a.StartsAt.After(p.now()) {
		return t, ErrNotUpcoming
	}
	// The practitioner's cut-off closes online changes (as in booking),
	// except for a booking still awaiting payment.
	if a.Status != store.StatusPendingPayment && !p.now().Before(a.StartsAt.Add(-time.Duration(a.CancelCutoff)*time.Minute)) {
		return t, ErrTooLateToCancel
	}
	return t, nil
}

func (p *ActionPages) show(w http.ResponseWriter, r *http.Request) {
	t, err := p.resolve(r)
	if err != nil {
		p.fail(w, t.lang, err)
		return
	}
	switch t.purpose {
	case PurposeCancel:
		p.write(w, page{Lang: t.lang, Title: t.words("cancel.title"),
			Message: fmt.Sprintf(t.words("cancel.ask"), t.phrase()), Button: t.words("cancel.button")})
	case PurposeReschedule:
		pg := page{Lang: t.lang, Title: t.words("move.title"), Message: fmt.Sprintf(t.words("move.ask"), t.phrase())}
		if p.Slots == nil {
			pg.Detail = t.words("move.account")
			pg.Link = &link{t.words("move.open"), p.baseURL + "/appointments/" + t.appt.ID}
			p.write(w, pg)
			return
		}
		slots, err := p.Slots.FreeSlots(r.Context(), t.appt.ID, pageSlots)
		if err != nil {
			p.fail(w, t.lang, err)
			return
		}
		for _, s := range slots {
			pg.Slots = append(pg.Slots, slotChoice{Value: s.UTC().Format(time.RFC3339), Label: upperFirst(when(t.lang, s, t.loc))})
		}
		if len(pg.Slots) == 0 {
			pg.Detail = t.words("move.none")
			pg.Link = &link{t.words("move.open"), p.baseURL + "/appointments/" + t.appt.ID}
		} else {
			pg.Button = t.words("move.button")
		}
		p.write(w, pg)
	}
}

func (p *ActionPages) act(w http.ResponseWriter, r *http.Request) {
	t, err := p.resolve(r)
	if err != nil {
		p.fail(w, t.lang, err)
		return
	}
	ctx := r.Context()
	a := t.appt
	switch t.purpose {
	case PurposeCancel:
		err = p.cancel(ctx, r, a)
		if err != nil {
			p.fail(w, t.lang, err)
			return
		}
		slog.Info("notify: appointment cancelled from email link", "appointment", a.ID)
		p.write(w, page{Lang: t.lang, Title: t.words("cancel.title"), Message: t.words("cancel.done")})
	case PurposeReschedule:
		if p.Slots == nil {
			p.fail(w, t.lang, ErrSlotUnavailable)
			return
		}
		start, err := time.Parse(time.RFC3339, r.PostFormValue("start"))
		if err != nil {
			p.fail(w, t.lang, ErrSlotUnavailable.With("please choose a time"))
			return
		}
		slots, err := p.Slots.FreeSlots(ctx, a.ID, pageSlots)
		if err != nil {
			p.fail(w, t.lang, err)
			return
		}
		if !slices.ContainsFunc(slots, start.Equal) {
			p.fail(w, t.lang, ErrSlotUnavailable)
			return
		}
		if err := p.move(ctx, r, a, start); err != nil {
			p.fail(w, t.lang, err)
			return
		}
		slog.Info("notify: appointment moved from email link", "appointment", a.ID)
		p.write(w, page{Lang: t.lang, Title: t.words("move.title"),
			Message: fmt.Sprintf(t.words("move.done"), when(t.lang, start, t.loc))})
	default:
		p.fail(w, t.lang, ErrActionToken)
	}
}

// patientActor is the patient, proven by the link sent to them.
func patientActor(r *http.Request, a store.AppointmentNotice) audit.Actor {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	return audit.Actor{ID: a.PatientID, Role: "patient", IP: ip}
}

// cancel cancels a for its patient.
func (p *ActionPages) cancel(ctx context.Context, r *http.Request, a store.AppointmentNotice) error {
	if p.Booking != nil {
		_, err := p.Booking.Cancel(ctx, patientActor(r, a), a.ID, "")
		return err
	}
	return p.db.Tx(ctx, func(tx pgx.Tx) error {
		if err := store.TransitionAppointment(ctx, tx, a.ID, store.UpcomingStatuses, store.StatusCancelled,
			a.PatientID, "cancelled from an email link"); err != nil {
			return err
		}
		if err := enqueueBoth(ctx, tx, a, store.EventAppointmentCancelled, map[string]string{"cancelled_by": "patient"}); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: patientActor(r, a), Action: "write", ObjectType: "appointment",
			ObjectID: a.ID, SubjectID: a.PatientID, Outcome: audit.OK, Detail: "cancel from email link"})
	})
}

// move moves a to start for its patient.
func (p *ActionPages) move(ctx context.Context, r *http.Request, a store.AppointmentNotice, start time.Time) error {
	if p.Booking != nil {
		_, err := p.Booking.Reschedule(ctx, patientActor(r, a), a.ID, start)
		return err
	}
	return p.db.Tx(ctx, func(tx pgx.Tx) error {
		if err := store.MoveAppointment(ctx, tx, a.ID, start, start.Add(a.EndsAt.Sub(a.StartsAt)), a.PatientID); err != nil {
			return err
		}
		if err := enqueueBoth(ctx, tx, a, store.EventAppointmentRescheduled,
			map[string]string{"old_start": a.StartsAt.UTC().Format(time.RFC3339)}); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: patientActor(r, a), Action: "write", ObjectType: "appointment",
			ObjectID: a.ID, SubjectID: a.PatientID, Outcome: audit.OK, Detail: "reschedule from email link"})
	})
}

// enqueueBoth tells the patient and the practitioner.
func enqueueBoth(ctx context.Context, q store.Q, a store.AppointmentNotice, kind string, data map[string]string) error {
	for _, to := range []string{a.PatientID, a.PractitionerID} {
		if err := store.Enqueue(ctx, q, store.OutboxEvent{Kind: kind, RecipientID: to, AppointmentID: a.ID, Data: data}); err != nil {
			return err
		}
	}
	return nil
}
