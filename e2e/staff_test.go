package e2e

import (
	"context"
	"encoding/base32"
	"strings"
	"testing"
	"time"

	"teleconsult/auth"
	"teleconsult/server"
)

// A practitioner's first login sets up two-factor login in the page (key,
// first code, recovery codes shown once); the next login asks for a code.
func TestStaffTwoFactorLogin(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(c *server.Config) { c.MFARoles = nil })
	if _, err := e.srv.Auth.Create(context.Background(), auth.RolePractitioner, "dr.roux@example.org", password, "Dr Claire Roux", "fr"); err != nil {
		t.Fatal(err)
	}
	pro := e.browser("practitioner")
	pro.open("/login")
	pro.fill("#email", "dr.roux@example.org")
	pro.fill("#password", password)
	pro.click(`#login-form button[type=submit]`)
	pro.waitJS("set-up step", `!document.querySelector('#setup').hidden && document.querySelector('#secret').textContent.length > 10`, 10*time.Second)
	pro.screenshot("login-2fa-setup", true)
	secret := decodeSecret(t, pro.text("#secret"))
	pro.fill("#first-code", auth.TOTPCode(secret, time.Now()))
	pro.click(`#enable-form button[type=submit]`)
	pro.waitJS("recovery codes", `!document.querySelector('#recovery').hidden && document.querySelectorAll('#recovery-codes li').length > 0`, 10*time.Second)
	pro.click("#continue")
	pro.waitJS("agenda", `location.pathname === '/pro/agenda' && !document.querySelector('#agenda').hasAttribute('aria-busy')`, 10*time.Second)
	if msg := pro.text("#msg"); msg != "" {
		t.Fatalf("agenda after two-factor set-up shows %q", msg)
	}

	// Next time: password, then a code.
	pro.click("#logout")
	pro.waitJS("logged out", `location.pathname === '/'`, 10*time.Second)
	pro.open("/login")
	pro.fill("#email", "dr.roux@example.org")
	pro.fill("#password", password)
	pro.click(`#login-form button[type=submit]`)
	pro.waitJS("code step", `!document.querySelector('#totp-form').hidden`, 10*time.Second)
	pro.fill("#code", "000000")
	pro.click(`#totp-form button[type=submit]`)
	pro.waitJS("wrong code refused", `!document.querySelector('#msg').hidden`, 10*time.Second)
	// The code of the next period: the first one was used at set-up.
	pro.fill("#code", auth.TOTPCode(secret, time.Now().Add(30*time.Second)))
	pro.click(`#totp-form button[type=submit]`)
	pro.waitJS("agenda", `location.pathname === '/pro/agenda'`, 10*time.Second)
}

func decodeSecret(t *testing.T, s string) []byte {
	t.Helper()
	s = strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
	b, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		t.Fatalf("secret %q: %v", s, err)
	}
	return b
}

// The pharmacist's and the admin's pages load for their roles, and a
// patient who opens them is told they are not for them.
func TestStaffPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.pharmacy("pharma@example.org")
	if _, err := e.srv.Auth.Create(ctx, auth.RoleAdmin, "admin@example.org", password, "Admin", "fr"); err != nil {
		t.Fatal(err)
	}

	pharma := e.browser("pharmacist")
	pharma.login("pharma@example.org")
	pharma.waitJS("pharmacy page", `location.pathname === '/pharmacy' && !document.querySelector('#inbox').hasAttribute('aria-busy')`, 10*time.Second)
	pharma.screenshot("pharmacy", true)
	if msg := pharma.text("#msg"); msg != "" {
		t.Errorf("pharmacy page shows %q", msg)
	}

	admin := e.browser("admin")
	admin.login("admin@example.org")
	admin.waitJS("admin page", `location.pathname === '/admin' && !document.querySelector('#outbox').hidden`, 10*time.Second)
	admin.screenshot("admin", true)
	if msg := admin.text("#msg"); msg != "" {
		t.Errorf("admin page shows %q", msg)
	}

	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	for _, path := range []string{"/pharmacy", "/admin", "/pro/agenda"} {
		pat.open(path)
		pat.waitJS("refusal on "+path, `document.querySelector('main .alert.warn')`, 10*time.Second)
	}
}
