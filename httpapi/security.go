package httpapi

import (
	"net/http"
	"time"

	"teleconsult/audit"
	"teleconsult/auth"
	"teleconsult/store"
)

func (a *API) securityRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/login/totp", a.loginTOTP)
	mux.HandleFunc("POST /api/v1/account/totp/setup", a.totpSetup)
	mux.HandleFunc("POST /api/v1/account/totp/enable", a.totpEnable)
	mux.HandleFunc("POST /api/v1/account/totp/disable", a.totpDisable)
	mux.HandleFunc("POST /api/v1/account/reauth", a.reauth)
	mux.HandleFunc("POST /api/v1/account/password", a.changePassword)
	mux.HandleFunc("GET /api/v1/account/sessions", a.listSessions)
	mux.HandleFunc("DELETE /api/v1/account/sessions/{id}", a.revokeSession)
	mux.HandleFunc("POST /api/v1/password/forgot", a.forgotPassword)
	mux.HandleFunc("POST /api/v1/password/reset", a.resetPassword)
	mux.HandleFunc("GET /api/v1/account/access-log", a.accessLog)
}

type codeBody struct {
	Code string `json:"code"`
}

// loginTOTP completes a login with the code from the authenticator app
// (or a recovery code).
func (a *API) loginTOTP(w http.ResponseWriter, r *http.Request) {
	acct, err := a.sessionAccount(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var in codeBody
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if in.Code == "" {
		writeError(w, r, missing("code"))
		return
	}
	_, token := a.session(r)
	if err := a.Auth.VerifySecondFactor(r.Context(), acct, token, in.Code, a.clientIP(r)); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toAccountJSON(acct))
}

// totpSetup starts enrolment: a new secret, shown once, for the app.
func (a *API) totpSetup(w http.ResponseWriter, r *http.Request) {
	acct, err := a.sessionAccount(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Someone holding only a password cannot replace an enrolled factor.
	if acct.TOTPEnabled {
		if _, err := a.account(r); err != nil {
			writeError(w, r, err)
			return
		}
	}
	secret, url, err := a.Auth.BeginTOTP(r.Context(), acct)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"secret": secret, "otpauth_url": url})
}

// totpEnable finishes enrolment with a first code and returns the
// recovery codes, shown once.
func (a *API) totpEnable(w http.ResponseWriter, r *http.Request) {
	acct, err := a.sessionAccount(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var in codeBody
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if in.Code == "" {
		writeError(w, r, missing("code"))
		return
	}
	_, token := a.session(r)
	codes, err := a.Auth.ConfirmTOTP(r.Context(), acct, token, in.Code)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"recovery_codes": codes})
}

func (a *API) totpDisable(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.requireRecentAuth(r); err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.Auth.DisableTOTP(r.Context(), acct); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// reauth unlocks sensitive actions for a few minutes.
func (a *API) reauth(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var in struct {
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	_, token := a.session(r)
	if err := a.Auth.Reauthenticate(r.Context(), acct, token, in.Password, a.clientIP(r)); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// requireRecentAuth refuses a sensitive action unless the password was
// entered in the last few minutes.
func (a *API) requireRecentAuth(r *http.Request) error {
	sess, _ := a.session(r)
	if sess == nil {
		return auth.ErrNoSession
	}
	return a.Auth.RecentlyAuthenticated(sess)
}

func (a *API) changePassword(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var in struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if in.Current == "" || in.New == "" {
		writeError(w, r, missing("current_password", "new_password"))
		return
	}
	_, token := a.session(r)
	if err := a.Auth.ChangePassword(r.Context(), acct, token, in.Current, in.New, a.clientIP(r)); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listSessions(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	_, token := a.session(r)
	list, err := a.Auth.Sessions(r.Context(), acct, token)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (a *API) revokeSession(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.Auth.RevokeSessionByID(r.Context(), acct, r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// forgotPassword answers 202 whether or not the email has an account.
func (a *API) forgotPassword(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email string `json:"email"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if in.Email == "" {
		writeError(w, r, missing("email"))
		return
	}
	if err := a.Auth.RequestPasswordReset(r.Context(), in.Email); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "if this email has an account, a reset link is on its way"})
}

func (a *API) resetPassword(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token    string `json:"token"`
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if in.Token == "" || in.Password == "" {
		writeError(w, r, missing("token", "password"))
		return
	}
	if err := a.Auth.ResetPassword(r.Context(), in.Token, in.Password); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// accessLog shows patients who accessed their records: every read and
// write of their health data, and every refused attempt, newest first.
func (a *API) accessLog(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	rows, err := audit.ForSubject(r.Context(), a.DB.Pool, acct.ID, 500)
	if err != nil {
		writeError(w, r, err)
		return
	}
	type entry struct {
		At         time.Time `json:"at"`
		Who        string    `json:"who"`
		Role       string    `json:"role"`
		Action     string    `json:"action"`
		ObjectType string    `json:"object_type"`
		ObjectID   string    `json:"object_id"`
		Outcome    string    `json:"outcome"`
	}
	names := map[string]string{}
	out := make([]entry, 0, len(rows))
	for _, row := range rows {
		who := ""
		if row.ActorID != nil {
			if n, ok := names[*row.ActorID]; ok {
				who = n
			} else if other, err := store.AccountByID(r.Context(), a.DB.Pool, *row.ActorID); err == nil {
				who = other.Name
				names[*row.ActorID] = who
			}
		}
		if row.ActorID != nil && *row.ActorID == acct.ID {
			who = "you"
		}
		out = append(out, entry{At: row.At, Who: who, Role: row.ActorRole, Action: row.Action, ObjectType: row.ObjectType, ObjectID: row.ObjectID, Outcome: row.Outcome})
	}
	writeJSON(w, http.StatusOK, map[string]any{"accesses": out})
}
