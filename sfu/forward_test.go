package sfu

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sinkWriter stands in for Pion's SRTP writer: it records the last packet.
type sinkWriter struct {
	n      int
	seq    uint16
	ts     uint32
	length int
}

func (w *sinkWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	w.n++
	w.seq, w.ts, w.length = h.SequenceNumber, h.Timestamp, len(p)
	return len(p), nil
}

func (w *sinkWriter) Write(b []byte) (int, error) { return len(b), nil }

func newTestDown(t testing.TB, layers int) (*upTrack, *downTrack, *sinkWriter) {
	s := &SFU{}
	room := s.NewRoom("r")
	pub := &Peer{ID: "pub", room: room}
	// An unconnected connection: keyframe requests go nowhere.
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	pub.up = pc
	sub := &Peer{ID: "sub", room: room}
	up := &upTrack{sfu: s, publisher: pub, kind: webrtc.RTPCodecTypeVideo, codec: codecVP8, ck: codecKindVP8, label: "camera"}
	for i := range layers {
		l := &upLayer{index: i, rid: simulcastName(i)}
		l.bitrate.Store(uint64(150_000 << (2 * i)))
		up.layers = append(up.layers, l)
	}
	d := newDownTrack(up, sub)
	w := &sinkWriter{}
	d.writer, d.ssrc, d.pt = w, 1234, 96
	return up, d, w
}

func simulcastName(i int) string { return []string{"q", "h", "f"}[i] }

func vp8Packet(seq uint16, ts uint32, key, start bool) []byte {
	b := make([]byte, 1100)
	b[0] = 0x80
	b[1] = 96
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	if start {
		b[12] = 0x10
	}
	if !key {
		b[13] = 0x01
	}
	return b
}

func forwardRaw(d *downTrack, layer int, b []byte, now time.Time) {
	var info rtpInfo
	if parseRTP(b, &info) {
		classify(codecKindVP8, &info)
		d.forward(layer, &info, now)
	}
}

// A receiver that waits for its first keyframe asks for one again while
// the publisher sends other frames: the first request, or the keyframe
// answering it, may have been lost (a publisher whose track had no
// packet yet, a receiver whose DTLS was not up), and a browser sends no
// keyframe unless asked.
func TestWaitingReceiverAsksAgainForAKeyframe(t *testing.T) {
	up, d, w := newTestDown(t, 1)
	start := time.Now()
	d.askedAt = start // asked at Bind, and nothing came back
	asked := func() uint64 { return up.sfu.plis.Load() }
	for i := range 100 { // 30 frames a second for 3.3 s, none a keyframe
		forwardRaw(d, 0, vp8Packet(uint16(i), uint32(i)*3000, false, true), start.Add(time.Duration(i)*33*time.Millisecond))
	}
	if w.n != 0 {
		t.Fatalf("%d packets forwarded before a keyframe", w.n)
	}
	// Once every keyframeRetry (500 ms) over 3.3 s; the publisher-side
	// bound (300 ms, real clock) may fold requests that come too close.
	if n := asked(); n < 1 || n > 7 {
		t.Errorf("asked for a keyframe %d times in 3.3 s of waiting; want 1 to 7", n)
	}
	before := asked()
	forwardRaw(d, 0, vp8Packet(100, 300000, true, true), start.Add(3400*time.Millisecond))
	forwardRaw(d, 0, vp8Packet(101, 303000, false, true), start.Add(4000*time.Millisecond))
	if w.n != 2 || asked() != before {
		t.Errorf("after the keyframe: %d forwarded, %d more requests; want 2 and none", w.n, asked()-before)
	}
}

// TestLayerSwitchKeepsSequenceContinuous checks what a receiver's decoder
// relies on: no forwarding before a keyframe, and one gap-free sequence
// across a simulcast switch, which happens on the new layer's keyframe.
func TestLayerSwitchKeepsSequenceContinuous(t *testing.T) {
	_, d, w := newTestDown(t, 3)
	now := time.Now()
	d.target = 2
	forwardRaw(d, 2, vp8Packet(100, 9000, false, true), now)
	if w.n != 0 {
		t.Fatal("forwarded before a keyframe")
	}
	forwardRaw(d, 2, vp8Packet(101, 12000, true, true), now)
	forwardRaw(d, 2, vp8Packet(102, 12000, true, false), now)
	last := w.seq
	d.target = 0
	forwardRaw(d, 0, vp8Packet(5000, 777, false, true), now.Add(33*time.Millisecond))
	forwardRaw(d, 2, vp8Packet(103, 15000, false, true), now.Add(33*time.Millisecond))
	if w.seq != last+1 || w.n != 3 {
		t.Fatalf("old layer should flow until the new one's keyframe: n=%d seq=%d", w.n, w.seq)
	}
	lastTS := w.ts
	forwardRaw(d, 0, vp8Packet(5001, 3777, true, true), now.Add(66*time.Millisecond))
	if w.n != 4 || w.seq != last+2 {
		t.Fatalf("switch: n=%d seq=%d, want seq %d", w.n, w.seq, last+2)
	}
	if d := w.ts - lastTS; d == 0 || d > 90000 {
		t.Fatalf("timestamp jumped by %d across the switch", d)
	}
	forwardRaw(d, 2, vp8Packet(104, 18000, false, true), now)
	if w.n != 4 {
		t.Fatal("the old layer is still forwarded after the switch")
	}
}

// BenchmarkForward measures the per-packet cost of the forwarding path
// (parse, keyframe check, rewrite, cache) for one receiver, without the
// SRTP encryption Pion adds. It must not allocate.
func BenchmarkForward(b *testing.B) {
	_, d, _ := newTestDown(b, 1)
	d.target = 0
	pkt := vp8Packet(0, 0, true, true)
	now := time.Now()
	forwardRaw(d, 0, pkt, now)
	pkt = vp8Packet(0, 0, false, false)
	var info rtpInfo
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i+1))
		parseRTP(pkt, &info)
		classify(codecKindVP8, &info)
		d.forward(0, &info, now)
	}
}

func TestNACKRetransmitsFromCache(t *testing.T) {
	_, d, w := newTestDown(t, 1)
	now := time.Now()
	forwardRaw(d, 0, vp8Packet(10, 900, true, true), now)
	for seq := uint16(11); seq < 20; seq++ {
		forwardRaw(d, 0, vp8Packet(seq, 900+uint32(seq), false, false), now)
	}
	sent := w.n
	lost := w.seq - 4
	d.retransmit(rtcp.NackPairsFromSequenceNumbers([]uint16{lost, w.seq + 100}))
	if w.n != sent+1 || w.seq != lost || w.length != 1100-12 {
		t.Fatalf("after NACK: %d writes (want %d), last seq %d (want %d), payload %d", w.n, sent+1, w.seq, lost, w.length)
	}
	if got := d.receiver.room.sfu.Counters().Retransmissions; got != 1 {
		t.Fatalf("retransmissions counter = %d", got)
	}
}
