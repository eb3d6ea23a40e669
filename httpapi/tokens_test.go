package httpapi

import (
	"net/http"
	"testing"
)

// bearer is a client for third-party software holding an API token.
func (e *testEnv) bearer(token string) *client {
	c := e.client()
	c.c.Transport = bearerTransport{token: token}
	return c
}

type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func TestAPITokens(t *testing.T) {
	e := newEnv(t).start()
	doc, _ := e.user("practitioner", "Dr Tok")
	patient, _ := e.user("patient", "Pat")
	otherDoc, _ := e.user("practitioner", "Dr Else")

	var created struct {
		ID     string   `json:"id"`
		Token  string   `json:"token"`
		Scopes []string `json:"scopes"`
	}
	if st := doc.json("POST", "/api/v1/api-tokens", map[string]any{"name": "Logiciel de cabinet", "scopes": []string{"agenda:read"}, "expires_in_days": 30}, &created); st != 201 || created.Token == "" || created.ID == "" {
		t.Fatalf("create: %d %+v", st, created)
	}
	for name, body := range map[string]any{
		"unknown scope": map[string]any{"name": "x", "scopes": []string{"everything"}},
		"no scope":      map[string]any{"name": "x", "scopes": []string{}},
		"no name":       map[string]any{"scopes": []string{"agenda:read"}},
		"too long":      map[string]any{"name": "x", "scopes": []string{"agenda:read"}, "expires_in_days": 1000},
	} {
		if st := doc.json("POST", "/api/v1/api-tokens", body, nil); st != 400 {
			t.Errorf("%s: %d", name, st)
		}
	}
	if st := patient.json("POST", "/api/v1/api-tokens", map[string]any{"name": "x", "scopes": []string{"agenda:read"}}, nil); st != 404 {
		t.Errorf("patient creating a token: %d", st)
	}
	var list struct {
		Tokens []map[string]any `json:"tokens"`
	}
	doc.json("GET", "/api/v1/api-tokens", nil, &list)
	if len(list.Tokens) != 1 || list.Tokens[0]["token"] != nil || list.Tokens[0]["token_hash"] != nil {
		t.Fatalf("list shows secrets or the wrong tokens: %+v", list)
	}
	otherDoc.json("GET", "/api/v1/api-tokens", nil, &list)
	if len(list.Tokens) != 0 {
		t.Fatalf("another practitioner sees the token: %+v", list)
	}

	// A token is not a session: it opens no /api/v1 route.
	third := e.bearer(created.Token)
	if st := third.json("GET", "/api/v1/me", nil, nil); st != 401 {
		t.Errorf("token on /api/v1/me: %d", st)
	}
	if st := e.bearer("tcapi_forged").json("GET", "/api/v1/me", nil, nil); st != 401 {
		t.Errorf("forged token: %d", st)
	}
	// Another practitioner cannot revoke it; its owner can, at once.
	if st := otherDoc.json("DELETE", "/api/v1/api-tokens/"+created.ID, nil, nil); st != 404 {
		t.Errorf("stranger revoking: %d", st)
	}
	if st := doc.json("DELETE", "/api/v1/api-tokens/"+created.ID, nil, nil); st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	resp, b := third.do("GET", "/healthz", nil)
	if resp.StatusCode != 401 || errorCode(b) != "token_invalid" {
		t.Errorf("revoked token: %d %s", resp.StatusCode, b)
	}
}

func TestEnumerationIsSlowedDown(t *testing.T) {
	e := newEnv(t).start()
	attacker, _ := e.user("patient", "Mallory")
	limited := false
	for i := 0; i < 40 && !limited; i++ {
		resp, _ := attacker.do("GET", "/api/v1/account/sessions/x", nil)
		_ = resp
		r2, _ := attacker.do("DELETE", "/api/v1/account/sessions/0000000000000000", nil)
		limited = r2.StatusCode == 429 && r2.Header.Get("Retry-After") != ""
	}
	if !limited {
		t.Fatal("40 guessed ids in a row were never slowed down")
	}
	// Others are not affected.
	c, _ := e.user("patient", "Alice")
	if st := c.json("GET", "/api/v1/me", nil, nil); st != 200 {
		t.Errorf("an innocent caller: %d", st)
	}
}
