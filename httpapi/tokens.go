package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"teleconsult/auth"
)

const keyAPIToken ctxKey = 100

func (a *API) tokenRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/api-tokens", a.createAPIToken)
	mux.HandleFunc("GET /api/v1/api-tokens", a.listAPITokens)
	mux.HandleFunc("DELETE /api/v1/api-tokens/{id}", a.revokeAPIToken)
}

// apiToken returns the API token the request was made with, if any.
func (a *API) apiToken(r *http.Request) *auth.APIToken {
	t, _ := r.Context().Value(keyAPIToken).(*apiCaller)
	if t == nil {
		return nil
	}
	return &t.token
}

type apiCaller struct {
	owner auth.Account
	token auth.APIToken
}

// withAPIToken resolves "Authorization: Bearer tcapi_..." into the
// token and its owner. A bad token is refused at once, whatever the route.
func (a *API) withAPIToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if h == "" {
			next.ServeHTTP(w, r)
			return
		}
		bearer, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			writeError(w, r, auth.ErrTokenInvalid)
			return
		}
		owner, tok, err := a.Auth.AuthenticateAPIToken(r.Context(), strings.TrimSpace(bearer))
		if err != nil {
			// Failed token guesses count against the address's budget.
			a.probes.add("ip:"+a.clientIP(r), time.Now())
			writeError(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), keyAPIToken, &apiCaller{owner: owner, token: tok}))
		next.ServeHTTP(w, r)
	})
}

// tokenOwner returns the practice owner acting through an API token with
// scope, or a logged-in practitioner (who has every scope on their own
// practice). Anyone else is refused.
func (a *API) tokenOwner(r *http.Request, scope string) (*auth.Account, error) {
	if c, _ := r.Context().Value(keyAPIToken).(*apiCaller); c != nil {
		if !c.token.Has(scope) {
			return nil, auth.ErrScope
		}
		return &c.owner, nil
	}
	acct, err := a.account(r)
	if err != nil {
		return nil, err
	}
	if acct.Role != auth.RolePractitioner {
		return nil, auth.ErrScope
	}
	return acct, nil
}

func (a *API) createAPIToken(w http.ResponseWriter, r *http.Request) {
	acct, err := a.accountWithRole(r, auth.RolePractitioner)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.requireRecentAuth(r); err != nil {
		writeError(w, r, err)
		return
	}
	var in struct {
		Name          string   `json:"name"`
		Scopes        []string `json:"scopes"`
		ExpiresInDays int      `json:"expires_in_days"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if in.ExpiresInDays == 0 {
		in.ExpiresInDays = 90
	}
	token, t, err := a.Auth.CreateAPIToken(r.Context(), acct, in.Name, in.Scopes, time.Duration(in.ExpiresInDays)*24*time.Hour)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		auth.APIToken
		Token string `json:"token"`
	}{t, token})
}

func (a *API) listAPITokens(w http.ResponseWriter, r *http.Request) {
	acct, err := a.accountWithRole(r, auth.RolePractitioner)
	if err != nil {
		writeError(w, r, err)
		return
	}
	list, err := a.Auth.APITokens(r.Context(), acct)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": list})
}

func (a *API) revokeAPIToken(w http.ResponseWriter, r *http.Request) {
	acct, err := a.accountWithRole(r, auth.RolePractitioner)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.Auth.RevokeAPIToken(r.Context(), acct, r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
