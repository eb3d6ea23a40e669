// Package sfu forwards media between the participants of a video room.
//
// Each participant (a Peer) has two peer connections, as in Galene: an
// "up" connection on which the participant publishes and the server
// answers, and a "down" connection on which the server offers the tracks
// of the other admitted participants. Keeping one offerer per connection
// means the two sides never offer at the same time (no glare).
//
// The package imports Pion and the standard library only. It talks to the
// signalling layer through the Signaler interface, which the caller
// implements; it never touches a socket.
package sfu

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Direction names one of a participant's two peer connections.
type Direction string

// The two peer connections of a participant.
const (
	Up   Direction = "up"   // the participant publishes; it offers
	Down Direction = "down" // the participant receives; the server offers
)

// StreamInfo tells a receiver whose media a stream of the down connection
// carries. Streams are keyed by the msid stream id in the offer.
type StreamInfo struct {
	Participant string `json:"participant"`
	Label       string `json:"label"` // "camera" or "screen"
}

// Signaler is what a Peer needs from the signalling layer. Its methods are
// called from Pion's goroutines and must not block: an implementation
// hands the message to its own loop.
type Signaler interface {
	// Offer asks the participant to answer a new description of the down
	// connection; streams maps each msid stream id to its owner.
	Offer(sdp string, streams map[string]StreamInfo)
	// Candidate sends a local ICE candidate of connection dir.
	Candidate(dir Direction, c webrtc.ICECandidateInit)
	// ConnectionState reports a change in the state of connection dir.
	ConnectionState(dir Direction, s webrtc.PeerConnectionState)
}

// Config sets how the SFU reaches the network.
type Config struct {
	// PublicIPs, when set, replace the host candidates' addresses (1:1
	// NAT, e.g. a cloud VM's public address).
	PublicIPs []string
	// UDPPortMin and UDPPortMax bound the ephemeral UDP ports (0: any).
	UDPPortMin, UDPPortMax uint16
	// UDPMuxPort, when not zero, carries every ICE session over this one
	// UDP port instead of a port per connection.
	UDPMuxPort int
	// IncludeLoopback offers loopback candidates (needed on hosts whose
	// only interface is lo, and in tests).
	IncludeLoopback bool
	// IPFilter, when set, restricts both local and remote candidate
	// addresses (tests use it to stay on loopback).
	IPFilter func(net.IP) bool
}

// Counters are the SFU's totals since start, for metrics.
type Counters struct {
	Rooms, Participants int64
	ForwardedPackets    uint64
	ForwardedBytes      uint64
	NACKs               uint64 // NACKs received from receivers
	Retransmissions     uint64 // packets resent from the cache
	PLIs                uint64 // keyframe requests sent to publishers
}

// SFU creates rooms and holds the Pion APIs and counters they share.
type SFU struct {
	upAPI, downAPI *webrtc.API
	udpMux         ice.UDPMux

	rooms, participants          atomic.Int64
	packets, bytes               atomic.Uint64
	nacks, retransmissions, plis atomic.Uint64
}

// Errors of the sfu package.
var (
	ErrClosed      = errors.New("sfu: closed")
	ErrNoCodec     = errors.New("sfu: no codec in common with the receiver")
	ErrPeerExists  = errors.New("sfu: participant already in the room")
	ErrNotAnswered = errors.New("sfu: no offer is waiting for an answer")
)

// Codec parameters, in the order we prefer them. Registering only the
// codecs we forward means a forwarded stream always matches what the
// receiver negotiated.
var (
	codecOpus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
	codecVP8  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	codecH264 = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
)

func registerCodecs(m *webrtc.MediaEngine, videoFeedback []webrtc.RTCPFeedback) error {
	for _, c := range []struct {
		cap webrtc.RTPCodecCapability
		pt  webrtc.PayloadType
		typ webrtc.RTPCodecType
	}{
		{codecOpus, 111, webrtc.RTPCodecTypeAudio},
		{codecVP8, 96, webrtc.RTPCodecTypeVideo},
		{codecH264, 102, webrtc.RTPCodecTypeVideo},
	} {
		cp := c.cap
		if c.typ == webrtc.RTPCodecTypeVideo {
			cp.RTCPFeedback = videoFeedback
		}
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: cp, PayloadType: c.pt}, c.typ); err != nil {
			return err
		}
	}
	return nil
}

// New returns an SFU configured by cfg.
func New(cfg Config) (*SFU, error) {
	s := &SFU{}
	se := webrtc.SettingEngine{}
	// AEAD-AES-GCM first: it is both stronger and about four times cheaper
	// per packet than AES-CM with HMAC-SHA1.
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if cfg.IPFilter != nil {
		se.SetIPFilter(cfg.IPFilter)
		se.SetRemoteIPFilter(cfg.IPFilter)
	}
	if len(cfg.PublicIPs) > 0 {
		se.SetNAT1To1IPs(cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	if cfg.UDPPortMin != 0 || cfg.UDPPortMax != 0 {
		if err := se.SetEphemeralUDPPortRange(cfg.UDPPortMin, cfg.UDPPortMax); err != nil {
			return nil, fmt.Errorf("sfu: port range: %w", err)
		}
	}
	if cfg.UDPMuxPort != 0 {
		opts := []ice.UDPMuxFromPortOption{ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4)}
		if cfg.IncludeLoopback {
			opts = append(opts, ice.UDPMuxFromPortWithLoopback())
		}
		if cfg.IPFilter != nil {
			opts = append(opts, ice.UDPMuxFromPortWithIPFilter(cfg.IPFilter))
		}
		mux, err := ice.NewMultiUDPMuxFromPort(cfg.UDPMuxPort, opts...)
		if err != nil {
			return nil, fmt.Errorf("sfu: udp mux on port %d: %w", cfg.UDPMuxPort, err)
		}
		se.SetICEUDPMux(mux)
		s.udpMux = mux
	}

	// The up side receives: it sends NACKs and receiver reports, and
	// transport-wide congestion feedback so browsers can adapt their
	// simulcast encodings.
	upMedia := &webrtc.MediaEngine{}
	if err := registerCodecs(upMedia, []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}, {Type: webrtc.TypeRTCPFBTransportCC}}); err != nil {
		return nil, err
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(upMedia); err != nil {
		return nil, err
	}
	for _, typ := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if err := upMedia.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, typ); err != nil {
			return nil, err
		}
	}
	// No interceptors on the up side: NACKs, receiver reports and TWCC
	// feedback come from the forwarding loop and Peer.feedbackLoop
	// (feedback.go), which do not allocate per packet.
	upReg := &interceptor.Registry{}
	s.upAPI = webrtc.NewAPI(webrtc.WithMediaEngine(upMedia), webrtc.WithInterceptorRegistry(upReg), webrtc.WithSettingEngine(se))

	// The down side sends. Sender reports come from Peer.feedbackLoop,
	// NACKs are answered from our own packet cache, and receivers' REMB
	// and loss drive the simulcast layer choice (downTrack.readRTCP): no
	// interceptor sits on the forwarding path.
	downMedia := &webrtc.MediaEngine{}
	if err := registerCodecs(downMedia, []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}, {Type: webrtc.TypeRTCPFBGoogREMB}}); err != nil {
		return nil, err
	}
	downReg := &interceptor.Registry{}
	s.downAPI = webrtc.NewAPI(webrtc.WithMediaEngine(downMedia), webrtc.WithInterceptorRegistry(downReg), webrtc.WithSettingEngine(se))
	return s, nil
}

// Close releases the shared UDP port, if any. Rooms must be closed first.
func (s *SFU) Close() error {
	if s.udpMux != nil {
		return s.udpMux.Close()
	}
	return nil
}

// Counters returns the SFU's current totals.
func (s *SFU) Counters() Counters {
	return Counters{
		Rooms:            s.rooms.Load(),
		Participants:     s.participants.Load(),
		ForwardedPackets: s.packets.Load(),
		ForwardedBytes:   s.bytes.Load(),
		NACKs:            s.nacks.Load(),
		Retransmissions:  s.retransmissions.Load(),
		PLIs:             s.plis.Load(),
	}
}

// keyframeInterval bounds how often we ask a publisher for a keyframe:
// each keyframe costs a burst of bandwidth, and receivers that all ask at
// once need only one.
const keyframeInterval = 300 * time.Millisecond
