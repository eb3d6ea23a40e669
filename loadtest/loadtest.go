// Package loadtest opens many synthetic 1:1 consultations against a
// running signalling server and reports what a user and an operator care
// about: how long joining takes, how much media arrives, how late, and
// how much server CPU each forwarded stream costs.
//
// Its Client is a Pion participant that speaks signaling/PROTOCOL.md and
// publishes synthetic VP8 and Opus: the SFU forwards RTP without decoding
// it, so payloads only need a correct VP8 payload descriptor (for the
// keyframe logic) and carry their send time for latency measurement.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"

	"teleconsult/auth"
)

// Config describes a load run.
type Config struct {
	// SignalURLs are the nodes' signalling URLs (ws://host/api/v1/signal);
	// room i lives on SignalURLs[i % len]. When a room's node is lost,
	// both its participants join it again on the first URL that answers
	// in an order fixed by the room, so that they meet on the same node.
	SignalURLs []string
	Signer     *auth.JoinSigner // signs both participants' tokens, with the server's key
	Rooms      int              // concurrent 1:1 consultations
	Duration   time.Duration    // measurement window, after everyone joined
	// VideoBitrate per camera in bit/s (default 1.5 Mbit/s, as an HD consult).
	VideoBitrate int
	// Simulcast publishes three layers; such clients do not re-join
	// after a node loss.
	Simulcast  bool
	ICEServers []webrtc.ICEServer
	// ServerPID is the server's process id, whose CPU time is read from
	// /proc; 0 means the server runs in this process, whose whole CPU time
	// (clients included) is counted.
	ServerPID int
	// JoinSpacing spaces room starts (default 20 ms) so joins do not all
	// land in the same instant.
	JoinSpacing time.Duration
	// RoomPrefix names the rooms (default "load-<time>-").
	RoomPrefix string
}

// Report is the outcome of a load run.
type Report struct {
	Rooms, Failed int
	// JoinP50 and JoinP95: socket open to first remote video packet.
	JoinP50, JoinP95 time.Duration
	// DeliveryRatio is packets received over packets sent by the other
	// side during the window (video and audio).
	DeliveryRatio float64
	// LatencyP50 and LatencyP99 are send-to-receive delays of packets
	// during the window (the SFU and the loopback network; no jitter buffer).
	LatencyP50, LatencyP99 time.Duration
	// StreamSeconds is forwarded video streams times window seconds (each
	// consult forwards two cameras, each with its audio).
	StreamSeconds float64
	ServerCPU     time.Duration
	// CPUPerStreamSecond is ServerCPU / StreamSeconds.
	CPUPerStreamSecond time.Duration
	// CPUIncludesClients is true when the server ran in this process.
	CPUIncludesClients bool
	// Interrupted counts the consults whose signalling socket dropped
	// (their node was lost or restarted); Resumed those of them that had
	// media both ways again. ResumeP50 and ResumeMax are the times from
	// the first socket loss to media both ways again.
	Interrupted, Resumed int
	ResumeP50, ResumeMax time.Duration
	Errors               []string
}

// String formats the report for people.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "consults: %d (%d failed)\n", r.Rooms, r.Failed)
	fmt.Fprintf(&b, "join to first video: p50 %v, p95 %v\n", r.JoinP50.Round(time.Millisecond), r.JoinP95.Round(time.Millisecond))
	fmt.Fprintf(&b, "delivery ratio: %.4f\n", r.DeliveryRatio)
	fmt.Fprintf(&b, "added latency: p50 %v, p99 %v\n", r.LatencyP50.Round(10*time.Microsecond), r.LatencyP99.Round(10*time.Microsecond))
	who := "server"
	if r.CPUIncludesClients {
		who = "server and clients (same process)"
	}
	fmt.Fprintf(&b, "CPU (%s): %v over %.0f video stream-seconds = %.3f ms per forwarded stream-second\n", who, r.ServerCPU.Round(time.Millisecond), r.StreamSeconds, float64(r.CPUPerStreamSecond)/1e6)
	fmt.Fprintf(&b, "interrupted (socket lost): %d, resumed: %d", r.Interrupted, r.Resumed)
	if r.Resumed > 0 {
		fmt.Fprintf(&b, ", media both ways again after p50 %v, max %v", r.ResumeP50.Round(10*time.Millisecond), r.ResumeMax.Round(10*time.Millisecond))
	}
	b.WriteString("\n")
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	return b.String()
}

type consult struct {
	doc, pat *Client
	err      error
}

// packets returns what each side received from the other so far.
func (c consult) packets() [2]uint64 {
	var n [2]uint64
	for i, p := range [][2]*Client{{c.doc, c.pat}, {c.pat, c.doc}} {
		n[i] = p[0].Total(p[1].Participant, "video").Packets + p[0].Total(p[1].Participant, "audio").Packets
	}
	return n
}

// Run opens cfg.Rooms consultations, measures for cfg.Duration and
// closes them.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Signer == nil || len(cfg.SignalURLs) == 0 || cfg.Rooms <= 0 {
		return Report{}, errors.New("loadtest: needs a signal URL, a signer and at least one room")
	}
	if cfg.VideoBitrate == 0 {
		cfg.VideoBitrate = 1_500_000
	}
	if cfg.Duration == 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.JoinSpacing == 0 {
		cfg.JoinSpacing = 20 * time.Millisecond
	}
	if cfg.RoomPrefix == "" {
		cfg.RoomPrefix = "load-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	}
	consults := make([]consult, cfg.Rooms)
	var wg sync.WaitGroup
	for i := range consults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			consults[i].doc, consults[i].pat, consults[i].err = startConsult(ctx, cfg, i)
		}()
		time.Sleep(cfg.JoinSpacing)
	}
	wg.Wait()
	watch := newOutages(consults)
	defer func() {
		watch.stop()
		for _, c := range consults {
			for _, x := range []*Client{c.doc, c.pat} {
				if x != nil {
					_ = x.Send(map[string]any{"type": "leave"})
					x.Close()
				}
			}
		}
	}()

	rep := Report{Rooms: cfg.Rooms, CPUIncludesClients: cfg.ServerPID == 0}
	var joins []time.Duration
	var live []consult
	for _, c := range consults {
		if c.err != nil {
			rep.Failed++
			if len(rep.Errors) < 10 {
				rep.Errors = append(rep.Errors, c.err.Error())
			}
			continue
		}
		live = append(live, c)
	}
	// Wait for video both ways in every live consult (the join time).
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range live {
		for _, p := range [][2]*Client{{c.doc, c.pat}, {c.pat, c.doc}} {
			for p[0].Total(p[1].Participant, "video").Packets == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if s := p[0].Total(p[1].Participant, "video"); s.Packets > 0 {
				joins = append(joins, s.First.Sub(p[0].Opened))
			} else {
				rep.Failed++
				rep.Errors = append(rep.Errors, p[0].Participant+" received no video")
			}
		}
	}
	// Measurement window.
	count := func() (sent, recv uint64) {
		for _, c := range live {
			for _, p := range [][2]*Client{{c.doc, c.pat}, {c.pat, c.doc}} {
				v, a := p[1].Sent()
				sent += v + a
			}
			n := c.packets()
			recv += n[0] + n[1]
		}
		return
	}
	for _, c := range live {
		c.doc.ResetLatencies()
		c.pat.ResetLatencies()
	}
	sent0, recv0 := count()
	cpu0, err := cpuTime(cfg.ServerPID)
	if err != nil {
		return rep, err
	}
	start := time.Now()
	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
	}
	cpu1, err := cpuTime(cfg.ServerPID)
	if err != nil {
		return rep, err
	}
	window := time.Since(start)
	sent1, recv1 := count()
	// A consult interrupted near the end of the window gets the time the
	// service promises to resume.
	watch.settle(failoverDeadline + 2*time.Second)
	rep.Interrupted, rep.Resumed, rep.ResumeP50, rep.ResumeMax = watch.report()

	if sent1 > sent0 {
		rep.DeliveryRatio = float64(recv1-recv0) / float64(sent1-sent0)
	}
	var lat []time.Duration
	for _, c := range live {
		for _, p := range [][2]*Client{{c.doc, c.pat}, {c.pat, c.doc}} {
			for _, kind := range []string{"video", "audio"} {
				lat = append(lat, p[0].Total(p[1].Participant, kind).Latencies...)
			}
		}
	}
	rep.JoinP50, rep.JoinP95 = percentile(joins, 50), percentile(joins, 95)
	rep.LatencyP50, rep.LatencyP99 = percentile(lat, 50), percentile(lat, 99)
	rep.StreamSeconds = float64(2*len(live)) * window.Seconds()
	rep.ServerCPU = cpu1 - cpu0
	if rep.StreamSeconds > 0 {
		rep.CPUPerStreamSecond = time.Duration(float64(rep.ServerCPU) / rep.StreamSeconds)
	}
	return rep, nil
}

// startConsult joins the practitioner and the patient of room i, both
// publishing, and has the practitioner admit the patient.
func startConsult(ctx context.Context, cfg Config, i int) (doc, pat *Client, err error) {
	room := cfg.RoomPrefix + strconv.Itoa(i)
	tok := func(who, role string, admitted bool) (string, error) {
		return cfg.Signer.Sign(auth.JoinClaims{Room: room, Participant: who, Name: who, Role: role, Expires: time.Now().Add(10 * time.Minute), Admitted: admitted})
	}
	config := func(who, role string) (ClientConfig, error) {
		cc := ClientConfig{SignalURL: cfg.SignalURLs[i%len(cfg.SignalURLs)], ICEServers: cfg.ICEServers, VideoBitrate: cfg.VideoBitrate, Simulcast: cfg.Simulcast, Audio: true}
		var err error
		if cc.Token, err = tok(who, role, false); err != nil || cfg.Simulcast {
			return cc, err
		}
		cc.Rejoin = func(ctx context.Context) (string, string, error) {
			url, err := rejoinURL(ctx, cfg.SignalURLs, i)
			if err != nil {
				return "", "", err
			}
			// The patient was admitted on the lost node (the practitioner
			// admits at once): the new node must not keep them waiting.
			t, err := tok(who, role, role == auth.RolePatient)
			return url, t, err
		}
		return cc, nil
	}
	cc, err := config("doc-"+room, auth.RolePractitioner)
	if err != nil {
		return nil, nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if doc, err = Dial(jctx, cc); err != nil {
		return nil, nil, fmt.Errorf("%s: practitioner: %w", room, err)
	}
	if err = doc.Publish(); err != nil {
		return doc, nil, err
	}
	if cc, err = config("pat-"+room, auth.RolePatient); err != nil {
		return doc, nil, err
	}
	if pat, err = Dial(jctx, cc); err != nil {
		return doc, nil, fmt.Errorf("%s: patient: %w", room, err)
	}
	if err = pat.Publish(); err != nil {
		return doc, pat, err
	}
	if _, err = doc.Wait(jctx, "waiting"); err != nil {
		return doc, pat, fmt.Errorf("%s: %w", room, err)
	}
	if err = doc.Send(map[string]any{"type": "admit", "participant": pat.Participant}); err != nil {
		return doc, pat, err
	}
	return doc, pat, nil
}

// rejoinURL returns the first of urls, in room i's order, whose host
// accepts a TCP connection. Both participants of a room whose node was
// lost ask it, and meet on the node it names. Room i's order is its own
// node, i % len(urls), then the others round the list from a start that
// varies with i, so that the rooms of a lost node spread over the others.
func rejoinURL(ctx context.Context, urls []string, i int) (string, error) {
	var d net.Dialer
	var errs []error
	n := len(urls)
	for k := range n {
		j := i % n
		if k > 0 {
			j = (j + 1 + (i/n+k-1)%(n-1)) % n
		}
		u := urls[j]
		host, err := dialHost(u)
		if err != nil {
			return "", err
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		conn, err := d.DialContext(pctx, "tcp", host)
		cancel()
		if err == nil {
			conn.Close()
			return u, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("loadtest: no signalling URL answers: %w", errors.Join(errs...))
}

// probeTimeout bounds the check that a node answers: a lost node's
// address may drop packets instead of refusing.
const probeTimeout = 500 * time.Millisecond

// dialHost returns the host:port a ws(s) URL connects to.
func dialHost(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("loadtest: bad signalling URL %q", s)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	if u.Scheme == "wss" || u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return net.JoinHostPort(u.Hostname(), "80"), nil
}

// outages follows, while the load runs, the consults whose socket
// dropped: from the first loss until both sides, back in session,
// receive media from each other again.
type outages struct {
	consults []consult
	done     chan struct{}
	stopped  chan struct{}

	mu      sync.Mutex // guards the fields below
	state   []outage
	resumed []time.Duration
	failed  int
}

// outage is the reconnection of one consult in progress.
type outage struct {
	seen   [2]int // failovers of doc and pat already counted
	lost   time.Time
	active bool
	based  bool
	base   [2]uint64 // packets each way once both sides were back
}

func newOutages(cs []consult) *outages {
	o := &outages{consults: cs, done: make(chan struct{}), stopped: make(chan struct{}), state: make([]outage, len(cs))}
	go o.run()
	return o
}

func (o *outages) run() {
	defer close(o.stopped)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-o.done:
			return
		case <-t.C:
		}
		for i, c := range o.consults {
			if c.err == nil {
				o.poll(i, c)
			}
		}
	}
}

// poll advances consult i's outage, if any.
func (o *outages) poll(i int, c consult) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	st := &o.state[i]
	pending, failed := false, false
	for k, cl := range []*Client{c.doc, c.pat} {
		fs := cl.Failovers()
		for _, f := range fs[st.seen[k]:] {
			if !st.active {
				st.active, st.lost = true, f.Lost
			}
			st.lost, st.based = minTime(st.lost, f.Lost), false
			if f.Done.IsZero() {
				pending = true
				break
			}
			if f.Err != nil {
				failed = true
			}
			st.seen[k]++
		}
	}
	switch {
	case !st.active || pending:
	case failed:
		o.failed++
		st.active = false
	case !st.based:
		st.base, st.based = c.packets(), true
	default:
		if n := c.packets(); n[0] > st.base[0] && n[1] > st.base[1] {
			o.resumed = append(o.resumed, now.Sub(st.lost))
			st.active = false
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// settle waits, up to max, for the consults being reconnected.
func (o *outages) settle(max time.Duration) {
	until := time.Now().Add(max)
	for time.Now().Before(until) {
		o.mu.Lock()
		busy := false
		for _, st := range o.state {
			busy = busy || st.active
		}
		o.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// report returns the consults interrupted and resumed, and the resume
// times' median and maximum. A consult still reconnecting counts as
// interrupted, not resumed.
func (o *outages) report() (interrupted, resumed int, p50, worst time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	interrupted = len(o.resumed) + o.failed
	for _, st := range o.state {
		if st.active {
			interrupted++
		}
	}
	for _, d := range o.resumed {
		worst = max(worst, d)
	}
	return interrupted, len(o.resumed), percentile(o.resumed, 50), worst
}

func (o *outages) stop() {
	close(o.done)
	<-o.stopped
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; it is 100
// on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime returns the user+system CPU time of pid, or of this process
// when pid is 0.
func cpuTime(pid int) (time.Duration, error) {
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("loadtest: server CPU: %w", err)
	}
	// The command name (field 2) may contain spaces: parse after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("loadtest: unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64) // field 14: utime
	st, err2 := strconv.ParseUint(f[12], 10, 64) // field 15: stime
	if err1 != nil || err2 != nil {
		return 0, errors.New("loadtest: unexpected /proc stat format")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}
