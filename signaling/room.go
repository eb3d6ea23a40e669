package signaling

import (
	"sync"
	"time"

	"teleconsult/auth"
	"teleconsult/sfu"
)

// Participant states.
const (
	stateWaiting  = "waiting"
	stateAdmitted = "admitted"
)

// room is the signalling side of one video room: who is in it, who is
// waiting, which guest invitations are open. Its mutex is never held
// while calling the SFU or a hook (the SFU calls back into clients).
type room struct {
	id    string
	srv   *Server
	media *sfu.Room

	mu           sync.Mutex
	clients      map[string]*client // by participant id
	admitted     map[string]bool    // participants admitted once stay admitted across reconnects
	patient      string             // the first patient and practitioner to join own those roles
	practitioner string
	invites      map[string]bool // guest participant id -> used
	ended        bool
	closed       bool
	idle         *time.Timer
}

func newRoom(s *Server, id string) *room {
	return &room{
		id: id, srv: s, media: s.media.NewRoom(id),
		clients: make(map[string]*client), admitted: make(map[string]bool), invites: make(map[string]bool),
	}
}

// enter places c in the room and returns its state, and the client it
// replaces (the same participant on an older socket), if any.
func (r *room) enter(c *client) (state string, old *client, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return "", nil, errEnded
	}
	if r.closed {
		return "", nil, errShutdown
	}
	who := c.claims.Participant
	switch c.claims.Role {
	case auth.RolePractitioner:
		if r.practitioner != "" && r.practitioner != who {
			return "", nil, errRoomFull
		}
		r.practitioner = who
		r.admitted[who] = true
	case auth.RolePatient:
		if r.patient != "" && r.patient != who {
			return "", nil, errRoomFull
		}
		r.patient = who
		if c.claims.Admitted {
			r.admitted[who] = true // admitted before, on a node that has since failed
		}
	case auth.RoleGuest:
		used, ok := r.invites[who]
		if !ok || used {
			return "", nil, errNotInvited
		}
		r.invites[who] = true
	default:
		return "", nil, errForbidden
	}
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
	old = r.clients[who]
	r.clients[who] = c
	if r.admitted[who] {
		return stateAdmitted, old, nil
	}
	return stateWaiting, old, nil
}

// remove takes c out of the room when its loop ends and tells the others
// it left; an empty room closes after a while.
func (r *room) remove(c *client) {
	r.mu.Lock()
	if r.clients[c.claims.Participant] != c {
		r.mu.Unlock()
		return // replaced by a newer session of the same participant
	}
	delete(r.clients, c.claims.Participant)
	others := r.othersLocked(c)
	if len(r.clients) == 0 && !r.ended && !r.closed {
		r.idle = time.AfterFunc(r.srv.cfg.EmptyRoomTimeout, r.closeIfEmpty)
	}
	r.mu.Unlock()
	for _, o := range others {
		o.post(event{msg: &message{Type: typeLeft, Participant: c.claims.Participant, Name: c.claims.Name, Role: c.claims.Role}})
	}
}

func (r *room) closeIfEmpty() {
	r.mu.Lock()
	if len(r.clients) > 0 || r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.media.Close()
	r.srv.forgetRoom(r, false)
	if h, ok := r.srv.hooks.(CloseHook); ok {
		h.Closed(r.id)
	}
}

func (r *room) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// othersLocked returns the clients other than c. Call with r.mu held.
func (r *room) othersLocked(c *client) []*client {
	l := make([]*client, 0, len(r.clients))
	for _, o := range r.clients {
		if o != c {
			l = append(l, o)
		}
	}
	return l
}

// peers returns everyone but c, with their state.
func (r *room) peers(c *client) []peerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	var l []peerInfo
	for _, o := range r.othersLocked(c) {
		st := stateWaiting
		if r.admitted[o.claims.Participant] {
			st = stateAdmitted
		}
		l = append(l, peerOf(o.claims, st))
	}
	return l
}

// claimsOf returns what the room knows of participant id.
func (r *room) claimsOf(id string) (auth.JoinClaims, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.clients[id]; c != nil {
		return c.claims, true
	}
	return auth.JoinClaims{}, false
}

// broadcast posts m to every client but except (which may be nil); with
// admittedOnly, only to admitted participants.
func (r *room) broadcast(m *message, except *client, admittedOnly bool) {
	r.mu.Lock()
	var to []*client
	for id, o := range r.clients {
		if o != except && (!admittedOnly || r.admitted[id]) {
			to = append(to, o)
		}
	}
	r.mu.Unlock()
	for _, o := range to {
		o.post(event{msg: m})
	}
}

// admit lets a waiting participant in; media starts flowing both ways.
func (r *room) admit(id string) error {
	r.mu.Lock()
	c := r.clients[id]
	if c == nil || r.ended {
		r.mu.Unlock()
		return errOutOfOrder.With("nobody by that id is waiting")
	}
	already := r.admitted[id]
	r.admitted[id] = true
	r.mu.Unlock()
	if already {
		return nil
	}
	if err := r.media.Admit(id); err != nil {
		return errEnded.Wrap(err)
	}
	r.broadcast(&message{Type: typeAdmitted, Participant: id, Name: c.claims.Name, Role: c.claims.Role}, nil, false)
	if h, ok := r.srv.hooks.(AdmitHook); ok {
		h.Admitted(r.id, c.claims)
	}
	return nil
}

// invite mints a one-time guest token for this room.
func (r *room) invite(name string) (string, time.Time, error) {
	if name == "" {
		name = "Guest"
	}
	exp := time.Now().Add(r.srv.cfg.GuestTokenTTL)
	id := "guest-" + randomID()
	tok, err := r.srv.signer.Sign(auth.JoinClaims{Room: r.id, Participant: id, Name: name, Role: auth.RoleGuest, Expires: exp})
	if err != nil {
		return "", time.Time{}, err
	}
	r.mu.Lock()
	r.invites[id] = false
	r.mu.Unlock()
	return tok, exp, nil
}

// end closes the consultation for everyone, once.
func (r *room) end(by *client) {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	r.ended = true
	to := r.othersLocked(nil)
	r.mu.Unlock()
	r.srv.hooks.Ended(r.id, by.claims)
	m := &message{Type: typeEnded, Participant: by.claims.Participant, Name: by.claims.Name, Role: by.claims.Role}
	for _, c := range to {
		c.post(event{msg: m, end: true})
	}
	r.media.Close()
	r.srv.forgetRoom(r, true)
}

// shutdown disconnects everyone because the server stops.
func (r *room) shutdown() {
	r.mu.Lock()
	r.closed = true
	to := r.othersLocked(nil)
	if r.idle != nil {
		r.idle.Stop()
	}
	r.mu.Unlock()
	for _, c := range to {
		c.kick(errShutdown)
	}
	r.media.Close()
}
