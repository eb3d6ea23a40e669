package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"teleconsult/auth"
	"teleconsult/store"
)

// The operator adds a practitioner and a pharmacy from the admin page:
// a field the server refuses is marked and named; what is created shows
// in the lists (and the practitioner in the public directory); failed
// webhooks show beside the outbox, with their reason.
func TestAdminDirectoryPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.srv.Auth.Create(ctx, auth.RoleAdmin, "admin@example.org", password, "Admin", "fr"); err != nil {
		t.Fatal(err)
	}
	if err := store.RecordWebhookFailure(ctx, e.srv.DB.Pool, "evt_e2e_1", "payment_intent.succeeded", "payments: stripe unavailable"); err != nil {
		t.Fatal(err)
	}
	admin := e.browser("admin")
	admin.login("admin@example.org")
	admin.waitJS("admin forms", `location.pathname === '/admin' && !document.querySelector('#new-practitioner').hidden && !document.querySelector('#new-pharmacy').hidden && document.querySelectorAll('#p-specialty option').length > 3`, 15*time.Second)
	admin.waitJS("failed webhook listed", `document.querySelector('#webhooks-rows').textContent.includes('evt_e2e_1')`, 10*time.Second)
	if row := admin.text("#webhooks-rows"); !strings.Contains(row, "stripe unavailable") || !strings.Contains(row, "payment_intent.succeeded") {
		t.Errorf("the webhook row reads %q", row)
	}

	// A password the server refuses (too common): the field is marked,
	// focused, and the message says what to correct, in French.
	admin.fill("#p-name", "Dr Louise Garnier")
	admin.fill("#p-email", "louise.garnier@example.org")
	admin.fill("#p-password", "1234567890")
	admin.do("choose a specialty", setValue("#p-specialty", "dermatology"))
	admin.fill("#p-rpps", "10001234567")
	admin.fill("#p-address", "4 rue Victor Hugo")
	admin.fill("#p-postcode", "69002")
	admin.fill("#p-city", "Lyon")
	admin.click(`#practitioner-form button[type=submit]`)
	admin.waitJS("password refused", `document.querySelector('#p-password').getAttribute('aria-invalid') === 'true' && !document.querySelector('#practitioner-msg').hidden`, 10*time.Second)
	if msg := admin.text("#practitioner-msg"); !strings.Contains(msg, "mot de passe") {
		t.Errorf("the refusal reads %q", msg)
	}
	if eval[string](admin, `document.activeElement.id`) != "p-password" {
		t.Error("the refused field does not have the focus")
	}
	admin.fill("#p-password", password)
	admin.click(`#practitioner-form button[type=submit]`)
	admin.waitJS("practitioner listed", `document.querySelector('#practitioners-rows').textContent.includes('louise.garnier@example.org')`, 10*time.Second)
	if admin.text("#practitioner-msg") == "" || eval[bool](admin, `document.querySelector('#p-password').hasAttribute('aria-invalid')`) {
		t.Error("no confirmation, or the field still marked, after the creation")
	}
	// The same email again: 409, said in French.
	admin.fill("#p-name", "Dr Louise Garnier")
	admin.fill("#p-email", "louise.garnier@example.org")
	admin.fill("#p-password", password)
	admin.fill("#p-rpps", "10001234567")
	admin.fill("#p-address", "4 rue Victor Hugo")
	admin.fill("#p-postcode", "69002")
	admin.fill("#p-city", "Lyon")
	admin.click(`#practitioner-form button[type=submit]`)
	admin.waitJS("email taken", `document.querySelector('#practitioner-msg').classList.contains('error') && !document.querySelector('#practitioner-msg').hidden`, 10*time.Second)
	if msg := admin.text("#practitioner-msg"); !strings.Contains(msg, "existe déjà") {
		t.Errorf("a second account with the email reads %q", msg)
	}

	admin.fill("#ph-name", "Pharmacie des Brotteaux")
	admin.fill("#ph-address", "8 boulevard des Brotteaux")
	admin.fill("#ph-postcode", "69006")
	admin.fill("#ph-city", "Lyon")
	admin.fill("#ph-phone", "04 78 00 00 00")
	admin.click(`#pharmacy-form button[type=submit]`)
	admin.waitJS("pharmacy listed", `document.querySelector('#pharmacies-rows').textContent.includes('Pharmacie des Brotteaux')`, 10*time.Second)
	admin.screenshot("admin-directory", true)

	// Patients find both.
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	found := eval[string](pat, `Promise.all([fetch('/api/v1/practitioners?specialty=dermatology&place=Lyon').then((r) => r.text()), fetch('/api/v1/pharmacies?city=Lyon').then((r) => r.text())]).then((a) => a.join(' '))`)
	if !strings.Contains(found, "Louise Garnier") || !strings.Contains(found, "Brotteaux") {
		t.Errorf("the directory answers %s", found)
	}
}

// A signed-in patient switches the site to English from the header: the
// account's language follows, and the next email is in English; back to
// French from the account page, the next one is in French.
func TestAccountLanguageFollowsSwitch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	language := func() string {
		return eval[string](pat, `fetch('/api/v1/me').then((r) => r.json()).then((m) => m.language)`)
	}
	if l := language(); l != "fr" {
		t.Fatalf("a patient signing up in French has language %q", l)
	}
	// nextEmail asks for a password reset and returns the subject of the
	// email rendered for it (held: the test server has no SMTP server).
	resets := func() []store.OutboxMessage {
		msgs, err := store.ListOutbox(context.Background(), e.srv.DB.Pool, "", 50)
		if err != nil {
			t.Fatal(err)
		}
		var out []store.OutboxMessage
		for _, m := range msgs {
			if m.Kind == "password.reset" && m.Status != "pending" && m.Status != "sending" {
				out = append(out, m)
			}
		}
		return out // newest first
	}
	nextEmail := func() string {
		t.Helper()
		before := len(resets())
		eval[int](pat, `fetch('/api/v1/password/forgot', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({email: 'camille@example.org'})}).then((r) => r.status)`)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if rs := resets(); len(rs) > before {
				return rs[0].Subject
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatal("no password reset email rendered")
		return ""
	}

	pat.open("/account")
	pat.waitJS("account page", `document.querySelector('#lang-form')`, 10*time.Second)
	pat.click(`.langs a[hreflang=en]`)
	pat.waitJS("page in English", `document.documentElement.lang === 'en'`, 10*time.Second)
	if l := language(); l != "en" {
		t.Fatalf("after the switch the account's language is %q", l)
	}
	if s := nextEmail(); s != "Reset your password" {
		t.Errorf("the email after switching to English is titled %q", s)
	}

	pat.waitJS("language form", `document.querySelector('#language')`, 10*time.Second)
	pat.do("choose French", setValue("#language", "fr"))
	pat.click(`#lang-form button[type=submit]`)
	pat.waitJS("page in French", `document.documentElement.lang === 'fr'`, 10*time.Second)
	if l := language(); l != "fr" {
		t.Fatalf("after the account page the language is %q", l)
	}
	if s := nextEmail(); s == "Reset your password" || s == "" {
		t.Errorf("the email after switching back to French is titled %q", s)
	}
	pat.screenshot("account-language", false)
}

// setValue chooses an option of a <select> as a user would (change event).
func setValue(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), value)
}
