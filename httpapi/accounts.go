package httpapi

import (
	"net/http"
	"time"

	"teleconsult/auth"
	"teleconsult/problem"
	"teleconsult/store"
)

func (a *API) accountRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/signup", a.signup)
	mux.HandleFunc("POST /api/v1/login", a.login)
	mux.HandleFunc("POST /api/v1/logout", a.logout)
	mux.HandleFunc("GET /api/v1/me", a.me)
	mux.HandleFunc("PATCH /api/v1/me", a.patchMe)
	a.adminRoutes(mux)
}

// accountLanguages are the languages an account may choose: those of the
// web catalogues (web/i18n), in which notify also writes its messages.
var accountLanguages = map[string]bool{"fr": true, "en": true}

// ErrLanguage is a language the service does not speak.
var ErrLanguage = problem.New(problem.Invalid, "unknown_language", "language must be fr or en")

// accountJSON is an account as the API shows it: never a password hash.
type accountJSON struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	Language string `json:"language"`
}

func toAccountJSON(acct *auth.Account) accountJSON {
	return accountJSON{ID: acct.ID, Email: acct.Email, Name: acct.Name, Role: acct.Role, Language: acct.Language}
}

func (a *API) signup(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		Name     string `json:"name"`
		Language string `json:"language"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	var miss []string
	for _, f := range []struct{ name, v string }{{"email", in.Email}, {"password", in.Password}, {"name", in.Name}} {
		if f.v == "" {
			miss = append(miss, f.name)
		}
	}
	if len(miss) > 0 {
		writeError(w, r, missing(miss...))
		return
	}
	acct, err := a.Auth.Signup(r.Context(), in.Email, in.Password, in.Name, in.Language)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toAccountJSON(&acct))
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if in.Email == "" || in.Password == "" {
		writeError(w, r, missing("email", "password"))
		return
	}
	token, acct, err := a.Auth.Login(r.Context(), in.Email, in.Password, a.clientIP(r), r.UserAgent())
	if err != nil {
		writeError(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: a.sessionCookieName(), Value: token, Path: "/",
		HttpOnly: true, Secure: a.secureCookies(), SameSite: http.SameSiteLaxMode,
		Expires: time.Now().Add(auth.DefaultConfig.SessionMax),
	})
	out := struct {
		accountJSON
		MFA string `json:"mfa,omitempty"` // "required" or "setup": the next step of the login
	}{accountJSON: toAccountJSON(&acct)}
	if a.Auth.MFARequired(&acct) {
		out.MFA = "required"
		if !acct.TOTPEnabled {
			out.MFA = "setup"
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	_, token := a.session(r)
	if token == "" {
		writeError(w, r, auth.ErrNoSession)
		return
	}
	if err := a.Auth.Logout(r.Context(), token); err != nil {
		writeError(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: a.sessionCookieName(), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: a.secureCookies(), SameSite: http.SameSiteLaxMode})
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) me(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toAccountJSON(acct))
}

// patchMe changes the signed-in account's settings: {"language": "en"},
// the language of its emails and text messages from now on.
func (a *API) patchMe(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var in struct {
		Language *string `json:"language"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if in.Language == nil {
		writeError(w, r, missing("language"))
		return
	}
	if !accountLanguages[*in.Language] {
		writeError(w, r, ErrLanguage.Withf("language must be fr or en, not %q", *in.Language))
		return
	}
	if err := store.SetAccountLanguage(r.Context(), a.DB.Pool, acct.ID, *in.Language); err != nil {
		writeError(w, r, err)
		return
	}
	out := toAccountJSON(acct)
	out.Language = *in.Language
	writeJSON(w, http.StatusOK, out)
}
