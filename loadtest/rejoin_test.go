package loadtest_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"teleconsult/auth"
	"teleconsult/loadtest"
	"teleconsult/signaling"
)

// node is a signalling server on loopback, as one node of a cluster.
type node struct {
	srv *signaling.Server
	hs  *http.Server
	url string
}

func startNode(t *testing.T) *node {
	t.Helper()
	srv, media := newServer()
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/signal", srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{srv: srv, hs: &http.Server{Handler: mux}, url: "ws://" + l.Addr().String() + "/api/v1/signal"}
	go n.hs.Serve(l)
	t.Cleanup(func() { n.stop(); media.Close() })
	return n
}

func (n *node) stop() {
	n.srv.Close()
	n.hs.Close()
}

// TestClientsRejoinAnotherNode: when the node of a call stops, both
// clients ask for a new placement, join the other node and media flows
// again both ways within the 10 seconds the service promises.
func TestClientsRejoinAnotherNode(t *testing.T) {
	a, b := startNode(t), startNode(t)
	signer := auth.NewJoinSigner([]byte(testKey))
	const room = "failover-1"
	token := func(who, role string, admitted bool) string {
		tok, err := signer.Sign(auth.JoinClaims{Room: room, Participant: who, Name: who, Role: role, Expires: time.Now().Add(time.Minute), Admitted: admitted})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// The placement the join API would answer once a is gone: b, and the
	// patient already admitted.
	rejoin := func(who, role string) func(context.Context) (string, string, error) {
		return func(context.Context) (string, string, error) {
			return b.url, token(who, role, role == auth.RolePatient), nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	dial := func(who, role string) *loadtest.Client {
		c, err := loadtest.Dial(ctx, loadtest.ClientConfig{SignalURL: a.url, Token: token(who, role, false), VideoBitrate: 300_000, Audio: true, Rejoin: rejoin(who, role)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if err := c.Publish(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	doc := dial("doc", auth.RolePractitioner)
	pat := dial("pat", auth.RolePatient)
	if _, err := doc.Wait(ctx, "waiting"); err != nil {
		t.Fatal(err)
	}
	if err := doc.Send(map[string]any{"type": "admit", "participant": "pat"}); err != nil {
		t.Fatal(err)
	}
	packets := func(c *loadtest.Client, from string) (v, a uint64) {
		return c.Total(from, "video").Packets, c.Total(from, "audio").Packets
	}
	waitFlow := func(what string, since [4]uint64, d time.Duration) time.Duration {
		start := time.Now()
		for {
			dv, da := packets(doc, "pat")
			pv, pa := packets(pat, "doc")
			if dv > since[0]+10 && da > since[1]+10 && pv > since[2]+10 && pa > since[3]+10 {
				return time.Since(start)
			}
			if time.Since(start) > d {
				t.Fatalf("%s: media did not flow both ways (doc got %d/%d, pat got %d/%d, before %v)", what, dv, da, pv, pa, since)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFlow("call on a", [4]uint64{}, 15*time.Second)

	a.stop() // the node goes away
	dv, da := packets(doc, "pat")
	pv, pa := packets(pat, "doc")
	took := waitFlow("after a stopped", [4]uint64{dv, da, pv, pa}, 10*time.Second)
	t.Logf("media flowing again both ways %v after the node stopped", took.Round(10*time.Millisecond))
	// Each client saw its socket close (1001), then rejoined.
	for _, c := range []*loadtest.Client{doc, pat} {
		if _, err := c.Wait(ctx, "closed"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(ctx, "rejoined"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRejoinURLIsTheRoomsFirstLiveNode: after a node loss, both
// participants of a room ask where to join again; the answer depends only
// on the room and on which nodes answer, so they meet on one node, and
// rooms of the lost node spread over the live ones.
func TestRejoinURLIsTheRoomsFirstLiveNode(t *testing.T) {
	var urls []string
	var ls []net.Listener
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls = append(ls, l)
		urls = append(urls, "ws://"+l.Addr().String()+"/api/v1/signal")
	}
	ctx := context.Background()
	for i := range 6 {
		if u, err := loadtest.RejoinURL(ctx, urls, i); err != nil || u != urls[i%3] {
			t.Fatalf("room %d with every node up: %q %v, want its own %q", i, u, err, urls[i%3])
		}
	}
	ls[1].Close() // node 1 is lost
	for i, want := range []int{0, 2, 2, 0, 0, 2} {
		if u, err := loadtest.RejoinURL(ctx, urls, i); err != nil || u != urls[want] {
			t.Fatalf("room %d with node 1 lost: %q %v, want %q", i, u, err, urls[want])
		}
	}
	ls[0].Close()
	ls[2].Close()
	if u, err := loadtest.RejoinURL(ctx, urls, 0); err == nil {
		t.Fatalf("every node lost: %q", u)
	}
}
