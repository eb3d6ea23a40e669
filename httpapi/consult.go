package httpapi

import (
	"net/http"
)

func (a *API) consultRoutes(mux *http.ServeMux) {
	if a.Consult == nil {
		return
	}
	mux.HandleFunc("POST /api/v1/appointments/{id}/join", a.joinConsult)
	mux.HandleFunc("GET /api/v1/appointments/{id}/chat", a.consultChat)
}

// joinConsult returns a join token, the signalling URL and the ICE
// servers to the appointment's patient or practitioner, near its time.
func (a *API) joinConsult(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	info, err := a.Consult.Join(r.Context(), acct, r.PathValue("id"), a.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// consultChat returns the in-call chat kept with the appointment.
func (a *API) consultChat(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	lines, err := a.Consult.History(r.Context(), acct, r.PathValue("id"), a.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": lines})
}
