package sfu

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The per-packet paths of the SFU, guarded against allocations and
// measured: what a published packet costs from the read to the write of
// each receiver's copy, and what a receiver's RTCP costs.

const testTWCCID = 3

// twccPacket is a VP8 packet carrying a transport-wide sequence number
// in a one-byte header extension, as browsers send them.
func twccPacket(seq, tw uint16, ts uint32, key bool) []byte {
	h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: ts, SSRC: 42}
	ext, _ := (&rtp.TransportCCExtension{TransportSequence: tw}).Marshal()
	_ = h.SetExtension(testTWCCID, ext)
	payload := make([]byte, 1100)
	payload[0] = 0x10
	if !key {
		payload[1] = 0x01
	}
	b, _ := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
	return b
}

// newTestFanout returns a published VP8 track with receivers copies,
// each already forwarding (past the first keyframe).
func newTestFanout(tb testing.TB, receivers int) (*upTrack, *upLayer, []*downTrack) {
	up, d0, _ := newTestDown(tb, 1)
	up.publisher.feedback = newUpFeedback()
	up.twccID = testTWCCID
	l := up.layers[0]
	l.ssrc, l.rx.clock = 42, 90000
	downs := []*downTrack{d0}
	for range receivers - 1 {
		d := newDownTrack(up, &Peer{ID: "sub", room: up.publisher.room})
		d.writer, d.ssrc, d.pt = &sinkWriter{}, 1234, 96
		downs = append(downs, d)
	}
	for _, d := range downs {
		d.target = 0
		up.addDown(d)
	}
	var info rtpInfo
	up.handle(l, twccPacket(0, 0, 0, true), &info, time.Now())
	return up, l, downs
}

// receiverFeedback is a compound RTCP packet as a receiving browser sends
// it: a receiver report, a NACK, a PLI and a REMB.
func receiverFeedback(ssrc uint32, lost ...uint16) []byte {
	b, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{SSRC: ssrc, FractionLost: 3, TotalLost: 12, LastSequenceNumber: 70000, Jitter: 90, LastSenderReport: 5, Delay: 6}}},
		&rtcp.TransportLayerNack{SenderSSRC: 7, MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(lost)},
		&rtcp.PictureLossIndication{SenderSSRC: 7, MediaSSRC: ssrc},
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 7, Bitrate: 1_200_000, SSRCs: []uint32{ssrc}},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseRTCPMatchesPion(t *testing.T) {
	b := receiverFeedback(1234, 10, 12, 40)
	var fb rtcpFeedback
	parseRTCP(b, 1234, &fb)
	if !fb.keyframe || fb.nReports != 1 || fb.nNackPackets != 1 {
		t.Fatalf("keyframe %v, %d reports, %d NACKs", fb.keyframe, fb.nReports, fb.nNackPackets)
	}
	if r := fb.reports[0]; r.FractionLost != 3 || r.TotalLost != 12 || r.LastSequenceNumber != 70000 || r.Jitter != 90 || r.LastSenderReport != 5 || r.Delay != 6 {
		t.Errorf("report %+v", r)
	}
	var seqs []uint16
	for _, p := range fb.nacks[:fb.nNacks] {
		seqs = append(seqs, p.PacketList()...)
	}
	if fmt.Sprint(seqs) != "[10 12 40]" {
		t.Errorf("NACKed %v, want [10 12 40]", seqs)
	}
	// REMB's mantissa keeps 18 bits: the rate comes back within 0.1%.
	if fb.remb < 1_199_000 || fb.remb > 1_200_000 {
		t.Errorf("REMB %d, want 1200000", fb.remb)
	}
	fir, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.FullIntraRequest{SenderSSRC: 7, FIR: []rtcp.FIREntry{{SSRC: 1234}}}})
	if parseRTCP(fir, 1234, &fb); !fb.keyframe {
		t.Error("FIR not seen as a keyframe request")
	}
	// Feedback about another stream of the same connection is not ours.
	if parseRTCP(b, 99, &fb); fb.keyframe || fb.nReports != 0 || fb.nNacks != 0 {
		t.Errorf("feedback for another SSRC taken: %+v", fb)
	}
	parseRTCP(b[:len(b)-3], 1234, &fb) // truncated: no panic
}

func TestHeaderExtension(t *testing.T) {
	for _, profile := range []uint16{0xBEDE, 0x1000} {
		h := rtp.Header{Version: 2, Extension: true, ExtensionProfile: profile}
		_ = h.SetExtension(1, []byte{9})
		_ = h.SetExtension(testTWCCID, []byte{0x12, 0x34})
		b, _ := (&rtp.Packet{Header: h, Payload: []byte{1, 2, 3}}).Marshal()
		if got := headerExtension(b, testTWCCID); len(got) != 2 || binary.BigEndian.Uint16(got) != 0x1234 {
			t.Errorf("profile %#x: extension %x", profile, got)
		}
		if got := headerExtension(b, 5); got != nil {
			t.Errorf("profile %#x: absent extension found: %x", profile, got)
		}
	}
}

// TestHotPathsDoNotAllocate: in steady state, a forwarded packet and a
// receiver's RTCP cost no heap allocation in our code.
func TestHotPathsDoNotAllocate(t *testing.T) {
	up, l, downs := newTestFanout(t, 3)
	var info rtpInfo
	seq, now := uint16(1), time.Now()
	pkt := twccPacket(1, 1, 3000, false)
	if a := testing.AllocsPerRun(1000, func() {
		seq++
		binary.BigEndian.PutUint16(pkt[2:], seq)
		binary.BigEndian.PutUint16(pkt[len(pkt)-1100-4+1:], seq) // the transport-wide number, after the extension's id byte
		now = now.Add(time.Millisecond)
		up.handle(l, pkt, &info, now)
	}); a != 0 {
		t.Errorf("read loop: %v allocations per packet", a)
	}
	if downs[1].packets < 1000 {
		t.Fatalf("only %d packets forwarded", downs[1].packets)
	}
	d := downs[0]
	rtcpIn := receiverFeedback(d.ssrc, d.lastSeq-3, d.lastSeq-1)
	var fb rtcpFeedback
	if a := testing.AllocsPerRun(1000, func() {
		parseRTCP(rtcpIn, d.ssrc, &fb)
		d.retransmit(fb.nacks[:fb.nNacks])
		for _, r := range fb.reports[:fb.nReports] {
			d.receptionReport(r)
		}
	}); a != 0 {
		t.Errorf("receiver RTCP: %v allocations per packet", a)
	}
	var rr rtcp.ReceptionReport
	var sr rtcp.SenderReport
	if a := testing.AllocsPerRun(100, func() {
		l.rx.report(l.ssrc, &rr)
		d.senderReport(now, &sr)
	}); a != 0 {
		t.Errorf("reports: %v allocations", a)
	}
	if rr.LastSequenceNumber == 0 || sr.PacketCount == 0 {
		t.Errorf("empty reports: %+v %+v", rr, sr)
	}
}

// BenchmarkReadLoopPacket is the SFU's own work for one published packet
// (TWCC arrival, loss and jitter accounting, keyframe check, and the
// rewrite and cache of each receiver's copy), before Pion's SRTP.
func BenchmarkReadLoopPacket(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("receivers=%d", n), func(b *testing.B) {
			up, l, _ := newTestFanout(b, n)
			var info rtpInfo
			pkt := twccPacket(1, 1, 3000, false)
			now := time.Now()
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for i := 0; b.Loop(); i++ {
				binary.BigEndian.PutUint16(pkt[2:], uint16(i+1))
				up.handle(l, pkt, &info, now)
			}
		})
	}
}

// BenchmarkReceiverRTCP is one compound RTCP packet from a receiver:
// parse, two retransmissions from the cache, the report's estimate.
func BenchmarkReceiverRTCP(b *testing.B) {
	_, _, downs := newTestFanout(b, 1)
	d := downs[0]
	for i := range 100 {
		forwardRaw(d, 0, vp8Packet(uint16(i+1), 3000, false, true), time.Now())
	}
	pkt := receiverFeedback(d.ssrc, d.lastSeq-3, d.lastSeq-1)
	var fb rtcpFeedback
	b.ReportAllocs()
	for b.Loop() {
		parseRTCP(pkt, d.ssrc, &fb)
		d.retransmit(fb.nacks[:fb.nNacks])
		for _, r := range fb.reports[:fb.nReports] {
			d.receptionReport(r)
		}
	}
}

// BenchmarkForwardSRTP is the whole write path of one forwarded packet
// through Pion: rewrite, SRTP (the negotiated AES-GCM profile) and the
// UDP send to a real peer on loopback (whose reading runs in this
// process too), from a socket of the connection's own, the shared port,
// and the shared port with batched system calls.
func BenchmarkForwardSRTP(b *testing.B) {
	loopback := func(ip net.IP) bool { return ip.IsLoopback() }
	b.Run("socket=connection", func(b *testing.B) {
		benchmarkForwardSRTP(b, Config{IncludeLoopback: true, IPFilter: loopback})
	})
	for _, unbatched := range []bool{true, false} {
		name := "socket=shared-batched"
		if unbatched {
			name = "socket=shared"
		}
		b.Run(name, func(b *testing.B) {
			l, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			port := l.LocalAddr().(*net.UDPAddr).Port
			l.Close()
			benchmarkForwardSRTP(b, Config{IncludeLoopback: true, IPFilter: loopback, UDPMuxPort: port, UnbatchedUDP: unbatched})
		})
	}
}

func benchmarkForwardSRTP(b *testing.B, cfg Config) {
	loopback := func(ip net.IP) bool { return ip.IsLoopback() }
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	up, d, _ := newTestDown(b, 1)
	d.writer = nil
	// Keyframe requests go to a publisher connection that is never
	// connected: they are dropped.
	if up.publisher.up, err = s.upAPI.NewPeerConnection(webrtc.Configuration{}); err != nil {
		b.Fatal(err)
	}
	defer up.publisher.up.Close()
	sender, err := s.downAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	defer sender.Close()
	tr, err := sender.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		b.Fatal(err)
	}
	d.sender = tr.Sender()
	m := &webrtc.MediaEngine{}
	_ = m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: codecVP8, PayloadType: 96}, webrtc.RTPCodecTypeVideo)
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(loopback)
	recv, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{})).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Close()
	recv.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := t.Read(buf); err != nil {
				return
			}
		}
	})
	offer, _ := sender.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(sender)
	_ = sender.SetLocalDescription(offer)
	<-gathered
	if err := recv.SetRemoteDescription(*sender.LocalDescription()); err != nil {
		b.Fatal(err)
	}
	answer, _ := recv.CreateAnswer(nil)
	gathered = webrtc.GatheringCompletePromise(recv)
	_ = recv.SetLocalDescription(answer)
	<-gathered
	if err := sender.SetRemoteDescription(*recv.LocalDescription()); err != nil {
		b.Fatal(err)
	}
	key := vp8Packet(1, 3000, true, true)
	deadline := time.Now().Add(10 * time.Second)
	for sent := uint64(0); sent == 0; { // until DTLS-SRTP is up and the keyframe went out
		d.mu.Lock()
		sent = d.packets
		d.mu.Unlock()
		if time.Now().After(deadline) {
			b.Fatal("the connection did not come up")
		}
		forwardRaw(d, 0, key, time.Now())
		time.Sleep(10 * time.Millisecond)
	}
	pkt := vp8Packet(2, 6000, false, true)
	var info rtpInfo
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i+2))
		parseRTP(pkt, &info)
		classify(codecKindVP8, &info)
		d.forward(0, &info, now)
	}
	b.StopTimer()
	if c := s.Counters(); c.UDPSendCalls > 0 {
		b.ReportMetric(float64(c.UDPSentDatagrams)/float64(c.UDPSendCalls), "packets/sendmmsg")
	}
}
