package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"teleconsult/auth"
	"teleconsult/server"
	"teleconsult/sfu"
	"teleconsult/signaling"
)

type noHooks struct{}

func (noHooks) Waiting(string, auth.JoinClaims)      {}
func (noHooks) Ended(string, auth.JoinClaims)        {}
func (noHooks) Chat(string, auth.JoinClaims, string) {}

// signalNode is the signalling and media of one node, on loopback.
type signalNode struct {
	sig   *signaling.Server
	media *sfu.SFU
	hs    *http.Server
	url   string
}

func startSignalNode(t *testing.T, secret []byte) *signalNode {
	t.Helper()
	media, err := sfu.New(sfu.Config{IncludeLoopback: true, IPFilter: func(ip net.IP) bool { return ip.IsLoopback() }})
	if err != nil {
		t.Fatal(err)
	}
	n := &signalNode{media: media, sig: signaling.NewServer(signaling.Config{Media: media}, server.JoinSigner(secret), noHooks{})}
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/signal", n.sig)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.hs = &http.Server{Handler: mux}
	n.url = "ws://" + l.Addr().String() + "/api/v1/signal"
	go n.hs.Serve(l)
	t.Cleanup(func() { n.stop(); media.Close() })
	return n
}

// stop takes the node away: its listener and every socket close.
func (n *signalNode) stop() {
	n.hs.Close()
	n.sig.Close()
}

// TestLoadtestResumesAfterANodeLoss runs the load command over two nodes
// and stops one mid-run: the consults it held resume on the other, both
// clients together, and the report says how many and how fast.
func TestLoadtestResumesAfterANodeLoss(t *testing.T) {
	dir := t.TempDir()
	secret, err := (&Config{DataDir: dir}).secret()
	if err != nil {
		t.Fatal(err)
	}
	a, b := startSignalNode(t, secret), startSignalNode(t, secret)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runLoadtest(ctx, []string{"--data-dir", dir, "--signal-url", a.url + "," + b.url, "--rooms", "4",
			"--duration", "5s", "--video-bitrate", "200000"}, &out)
	}()
	// Two rooms on each node, media flowing, then a goes away.
	for a.media.Counters().Participants < 4 || b.media.Counters().Participants < 4 || a.media.Counters().ForwardedBytes == 0 {
		select {
		case err := <-done:
			t.Fatalf("loadtest ended before a node was lost: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("the rooms did not start on both nodes (a %+v, b %+v)", a.media.Counters(), b.media.Counters())
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(time.Second)
	a.stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rep := out.String()
	t.Logf("report:\n%s", rep)
	if c := b.media.Counters(); c.Rooms < 4 {
		t.Errorf("%d rooms on the live node, want all 4 (both clients of each lost room together)", c.Rooms)
	}
	if !regexp.MustCompile(`consults: 4 \(0 failed\)`).MatchString(rep) {
		t.Errorf("consults failed")
	}
	m := regexp.MustCompile(`interrupted \(socket lost\): 2, resumed: 2, media both ways again after p50 \S+, max (\S+)`).FindStringSubmatch(rep)
	if m == nil {
		t.Fatal("the report does not say that the lost node's 2 consults resumed")
	}
	if d, err := time.ParseDuration(m[1]); err != nil || d > 10*time.Second {
		t.Errorf("resumed after %s, the service promises 10 s", m[1])
	}
}
