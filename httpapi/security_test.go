package httpapi

import (
	"context"
	"encoding/base32"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"teleconsult/auth"
)

func totpNow(t *testing.T, secretB32 string, at time.Time) string {
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secretB32)
	if err != nil {
		t.Fatal(err)
	}
	return auth.TOTPCode(secret, at)
}

// mfaEnv is an env whose staff must use two-factor login, on a clock the
// test moves.
func mfaEnv(t *testing.T) (*testEnv, func(time.Duration)) {
	e := newEnv(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e.API.Auth = auth.NewService(e.DB, auth.DefaultConfig, clock)
	e.API.Auth.SetMFA(auth.MFAConfig{Vault: e.API.Vault, Required: auth.DefaultMFARoles})
	e.start()
	return e, func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
}

func TestTOTPRequiredForStaff(t *testing.T) {
	e, advance := mfaEnv(t)
	ctx := context.Background()
	doc, err := e.API.Auth.Create(ctx, "practitioner", randomEmail("doc"), testPassword, "Dr Mfa", "en")
	if err != nil {
		t.Fatal(err)
	}
	c := e.client()
	var login map[string]string
	if st := c.json("POST", "/api/v1/login", map[string]string{"email": doc.Email, "password": testPassword}, &login); st != 200 || login["mfa"] != "setup" {
		t.Fatalf("login: %d %v", st, login)
	}
	// Password alone opens nothing.
	resp, b := c.do("GET", "/api/v1/me", nil)
	if resp.StatusCode != 401 || errorCode(b) != "mfa_setup_required" {
		t.Fatalf("me before set-up: %d %s", resp.StatusCode, b)
	}
	var setup map[string]string
	if st := c.json("POST", "/api/v1/account/totp/setup", nil, &setup); st != 200 || setup["secret"] == "" || !strings.HasPrefix(setup["otpauth_url"], "otpauth://totp/") {
		t.Fatalf("setup: %d %v", st, setup)
	}
	if resp, b := c.do("POST", "/api/v1/account/totp/enable", map[string]string{"code": "000000"}); resp.StatusCode != 401 || errorCode(b) != "bad_code" {
		t.Fatalf("enable with a wrong code: %d %s", resp.StatusCode, b)
	}
	var enabled map[string][]string
	if st := c.json("POST", "/api/v1/account/totp/enable", map[string]string{"code": totpNow(t, setup["secret"], time.Now())}, &enabled); st != 200 || len(enabled["recovery_codes"]) != 10 {
		t.Fatalf("enable: %d %v", st, enabled)
	}
	if st := c.json("GET", "/api/v1/me", nil, nil); st != 200 {
		t.Fatalf("me after enrolment: %d", st)
	}
	// The secret is not stored in the clear.
	var sealed []byte
	e.DB.Pool.QueryRow(ctx, `SELECT totp_secret FROM accounts WHERE id = $1`, doc.ID).Scan(&sealed)
	if strings.Contains(string(sealed), setup["secret"]) {
		t.Error("TOTP secret stored in the clear")
	}

	// A second login needs a code.
	advance(time.Minute)
	c2 := e.client()
	if st := c2.json("POST", "/api/v1/login", map[string]string{"email": doc.Email, "password": testPassword}, &login); st != 200 || login["mfa"] != "required" {
		t.Fatalf("second login: %d %v", st, login)
	}
	if resp, b := c2.do("GET", "/api/v1/account/sessions", nil); resp.StatusCode != 401 || errorCode(b) != "mfa_required" {
		t.Fatalf("API before the code: %d %s", resp.StatusCode, b)
	}
	if resp, b := c2.do("POST", "/api/v1/account/totp/setup", nil); resp.StatusCode != 401 {
		t.Fatalf("re-enrolment with only a password: %d %s", resp.StatusCode, b)
	}
	if st := c2.json("POST", "/api/v1/login/totp", map[string]string{"code": "123456"}, nil); st != 401 {
		t.Fatalf("wrong code: %d", st)
	}
	// Codes already used cannot be replayed.
	code := totpNow(t, setup["secret"], time.Now().Add(time.Minute))
	if st := c2.json("POST", "/api/v1/login/totp", map[string]string{"code": code}, nil); st != 200 {
		t.Fatalf("right code: %d", st)
	}
	c3 := e.client()
	c3.json("POST", "/api/v1/login", map[string]string{"email": doc.Email, "password": testPassword}, nil)
	if st := c3.json("POST", "/api/v1/login/totp", map[string]string{"code": code}, nil); st != 401 {
		t.Fatalf("replayed code: %d", st)
	}
	// A recovery code works once.
	rc := enabled["recovery_codes"][0]
	if st := c3.json("POST", "/api/v1/login/totp", map[string]string{"code": rc}, nil); st != 200 {
		t.Fatalf("recovery code: %d", st)
	}
	c4 := e.client()
	c4.json("POST", "/api/v1/login", map[string]string{"email": doc.Email, "password": testPassword}, nil)
	if st := c4.json("POST", "/api/v1/login/totp", map[string]string{"code": rc}, nil); st != 401 {
		t.Fatalf("recovery code reused: %d", st)
	}
	// Staff cannot turn it off.
	if st := c2.json("POST", "/api/v1/account/totp/disable", nil, nil); st != 403 {
		t.Fatalf("practitioner disabling TOTP: %d", st)
	}
}

func TestTOTPOptionalForPatients(t *testing.T) {
	e, _ := mfaEnv(t)
	c := e.client()
	email := randomEmail("pat")
	c.json("POST", "/api/v1/signup", map[string]string{"email": email, "password": testPassword, "name": "Pat"}, nil)
	var login map[string]string
	if st := c.json("POST", "/api/v1/login", map[string]string{"email": email, "password": testPassword}, &login); st != 200 || login["mfa"] != "" {
		t.Fatalf("patient login: %d %v", st, login)
	}
	if st := c.json("GET", "/api/v1/me", nil, nil); st != 200 {
		t.Fatalf("patient without TOTP: %d", st)
	}
	var setup map[string]string
	c.json("POST", "/api/v1/account/totp/setup", nil, &setup)
	if st := c.json("POST", "/api/v1/account/totp/enable", map[string]string{"code": totpNow(t, setup["secret"], time.Now())}, nil); st != 200 {
		t.Fatalf("patient enable: %d", st)
	}
	c2 := e.client()
	c2.json("POST", "/api/v1/login", map[string]string{"email": email, "password": testPassword}, &login)
	if login["mfa"] != "required" {
		t.Fatalf("patient with TOTP on: %v", login)
	}
	if st := c.json("POST", "/api/v1/account/totp/disable", nil, nil); st != 204 {
		t.Fatalf("patient disable: %d", st)
	}
}

func TestPasswordReset(t *testing.T) {
	e := newEnv(t).start()
	ctx := context.Background()
	old, acct := e.user("patient", "Rita")
	anon := e.client()
	r1, b1 := anon.do("POST", "/api/v1/password/forgot", map[string]string{"email": acct.Email})
	r2, b2 := anon.do("POST", "/api/v1/password/forgot", map[string]string{"email": randomEmail("nobody")})
	if r1.StatusCode != 202 || r2.StatusCode != 202 || string(b1) != string(b2) {
		t.Fatalf("forgot: %d %s / %d %s", r1.StatusCode, b1, r2.StatusCode, b2)
	}
	var token string
	if err := e.DB.Pool.QueryRow(ctx, `SELECT data->>'token' FROM outbox_events WHERE kind = 'password.reset' AND recipient_id = $1`, acct.ID).Scan(&token); err != nil {
		t.Fatalf("no reset message in the outbox: %v", err)
	}
	if st := anon.json("POST", "/api/v1/password/reset", map[string]string{"token": token, "password": "short"}, nil); st != 400 {
		t.Fatalf("weak new password: %d", st)
	}
	if st := anon.json("POST", "/api/v1/password/reset", map[string]string{"token": "forged", "password": "a brand new secret"}, nil); st != 400 {
		t.Fatalf("forged token: %d", st)
	}
	if st := anon.json("POST", "/api/v1/password/reset", map[string]string{"token": token, "password": "a brand new secret"}, nil); st != 204 {
		t.Fatalf("reset: %d", st)
	}
	if st := anon.json("POST", "/api/v1/password/reset", map[string]string{"token": token, "password": "yet another secret"}, nil); st != 400 {
		t.Fatalf("token reused: %d", st)
	}
	if st := old.json("GET", "/api/v1/me", nil, nil); st != 401 {
		t.Errorf("session survived a password reset: %d", st)
	}
	if st := anon.json("POST", "/api/v1/login", map[string]string{"email": acct.Email, "password": "a brand new secret"}, nil); st != 200 {
		t.Errorf("login with the new password: %d", st)
	}
	if strings.Contains(e.Logs.String(), token) {
		t.Error("reset token in the logs")
	}
}

func TestSessionsListAndRevoke(t *testing.T) {
	e := newEnv(t).start()
	laptop, acct := e.user("patient", "Sam")
	phone := e.client()
	phone.json("POST", "/api/v1/login", map[string]string{"email": acct.Email, "password": testPassword}, nil)
	var list struct {
		Sessions []auth.SessionInfo `json:"sessions"`
	}
	if st := laptop.json("GET", "/api/v1/account/sessions", nil, &list); st != 200 || len(list.Sessions) != 2 {
		t.Fatalf("sessions: %d %+v", st, list)
	}
	var other string
	for _, s := range list.Sessions {
		if !s.Current {
			other = s.ID
		}
	}
	intruder, _ := e.user("patient", "Ivy")
	if st := intruder.json("DELETE", "/api/v1/account/sessions/"+other, nil, nil); st != 404 {
		t.Fatalf("revoking another account's session: %d", st)
	}
	if st := phone.json("GET", "/api/v1/me", nil, nil); st != 200 {
		t.Fatal("phone session lost")
	}
	if st := laptop.json("DELETE", "/api/v1/account/sessions/"+other, nil, nil); st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	if st := phone.json("GET", "/api/v1/me", nil, nil); st != 401 {
		t.Errorf("revoked session still works: %d", st)
	}
}

func TestReauthForSensitiveActions(t *testing.T) {
	e, advance := mfaEnv(t)
	c := e.client()
	email := randomEmail("pat")
	c.json("POST", "/api/v1/signup", map[string]string{"email": email, "password": testPassword, "name": "Pat"}, nil)
	c.json("POST", "/api/v1/login", map[string]string{"email": email, "password": testPassword}, nil)
	var setup map[string]string
	c.json("POST", "/api/v1/account/totp/setup", nil, &setup)
	c.json("POST", "/api/v1/account/totp/enable", map[string]string{"code": totpNow(t, setup["secret"], time.Now())}, nil)
	advance(30 * time.Minute)
	resp, b := c.do("POST", "/api/v1/account/totp/disable", nil)
	if resp.StatusCode != http.StatusUnauthorized || errorCode(b) != "reauth_required" {
		t.Fatalf("sensitive action long after login: %d %s", resp.StatusCode, b)
	}
	if st := c.json("POST", "/api/v1/account/reauth", map[string]string{"password": "wrong password!"}, nil); st != 401 {
		t.Fatalf("reauth with a wrong password: %d", st)
	}
	if st := c.json("POST", "/api/v1/account/reauth", map[string]string{"password": testPassword}, nil); st != 204 {
		t.Fatalf("reauth: %d", st)
	}
	if st := c.json("POST", "/api/v1/account/totp/disable", nil, nil); st != 204 {
		t.Fatalf("after reauth: %d", st)
	}
}
