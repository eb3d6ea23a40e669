package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"teleconsult/booking"
	"teleconsult/problem"
	"teleconsult/store"
)

// bookingRoutes registers the directory, slots, appointments, agenda,
// waiting list, blocks, patient profile and relatives, practitioner
// settings and calendar feed routes, served by svc.
func (a *API) bookingRoutes(mux *http.ServeMux, svc *booking.Service) {
	h := &bookingHandlers{API: a, svc: svc}
	// Directory (public).
	mux.HandleFunc("GET /api/v1/specialties", h.specialties)
	mux.HandleFunc("GET /api/v1/practitioners", h.search)
	mux.HandleFunc("GET /api/v1/practitioners/{id}", h.practitioner)
	mux.HandleFunc("GET /api/v1/practitioners/{id}/slots", h.slots)
	mux.HandleFunc("GET /api/v1/pharmacies", h.pharmacies)
	// Appointments.
	mux.HandleFunc("POST /api/v1/appointments", h.book)
	mux.HandleFunc("GET /api/v1/appointments", h.listAppointments)
	mux.HandleFunc("GET /api/v1/appointments/{id}", h.getAppointment)
	mux.HandleFunc("POST /api/v1/appointments/{id}/cancel", h.cancel)
	mux.HandleFunc("POST /api/v1/appointments/{id}/reschedule", h.reschedule)
	mux.HandleFunc("POST /api/v1/appointments/{id}/status", h.mark)
	mux.HandleFunc("GET /api/v1/appointments/{id}/ics", h.ics)
	mux.HandleFunc("GET /api/v1/appointments/{id}/history", h.history)
	// Practitioner's agenda.
	mux.HandleFunc("GET /api/v1/agenda", h.agenda)
	mux.HandleFunc("POST /api/v1/agenda/delay", h.delay)
	// Waiting list.
	mux.HandleFunc("GET /api/v1/waitlist", h.waitlist)
	mux.HandleFunc("POST /api/v1/waitlist", h.joinWaitlist)
	mux.HandleFunc("DELETE /api/v1/waitlist/{id}", h.leaveWaitlist)
	// Blocks (practitioner).
	mux.HandleFunc("GET /api/v1/blocks", h.blocks)
	mux.HandleFunc("PUT /api/v1/blocks/{patient_id}", h.setBlock)
	// Patient profile and relatives.
	mux.HandleFunc("GET /api/v1/patient/profile", h.patientProfile)
	mux.HandleFunc("PUT /api/v1/patient/profile", h.savePatientProfile)
	mux.HandleFunc("GET /api/v1/relatives", h.relatives)
	mux.HandleFunc("POST /api/v1/relatives", h.saveRelative)
	mux.HandleFunc("PUT /api/v1/relatives/{id}", h.saveRelative)
	mux.HandleFunc("DELETE /api/v1/relatives/{id}", h.deleteRelative)
	// Practitioner settings.
	mux.HandleFunc("GET /api/v1/practitioner/profile", h.myProfile)
	mux.HandleFunc("PUT /api/v1/practitioner/profile", h.saveProfile)
	mux.HandleFunc("GET /api/v1/practitioner/opening-hours", h.openingHours)
	mux.HandleFunc("PUT /api/v1/practitioner/opening-hours", h.setOpeningHours)
	mux.HandleFunc("GET /api/v1/practitioner/absences", h.absences)
	mux.HandleFunc("POST /api/v1/practitioner/absences", h.addAbsence)
	mux.HandleFunc("DELETE /api/v1/practitioner/absences/{id}", h.deleteAbsence)
	mux.HandleFunc("GET /api/v1/practitioner/consultation-types", h.consultationTypes)
	mux.HandleFunc("POST /api/v1/practitioner/consultation-types", h.saveConsultationType)
	mux.HandleFunc("PUT /api/v1/practitioner/consultation-types/{id}", h.saveConsultationType)
	mux.HandleFunc("POST /api/v1/practitioner/calendar-token", h.newCalendarToken)
	mux.HandleFunc("DELETE /api/v1/practitioner/calendar-token", h.revokeCalendarToken)
	// The private feed: /calendar/{token}.ics (a wildcard must be a whole
	// segment, so the suffix is checked in the handler).
	mux.HandleFunc("GET /calendar/{file}", h.calendarFeed)
}

// bookingHandlers serves the booking routes.
type bookingHandlers struct {
	*API
	svc *booking.Service
}

var errBadTime = problem.New(problem.Invalid, "bad_time", "times are RFC 3339, e.g. 2026-03-02T09:30:00+01:00")

func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errBadTime.Withf("%s must be an RFC 3339 time, e.g. 2026-03-02T09:30:00+01:00", field)
	}
	return t, nil
}

// parseNear parses "LAT,LON".
func parseNear(s string) (*store.GeoPoint, error) {
	if s == "" {
		return nil, nil
	}
	la, lo, ok := strings.Cut(s, ",")
	lat, err1 := strconv.ParseFloat(strings.TrimSpace(la), 64)
	lon, err2 := strconv.ParseFloat(strings.TrimSpace(lo), 64)
	if !ok || err1 != nil || err2 != nil || lat < -90 || lat > 90 || lon < -180 || lon > 180 {
		return nil, booking.ErrInvalid.With("near must be LAT,LON in degrees, e.g. 48.8566,2.3522")
	}
	return &store.GeoPoint{Lat: lat, Lon: lon}, nil
}

func parseFloatParam(name, s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, booking.ErrInvalid.Withf("%s must be a number", name)
	}
	return f, nil
}

func parsePage(s string) (int, error) {
	if s == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, booking.ErrInvalid.With("page must be a positive integer")
	}
	return n, nil
}

func (h *bookingHandlers) specialties(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"specialties": booking.Specialties})
}

func (h *bookingHandlers) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	near, err := parseNear(q.Get("near"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	radius, err := parseFloatParam("radius_km", q.Get("radius_km"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	page, err := parsePage(q.Get("page"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	mode := q.Get("mode")
	if mode != "" && mode != "video" {
		writeError(w, r, booking.ErrInvalid.With("mode can only be video"))
		return
	}
	res, more, err := h.svc.Search(r.Context(), booking.SearchQuery{
		Specialty: q.Get("specialty"), City: q.Get("city"), Postcode: q.Get("postcode"),
		Near: near, RadiusKm: radius, VideoOnly: mode == "video", Language: q.Get("language"),
		Sort: q.Get("sort"), Page: page,
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": res, "page": page, "page_size": booking.PageSize, "has_more": more})
}

func (h *bookingHandlers) practitioner(w http.ResponseWriter, r *http.Request) {
	p, err := h.svc.Practitioner(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (h *bookingHandlers) slots(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("from") == "" || q.Get("to") == "" || q.Get("consultation_type_id") == "" {
		writeError(w, r, missing("from", "to", "consultation_type_id"))
		return
	}
	from, err := parseTime("from", q.Get("from"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	to, err := parseTime("to", q.Get("to"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	patientID := ""
	if acct, err := h.account(r); err == nil {
		patientID = acct.ID
	}
	slots, err := h.svc.Slots(r.Context(), patientID, r.PathValue("id"), q.Get("consultation_type_id"), from, to)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"slots": slots})
}

func (h *bookingHandlers) pharmacies(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	near, err := parseNear(q.Get("near"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	radius, err := parseFloatParam("radius_km", q.Get("radius_km"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	page, err := parsePage(q.Get("page"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	list, err := h.svc.Pharmacies(r.Context(), q.Get("city"), q.Get("postcode"), near, radius, page)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": list})
}

type bookBody struct {
	PractitionerID     string `json:"practitioner_id"`
	ConsultationTypeID string `json:"consultation_type_id"`
	Start              string `json:"start"`
	Reason             string `json:"reason"`
	RelativeID         string `json:"relative_id"`
}

// appointmentBody is an appointment as the API returns it after a change.
type appointmentBody struct {
	store.Appointment
	Payment *booking.Payment `json:"payment,omitempty"`
}

func (h *bookingHandlers) book(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	var b bookBody
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if b.PractitionerID == "" || b.ConsultationTypeID == "" || b.Start == "" {
		writeError(w, r, missing("practitioner_id", "consultation_type_id", "start"))
		return
	}
	start, err := parseTime("start", b.Start)
	if err != nil {
		writeError(w, r, err)
		return
	}
	res, err := h.svc.Book(r.Context(), h.actor(r), booking.BookRequest{PractitionerID: b.PractitionerID,
		ConsultationTypeID: b.ConsultationTypeID, Start: start, Reason: b.Reason, RelativeID: b.RelativeID})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, appointmentBody{Appointment: res.Appointment, Payment: res.Payment})
}

func (h *bookingHandlers) listAppointments(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	// By default: from a month ago to a year ahead.
	from, to := time.Now().Add(-31*24*time.Hour), time.Now().Add(366*24*time.Hour)
	var err error
	if s := q.Get("from"); s != "" {
		if from, err = parseTime("from", s); err != nil {
			writeError(w, r, err)
			return
		}
	}
	if s := q.Get("to"); s != "" {
		if to, err = parseTime("to", s); err != nil {
			writeError(w, r, err)
			return
		}
	}
	list, err := h.svc.List(r.Context(), h.actor(r), from, to)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"appointments": list})
}

func (h *bookingHandlers) getAppointment(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	v, err := h.svc.Get(r.Context(), h.actor(r), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (h *bookingHandlers) cancel(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	var b struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &b); err != nil {
			writeError(w, r, err)
			return
		}
	}
	a, err := h.svc.Cancel(r.Context(), h.actor(r), r.PathValue("id"), b.Reason)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, appointmentBody{Appointment: a})
}

func (h *bookingHandlers) reschedule(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	var b struct {
		Start string `json:"start"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if b.Start == "" {
		writeError(w, r, missing("start"))
		return
	}
	start, err := parseTime("start", b.Start)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a, err := h.svc.Reschedule(r.Context(), h.actor(r), r.PathValue("id"), start)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, appointmentBody{Appointment: a})
}

func (h *bookingHandlers) mark(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	var b struct {
		Status string `json:"status"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	a, err := h.svc.Mark(r.Context(), h.actor(r), r.PathValue("id"), b.Status)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, appointmentBody{Appointment: a})
}

func (h *bookingHandlers) history(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	events, err := h.svc.History(r.Context(), h.actor(r), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}

func (h *bookingHandlers) ics(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	b, err := h.svc.AppointmentICS(r.Context(), h.actor(r), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="appointment.ics"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// agenda returns the practitioner's day (view=day, default) or week
// (view=week, from the Monday) containing date=YYYY-MM-DD (default today),
// in the practitioner's time zone.
func (h *bookingHandlers) agenda(w http.ResponseWriter, r *http.Request) {
	acct, err := h.accountWithRole(r, "practitioner")
	if err != nil {
		writeError(w, r, err)
		return
	}
	p, err := h.svc.Practitioner(r.Context(), acct.ID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	loc, err := time.LoadLocation(p.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	q := r.URL.Query()
	day := time.Now().In(loc)
	if s := q.Get("date"); s != "" {
		if day, err = time.ParseInLocation("2006-01-02", s, loc); err != nil {
			writeError(w, r, booking.ErrInvalid.With("date must be YYYY-MM-DD"))
			return
		}
	}
	from := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, loc)
	to := from.AddDate(0, 0, 1)
	switch q.Get("view") {
	case "", "day":
	case "week":
		from = from.AddDate(0, 0, -((int(from.Weekday()) + 6) % 7))
		to = from.AddDate(0, 0, 7)
	default:
		writeError(w, r, booking.ErrInvalid.With("view must be day or week"))
		return
	}
	list, err := h.svc.List(r.Context(), h.actor(r), from, to)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "time_zone": loc.String(), "appointments": list})
}

func (h *bookingHandlers) delay(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	var b struct {
		Minutes int `json:"minutes"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	n, err := h.svc.AnnounceDelay(r.Context(), h.actor(r), b.Minutes)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"appointments_told": n})
}

func (h *bookingHandlers) waitlist(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "patient"); err != nil {
		writeError(w, r, err)
		return
	}
	entries, offers, err := h.svc.Waitlist(r.Context(), h.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if entries == nil {
		entries = []store.WaitlistEntry{}
	}
	if offers == nil {
		offers = []store.WaitlistOffer{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries, "offers": offers})
}

func (h *bookingHandlers) joinWaitlist(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	var b struct {
		PractitionerID     string `json:"practitioner_id"`
		ConsultationTypeID string `json:"consultation_type_id"`
		Before             string `json:"before"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if b.PractitionerID == "" {
		writeError(w, r, missing("practitioner_id"))
		return
	}
	var before *time.Time
	if b.Before != "" {
		t, err := parseTime("before", b.Before)
		if err != nil {
			writeError(w, r, err)
			return
		}
		before = &t
	}
	e, err := h.svc.JoinWaitlist(r.Context(), h.actor(r), b.PractitionerID, b.ConsultationTypeID, before)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, e)
}

func (h *bookingHandlers) leaveWaitlist(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	if err := h.svc.LeaveWaitlist(r.Context(), h.actor(r), r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *bookingHandlers) blocks(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	list, err := h.svc.Blocks(r.Context(), h.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"blocks": list})
}

func (h *bookingHandlers) setBlock(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	var b struct {
		Blocked *bool `json:"blocked"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if b.Blocked == nil {
		writeError(w, r, missing("blocked"))
		return
	}
	if err := h.svc.SetBlock(r.Context(), h.actor(r), r.PathValue("patient_id"), *b.Blocked); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"patient_id": r.PathValue("patient_id"), "blocked": *b.Blocked})
}

func (h *bookingHandlers) patientProfile(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "patient"); err != nil {
		writeError(w, r, err)
		return
	}
	list, err := h.svc.PatientProfiles(r.Context(), h.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	for _, p := range list {
		if p.Relationship == "self" {
			writeJSON(w, http.StatusOK, p)
			return
		}
	}
	writeError(w, r, store.ErrNotFound.With("you have not filled in your profile yet"))
}

func (h *bookingHandlers) savePatientProfile(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "patient"); err != nil {
		writeError(w, r, err)
		return
	}
	var p booking.PatientProfile
	if err := decodeJSON(w, r, &p); err != nil {
		writeError(w, r, err)
		return
	}
	p.ID, p.Relationship = "", "self"
	out, err := h.svc.SavePatientProfile(r.Context(), h.actor(r), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *bookingHandlers) relatives(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "patient"); err != nil {
		writeError(w, r, err)
		return
	}
	list, err := h.svc.PatientProfiles(r.Context(), h.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := []booking.PatientProfile{}
	for _, p := range list {
		if p.Relationship != "self" {
			out = append(out, p)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"relatives": out})
}

func (h *bookingHandlers) saveRelative(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "patient"); err != nil {
		writeError(w, r, err)
		return
	}
	var p booking.PatientProfile
	if err := decodeJSON(w, r, &p); err != nil {
		writeError(w, r, err)
		return
	}
	p.ID = r.PathValue("id")
	if p.Relationship == "self" || p.Relationship == "" {
		writeError(w, r, booking.ErrInvalid.With("relationship must be child or parent"))
		return
	}
	status := http.StatusOK
	if p.ID == "" {
		status = http.StatusCreated
	}
	out, err := h.svc.SavePatientProfile(r.Context(), h.actor(r), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, status, out)
}

func (h *bookingHandlers) deleteRelative(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "patient"); err != nil {
		writeError(w, r, err)
		return
	}
	if err := h.svc.DeleteRelative(r.Context(), h.actor(r), r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *bookingHandlers) myProfile(w http.ResponseWriter, r *http.Request) {
	acct, err := h.accountWithRole(r, "practitioner")
	if err != nil {
		writeError(w, r, err)
		return
	}
	p, err := h.svc.Practitioner(r.Context(), acct.ID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// profileBody is the editable part of a practitioner's profile; fields
// left out keep the documented defaults.
type profileBody struct {
	Specialty           string   `json:"specialty"`
	RPPS                string   `json:"rpps"`
	Address             string   `json:"address"`
	City                string   `json:"city"`
	Postcode            string   `json:"postcode"`
	Latitude            *float64 `json:"latitude"`
	Longitude           *float64 `json:"longitude"`
	Languages           []string `json:"languages"`
	PhotoURL            string   `json:"photo_url"`
	Presentation        string   `json:"presentation"`
	Phone               string   `json:"phone"`
	TimeZone            string   `json:"time_zone"`
	HorizonDays         *int     `json:"horizon_days"`
	MinNoticeMinutes    *int     `json:"min_notice_minutes"`
	CancelCutoffMinutes *int     `json:"cancel_cutoff_minutes"`
	NoShowLimit         *int     `json:"no_show_limit"`
}

func (h *bookingHandlers) saveProfile(w http.ResponseWriter, r *http.Request) {
	acct, err := h.accountWithRole(r, "practitioner")
	if err != nil {
		writeError(w, r, err)
		return
	}
	var b profileBody
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	p := booking.DefaultPractitioner(acct.ID)
	p.Specialty, p.RPPS, p.Address, p.City, p.Postcode = b.Specialty, b.RPPS, b.Address, b.City, b.Postcode
	p.Latitude, p.Longitude, p.PhotoURL, p.Presentation, p.Phone = b.Latitude, b.Longitude, b.PhotoURL, b.Presentation, b.Phone
	if len(b.Languages) > 0 {
		p.Languages = b.Languages
	}
	if b.TimeZone != "" {
		p.TimeZone = b.TimeZone
	}
	for _, f := range []struct {
		src *int
		dst *int
	}{{b.HorizonDays, &p.HorizonDays}, {b.MinNoticeMinutes, &p.MinNoticeMinutes}, {b.CancelCutoffMinutes, &p.CancelCutoffMinutes}, {b.NoShowLimit, &p.NoShowLimit}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	out, err := h.svc.SaveProfile(r.Context(), h.actor(r), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *bookingHandlers) openingHours(w http.ResponseWriter, r *http.Request) {
	acct, err := h.accountWithRole(r, "practitioner")
	if err != nil {
		writeError(w, r, err)
		return
	}
	hours, err := h.svc.OpeningHours(r.Context(), acct.ID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if hours == nil {
		hours = []store.OpeningHours{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"opening_hours": hours})
}

func (h *bookingHandlers) setOpeningHours(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	var b struct {
		OpeningHours []store.OpeningHours `json:"opening_hours"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if err := h.svc.SetOpeningHours(r.Context(), h.actor(r), b.OpeningHours); err != nil {
		writeError(w, r, err)
		return
	}
	h.openingHours(w, r)
}

func (h *bookingHandlers) absences(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	list, err := h.svc.Absences(r.Context(), h.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if list == nil {
		list = []store.Absence{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"absences": list})
}

func (h *bookingHandlers) addAbsence(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	var b struct {
		Start string `json:"start"`
		End   string `json:"end"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	start, end, err := h.absenceRange(r, b.Start, b.End)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a, err := h.svc.AddAbsence(r.Context(), h.actor(r), start, end)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

// absenceRange reads an absence given as RFC 3339 times, or as dates
// (YYYY-MM-DD, both days included) in the practitioner's time zone.
func (h *bookingHandlers) absenceRange(r *http.Request, from, to string) (time.Time, time.Time, error) {
	if from == "" || to == "" {
		return time.Time{}, time.Time{}, missing("start", "end")
	}
	if len(from) == len("2006-01-02") && len(to) == len("2006-01-02") {
		acct, _ := h.account(r)
		loc := time.UTC
		if p, err := h.svc.Practitioner(r.Context(), acct.ID); err == nil {
			if l, err := time.LoadLocation(p.TimeZone); err == nil {
				loc = l
			}
		}
		s, err1 := time.ParseInLocation("2006-01-02", from, loc)
		e, err2 := time.ParseInLocation("2006-01-02", to, loc)
		if err1 != nil || err2 != nil {
			return time.Time{}, time.Time{}, booking.ErrInvalid.With("dates are YYYY-MM-DD")
		}
		return s, e.AddDate(0, 0, 1), nil
	}
	s, err := parseTime("start", from)
	if err != nil {
		return s, s, err
	}
	e, err := parseTime("end", to)
	return s, e, err
}

func (h *bookingHandlers) deleteAbsence(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	if err := h.svc.DeleteAbsence(r.Context(), h.actor(r), r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *bookingHandlers) consultationTypes(w http.ResponseWriter, r *http.Request) {
	acct, err := h.accountWithRole(r, "practitioner")
	if err != nil {
		writeError(w, r, err)
		return
	}
	list, err := store.ConsultationTypes(r.Context(), h.DB.Pool, acct.ID, true)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"consultation_types": list})
}

func (h *bookingHandlers) saveConsultationType(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	var b struct {
		Name            string `json:"name"`
		Mode            string `json:"mode"`
		DurationMinutes int    `json:"duration_minutes"`
		FeeCents        int    `json:"fee_cents"`
		Currency        string `json:"currency"`
		NewPatients     *bool  `json:"new_patients"`
		Active          *bool  `json:"active"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	c := store.ConsultationType{ID: r.PathValue("id"), Name: b.Name, Mode: b.Mode, DurationMinutes: b.DurationMinutes,
		FeeCents: b.FeeCents, Currency: b.Currency, NewPatients: b.NewPatients == nil || *b.NewPatients, Active: b.Active == nil || *b.Active}
	status := http.StatusOK
	if c.ID == "" {
		status = http.StatusCreated
	}
	out, err := h.svc.SaveConsultationType(r.Context(), h.actor(r), c)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, status, out)
}

func (h *bookingHandlers) newCalendarToken(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	token, err := h.svc.NewCalendarToken(r.Context(), h.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"url": strings.TrimRight(h.BaseURL, "/") + "/calendar/" + token + ".ics"})
}

func (h *bookingHandlers) revokeCalendarToken(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "practitioner"); err != nil {
		writeError(w, r, err)
		return
	}
	if err := h.svc.RevokeCalendarToken(r.Context(), h.actor(r)); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *bookingHandlers) calendarFeed(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutSuffix(r.PathValue("file"), ".ics")
	if !ok {
		writeError(w, r, store.ErrNotFound.With("calendar not found"))
		return
	}
	b, err := h.svc.CalendarFeed(r.Context(), token)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("Cache-Control", "private, no-store")
	w.Write(b)
}
