package httpapi

import (
	"fmt"
	"net/http"

	"teleconsult/privacy"
)

// privacyRoutes serves the patient's GDPR rights: the download of
// everything held about them and the erasure of their account.
func (a *API) privacyRoutes(mux *http.ServeMux, svc *privacy.Service) {
	h := &privacyHandlers{API: a, svc: svc}
	mux.HandleFunc("GET /api/v1/account/export", h.export)
	mux.HandleFunc("POST /api/v1/account/erase", h.erase)
}

type privacyHandlers struct {
	*API
	svc *privacy.Service
}

// export answers a zip: data.json and the caller's PDFs.
func (h *privacyHandlers) export(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	zip, err := h.svc.Export(r.Context(), h.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="teleconsult-export.zip"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", fmt.Sprint(len(zip)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(zip)
}

// erase erases the caller's account; the password must have been entered
// again in the last minutes (POST /api/v1/account/reauth).
func (h *privacyHandlers) erase(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	if err := h.requireRecentAuth(r); err != nil {
		writeError(w, r, err)
		return
	}
	out, err := h.svc.Erase(r.Context(), h.actor(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: h.sessionCookieName(), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: h.secureCookies(), SameSite: http.SameSiteLaxMode})
	writeJSON(w, http.StatusOK, map[string]any{"status": "erased", "cancelled_appointments": out.Cancelled,
		"documents_kept_for_the_law": out.Held})
}
