package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"teleconsult/auth"
	"teleconsult/store"
)

// The device check of the consultation page: the patient sees their
// camera, chooses among the devices, and the level meter moves with the
// (fake) microphone's sound.
func TestConsultDeviceCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat := e.browser("patient")
	pat.signup("Camille Martin", "camille@example.org")
	id, _ := pat.book(doc, "Contrôle", false, false)
	pat.open("/consult/" + id)
	pat.waitJS("camera preview", `document.querySelector('#preview').videoWidth > 0`, 15*time.Second)
	pat.waitJS("devices listed", `document.querySelectorAll('#camera option').length > 0 && document.querySelectorAll('#microphone option').length > 0`, 10*time.Second)
	pat.waitJS("level meter moves", `Number(document.querySelector('#meter').getAttribute('aria-valuenow')) > 0`, 10*time.Second)
	if got := pat.text("#appt-line"); got == "" {
		t.Error("the page does not say which appointment this is")
	}
	pat.screenshot("consult-check", true)
}

// recordPeerConnections makes every page of the person keep its
// RTCPeerConnections in window.__pcs and its WebSockets in
// window.__sockets, and the blobs it makes URLs for in window.__blobs, so
// that the test can read statistics, cut a socket and read a received
// file (a test hook injected through the DevTools protocol, not part of
// the pages).
func (p *person) recordPeerConnections() {
	p.e.t.Helper()
	const src = `(() => { const Native = window.RTCPeerConnection; if (!Native) return;
		window.__pcs = [];
		window.RTCPeerConnection = function (...args) { const pc = new Native(...args); window.__pcs.push(pc); return pc; };
		window.RTCPeerConnection.prototype = Native.prototype;
		Object.setPrototypeOf(window.RTCPeerConnection, Native);
		const NativeWS = window.WebSocket; window.__sockets = [];
		window.WebSocket = function (...args) { const ws = new NativeWS(...args); window.__sockets.push(ws);
			window.__msgs = window.__msgs || []; const n = window.__sockets.length;
			ws.addEventListener('message', (e) => { if (typeof e.data !== 'string') return;
				if (e.data.startsWith('{"type":"stats"')) { window.__lastStats = e.data; return; }
				let m; try { m = JSON.parse(e.data); } catch { return; } window.__msgs.push(Math.round(performance.now()) + ' ws' + n + ' ' + m.type + (m.participant ? ' ' + m.participant.slice(0, 8) : '') + (m.state ? ' ' + m.state : '') + (m.resumed ? ' resumed' : '')); });
			ws.addEventListener('close', (e) => window.__msgs.push(Math.round(performance.now()) + ' ws' + n + ' closed ' + e.code));
			return ws; };
		window.WebSocket.prototype = NativeWS.prototype;
		Object.setPrototypeOf(window.WebSocket, NativeWS);
		const createURL = URL.createObjectURL; window.__blobs = [];
		URL.createObjectURL = (b) => { window.__blobs.push(b); return createURL(b); }; })();`
	if _, err := chromedp.Call(p.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
		p.e.t.Fatal(err)
	}
}

// framesDecoded sums framesDecoded of the inbound video of every
// peer connection of the page.
const framesDecoded = `(async () => { let n = 0;
	for (const pc of window.__pcs || []) { if (pc.connectionState === 'closed') continue;
		(await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded || 0; }); }
	return n; })()`

// remoteSoundAndPicture is true when the main video plays, unmuted, a
// live audio track and a live video track: the other participant is seen
// and heard.
const remoteSoundAndPicture = `(() => { const r = document.querySelector('#remote'); const s = r.srcObject;
	return !!s && !r.muted && !r.paused && s.getAudioTracks().some((t) => t.readyState === 'live') && s.getVideoTracks().some((t) => t.readyState === 'live'); })()`

// pharmacy creates a pharmacy in Lyon and its pharmacist's account.
func (e *env) pharmacy(email string) {
	e.t.Helper()
	ctx := context.Background()
	ph, err := store.SavePharmacy(ctx, e.srv.DB.Pool, store.Pharmacy{Name: "Pharmacie du Marché", Address: "3 place du Marché", City: "Lyon", Postcode: "69002"})
	if err != nil {
		e.t.Fatal(err)
	}
	acct, err := e.srv.Auth.Create(ctx, auth.RolePharmacist, email, password, "Pharmacie du Marché", "fr")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := store.SetPharmacist(ctx, e.srv.DB.Pool, acct.ID, ph.ID); err != nil {
		e.t.Fatal(err)
	}
}

// Journey 2: the patient joins and waits; the practitioner sees them
// waiting and admits them; each side decodes the other's video; a chat
// message crosses; the practitioner writes, signs and sends a
// prescription; the patient sees it and sends it to a pharmacy, which
// accepts and dispenses it.
func TestJourneyConsultAndPrescription(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	e.pharmacy("pharma@example.org")

	pat := e.browser("patient")
	pat.recordPeerConnections()
	pat.signup("Camille Martin", "camille@example.org")
	// The identity a prescription carries.
	pat.open("/account")
	pat.waitJS("identity form", `!document.querySelector('#identity').hidden`, 10*time.Second)
	pat.fill("#id-birth", "1990-04-12")
	pat.click(`#identity-form button[type=submit]`)
	pat.waitJS("identity saved", `document.querySelector('#identity-msg').classList.contains('ok')`, 10*time.Second)
	patientID := eval[string](pat, `fetch('/api/v1/me').then((r) => r.json()).then((m) => m.id)`)
	id, _ := pat.bookAt(doc, "Fièvre et toux", 0, false, true)

	pro := consult(t, e, doc, pat, id, patientID)

	// The practitioner writes, previews and signs a prescription.
	pro.fill(`#rx-items [name=drug]`, "Amoxicilline")
	pro.fill(`#rx-items [name=strength]`, "500 mg")
	pro.fill(`#rx-items [name=form]`, "gélule")
	pro.fill(`#rx-items [name=dosage]`, "1 gélule matin et soir")
	pro.fill(`#rx-items [name=duration_days]`, "7")
	pro.click("#rx-preview")
	pro.waitJS("draft saved", `!document.querySelector('#rx-sign').hidden && !document.querySelector('#rx-sheet').hidden`, 15*time.Second)
	if sheet := pro.text("#rx-sheet"); !strings.Contains(sheet, "Amoxicilline 500 mg gélule") || !strings.Contains(sheet, "Camille Martin") || !strings.Contains(sheet, "10101010101") {
		t.Errorf("the preview reads %q", sheet)
	}
	pro.screenshot("consult-rx-draft", true)
	// The practitioner opens the draft's PDF: framed in a dialog of the
	// page (the page's CSP and the PDF's allow exactly that), the draft
	// marked as such, never cached.
	pro.click("#rx-show-pdf")
	pro.waitJS("draft PDF shown", `document.querySelector('#rx-dialog').open && document.querySelector('#rx-frame').src.includes('/preview.pdf')`, 15*time.Second)
	draftPDF := `fetch(document.querySelector('#rx-frame').src).then(async (r) => r.status + ' ' + r.headers.get('Content-Type') + ' ' + r.headers.get('Cache-Control') + ' ' + (await r.text()))`
	if got := eval[string](pro, draftPDF); !strings.HasPrefix(got, "200 application/pdf no-store %PDF-") || !strings.Contains(got, "Amoxicilline") ||
		!strings.Contains(got, "BROUILLON") || !strings.Contains(got, "Camille") {
		t.Errorf("the draft's preview is %.80q, want a PDF of the draft marked BROUILLON", got)
	}
	time.Sleep(2 * time.Second) // the viewer draws the page after the frame has loaded
	pro.screenshot("consult-rx-preview-pdf", false)
	pro.click("#rx-dialog-close")
	pro.waitJS("dialog closed", `!document.querySelector('#rx-dialog').open`, 5*time.Second)
	// An edit after the preview takes the sign button away until saved.
	pro.fill(`#rx-items [name=duration_days]`, "8")
	pro.waitJS("sign withdrawn", `document.querySelector('#rx-sign').hidden && !document.querySelector('#rx-msg').hidden`, 5*time.Second)
	pro.click("#rx-preview")
	pro.waitJS("draft saved again", `!document.querySelector('#rx-sign').hidden && document.querySelector('#rx-draft-pdf').href.endsWith('v=2')`, 15*time.Second)
	pro.click("#rx-sign")
	pro.waitJS("signed", `!document.querySelector('#rx-status').hidden && !document.querySelector('#rx-pdf').hidden`, 20*time.Second)
	pdf := eval[string](pro, `fetch(document.querySelector('#rx-pdf').href).then(async (r) => r.headers.get('Content-Type') + ' ' + (await r.text()).slice(0, 5))`)
	if !strings.HasPrefix(pdf, "application/pdf %PDF-") {
		t.Errorf("the signed prescription is %q, want a PDF", pdf)
	}
	if got := eval[string](pro, `fetch(document.querySelector('#rx-draft-pdf').href).then((r) => String(r.status))`); got != "409" {
		t.Errorf("the draft's preview after signing answers %s, want 409", got)
	}
	pro.screenshot("consult-call-practitioner", true)

	// The practitioner ends the consultation; both see it ended.
	eval[bool](pro, `(() => { window.confirm = () => true; return true; })()`)
	pro.click("#end")
	for _, p := range []*person{pat, pro} {
		p.waitJS("ended", `!document.querySelector('#ended').hidden`, 15*time.Second)
	}

	// The patient finds the prescription and sends it to the pharmacy.
	pat.open("/prescriptions")
	pat.waitJS("prescription", `document.querySelectorAll('#list li[data-id]').length === 1`, 15*time.Second)
	if txt := pat.text("#list"); !strings.Contains(txt, "Amoxicilline") {
		t.Errorf("the patient's prescription reads %q", txt)
	}
	number := eval[string](pat, `fetch('/api/v1/prescriptions').then((r) => r.json()).then((d) => (d.results || d.prescriptions || d)[0].number)`)
	code := pat.text("#list li[data-id] code")
	pat.click("#list li[data-id] button.secondary")
	pat.fill("#pharmacy-place", "Lyon")
	pat.click("#pharmacy-search")
	pat.waitJS("pharmacy listed", `document.querySelector('#pharmacies input[name=pharmacy]')`, 10*time.Second)
	pat.click("#send-ok")
	pat.waitJS("sent", `!document.querySelector('#notice').hidden`, 10*time.Second)
	pat.screenshot("prescriptions", true)

	// The pharmacist accepts it by number and access code, and dispenses it.
	ph := e.browser("pharmacist")
	ph.login("pharma@example.org")
	ph.waitJS("inbox", `document.querySelectorAll('#inbox li[data-id]').length === 1`, 15*time.Second)
	ph.fill("#number", number)
	ph.fill("#access", code)
	ph.click(`#accept-form button[type=submit]`)
	ph.waitJS("held", `!document.querySelector('#held').hidden`, 15*time.Second)
	ph.screenshot("pharmacy-held", true)
	ph.click("#dispense")
	ph.waitJS("dispensed", `!document.querySelector('#notice').hidden && document.querySelector('#held').hidden`, 15*time.Second)
	st := eval[string](pat, `fetch('/api/v1/prescriptions').then((r) => r.json()).then((d) => (d.results || d.prescriptions || d)[0].status)`)
	if st != "completed" {
		t.Errorf("after dispensing, the prescription is %q, want completed", st)
	}
}

// consult runs a video consultation of appointment id up to the chat:
// the patient checks their devices and waits; the practitioner sees them
// waiting in the agenda and admits them; each side decodes the other's
// video (getStats) and receives the other's stream; a chat message
// crosses. It returns the practitioner's browser, in the call.
func consult(t *testing.T, e *env, doc *doctor, pat *person, id, patientID string) *person {
	t.Helper()
	// The patient checks their devices and enters the waiting room.
	pat.open("/consult/" + id)
	pat.waitJS("camera preview", `document.querySelector('#preview').videoWidth > 0`, 15*time.Second)
	pat.click("#enter")
	pat.waitJS("waiting room", `!document.querySelector('#room').hidden && document.querySelector('#overlay').textContent.includes("salle d'attente")`, 15*time.Second)
	pat.screenshot("consult-waiting", true)

	// The practitioner sees them waiting and admits them.
	pro := e.browser("practitioner")
	pro.recordPeerConnections()
	pro.login("dr.roux@example.org")
	pro.waitJS("waiting signal", fmt.Sprintf(`!document.querySelector('#waiting').hidden && document.querySelector('#waiting a[href="/consult/%s"]')`, id), 20*time.Second)
	pro.screenshot("agenda-waiting", true)
	pro.click(fmt.Sprintf(`#waiting a[href="/consult/%s"]`, id))
	pro.waitJS("camera preview", `location.pathname.startsWith('/consult/') && document.querySelector('#preview').videoWidth > 0`, 15*time.Second)
	pro.click("#enter")
	pro.waitJS("patient in the waiting list", `document.querySelector('#waiting-list button.admit')`, 15*time.Second)
	pro.click("#waiting-list button.admit")

	// Media flows both ways, and each receives the other's stream.
	for _, p := range []*person{pat, pro} {
		// Generous: on a loaded two-core machine with several browsers
		// the first picture has taken over 20 s.
		p.waitJS("remote video", `document.querySelector('#remote').videoWidth > 0`, 40*time.Second)
		p.waitJS("frames decoded", framesDecoded+` .then((n) => n > 0)`, 20*time.Second)
		p.waitJS("the other's sound and picture playing together", remoteSoundAndPicture, 10*time.Second)
	}
	if got := eval[string](pro, `document.querySelector('#remote').dataset.participant`); got != patientID {
		t.Errorf("the practitioner receives the stream of %q, want the patient %q", got, patientID)
	}
	if got := eval[string](pat, `document.querySelector('#remote').dataset.participant`); got != doc.id {
		t.Errorf("the patient receives the stream of %q, want the practitioner %q", got, doc.id)
	}

	// A chat message crosses.
	pat.fill("#chat-text", "Bonjour docteur")
	pat.click(`#chat-form button[type=submit]`)
	pro.waitJS("chat message", `[...document.querySelectorAll('#chat-log li')].some((li) => li.textContent.includes('Bonjour docteur'))`, 10*time.Second)
	pat.screenshot("consult-call-patient", true)

	return pro
}

// The call on its own, whatever the payments: when the server takes no
// payment, the appointment is confirmed directly in the database
// (journey 2 goes through payment).
// Then the patient's network drops: they see the reconnection, and the
// call goes on; the practitioner shares their screen and sees the
// quality figures; the patient leaves.
func TestConsultCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat := e.browser("patient")
	pat.recordPeerConnections()
	pat.signup("Camille Martin", "camille@example.org")
	patientID := eval[string](pat, `fetch('/api/v1/me').then((r) => r.json()).then((m) => m.id)`)
	id, _ := pat.book(doc, "Fièvre", false, false)
	if eval[string](pat, `document.querySelector('#status-badge').dataset.status`) == "pending_payment" {
		err := store.TransitionAppointment(context.Background(), e.srv.DB.Pool, id, []string{store.StatusPendingPayment}, store.StatusConfirmed, patientID, "e2e: confirmed without payment")
		if err != nil {
			t.Fatal(err)
		}
	}
	pro := consult(t, e, doc, pat, id, patientID)
	pro.waitJS("quality figures", `document.querySelectorAll('#stats dt').length > 0`, 15*time.Second)
	pro.screenshot("consult-call-practitioner", true)

	// A file crosses too (relayed, not stored).
	file := filepath.Join(t.TempDir(), "analyses.txt")
	if err := os.WriteFile(file, []byte("CRP 12 mg/L"), 0o644); err != nil {
		t.Fatal(err)
	}
	pat.do("attach a file", chromedp.SetUploadFiles(chromedp.CSS("#chat-file"), []string{file}))
	pro.waitJS("file received", `[...document.querySelectorAll('#chat-log a.chat-file')].some((a) => a.download === 'analyses.txt')`, 10*time.Second)
	if got := eval[string](pro, `window.__blobs[window.__blobs.length - 1].text()`); got != "CRP 12 mg/L" {
		t.Errorf("the file received reads %q", got)
	}

	// The practitioner shares their screen: the patient sees it beside
	// the camera; stopping withdraws it.
	pro.click("#share")
	pat.waitJS("shared screen", `!document.querySelector('#screen-box').hidden && document.querySelector('#screen').videoWidth > 0`, 20*time.Second)
	pat.screenshot("consult-screen-share", false)
	pro.click("#share")
	pat.waitJS("screen withdrawn", `document.querySelector('#screen-box').hidden`, 20*time.Second)

	// The patient's signalling socket drops: the page reconnects on its
	// own and resumes; media never stopped, and chat works again.
	before := eval[int](pat, `window.__sockets.length`)
	eval[bool](pat, `(() => { window.__sockets[window.__sockets.length - 1].close(); return true; })()`)
	pat.waitJS("a new socket, open", fmt.Sprintf(`window.__sockets.length > %d && window.__sockets[window.__sockets.length - 1].readyState === 1`, before), 15*time.Second)
	pat.waitJS("reconnection notice gone", `document.querySelector('#net').hidden`, 15*time.Second)
	for _, p := range []*person{pat, pro} {
		n := eval[int](p, framesDecoded)
		p.waitJS("frames still decoded", fmt.Sprintf(framesDecoded+` .then((n) => n > %d)`, n), 10*time.Second)
	}
	pat.fill("#chat-text", "Je vous entends de nouveau")
	pat.click(`#chat-form button[type=submit]`)
	pro.waitJS("chat after reconnection", `[...document.querySelectorAll('#chat-log li')].some((li) => li.textContent.includes('de nouveau'))`, 10*time.Second)
	if eval[bool](pro, `document.querySelector('#overlay').textContent.length > 0 && !document.querySelector('#overlay').hidden`) {
		t.Errorf("the practitioner sees %q after the patient's socket came back", pro.text("#overlay"))
	}

	// The patient's media stops (their network went away under WebRTC):
	// the practitioner is told the patient lost their connection.
	eval[bool](pat, `(() => { window.__pcs.forEach((pc) => pc.close()); return true; })()`)
	pro.waitJS("dropped peer message", `document.querySelector('#overlay').textContent.includes('Camille Martin') && !document.querySelector('#overlay').hidden`, 20*time.Second)
	pro.screenshot("consult-peer-dropped", false)

	// The practitioner ends the consultation; both see it ended.
	eval[bool](pro, `(() => { window.confirm = () => true; return true; })()`)
	pro.click("#end")
	for _, p := range []*person{pat, pro} {
		p.waitJS("ended", `!document.querySelector('#ended').hidden`, 15*time.Second)
	}
	pat.screenshot("consult-ended", true)
	pat.open("/appointments/" + id)
	pat.waitJS("completed", `document.querySelector('#status-badge') && document.querySelector('#status-badge').dataset.status === 'completed'`, 15*time.Second)
}
