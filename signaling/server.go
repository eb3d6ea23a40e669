// Package signaling is the WebSocket signalling of video consultations:
// it admits participants on their join token, runs the waiting room,
// relays SDP, ICE candidates, chat and small files, and drives the SFU.
// PROTOCOL.md describes the protocol message by message.
//
// Each client has a reader goroutine and a writer goroutine per socket,
// and one loop that owns its state and outlives a dropped socket for the
// resume window. Nobody else writes to a socket: Pion callbacks and other
// clients post messages to the loop.
package signaling

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"teleconsult/auth"
	"teleconsult/sfu"
)

// Hooks is what the signalling server tells the rest of the service.
// Methods are called from a client's loop: keep them short (queue slow
// work), and never call back into the Server from them.
type Hooks interface {
	// Waiting is called when a patient or guest enters the waiting room.
	Waiting(room string, who auth.JoinClaims)
	// Ended is called once when the practitioner ends the consultation;
	// the appointment is then completed.
	Ended(room string, by auth.JoinClaims)
	// Chat is called for each chat message, so that it can be kept
	// (encrypted) with the consultation.
	Chat(room string, from auth.JoinClaims, text string)
}

// AdmitHook is implemented by Hooks that want to know when a patient or
// guest is admitted (so that a re-join on another node, after a node
// failure, can skip the waiting room). Called from a client's loop.
type AdmitHook interface {
	Admitted(room string, who auth.JoinClaims)
}

// CloseHook is implemented by Hooks that want to know when a room closed
// because it stayed empty for EmptyRoomTimeout (everyone left without
// ending the consultation), so that the room stops counting as this
// node's load. Called from the room's timer, not from a client's loop.
type CloseHook interface {
	Closed(room string)
}

// Config tunes the signalling server. Zero values give the defaults.
type Config struct {
	// Media is the SFU to forward media with; nil creates one with
	// sfu.Config{} (any UDP port, no loopback candidates).
	Media *sfu.SFU
	// AllowedOrigins lists the origins (scheme://host[:port]) whose pages
	// may open the socket; empty allows the server's own host only.
	AllowedOrigins []string
	// ResumeWindow is how long a participant whose socket dropped keeps
	// its place and media (default 30 s).
	ResumeWindow time.Duration
	// EmptyRoomTimeout is how long an empty room waits before closing
	// (default 2 minutes).
	EmptyRoomTimeout time.Duration
	// GuestTokenTTL is how long a guest invitation stays valid (default 1 h).
	GuestTokenTTL time.Duration
	// StatsInterval is how often the practitioner gets quality figures
	// (default 2 s).
	StatsInterval time.Duration
	// EndedMemory is how long an ended room refuses joins (default 24 h).
	EndedMemory time.Duration
	// Logger receives operational logs (never tokens or chat).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.ResumeWindow == 0 {
		c.ResumeWindow = 30 * time.Second
	}
	if c.EmptyRoomTimeout == 0 {
		c.EmptyRoomTimeout = 2 * time.Minute
	}
	if c.GuestTokenTTL == 0 {
		c.GuestTokenTTL = time.Hour
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = 2 * time.Second
	}
	if c.EndedMemory == 0 {
		c.EndedMemory = 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server accepts signalling sockets at GET /api/v1/signal.
type Server struct {
	cfg      Config
	signer   *auth.JoinSigner
	hooks    Hooks
	media    *sfu.SFU
	upgrader websocket.Upgrader
	log      *slog.Logger
	wg       sync.WaitGroup

	mu      sync.Mutex // guards the maps below, never held while calling a room
	rooms   map[string]*room
	ended   map[string]time.Time // room id -> when it ended
	resumes map[string]*client   // resume secret -> live client
	closed  bool
}

// NewServer returns a signalling server that admits holders of tokens
// signed by signer and reports to hooks.
func NewServer(cfg Config, signer *auth.JoinSigner, hooks Hooks) *Server {
	cfg.defaults()
	s := &Server{
		cfg: cfg, signer: signer, hooks: hooks, media: cfg.Media, log: cfg.Logger,
		rooms: make(map[string]*room), ended: make(map[string]time.Time), resumes: make(map[string]*client),
	}
	if s.media == nil {
		m, err := sfu.New(sfu.Config{})
		if err != nil {
			panic("signaling: default SFU: " + err.Error())
		}
		s.media = m
	}
	s.upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}
	if len(cfg.AllowedOrigins) > 0 {
		s.upgrader.CheckOrigin = func(r *http.Request) bool {
			o := r.Header.Get("Origin")
			if o == "" {
				return true // not a browser
			}
			u, err := url.Parse(o)
			return err == nil && slices.Contains(cfg.AllowedOrigins, u.Scheme+"://"+u.Host)
		}
	}
	return s
}

// Media returns the SFU, for metrics.
func (s *Server) Media() *sfu.SFU { return s.media }

// ServeHTTP upgrades the request to a WebSocket and serves one client.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	ws.SetReadLimit(maxMessageBytes)
	cn := newConn(ws)
	_ = ws.SetReadDeadline(time.Now().Add(helloTimeout))
	_, data, err := ws.ReadMessage()
	if err != nil {
		if errors.Is(readError(err), errTooBig) {
			cn.close(errTooBig)
		} else {
			cn.close(errTimeout)
		}
		return
	}
	m, err := decode(data)
	if err == nil && m.Type != typeHello {
		err = errOutOfOrder.With("the first message must be hello")
	}
	if err == nil && m.Version != ProtocolVersion {
		err = errVersion.Withf("unsupported protocol version; this server speaks version %d", ProtocolVersion)
	}
	var c *client
	if err == nil {
		c, err = s.enter(m, cn)
	}
	if err != nil {
		cn.close(err)
		return
	}
	s.readLoop(cn, c)
}

// readLoop passes cn's messages to c's loop until the socket fails.
func (s *Server) readLoop(cn *conn, c *client) {
	ws := cn.ws
	_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
	ws.SetPongHandler(func(string) error { return ws.SetReadDeadline(time.Now().Add(readTimeout)) })
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			err = readError(err)
			c.receive(inbound{conn: cn, err: err, fatal: errors.Is(err, errTooBig)})
			return
		}
		_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
		m, err := decode(data)
		if err == nil && m.Type == typeHello {
			err = errOutOfOrder.With("hello was already received")
		}
		if err != nil {
			c.receive(inbound{conn: cn, err: err, fatal: true})
			return
		}
		if !c.receive(inbound{conn: cn, msg: m}) {
			return
		}
	}
}

// enter admits the sender of hello m: it resumes a session or joins its
// room with a fresh one.
func (s *Server) enter(m *message, cn *conn) (*client, error) {
	if m.Resume != "" {
		s.mu.Lock()
		// A map lookup is fine here: the secret is 128 random bits, so
		// timing tells an attacker nothing usable.
		c := s.resumes[m.Resume]
		s.mu.Unlock()
		if c != nil && c.attachConn(cn) {
			return c, nil
		}
		if m.Token == "" {
			return nil, errOutOfOrder.With("this session cannot be resumed; join again")
		}
	}
	claims, err := s.signer.Verify(m.Token, time.Now())
	if err != nil {
		return nil, err
	}
	if m.Room != "" && m.Room != claims.Room {
		return nil, errOtherRoom
	}
	r, err := s.room(claims.Room)
	if err != nil {
		return nil, err
	}
	c := newClient(s, r, claims, cn)
	state, old, err := r.enter(c)
	if err != nil {
		return nil, err
	}
	if old != nil {
		old.kick(errReplaced)
		<-old.gone
	}
	c.state = state
	c.peer, err = r.media.Join(claims.Participant, c)
	if err != nil {
		r.remove(c)
		close(c.done)
		close(c.gone)
		return nil, errEnded.Wrap(err)
	}
	s.mu.Lock()
	s.resumes[c.resume] = c
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.loop()
	}()
	return c, nil
}

// room returns the open room id, creating it on first join.
func (s *Server) room(id string) (*room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errShutdown
	}
	if at, ok := s.ended[id]; ok {
		if time.Since(at) < s.cfg.EndedMemory {
			return nil, errEnded
		}
		delete(s.ended, id)
	}
	r := s.rooms[id]
	if r == nil || r.isClosed() { // a room closing for idleness is replaced
		r = newRoom(s, id)
		s.rooms[id] = r
	}
	return r, nil
}

// forgetRoom drops a closed room; ended rooms are remembered so that
// their tokens cannot open them again.
func (s *Server) forgetRoom(r *room, ended bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rooms[r.id] == r {
		delete(s.rooms, r.id)
	}
	if ended {
		s.ended[r.id] = time.Now()
	}
	for id, at := range s.ended {
		if time.Since(at) > s.cfg.EndedMemory {
			delete(s.ended, id)
		}
	}
}

func (s *Server) forgetResume(c *client) {
	s.mu.Lock()
	if s.resumes[c.resume] == c {
		delete(s.resumes, c.resume)
	}
	s.mu.Unlock()
}

// Close disconnects every client (telling them to reconnect later) and
// closes the rooms.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	for _, r := range rooms {
		r.shutdown()
	}
	s.wg.Wait()
}

// randomID returns 128 random bits, base64url-encoded.
func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
