package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// A visitor reads the home page in French, switches to English, signs up
// and lands on their (empty) appointments; logging out brings back the
// visitor's menu. Screenshots of each page at both sizes.
func TestSignupAndLanguages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := e.browser("visitor")
	v.open("/")
	v.waitJS("specialties", `document.querySelectorAll('#specialty option').length > 1`, 10*time.Second)
	if got := eval[string](v, `document.documentElement.lang`); got != "fr" {
		t.Fatalf("home page language %q, want fr (the browser asks for French)", got)
	}
	if h := v.text("h1"); !strings.Contains(h, "médecin") {
		t.Errorf("French heading %q", h)
	}
	v.screenshot("home", true)

	// Switch to English: remembered across pages.
	v.click(`.langs a[lang=en]`)
	v.waitJS("English page", `document.documentElement.lang === 'en'`, 5*time.Second)
	v.open("/signup")
	if got := eval[string](v, `document.documentElement.lang`); got != "en" {
		t.Fatalf("after switching, /signup is in %q", got)
	}
	v.screenshot("signup", true)

	v.fill("#name", "Camille Martin")
	v.fill("#email", "camille@example.org")
	v.fill("#password", password)
	v.click(`#signup-form button[type=submit]`)
	v.waitJS("appointments page", `location.pathname === '/appointments' && !document.querySelector('#upcoming').hasAttribute('aria-busy')`, 10*time.Second)
	if msg := v.text("#msg"); msg != "" {
		t.Errorf("appointments page shows an error: %q", msg)
	}
	if !eval[bool](v, `!document.querySelector('.nav [data-role=patient]').hidden && document.querySelector('.nav [data-role=anonymous]').hidden`) {
		t.Error("the patient's menu is not shown")
	}
	v.screenshot("appointments-empty", true)

	v.open("/account")
	v.waitJS("account", `document.querySelector('#me-email').textContent === 'camille@example.org' && document.querySelectorAll('#sessions-list li .badge.ok').length === 1`, 10*time.Second)
	v.screenshot("account", true)

	v.click("#logout")
	v.waitJS("logged out", `location.pathname === '/' && !document.querySelector('.nav [data-role=anonymous]').hidden`, 10*time.Second)
	v.open("/appointments")
	v.waitJS("redirect to login", `location.pathname === '/login' && location.search.includes('next=%2Fappointments')`, 10*time.Second)
	v.screenshot("login", true)

	// A wrong password shows the server's message, in a live region.
	v.fill("#email", "camille@example.org")
	v.fill("#password", "not the password")
	v.click(`#login-form button[type=submit]`)
	v.waitJS("error message", `document.querySelector('#msg').textContent.length > 0 && !document.querySelector('#msg').hidden`, 10*time.Second)
	if v.requestCount() == 0 {
		t.Fatal("no request recorded: the network log is not working")
	}
}

// "Around me": the browser's position (here set by the test, as a phone
// would give it) finds the practitioners nearby, with their distance.
func TestSearchAroundMe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	v := e.browser("visitor")
	if _, err := chromedp.CallBrowser(v.ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: string(browser.PermissionTypeGeolocation)},
		Setting:    browser.PermissionSettingGranted, Origin: e.url,
		BrowserContextID: chromedp.FromContext(v.ctx).BrowserContextID,
	}); err != nil {
		t.Fatal(err)
	}
	lat, lon, acc := 45.7578, 4.8320, 50.0 // Lyon, Perrache: under a kilometre away
	if _, err := chromedp.Call(v.ctx, emulation.SetGeolocationOverride, emulation.SetGeolocationOverrideParams{Latitude: &lat, Longitude: &lon, Accuracy: &acc}); err != nil {
		t.Fatal(err)
	}
	v.open("/")
	v.click("#near-me")
	v.waitJS("nearby results", fmt.Sprintf(`location.pathname === '/search' && new URLSearchParams(location.search).get('near') && [...document.querySelectorAll('#results .result')].some((r) => r.textContent.includes(%q) && r.textContent.includes('km'))`, doc.name), 15*time.Second)
	v.screenshot("search-near", false)
}
