package sfu

import (
	"strconv"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Room is one video room. Its mutex guards membership, admission and the
// list of published tracks; forwarding itself never takes it.
type Room struct {
	ID  string
	sfu *SFU

	mu         sync.Mutex
	peers      map[string]*Peer
	closed     bool
	nextStream int
}

// NewRoom returns an empty room.
func (s *SFU) NewRoom(id string) *Room {
	s.rooms.Add(1)
	return &Room{ID: id, sfu: s, peers: make(map[string]*Peer)}
}

// Join adds participant id to the room with two fresh peer connections.
// The participant neither sends to nor receives from anyone until Admit.
func (r *Room) Join(id string, sig Signaler) (*Peer, error) {
	p := &Peer{ID: id, room: r, sig: sig, downs: make(map[*upTrack]*downTrack), labels: make(map[string]string),
		streamIDs: make(map[string]string), feedback: newUpFeedback(), done: make(chan struct{})}
	var err error
	if p.up, err = r.sfu.upAPI.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, err
	}
	if p.down, err = r.sfu.downAPI.NewPeerConnection(webrtc.Configuration{}); err != nil {
		p.up.Close()
		return nil, err
	}
	r.mu.Lock()
	if r.closed || r.peers[id] != nil {
		closed := r.closed
		r.mu.Unlock()
		p.up.Close()
		p.down.Close()
		if closed {
			return nil, ErrClosed
		}
		return nil, ErrPeerExists
	}
	r.peers[id] = p
	r.mu.Unlock()
	r.sfu.participants.Add(1)

	for dir, pc := range map[Direction]*webrtc.PeerConnection{Up: p.up, Down: p.down} {
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c != nil {
				sig.Candidate(dir, c.ToJSON())
			}
		})
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) { sig.ConnectionState(dir, s) })
	}
	p.up.OnTrack(p.onTrack)
	go p.feedbackLoop()
	return p, nil
}

// Admit lets participant id send to and receive from the other admitted
// participants. Admitting twice is harmless.
func (r *Room) Admit(id string) error {
	r.mu.Lock()
	p := r.peers[id]
	if p == nil || r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if p.admitted {
		r.mu.Unlock()
		return nil
	}
	p.admitted = true
	type pair struct {
		sub *Peer
		t   *upTrack
	}
	var pairs []pair
	for _, q := range r.peers {
		if q == p || !q.admitted {
			continue
		}
		for _, t := range q.tracks {
			pairs = append(pairs, pair{p, t})
		}
		for _, t := range p.tracks {
			pairs = append(pairs, pair{q, t})
		}
	}
	r.mu.Unlock()
	for _, x := range pairs {
		x.sub.subscribe(x.t)
	}
	return nil
}

// Close disconnects everyone and frees the room.
func (r *Room) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	peers := make([]*Peer, 0, len(r.peers))
	for _, p := range r.peers {
		peers = append(peers, p)
	}
	r.mu.Unlock()
	for _, p := range peers {
		p.Close()
	}
	r.sfu.rooms.Add(-1)
}

// publish records a new track of p and returns it with the admitted
// participants that should receive it (none while p is not admitted).
func (r *Room) publish(p *Peer, receiver *webrtc.RTPReceiver, remote *webrtc.TrackRemote, label string, twccID uint8) (t *upTrack, isNew bool, subs []*Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.peers[p.ID] != p {
		return nil, false, nil
	}
	for _, x := range p.tracks {
		if x.receiver == receiver {
			return x, false, nil
		}
	}
	// The tracks of one stream of the publisher (the camera's sound and
	// picture) share one stream id at the receivers, so that a page plays
	// them together in one element, in sync; another stream (a screen)
	// gets its own. A track without a stream is a stream of its own.
	sid := p.streamIDs[remote.StreamID()]
	if sid == "" || remote.StreamID() == "" || remote.StreamID() == "-" {
		r.nextStream++
		sid = "s" + strconv.Itoa(r.nextStream)
		if remote.StreamID() != "" && remote.StreamID() != "-" {
			p.streamIDs[remote.StreamID()] = sid
		}
	}
	codec := remote.Codec().RTPCodecCapability
	t = &upTrack{
		sfu: r.sfu, publisher: p, receiver: receiver,
		streamID: sid, trackID: label + "-" + remote.Kind().String(),
		label: label, kind: remote.Kind(), codec: codec, ck: codecKindOf(codec.MimeType),
		twccID: twccID,
	}
	p.tracks = append(p.tracks, t)
	if p.admitted {
		for _, q := range r.peers {
			if q != p && q.admitted {
				subs = append(subs, q)
			}
		}
	}
	return t, true, subs
}

// removeTrack forgets an ended track and withdraws it from its receivers.
func (r *Room) removeTrack(t *upTrack) {
	r.mu.Lock()
	p := t.publisher
	for i, x := range p.tracks {
		if x == t {
			p.tracks = append(p.tracks[:i:i], p.tracks[i+1:]...)
			break
		}
	}
	subs := make([]*Peer, 0, len(r.peers))
	for _, q := range r.peers {
		if q != p {
			subs = append(subs, q)
		}
	}
	r.mu.Unlock()
	for _, q := range subs {
		q.unsubscribe(t)
	}
}

// leave removes p from the room and withdraws its tracks from everyone.
func (r *Room) leave(p *Peer) {
	r.mu.Lock()
	if r.peers[p.ID] != p {
		r.mu.Unlock()
		return
	}
	delete(r.peers, p.ID)
	tracks := p.tracks
	p.tracks = nil
	subs := make([]*Peer, 0, len(r.peers))
	for _, q := range r.peers {
		subs = append(subs, q)
	}
	r.mu.Unlock()
	r.sfu.participants.Add(-1)
	for _, t := range tracks {
		for _, q := range subs {
			q.unsubscribe(t)
		}
	}
}
