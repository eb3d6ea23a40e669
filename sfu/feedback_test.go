package sfu

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// candidateRelay hands the SFU's up-connection candidates to a client
// peer connection, as the signalling layer would.
type candidateRelay struct {
	mu     sync.Mutex
	client *webrtc.PeerConnection
	early  []webrtc.ICECandidateInit
}

func (c *candidateRelay) Offer(string, map[string]StreamInfo) {}
func (c *candidateRelay) ConnectionState(Direction, webrtc.PeerConnectionState) {
}
func (c *candidateRelay) Candidate(dir Direction, ci webrtc.ICECandidateInit) {
	if dir != Up {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil || c.client.RemoteDescription() == nil {
		c.early = append(c.early, ci)
		return
	}
	_ = c.client.AddICECandidate(ci)
}

func (c *candidateRelay) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ci := range c.early {
		_ = c.client.AddICECandidate(ci)
	}
	c.early = nil
}

// TestPublisherGetsFeedback publishes VP8 from a real Pion peer, with
// two packets missing, and checks the feedback its encoder and
// retransmission depend on: transport-wide congestion feedback, a
// receiver report for its stream and a NACK for exactly the lost packets.
func TestPublisherGetsFeedback(t *testing.T) {
	loopback := func(ip net.IP) bool { return ip.IsLoopback() }
	s, err := New(Config{IncludeLoopback: true, IPFilter: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	room := s.NewRoom("feedback")
	defer room.Close()
	relay := &candidateRelay{}
	peer, err := room.Join("pub", relay)
	if err != nil {
		t.Fatal(err)
	}

	// The client: VP8 with the transport-wide sequence number extension,
	// no interceptors, so that it sees the SFU's RTCP as sent.
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: codecVP8, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(loopback)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	client, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	relay.mu.Lock()
	relay.client = client
	relay.mu.Unlock()
	client.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			_ = peer.AddCandidate(Up, c.ToJSON())
		}
	})
	track, err := webrtc.NewTrackLocalStaticRTP(codecVP8, "video", "cam")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := client.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	offer, err := client.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	answer, err := peer.HandleOffer(offer.SDP, map[string]string{"cam": "camera"})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	relay.flush()
	var extID uint8
	for _, e := range sender.GetParameters().HeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			extID = uint8(e.ID)
		}
	}
	if extID == 0 {
		t.Fatal("transport-cc was not negotiated")
	}

	var (
		mu                    sync.Mutex
		gotTWCC, gotRR        bool
		nacked                []uint16
		ssrc                  = uint32(sender.GetParameters().Encodings[0].SSRC)
		lost                  = []uint16{1050, 1051}
		done                  = make(chan struct{})
		reportedLastSeq, jitt uint32
	)
	go func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			mu.Lock()
			for _, p := range pkts {
				switch p := p.(type) {
				case *rtcp.TransportLayerCC:
					gotTWCC = gotTWCC || p.PacketStatusCount > 0
				case *rtcp.ReceiverReport:
					for _, r := range p.Reports {
						if r.SSRC == ssrc {
							gotRR = true
							reportedLastSeq, jitt = r.LastSequenceNumber, r.Jitter
						}
					}
				case *rtcp.TransportLayerNack:
					if p.MediaSSRC == ssrc {
						for _, pair := range p.Nacks {
							nacked = append(nacked, pair.PacketList()...)
						}
					}
				}
			}
			mu.Unlock()
		}
	}()
	go func() {
		defer close(done)
		tw := uint16(0)
		for i := 0; i < 400; i++ {
			seq := uint16(1000 + i)
			if slices.Contains(lost, seq) {
				tw++ // lost on the way: its transport-wide number goes missing too
				continue
			}
			payload := make([]byte, 800)
			payload[0] = 0x10 // VP8: start of partition 0
			if i%100 != 0 {
				payload[1] = 0x01 // interframe
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(i/3) * 3000, Marker: i%3 == 2}, Payload: payload}
			ext, _ := (&rtp.TransportCCExtension{TransportSequence: tw}).Marshal()
			tw++
			_ = pkt.Header.SetExtension(extID, ext)
			if err := track.WriteRTP(pkt); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	deadline := time.After(15 * time.Second)
	for {
		mu.Lock()
		ok := gotTWCC && gotRR && slices.Contains(nacked, lost[0]) && slices.Contains(nacked, lost[1])
		mu.Unlock()
		if ok {
			break
		}
		select {
		case <-deadline:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("after 15 s: TWCC feedback %v, receiver report %v, NACKed %v (want %v)", gotTWCC, gotRR, nacked, lost)
		case <-time.After(50 * time.Millisecond):
		}
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, seq := range nacked {
		if !slices.Contains(lost, seq) {
			t.Errorf("NACKed %d, which arrived", seq)
		}
	}
	if reportedLastSeq < 1000 || reportedLastSeq > 1400 {
		t.Errorf("receiver report's highest sequence number %d, want within the 1000-1399 sent", reportedLastSeq)
	}
	if jitt > 90000 {
		t.Errorf("receiver report's jitter %d clock units: over a second", jitt)
	}
}
