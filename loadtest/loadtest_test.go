package loadtest_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"teleconsult/auth"
	"teleconsult/loadtest"
	"teleconsult/sfu"
	"teleconsult/signaling"
)

const testKey = "load test key, load test key...."

type noHooks struct{}

func (noHooks) Waiting(string, auth.JoinClaims)      {}
func (noHooks) Ended(string, auth.JoinClaims)        {}
func (noHooks) Chat(string, auth.JoinClaims, string) {}

// TestMain doubles as the server process of TestRunAgainstServerProcess:
// with LOADTEST_SERVE_ADDR set, it serves the signalling server there
// until killed, so that the server's CPU time is measured on its own.
func TestMain(m *testing.M) {
	if addr := os.Getenv("LOADTEST_SERVE_ADDR"); addr != "" {
		serve(addr)
		return
	}
	os.Exit(m.Run())
}

func newServer() (*signaling.Server, *sfu.SFU) {
	media, err := sfu.New(sfu.Config{IncludeLoopback: true, IPFilter: func(ip net.IP) bool { return ip.IsLoopback() }})
	if err != nil {
		panic(err)
	}
	return signaling.NewServer(signaling.Config{Media: media}, auth.NewJoinSigner([]byte(testKey)), noHooks{}), media
}

func serve(addr string) {
	if path := os.Getenv("LOADTEST_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	srv, media := newServer()
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/signal", srv)
	hs := &http.Server{Addr: addr, Handler: mux}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		<-ch
		// Heap allocations per forwarded packet, the whole server included
		// (Pion's SRTP, interceptors and ICE as well as ours).
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if n := media.Counters().ForwardedPackets; n > 0 {
			fmt.Fprintf(os.Stderr, "server: %d packets forwarded, %.2f heap allocations per forwarded packet\n", n, float64(ms.Mallocs)/float64(n))
		}
		srv.Close()
		hs.Close()
	}()
	_ = hs.ListenAndServe()
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestRunAgainstServerProcess runs consults against a server in its own
// process and checks that the report says the calls worked. Set
// LOADTEST_ROOMS and LOADTEST_SECONDS for a real load run (e.g. 50 and 20);
// the report is logged with -v.
func TestRunAgainstServerProcess(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOADTEST_SERVE_ADDR="+addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("server did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rooms, secs := envInt("LOADTEST_ROOMS", 2), envInt("LOADTEST_SECONDS", 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second+2*time.Minute)
	defer cancel()
	rep, err := loadtest.Run(ctx, loadtest.Config{
		SignalURLs: []string{"ws://" + addr + "/api/v1/signal"},
		Signer:     auth.NewJoinSigner([]byte(testKey)),
		Rooms:      rooms,
		Duration:   time.Duration(secs) * time.Second,
		ServerPID:  cmd.Process.Pid,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("load report:\n%s", rep)
	if rep.Failed != 0 || rep.DeliveryRatio < 0.9 || rep.JoinP50 <= 0 || rep.ServerCPU <= 0 || rep.LatencyP50 <= 0 {
		t.Fatalf("load run did not work:\n%s", rep)
	}
}

func TestRunInProcess(t *testing.T) {
	srv, media := newServer()
	defer media.Close()
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/signal", srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(l)
	defer hs.Close()
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		SignalURLs: []string{"ws://" + l.Addr().String() + "/api/v1/signal"},
		Signer:     auth.NewJoinSigner([]byte(testKey)), Rooms: 1, Duration: 2 * time.Second, VideoBitrate: 500_000, Simulcast: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("in-process report:\n%s", rep)
	if rep.Failed != 0 || !rep.CPUIncludesClients || rep.StreamSeconds < 3 {
		t.Fatalf("unexpected report:\n%s", rep)
	}
}
