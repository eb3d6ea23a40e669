package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"teleconsult/server"
	"teleconsult/sfu"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// chromiumPath finds Chromium, installing Debian's package when the test
// runs as root and it is missing (never a browser downloaded by a tool).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getuid() == 0 {
		for _, args := range [][]string{{"apt-get", "update", "-qq"}, {"apt-get", "install", "-y", "-qq", "chromium"}} {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		if p, err := exec.LookPath("chromium"); err == nil {
			return p
		}
	}
	t.Fatal("Chromium is not installed: apt-get install chromium (as root), or run scripts/test-deps.sh")
	return ""
}

// env is the running service and a browser.
type env struct {
	t     *testing.T
	srv   *server.Server
	cfg   server.Config // the service's configuration (another node may share it)
	url   string        // http://127.0.0.1:port
	alloc context.Context
	// nodes are the host:port of the cluster's other nodes, whose
	// signalling the pages may reach.
	nodes []string

	mu     sync.Mutex
	people []*person // every browser context, to describe their calls when a step fails
}

// newEnv starts the service on a fresh database and a headless Chromium.
// Staff log in with a password only; newEnvWith can change the server's
// configuration.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith starts the service with its configuration changed by edit.
func newEnvWith(t *testing.T, edit func(*server.Config)) *env {
	t.Helper()
	return newEnvFlags(t, edit, nil)
}

// newEnvFlags starts the service with its configuration changed by edit,
// and Chromium with extra command-line flags (name -> value).
func newEnvFlags(t *testing.T, edit func(*server.Config), flags map[string]any) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	secret := make([]byte, 32)
	rand.Read(secret)
	logs := &lockedBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := server.Config{
		DatabaseURL:   storetest.NewURL(t),
		BaseURL:       base,
		MasterKeyFile: filepath.Join(t.TempDir(), "master.key"),
		Secret:        secret,
		// Staff two-factor login has its own tests; here staff log in
		// with a password, as an operator may configure.
		MFARoles: map[string]bool{},
		Media:    sfu.Config{IncludeLoopback: true},
		Log:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	srv.Start()
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		if t.Failed() && logs.Len() > 0 {
			t.Logf("server log:\n%s", logs.String())
		}
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// Screen sharing picks the whole screen without asking.
		chromedp.Flag("auto-select-desktop-capture-source", "Entire screen"),
		chromedp.Flag("lang", "fr-FR"),
		chromedp.Flag("accept-lang", "fr-FR,fr"),
	)
	for name, value := range flags {
		opts = append(opts, chromedp.Flag(name, value))
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	// Start the browser once, so that each person's context is a new
	// browser context in it rather than a browser of its own.
	root, cancelRoot := chromedp.NewContext(alloc)
	t.Cleanup(cancelRoot)
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &env{t: t, srv: srv, cfg: cfg, url: base, alloc: root}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
func (l *lockedBuffer) Len() int       { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Len() }

// person is one user's browser context (own cookies) and tab.
type person struct {
	e    *env
	name string
	ctx  context.Context

	mu       sync.Mutex
	requests []string // every URL the tab asked for
	problems []string // exceptions, CSP violations, console errors
	console  []string // the page's console and failed responses, shown when a step fails
}

// browser opens a new browser context for a person.
func (e *env) browser(name string) *person {
	e.t.Helper()
	ctx, cancel := chromedp.NewContext(e.alloc, chromedp.WithNewBrowserContext())
	e.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		e.t.Fatalf("%s: new browser context: %v", name, err)
	}
	p := &person{e: e, name: name, ctx: ctx}
	e.mu.Lock()
	e.people = append(e.people, p)
	e.mu.Unlock()
	err := chromedp.Listen(ctx, func(ev any) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			p.requests = append(p.requests, ev.Request.URL)
		case *network.EventWebSocketCreated:
			p.requests = append(p.requests, ev.URL)
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				text = d.Exception.Description
			}
			p.problems = append(p.problems, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
		case *log.EventEntryAdded:
			if ev.Entry.Source == log.EntrySourceSecurity || strings.Contains(ev.Entry.Text, "Content Security Policy") {
				p.problems = append(p.problems, "security: "+ev.Entry.Text)
			}
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
			}
			s := strings.Join(parts, " ")
			p.console = append(p.console, string(ev.Type)+": "+s)
			if ev.Type == runtime.ConsoleAPICalledTypeError && strings.Contains(s, "Content Security Policy") {
				p.problems = append(p.problems, "console: "+s)
			}
		case *network.EventResponseReceived:
			if ev.Response.Status >= 400 {
				p.console = append(p.console, fmt.Sprintf("HTTP %d %s", ev.Response.Status, ev.Response.URL))
			}
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.check() })
	return p
}

// pdfViewer is the id of Chromium's built-in PDF viewer, which draws a
// PDF shown in a frame (the draft prescription's preview): part of the
// browser, not another origin.
const pdfViewer = "mhjfbmdgcfjbbpaeojofohoefgiehjai"

// check fails the test on a request to another origin, an uncaught
// exception or a CSP violation seen by this person's tab.
func (p *person) check() {
	p.e.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	own, _ := url.Parse(p.e.url)
	for _, raw := range p.requests {
		u, err := url.Parse(raw)
		if err != nil {
			p.e.t.Errorf("%s: unparsable request %q", p.name, raw)
			continue
		}
		switch u.Scheme {
		case "data", "blob", "about", "chrome", "devtools":
			continue
		case "chrome-extension":
			if u.Host == pdfViewer {
				continue
			}
		}
		if u.Host != own.Host && !(u.Scheme == "ws" && slices.Contains(p.e.nodes, u.Host)) {
			p.e.t.Errorf("%s: request to another origin: %s", p.name, raw)
		}
	}
	for _, pr := range p.problems {
		p.e.t.Errorf("%s: %s", p.name, pr)
	}
}

// requestCount is the number of requests recorded so far.
func (p *person) requestCount() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.requests) }

// do runs actions in the person's tab, failing the test on error.
func (p *person) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.e.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.fail(what, err)
	}
}

// fail ends the test with what the page showed, to tell why.
func (p *person) fail(what string, err error) {
	p.e.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('main') ? document.querySelector('main').innerText.slice(0, 1500) : ''`))
	// The page's peer connections, when it recorded them: their state and
	// what their RTP streams carried, to tell a stream that never arrived
	// from one that arrived and did not decode.
	var rtc strings.Builder
	p.e.mu.Lock()
	people := slices.Clone(p.e.people)
	p.e.mu.Unlock()
	for _, q := range people {
		qctx, cancel := context.WithTimeout(q.ctx, 5*time.Second)
		if s, err := chromedp.Run(qctx, chromedp.Evaluate[string](rtcSummary, chromedp.EvalAwaitPromise)); err == nil && s != "" {
			fmt.Fprintf(&rtc, "  %s:\n%s\n", q.name, s)
		}
		cancel()
	}
	p.screenshot("failure-"+p.name, false)
	p.mu.Lock()
	console := strings.Join(p.console, "\n    ")
	problems := strings.Join(p.problems, "\n    ")
	p.mu.Unlock()
	p.e.t.Fatalf("%s: %s: %v\n  at %s\n  page says:\n%s\n  peer connections:\n%s  console and failed requests:\n    %s\n  problems:\n    %s", p.name, what, err, loc, text, rtc.String(), console, problems)
}

// rtcSummary describes each recorded peer connection: its states, the
// candidate pair in use and, per RTP stream, its counters.
const rtcSummary = `(async () => { const out = [];
	for (const [i, pc] of (window.__pcs || []).entries()) {
		out.push('    pc ' + i + ': ' + pc.connectionState + '/' + pc.iceConnectionState + ' signaling ' + pc.signalingState);
		for (const tr of pc.getTransceivers()) out.push('      transceiver mid=' + tr.mid + ' ' + tr.direction + '/' + tr.currentDirection + ' send=' + (tr.sender.track ? tr.sender.track.kind + ':' + tr.sender.track.readyState : '-') + ' recv=' + tr.receiver.track.kind + ':' + tr.receiver.track.readyState + (tr.receiver.track.muted ? ':muted' : ''));
		let stats; try { stats = await pc.getStats(); } catch (e) { continue; }
		stats.forEach((s) => {
			const pick = (...ks) => ks.filter((k) => s[k] !== undefined).map((k) => k + '=' + s[k]).join(' ');
			if (s.type === 'candidate-pair' && s.nominated) out.push('      pair ' + pick('state', 'bytesSent', 'bytesReceived', 'currentRoundTripTime'));
			if (s.type === 'inbound-rtp') out.push('      in ' + s.kind + ' ' + pick('ssrc', 'packetsReceived', 'packetsLost', 'framesReceived', 'framesDecoded', 'keyFramesDecoded', 'pliCount', 'firCount', 'nackCount', 'decoderImplementation'));
			if (s.type === 'outbound-rtp') out.push('      out ' + s.kind + ' ' + pick('ssrc', 'rid', 'packetsSent', 'framesEncoded', 'keyFramesEncoded', 'pliCount', 'firCount', 'nackCount', 'qualityLimitationReason', 'active'));
		});
	}
	const r = document.querySelector('#remote');
	if (r) out.push('    #remote: ' + (r.srcObject ? 'stream ' + r.srcObject.id.slice(0, 8) + ' active=' + r.srcObject.active + ' tracks=' + r.srcObject.getTracks().map((t) => t.kind + ':' + t.readyState).join(',') : 'no stream') + ' videoWidth=' + r.videoWidth + ' participant=' + (r.dataset.participant || '').slice(0, 8));
	if (window.__msgs) out.push('    signalling: ' + window.__msgs.slice(-40).join(' | '));
	if (window.__lastStats) out.push('    the server\'s last stats: ' + window.__lastStats);
	return out.join('\n'); })()`

// open navigates to a path of the service.
func (p *person) open(path string) {
	p.e.t.Helper()
	p.do("open "+path, chromedp.Navigate(p.e.url+path))
}

// waitJS waits until the JavaScript expression (or the promise it gives)
// is true. It evaluates again and again rather than polling inside the
// page, so that it goes on across navigations.
func (p *person) waitJS(what, expr string, timeout time.Duration) {
	p.e.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		// Awaited, so that an expression may be a promise (getStats).
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("(async () => !!(await ("+expr+")))()", chromedp.EvalAwaitPromise))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	if last == nil {
		last = fmt.Errorf("still false after %s: %s", timeout, expr)
	}
	p.fail("waiting for "+what, last)
}

// eval runs JavaScript (awaiting a promise) and decodes its value.
func eval[T any](p *person, expr string) T {
	p.e.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.fail("evaluate "+expr, err)
	}
	return v
}

// text returns the visible text of the first element matching a CSS selector.
func (p *person) text(sel string) string {
	p.e.t.Helper()
	return eval[string](p, fmt.Sprintf(`(document.querySelector(%q) || {innerText: ''}).innerText`, sel))
}

// fill sets an input's value as a user would (typing events included).
func (p *person) fill(sel, value string) {
	p.e.t.Helper()
	p.do("fill "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	// Date and time pickers take keys segment by segment in the browser's
	// locale order: set them as the picker would.
	picker := eval[bool](p, fmt.Sprintf(`(() => { const el = document.querySelector(%q);
		if (['date', 'time', 'datetime-local', 'number'].includes(el.type)) {
			el.value = %q; el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return true; }
		el.value = ''; return false; })()`, sel, value))
	if !picker {
		p.do("fill "+sel, chromedp.SendKeys(chromedp.CSS(sel), value))
	}
}

// click clicks the first visible element matching a CSS selector.
func (p *person) click(sel string) {
	p.e.t.Helper()
	p.do("click "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// Screen sizes of the screenshots: a common phone and a common laptop.
var (
	phone   = [2]int64{390, 844}
	desktop = [2]int64{1366, 768}
)

// screenshot writes the current page at phone and desktop sizes (or only
// at the current size) to out/screenshots/<name>-<size>.png.
func (p *person) screenshot(name string, bothSizes bool) {
	p.e.t.Helper()
	dir := filepath.Join("..", "out", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.e.t.Log(err)
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	shoot := func(suffix string) {
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			p.e.t.Logf("screenshot %s: %v", name, err)
			return
		}
		os.WriteFile(filepath.Join(dir, name+suffix+".png"), buf, 0o644)
	}
	if !bothSizes {
		shoot("")
		return
	}
	p.audit(name)
	for _, s := range []struct {
		suffix string
		size   [2]int64
		mobile bool
	}{{"-phone", phone, true}, {"-desktop", desktop, false}} {
		opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
		if s.mobile {
			opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
		} else {
			opts = []chromedp.EmulateViewportOption{chromedp.EmulateLandscape}
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(s.size[0], s.size[1], opts...)); err != nil {
			p.e.t.Logf("viewport: %v", err)
			return
		}
		// Let the layout settle (fonts, media, charts).
		time.Sleep(300 * time.Millisecond)
		shoot(s.suffix)
		if s.mobile {
			// Nothing may stick out sideways on a phone.
			over := eval[string](p, `(() => { const w = document.documentElement.clientWidth; const out = [];
				for (const el of document.querySelectorAll('body *')) { const r = el.getBoundingClientRect();
				  if (r.width && r.right > w + 1 && getComputedStyle(el).position !== 'fixed' && !el.closest('.table-wrap, nav, .nav')) out.push(el.tagName + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : '') + ' ' + Math.round(r.right)); }
				return out.slice(0, 5).join(', '); })()`)
			if over != "" {
				p.e.t.Errorf("%s at phone size: elements overflow the screen: %s", name, over)
			}
		}
	}
	chromedp.Do(ctx, chromedp.EmulateViewport(desktop[0], desktop[1], chromedp.EmulateLandscape))
}

// audit checks what a screen reader and a keyboard need on the page:
// every visible form control has a label, every button and link a name,
// every image a text alternative (empty for decoration), and a focused
// control shows a visible focus ring.
func (p *person) audit(name string) {
	p.e.t.Helper()
	problems := eval[[]string](p, `(() => {
		const out = [];
		const visible = (el) => el.offsetParent !== null || getComputedStyle(el).position === 'fixed';
		const named = (el) => (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.textContent.trim() || el.getAttribute('title') || (el.querySelector('img[alt]:not([alt=""])'))) ;
		for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
			if (!visible(el)) continue;
			const labelled = (el.id && document.querySelector('label[for="' + el.id + '"]')) || el.closest('label') || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
			if (!labelled) out.push('unlabelled ' + el.tagName.toLowerCase() + (el.name ? '[name=' + el.name + ']' : ''));
		}
		for (const el of document.querySelectorAll('button, a[href]')) {
			if (visible(el) && !named(el)) out.push('nameless ' + el.tagName.toLowerCase() + (el.id ? '#' + el.id : ''));
		}
		for (const el of document.querySelectorAll('img')) {
			if (!el.hasAttribute('alt')) out.push('image without alt: ' + el.src);
		}
		// Text contrast (WCAG 2 AA): 4.5:1, or 3:1 for large text, against
		// the first opaque background behind it. Text over a gradient or
		// video is skipped.
		const rgb = (c) => { const m = c.match(/[\d.]+/g) || []; return m.map(Number); };
		const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
		const seen = new Set();
		for (const el of document.querySelectorAll('body *')) {
			if (!visible(el) || !el.childNodes.length) continue;
			const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
			if (!own) continue;
			const cs = getComputedStyle(el);
			let bg = null, skip = false;
			for (let a = el; a; a = a.parentElement) {
				const acs = getComputedStyle(a);
				if (acs.backgroundImage !== 'none' || a.tagName === 'VIDEO' || a.classList.contains('stage')) { skip = true; break; }
				const c = rgb(acs.backgroundColor);
				if (c.length >= 3 && (c.length < 4 || c[3] > 0.9)) { bg = c; break; }
			}
			if (skip) continue;
			bg = bg || [255, 255, 255];
			const fg = rgb(cs.color);
			const l1 = lum(fg), l2 = lum(bg);
			const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
			const size = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
			const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
			const key = cs.color + '/' + bg.join(',');
			if (ratio < need && !seen.has(key)) {
				seen.add(key);
				out.push('contrast ' + ratio.toFixed(2) + ':1 of "' + el.textContent.trim().slice(0, 30) + '" (' + cs.color + ' on rgb(' + bg.join(',') + '))');
			}
		}
		const target = [...document.querySelectorAll('main button, main a[href], main input, main select')].find(visible);
		if (target) {
			target.focus({ focusVisible: true });
			const cs = getComputedStyle(target);
			if (document.activeElement === target && cs.outlineStyle === 'none' && cs.boxShadow === 'none') out.push('no visible focus on ' + target.tagName.toLowerCase());
			target.blur();
		}
		return out;
	})()`)
	for _, pr := range problems {
		p.e.t.Errorf("%s: accessibility: %s", name, pr)
	}
}

// apiClient is a plain HTTP client with its own session, for setting up
// what a journey needs but does not test (a practitioner's calendar).
type apiClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (e *env) api() *apiClient {
	jar, _ := cookiejar.New(nil)
	return &apiClient{t: e.t, base: e.url, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// call sends a JSON request and decodes the answer into out, failing the
// test when the status is not want.
func (a *apiClient) call(method, path string, body any, want int, out any) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		a.t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// staff creates an account with a staff role and returns its API session.
func (e *env) staff(role, email, name string) *apiClient {
	e.t.Helper()
	if _, err := e.srv.Auth.Create(context.Background(), role, email, password, name, "fr"); err != nil {
		e.t.Fatalf("create %s: %v", role, err)
	}
	c := e.api()
	c.call("POST", "/api/v1/login", map[string]string{"email": email, "password": password}, 200, nil)
	return c
}

// password is every test account's password.
const password = "correct horse battery staple"
