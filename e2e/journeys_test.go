package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// doctor is a practitioner set up over the API: a profile in Lyon and a
// paid 10-minute video consultation open all day, every day, bookable
// without notice (so that the room of the next slot is open: it opens 15
// minutes before the start).
type doctor struct {
	api    *apiClient
	id     string
	typeID string
	name   string
}

func (e *env) doctor(email, name string) *doctor {
	e.t.Helper()
	c := e.staff("practitioner", email, name)
	// Opening hours run 00:00-23:50 local time: late in the Paris day the
	// next slot would be after midnight, too far ahead for the
	// consultation room (open 15 minutes before), and a slot an hour
	// ahead would be tomorrow's, out of reach of a delay announced for
	// today. From 21:00 Paris time the practitioner works from Tokyo,
	// where it is early morning.
	zone := "Europe/Paris"
	if paris, err := time.LoadLocation(zone); err == nil && time.Now().In(paris).Hour() >= 21 {
		zone = "Asia/Tokyo"
	}
	c.call("PUT", "/api/v1/practitioner/profile", map[string]any{
		"time_zone": zone,
		"specialty": "general_practice", "rpps": "10101010101", "address": "12 rue de la République",
		"city": "Lyon", "postcode": "69002", "latitude": 45.7640, "longitude": 4.8357, "languages": []string{"fr", "en"},
		"min_notice_minutes": 0, "cancel_cutoff_minutes": 5, "phone": "+33 4 00 00 00 00",
	}, 200, nil)
	var ct struct {
		ID string `json:"id"`
	}
	c.call("POST", "/api/v1/practitioner/consultation-types", map[string]any{
		"name": "Téléconsultation", "mode": "video", "duration_minutes": 10, "fee_cents": 2500, "currency": "EUR",
	}, 201, &ct)
	var hours []map[string]any
	for d := 0; d < 7; d++ {
		hours = append(hours, map[string]any{"consultation_type_id": ct.ID, "weekday": d, "start": "00:00", "end": "23:50"})
	}
	c.call("PUT", "/api/v1/practitioner/opening-hours", map[string]any{"opening_hours": hours}, 200, nil)
	var me struct {
		ID string `json:"id"`
	}
	c.call("GET", "/api/v1/me", nil, 200, &me)
	return &doctor{api: c, id: me.ID, typeID: ct.ID, name: name}
}

// signup creates a patient account through the sign-up page.
func (p *person) signup(name, email string) {
	p.e.t.Helper()
	p.open("/signup")
	p.fill("#name", name)
	p.fill("#email", email)
	p.fill("#password", password)
	p.click(`#signup-form button[type=submit]`)
	p.waitJS("signed up", `location.pathname === '/appointments'`, 10*time.Second)
}

// book searches for the doctor from the home page, picks the first free
// slot, books it with a reason, pays on the test checkout page and comes
// back to the confirmed appointment. With mustPay, a booking confirmed
// without the payment step fails the test. It returns the appointment id
// and the slot's start (RFC 3339).
func (p *person) book(doc *doctor, reason string, shots, mustPay bool) (id, start string) {
	p.e.t.Helper()
	return p.bookAt(doc, reason, 0, shots, mustPay)
}

// bookAt books like book, the first slot at least ahead from now.
func (p *person) bookAt(doc *doctor, reason string, ahead time.Duration, shots, mustPay bool) (id, start string) {
	p.e.t.Helper()
	p.open("/")
	p.waitJS("specialties", `document.querySelectorAll('#specialty option').length > 1`, 10*time.Second)
	eval[bool](p, `(() => { document.querySelector('#specialty').value = 'general_practice'; return true; })()`)
	p.fill("#place", "Lyon")
	p.click(`input[name=mode][value=video]`)
	if shots {
		p.screenshot("home-filled", false)
	}
	p.click(`.search-form button[type=submit]`)
	p.waitJS("search results", fmt.Sprintf(`location.pathname === '/search' && [...document.querySelectorAll('#results .result h2')].some((h) => h.textContent.includes(%q))`, doc.name), 15*time.Second)
	if shots {
		p.screenshot("search", true)
	}
	p.click(fmt.Sprintf(`#results .result a[href="/practitioners/%s"]`, doc.id))
	p.waitJS("slots", `document.querySelectorAll('#days .slots button').length > 0`, 15*time.Second)
	// A slot that starts in the next seconds may be past when the booking
	// reaches the server: let it pass, and take the next one.
	const firstIn = `(() => { const b = [...document.querySelectorAll('#days .slots button[data-start]')].find((b) => new Date(b.dataset.start) >= Date.now() + %d);
		return b ? new Date(b.dataset.start) - Date.now() : 1e9; })()`
	if wait := time.Duration(eval[float64](p, fmt.Sprintf(firstIn, ahead.Milliseconds()))) * time.Millisecond; wait < ahead+20*time.Second {
		time.Sleep(wait - ahead + time.Second)
		p.do("reload the slots", chromedp.Reload())
		p.waitJS("slots", `document.querySelectorAll('#days .slots button').length > 0`, 15*time.Second)
	}
	if shots {
		p.screenshot("practitioner", true)
	}
	start = eval[string](p, fmt.Sprintf(`(() => { const b = [...document.querySelectorAll('#days .slots button[data-start]')].find((b) => new Date(b.dataset.start) >= Date.now() + %d);
		b.click(); return b.dataset.start; })()`, ahead.Milliseconds()))
	p.waitJS("booking form", `!document.querySelector('#booking').hidden`, 5*time.Second)
	p.fill("#reason", reason)
	if shots {
		p.screenshot("booking", true)
	}
	p.click("#book")
	// Payment: the booking answers pending_payment with a checkout URL, and
	// the page follows it to the test checkout page of the payments module.
	p.waitJS("checkout page", `!location.pathname.startsWith('/practitioners/')`, 15*time.Second)
	paid := false
	if path := eval[string](p, `location.pathname`); !strings.HasPrefix(path, "/appointments/") {
		if shots {
			p.screenshot("checkout", false)
		}
		p.click(`button[value=pay]`)
		paid = true
	} else if mustPay {
		p.e.t.Fatalf("booking went straight to %s without a payment step: is the payments module wired into the server?", path)
	}
	p.waitJS("back on the appointment", `location.pathname.startsWith('/appointments/') && document.querySelector('#status-badge')`, 15*time.Second)
	if paid {
		// The payment's webhook may land a moment after the browser.
		p.waitJS("confirmed", `document.querySelector('#status-badge').dataset.status === 'confirmed'`, 15*time.Second)
	}
	id = strings.TrimPrefix(eval[string](p, `location.pathname`), "/appointments/")
	return id, start
}

// Journey 1: a patient signs up, searches, books a video consultation,
// pays in test mode and sees it confirmed, with its calendar file.
func TestJourneyBookAndPay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	id, _ := pat.book(doc, "Toux depuis trois jours", true, true)

	if n := pat.text("#notice"); !strings.Contains(n, "confirmé") {
		t.Errorf("confirmation notice %q", n)
	}
	if r := pat.text("#reason"); r != "Toux depuis trois jours" {
		t.Errorf("reason shown %q", r)
	}
	pat.screenshot("appointment-confirmed", true)
	ics := eval[string](pat, fmt.Sprintf(`fetch(document.querySelector('#ics').href).then((r) => r.headers.get('Content-Type') + '\n' + r.text()).then ? fetch(document.querySelector('#ics').href).then(async (r) => r.headers.get('Content-Type') + '\n' + await r.text()) : ''`))
	if !strings.HasPrefix(ics, "text/calendar") || !strings.Contains(ics, "BEGIN:VCALENDAR") {
		t.Errorf("add to calendar gives %.200q", ics)
	}

	// The appointment is in the patient's list, upcoming, with its status.
	pat.open("/appointments")
	pat.waitJS("list", fmt.Sprintf(`document.querySelector('#upcoming li[data-id=%q]')`, id), 10*time.Second)
	if s := pat.text(fmt.Sprintf(`#upcoming li[data-id=%q] .badge`, id)); s != "Confirmé" {
		t.Errorf("status in the list %q", s)
	}
	pat.screenshot("appointments", true)
}

// login logs in through the login page.
func (p *person) login(email string) {
	p.e.t.Helper()
	p.open("/login")
	p.fill("#email", email)
	p.fill("#password", password)
	p.click(`#login-form button[type=submit]`)
	p.waitJS("logged in", `location.pathname !== '/login'`, 10*time.Second)
}

// localDay is the day appointment id starts on in p's browser time zone
// (YYYY-MM-DD), to open the agenda on it: late in the evening the next
// free slot is tomorrow's.
func (p *person) localDay(id string) string {
	p.e.t.Helper()
	return eval[string](p, fmt.Sprintf(`fetch('/api/v1/appointments/%s').then((r) => r.json()).then((a) => { const d = new Date(a.start || a.starts_at);
		return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0'); })`, id))
}

// Journey 3: a patient cancels within the cancellation policy, and the
// slot is offered again.
func TestJourneyCancelFreesSlot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	// A slot an hour ahead: well before the cancellation cut-off.
	id, start := pat.bookAt(doc, "Renouvellement", time.Hour, false, false)
	free := func() bool {
		return eval[bool](pat, fmt.Sprintf(`(async () => {
			const s = new Date(%q); const q = new URLSearchParams({from: new Date(s - 60000).toISOString(), to: new Date(+s + 60000).toISOString(), consultation_type_id: %q});
			const r = await (await fetch('/api/v1/practitioners/%s/slots?' + q)).json();
			return r.slots.some((x) => +new Date(x.start) === +s); })()`, start, doc.typeID, doc.id))
	}
	if free() {
		t.Fatal("the booked slot is still offered")
	}
	pat.open("/appointments/" + id)
	pat.waitJS("cancel form", `!document.querySelector('#change').hidden && !document.querySelector('#cancel-form').hidden`, 10*time.Second)
	pat.fill("#cancel-reason", "Empêchement")
	eval[bool](pat, `(() => { window.confirm = () => true; return true; })()`)
	pat.click("#cancel")
	pat.waitJS("cancelled", `document.querySelector('#status-badge').dataset.status === 'cancelled'`, 10*time.Second)
	pat.screenshot("appointment-cancelled", true)
	if !free() {
		t.Fatal("after cancelling, the slot is not offered again")
	}
	// And the practitioner page shows it to the next patient.
	other := e.browser("other patient")
	other.open(fmt.Sprintf("/practitioners/%s?start=%s", doc.id, start))
	other.waitJS("slot offered", fmt.Sprintf(`[...document.querySelectorAll('#days .slots button[data-start]')].some((b) => +new Date(b.dataset.start) === +new Date(%q))`, start), 10*time.Second)
}

// Journey 4: a patient cannot open another patient's appointment or
// consultation, and learns nothing about it.
func TestJourneyOtherPatientLockedOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	a := e.browser("patient A")
	a.signup("Camille Martin", "camille@example.org")
	id, _ := a.book(doc, "Motif très privé", false, false)

	b := e.browser("patient B")
	b.signup("Louis Bernard", "louis@example.org")
	for _, path := range []string{"/appointments/" + id, "/consult/" + id} {
		b.open(path)
		b.waitJS("refusal on "+path, `!document.querySelector('#msg').hidden && document.querySelector('#msg').textContent.length > 0`, 10*time.Second)
		body := b.text("main")
		for _, secret := range []string{"Motif très privé", "Camille", "Claire Roux"} {
			if strings.Contains(body, secret) {
				t.Errorf("%s shows %q to another patient", path, secret)
			}
		}
		if eval[bool](b, `!!document.querySelector('#preview') && !!document.querySelector('#preview').srcObject`) {
			t.Errorf("%s opened the camera for another patient's consultation", path)
		}
	}
	b.screenshot("appointment-refused", true)
	// The API refuses too, with nothing to tell the two cases apart.
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/appointments/" + id},
		{"POST", "/api/v1/appointments/" + id + "/join"},
		{"POST", "/api/v1/appointments/" + id + "/cancel"},
	} {
		status := eval[int](b, fmt.Sprintf(`fetch(%q, {method: %q, headers: {'Content-Type': 'application/json'}, body: %q === 'POST' ? '{}' : undefined}).then((r) => r.status)`, c.path, c.method, c.method))
		if status != 404 {
			t.Errorf("%s %s by another patient: %d, want 404", c.method, c.path, status)
		}
	}
	// Patient A still has their appointment, untouched.
	a.open("/appointments/" + id)
	a.waitJS("still there", `document.querySelector('#status-badge') && ['confirmed', 'pending_payment'].includes(document.querySelector('#status-badge').dataset.status)`, 10*time.Second)
}

// A patient adds a relative in their account and books for them; the
// appointment and the practitioner's agenda name the relative. The
// practitioner then announces a delay, which the patient sees.
func TestBookForRelativeAndDelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	pat.open("/account")
	pat.waitJS("relatives", `!document.querySelector('#relatives').hidden`, 10*time.Second)
	pat.fill("#given", "Léa")
	pat.fill("#family", "Martin")
	pat.fill("#birth", "2018-06-01")
	pat.click(`#relative-form button[type=submit]`)
	pat.waitJS("relative listed", `document.querySelector('#relatives-list').textContent.includes('Léa Martin')`, 10*time.Second)

	pat.open("/practitioners/" + doc.id)
	pat.waitJS("slots and relatives", `document.querySelectorAll('#days .slots button').length > 0 && document.querySelectorAll('#who option').length === 2`, 15*time.Second)
	eval[bool](pat, `(() => { [...document.querySelectorAll('#days .slots button[data-start]')].find((b) => new Date(b.dataset.start) > Date.now() + 3600e3).click();
		const who = document.querySelector('#who'); who.selectedIndex = 1; return true; })()`)
	pat.click("#book")
	pat.waitJS("appointment", `location.pathname.startsWith('/appointments/') || !location.pathname.startsWith('/practitioners/')`, 15*time.Second)
	if !strings.HasPrefix(eval[string](pat, `location.pathname`), "/appointments/") {
		pat.click(`button[value=pay]`)
		pat.waitJS("appointment", `location.pathname.startsWith('/appointments/')`, 15*time.Second)
	}
	pat.waitJS("for the relative", `document.querySelector('#patient').textContent.includes('Léa Martin')`, 10*time.Second)
	id := strings.TrimPrefix(eval[string](pat, `location.pathname`), "/appointments/")

	pro := e.browser("practitioner")
	pro.login("dr.roux@example.org")
	// The agenda's week is the browser's: open it on the appointment's day,
	// which late on a Sunday evening falls in the next week.
	pro.open("/pro/agenda?view=week&date=" + pat.localDay(id))
	pro.waitJS("relative in the agenda", fmt.Sprintf(`(document.querySelector('li[data-id=%q]') || {textContent: ''}).textContent.includes('Léa Martin')`, id), 15*time.Second)

	// A delay announced today reaches today's appointments.
	pro.open("/pro/appointments/" + id)
	pro.waitJS("detail", `document.querySelector('#patient').textContent.includes('Léa Martin')`, 10*time.Second)
	if eval[bool](pro, `!document.querySelector('#delay-box').hidden`) {
		eval[bool](pro, `(() => { document.querySelector('#delay-minutes').value = '20'; return true; })()`)
		pro.click(`#delay-form button[type=submit]`)
		pro.waitJS("delay announced", `!document.querySelector('#notice').hidden`, 10*time.Second)
		pat.open("/appointments/" + id)
		pat.waitJS("delay shown", `!document.querySelector('#delay').hidden && document.querySelector('#delay').textContent.includes('20')`, 10*time.Second)
	} else {
		t.Log("the appointment is not confirmed (no payment step): the delay part did not run")
	}
}

// A patient moves their appointment to another time: the old slot is
// free again and the new one taken.
func TestJourneyReschedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	id, start := pat.bookAt(doc, "Suivi", time.Hour, false, false)
	pat.open("/appointments/" + id)
	pat.waitJS("change section", `!document.querySelector('#change').hidden && !document.querySelector('#reschedule-box').hidden`, 10*time.Second)
	pat.click("#reschedule-box summary")
	pat.waitJS("new times", `document.querySelectorAll('#reschedule-days button[data-start]').length > 1`, 10*time.Second)
	newStart := eval[string](pat, fmt.Sprintf(`(() => { const b = [...document.querySelectorAll('#reschedule-days button[data-start]')]
		.filter((b) => +new Date(b.dataset.start) !== +new Date(%q) && new Date(b.dataset.start) > Date.now() + 1800e3).pop();
		b.click(); return b.dataset.start; })()`, start))
	pat.waitJS("moved", `!document.querySelector('#notice').hidden && document.querySelector('#reschedule-box').open === false`, 15*time.Second)
	got := eval[string](pat, fmt.Sprintf(`fetch('/api/v1/appointments/%s').then((r) => r.json()).then((a) => a.start)`, id))
	if !sameInstant(got, newStart) {
		t.Fatalf("after rescheduling, the appointment starts at %s, want %s", got, newStart)
	}
	offered := func(at string) bool {
		return eval[bool](pat, fmt.Sprintf(`(async () => {
			const s = new Date(%q); const q = new URLSearchParams({from: new Date(s - 60000).toISOString(), to: new Date(+s + 60000).toISOString(), consultation_type_id: %q});
			const r = await (await fetch('/api/v1/practitioners/%s/slots?' + q)).json();
			return r.slots.some((x) => +new Date(x.start) === +s); })()`, at, doc.typeID, doc.id))
	}
	if !offered(start) {
		t.Error("the old time is not offered again")
	}
	if offered(newStart) {
		t.Error("the new time is still offered")
	}
	pat.screenshot("appointment-rescheduled", false)
}

// sameInstant reports whether two RFC 3339 times are the same instant.
func sameInstant(a, b string) bool {
	ta, err1 := time.Parse(time.RFC3339, a)
	tb, err2 := time.Parse(time.RFC3339, b)
	return err1 == nil && err2 == nil && ta.Equal(tb)
}

// The waiting list: a patient joins it; another cancels; the freed slot
// is offered to the first, who books it from their appointments page.
func TestJourneyWaitlistOffer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	a := e.browser("patient A")
	a.signup("Camille Martin", "camille@example.org")
	id, start := a.bookAt(doc, "Suivi", 2*time.Hour, false, false)

	b := e.browser("patient B")
	b.signup("Louis Bernard", "louis@example.org")
	b.open("/practitioners/" + doc.id)
	b.waitJS("waiting list button", `!document.querySelector('#waitlist').hidden`, 10*time.Second)
	b.click("#waitlist-join")
	b.waitJS("on the list", `document.querySelector('#waitlist-msg').classList.contains('ok')`, 10*time.Second)

	a.open("/appointments/" + id)
	a.waitJS("cancel form", `!document.querySelector('#cancel-form').hidden`, 10*time.Second)
	eval[bool](a, `(() => { window.confirm = () => true; return true; })()`)
	a.click("#cancel")
	a.waitJS("cancelled", `document.querySelector('#status-badge').dataset.status === 'cancelled'`, 10*time.Second)

	b.open("/appointments")
	b.waitJS("offer", `!document.querySelector('#waitlist').hidden && document.querySelector('#waitlist-list a.button')`, 15*time.Second)
	b.screenshot("waitlist-offer", true)
	b.click("#waitlist-list a.button")
	b.waitJS("booking form on the offered slot", `!document.querySelector('#booking').hidden`, 15*time.Second)
	b.click("#book")
	b.waitJS("booked", `!location.pathname.startsWith('/practitioners/')`, 15*time.Second)
	if !strings.HasPrefix(eval[string](b, `location.pathname`), "/appointments/") {
		b.click(`button[value=pay]`)
		b.waitJS("appointment", `location.pathname.startsWith('/appointments/')`, 15*time.Second)
	}
	got := eval[string](b, `fetch('/api/v1/appointments/' + location.pathname.split('/').pop()).then((r) => r.json()).then((x) => x.start)`)
	if !sameInstant(got, start) {
		t.Errorf("patient B booked %s, want the freed slot %s", got, start)
	}
}
