package sfu

import (
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

	// Loss accounting, owned by the layer's read loop.
	windowStart     time.Time
	windowBytes     uint64
	baseSeq, maxSeq uint32 // extended sequence numbers
	received        uint64
	seqInit         bool
	lost            atomic.Uint64 // expected minus received since start
	receivedTotal   atomic.Uint64
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
// ends. It reuses one buffer: the receivers copy what they keep.
func (t *upTrack) readLoop(l *upLayer) {
	defer t.end()
	buf := make([]byte, 1500)
	var info rtpInfo
	l.windowStart = time.Now()
	for {
		n, _, err := l.track.Read(buf)
		if err != nil {
			return
		}
		if !parseRTP(buf[:n], &info) {
			continue
		}
		classify(t.ck, &info)
		now := time.Now()
		l.account(&info, n, now)
		for _, d := range t.downList() {
			d.forward(l.index, &info, now)
		}
	}
}

// account updates l's bitrate and loss figures for one packet.
func (l *upLayer) account(info *rtpInfo, n int, now time.Time) {
	l.windowBytes += uint64(n)
	if el := now.Sub(l.windowStart); el >= time.Second {
		l.bitrate.Store(l.windowBytes * 8 * uint64(time.Second) / uint64(el))
		l.windowBytes, l.windowStart = 0, now
	}
	seq := uint32(info.seq)
	if !l.seqInit {
		l.baseSeq, l.maxSeq, l.seqInit = seq, seq, true
	} else {
		// Extend the 16-bit sequence number with the cycle count.
		cycles := l.maxSeq &^ 0xffff
		ext := cycles | seq
		if d := int16(info.seq - uint16(l.maxSeq)); d > 0 {
			if uint16(l.maxSeq) > info.seq {
				ext += 1 << 16
			}
			l.maxSeq = ext
		}
	}
	l.received++
	l.receivedTotal.Store(l.received)
	if exp := uint64(l.maxSeq-l.baseSeq) + 1; exp > l.received {
		l.lost.Store(exp - l.received)
	} else {
		l.lost.Store(0)
	}
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
