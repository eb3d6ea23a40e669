package sfu

import (
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// maxLayers bounds the simulcast encodings we accept for one track.
const maxLayers = 3

// upTrack is one track a participant publishes: audio, camera or screen.
// With simulcast it has up to three layers (encodings), each its own RTP
// stream; without, one.
type upTrack struct {
	sfu       *SFU
	publisher *Peer
	receiver  *webrtc.RTPReceiver
	streamID  string // stream id offered to receivers, unique in the room
	trackID   string
	label     string
	kind      webrtc.RTPCodecType
	codec     webrtc.RTPCodecCapability
	ck        codecKind
	twccID    uint8 // transport-wide sequence number extension id, 0 if none

	mu     sync.Mutex // guards layers and ended
	layers []*upLayer
	ended  bool

	// downs is the receivers' copies of this track, replaced (never
	// modified) under mu so the forwarding loop reads it without locking.
	downs atomic.Pointer[[]*downTrack]
}

// upLayer is one RTP stream of an upTrack.
type upLayer struct {
	index int
	rid   string
	track *webrtc.TrackRemote
	ssrc  uint32

	bitrate  atomic.Uint64 // bits per second over the last window
	lastPLI  atomic.Int64  // unix nanoseconds of the last keyframe request
	pliLater atomic.Bool   // a request is scheduled for when the interval has passed

	lost          atomic.Uint64 // expected minus received since start
	receivedTotal atomic.Uint64

	rx reception // sequence numbers, jitter and lost packets, for feedback
}

func codecKindOf(mime string) codecKind {
	switch mime {
	case webrtc.MimeTypeVP8:
		return codecKindVP8
	case webrtc.MimeTypeH264:
		return codecKindH264
	}
	return codecKindAudio
}

// addLayer registers a new RTP stream of t and starts forwarding it.
func (t *upTrack) addLayer(remote *webrtc.TrackRemote) *upLayer {
	t.mu.Lock()
	if t.ended || len(t.layers) >= maxLayers {
		t.mu.Unlock()
		return nil
	}
	l := &upLayer{index: len(t.layers), rid: remote.RID(), track: remote, ssrc: uint32(remote.SSRC())}
	l.rx.clock = uint64(t.codec.ClockRate)
	if l.rx.clock == 0 {
		l.rx.clock = 90000
	}
	t.layers = append(t.layers, l)
	t.mu.Unlock()
	go t.readLoop(l)
	for _, d := range t.downList() {
		d.adapt()
	}
	return l
}

func (t *upTrack) downList() []*downTrack {
	if p := t.downs.Load(); p != nil {
		return *p
	}
	return nil
}

// addDown and removeDown replace the receivers list; copy-on-write keeps
// the forwarding loop lock-free.
func (t *upTrack) addDown(d *downTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := append(slices.Clone(t.downList()), d)
	t.downs.Store(&l)
}

func (t *upTrack) removeDown(d *downTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := slices.DeleteFunc(slices.Clone(t.downList()), func(x *downTrack) bool { return x == d })
	t.downs.Store(&l)
}

// layer returns layer i, or nil.
func (t *upTrack) layer(i int) *upLayer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i < 0 || i >= len(t.layers) {
		return nil
	}
	return t.layers[i]
}

// layersByQuality returns the layers ordered from the cheapest to the
// richest by their measured bitrate. Browsers name simulcast layers
// inconsistently ("q/h/f", "l/m/h", "0/1/2"), so the bitrate is the
// only reliable order.
func (t *upTrack) layersByQuality() []*upLayer {
	t.mu.Lock()
	l := slices.Clone(t.layers)
	t.mu.Unlock()
	slices.SortStableFunc(l, func(a, b *upLayer) int {
		ra, rb := a.bitrate.Load(), b.bitrate.Load()
		switch {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		return 0
	})
	return l
}

// requestKeyframe asks the publisher for a keyframe on layer i, at most
// once per keyframeInterval.
func (t *upTrack) requestKeyframe(i int) {
	if t.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	l := t.layer(i)
	if l == nil {
		return
	}
	now := time.Now().UnixNano()
	last := l.lastPLI.Load()
	if wait := int64(keyframeInterval) - (now - last); wait > 0 {
		// Too soon after the last request: make this one later rather than
		// never, or a receiver whose keyframe was lost could wait for the
		// publisher's next spontaneous keyframe, seconds away.
		if l.pliLater.CompareAndSwap(false, true) {
			time.AfterFunc(time.Duration(wait), func() {
				l.pliLater.Store(false)
				t.requestKeyframe(i)
			})
		}
		return
	}
	if !l.lastPLI.CompareAndSwap(last, now) {
		return
	}
	t.sfu.plis.Add(1)
	_ = t.publisher.up.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: l.ssrc}})
}

// readLoop forwards layer l's packets to every receiver until the stream
// ends. It reuses one buffer: the receivers copy what they keep. It
// records what the publisher's feedback needs (arrival for TWCC, losses
// for NACKs, jitter for reports) from the packet as it is, without
// allocating.
func (t *upTrack) readLoop(l *upLayer) {
	defer t.end()
	buf := make([]byte, 1500)
	var info rtpInfo
	for {
		n, _, err := l.track.Read(buf)
		if err != nil {
			return
		}
		t.handle(l, buf[:n], &info, time.Now())
	}
}

// handle accounts for packet b of layer l and forwards it to every
// receiver. It does not allocate.
func (t *upTrack) handle(l *upLayer, b []byte, info *rtpInfo, now time.Time) {
	if t.twccID != 0 {
		if ext := headerExtension(b, t.twccID); len(ext) >= 2 {
			t.publisher.feedback.record(l.ssrc, binary.BigEndian.Uint16(ext), now)
		}
	}
	if !parseRTP(b, info) {
		return
	}
	classify(t.ck, info)
	l.account(info, len(b), now)
	for _, d := range t.downList() {
		d.forward(l.index, info, now)
	}
}

// account updates l's bitrate and loss figures for one packet.
func (l *upLayer) account(info *rtpInfo, n int, now time.Time) {
	lost, received, bitrate, windowDone := l.rx.onPacket(info.seq, info.ts, n, now)
	if windowDone {
		l.bitrate.Store(bitrate)
	}
	l.receivedTotal.Store(received)
	l.lost.Store(lost)
}

// end stops forwarding t after its stream ended: every receiver drops
// its copy.
func (t *upTrack) end() {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.ended = true
	t.mu.Unlock()
	t.publisher.room.removeTrack(t)
}
