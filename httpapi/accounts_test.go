package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"teleconsult/auth"
)

func countAccounts(t *testing.T, e *testEnv) int {
	var n int
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM accounts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSignup(t *testing.T) {
	e := newEnv(t).start()
	c := e.client()

	var acct map[string]any
	st := c.json("POST", "/api/v1/signup", map[string]string{"email": "Alice@Example.test", "password": "a long enough secret", "name": "Alice Durand"}, &acct)
	if st != http.StatusCreated {
		t.Fatalf("signup: %d", st)
	}
	if acct["email"] != "alice@example.test" || acct["role"] != "patient" || acct["id"] == "" {
		t.Errorf("signup returned %v", acct)
	}
	for k := range acct {
		if strings.Contains(strings.ToLower(k), "password") || strings.Contains(strings.ToLower(k), "hash") {
			t.Errorf("signup response carries %q", k)
		}
	}

	bad := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"duplicate email", `{"email":"alice@example.test","password":"another long secret","name":"A"}`, 409, "email_taken"},
		{"duplicate email other case", `{"email":"ALICE@example.test","password":"another long secret","name":"A"}`, 409, "email_taken"},
		{"malformed json", `{"email":`, 400, "bad_json"},
		{"not json", `email=x`, 400, "bad_json"},
		{"empty body", ``, 400, "bad_json"},
		{"unknown field", `{"email":"b@example.test","password":"a long enough secret","name":"B","role":"admin"}`, 400, "bad_json"},
		{"wrong type", `{"email":"b@example.test","password":1234567890,"name":"B"}`, 400, "bad_json"},
		{"missing password", `{"email":"b@example.test","name":"B"}`, 400, "missing_field"},
		{"missing name", `{"email":"b@example.test","password":"a long enough secret"}`, 400, "missing_field"},
		{"missing email", `{"password":"a long enough secret","name":"B"}`, 400, "missing_field"},
		{"bad email", `{"email":"not-an-email","password":"a long enough secret","name":"B"}`, 400, "invalid_email"},
		{"short password", `{"email":"b@example.test","password":"short","name":"B"}`, 400, "weak_password"},
		{"common password", `{"email":"b@example.test","password":"1234567890","name":"B"}`, 400, "weak_password"},
	}
	before := countAccounts(t, e)
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := c.do("POST", "/api/v1/signup", tc.body)
			if resp.StatusCode != tc.status || errorCode(b) != tc.code {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
			if !strings.Contains(string(b), `"message"`) {
				t.Errorf("error without a message: %s", b)
			}
		})
	}
	if after := countAccounts(t, e); after != before {
		t.Errorf("failed signups wrote accounts: %d -> %d", before, after)
	}
}

func TestLoginMeLogout(t *testing.T) {
	e := newEnv(t).start()
	c := e.client()
	email := randomEmail("bob")
	if st := c.json("POST", "/api/v1/signup", map[string]string{"email": email, "password": testPassword, "name": "Bob"}, nil); st != 201 {
		t.Fatal(st)
	}
	if st := c.json("GET", "/api/v1/me", nil, nil); st != 401 {
		t.Fatalf("me before login: %d", st)
	}
	// Wrong password and unknown email answer the same.
	r1, b1 := c.do("POST", "/api/v1/login", map[string]string{"email": email, "password": "wrong password!"})
	r2, b2 := c.do("POST", "/api/v1/login", map[string]string{"email": randomEmail("nobody"), "password": "wrong password!"})
	if r1.StatusCode != 401 || r2.StatusCode != 401 || string(b1) != string(b2) {
		t.Errorf("wrong credentials: %d %s vs %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
	}

	resp, body := c.do("POST", "/api/v1/login", map[string]string{"email": email, "password": testPassword})
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	var cookie *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "tc_session" {
			cookie = ck
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || len(cookie.Value) < 40 {
		t.Fatalf("session cookie: %+v", cookie)
	}
	if strings.Contains(string(body), cookie.Value) {
		t.Error("login body contains the session token")
	}
	var me map[string]string
	if st := c.json("GET", "/api/v1/me", nil, &me); st != 200 || me["email"] != email || me["role"] != "patient" || me["name"] != "Bob" || me["id"] == "" {
		t.Fatalf("me: %d %v", st, me)
	}
	// The token is stored only as a hash.
	var n int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE token_hash = $1::bytea`, []byte(cookie.Value)).Scan(&n)
	if n != 0 {
		t.Error("session token stored in the clear")
	}

	if resp, _ := c.do("POST", "/api/v1/logout", nil); resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	// The old cookie no longer works, even when presented again.
	old := e.client()
	req, _ := http.NewRequest("GET", e.Srv.URL+"/api/v1/me", nil)
	req.AddCookie(&http.Cookie{Name: "tc_session", Value: cookie.Value})
	r, err := old.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 401 {
		t.Errorf("me with revoked cookie: %d", r.StatusCode)
	}
	if st := c.json("POST", "/api/v1/logout", nil, nil); st != 401 {
		t.Errorf("logout without session: %d", st)
	}

	// Nothing logged carries the password or the token.
	logs := e.Logs.String()
	if strings.Contains(logs, testPassword) || strings.Contains(logs, cookie.Value) {
		t.Error("logs contain a password or a session token")
	}
}

func TestLoginRateLimitPerAccount(t *testing.T) {
	e := newEnv(t).start()
	c, acct := e.user("patient", "Carol")
	_ = c
	attacker := e.client()
	for i := 1; i <= 10; i++ {
		if st := attacker.json("POST", "/api/v1/login", map[string]string{"email": acct.Email, "password": fmt.Sprintf("guess number %d", i)}, nil); st != 401 {
			t.Fatalf("attempt %d: %d", i, st)
		}
	}
	resp, b := attacker.do("POST", "/api/v1/login", map[string]string{"email": acct.Email, "password": "guess number 11"})
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("11th attempt: %d %s retry-after=%q", resp.StatusCode, b, resp.Header.Get("Retry-After"))
	}
	// Even the right password is refused while throttled.
	if st := attacker.json("POST", "/api/v1/login", map[string]string{"email": acct.Email, "password": testPassword}, nil); st != 429 {
		t.Errorf("right password while throttled: %d", st)
	}
}

func TestLoginRateLimitPerIP(t *testing.T) {
	e := newEnv(t)
	cfg := auth.DefaultConfig
	cfg.IPFailures = 5
	e.API.Auth = auth.NewService(e.DB, cfg, nil)
	e.start()
	c := e.client()
	for i := 0; i < 5; i++ {
		c.json("POST", "/api/v1/login", map[string]string{"email": randomEmail("x"), "password": "wrong password!"}, nil)
	}
	resp, _ := c.do("POST", "/api/v1/login", map[string]string{"email": randomEmail("y"), "password": "wrong password!"})
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after 5 failures from one IP: %d", resp.StatusCode)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := auth.DefaultConfig
	e.API.Auth = auth.NewService(e.DB, cfg, clock)
	e.start()

	c, _ := e.user("patient", "Dan")
	advance(cfg.SessionIdle - time.Minute)
	if st := c.json("GET", "/api/v1/me", nil, nil); st != 200 {
		t.Fatalf("active before idle expiry: %d", st)
	}
	// Activity keeps it alive past the idle limit, but not past the
	// absolute one.
	for spent := cfg.SessionIdle - time.Minute; spent+cfg.SessionIdle-time.Minute < cfg.SessionMax; spent += cfg.SessionIdle - time.Minute {
		advance(cfg.SessionIdle - time.Minute)
		if st := c.json("GET", "/api/v1/me", nil, nil); st != 200 {
			t.Fatalf("active session refused at %v: %d", spent, st)
		}
	}
	advance(cfg.SessionIdle - time.Minute)
	if st := c.json("GET", "/api/v1/me", nil, nil); st != 401 {
		t.Errorf("past absolute expiry: %d", st)
	}

	c2, _ := e.user("patient", "Eve")
	advance(cfg.SessionIdle + time.Minute)
	if st := c2.json("GET", "/api/v1/me", nil, nil); st != 401 {
		t.Errorf("idle session accepted: %d", st)
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t).start()
	c := e.client()
	if st := c.json("GET", "/healthz", nil, nil); st != 200 {
		t.Errorf("healthz: %d", st)
	}
	if st := c.json("GET", "/readyz", nil, nil); st != 200 {
		t.Errorf("readyz: %d", st)
	}
	c.json("GET", "/api/v1/me", nil, nil)
	resp, b := c.do("GET", "/metrics", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `teleconsult_http_requests_total{method="GET",route="GET /api/v1/me",status="401"}`) ||
		!strings.Contains(string(b), "teleconsult_db_pool_connections") {
		t.Errorf("metrics: %d\n%s", resp.StatusCode, b)
	}
	e.DB.Close()
	if st := c.json("GET", "/readyz", nil, nil); st != 503 {
		t.Errorf("readyz with the database gone: %d", st)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t).start()
	resp, _ := e.client().do("GET", "/healthz", nil)
	for h, want := range map[string]string{
		"Content-Security-Policy": "frame-ancestors 'none'",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
		"Permissions-Policy":      "camera=(self)",
	} {
		if !strings.Contains(resp.Header.Get(h), want) {
			t.Errorf("%s = %q, want it to contain %q", h, resp.Header.Get(h), want)
		}
	}
	// A cross-site form post is refused (CSRF).
	req, _ := http.NewRequest("POST", e.Srv.URL+"/api/v1/logout", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d", r.StatusCode)
	}
}
