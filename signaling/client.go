package signaling

import (
	"errors"
	"time"

	"github.com/pion/webrtc/v4"

	"teleconsult/auth"
	"teleconsult/sfu"
)

// inbound is what a reader hands to its client's loop: a message, or the
// error that ended the socket (fatal when the client broke the protocol).
type inbound struct {
	conn  *conn
	msg   *message
	err   error
	fatal bool
}

// event is what others hand to a client's loop: a message to send, and
// whether the session ends after it (end) or right now (kick).
type event struct {
	msg  *message
	end  bool
	kick error
}

// maxOutbox bounds the messages kept for a participant whose socket
// dropped; past it the session cannot be resumed.
const maxOutbox = 512

// client is one participant's session. Its loop owns everything below
// "owned by the loop"; other goroutines talk to it through its channels.
type client struct {
	srv    *Server
	room   *room
	claims auth.JoinClaims
	resume string
	peer   *sfu.Peer // set before the loop starts, never changed

	inbox  chan inbound
	events chan event
	attach chan *conn
	done   chan struct{} // closed when the loop stops taking messages
	gone   chan struct{} // closed once the session has left the room and the SFU

	// Owned by the loop.
	conn   *conn
	state  string
	outbox []*message
}

var _ sfu.Signaler = (*client)(nil)

func newClient(s *Server, r *room, claims auth.JoinClaims, cn *conn) *client {
	return &client{
		srv: s, room: r, claims: claims, resume: randomID(), conn: cn,
		inbox: make(chan inbound, 16), events: make(chan event, 1024), attach: make(chan *conn),
		done: make(chan struct{}), gone: make(chan struct{}),
	}
}

// receive hands a reader's result to the loop; false once the loop ended.
func (c *client) receive(in inbound) bool {
	select {
	case c.inbox <- in:
		return true
	case <-c.done:
		in.conn.close(errReplaced)
		return false
	}
}

// post hands an event to the loop; it is dropped once the loop ended.
func (c *client) post(ev event) {
	select {
	case c.events <- ev:
	case <-c.done:
	}
}

// kick ends the session with err.
func (c *client) kick(err error) { c.post(event{kick: err}) }

// attachConn gives a resumed socket to the loop; false if it has ended.
func (c *client) attachConn(cn *conn) bool {
	select {
	case c.attach <- cn:
		return true
	case <-c.done:
		return false
	}
}

// Offer implements sfu.Signaler.
func (c *client) Offer(sdp string, streams map[string]sfu.StreamInfo) {
	m := &message{Type: typeOffer, PC: sfu.Down, SDP: sdp, Streams: make(map[string]streamInfo, len(streams))}
	for id, st := range streams {
		cl, _ := c.room.claimsOf(st.Participant)
		m.Streams[id] = streamInfo{Participant: st.Participant, Name: cl.Name, Role: cl.Role, Label: st.Label}
	}
	c.post(event{msg: m})
}

// Candidate implements sfu.Signaler.
func (c *client) Candidate(dir sfu.Direction, cand webrtc.ICECandidateInit) {
	c.post(event{msg: &message{Type: typeCandidate, PC: dir, Candidate: &cand}})
}

// ConnectionState implements sfu.Signaler: a failed down connection is
// restarted from our side (we are its offerer); the client restarts the
// up connection itself.
func (c *client) ConnectionState(dir sfu.Direction, s webrtc.PeerConnectionState) {
	if dir == sfu.Down && s == webrtc.PeerConnectionStateFailed {
		go c.peer.RestartICE()
	}
}

// send writes m to the socket, or keeps it for a resume while there is
// no socket.
func (c *client) send(m *message) bool {
	if c.conn != nil {
		c.conn.send(m)
		return true
	}
	if m.Type == typeStats {
		return true // stale by the time anyone could read it
	}
	if len(c.outbox) >= maxOutbox {
		return false
	}
	c.outbox = append(c.outbox, m)
	return true
}

func (c *client) welcome(resumed bool) *message {
	return &message{
		Type: typeWelcome, Version: ProtocolVersion, Resume: c.resume, Resumed: resumed,
		Participant: c.claims.Participant, Name: c.claims.Name, Role: c.claims.Role,
		State: c.state, Peers: c.room.peers(c),
	}
}

// loop runs the session until it ends: by leaving, by the end of the
// consultation, by a protocol error, or by a resume window that passed.
func (c *client) loop() {
	log := c.srv.log.With("room", c.room.id, "participant", c.claims.Participant)
	var reason error
	defer func() {
		close(c.done)
		if c.conn != nil {
			c.conn.close(reason)
		}
		c.srv.forgetResume(c)
		c.peer.Close()
		c.room.remove(c)
		close(c.gone)
		log.Info("signaling: session ended", "reason", errText(reason))
	}()

	c.send(c.welcome(false))
	if c.state == stateAdmitted {
		if err := c.room.media.Admit(c.claims.Participant); err != nil {
			reason = errEnded
			return
		}
		c.room.broadcast(&message{Type: typeAdmitted, Participant: c.claims.Participant, Name: c.claims.Name, Role: c.claims.Role}, c, false)
	} else {
		c.room.broadcast(&message{Type: typeWaiting, Participant: c.claims.Participant, Name: c.claims.Name, Role: c.claims.Role}, c, true)
		c.srv.hooks.Waiting(c.room.id, c.claims)
	}
	log.Info("signaling: joined", "role", c.claims.Role, "state", c.state)

	var resumeTimer <-chan time.Time
	var statsTick <-chan time.Time
	if c.claims.Role == auth.RolePractitioner {
		t := time.NewTicker(c.srv.cfg.StatsInterval)
		defer t.Stop()
		statsTick = t.C
	}
	for {
		select {
		case in := <-c.inbox:
			if in.conn != c.conn {
				continue // a socket we already replaced
			}
			if in.err != nil {
				if in.fatal {
					reason = in.err
					return
				}
				// The socket dropped: keep the session for a resume.
				c.conn = nil
				resumeTimer = time.After(c.srv.cfg.ResumeWindow)
				log.Info("signaling: socket dropped; waiting for resume")
				continue
			}
			if err := c.handle(in.msg); err != nil {
				reason = err
				return
			}
			switch in.msg.Type {
			case typeLeave:
				return
			case typeEnd:
				reason = errConsultEnd
				return
			}
		case cn := <-c.attach:
			if c.conn != nil {
				c.conn.close(errReplaced)
			}
			c.conn, resumeTimer = cn, nil
			c.send(c.welcome(true))
			for _, m := range c.outbox {
				c.send(m)
			}
			c.outbox = nil
			// An offer may have been lost with the old socket.
			go c.peer.Renegotiate()
			log.Info("signaling: resumed")
		case ev := <-c.events:
			if ev.kick != nil {
				reason = ev.kick
				return
			}
			if ev.msg.Type == typeAdmitted && ev.msg.Participant == c.claims.Participant {
				c.state = stateAdmitted
			}
			if !c.send(ev.msg) {
				reason = errTooSlow
				return
			}
			if ev.end {
				reason = errConsultEnd
				return
			}
		case <-statsTick:
			if c.conn != nil {
				c.send(&message{Type: typeStats, Stats: c.roomStats()})
			}
		case <-resumeTimer:
			reason = errTimeout.With("did not come back in time")
			return
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "left"
	}
	return err.Error()
}

// roomStats collects every participant's media figures.
func (c *client) roomStats() []sfu.PeerStats {
	c.room.mu.Lock()
	peers := make([]*sfu.Peer, 0, len(c.room.clients))
	for _, o := range c.room.clients {
		peers = append(peers, o.peer)
	}
	c.room.mu.Unlock()
	out := make([]sfu.PeerStats, 0, len(peers))
	for _, p := range peers {
		if p != nil {
			out = append(out, p.Stats())
		}
	}
	return out
}

// handle acts on one client message. An error ends the session with the
// close code it maps to.
func (c *client) handle(m *message) error {
	practitioner := c.claims.Role == auth.RolePractitioner
	switch m.Type {
	case typeOffer:
		answer, err := c.peer.HandleOffer(m.SDP, m.Labels)
		if err != nil {
			return errMalformed.With("the offer could not be applied").Wrap(err)
		}
		c.send(&message{Type: typeAnswer, PC: sfu.Up, SDP: answer})
	case typeAnswer:
		if err := c.peer.HandleAnswer(m.SDP); err != nil {
			if errors.Is(err, sfu.ErrNotAnswered) {
				return errOutOfOrder.With("answer without an offer")
			}
			return errMalformed.With("the answer could not be applied").Wrap(err)
		}
	case typeCandidate:
		if err := c.peer.AddCandidate(m.PC, *m.Candidate); err != nil {
			return errMalformed.With("the candidate could not be added").Wrap(err)
		}
	case typeRestart:
		go c.peer.RestartICE()
	case typeAdmit:
		if !practitioner {
			return errForbidden.With("only the practitioner admits")
		}
		if err := c.room.admit(m.Participant); err != nil {
			c.send(&message{Type: typeError, Code: "not_waiting", Message: "nobody by that id is waiting"})
		}
	case typeEnd:
		if !practitioner {
			return errForbidden.With("only the practitioner ends the consultation")
		}
		c.send(&message{Type: typeEnded, Participant: c.claims.Participant, Name: c.claims.Name, Role: c.claims.Role})
		c.room.end(c)
	case typeInvite:
		if !practitioner {
			return errForbidden.With("only the practitioner invites")
		}
		tok, exp, err := c.room.invite(m.Name)
		if err != nil {
			return err
		}
		c.send(&message{Type: typeInvite, Token: tok, Expires: exp.Unix(), Name: m.Name})
	case typeChat, typeFile:
		if c.state != stateAdmitted {
			c.send(&message{Type: typeError, Code: "not_admitted", Message: "chat opens once you are admitted"})
			return nil
		}
		out := &message{Type: m.Type, Participant: c.claims.Participant, Name: c.claims.Name, Role: c.claims.Role, Text: m.Text, File: m.File, Time: time.Now().UnixMilli()}
		if m.Type == typeChat {
			c.srv.hooks.Chat(c.room.id, c.claims, m.Text)
		}
		c.room.broadcast(out, nil, true)
	case typeLeave:
	}
	return nil
}
