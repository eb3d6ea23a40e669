package signaling_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"teleconsult/auth"
	"teleconsult/signaling"
)

const chromium = "/usr/bin/chromium"

// callPage joins the call with call.js and publishes the fake camera. The
// practitioner's page admits whoever waits. It keeps what it receives in
// window globals for the test to read.
const callPage = `<!doctype html><meta charset="utf-8"><title>call</title>
<body><script type="module">
import { Call } from "/static/js/call.js";
const q = new URLSearchParams(location.search);
window.received = [];
window.decoded = 0;
window.errors = [];
const call = new Call({ signalingUrl: "/api/v1/signal", token: q.get("token") });
window.call = call;
call.addEventListener("waiting", (e) => { if (q.get("admit")) call.admit(e.detail.participant); });
call.addEventListener("error", (e) => window.errors.push(JSON.stringify(e.detail)));
call.addEventListener("reconnected", (e) => { window.resumed = e.detail.resumed; });
call.addEventListener("track", (e) => {
  const d = e.detail;
  window.received.push({ participant: d.participant, label: d.label, kind: d.track.kind, stream: d.stream.id, tracks: d.stream.getTracks().length });
  if (d.track.kind === "video") {
    const v = document.createElement("video");
    v.autoplay = true; v.muted = true; v.playsInline = true; v.srcObject = d.stream;
    document.body.append(v);
  }
});
setInterval(async () => {
  let n = 0;
  (await call.getStats()).down.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") n += s.framesDecoded || 0; });
  window.decoded = n;
}, 200);
const cam = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
await call.connect();
await call.publish(cam);
window.ready = true;
</script>`

func TestBrowsersSeeEachOther(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("Chromium is not installed at %s (apt-get install -y chromium): %v", chromium, err)
	}
	e := newEnv(t, signaling.Config{})
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/signal", e.srv)
	mux.HandleFunc("GET /static/js/call.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, "../web/static/js/call.js")
	})
	mux.HandleFunc("GET /call", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(callPage))
	})
	e.http.Config.Handler = mux

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	page := func(who, role string, admit bool) context.Context {
		c, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		q := url.Values{"token": {e.token("appt-browser", who, role, time.Minute)}}
		if admit {
			q.Set("admit", "1")
		}
		if err := chromedp.Do(c, chromedp.Navigate(e.http.URL+"/call?"+q.Encode())); err != nil {
			t.Fatalf("%s: navigate: %v", who, err)
		}
		return c
	}
	doc := page("doc", auth.RolePractitioner, true)
	if _, err := chromedp.Run(doc, chromedp.Poll[bool](`window.ready === true`, chromedp.WithPollingTimeout(40*time.Second))); err != nil {
		t.Fatalf("practitioner page not ready: %v", err)
	}
	pat := page("pat", auth.RolePatient, false)

	for _, p := range []struct {
		ctx       context.Context
		self, see string
	}{{doc, "doc", "pat"}, {pat, "pat", "doc"}} {
		cond := `window.decoded > 0 && window.received.some(r => r.kind === "video" && r.participant === "` + p.see + `")`
		if _, err := chromedp.Run(p.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(45*time.Second))); err != nil {
			errs, _ := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](`window.errors`))
			t.Fatalf("%s never decoded %s's video: %v (page errors: %v)", p.self, p.see, err, errs)
		}
		own, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`window.received.some(r => r.participant === "`+p.self+`")`))
		if err != nil || own {
			t.Fatalf("%s received its own stream (%v)", p.self, err)
		}
		label, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`window.received.find(r => r.kind === "video").label`))
		if err != nil || label != "camera" {
			t.Fatalf("%s: video label = %q (%v)", p.self, label, err)
		}
		// The camera's sound and picture arrive in one stream.
		same := `(() => { const a = window.received.find(r => r.kind === "audio" && r.participant === "` + p.see + `");
			const v = window.received.find(r => r.kind === "video" && r.participant === "` + p.see + `");
			return !!a && !!v && a.stream === v.stream; })()`
		if _, err := chromedp.Run(p.ctx, chromedp.Poll[bool](same, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
			got, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`JSON.stringify(window.received)`))
			t.Fatalf("%s: %s's audio and video are not in one stream: %s", p.self, p.see, got)
		}
	}

	// The patient's socket drops (4000 stands for a network failure): call.js
	// reconnects and resumes, and the video keeps being decoded.
	before, err := chromedp.Run(pat, chromedp.Evaluate[int](`window.call._ws.close(4000), window.decoded`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(pat, chromedp.Poll[bool](`window.resumed === true && window.decoded > `+strconv.Itoa(before+30), chromedp.WithPollingTimeout(40*time.Second))); err != nil {
		errs, _ := chromedp.Run(pat, chromedp.Evaluate[[]string](`window.errors`))
		t.Fatalf("no resume after a socket drop: %v (page errors: %v)", err, errs)
	}
}
