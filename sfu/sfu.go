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
	// UnbatchedUDP turns off the batching of the shared port's system
	// calls (sendmmsg and recvmmsg, udpbatch.go): each packet then costs
	// a system call of its own, and leaves at once instead of waiting up
	// to a millisecond for others to share its call. Batching applies
	// only with UDPMuxPort, on Linux (amd64, arm64).
	UnbatchedUDP bool
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

	// System calls and datagrams of the batched shared port (zero
	// without batching).
	UDPSendCalls, UDPSentDatagrams uint64
	UDPRecvCalls, UDPRecvDatagrams uint64
}

// SFU creates rooms and holds the Pion APIs and counters they share.
type SFU struct {
	upAPI, downAPI *webrtc.API
	udpMux         ice.UDPMux
	batchConns     []*batchConn

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
		var err error
		if cfg.UnbatchedUDP || !batchingAvailable {
			err = s.listenMux(cfg)
		} else {
			err = s.listenBatchedMux(cfg, defaultBatchDelay)
		}
		if err != nil {
			return nil, fmt.Errorf("sfu: udp mux on port %d: %w", cfg.UDPMuxPort, err)
		}
		se.SetICEUDPMux(s.udpMux)
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

// listenMux opens the shared port on every usable IPv4 address with
// Pion's own sockets, one system call per packet.
func (s *SFU) listenMux(cfg Config) error {
	opts := []ice.UDPMuxFromPortOption{ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4)}
	if cfg.IncludeLoopback {
		opts = append(opts, ice.UDPMuxFromPortWithLoopback())
	}
	if cfg.IPFilter != nil {
		opts = append(opts, ice.UDPMuxFromPortWithIPFilter(cfg.IPFilter))
	}
	opts = append(opts, ice.UDPMuxFromPortWithReadBufferSize(muxSocketBuffer), ice.UDPMuxFromPortWithWriteBufferSize(muxSocketBuffer))
	mux, err := ice.NewMultiUDPMuxFromPort(cfg.UDPMuxPort, opts...)
	if err != nil {
		return err
	}
	s.udpMux = mux
	return nil
}

// listenBatchedMux opens the shared port on the same addresses as
// listenMux, each socket batching its system calls.
func (s *SFU) listenBatchedMux(cfg Config, delay time.Duration) error {
	ips, err := muxAddresses(cfg)
	if err != nil {
		return err
	}
	var muxes []ice.UDPMux
	fail := func(err error) error {
		for _, m := range muxes {
			_ = m.Close()
		}
		return err
	}
	for _, ip := range ips {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: cfg.UDPMuxPort})
		if err != nil {
			return fail(err)
		}
		_ = c.SetReadBuffer(muxSocketBuffer)
		_ = c.SetWriteBuffer(muxSocketBuffer)
		bc, err := newBatchConn(c, delay)
		if err != nil {
			_ = c.Close()
			return fail(err)
		}
		s.batchConns = append(s.batchConns, bc)
		muxes = append(muxes, ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: bc}))
	}
	s.udpMux = ice.NewMultiUDPMuxDefault(muxes...)
	return nil
}

// muxAddresses lists the IPv4 addresses the shared port listens on: those
// of the interfaces that are up, loopback only when asked, as Pion's
// NewMultiUDPMuxFromPort chooses them.
func muxAddresses(cfg Config) ([]net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || (iface.Flags&net.FlagLoopback != 0 && !cfg.IncludeLoopback) {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip := n.IP.To4()
			if ip == nil || (ip.IsLoopback() && !cfg.IncludeLoopback) || (cfg.IPFilter != nil && !cfg.IPFilter(ip)) {
				continue
			}
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		return nil, errors.New("no IPv4 address to listen on")
	}
	return ips, nil
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
	c := Counters{
		Rooms:            s.rooms.Load(),
		Participants:     s.participants.Load(),
		ForwardedPackets: s.packets.Load(),
		ForwardedBytes:   s.bytes.Load(),
		NACKs:            s.nacks.Load(),
		Retransmissions:  s.retransmissions.Load(),
		PLIs:             s.plis.Load(),
	}
	for _, bc := range s.batchConns {
		n := bc.counts()
		c.UDPSendCalls += n.SendCalls
		c.UDPSentDatagrams += n.SentDatagrams
		c.UDPRecvCalls += n.RecvCalls
		c.UDPRecvDatagrams += n.RecvDatagrams
	}
	return c
}

// muxSocketBuffer is the kernel buffer size asked for the shared port's
// socket, each way: every call's packets queue there while its one reader
// is descheduled (4 MiB is 0.2 s of 100 streams at 1.5 Mbit/s). Linux
// caps it at net.core.rmem_max and wmem_max.
const muxSocketBuffer = 4 << 20

// defaultBatchDelay is how long a packet written to the batched shared
// port may wait for others to share its system call. A writer that finds
// the oldest waiting packet half that old sends the batch itself; a
// timer sends what is left after the full delay. One millisecond is a
// small share of a 20 ms audio frame and of a video frame's 33 ms.
const defaultBatchDelay = time.Millisecond

// keyframeInterval bounds how often we ask a publisher for a keyframe:
// each keyframe costs a burst of bandwidth, and receivers that all ask at
// once need only one.
const keyframeInterval = 300 * time.Millisecond

// keyframeRetry is how long a receiver waits for a keyframe it asked for
// before asking again, while packets of the layer it waits for arrive.
const keyframeRetry = 500 * time.Millisecond
