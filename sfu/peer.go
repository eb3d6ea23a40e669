package sfu

import (
	"fmt"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Peer is one participant's presence in a room: the connection it
// publishes on (up) and the one it receives on (down).
type Peer struct {
	ID   string
	room *Room
	sig  Signaler
	up   *webrtc.PeerConnection
	down *webrtc.PeerConnection

	feedback *upFeedback   // TWCC arrivals of the up connection
	done     chan struct{} // closed by Close: stops feedbackLoop

	// Guarded by room.mu.
	admitted  bool
	tracks    []*upTrack
	streamIDs map[string]string // the participant's stream ids -> ids offered to receivers

	mu          sync.Mutex // guards the fields below and the down connection's negotiation
	labels      map[string]string
	downs       map[*upTrack]*downTrack
	negotiating bool // an offer on down waits for its answer
	again       bool // something changed while negotiating: offer again
	restartICE  bool
	pending     [2][]webrtc.ICECandidateInit // candidates that came before the remote description
	closed      bool
}

func dirIndex(d Direction) int {
	if d == Down {
		return 1
	}
	return 0
}

func (p *Peer) pc(d Direction) *webrtc.PeerConnection {
	if d == Down {
		return p.down
	}
	return p.up
}

// onTrack starts forwarding a track (or simulcast layer) p publishes.
func (p *Peer) onTrack(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	p.mu.Lock()
	label := p.labels[remote.StreamID()]
	p.mu.Unlock()
	if label != "screen" {
		label = "camera"
	}
	// Asked of Pion before taking the room's lock, which Pion's own
	// locks must never wait behind.
	twccID := transportCCID(receiver)
	t, isNew, subs := p.room.publish(p, receiver, remote, label, twccID)
	if t == nil {
		return
	}
	t.addLayer(remote)
	if isNew {
		for _, q := range subs {
			q.subscribe(t)
		}
	}
}

// HandleOffer applies the participant's offer for the up connection.
// labels maps the offer's msid stream ids to "camera" or "screen". It
// returns the answer to send back.
func (p *Peer) HandleOffer(sdp string, labels map[string]string) (string, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return "", ErrClosed
	}
	for k, v := range labels {
		p.labels[k] = v
	}
	p.mu.Unlock()
	if err := p.up.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return "", fmt.Errorf("sfu: apply offer: %w", err)
	}
	answer, err := p.up.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("sfu: create answer: %w", err)
	}
	if err := p.up.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("sfu: set answer: %w", err)
	}
	p.flushCandidates(Up)
	return answer.SDP, nil
}

// HandleAnswer applies the participant's answer to the server's last
// offer on the down connection, and offers again if tracks changed
// meanwhile.
func (p *Peer) HandleAnswer(sdp string) error {
	p.mu.Lock()
	if !p.negotiating {
		p.mu.Unlock()
		return ErrNotAnswered
	}
	err := p.down.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
	p.negotiating = false
	again, restart := p.again, p.restartICE
	p.again, p.restartICE = false, false
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sfu: apply answer: %w", err)
	}
	p.flushCandidates(Down)
	if again {
		p.negotiate(restart)
	}
	return nil
}

// AddCandidate adds a remote ICE candidate to connection dir, keeping it
// until the remote description is known.
func (p *Peer) AddCandidate(dir Direction, c webrtc.ICECandidateInit) error {
	pc := p.pc(dir)
	p.mu.Lock()
	if pc.RemoteDescription() == nil {
		if len(p.pending[dirIndex(dir)]) < 64 {
			p.pending[dirIndex(dir)] = append(p.pending[dirIndex(dir)], c)
		}
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return pc.AddICECandidate(c)
}

func (p *Peer) flushCandidates(dir Direction) {
	p.mu.Lock()
	cs := p.pending[dirIndex(dir)]
	p.pending[dirIndex(dir)] = nil
	p.mu.Unlock()
	for _, c := range cs {
		_ = p.pc(dir).AddICECandidate(c)
	}
}

// RestartICE offers the down connection again with fresh ICE credentials
// (the participant restarts the up connection itself, by offering).
func (p *Peer) RestartICE() { p.negotiate(true) }

// Renegotiate sends the current offer of the down connection again if it
// is still waiting for an answer (the message may have been lost with a
// dropped socket), or a new offer if tracks are waiting.
func (p *Peer) Renegotiate() {
	p.mu.Lock()
	if p.negotiating {
		ld := p.down.LocalDescription()
		streams := p.streamsLocked()
		p.mu.Unlock()
		if ld != nil {
			p.sig.Offer(ld.SDP, streams)
		}
		return
	}
	p.mu.Unlock()
	p.negotiate(false)
}

// negotiate offers the down connection's current tracks, unless an offer
// is already waiting for its answer: then it offers again after it.
func (p *Peer) negotiate(restart bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if p.negotiating {
		p.again = true
		p.restartICE = p.restartICE || restart
		p.mu.Unlock()
		return
	}
	if len(p.down.GetTransceivers()) == 0 {
		p.mu.Unlock()
		return // nothing to receive yet
	}
	offer, err := p.down.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err == nil {
		err = p.down.SetLocalDescription(offer)
	}
	if err != nil {
		p.mu.Unlock()
		return
	}
	p.negotiating = true
	streams := p.streamsLocked()
	p.mu.Unlock()
	p.sig.Offer(offer.SDP, streams)
}

// streamsLocked maps the down connection's stream ids to their
// publishers. Call with p.mu held.
func (p *Peer) streamsLocked() map[string]StreamInfo {
	m := make(map[string]StreamInfo, len(p.downs))
	for t := range p.downs {
		m[t.streamID] = StreamInfo{Participant: t.publisher.ID, Label: t.label}
	}
	return m
}

// subscribe sends track t to p.
func (p *Peer) subscribe(t *upTrack) {
	p.mu.Lock()
	if p.closed || p.downs[t] != nil {
		p.mu.Unlock()
		return
	}
	d := newDownTrack(t, p)
	tr, err := p.down.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		p.mu.Unlock()
		return
	}
	d.sender = tr.Sender()
	p.downs[t] = d
	p.mu.Unlock()
	t.addDown(d)
	go d.readRTCP()
	p.negotiate(false)
}

// unsubscribe stops sending track t to p.
func (p *Peer) unsubscribe(t *upTrack) {
	p.mu.Lock()
	d := p.downs[t]
	if d == nil {
		p.mu.Unlock()
		return
	}
	delete(p.downs, t)
	closed := p.closed
	if !closed {
		_ = p.down.RemoveTrack(d.sender)
	}
	p.mu.Unlock()
	t.removeDown(d)
	if !closed {
		p.negotiate(false)
	}
}

// Close leaves the room and closes both connections.
func (p *Peer) Close() {
	p.room.leave(p)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	downs := p.downs
	p.downs = map[*upTrack]*downTrack{}
	p.mu.Unlock()
	for t, d := range downs {
		t.removeDown(d)
	}
	_ = p.up.Close()
	_ = p.down.Close()
}

// UpStats describes one published track as the server receives it.
type UpStats struct {
	Label  string       `json:"label"`
	Kind   string       `json:"kind"`
	Layers []LayerStats `json:"layers"`
}

// LayerStats is one simulcast layer (or the only stream) of a track.
type LayerStats struct {
	RID     string `json:"rid,omitempty"`
	Bitrate uint64 `json:"bitrate"`
	Lost    uint64 `json:"lost"`
	Packets uint64 `json:"packets"`
}

// PeerStats is a participant's media quality as the server sees it.
type PeerStats struct {
	Participant string      `json:"participant"`
	Up          []UpStats   `json:"up"`
	Down        []DownStats `json:"down"`
}

// Stats returns p's current figures.
func (p *Peer) Stats() PeerStats {
	s := PeerStats{Participant: p.ID}
	p.room.mu.Lock()
	tracks := append([]*upTrack(nil), p.tracks...)
	p.room.mu.Unlock()
	for _, t := range tracks {
		u := UpStats{Label: t.label, Kind: t.kind.String()}
		t.mu.Lock()
		for _, l := range t.layers {
			u.Layers = append(u.Layers, LayerStats{RID: l.rid, Bitrate: l.bitrate.Load(), Lost: l.lost.Load(), Packets: l.receivedTotal.Load()})
		}
		t.mu.Unlock()
		s.Up = append(s.Up, u)
	}
	p.mu.Lock()
	downs := make([]*downTrack, 0, len(p.downs))
	for _, d := range p.downs {
		downs = append(downs, d)
	}
	p.mu.Unlock()
	for _, d := range downs {
		s.Down = append(s.Down, d.stats())
	}
	return s
}
