package signaling_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"teleconsult/auth"
	"teleconsult/loadtest"
	"teleconsult/relay"
	"teleconsult/sfu"
	"teleconsult/signaling"
)

// testHooks records what the server reports.
type testHooks struct {
	mu       sync.Mutex
	waiting  []string
	ended    []string
	chats    []string
	admitted []string
}

func (h *testHooks) Admitted(room string, who auth.JoinClaims) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.admitted = append(h.admitted, room+"/"+who.Participant)
}

func (h *testHooks) Waiting(room string, who auth.JoinClaims) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.waiting = append(h.waiting, room+"/"+who.Participant)
}

func (h *testHooks) Ended(room string, by auth.JoinClaims) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = append(h.ended, room+"/"+by.Participant)
}

func (h *testHooks) Chat(room string, from auth.JoinClaims, text string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.chats = append(h.chats, from.Participant+": "+text)
}

type env struct {
	t      *testing.T
	http   *httptest.Server
	srv    *signaling.Server
	signer *auth.JoinSigner
	hooks  *testHooks
	url    string
}

func loopbackOnly(ip net.IP) bool { return ip.IsLoopback() }

func newEnv(t *testing.T, cfg signaling.Config) *env {
	return newEnvMedia(t, cfg, sfu.Config{})
}

// newEnvMedia is newEnv with an SFU configured by mc (kept on loopback).
func newEnvMedia(t *testing.T, cfg signaling.Config, mc sfu.Config) *env {
	t.Helper()
	mc.IncludeLoopback, mc.IPFilter = true, loopbackOnly
	media, err := sfu.New(mc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Media = media
	e := &env{t: t, signer: auth.NewJoinSigner([]byte("test key test key test key 12345")), hooks: &testHooks{}}
	e.srv = signaling.NewServer(cfg, e.signer, e.hooks)
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/signal", e.srv)
	e.http = httptest.NewServer(mux)
	e.url = "ws" + strings.TrimPrefix(e.http.URL, "http") + "/api/v1/signal"
	t.Cleanup(func() {
		e.http.CloseClientConnections()
		e.srv.Close()
		e.http.Close()
		media.Close()
	})
	return e
}

func (e *env) token(room, who, role string, ttl time.Duration) string {
	tok, err := e.signer.Sign(auth.JoinClaims{Room: room, Participant: who, Name: strings.ToUpper(who[:1]) + who[1:], Role: role, Expires: time.Now().Add(ttl)})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) dial(cfg loadtest.ClientConfig) (*loadtest.Client, error) {
	cfg.SignalURL = e.url
	c, err := loadtest.Dial(ctxT(e.t, 10*time.Second), cfg)
	if err == nil {
		e.t.Cleanup(c.Close)
	}
	return c, err
}

func (e *env) mustDial(cfg loadtest.ClientConfig) *loadtest.Client {
	e.t.Helper()
	c, err := e.dial(cfg)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	return c
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const media = 400_000

// startCall has the practitioner and the patient join room, publish, and
// the practitioner admit the patient.
func (e *env) startCall(room string) (doc, pat *loadtest.Client) {
	t := e.t
	t.Helper()
	doc = e.mustDial(loadtest.ClientConfig{Token: e.token(room, "doc", auth.RolePractitioner, time.Minute), VideoBitrate: media, Audio: true})
	if err := doc.Publish(); err != nil {
		t.Fatal(err)
	}
	pat = e.mustDial(loadtest.ClientConfig{Token: e.token(room, "pat", auth.RolePatient, time.Minute), VideoBitrate: media, Audio: true})
	if err := pat.Publish(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	w, err := doc.Wait(ctx, "waiting")
	if err != nil {
		t.Fatal(err)
	}
	if w.Str("participant") != "pat" {
		t.Fatalf("waiting for %q, want pat", w.Str("participant"))
	}
	if err := doc.Send(map[string]any{"type": "admit", "participant": "pat"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pat.Wait(ctx, "admitted"); err != nil {
		t.Fatal(err)
	}
	return doc, pat
}

func flowing(c *loadtest.Client, from, kind string, min uint64) func() bool {
	return func() bool { return c.From(from, kind).Packets >= min }
}

func TestCallBothWays(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	doc, pat := e.startCall("appt-1")
	for _, x := range []struct {
		c          *loadtest.Client
		from, kind string
	}{{doc, "pat", "video"}, {doc, "pat", "audio"}, {pat, "doc", "video"}, {pat, "doc", "audio"}} {
		waitFor(t, 10*time.Second, x.c.Participant+" receiving "+x.from+" "+x.kind, flowing(x.c, x.from, x.kind, 20))
	}
	for _, c := range []*loadtest.Client{doc, pat} {
		for _, s := range c.Received() {
			if s.Participant == c.Participant {
				t.Errorf("%s received its own %s", c.Participant, s.Kind)
			}
		}
	}
	if v := doc.From("pat", "video"); !v.FirstKeyframe || v.Label != "camera" {
		t.Errorf("first video packet keyframe=%v label=%q; want a keyframe on camera", v.FirstKeyframe, v.Label)
	}
	// The camera's sound and picture come in one stream, as they were
	// published: a page plays them in one element.
	for _, c := range []*loadtest.Client{doc, pat} {
		from := map[*loadtest.Client]string{doc: "pat", pat: "doc"}[c]
		if a, v := c.From(from, "audio").StreamID, c.From(from, "video").StreamID; a == "" || a != v {
			t.Errorf("%s receives %s's audio in stream %q and video in %q; want one stream", c.Participant, from, a, v)
		}
	}
	n := e.srv.Media().Counters()
	if n.ForwardedPackets == 0 || n.Rooms != 1 || n.Participants != 2 {
		t.Errorf("counters = %+v", n)
	}
}

func TestWaitingRoomHoldsMediaUntilAdmitted(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	doc := e.mustDial(loadtest.ClientConfig{Token: e.token("appt-2", "doc", auth.RolePractitioner, time.Minute), VideoBitrate: media, Audio: true})
	if err := doc.Publish(); err != nil {
		t.Fatal(err)
	}
	pat := e.mustDial(loadtest.ClientConfig{Token: e.token("appt-2", "pat", auth.RolePatient, time.Minute), VideoBitrate: media, Audio: true})
	if err := pat.Publish(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	if _, err := doc.Wait(ctx, "waiting"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // both publish meanwhile
	if got := len(doc.Received()) + len(pat.Received()); got != 0 {
		t.Fatalf("%d streams flowed before admission", got)
	}
	e.hooks.mu.Lock()
	if len(e.hooks.waiting) != 1 || e.hooks.waiting[0] != "appt-2/pat" {
		t.Errorf("Waiting hook calls = %v", e.hooks.waiting)
	}
	e.hooks.mu.Unlock()
	// A patient cannot admit anyone: the attempt closes its own socket.
	pat2 := e.mustDial(loadtest.ClientConfig{Token: e.token("appt-2", "pat", auth.RolePatient, time.Minute)})
	_ = pat2.Send(map[string]any{"type": "admit", "participant": "pat"})
	if _, err := pat2.Wait(ctx, "closed"); err != nil {
		t.Fatal(err)
	}
	if ce := new(loadtest.CloseError); !errors.As(pat2.Closed(), &ce) || ce.Code != 4403 {
		t.Fatalf("patient admitting: %v, want close 4403", pat2.Closed())
	}
	// pat2 replaced pat (same participant): rejoin with the publisher.
	pat = e.mustDial(loadtest.ClientConfig{Token: e.token("appt-2", "pat", auth.RolePatient, time.Minute), VideoBitrate: media, Audio: true})
	if err := pat.Publish(); err != nil {
		t.Fatal(err)
	}
	if err := doc.Send(map[string]any{"type": "admit", "participant": "pat"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "doc receiving pat", flowing(doc, "pat", "video", 10))
	waitFor(t, 10*time.Second, "pat receiving doc", flowing(pat, "doc", "video", 10))
}

// TestAdmittedPatientSkipsWaitingRoom: the admission is reported (so it
// is recorded with the room's placement), and a patient whose join token
// says they were admitted, re-joining on another node after theirs
// failed, goes straight into the call.
func TestAdmittedPatientSkipsWaitingRoom(t *testing.T) {
	a := newEnv(t, signaling.Config{})
	a.startCall("appt-adm")
	waitFor(t, 5*time.Second, "the Admitted hook", func() bool {
		a.hooks.mu.Lock()
		defer a.hooks.mu.Unlock()
		return len(a.hooks.admitted) == 1 && a.hooks.admitted[0] == "appt-adm/pat"
	})
	b := newEnv(t, signaling.Config{}) // the node the room moved to
	doc := b.mustDial(loadtest.ClientConfig{Token: b.token("appt-adm", "doc", auth.RolePractitioner, time.Minute), VideoBitrate: media, Audio: true})
	if err := doc.Publish(); err != nil {
		t.Fatal(err)
	}
	tok, err := b.signer.Sign(auth.JoinClaims{Room: "appt-adm", Participant: "pat", Name: "Pat", Role: auth.RolePatient, Expires: time.Now().Add(time.Minute), Admitted: true})
	if err != nil {
		t.Fatal(err)
	}
	pat := b.mustDial(loadtest.ClientConfig{Token: tok, VideoBitrate: media, Audio: true})
	if err := pat.Publish(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "doc receiving pat", flowing(doc, "pat", "video", 10))
	waitFor(t, 10*time.Second, "pat receiving doc", flowing(pat, "doc", "video", 10))
	b.hooks.mu.Lock()
	defer b.hooks.mu.Unlock()
	if len(b.hooks.waiting) != 0 {
		t.Fatalf("an admitted patient went through the waiting room: %v", b.hooks.waiting)
	}
}

func TestRefusedTokens(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	e.startCall("appt-3")
	other := auth.NewJoinSigner([]byte("someone else's key..............."))
	forged, _ := other.Sign(auth.JoinClaims{Room: "appt-3", Participant: "pat", Role: auth.RolePatient, Expires: time.Now().Add(time.Minute)})
	guest, _ := e.signer.Sign(auth.JoinClaims{Room: "appt-3", Participant: "guest-x", Role: auth.RoleGuest, Expires: time.Now().Add(time.Minute)})
	for _, tc := range []struct {
		name, token string
		code        int
	}{
		{"none", "", 4400},
		{"expired", e.token("appt-3", "pat", auth.RolePatient, -time.Second), 4401},
		{"forged", forged, 4401},
		{"second patient", e.token("appt-3", "intruder", auth.RolePatient, time.Minute), 4403},
		{"second practitioner", e.token("appt-3", "doc2", auth.RolePractitioner, time.Minute), 4403},
		{"uninvited guest", guest, 4403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.dial(loadtest.ClientConfig{Token: tc.token})
			var ce *loadtest.CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("dial = %v, want close code %d", err, tc.code)
			}
		})
	}
	// A client that names the room it means to join is refused with a
	// token for another room.
	_, err := e.dial(loadtest.ClientConfig{Room: "appt-3", Token: e.token("appt-other", "pat", auth.RolePatient, time.Minute)})
	var ce *loadtest.CloseError
	if !errors.As(err, &ce) || ce.Code != 4403 {
		t.Fatalf("token for another room = %v, want 4403", err)
	}
	// Without naming it, a token for another room opens its own room,
	// where the callers here do not appear.
	c := e.mustDial(loadtest.ClientConfig{Token: e.token("appt-other", "pat", auth.RolePatient, time.Minute)})
	w, _ := c.Wait(ctxT(t, time.Second), "welcome")
	if peers, _ := w.Raw["peers"].([]any); len(peers) != 0 {
		t.Fatalf("a token for another room sees peers %v", peers)
	}
}

func TestGuestInviteIsOneTime(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	doc, _ := e.startCall("appt-4")
	if err := doc.Send(map[string]any{"type": "invite", "name": "Interpreter"}); err != nil {
		t.Fatal(err)
	}
	inv, err := doc.Wait(ctxT(t, 5*time.Second), "invite")
	if err != nil {
		t.Fatal(err)
	}
	g := e.mustDial(loadtest.ClientConfig{Token: inv.Str("token"), VideoBitrate: media})
	if g.Role != auth.RoleGuest {
		t.Fatalf("guest role = %q", g.Role)
	}
	w, err := doc.Wait(ctxT(t, 5*time.Second), "waiting")
	if err != nil || w.Str("name") != "Interpreter" {
		t.Fatalf("doc not told the guest waits: %v %v", w.Raw, err)
	}
	g.Close()
	time.Sleep(100 * time.Millisecond)
	_, err = e.dial(loadtest.ClientConfig{Token: inv.Str("token")})
	var ce *loadtest.CloseError
	if !errors.As(err, &ce) || ce.Code != 4403 {
		t.Fatalf("second use of the invite = %v, want 4403", err)
	}
}

func TestLateJoinerGetsKeyframe(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	// The patient's camera would send a keyframe only every minute: only
	// the SFU's keyframe request on admission lets the doctor decode.
	pat := e.mustDial(loadtest.ClientConfig{Token: e.token("appt-5", "pat", auth.RolePatient, time.Minute), VideoBitrate: media, KeyframeInterval: time.Minute})
	if err := pat.Publish(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	doc := e.mustDial(loadtest.ClientConfig{Token: e.token("appt-5", "doc", auth.RolePractitioner, time.Minute)})
	if err := doc.Send(map[string]any{"type": "admit", "participant": "pat"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "doc receiving pat's video", flowing(doc, "pat", "video", 1))
	if v := doc.From("pat", "video"); !v.FirstKeyframe {
		t.Fatal("the first forwarded video packet is not a keyframe")
	}
}

func TestChatAndFileAndEnd(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	doc, pat := e.startCall("appt-6")
	ctx := ctxT(t, 5*time.Second)
	if err := pat.Send(map[string]any{"type": "chat", "text": "bonjour docteur"}); err != nil {
		t.Fatal(err)
	}
	m, err := doc.Wait(ctx, "chat")
	if err != nil || m.Str("text") != "bonjour docteur" || m.Str("participant") != "pat" {
		t.Fatalf("chat = %v, %v", m.Raw, err)
	}
	if err := doc.Send(map[string]any{"type": "file", "file": map[string]any{"name": "ordonnance.txt", "mime": "text/plain", "data": "aGVsbG8="}}); err != nil {
		t.Fatal(err)
	}
	f, err := pat.Wait(ctx, "file")
	if err != nil {
		t.Fatal(err)
	}
	if file, _ := f.Raw["file"].(map[string]any); file["data"] != "aGVsbG8=" || file["name"] != "ordonnance.txt" {
		t.Fatalf("file = %v", f.Raw)
	}
	e.hooks.mu.Lock()
	if len(e.hooks.chats) != 1 || e.hooks.chats[0] != "pat: bonjour docteur" {
		t.Errorf("Chat hook = %v", e.hooks.chats)
	}
	e.hooks.mu.Unlock()

	if err := doc.Send(map[string]any{"type": "end"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pat.Wait(ctx, "ended"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "patient socket closed", func() bool { return pat.Closed() != nil })
	e.hooks.mu.Lock()
	if len(e.hooks.ended) != 1 || e.hooks.ended[0] != "appt-6/doc" {
		t.Errorf("Ended hook = %v", e.hooks.ended)
	}
	e.hooks.mu.Unlock()
	_, err = e.dial(loadtest.ClientConfig{Token: e.token("appt-6", "pat", auth.RolePatient, time.Minute)})
	var ce *loadtest.CloseError
	if !errors.As(err, &ce) || ce.Code != 4410 {
		t.Fatalf("joining an ended consultation = %v, want 4410", err)
	}
}

func TestMalformedMessagesCloseOnlyTheSender(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	doc, pat := e.startCall("appt-7")
	for _, tc := range []struct {
		name string
		raw  string
		code int
	}{
		{"not json", "{nope", 4400},
		{"unknown type", `{"type":"dance"}`, 4400},
		{"unknown field", `{"type":"chat","text":"x","admin":true}`, 4400},
		{"wrong type", `{"type":"chat","text":42}`, 4400},
		{"hello twice", `{"type":"hello","version":1,"token":"x"}`, 4409},
		{"answer without offer", `{"type":"answer","pc":"down","sdp":"v=0"}`, 4409},
		{"oversized", `{"type":"chat","text":"` + strings.Repeat("a", 600<<10) + `"}`, 1009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := e.mustDial(loadtest.ClientConfig{Token: e.token("appt-7-"+tc.name, "pat", auth.RolePatient, time.Minute)})
			_ = g.SendRaw([]byte(tc.raw))
			if _, err := g.Wait(ctxT(t, 5*time.Second), "closed"); err != nil {
				t.Fatal(err)
			}
			var ce *loadtest.CloseError
			// gorilla answers an oversized frame itself, with 1009 and no text.
			if !errors.As(g.Closed(), &ce) || ce.Code != tc.code || (ce.Text == "" && ce.Code != 1009) {
				t.Fatalf("closed with %v, want code %d and a reason", g.Closed(), tc.code)
			}
		})
	}
	// The call next door was not affected.
	before := doc.From("pat", "audio").Packets
	waitFor(t, 5*time.Second, "the call going on", flowing(doc, "pat", "audio", before+10))
	if doc.Closed() != nil || pat.Closed() != nil {
		t.Fatalf("call closed: %v %v", doc.Closed(), pat.Closed())
	}
}

func TestSignallingReconnectResumes(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	doc, pat := e.startCall("appt-8")
	waitFor(t, 10*time.Second, "call up", flowing(doc, "pat", "video", 10))
	pat.DropSocket()
	time.Sleep(300 * time.Millisecond)
	// Media keeps flowing while the socket is down.
	n := doc.From("pat", "video").Packets
	waitFor(t, 5*time.Second, "media during the outage", flowing(doc, "pat", "video", n+10))
	// The patient changed the message it wanted to say meanwhile.
	if err := pat.Resume(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	w := mustEvent(t, pat, "welcome")
	if w.Raw["resumed"] != true || w.Str("state") != "admitted" {
		t.Fatalf("welcome after resume = %v", w.Raw)
	}
	if err := pat.Send(map[string]any{"type": "chat", "text": "back"}); err != nil {
		t.Fatal(err)
	}
	if m := mustEvent(t, doc, "chat"); m.Str("text") != "back" {
		t.Fatalf("chat after resume = %v", m.Raw)
	}
	// The practitioner never saw the patient leave.
	for len(doc.Events) > 0 {
		if ev := <-doc.Events; ev.Type == "left" {
			t.Fatalf("practitioner was told the patient left: %v", ev.Raw)
		}
	}
	n = pat.From("doc", "video").Packets
	waitFor(t, 5*time.Second, "media after resume", flowing(pat, "doc", "video", n+10))
}

func TestResumeWindowExpires(t *testing.T) {
	e := newEnv(t, signaling.Config{ResumeWindow: 300 * time.Millisecond})
	doc, pat := e.startCall("appt-9")
	pat.DropSocket()
	if m := mustEvent(t, doc, "left"); m.Str("participant") != "pat" {
		t.Fatalf("left = %v", m.Raw)
	}
}

func mustEvent(t *testing.T, c *loadtest.Client, typ string) loadtest.Event {
	t.Helper()
	ev, err := c.Wait(ctxT(t, 10*time.Second), typ)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestICERestartKeepsCall(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	doc, pat := e.startCall("appt-10")
	waitFor(t, 10*time.Second, "call up", flowing(doc, "pat", "video", 10))
	up0, down0 := pat.RemoteUfrags()
	for _, c := range []*loadtest.Client{pat, doc} {
		if err := c.RestartICE(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "new ICE credentials from the server", func() bool {
		up, down := pat.RemoteUfrags()
		return up != up0 && down != down0 && up != "" && down != ""
	})
	time.Sleep(time.Second)
	for _, c := range []*loadtest.Client{pat, doc} {
		up, down := c.State()
		if up.String() != "connected" || down.String() != "connected" {
			t.Fatalf("%s after ICE restart: up %s, down %s", c.Participant, up, down)
		}
	}
	n1, n2 := doc.From("pat", "video").Packets, pat.From("doc", "video").Packets
	waitFor(t, 5*time.Second, "media after restart", func() bool {
		return doc.From("pat", "video").Packets > n1+10 && pat.From("doc", "video").Packets > n2+10
	})
}

func TestSimulcastLayerFollowsBandwidth(t *testing.T) {
	e := newEnv(t, signaling.Config{StatsInterval: 200 * time.Millisecond})
	room := "appt-11"
	pat := e.mustDial(loadtest.ClientConfig{Token: e.token(room, "pat", auth.RolePatient, time.Minute), VideoBitrate: 1_200_000, Simulcast: true})
	if err := pat.Publish(); err != nil {
		t.Fatal(err)
	}
	doc := e.mustDial(loadtest.ClientConfig{Token: e.token(room, "doc", auth.RolePractitioner, time.Minute)})
	if err := doc.Send(map[string]any{"type": "admit", "participant": "pat"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "video", flowing(doc, "pat", "video", 1))
	// Once the layers' bitrates are measured the receiver gets the top one.
	waitFor(t, 10*time.Second, "top layer", func() bool { return doc.From("pat", "video").Layer == 2 })
	// A receiver whose estimate drops gets the cheapest layer...
	waitFor(t, 10*time.Second, "bottom layer", func() bool {
		_ = doc.SendREMB(100_000)
		return doc.From("pat", "video").Layer == 0
	})
	// ...starting on a keyframe, and the practitioner's stats say so.
	waitFor(t, 5*time.Second, "stats with layer q", func() bool {
		for len(doc.Events) > 0 {
			ev := <-doc.Events
			if ev.Type == "stats" && strings.Contains(fmtJSON(ev.Raw), `"layer":"q"`) {
				return true
			}
		}
		return false
	})
	// The estimate recovers (REMB expires, no loss): back to the top.
	waitFor(t, 20*time.Second, "top layer again", func() bool { return doc.From("pat", "video").Layer == 2 })
}

func fmtJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRelayOnlyPeerConnectsThroughTURN(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	turnSrv, err := relay.New(relay.Config{Secret: "turn secret", ListenUDP: "127.0.0.1:0", ListenTCP: "127.0.0.1:0", PublicIP: "127.0.0.1", RelayBind: "127.0.0.1", PortMin: 41000, PortMax: 41999, AllowedPeers: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	defer turnSrv.Close()
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			room := "appt-turn-" + transport
			var servers []webrtc.ICEServer
			for _, s := range turnSrv.ICEServers("pat", time.Now()) {
				for _, u := range s.URLs {
					if strings.HasSuffix(u, "transport="+transport) {
						servers = append(servers, webrtc.ICEServer{URLs: []string{u}, Username: s.Username, Credential: s.Credential})
					}
				}
			}
			doc := e.mustDial(loadtest.ClientConfig{Token: e.token(room, "doc", auth.RolePractitioner, time.Minute), VideoBitrate: media})
			if err := doc.Publish(); err != nil {
				t.Fatal(err)
			}
			pat := e.mustDial(loadtest.ClientConfig{Token: e.token(room, "pat", auth.RolePatient, time.Minute), VideoBitrate: media, ICEServers: servers, RelayOnly: true})
			if err := pat.Publish(); err != nil {
				t.Fatal(err)
			}
			mustEvent(t, doc, "waiting")
			if err := doc.Send(map[string]any{"type": "admit", "participant": "pat"}); err != nil {
				t.Fatal(err)
			}
			// Generous: relayed DTLS under -race on a busy machine is slow.
			for _, x := range []struct {
				c    *loadtest.Client
				from string
			}{{doc, "pat"}, {pat, "doc"}} {
				deadline := time.Now().Add(30 * time.Second)
				for !flowing(x.c, x.from, "video", 10)() {
					if time.Now().After(deadline) {
						up, down := x.c.State()
						t.Fatalf("%s received %d video packets from %s through the relay (up %s, down %s)", x.c.Participant, x.c.From(x.from, "video").Packets, x.from, up, down)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			if !pat.UsesRelay() {
				t.Fatal("the relay-only patient's selected candidate pair is not relayed")
			}
		})
	}
}

func TestScreenShareIsASecondVideoTrack(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	room := "appt-screen"
	doc := e.mustDial(loadtest.ClientConfig{Token: e.token(room, "doc", auth.RolePractitioner, time.Minute), VideoBitrate: media, Screen: true})
	if err := doc.Publish(); err != nil {
		t.Fatal(err)
	}
	pat := e.mustDial(loadtest.ClientConfig{Token: e.token(room, "pat", auth.RolePatient, time.Minute)})
	mustEvent(t, doc, "waiting")
	if err := doc.Send(map[string]any{"type": "admit", "participant": "pat"}); err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"camera", "screen"} {
		waitFor(t, 10*time.Second, "patient receiving the "+label, func() bool { return pat.FromLabel("doc", label).Packets > 10 })
	}
	if cam, scr := pat.FromLabel("doc", "camera").StreamID, pat.FromLabel("doc", "screen").StreamID; cam == scr {
		t.Errorf("the camera and the screen share stream %q; want a stream each", cam)
	}
}

func TestMetricsCollector(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	doc, _ := e.startCall("appt-metrics")
	waitFor(t, 10*time.Second, "media", flowing(doc, "pat", "video", 10))
	reg := prometheus.NewRegistry()
	reg.MustRegister(signaling.NewCollector(e.srv.Media()))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		m := f.GetMetric()[0]
		if m.GetCounter() != nil {
			got[f.GetName()] = m.GetCounter().GetValue()
		} else {
			got[f.GetName()] = m.GetGauge().GetValue()
		}
	}
	if got["teleconsult_sfu_rooms"] != 1 || got["teleconsult_sfu_participants"] != 2 || got["teleconsult_sfu_forwarded_packets_total"] == 0 || got["teleconsult_sfu_forwarded_bytes_total"] == 0 || got["teleconsult_sfu_plis_total"] == 0 {
		t.Fatalf("metrics = %v", got)
	}
}

func TestEmptyRoomClosesAfterAWhile(t *testing.T) {
	e := newEnv(t, signaling.Config{EmptyRoomTimeout: 200 * time.Millisecond})
	doc, pat := e.startCall("appt-idle")
	for _, c := range []*loadtest.Client{doc, pat} {
		if err := c.Send(map[string]any{"type": "leave"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the room to close", func() bool {
		n := e.srv.Media().Counters()
		return n.Rooms == 0 && n.Participants == 0
	})
	// The appointment was not ended: its participants can come back.
	doc = e.mustDial(loadtest.ClientConfig{Token: e.token("appt-idle", "doc", auth.RolePractitioner, time.Minute)})
	if doc.Role != auth.RolePractitioner {
		t.Fatal("practitioner could not rejoin")
	}
}

func TestStoppedScreenShareIsWithdrawn(t *testing.T) {
	e := newEnv(t, signaling.Config{})
	room := "appt-screen-stop"
	doc := e.mustDial(loadtest.ClientConfig{Token: e.token(room, "doc", auth.RolePractitioner, time.Minute), VideoBitrate: media, Screen: true})
	if err := doc.Publish(); err != nil {
		t.Fatal(err)
	}
	pat := e.mustDial(loadtest.ClientConfig{Token: e.token(room, "pat", auth.RolePatient, time.Minute)})
	mustEvent(t, doc, "waiting")
	if err := doc.Send(map[string]any{"type": "admit", "participant": "pat"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "screen", func() bool { return pat.FromLabel("doc", "screen").Packets > 10 })
	if err := doc.StopScreen(); err != nil {
		t.Fatal(err)
	}
	// The server re-offers the patient's down connection without the screen.
	waitFor(t, 10*time.Second, "an offer without the screen", func() bool {
		for len(pat.Events) > 0 {
			ev := <-pat.Events
			if ev.Type != "offer" {
				continue
			}
			streams, _ := ev.Raw["streams"].(map[string]any)
			labels := fmtJSON(streams)
			if strings.Contains(labels, `"camera"`) && !strings.Contains(labels, `"screen"`) {
				return true
			}
		}
		return false
	})
	n := pat.FromLabel("doc", "camera").Packets
	waitFor(t, 5*time.Second, "camera still flowing", func() bool { return pat.FromLabel("doc", "camera").Packets > n+10 })
}

func TestSingleUDPPortAndPortRange(t *testing.T) {
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	for name, mc := range map[string]sfu.Config{
		"mux":   {UDPMuxPort: port},
		"range": {UDPPortMin: 42000, UDPPortMax: 42100},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnvMedia(t, signaling.Config{}, mc)
			doc, pat := e.startCall("appt-ports")
			waitFor(t, 10*time.Second, "media both ways", func() bool {
				return flowing(doc, "pat", "video", 10)() && flowing(pat, "doc", "video", 10)()
			})
			ports := doc.RemotePorts()
			if len(ports) == 0 {
				t.Fatal("no selected candidate pair")
			}
			for _, p := range ports {
				if name == "mux" && p != port || name == "range" && (p < 42000 || p > 42100) {
					t.Fatalf("server candidate port %d outside the configuration %+v", p, mc)
				}
			}
		})
	}
}
