package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"teleconsult/auth"
	"teleconsult/loadtest"
	"teleconsult/sfu"
	"teleconsult/signaling"
)

// The SFU child process is this binary run with these variables set.
const (
	envSFUAddr = "BENCH_SFU_ADDR" // listen address of the child
	envSFUKey  = "BENCH_SFU_KEY"  // hex join-token key shared with the parent
	// envSFUPort picks the child's sockets: empty, a socket per peer
	// connection (the default of the service); "batched", one shared
	// port whose system calls are batched (MEDIA_UDP_PORT); "unbatched",
	// one shared port, a system call per packet.
	envSFUPort = "BENCH_SFU_PORT"
)

// SFU targets (the issue's).
const (
	targetCPUMs       = 1.5 // ms of server CPU per forwarded 1.5 Mbit/s stream-second
	targetDelivery    = 0.995
	targetLatencyP95  = 20.0   // ms
	targetJoinP95     = 1000.0 // ms
	flatTolerance     = 1.25   // "flat": no level from 10 to 100 rooms above 1.25x the 10-room figure
	videoBitrate      = 1_500_000
	sfuHeadlineRooms  = 50
	allocZeroTreshold = 0.01 // allocations per packet that count as zero (background work)
)

// noHooks stands in for the consult service: the media path needs none.
type noHooks struct{}

func (noHooks) Waiting(string, auth.JoinClaims)      {}
func (noHooks) Ended(string, auth.JoinClaims)        {}
func (noHooks) Chat(string, auth.JoinClaims, string) {}

var _ signaling.Hooks = noHooks{}

// childStats is what the SFU child says about itself.
type childStats struct {
	Mallocs      uint64 `json:"mallocs"`
	HeapInuse    uint64 `json:"heap_inuse"`
	StackInuse   uint64 `json:"stack_inuse"`
	Forwarded    uint64 `json:"forwarded_packets"`
	Rooms        int64  `json:"rooms"`
	Participants int64  `json:"participants"`
	Goroutines   int    `json:"goroutines"`
	UDPCalls     uint64 `json:"udp_calls"` // sendmmsg and recvmmsg calls of the batched shared port
}

// serveSFU is the child process: the signalling server and the SFU (what
// carries media in the service), plus a small control surface for the
// parent: statistics and on-demand profiles. It stops on SIGTERM.
func serveSFU() {
	key, err := hex.DecodeString(os.Getenv(envSFUKey))
	if err != nil || len(key) < 16 {
		fmt.Fprintln(os.Stderr, "bench sfu child: bad key")
		os.Exit(2)
	}
	fail := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench sfu child: "+format+"\n", args...) }
	mc := sfu.Config{IncludeLoopback: true, IPFilter: func(ip net.IP) bool { return ip.IsLoopback() }}
	switch v := os.Getenv(envSFUPort); v {
	case "":
	case "batched", "unbatched":
		l, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			fail("%v", err)
			os.Exit(1)
		}
		mc.UDPMuxPort = l.LocalAddr().(*net.UDPAddr).Port
		l.Close()
		mc.UnbatchedUDP = v == "unbatched"
	default:
		fail("%s: %q is neither batched nor unbatched", envSFUPort, v)
		os.Exit(2)
	}
	media, err := sfu.New(mc)
	if err != nil {
		fail("%v", err)
		os.Exit(1)
	}
	// Rooms close soon after they empty, so that each level starts clean.
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	slog.SetDefault(quiet)
	srv := signaling.NewServer(signaling.Config{Media: media, Logger: quiet, EmptyRoomTimeout: 200 * time.Millisecond, ResumeWindow: 2 * time.Second},
		auth.NewJoinSigner(key), noHooks{})
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/signal", srv)
	mux.HandleFunc("GET /bench/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		c := media.Counters()
		_ = json.NewEncoder(w).Encode(childStats{Mallocs: ms.Mallocs, HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse,
			Forwarded: c.ForwardedPackets, Rooms: c.Rooms, Participants: c.Participants, Goroutines: runtime.NumGoroutine(),
			UDPCalls: c.UDPSendCalls + c.UDPRecvCalls})
	})
	var profMu sync.Mutex
	var cpuFile *os.File
	mux.HandleFunc("POST /bench/profile/start", func(w http.ResponseWriter, r *http.Request) {
		profMu.Lock()
		defer profMu.Unlock()
		f, err := os.Create(r.URL.Query().Get("cpu"))
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		cpuFile = f
		// The allocations so far: the base that the window's allocations
		// are told apart from (pprof -diff_base).
		if path := r.URL.Query().Get("allocs"); path != "" {
			af, err := os.Create(path)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			defer af.Close()
			runtime.GC() // the profile shows allocations up to the last GC
			if err := pprof.Lookup("allocs").WriteTo(af, 0); err != nil {
				http.Error(w, err.Error(), 500)
			}
		}
	})
	mux.HandleFunc("POST /bench/profile/stop", func(w http.ResponseWriter, r *http.Request) {
		profMu.Lock()
		defer profMu.Unlock()
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
			cpuFile = nil
		}
		if path := r.URL.Query().Get("allocs"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			defer f.Close()
			runtime.GC() // the profile shows allocations up to the last GC
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				http.Error(w, err.Error(), 500)
			}
		}
	})
	hs := &http.Server{Addr: os.Getenv(envSFUAddr), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		<-ch
		srv.Close()
		media.Close()
		hs.Close()
	}()
	if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fail("%v", err)
		os.Exit(1)
	}
}

// sfuChild is the parent's handle on the SFU child process.
type sfuChild struct {
	cmd    *exec.Cmd
	addr   string
	signer *auth.JoinSigner
	done   chan struct{}
}

// startSFUChild starts the SFU in its own process on a loopback port.
func startSFUChild(ctx context.Context) (*sfuChild, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$") // the flag matters only when exe is the test binary
	cmd.Env = append(os.Environ(), envSFUAddr+"="+addr, envSFUKey+"="+hex.EncodeToString(key))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &sfuChild{cmd: cmd, addr: addr, signer: auth.NewJoinSigner(key), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	for i := 0; ; i++ {
		if _, err := c.stats(false); err == nil {
			return c, nil
		}
		if i > 200 {
			c.close()
			return nil, errors.New("sfu child did not start")
		}
		select {
		case <-c.done:
			return nil, errors.New("sfu child exited at start")
		case <-ctx.Done():
			c.close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *sfuChild) stats(gc bool) (childStats, error) {
	var s childStats
	u := "http://" + c.addr + "/bench/stats"
	if gc {
		u += "?gc=1"
	}
	cl := http.Client{Timeout: 60 * time.Second} // a saturated child answers slowly
	res, err := cl.Get(u)
	if err != nil {
		return s, err
	}
	defer res.Body.Close()
	return s, json.NewDecoder(res.Body).Decode(&s)
}

func (c *sfuChild) post(path string) error {
	cl := http.Client{Timeout: 30 * time.Second}
	res, err := cl.Post("http://"+c.addr+path, "text/plain", nil)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("%s: %s", path, res.Status)
	}
	return nil
}

func (c *sfuChild) close() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// cpuTime is the user+system CPU time of a process, from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat format")
	}
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100
}

// selfCPU is this process's CPU time (the synthetic clients').
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// levelRun is one run of N consults.
type levelRun struct {
	Rooms, Failed                  int
	JoinP50, JoinP95               float64 // ms, socket open to first remote video packet
	Delivery                       float64
	LatP50, LatP95, LatP99         float64 // ms
	CPUMsPerStreamSecond           float64
	ClientCPUMsPerStreamSecond     float64
	AllocsPerPacket                float64
	CPUMicrosPerPacket             float64
	SyscallsPerPacket              float64 // socket system calls per forwarded packet, batched shared port only
	MemKBPerRoom                   float64
	LoadedKB                       float64 // live heap and stacks under load, KiB
	ForwardedPerSecond, WindowSecs float64
	Errors                         []string
}

type consultPair struct {
	doc, pat *loadtest.Client
	err      error
}

// startConsult joins a practitioner and a patient, both publishing VP8
// at 1.5 Mbit/s and Opus, and has the practitioner admit the patient
// (as the load tool does).
func startConsult(ctx context.Context, c *sfuChild, room string) consultPair {
	url := "ws://" + c.addr + "/api/v1/signal"
	return startConsultVia(ctx, c, room, url, url, videoBitrate)
}

// startConsultVia is startConsult with the patient's signalling URL (a
// shaping proxy, say) and the cameras' bitrate chosen.
func startConsultVia(ctx context.Context, c *sfuChild, room, docURL, patURL string, bitrate int) (p consultPair) {
	tok := func(who, role string) string {
		t, _ := c.signer.Sign(auth.JoinClaims{Room: room, Participant: who, Name: who, Role: role, Expires: time.Now().Add(10 * time.Minute)})
		return t
	}
	cc := loadtest.ClientConfig{SignalURL: docURL, VideoBitrate: bitrate, Audio: true}
	jctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cc.Token = tok("doc-"+room, auth.RolePractitioner)
	if p.doc, p.err = loadtest.Dial(jctx, cc); p.err != nil {
		return
	}
	if p.err = p.doc.Publish(); p.err != nil {
		return
	}
	cc.Token = tok("pat-"+room, auth.RolePatient)
	cc.SignalURL = patURL
	if p.pat, p.err = loadtest.Dial(jctx, cc); p.err != nil {
		return
	}
	if p.err = p.pat.Publish(); p.err != nil {
		return
	}
	if _, p.err = p.doc.Wait(jctx, "waiting"); p.err != nil {
		return
	}
	p.err = p.doc.Send(map[string]any{"type": "admit", "participant": p.pat.Participant})
	return
}

// runLevel opens rooms consults, measures for window once video flows
// both ways everywhere, then closes them and waits for the SFU to empty.
// With profile set, the child's CPU profile covers the window and its
// allocation profile is written after it.
func runLevel(ctx context.Context, c *sfuChild, rooms int, window time.Duration, profile string) (levelRun, error) {
	r := levelRun{Rooms: rooms}
	idle, err := c.stats(true)
	if err != nil {
		return r, err
	}
	prefix := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	pairs := make([]consultPair, rooms)
	var wg sync.WaitGroup
	for i := range pairs {
		wg.Add(1)
		go func() { defer wg.Done(); pairs[i] = startConsult(ctx, c, prefix+strconv.Itoa(i)) }()
		time.Sleep(20 * time.Millisecond) // spaced starts, as the load tool does
	}
	wg.Wait()
	defer closePairs(pairs)

	var live []consultPair
	for _, p := range pairs {
		if p.err != nil {
			r.Failed++
			if len(r.Errors) < 5 {
				r.Errors = append(r.Errors, p.err.Error())
			}
			continue
		}
		live = append(live, p)
	}
	var joins []time.Duration
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range live {
		for _, d := range [][2]*loadtest.Client{{p.doc, p.pat}, {p.pat, p.doc}} {
			for d[0].From(d[1].Participant, "video").Packets == 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if s := d[0].From(d[1].Participant, "video"); s.Packets > 0 {
				joins = append(joins, s.First.Sub(d[0].Opened))
			} else {
				r.Failed++
				if len(r.Errors) < 5 {
					r.Errors = append(r.Errors, d[0].Participant+" received no video")
				}
			}
		}
	}
	count := func() (sent, recv uint64) {
		for _, p := range live {
			for _, d := range [][2]*loadtest.Client{{p.doc, p.pat}, {p.pat, p.doc}} {
				v, a := d[1].Sent()
				sent += v + a
				recv += d[0].From(d[1].Participant, "video").Packets + d[0].From(d[1].Participant, "audio").Packets
			}
		}
		return
	}
	for _, p := range live {
		p.doc.ResetLatencies()
		p.pat.ResetLatencies()
	}
	if profile != "" {
		if err := c.post("/bench/profile/start?cpu=" + profile + "-cpu.pprof&allocs=" + profile + "-allocs-base.pprof"); err != nil {
			return r, err
		}
	}
	s0, err := c.stats(false)
	if err != nil {
		return r, err
	}
	sent0, recv0 := count()
	cpu0, err := cpuTime(c.cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	self0 := selfCPU()
	start := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	cpu1, _ := cpuTime(c.cmd.Process.Pid)
	self1 := selfCPU()
	elapsed := time.Since(start)
	sent1, recv1 := count()
	s1, err := c.stats(false)
	if err != nil {
		return r, err
	}
	if profile != "" {
		if err := c.post("/bench/profile/stop?allocs=" + profile + "-allocs.pprof"); err != nil {
			return r, err
		}
	}
	loaded, loadedErr := c.stats(true) // live memory while the consults are still up

	var lat []time.Duration
	for _, p := range live {
		for _, d := range [][2]*loadtest.Client{{p.doc, p.pat}, {p.pat, p.doc}} {
			for _, kind := range []string{"video", "audio"} {
				lat = append(lat, d[0].From(d[1].Participant, kind).Latencies...)
			}
		}
	}
	streamSecs := float64(2*len(live)) * elapsed.Seconds()
	r.WindowSecs = elapsed.Seconds()
	r.JoinP50, r.JoinP95 = percentileMs(joins, 50), percentileMs(joins, 95)
	r.LatP50, r.LatP95, r.LatP99 = percentileMs(lat, 50), percentileMs(lat, 95), percentileMs(lat, 99)
	r.Delivery = math.NaN()
	if sent1 > sent0 {
		r.Delivery = float64(recv1-recv0) / float64(sent1-sent0)
	}
	r.CPUMsPerStreamSecond, r.ClientCPUMsPerStreamSecond = math.NaN(), math.NaN()
	if streamSecs > 0 {
		r.CPUMsPerStreamSecond = float64(cpu1-cpu0) / 1e6 / streamSecs
		r.ClientCPUMsPerStreamSecond = float64(self1-self0) / 1e6 / streamSecs
	}
	r.AllocsPerPacket, r.SyscallsPerPacket = math.NaN(), math.NaN()
	if fwd := s1.Forwarded - s0.Forwarded; fwd > 0 {
		r.AllocsPerPacket = float64(s1.Mallocs-s0.Mallocs) / float64(fwd)
		r.CPUMicrosPerPacket = float64(cpu1-cpu0) / 1e3 / float64(fwd)
		r.ForwardedPerSecond = float64(fwd) / elapsed.Seconds()
		if s1.UDPCalls > s0.UDPCalls {
			r.SyscallsPerPacket = float64(s1.UDPCalls-s0.UDPCalls) / float64(fwd)
		}
	}
	r.MemKBPerRoom, r.LoadedKB = math.NaN(), math.NaN()
	if loadedErr == nil {
		used := float64(loaded.HeapInuse+loaded.StackInuse) - float64(idle.HeapInuse+idle.StackInuse)
		r.MemKBPerRoom = used / 1024 / float64(rooms)
		r.LoadedKB = float64(loaded.HeapInuse+loaded.StackInuse) / 1024
	} else {
		r.Errors = append(r.Errors, "memory not measured: "+loadedErr.Error())
	}
	return r, nil
}

// closePairs leaves and closes every client, all at once.
func closePairs(pairs []consultPair) {
	var wg sync.WaitGroup
	for _, p := range pairs {
		for _, x := range []*loadtest.Client{p.doc, p.pat} {
			if x == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = x.Send(map[string]any{"type": "leave"})
				x.Close()
			}()
		}
	}
	wg.Wait()
}

// waitEmpty waits (a bounded time) for the SFU to close every room.
func (c *sfuChild) waitEmpty() {
	for range 100 {
		if s, err := c.stats(false); err == nil && s.Rooms == 0 && s.Participants == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// levelStats are a level's figures over its runs.
type levelStats struct {
	Rooms                                                          int
	CPU, ClientCPU, Delivery, LatP50, LatP95, LatP99, CPUPerPacket Stat
	JoinP50, JoinP95, Allocs, MemKB, Failed, ForwardedPerSecs      Stat
	LoadedKB, SocketCalls                                          Stat
	Errors                                                         []string
}

func (l levelStats) passes() bool {
	return l.Failed.Median == 0 && l.Delivery.Median >= targetDelivery && l.LatP95.Median <= targetLatencyP95
}

func summarise(rooms int, runs []levelRun) levelStats {
	pick := func(f func(levelRun) float64) Stat {
		var xs []float64
		for _, r := range runs {
			if v := f(r); !math.IsNaN(v) {
				xs = append(xs, v)
			}
		}
		return statOf(xs)
	}
	l := levelStats{Rooms: rooms,
		CPU:              pick(func(r levelRun) float64 { return r.CPUMsPerStreamSecond }),
		CPUPerPacket:     pick(func(r levelRun) float64 { return r.CPUMicrosPerPacket }),
		ClientCPU:        pick(func(r levelRun) float64 { return r.ClientCPUMsPerStreamSecond }),
		Delivery:         pick(func(r levelRun) float64 { return r.Delivery }),
		LatP50:           pick(func(r levelRun) float64 { return r.LatP50 }),
		LatP95:           pick(func(r levelRun) float64 { return r.LatP95 }),
		LatP99:           pick(func(r levelRun) float64 { return r.LatP99 }),
		JoinP50:          pick(func(r levelRun) float64 { return r.JoinP50 }),
		JoinP95:          pick(func(r levelRun) float64 { return r.JoinP95 }),
		Allocs:           pick(func(r levelRun) float64 { return r.AllocsPerPacket }),
		MemKB:            pick(func(r levelRun) float64 { return r.MemKBPerRoom }),
		LoadedKB:         pick(func(r levelRun) float64 { return r.LoadedKB }),
		Failed:           pick(func(r levelRun) float64 { return float64(r.Failed) }),
		ForwardedPerSecs: pick(func(r levelRun) float64 { return r.ForwardedPerSecond }),
		SocketCalls:      pick(func(r levelRun) float64 { return r.SyscallsPerPacket }),
	}
	for _, r := range runs {
		l.Errors = append(l.Errors, r.Errors...)
	}
	if len(l.Errors) > 3 {
		l.Errors = l.Errors[:3]
	}
	return l
}

// runSFU sweeps the consult count, finds the largest count that keeps
// delivery and latency within target, and records everything.
func runSFU(ctx context.Context, o options, rep *Report) error {
	levels := []int{10, 25, 50, 100, 150}
	window := 8 * time.Second
	if o.Quick {
		levels = []int{1, 2}
		window = time.Second
	}
	headline := sfuHeadlineRooms
	if o.Quick {
		headline = levels[len(levels)-1]
	}
	// BENCH_SFU_ROOMS="25" (or "10,25") measures only these levels, the
	// last one profiled: a quick loop while tuning the SFU.
	if v := os.Getenv("BENCH_SFU_ROOMS"); v != "" {
		levels = levels[:0:0]
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("BENCH_SFU_ROOMS: bad room count %q", f)
			}
			levels = append(levels, n)
		}
		headline = levels[len(levels)-1]
	}
	child, err := startSFUChild(ctx)
	if err != nil {
		rep.section("SFU (video forwarding)", "Not measured: "+err.Error()+"\n")
		return err
	}
	defer child.close()
	began := time.Now()
	runs := map[int][]levelRun{}
	measure := func(rooms, run int) error {
		profile := ""
		if o.Profile && run == 0 && rooms == headline {
			profile = filepath.Join(o.Out, fmt.Sprintf("sfu-%drooms", rooms))
		}
		r, err := runLevel(ctx, child, rooms, window, profile)
		child.waitEmpty()
		if err != nil {
			// One broken run does not lose the others: it counts as a
			// run with nothing measured, and says why.
			logf("sfu %3d rooms run %d failed: %v", rooms, run+1, err)
			nan := math.NaN()
			runs[rooms] = append(runs[rooms], levelRun{Rooms: rooms, Failed: rooms, Delivery: nan, LatP50: nan, LatP95: nan, LatP99: nan,
				JoinP50: nan, JoinP95: nan, CPUMsPerStreamSecond: nan, ClientCPUMsPerStreamSecond: nan, AllocsPerPacket: nan,
				CPUMicrosPerPacket: nan, SyscallsPerPacket: nan, MemKBPerRoom: nan, LoadedKB: nan, ForwardedPerSecond: nan, Errors: []string{err.Error()}})
			return ctx.Err()
		}
		logf("sfu %3d rooms run %d: cpu %.3f ms/stream-s (%.1f us/packet, clients %.3f), delivery %.4f, latency p95 %.1f p99 %.1f ms, join p95 %.0f ms, %.2f allocs/packet, %.2f socket calls/packet, %d failed",
			rooms, run+1, r.CPUMsPerStreamSecond, r.CPUMicrosPerPacket, r.ClientCPUMsPerStreamSecond, r.Delivery, r.LatP95, r.LatP99, r.JoinP95, r.AllocsPerPacket, r.SyscallsPerPacket, r.Failed)
		runs[rooms] = append(runs[rooms], r)
		if profile != "" {
			rep.Profiles[filepath.Base(profile)+"-cpu.pprof"] = fmt.Sprintf("SFU process CPU during the %d-room measurement window", rooms)
			rep.Profiles[filepath.Base(profile)+"-allocs.pprof"] = "SFU process allocations since its start (use -sample_index=alloc_objects)"
			rep.Profiles[filepath.Base(profile)+"-allocs-base.pprof"] = "SFU process allocations up to the window's start (-diff_base for the window's own)"
		}
		return nil
	}
	// Runs interleave (each run sweeps every level) so that a burst of
	// noise from the shared machine does not hit one level only.
	for run := range o.Runs {
		for _, n := range levels {
			if err := measure(n, run); err != nil {
				return err
			}
		}
	}
	var stats []levelStats
	for _, n := range levels {
		stats = append(stats, summarise(n, runs[n]))
	}
	// One refinement between the last passing and the first failing level,
	// when the budget allows.
	if !o.Quick && time.Since(began) < 7*time.Minute {
		for i := 0; i+1 < len(stats); i++ {
			if stats[i].passes() && !stats[i+1].passes() {
				mid := (stats[i].Rooms + stats[i+1].Rooms) / 2 / 5 * 5
				if mid > stats[i].Rooms {
					for run := range o.Runs {
						if err := measure(mid, run); err != nil {
							return err
						}
					}
					ms := summarise(mid, runs[mid])
					stats = append(stats[:i+1], append([]levelStats{ms}, stats[i+1:]...)...)
				}
				break
			}
		}
	}
	// The mobile profile, last.
	mRooms, mWindow := 5, 15*time.Second
	if o.Quick {
		mRooms, mWindow = 1, time.Second
	}
	var mobile []mobileRun
	var mobileErr error
	for run := range o.Runs {
		m, err := runMobile(ctx, child, mRooms, mWindow)
		child.waitEmpty()
		if err != nil {
			mobileErr = err
			break
		}
		logf("sfu mobile run %d: %.2f s frozen per minute, delivery %.4f, latency p95 %.1f ms, %d failed", run+1, m.FreezeSecsPerMin, m.Delivery, m.LatP95, m.Failed)
		mobile = append(mobile, m)
	}
	reportSFU(rep, stats, headline, window, o, mobileStatsOf(mRooms, mWindow, mobile, mobileErr))
	return nil
}

// mobileStats are the mobile profile's figures over its runs.
type mobileStats struct {
	Rooms                             int
	Window                            time.Duration
	Freeze, Delivery, LatP95, JoinP95 Stat
	Failed                            Stat
	Err                               error
}

func mobileStatsOf(rooms int, window time.Duration, runs []mobileRun, err error) mobileStats {
	pick := func(f func(mobileRun) float64) Stat {
		var xs []float64
		for _, r := range runs {
			if v := f(r); !math.IsNaN(v) {
				xs = append(xs, v)
			}
		}
		return statOf(xs)
	}
	return mobileStats{Rooms: rooms, Window: window, Err: err,
		Freeze:   pick(func(r mobileRun) float64 { return r.FreezeSecsPerMin }),
		Delivery: pick(func(r mobileRun) float64 { return r.Delivery }),
		LatP95:   pick(func(r mobileRun) float64 { return r.LatP95 }),
		JoinP95:  pick(func(r mobileRun) float64 { return r.JoinP95 }),
		Failed:   pick(func(r mobileRun) float64 { return float64(r.Failed) }),
	}
}

func reportSFU(rep *Report, stats []levelStats, headline int, window time.Duration, o options, mob mobileStats) {
	var head levelStats
	maxRooms := 0
	for _, l := range stats {
		if l.Rooms == headline {
			head = l
		}
		if l.passes() && l.Rooms > maxRooms {
			maxRooms = l.Rooms
		}
	}
	var first, worst float64 = math.NaN(), 0
	cpuOK := true
	for _, l := range stats {
		if l.Rooms > 100 && !o.Quick {
			continue
		}
		if math.IsNaN(first) {
			first = l.CPU.Median
		}
		worst = max(worst, l.CPU.Median)
		if !(l.CPU.Median <= targetCPUMs) {
			cpuOK = false
		}
	}
	flat := worst <= first*flatTolerance
	// Memory per room as the slope of live memory between the smallest
	// level and the largest up to 100 rooms: immune to what an idle
	// process still holds from the previous level.
	low, high := stats[0], stats[0]
	for _, l := range stats {
		if l.Rooms <= 100 || o.Quick {
			high = l
		}
	}
	slope := math.NaN()
	if high.Rooms > low.Rooms {
		slope = (high.LoadedKB.Median - low.LoadedKB.Median) / float64(high.Rooms-low.Rooms)
	}
	sec := "sfu"
	rep.put(sec, "cpu_ms_per_stream_second", head.CPU.Median)
	rep.put(sec, "cpu_ms_per_stream_second_rooms", float64(headline))
	rep.put(sec, "max_rooms", float64(maxRooms))
	rep.put(sec, "join_p95_ms", head.JoinP95.Median)
	rep.put(sec, "join_p50_ms", head.JoinP50.Median)
	rep.put(sec, "delivery_ratio", head.Delivery.Median)
	rep.put(sec, "latency_p50_ms", head.LatP50.Median)
	rep.put(sec, "latency_p99_ms", head.LatP99.Median)
	rep.put(sec, "allocs_per_forwarded_packet", head.Allocs.Median)
	rep.put(sec, "memory_kb_per_room", head.MemKB.Median)
	rep.put(sec, "memory_kb_per_room_slope", slope)
	rep.put(sec, "cpu_ms_per_stream_second_smallest_level", low.CPU.Median)
	rep.put(sec, "join_p95_ms_smallest_level", low.JoinP95.Median)
	rep.put(sec, "mobile_freeze_seconds_per_minute", mob.Freeze.Median)
	rep.put(sec, "mobile_delivery_ratio", mob.Delivery.Median)
	rep.put(sec, "mobile_latency_p95_ms", mob.LatP95.Median)
	rep.put(sec, "mobile_rooms", float64(mob.Rooms))
	if mob.Err != nil {
		rep.put(sec, "mobile_error", mob.Err.Error())
	}
	rep.put(sec, "cpu_us_per_forwarded_packet", head.CPUPerPacket.Median)
	var levels []map[string]any
	for _, l := range stats {
		level := map[string]any{"rooms": l.Rooms, "cpu_ms_per_stream_second": l.CPU, "client_cpu_ms_per_stream_second": l.ClientCPU,
			"delivery_ratio": l.Delivery, "latency_p50_ms": l.LatP50, "latency_p95_ms": l.LatP95, "latency_p99_ms": l.LatP99,
			"join_p50_ms": l.JoinP50, "join_p95_ms": l.JoinP95, "allocs_per_forwarded_packet": l.Allocs, "memory_kb_per_room": l.MemKB, "cpu_us_per_forwarded_packet": l.CPUPerPacket,
			"failed_consults": l.Failed, "forwarded_packets_per_second": l.ForwardedPerSecs, "passes": l.passes()}
		if !math.IsNaN(l.SocketCalls.Median) { // counted by the batched shared port only
			level["socket_calls_per_forwarded_packet"] = l.SocketCalls
		}
		levels = append(levels, level)
	}
	rep.put(sec, "levels", levels)
	rep.put(sec, "sockets", sfuSockets())

	hs := fmt.Sprintf(" (%d rooms)", headline)
	rep.row("SFU", "server CPU per forwarded stream-second"+hs, "ms", head.CPU, 3, "<= 1.5 ms, flat 10-100 rooms", verdict(!math.IsNaN(head.CPU.Median), cpuOK && flat))
	rep.row("SFU", "largest room count with delivery >= 99.5% and p95 latency <= 20 ms", "rooms", statOf([]float64{float64(maxRooms)}), 0, "", "")
	rep.row("SFU", "join to first video p95"+hs, "ms", head.JoinP95, 0, "< 1 s", verdict(!math.IsNaN(head.JoinP95.Median), head.JoinP95.Median < targetJoinP95))
	if low.Rooms != headline {
		ls := fmt.Sprintf(" (%d rooms)", low.Rooms)
		rep.row("SFU", "server CPU per forwarded stream-second"+ls, "ms", low.CPU, 3, "<= 1.5 ms", verdict(!math.IsNaN(low.CPU.Median), low.CPU.Median <= targetCPUMs))
		rep.row("SFU", "join to first video p95"+ls, "ms", low.JoinP95, 0, "< 1 s", verdict(!math.IsNaN(low.JoinP95.Median), low.JoinP95.Median < targetJoinP95))
	}
	rep.row("SFU", "delivery ratio"+hs, "", head.Delivery, 4, "", "")
	rep.row("SFU", "added latency p99"+hs, "ms", head.LatP99, 1, "", "")
	rep.row("SFU", "heap allocations per forwarded packet"+hs, "", head.Allocs, 2, "0", verdict(!math.IsNaN(head.Allocs.Median), head.Allocs.Median < allocZeroTreshold))
	rep.row("SFU", fmt.Sprintf("memory per added room (slope %d to %d rooms)", low.Rooms, high.Rooms), "KiB", statOf(finite(slope)), 0, "", "")
	rep.row("SFU", fmt.Sprintf("mobile profile (%d rooms): video frozen per minute", mob.Rooms), "s", mob.Freeze, 2, "", "")

	var b strings.Builder
	fmt.Fprintf(&b, "**What:** N simultaneous 1:1 consults, each with two Pion clients of the load tool (`loadtest.Dial`, `Publish`) "+
		"publishing synthetic VP8 at 1.5 Mbit/s (30 fps) and Opus (20 ms frames) and receiving the other side's, through the signalling server and the SFU. "+
		"**How:** the SFU and signalling server run in a child process (this binary re-executed) so that its CPU time is read from `/proc` apart from the clients'; "+
		"consults start 20 ms apart; once video flows both ways in every consult, a %.0f s window measures, then every client leaves and the SFU empties before the next level. "+
		"Each run sweeps every level, %d runs interleaved. **Sockets:** %s.\n\n", window.Seconds(), o.Runs, sfuSocketsText())
	b.WriteString("- *CPU per stream-second*: the SFU process's user+system CPU over the window divided by (2 forwarded cameras per consult x window seconds); each stream carries its audio too.\n")
	b.WriteString("- *Delivery*: packets received over packets sent by the other side during the window (video and audio); above 1 when packets queued before the window (a saturated machine) arrive during it. *Added latency*: send-to-receive time of every packet on loopback (no jitter buffer).\n")
	b.WriteString("- *Join*: from the socket opening to the first video packet from the other side. *Memory per room*: growth of the SFU's live Go heap and stacks (after a GC) under load over idle, divided by rooms (the idle figure may still hold memory of the previous level, so the summary uses the slope of live memory across levels).\n")
	b.WriteString("- *Allocations per packet*: the SFU process's heap allocations (Pion's SRTP, ICE and RTCP as well as ours, signalling included) during the window over packets forwarded. " +
		"The forwarding path itself allocates nothing (sfu's TestHotPathsDoNotAllocate and benchmarks); what remains is per connection and per second, not per packet: ICE consent checks and keepalives (STUN) and periodic RTCP, so the ratio does not fall with load.\n")
	b.WriteString("- *CPU per forwarded packet* is the same CPU over the packets the SFU actually forwarded: it stays meaningful when the machine saturates, where the per-stream-second figure falls because streams are no longer carried at their nominal rate (watch the latency and forwarded-packets columns).\n")
	b.WriteString("- *Client CPU* is the load generator's CPU (this process) per stream-second: on this machine it competes with the SFU for the same cores, so the largest room count is bounded by the clients as much as by the server.\n\n")
	b.WriteString("| Rooms | CPU ms/stream-s | spread | CPU us/forwarded packet | forwarded packets/s | client CPU ms/stream-s | delivery | latency p50 / p95 / p99 ms | join p50 / p95 ms | allocs/packet | KiB/room | failed | within target |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, l := range stats {
		ok := "no"
		if l.passes() {
			ok = "yes"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s / %s | %s | %s | %s | %s |\n", l.Rooms, l.CPU.med(3), l.CPU.spread(3), l.CPUPerPacket.med(2), l.ForwardedPerSecs.med(0), l.ClientCPU.med(3),
			l.Delivery.med(4), l.LatP50.med(2), l.LatP95.med(2), l.LatP99.med(2), l.JoinP50.med(0), l.JoinP95.med(0), l.Allocs.med(2), l.MemKB.med(0), l.Failed.med(0), ok)
	}
	b.WriteString("\n")
	for _, l := range stats {
		for _, e := range l.Errors {
			fmt.Fprintf(&b, "- error at %d rooms: %s\n", l.Rooms, e)
		}
	}
	fmt.Fprintf(&b, "\n**Largest room count within target** (median delivery >= 99.5%%, median p95 added latency <= 20 ms, every consult joined): **%d** (resolution: the levels tested above).\n\n", maxRooms)
	fmt.Fprintf(&b, "**Targets.** CPU <= %.1f ms per stream-second at every level from 10 to 100 rooms and flat (no level above %.2fx the smallest level's): %s (smallest level %.3f ms, worst %.3f ms). ",
		targetCPUMs, flatTolerance, verdict(!math.IsNaN(first), cpuOK && flat), first, worst)
	fmt.Fprintf(&b, "Zero allocations per forwarded packet: %s (%.2f at %d rooms). Join p95 under 1 s: %s (%.0f ms at %d rooms).\n\n",
		verdict(!math.IsNaN(head.Allocs.Median), head.Allocs.Median < allocZeroTreshold), head.Allocs.Median, headline,
		verdict(!math.IsNaN(head.JoinP95.Median), head.JoinP95.Median < targetJoinP95), head.JoinP95.Median, headline)
	if !math.IsNaN(head.Allocs.Median) && head.Allocs.Median >= allocZeroTreshold {
		b.WriteString("**What the allocations are.** The forwarding path allocates nothing per packet: `go test -bench ForwardSRTP -benchmem ./sfu` " +
			"forwards through SRTP and a real socket with 0 allocations per packet, whichever the sockets. What the process allocates meanwhile is " +
			"almost all Pion's ICE: connectivity checks and consent keepalives (STUN messages and their integrity keys) on every connection, a cost " +
			"per connection and second that this figure divides by the packets forwarded (the allocation profile, `make bench PROFILE=1`, shows it).\n\n")
	}
	if o.Profile {
		prefix := filepath.Join(o.Out, fmt.Sprintf("sfu-%drooms", headline))
		if !(cpuOK && flat) {
			calls := "Each forwarded packet costs a receive and a send system call (on loopback the sender's call also delivers the datagram to the receiving socket), "
			if os.Getenv(envSFUPort) == "batched" {
				calls = fmt.Sprintf("The shared port batches its system calls (%s per forwarded packet, receives and sends; on loopback a send also delivers the datagrams to the receiving sockets, which batching does not save), ", head.SocketCalls.med(2))
			}
			fmt.Fprintf(&b, "**What limits the CPU figure** (shares of the SFU's CPU in the %d-room profile, overlapping): %s. "+
				"%s"+
				"and each packet crosses three goroutines in Pion (socket reader, SRTP session, track reader; four with the shared port, whose reader hands packets to the connection's), so a lightly loaded server pays a thread wake-up for most packets; "+
				"the SRTP cipher (AES-GCM) and the SFU's own per-packet work (`go test -bench . ./sfu`) are small beside these.\n\n",
				headline, cpuBreakdown(prefix+"-cpu.pprof"), calls)
		}
		fmt.Fprintf(&b, "Where the SFU's CPU goes during the %d-room window (`go tool pprof -top %s-cpu.pprof`):\n\n```\n%s```\n\n", headline, prefix, pprofTop(prefix+"-cpu.pprof", ""))
		fmt.Fprintf(&b, "Where it allocates during the window (`go tool pprof -top -sample_index=alloc_objects -diff_base %s-allocs-base.pprof %s-allocs.pprof`; "+
			"sampled every 512 KiB allocated unless the child runs with GODEBUG=memprofilerate=1):\n\n```\n%s```\n\n", prefix, prefix, pprofTop(prefix+"-allocs.pprof", "alloc_objects", "-diff_base="+prefix+"-allocs-base.pprof"))
	} else {
		b.WriteString("Run `make bench PROFILE=1` for the SFU's CPU and allocation profiles (they show what limits a missed target).\n\n")
	}
	b.WriteString("### Mobile profile (500 kbit/s, 2% loss, 50 ms jitter)\n\n")
	fmt.Fprintf(&b, "**What:** how long video stands still for a patient on a poor mobile network. **How:** %d consults in which both cameras send VP8 at 500 kbit/s (and Opus); "+
		"the patient's signalling goes through a proxy in this harness that rewrites every UDP ICE candidate, both ways, to a loopback relay socket (TCP candidates withheld), "+
		"so all of the patient's media, up and down, crosses a relay that drops 2%% of datagrams and delays each by a uniform random 0-50 ms (which also reorders). "+
		"%.0f s window per run, %d runs. A *freeze* is a gap between video packet arrivals longer than %v (WebRTC's freeze rule at 30 fps), sampled every 10 ms; "+
		"the figure is frozen seconds per minute per received video stream, both directions. "+
		"Lower bound: the synthetic receivers send no NACK or PLI, and a lost packet here only counts when it leaves a gap, whereas a real decoder also stalls on an incomplete frame until a keyframe.\n\n",
		mob.Rooms, mob.Window.Seconds(), o.Runs, freezeThreshold)
	if mob.Err != nil {
		fmt.Fprintf(&b, "The mobile runs failed: %v\n\n", mob.Err)
	}
	fmt.Fprintf(&b, "| Figure | Median | Spread |\n|---|---:|---:|\n| frozen seconds per minute | %s | %s |\n| delivery | %s | %s |\n| added latency p95 (ms) | %s | %s |\n| join p95 (ms) | %s | %s |\n| failed consults | %s | %s |\n",
		mob.Freeze.med(2), mob.Freeze.spread(2), mob.Delivery.med(4), mob.Delivery.spread(4), mob.LatP95.med(1), mob.LatP95.spread(1),
		mob.JoinP95.med(0), mob.JoinP95.spread(0), mob.Failed.med(0), mob.Failed.spread(0))
	rep.section("SFU (video forwarding)", b.String())
}

// sfuSockets is the child's socket mode (BENCH_SFU_PORT) for the report.
func sfuSockets() string {
	if v := os.Getenv(envSFUPort); v != "" {
		return "shared port, " + v
	}
	return "per connection"
}

func sfuSocketsText() string {
	switch os.Getenv(envSFUPort) {
	case "batched":
		return "one shared UDP port (MEDIA_UDP_PORT) whose sends and receives are batched with sendmmsg and recvmmsg (BENCH_SFU_PORT=batched)"
	case "unbatched":
		return "one shared UDP port (MEDIA_UDP_PORT), one system call per packet (BENCH_SFU_PORT=unbatched)"
	}
	return "a UDP socket per peer connection, the service's default without MEDIA_UDP_PORT (BENCH_SFU_PORT=batched or unbatched measures the shared port)"
}

// cpuBreakdown names the shares of a CPU profile that decide the SFU's
// cost per packet, from `go tool pprof -top -cum`.
func cpuBreakdown(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=100000", path).Output()
	if err != nil {
		return fmt.Sprintf("(go tool pprof failed: %v)", err)
	}
	cum, flat := map[string]float64{}, map[string]float64{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") || !strings.HasSuffix(f[4], "%") {
			continue
		}
		fl, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		cu, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		name := strings.Join(f[5:], " ")
		cum[name], flat[name] = cu, fl
	}
	sum := func(m map[string]float64, match func(string) bool) float64 {
		t := 0.0
		for n, v := range m {
			if match(n) {
				t += v
			}
		}
		return t
	}
	is := func(names ...string) func(string) bool {
		return func(n string) bool {
			for _, x := range names {
				if n == x {
					return true
				}
			}
			return false
		}
	}
	parts := []struct {
		what  string
		share float64
	}{
		{"UDP send system calls", sum(cum, is("syscall.sendto", "syscall.sendmsg", "syscall.sendmmsg", "teleconsult/sfu.(*batchConn).sendmmsg"))},
		{"UDP receive system calls", sum(cum, is("syscall.recvmsg", "syscall.recvfrom", "syscall.recvmmsg", "teleconsult/sfu.(*batchConn).recvmmsg"))},
		{"the Go scheduler finding work or sleeping (epoll, futex: goroutine hand-offs)", sum(cum, is("runtime.schedule"))},
		{"waking threads for runnable goroutines (futex)", sum(cum, is("runtime.futexwakeup"))},
		{"SRTP encryption and decryption", sum(cum, is("github.com/pion/srtp/v3.(*Context).encryptRTP", "github.com/pion/srtp/v3.(*SessionSRTP).decrypt"))},
		{"the sfu package's own code", sum(flat, func(n string) bool { return strings.HasPrefix(n, "teleconsult/sfu.") })},
		{"garbage collection", sum(cum, is("runtime.gcBgMarkWorker"))},
	}
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%.0f%% %s", p.share, p.what)
	}
	return b.String()
}

// pprofTop runs `go tool pprof -top` on a profile and returns its first
// lines; a sampleIndex ending in " -cum" sorts by cumulative cost.
func pprofTop(path, sampleIndex string, extra ...string) string {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=15"}, extra...)
	if s, ok := strings.CutSuffix(sampleIndex, " -cum"); ok {
		sampleIndex = s
		args = append(args, "-cum")
	}
	if sampleIndex != "" {
		args = append(args, "-sample_index="+sampleIndex)
	}
	args = append(args, path)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", args...).Output()
	if err != nil {
		return fmt.Sprintf("(go tool pprof failed: %v)\n", err)
	}
	lines := strings.Split(string(out), "\n")
	// Skip the header lines up to the table.
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "flat") {
			lines = lines[max(0, i-1):]
			break
		}
	}
	if len(lines) > 18 {
		lines = lines[:18]
	}
	return strings.Join(lines, "\n") + "\n"
}

// Mobile profile: the patient on a phone network.
const (
	mobileBitrate   = 500_000
	mobileLoss      = 0.02
	mobileJitter    = 50 * time.Millisecond
	freezeThreshold = 183 * time.Millisecond // WebRTC's freeze: a gap over max(3 frames, 1 frame + 150 ms) at 30 fps
)

// mobileRun is one run of the mobile profile.
type mobileRun struct {
	FreezeSecsPerMin, Delivery, LatP95, JoinP95 float64
	Failed                                      int
}

// runMobile opens rooms consults whose patient reaches the SFU through a
// shaped path (2% loss, 0-50 ms jitter each way) with both cameras at
// 500 kbit/s, and measures how long video stands still.
func runMobile(ctx context.Context, c *sfuChild, rooms int, window time.Duration) (mobileRun, error) {
	r := mobileRun{}
	direct := "ws://" + c.addr + "/api/v1/signal"
	path, err := newShapedPath(direct, mobileLoss, mobileJitter)
	if err != nil {
		return r, err
	}
	defer path.close()
	prefix := "mobile-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	pairs := make([]consultPair, rooms)
	var wg sync.WaitGroup
	for i := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pairs[i] = startConsultVia(ctx, c, prefix+strconv.Itoa(i), direct, path.URL(), mobileBitrate)
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	defer closePairs(pairs)
	type stream struct{ rx, tx *loadtest.Client }
	var streams []stream
	for _, p := range pairs {
		if p.err != nil {
			r.Failed++
			continue
		}
		streams = append(streams, stream{p.doc, p.pat}, stream{p.pat, p.doc})
	}
	var joins []time.Duration
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range streams {
		for s.rx.From(s.tx.Participant, "video").Packets == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if v := s.rx.From(s.tx.Participant, "video"); v.Packets > 0 {
			joins = append(joins, v.First.Sub(s.rx.Opened))
		} else {
			r.Failed++
		}
		s.rx.ResetLatencies()
	}
	// Watch each received video stream every 10 ms: a freeze is a gap
	// between arrivals longer than freezeThreshold.
	last := make([]time.Time, len(streams))
	count := make([]uint64, len(streams))
	var sent0, recv0 uint64
	for i, s := range streams {
		count[i] = s.rx.From(s.tx.Participant, "video").Packets
		last[i] = time.Now()
		v, a := s.tx.Sent()
		sent0 += v + a
		recv0 += count[i] + s.rx.From(s.tx.Participant, "audio").Packets
	}
	var frozen time.Duration
	start := time.Now()
	for time.Since(start) < window && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
		now := time.Now()
		for i, s := range streams {
			n := s.rx.From(s.tx.Participant, "video").Packets
			if n != count[i] {
				if gap := now.Sub(last[i]); gap > freezeThreshold {
					frozen += gap
				}
				count[i], last[i] = n, now
			}
		}
	}
	elapsed := time.Since(start)
	var sent1, recv1 uint64
	var lat []time.Duration
	for i, s := range streams {
		if gap := time.Since(last[i]); gap > freezeThreshold {
			frozen += gap
		}
		v, a := s.tx.Sent()
		sent1 += v + a
		recv1 += s.rx.From(s.tx.Participant, "video").Packets + s.rx.From(s.tx.Participant, "audio").Packets
		lat = append(lat, s.rx.From(s.tx.Participant, "video").Latencies...)
		lat = append(lat, s.rx.From(s.tx.Participant, "audio").Latencies...)
	}
	r.FreezeSecsPerMin, r.Delivery = math.NaN(), math.NaN()
	if len(streams) > 0 {
		r.FreezeSecsPerMin = frozen.Seconds() / float64(len(streams)) / elapsed.Minutes()
	}
	if sent1 > sent0 {
		r.Delivery = float64(recv1-recv0) / float64(sent1-sent0)
	}
	r.LatP95, r.JoinP95 = percentileMs(lat, 95), percentileMs(joins, 95)
	return r, nil
}
