package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"teleconsult/store"
)

// The practitioner's pages: the agenda by day and week with the new
// booking, the appointment with its reason, the dashboard's charts, and
// the settings editor (a new consultation type, opening hours, an absence).
func TestPractitionerPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	id, _ := pat.book(doc, "Toux depuis trois jours", false, false)

	pro := e.browser("practitioner")
	pro.login("dr.roux@example.org")
	// The agenda opens on today; late in the evening the first free slot
	// is tomorrow's.
	pro.open("/pro/agenda?date=" + pat.localDay(id))
	pro.waitJS("agenda", fmt.Sprintf(`document.querySelector('#agenda li[data-id=%q]')`, id), 15*time.Second)
	if msg := pro.text("#msg"); msg != "" {
		t.Errorf("the agenda shows %q", msg)
	}
	pro.screenshot("agenda-day", true)
	pro.click("#view-week")
	pro.waitJS("week", fmt.Sprintf(`document.querySelector('.week li[data-id=%q]')`, id), 15*time.Second)
	pro.screenshot("agenda-week", true)

	pro.open("/pro/appointments/" + id)
	pro.waitJS("detail", `document.querySelector('#reason').textContent === 'Toux depuis trois jours' && document.querySelector('#history li')`, 10*time.Second)
	if msg := pro.text("#msg"); msg != "" {
		t.Errorf("the appointment page shows %q", msg)
	}
	pro.screenshot("pro-appointment", true)

	pro.open("/pro/dashboard")
	pro.waitJS("dashboard", `document.querySelectorAll('#kpis .kpi').length === 4 && document.querySelector('#chart-bookings svg')`, 10*time.Second)
	if msg := pro.text("#msg"); msg != "" {
		t.Errorf("the dashboard shows %q", msg)
	}
	pro.screenshot("dashboard", true)
	// Payouts: Stripe onboarding (instant in test mode) comes back here.
	pro.click("#onboard")
	pro.waitJS("back from onboarding", `location.pathname === '/settings/payouts' && !document.querySelector('#payout-notice').hidden`, 15*time.Second)

	pro.open("/pro/settings")
	pro.waitJS("settings", `document.querySelectorAll('#types li').length === 1 && document.querySelectorAll('#hours tr').length === 7`, 10*time.Second)
	// A new in-person type at 50 €.
	pro.fill("#type-name", "Consultation au cabinet")
	eval[bool](pro, `(() => { document.querySelector('#type-mode').value = 'in_person'; return true; })()`)
	pro.fill("#type-duration", "20")
	pro.fill("#type-fee", "50")
	pro.click(`#type-form button[type=submit]`)
	pro.waitJS("two types", `document.querySelectorAll('#types li').length === 2`, 10*time.Second)
	// Monday mornings for it, saved with the rest.
	pro.click("#add-hours")
	eval[bool](pro, `(() => { const r = [...document.querySelectorAll('#hours tr')].pop();
		r.querySelector('[name=type]').selectedIndex = 1; r.querySelector('[name=start]').value = '08:00'; r.querySelector('[name=end]').value = '12:00'; return true; })()`)
	pro.click("#save-hours")
	pro.waitJS("hours saved", `document.querySelectorAll('#hours tr').length === 8 && document.querySelector('#hours-msg').classList.contains('ok')`, 10*time.Second)
	// An absence next month.
	eval[bool](pro, `(() => { const d = new Date(Date.now() + 30 * 86400000); const s = d.toISOString().slice(0, 10);
		document.querySelector('#abs-from').value = s + 'T08:00'; document.querySelector('#abs-to').value = s + 'T18:00'; return true; })()`)
	pro.click(`#absence-form button[type=submit]`)
	pro.waitJS("absence listed", `document.querySelectorAll('#absences li button').length === 1`, 10*time.Second)
	pro.screenshot("settings", true)

	// What the practitioner saved is what patients are offered.
	var types struct {
		Types []struct {
			Name     string `json:"name"`
			Mode     string `json:"mode"`
			FeeCents int    `json:"fee_cents"`
		} `json:"consultation_types"`
	}
	doc.api.call("GET", "/api/v1/practitioners/"+doc.id, nil, 200, &types)
	found := false
	for _, c := range types.Types {
		if c.Name == "Consultation au cabinet" && c.Mode == "in_person" && c.FeeCents == 5000 {
			found = true
		}
	}
	if !found {
		t.Errorf("the new type is not on the public profile: %+v", types.Types)
	}
}

// A patient waiting for a consultation just after midnight is signalled in
// the practitioner's agenda of the evening before: the waiting banner
// looks at the hours around now, not at the day shown. The practitioner's
// browser is put in a time zone whose midnight falls between now and the
// appointment.
func TestWaitingBannerAcrossMidnight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	patientID := eval[string](pat, `fetch('/api/v1/me').then((r) => r.json()).then((m) => m.id)`)
	id, start := pat.bookAt(doc, "Fièvre", 30*time.Minute, false, false)
	err := store.TransitionAppointment(context.Background(), e.srv.DB.Pool, id,
		[]string{store.StatusPendingPayment, store.StatusConfirmed}, store.StatusArrived, patientID, "e2e: in the waiting room")
	if err != nil {
		t.Fatal(err)
	}
	starts, err := time.Parse(time.RFC3339, start)
	if err != nil {
		t.Fatalf("appointment start %q: %v", start, err)
	}
	// Local midnight halfway between now and the appointment (30 minutes
	// away at least): a fixed offset of hours and minutes from UTC.
	midnight := time.Now().Add(time.Until(starts) / 2).UTC().Truncate(time.Minute)
	off := -(time.Duration(midnight.Hour())*time.Hour + time.Duration(midnight.Minute())*time.Minute)
	if off < -12*time.Hour {
		off += 24 * time.Hour
	}
	sign := "+"
	if off < 0 {
		sign, off = "-", -off
	}
	zone := fmt.Sprintf("GMT%s%02d:%02d", sign, int(off.Hours()), int(off.Minutes())%60)
	pro := e.browser("practitioner")
	if _, err := chromedp.Call(pro.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: zone}); err != nil {
		t.Fatal(err)
	}
	pro.login("dr.roux@example.org")
	pro.open("/pro/agenda")
	pro.waitJS("the waiting banner", fmt.Sprintf(`!document.querySelector('#waiting').hidden && document.querySelector('#waiting a[href="/consult/%s"]')`, id), 15*time.Second)
	if eval[bool](pro, fmt.Sprintf(`!!document.querySelector('#agenda li[data-id=%q]')`, id)) {
		t.Errorf("today's agenda (%s) lists the appointment of %s", zone, starts)
	}
}
