package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"teleconsult/audit"
	"teleconsult/auth"
	"teleconsult/booking"
	"teleconsult/fhir"
	"teleconsult/problem"
	"teleconsult/rx"
	"teleconsult/store"
)

// fhirRoutes serves read access to one practice's records as FHIR R4, to
// an API token with the right scope or to the practitioner in person.
// Nothing lists or searches across practices: every query is scoped to
// the caller's own practice, and another practice's id is not found.
func (a *API) fhirRoutes(mux *http.ServeMux) {
	if a.Booking == nil {
		return
	}
	mux.HandleFunc("GET /fhir/metadata", a.fhirMetadata)
	mux.HandleFunc("GET /fhir/Practitioner/{id}", a.fhirPractitioner)
	mux.HandleFunc("GET /fhir/PractitionerRole", a.fhirPractitionerRoles)
	mux.HandleFunc("GET /fhir/Schedule", a.fhirSchedules)
	mux.HandleFunc("GET /fhir/Slot", a.fhirSlots)
	mux.HandleFunc("GET /fhir/Appointment", a.fhirAppointments)
	mux.HandleFunc("GET /fhir/Appointment/{id}", a.fhirAppointment)
	mux.HandleFunc("PUT /fhir/Appointment/{id}", a.fhirUpdateAppointment)
	if a.Rx != nil {
		mux.HandleFunc("GET /fhir/MedicationRequest", a.fhirMedicationRequests)
		mux.HandleFunc("GET /fhir/MedicationRequest/{id}", a.fhirMedicationRequest)
	}
}

func writeFHIR(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", fhir.ContentType+"; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeFHIRError answers an error as an OperationOutcome, with the status
// the one mapping gives.
func writeFHIRError(w http.ResponseWriter, r *http.Request, err error) {
	p := problem.As(err)
	if p.Kind == problem.Internal || p.Kind == problem.TooMany {
		writeError(w, r, err)
		return
	}
	code := map[problem.Kind]string{problem.Invalid: "invalid", problem.Unauthorized: "login", problem.Forbidden: "forbidden",
		problem.NotFound: "not-found", problem.Conflict: "conflict", problem.Gone: "deleted"}[p.Kind]
	writeFHIR(w, StatusOf(err), fhir.OperationOutcome{ResourceType: "OperationOutcome",
		Issue: []fhir.Issue{{Severity: "error", Code: code, Diagnostics: p.Message}}})
}

func (a *API) fhirMetadata(w http.ResponseWriter, r *http.Request) {
	type resource struct {
		Type        string `json:"type"`
		Interaction []struct {
			Code string `json:"code"`
		} `json:"interaction"`
	}
	read := func(t string, codes ...string) resource {
		res := resource{Type: t}
		for _, c := range codes {
			res.Interaction = append(res.Interaction, struct {
				Code string `json:"code"`
			}{c})
		}
		return res
	}
	writeFHIR(w, http.StatusOK, map[string]any{
		"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
		"format": []string{"json"}, "date": "2026-11-28",
		"rest": []map[string]any{{"mode": "server", "security": map[string]any{"description": "Bearer API tokens (tcapi_...) scoped to one practice: agenda:read, prescriptions:read"},
			"resource": []resource{read("Practitioner", "read"), read("PractitionerRole", "search-type"), read("Schedule", "search-type"),
				read("Slot", "search-type"), read("Appointment", "read", "search-type"), read("MedicationRequest", "read", "search-type")}}},
	})
}

// fhirCaller returns the practice the request may read, or an error.
func (a *API) fhirCaller(w http.ResponseWriter, r *http.Request, scope string) (*auth.Account, bool) {
	acct, err := a.tokenOwner(r, scope)
	if err != nil {
		writeFHIRError(w, r, err)
		return nil, false
	}
	return acct, true
}

func (a *API) fhirPractitioner(w http.ResponseWriter, r *http.Request) {
	acct, ok := a.fhirCaller(w, r, auth.ScopeAgendaRead)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if id != acct.ID {
		writeFHIRError(w, r, store.ErrNotFound.With("Practitioner not found"))
		return
	}
	p, err := store.PractitionerByID(r.Context(), a.DB.Pool, id)
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	res := fhir.Practitioner{ResourceType: "Practitioner", ID: p.AccountID, Active: true,
		Identifier: []fhir.Identifier{{System: fhir.RPPSSystem, Value: p.RPPS}},
		Name:       []fhir.HumanName{{Text: p.Name}},
		Address:    []fhir.Address{{Line: nonEmpty(p.Address), City: p.City, PostalCode: p.Postcode, Country: "FR"}},
	}
	if p.Phone != "" {
		res.Telecom = append(res.Telecom, fhir.ContactPoint{System: "phone", Value: p.Phone})
	}
	for _, l := range p.Languages {
		res.Communication = append(res.Communication, fhir.CodeableConcept{Coding: []fhir.Coding{{System: "urn:ietf:bcp:47", Code: l}}})
	}
	writeFHIR(w, http.StatusOK, res)
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func (a *API) fhirPractitionerRoles(w http.ResponseWriter, r *http.Request) {
	acct, ok := a.fhirCaller(w, r, auth.ScopeAgendaRead)
	if !ok {
		return
	}
	p, err := store.PractitionerByID(r.Context(), a.DB.Pool, acct.ID)
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	role := fhir.PractitionerRole{ResourceType: "PractitionerRole", ID: p.AccountID, Active: true,
		Practitioner: fhir.Reference{Reference: "Practitioner/" + p.AccountID, Display: p.Name}}
	if sp, ok := booking.SpecialtyByCode(p.Specialty); ok {
		role.Specialty = []fhir.CodeableConcept{{Coding: []fhir.Coding{{System: "urn:teleconsult:specialty", Code: sp.Code, Display: sp.Label("en")}}, Text: sp.Label("fr")}}
	}
	writeFHIR(w, http.StatusOK, fhir.NewBundle(a.BaseURL, "PractitionerRole", []string{role.ID}, []any{role}))
}

func (a *API) fhirSchedules(w http.ResponseWriter, r *http.Request) {
	acct, ok := a.fhirCaller(w, r, auth.ScopeAgendaRead)
	if !ok {
		return
	}
	if actor := r.URL.Query().Get("actor"); actor != "" && actor != "Practitioner/"+acct.ID {
		writeFHIR(w, http.StatusOK, fhir.NewBundle(a.BaseURL, "Schedule", nil, nil))
		return
	}
	cts, err := store.ConsultationTypes(r.Context(), a.DB.Pool, acct.ID, false)
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	var ids []string
	var res []any
	for _, ct := range cts {
		ids = append(ids, ct.ID)
		res = append(res, fhir.Schedule{ResourceType: "Schedule", ID: ct.ID, Active: ct.Active,
			ServiceType: []fhir.CodeableConcept{{Text: ct.Name}, *fhir.ModeConcept(ct.Mode)},
			Actor:       []fhir.Reference{{Reference: "Practitioner/" + acct.ID, Display: acct.Name}}})
	}
	writeFHIR(w, http.StatusOK, fhir.NewBundle(a.BaseURL, "Schedule", ids, res))
}

// fhirRange reads FHIR date search parameters ("ge2026-03-01", "lt...")
// of name into [from, to), with defaults.
func fhirRange(r *http.Request, name string, defFrom time.Time, defSpan time.Duration) (time.Time, time.Time, error) {
	from, to := defFrom, time.Time{}
	for _, v := range r.URL.Query()[name] {
		prefix, val := v[:min(2, len(v))], v
		if prefix == "ge" || prefix == "gt" || prefix == "lt" || prefix == "le" {
			val = v[2:]
		} else {
			prefix = "ge"
		}
		t, err := time.Parse(time.RFC3339, val)
		if err != nil {
			if t, err = time.Parse("2006-01-02", val); err != nil {
				return from, to, problem.Newf(problem.Invalid, "bad_date", "%s must be a date or an RFC 3339 time, e.g. ge2026-03-01", name)
			}
		}
		switch prefix {
		case "ge", "gt":
			from = t
		case "lt", "le":
			to = t
		}
	}
	if to.IsZero() {
		to = from.Add(defSpan)
	}
	return from, to, nil
}

func (a *API) fhirSlots(w http.ResponseWriter, r *http.Request) {
	acct, ok := a.fhirCaller(w, r, auth.ScopeAgendaRead)
	if !ok {
		return
	}
	schedule := strings.TrimPrefix(r.URL.Query().Get("schedule"), "Schedule/")
	if schedule == "" {
		writeFHIRError(w, r, missing("schedule"))
		return
	}
	ct, err := store.ConsultationTypeByID(r.Context(), a.DB.Pool, schedule)
	if err != nil || ct.PractitionerID != acct.ID {
		writeFHIRError(w, r, store.ErrNotFound.With("Schedule not found"))
		return
	}
	from, to, err := fhirRange(r, "start", time.Now(), 7*24*time.Hour)
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	slots, err := a.Booking.Slots(r.Context(), "", acct.ID, ct.ID, from, to)
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	var ids []string
	var res []any
	for _, s := range slots {
		id := ct.ID + "-" + s.Start.UTC().Format("20060102T1504")
		ids = append(ids, id)
		res = append(res, fhir.Slot{ResourceType: "Slot", ID: id, Schedule: fhir.Reference{Reference: "Schedule/" + ct.ID}, Status: "free", Start: s.Start, End: s.End})
	}
	writeFHIR(w, http.StatusOK, fhir.NewBundle(a.BaseURL, "Slot", ids, res))
}

func toFHIRAppointment(ap store.Appointment, practitionerName, patientName string) fhir.Appointment {
	created := ap.CreatedAt
	return fhir.Appointment{ResourceType: "Appointment", ID: ap.ID, Status: fhir.AppointmentStatus(ap.Status),
		AppointmentType: fhir.ModeConcept(ap.Mode), Start: ap.StartsAt, End: ap.EndsAt,
		MinutesDuration: int(ap.EndsAt.Sub(ap.StartsAt).Minutes()), Created: &created,
		Participant: []fhir.Participant{
			{Actor: fhir.Reference{Reference: "Practitioner/" + ap.PractitionerID, Display: practitionerName}, Required: "required", Status: "accepted"},
			{Actor: fhir.Reference{Reference: "Patient/" + ap.PatientID, Display: patientName}, Required: "required", Status: "accepted"},
		}}
}

func (a *API) fhirAppointments(w http.ResponseWriter, r *http.Request) {
	acct, ok := a.fhirCaller(w, r, auth.ScopeAgendaRead)
	if !ok {
		return
	}
	from, to, err := fhirRange(r, "date", time.Now().Add(-24*time.Hour), 8*24*time.Hour)
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	if to.Sub(from) > 93*24*time.Hour {
		writeFHIRError(w, r, problem.New(problem.Invalid, "range_too_wide", "ask for at most 93 days of appointments at once"))
		return
	}
	list, err := store.AppointmentsOfPractitioner(r.Context(), a.DB.Pool, acct.ID, from, to)
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	var ids []string
	var res []any
	for _, ap := range list {
		ids = append(ids, ap.ID)
		res = append(res, toFHIRAppointment(ap, acct.Name, a.patientName(r, ap.PatientID)))
	}
	_ = audit.Record(r.Context(), a.DB.Pool, audit.Entry{Actor: a.fhirActor(r, acct), Action: "read", ObjectType: "agenda", ObjectID: acct.ID, Detail: "fhir"})
	writeFHIR(w, http.StatusOK, fhir.NewBundle(a.BaseURL, "Appointment", ids, res))
}

func (a *API) fhirAppointment(w http.ResponseWriter, r *http.Request) {
	acct, ok := a.fhirCaller(w, r, auth.ScopeAgendaRead)
	if !ok {
		return
	}
	ap, err := store.AppointmentByID(r.Context(), a.DB.Pool, r.PathValue("id"))
	if err == nil && ap.PractitionerID != acct.ID {
		_ = audit.Record(r.Context(), a.DB.Pool, audit.Entry{Actor: a.fhirActor(r, acct), Action: "read", ObjectType: "appointment", ObjectID: ap.ID, SubjectID: ap.PatientID, Outcome: audit.Denied, Detail: "fhir"})
		err = store.ErrNotFound.With("appointment not found")
	}
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	_ = audit.Record(r.Context(), a.DB.Pool, audit.Entry{Actor: a.fhirActor(r, acct), Action: "read", ObjectType: "appointment", ObjectID: ap.ID, SubjectID: ap.PatientID, Detail: "fhir"})
	writeFHIR(w, http.StatusOK, toFHIRAppointment(ap, acct.Name, a.patientName(r, ap.PatientID)))
}

// fhirActor names the caller in the audit log: the token, on behalf of
// its practice.
func (a *API) fhirActor(r *http.Request, owner *auth.Account) audit.Actor {
	act := audit.Actor{ID: owner.ID, Role: owner.Role, IP: a.clientIP(r)}
	if t := a.apiToken(r); t != nil {
		act.Role = "token:" + t.ID
	}
	return act
}

func (a *API) patientName(r *http.Request, id string) string {
	acct, err := store.AccountByID(r.Context(), a.DB.Pool, id)
	if err != nil {
		return ""
	}
	return acct.Name
}

// rxCaller is the practitioner behind a FHIR request, as the prescription
// service knows callers (the audit log notes the token in Detail).
func (a *API) rxCaller(r *http.Request, owner *auth.Account) rx.Caller {
	return rx.Caller{ID: owner.ID, Role: owner.Role, IP: a.clientIP(r)}
}

// fhirMedicationRequests lists the MedicationRequests the practice wrote.
func (a *API) fhirMedicationRequests(w http.ResponseWriter, r *http.Request) {
	acct, ok := a.fhirCaller(w, r, auth.ScopePrescriptionsRead)
	if !ok {
		return
	}
	views, err := a.Rx.List(r.Context(), a.rxCaller(r, acct))
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	var ids []string
	var res []any
	// List is scoped to the prescriber: only this practice's prescriptions.
	for _, v := range views {
		full, err := a.Rx.Get(r.Context(), a.rxCaller(r, acct), v.ID)
		if err != nil {
			writeFHIRError(w, r, err)
			return
		}
		for _, mr := range rx.MedicationRequests(full) {
			ids = append(ids, mr.ID)
			res = append(res, mr)
		}
	}
	writeFHIR(w, http.StatusOK, fhir.NewBundle(a.BaseURL, "MedicationRequest", ids, res))
}

// fhirMedicationRequest reads one MedicationRequest ("<prescription>-<item>").
func (a *API) fhirMedicationRequest(w http.ResponseWriter, r *http.Request) {
	acct, ok := a.fhirCaller(w, r, auth.ScopePrescriptionsRead)
	if !ok {
		return
	}
	id := r.PathValue("id")
	notFound := store.ErrNotFound.With("MedicationRequest not found")
	if len(id) < 38 || id[36] != '-' {
		writeFHIRError(w, r, notFound)
		return
	}
	// Get answers only the prescriber (as a practitioner): another
	// practice's prescription is not found, and the refusal audited.
	v, err := a.Rx.Get(r.Context(), a.rxCaller(r, acct), id[:36])
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	for _, mr := range rx.MedicationRequests(v) {
		if mr.ID == id {
			writeFHIR(w, http.StatusOK, mr)
			return
		}
	}
	writeFHIRError(w, r, notFound)
}

// fhirUpdateAppointment lets practice software change an appointment's
// status (FHIR update of the Appointment; only status is taken from the
// body, and a change to anything else is refused).
func (a *API) fhirUpdateAppointment(w http.ResponseWriter, r *http.Request) {
	acct, ok := a.fhirCaller(w, r, auth.ScopeAppointmentsWrite)
	if !ok {
		return
	}
	var in struct {
		ResourceType string     `json:"resourceType"`
		ID           string     `json:"id"`
		Status       string     `json:"status"`
		Start        *time.Time `json:"start"`
		End          *time.Time `json:"end"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(&in); err != nil {
		writeFHIRError(w, r, ErrBadJSON)
		return
	}
	id := r.PathValue("id")
	if in.ResourceType != "Appointment" || (in.ID != "" && in.ID != id) {
		writeFHIRError(w, r, problem.New(problem.Invalid, "bad_resource", "the body must be this Appointment resource"))
		return
	}
	ap, err := store.AppointmentByID(r.Context(), a.DB.Pool, id)
	if err == nil && ap.PractitionerID != acct.ID {
		err = store.ErrNotFound.With("appointment not found")
	}
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	if (in.Start != nil && !in.Start.Equal(ap.StartsAt)) || (in.End != nil && !in.End.Equal(ap.EndsAt)) {
		writeFHIRError(w, r, problem.New(problem.Invalid, "read_only", "only the status can be changed here; patients reschedule themselves"))
		return
	}
	who := audit.Actor{ID: acct.ID, Role: acct.Role, IP: a.clientIP(r)}
	switch in.Status {
	case fhir.AppointmentStatus(ap.Status):
	case "cancelled":
		_, err = a.Booking.Cancel(r.Context(), who, id, "")
	case "noshow":
		_, err = a.Booking.Mark(r.Context(), who, id, store.StatusNoShow)
	case "arrived":
		_, err = a.Booking.Mark(r.Context(), who, id, store.StatusArrived)
	case "fulfilled":
		_, err = a.Booking.Mark(r.Context(), who, id, store.StatusCompleted)
	default:
		err = problem.New(problem.Invalid, "bad_status", "status may become cancelled, noshow, arrived or fulfilled")
	}
	if err == nil {
		ap, err = store.AppointmentByID(r.Context(), a.DB.Pool, id)
	}
	if err != nil {
		writeFHIRError(w, r, err)
		return
	}
	writeFHIR(w, http.StatusOK, toFHIRAppointment(ap, acct.Name, a.patientName(r, ap.PatientID)))
}
