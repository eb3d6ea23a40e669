package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"teleconsult/store"
)

// startCall books a consultation for a new patient with doc and runs it
// up to both sides decoding each other's video (see consult).
func startCall(t *testing.T, e *env, doc *doctor) (pat, pro *person) {
	t.Helper()
	pat = e.browser("patient")
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
	return pat, consult(t, e, doc, pat, id, patientID)
}

// videoSender is the page's sending camera track: id, label and state.
const videoSender = `(() => { for (const pc of window.__pcs || []) { if (pc.connectionState === 'closed') continue;
	for (const s of pc.getSenders()) if (s.track && s.track.kind === 'video') return s.track.id + '|' + s.track.label + '|' + s.track.readyState; }
	return ''; })()`

// A phone has a front and a back camera: in the call, the patient
// switches camera; the new camera's track replaces the old one in the
// running call (no new offer), the old one is stopped, the self view
// shows the new one, and the practitioner goes on decoding frames.
func TestConsultSwitchCamera(t *testing.T) {
	t.Parallel()
	// Three fake cameras. Chromium makes its second fake camera a Y16
	// (depth) one, which the video encoder cannot send: the third, MJPEG,
	// stands for the phone's other camera.
	e := newEnvFlags(t, nil, map[string]any{"use-fake-device-for-media-stream": "device-count=3"})
	doc := e.doctor("dr.roux@example.org", "Dr Claire Roux")
	pat, pro := startCall(t, e, doc)

	pat.waitJS("switch camera button", `!document.querySelector('#flip').hidden`, 10*time.Second)
	if n := eval[int](pat, `navigator.mediaDevices.enumerateDevices().then((ds) => ds.filter((d) => d.kind === 'videoinput').length)`); n != 3 {
		t.Fatalf("%d cameras, want the 3 fake ones", n)
	}
	before := eval[string](pat, videoSender)
	eval[bool](pat, `(() => { window.__oldTrack = document.querySelector('#self').srcObject.getVideoTracks()[0];
		window.__offers = 0; for (const pc of window.__pcs) { const o = pc.createOffer.bind(pc); pc.createOffer = (...a) => { window.__offers++; return o(...a); }; }
		return true; })()`)
	frames := eval[int](pro, framesDecoded)

	// Keyboard: focus the button and press Enter.
	eval[bool](pat, `(() => { document.querySelector('#flip').focus(); return document.activeElement.id === 'flip'; })()`)
	pat.do("press Enter on switch camera", keyEnter())
	pat.waitJS("sender track replaced", fmt.Sprintf(`%s !== %q && %s.endsWith('|live')`, videoSender, before, videoSender), 15*time.Second)
	after := eval[string](pat, videoSender)
	if label := func(s string) string { return splitN(s, 2)[1] }; label(after) == label(before) {
		t.Errorf("the camera label stayed %q", label(before))
	}
	if st := eval[string](pat, `window.__oldTrack.readyState`); st != "ended" {
		t.Errorf("the old camera track is %q, want ended (stopped)", st)
	}
	if got := eval[string](pat, `document.querySelector('#self').srcObject.getVideoTracks().map((t) => t.id).join(',')`); got != splitN(after, 2)[0] {
		t.Errorf("the self view shows track %q, the call sends %q", got, after)
	}
	if n := eval[int](pat, `window.__offers`); n != 0 {
		t.Errorf("switching camera made %d new offers, want none (replaceTrack)", n)
	}
	if eval[string](pat, `document.activeElement.id`) != "flip" {
		t.Error("the switch camera button lost the keyboard focus")
	}
	// On to the third camera, which the encoder can send.
	pat.click("#flip")
	pat.waitJS("third camera", fmt.Sprintf(`%s.split('|')[1] !== %q && %s.split('|')[1] !== %q`, videoSender, splitN(before, 2)[1], videoSender, splitN(after, 2)[1]), 15*time.Second)
	frames = eval[int](pro, framesDecoded)
	switched := time.Now()
	pro.waitJS("frames still decoded after the switch", fmt.Sprintf(framesDecoded+` .then((n) => n > %d + 30)`, frames), 20*time.Second)
	t.Logf("the practitioner decodes 30 frames of the new camera %v after the switch", time.Since(switched).Round(100*time.Millisecond))
	pat.waitJS("self view plays", `document.querySelector('#self').videoWidth > 0`, 10*time.Second)
	pat.screenshot("consult-switch-camera", true)

	// Once more: back to the first camera.
	pat.click("#flip")
	pat.waitJS("back to the first camera", fmt.Sprintf(`%s.split('|')[1] === %q`, videoSender, splitN(before, 2)[1]), 15*time.Second)

	// The patient's socket drops and the server no longer knows their
	// resume secret (as a restarted node would not): the page asks the
	// join API where the room is, joins afresh there, and the media
	// flows again with the camera chosen last.
	joins := pat.joinRequests()
	pcs := eval[int](pat, `window.__pcs.length`)
	eval[bool](pat, `(() => { const send = WebSocket.prototype.send;
		WebSocket.prototype.send = function (data) { try { const m = JSON.parse(data);
			if (m.type === 'hello' && m.resume) { m.resume = 'forgotten'; data = JSON.stringify(m); } } catch {} return send.call(this, data); };
		window.__sockets[window.__sockets.length - 1].close(); return true; })()`)
	pat.waitJS("frames decoded on new connections", fmt.Sprintf(`%s(%d).then((n) => n > 10)`, framesDecodedSince, pcs), 15*time.Second)
	pro.waitJS("the practitioner decodes the patient again", `document.querySelector('#remote').videoWidth > 0`, 15*time.Second)
	if n := pat.joinRequests(); n != joins+1 {
		t.Errorf("%d join requests after the unknown resume, want %d", n, joins+1)
	}
	if got := eval[string](pat, videoSender); splitN(got, 2)[1] != splitN(before, 2)[1] {
		t.Errorf("after re-joining the page sends %q, want the camera chosen last (%q)", got, before)
	}
}

// joinRequests counts the page's requests to the join API.
func (p *person) joinRequests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, u := range p.requests {
		if strings.HasSuffix(u, "/join") {
			n++
		}
	}
	return n
}

// splitN splits a videoSender answer "id|label|state" into n+1 parts at most.
func splitN(s string, n int) []string {
	parts := strings.SplitN(s, "|", n+1)
	for len(parts) < n+1 {
		parts = append(parts, "")
	}
	return parts
}

// keyEnter presses Enter on the focused element, as a keyboard user does.
func keyEnter() chromedp.Action[chromedp.Void] {
	return chromedp.KeyEvent(kb.Enter)
}
