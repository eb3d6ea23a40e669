package main

import (
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// shapedPath puts a lossy, jittery network between one side of the
// consults (the "mobile" participant) and the SFU, without touching
// either: a signalling proxy rewrites every UDP ICE candidate, both ways,
// to a loopback relay socket, and the relay forwards each datagram to the
// real address, dropping some and delaying each by a random amount.
// TCP candidates are withheld so that media cannot go around the relay.
type shapedPath struct {
	upstream string  // ws://host/api/v1/signal of the real server
	loss     float64 // probability of dropping a datagram
	jitter   time.Duration

	mu     sync.Mutex
	byOrig map[string]*relaySock
	closed bool

	hs   *http.Server
	addr string
}

// relaySock stands, on loopback, for one real address: what reaches it
// is forwarded to that address, from the sender's own relay socket.
type relaySock struct {
	conn *net.UDPConn
	orig *net.UDPAddr
}

func newShapedPath(upstream string, loss float64, jitter time.Duration) (*shapedPath, error) {
	p := &shapedPath{upstream: upstream, loss: loss, jitter: jitter, byOrig: map[string]*relaySock{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/signal", p.proxy)
	p.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go p.hs.Serve(ln)
	return p, nil
}

// URL is the signalling URL that mobile clients dial.
func (p *shapedPath) URL() string { return "ws://" + p.addr + "/api/v1/signal" }

func (p *shapedPath) close() {
	p.hs.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, s := range p.byOrig {
		s.conn.Close()
	}
}

// sockFor returns the relay socket standing for a real address,
// creating it (and its forwarding loop) on first use.
func (p *shapedPath) sockFor(orig *net.UDPAddr) (*relaySock, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.byOrig[orig.String()]; ok {
		return s, nil
	}
	if p.closed {
		return nil, net.ErrClosed
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(1 << 20)
	s := &relaySock{conn: conn, orig: orig}
	p.byOrig[orig.String()] = s
	go p.forward(s)
	return s, nil
}

// forward relays what reaches s to s.orig, shaped, from the relay socket
// of the sender, so that each side only ever sees relay addresses.
func (p *shapedPath) forward(s *relaySock) {
	buf := make([]byte, 1600)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		src, err := p.sockFor(from)
		if err != nil {
			return
		}
		if rand.Float64() < p.loss {
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		delay := time.Duration(rand.Int64N(int64(p.jitter) + 1))
		time.AfterFunc(delay, func() { _, _ = src.conn.WriteToUDP(pkt, s.orig) })
	}
}

// rewriteCandidate maps a UDP candidate's address to its relay socket;
// ok is false for a candidate to withhold (TCP, unparsable).
func (p *shapedPath) rewriteCandidate(c string) (string, bool) {
	prefix := ""
	if strings.HasPrefix(c, "a=") {
		prefix, c = "a=", c[2:]
	}
	f := strings.Fields(c)
	if len(f) < 8 || !strings.EqualFold(f[2], "udp") {
		return "", false
	}
	port, err := strconv.Atoi(f[5])
	ip := net.ParseIP(f[4])
	if err != nil || ip == nil || ip.To4() == nil {
		return "", false
	}
	s, err := p.sockFor(&net.UDPAddr{IP: ip, Port: port})
	if err != nil {
		return "", false
	}
	la := s.conn.LocalAddr().(*net.UDPAddr)
	f[4], f[5] = la.IP.String(), strconv.Itoa(la.Port)
	return prefix + strings.Join(f, " "), true
}

// rewrite changes the candidates of one signalling message; ok is false
// when the message must not be passed on.
func (p *shapedPath) rewrite(data []byte) ([]byte, bool) {
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return data, true
	}
	changed := false
	if m["type"] == "candidate" {
		if c, ok := m["candidate"].(map[string]any); ok {
			if s, ok := c["candidate"].(string); ok && s != "" {
				r, keep := p.rewriteCandidate(s)
				if !keep {
					return nil, false
				}
				c["candidate"] = r
				changed = true
			}
		}
	}
	if sdp, ok := m["sdp"].(string); ok {
		lines := strings.Split(sdp, "\r\n")
		out := lines[:0]
		for _, l := range lines {
			if strings.HasPrefix(l, "a=candidate:") {
				r, keep := p.rewriteCandidate(l)
				if !keep {
					continue
				}
				l = r
			}
			out = append(out, l)
		}
		m["sdp"] = strings.Join(out, "\r\n")
		changed = true
	}
	if !changed {
		return data, true
	}
	b, err := json.Marshal(m)
	if err != nil {
		return data, true
	}
	return b, true
}

var proxyUpgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// proxy relays one client's signalling to the real server, rewriting
// candidates both ways.
func (p *shapedPath) proxy(w http.ResponseWriter, r *http.Request) {
	up, _, err := websocket.DefaultDialer.DialContext(r.Context(), p.upstream, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer up.Close()
	down, err := proxyUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer down.Close()
	pump := func(from, to *websocket.Conn, done chan<- struct{}) {
		defer close(done)
		for {
			typ, data, err := from.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if asClose(err, &ce) {
					_ = to.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ce.Text))
				}
				return
			}
			if typ == websocket.TextMessage {
				var keep bool
				if data, keep = p.rewrite(data); !keep {
					continue
				}
			}
			_ = to.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := to.WriteMessage(typ, data); err != nil {
				return
			}
		}
	}
	a, b := make(chan struct{}), make(chan struct{})
	go pump(down, up, a)
	go pump(up, down, b)
	select {
	case <-a:
	case <-b:
	}
}

func asClose(err error, ce **websocket.CloseError) bool {
	c, ok := err.(*websocket.CloseError)
	if ok {
		*ce = c
	}
	return ok
}
