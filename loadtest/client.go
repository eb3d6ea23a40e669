package loadtest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// ClientConfig describes one synthetic participant.
type ClientConfig struct {
	SignalURL string // ws://host/api/v1/signal
	Token     string
	Room      string // when set, sent in hello: the server refuses a token for another room
	// ICEServers and RelayOnly force the media through a TURN server.
	ICEServers []webrtc.ICEServer
	RelayOnly  bool
	// VideoBitrate of the synthetic VP8 camera in bits per second (0: no
	// video). With Simulcast it is the top layer's; the lower layers get a
	// quarter and a sixteenth.
	VideoBitrate int
	Simulcast    bool
	Audio        bool
	// Screen adds a screen share: a second video track, labelled "screen".
	Screen bool
	// Rejoin, when set, is asked for a new signalling URL and token when
	// the socket drops and the session cannot be resumed (its node
	// failed): the client then joins there with fresh peer connections
	// and publishes again (see Client.Rejoin). Not with Simulcast.
	Rejoin func(ctx context.Context) (signalURL, token string, err error)
	// KeyframeInterval between spontaneous keyframes (default 10 s); a
	// PLI gets one at the next frame.
	KeyframeInterval time.Duration
}

// Event is a signalling message the client received, as a map.
type Event struct {
	Type string
	Raw  map[string]any
}

// Str returns field k of the event as a string.
func (e Event) Str(k string) string { s, _ := e.Raw[k].(string); return s }

// CloseError is how the server closed the socket.
type CloseError struct {
	Code int
	Text string
}

// Error says how the socket was closed.
func (e *CloseError) Error() string { return fmt.Sprintf("closed %d: %s", e.Code, e.Text) }

// Stream is what a client received on one remote stream.
type Stream struct {
	Participant, Label, Kind string
	StreamID                 string // the stream the server offered it in
	Packets, Bytes           uint64
	First                    time.Time // first packet
	FirstKeyframe            bool      // the first video packet started a keyframe
	Layer                    byte      // simulcast layer of the latest packet
	Latencies                []time.Duration
}

// Client is a Pion participant speaking the signalling protocol, used by
// the load tool and by tests.
type Client struct {
	cfg         ClientConfig
	api         *webrtc.API
	Participant string
	Role        string
	Opened      time.Time // first socket open

	wmu    sync.Mutex
	ws     *websocket.Conn
	resume string

	up, down  *webrtc.PeerConnection
	published []publishedTrack // what Publish sends, to publish again after a rejoin
	Events    chan Event

	mu                   sync.Mutex
	streams              map[string]map[string]any // stream id -> info from the offer
	received             map[string]*Stream        // stream id + kind -> stats
	closeErr             error
	keyReq               [2][3]bool
	videoSSRC            map[uint32]int
	sentVideo, sentAudio atomic.Uint64
	failovers            []Failover
	stop                 chan struct{}
	stopOnce             sync.Once
	wg                   sync.WaitGroup
}

var loopback = func(ip net.IP) bool { return ip.IsLoopback() }

func newAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "goog-remb"}}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	rr, _ := report.NewReceiverInterceptor()
	sr, _ := report.NewSenderInterceptor()
	reg.Add(rr)
	reg.Add(sr)
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(loopback)
	se.SetRemoteIPFilter(loopback)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// Dial connects, sends hello and waits for the welcome.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.KeyframeInterval == 0 {
		cfg.KeyframeInterval = 10 * time.Second
	}
	api, err := newAPI()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, api: api, Events: make(chan Event, 1024), streams: map[string]map[string]any{}, received: map[string]*Stream{}, stop: make(chan struct{}), videoSSRC: map[uint32]int{}}
	if c.up, c.down, err = c.newPeerConnections(); err != nil {
		return nil, err
	}
	c.Opened = time.Now()
	if err := c.connect(ctx, ""); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// newPeerConnections makes the up and down connections of a session.
func (c *Client) newPeerConnections() (up, down *webrtc.PeerConnection, err error) {
	pcCfg := webrtc.Configuration{ICEServers: c.cfg.ICEServers}
	if c.cfg.RelayOnly {
		pcCfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	if up, err = c.api.NewPeerConnection(pcCfg); err != nil {
		return nil, nil, err
	}
	if down, err = c.api.NewPeerConnection(pcCfg); err != nil {
		up.Close()
		return nil, nil, err
	}
	for dir, pc := range map[string]*webrtc.PeerConnection{"up": up, "down": down} {
		pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
			if cand != nil {
				init := cand.ToJSON()
				_ = c.Send(map[string]any{"type": "candidate", "pc": dir, "candidate": init})
			}
		})
	}
	down.OnTrack(c.onTrack)
	return up, down, nil
}

// connect opens the socket and performs the handshake; with resume it
// resumes the session.
func (c *Client) connect(ctx context.Context, resume string) error {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, c.cfg.SignalURL, nil)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.ws = ws
	c.wmu.Unlock()
	hello := map[string]any{"type": "hello", "version": 1, "token": c.cfg.Token}
	if resume != "" {
		hello["resume"] = resume
	}
	if c.cfg.Room != "" {
		hello["room"] = c.cfg.Room
	}
	if err := c.Send(hello); err != nil {
		return err
	}
	_, data, err := ws.ReadMessage()
	if err != nil {
		return closeErr(err)
	}
	var w map[string]any
	if err := json.Unmarshal(data, &w); err != nil || w["type"] != "welcome" {
		return fmt.Errorf("loadtest: expected welcome, got %s", data)
	}
	if c.Participant == "" {
		// Set once, by Dial: a resume or a re-join keeps the identity,
		// and others read these fields without a lock.
		c.Participant, _ = w["participant"].(string)
		c.Role, _ = w["role"].(string)
	}
	c.resume, _ = w["resume"].(string)
	c.Events <- Event{Type: "welcome", Raw: w}
	go c.readLoop(ws)
	return nil
}

func closeErr(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: ce.Code, Text: ce.Text}
	}
	return err
}

// Send writes one message.
func (c *Client) Send(m any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.SendRaw(b)
}

// SendRaw writes raw bytes as a text message.
func (c *Client) SendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ws == nil {
		return net.ErrClosed
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// readLoop applies the server's messages strictly in order.
func (c *Client) readLoop(ws *websocket.Conn) {
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			c.wmu.Lock()
			dropped := c.ws != ws
			c.wmu.Unlock()
			if dropped {
				return // DropSocket: a deliberate outage, not the server's word
			}
			c.mu.Lock()
			c.closeErr = closeErr(err)
			c.mu.Unlock()
			select {
			case c.Events <- Event{Type: "closed", Raw: map[string]any{"error": closeErr(err)}}:
			default:
			}
			if c.cfg.Rejoin != nil && !final(closeErr(err)) {
				go c.failover()
			}
			return
		}
		var m map[string]any
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		typ, _ := m["type"].(string)
		switch typ {
		case "offer":
			c.handleOffer(m)
		case "answer":
			sdp, _ := m["sdp"].(string)
			_ = c.up.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
		case "candidate":
			b, _ := json.Marshal(m["candidate"])
			var init webrtc.ICECandidateInit
			_ = json.Unmarshal(b, &init)
			pc := c.up
			if m["pc"] == "down" {
				pc = c.down
			}
			_ = pc.AddICECandidate(init)
		}
		if typ != "candidate" {
			select {
			case c.Events <- Event{Type: typ, Raw: m}:
			default:
			}
		}
	}
}

func (c *Client) handleOffer(m map[string]any) {
	sdp, _ := m["sdp"].(string)
	if streams, ok := m["streams"].(map[string]any); ok {
		c.mu.Lock()
		for id, v := range streams {
			c.streams[id], _ = v.(map[string]any)
		}
		c.mu.Unlock()
	}
	if err := c.down.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return
	}
	answer, err := c.down.CreateAnswer(nil)
	if err != nil {
		return
	}
	if err := c.down.SetLocalDescription(answer); err != nil {
		return
	}
	_ = c.Send(map[string]any{"type": "answer", "pc": "down", "sdp": answer.SDP})
}

// Wait returns the next event of type typ, skipping others.
func (c *Client) Wait(ctx context.Context, typ string) (Event, error) {
	for {
		select {
		case e := <-c.Events:
			if e.Type == typ {
				return e, nil
			}
			if e.Type == "closed" && typ != "closed" {
				return e, fmt.Errorf("waiting for %s: %w", typ, e.Raw["error"].(error))
			}
		case <-ctx.Done():
			return Event{}, fmt.Errorf("waiting for %s: %w", typ, ctx.Err())
		}
	}
}

// Closed returns how the server closed the socket, or nil.
func (c *Client) Closed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// onTrack counts what arrives on a remote stream.
func (c *Client) onTrack(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	key := t.StreamID() + "/" + t.Kind().String()
	c.mu.Lock()
	info := c.streams[t.StreamID()]
	st := c.received[key]
	if st == nil {
		st = &Stream{Kind: t.Kind().String(), StreamID: t.StreamID()}
		c.received[key] = st
	}
	if info != nil {
		st.Participant, _ = info["participant"].(string)
		st.Label, _ = info["label"].(string)
	}
	c.mu.Unlock()
	buf := make([]byte, 1600)
	var h rtp.Header
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		off, err := h.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		now := time.Now()
		p := buf[off:n]
		c.mu.Lock()
		if st.Packets == 0 {
			st.First = now
			if t.Kind() == webrtc.RTPCodecTypeVideo && len(p) > 1 {
				st.FirstKeyframe = p[0]&0x10 != 0 && p[1]&0x01 == 0
			}
		}
		st.Packets++
		st.Bytes += uint64(n)
		if off, ok := metaOffset(t.Kind(), p); ok && len(p) >= off+10 && p[off] == metaMagic {
			st.Layer = p[off+1]
			sent := time.Unix(0, int64(binary.BigEndian.Uint64(p[off+2:])))
			if len(st.Latencies) < 100000 {
				st.Latencies = append(st.Latencies, now.Sub(sent))
			}
		}
		c.mu.Unlock()
	}
}

// Received returns a copy of what arrived, per remote stream and kind.
func (c *Client) Received() []Stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Stream, 0, len(c.received))
	for _, s := range c.received {
		cp := *s
		cp.Latencies = append([]time.Duration(nil), s.Latencies...)
		out = append(out, cp)
	}
	return out
}

// From returns what arrived from participant's kind ("audio"/"video").
func (c *Client) From(participant, kind string) Stream {
	for _, s := range c.Received() {
		if s.Participant == participant && s.Kind == kind {
			return s
		}
	}
	return Stream{}
}

// Total returns what arrived from participant's kind over every stream
// (a re-join brings new ones): packets and bytes summed, the earliest
// first packet, every latency sample.
func (c *Client) Total(participant, kind string) Stream {
	t := Stream{Participant: participant, Kind: kind}
	for _, s := range c.Received() {
		if s.Participant != participant || s.Kind != kind || s.Packets == 0 {
			continue
		}
		t.Packets += s.Packets
		t.Bytes += s.Bytes
		if t.First.IsZero() || s.First.Before(t.First) {
			t.First = s.First
		}
		t.Latencies = append(t.Latencies, s.Latencies...)
	}
	return t
}

// SendREMB tells the server this receiver's bandwidth estimate.
func (c *Client) SendREMB(bitrate float32) error {
	var ssrcs []uint32
	for _, tr := range c.down.GetTransceivers() {
		if r := tr.Receiver(); r != nil && tr.Kind() == webrtc.RTPCodecTypeVideo {
			for _, t := range r.Tracks() {
				ssrcs = append(ssrcs, uint32(t.SSRC()))
			}
		}
	}
	if len(ssrcs) == 0 {
		return errors.New("loadtest: no video received yet")
	}
	return c.down.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: bitrate, SSRCs: ssrcs}})
}

// RestartICE restarts ICE on both connections: it offers the up one
// with new credentials and asks the server to offer the down one.
func (c *Client) RestartICE() error {
	if err := c.offerUp(true); err != nil {
		return err
	}
	return c.Send(map[string]any{"type": "restart"})
}

// DropSocket closes the socket abruptly (no close frame), as a network
// change would.
func (c *Client) DropSocket() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ws != nil {
		c.ws.NetConn().Close()
		c.ws = nil
	}
}

// Resume reconnects the socket and resumes the session.
func (c *Client) Resume(ctx context.Context) error {
	c.mu.Lock()
	c.closeErr = nil
	c.mu.Unlock()
	return c.connect(ctx, c.resume)
}

// State returns the connection states of the up and down connections.
func (c *Client) State() (up, down webrtc.PeerConnectionState) {
	return c.up.ConnectionState(), c.down.ConnectionState()
}

// Close ends the client without a word to the server.
func (c *Client) Close() {
	c.stopOnce.Do(func() { close(c.stop) })
	c.wg.Wait()
	c.DropSocket()
	if c.up != nil {
		c.up.Close()
	}
	if c.down != nil {
		c.down.Close()
	}
}

// UsesRelay reports whether both connections' selected candidate pairs
// use a local relayed (TURN) candidate.
func (c *Client) UsesRelay() bool {
	for _, pc := range []*webrtc.PeerConnection{c.up, c.down} {
		var found bool
		for _, s := range pc.GetStats() {
			if p, ok := s.(webrtc.ICECandidatePairStats); ok && p.Nominated && p.State == webrtc.StatsICECandidatePairStateSucceeded {
				if l, ok := pc.GetStats()[p.LocalCandidateID].(webrtc.ICECandidateStats); ok && l.CandidateType == webrtc.ICECandidateTypeRelay {
					found = true
				}
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Sent returns how many video and audio packets the client has sent.
func (c *Client) Sent() (video, audio uint64) { return c.sentVideo.Load(), c.sentAudio.Load() }

// ResetLatencies forgets the latency samples gathered so far.
func (c *Client) ResetLatencies() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.received {
		s.Latencies = s.Latencies[:0]
	}
}

// FromLabel returns what arrived from participant's video labelled
// label ("camera" or "screen").
func (c *Client) FromLabel(participant, label string) Stream {
	for _, s := range c.Received() {
		if s.Participant == participant && s.Kind == "video" && s.Label == label {
			return s
		}
	}
	return Stream{}
}

// RemoteUfrags returns the ICE username fragments of the server's current
// descriptions of the up and down connections (they change on an ICE
// restart).
func (c *Client) RemoteUfrags() (up, down string) {
	get := func(pc *webrtc.PeerConnection) string {
		d := pc.CurrentRemoteDescription()
		if d == nil {
			return ""
		}
		for _, line := range strings.Split(d.SDP, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
				return v
			}
		}
		return ""
	}
	return get(c.up), get(c.down)
}

// RemotePorts returns the ports of the server's selected candidates.
func (c *Client) RemotePorts() []int {
	var ports []int
	for _, pc := range []*webrtc.PeerConnection{c.up, c.down} {
		stats := pc.GetStats()
		for _, s := range stats {
			if p, ok := s.(webrtc.ICECandidatePairStats); ok && p.Nominated {
				if r, ok := stats[p.RemoteCandidateID].(webrtc.ICECandidateStats); ok {
					ports = append(ports, int(r.Port))
				}
			}
		}
	}
	return ports
}
