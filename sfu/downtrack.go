package sfu

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// cacheSize is the number of sent video packets kept per receiver for
// retransmission: about two seconds of a 1.5 Mbit/s stream, longer than
// any NACK worth answering.
const cacheSize = 256

// cachedPacket is a sent packet, header included, in a fixed slot so the
// cache never allocates after it is made.
type cachedPacket struct {
	seq uint16
	n   int
	buf [1500]byte
}

// Bandwidth estimation bounds, in bits per second.
const (
	initialEstimate = 2_500_000
	minEstimate     = 50_000
	maxEstimate     = 20_000_000
	rembLifetime    = 5 * time.Second
)

// downTrack is one receiver's copy of an upTrack. It implements
// webrtc.TrackLocal: Pion binds it to the receiver's down connection and
// hands it the writer.
type downTrack struct {
	up       *upTrack
	receiver *Peer
	id       string // the bind id Pion gives; see Bind
	clock    uint64
	sender   *webrtc.RTPSender

	mu      sync.Mutex // guards everything below
	writer  webrtc.TrackLocalWriter
	ssrc    uint32
	pt      uint8
	hdr     rtp.Header // reused for every packet
	rtxHdr  rtp.Header // reused for every retransmission
	current int        // layer being forwarded, -1 before the first keyframe
	target  int        // layer wanted; switched to on its next keyframe
	started bool
	seqOff  uint16
	tsOff   uint32
	baseSeq uint16 // first input sequence number of the current layer
	lastSeq uint16 // newest output sequence number
	lastTs  uint32
	lastAt  time.Time
	askedAt time.Time // when this receiver last asked for a keyframe
	cache   []cachedPacket

	// Statistics and estimation.
	windowStart  time.Time
	windowBytes  uint64
	bitrate      uint64
	packets      uint64
	octets       uint64 // payload bytes sent, for sender reports
	estimate     uint64
	remb         uint64
	rembAt       time.Time
	fractionLost uint8
	jitter       time.Duration
	rtt          time.Duration
	lastNACK     time.Time
}

var _ webrtc.TrackLocal = (*downTrack)(nil)

func newDownTrack(up *upTrack, receiver *Peer) *downTrack {
	d := &downTrack{up: up, receiver: receiver, clock: uint64(up.codec.ClockRate), current: -1, estimate: initialEstimate}
	if d.clock == 0 {
		d.clock = 90000
	}
	if up.kind == webrtc.RTPCodecTypeVideo {
		d.cache = make([]cachedPacket, cacheSize)
	}
	d.target = d.pickLayerLocked()
	return d
}

// ID is the track id offered to the receiver.
func (d *downTrack) ID() string { return d.up.trackID }

// RID is empty: a receiver gets one layer.
func (d *downTrack) RID() string { return "" }

// StreamID is the room-unique stream id that Signaler.Offer maps to the
// publisher.
func (d *downTrack) StreamID() string { return d.up.streamID }

// Kind is audio or video.
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.up.kind }

// Bind picks the negotiated payload type for the publisher's codec.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if equalFoldASCII(c.MimeType, d.up.codec.MimeType) {
			d.mu.Lock()
			d.writer, d.ssrc, d.pt, d.id = ctx.WriteStream(), uint32(ctx.SSRC()), uint8(c.PayloadType), ctx.ID()
			d.askedAt = time.Now()
			d.mu.Unlock()
			d.up.requestKeyframe(d.targetLayer())
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, ErrNoCodec
}

// Unbind stops writing.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.mu.Lock()
	d.writer = nil
	d.mu.Unlock()
	return nil
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (d *downTrack) targetLayer() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.target
}

// forward sends one packet of layer to the receiver, rewriting its SSRC,
// payload type, sequence number and timestamp so that the receiver sees
// one continuous stream across layer switches. It does not allocate.
func (d *downTrack) forward(layer int, in *rtpInfo, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writer == nil {
		return
	}
	switched := false
	prevCurrent, prevStarted, prevSeqOff, prevTsOff, prevBase := d.current, d.started, d.seqOff, d.tsOff, d.baseSeq
	if layer != d.current {
		// A layer switch (or the first packet) can only happen on a
		// keyframe of the wanted layer: anything else is undecodable.
		if layer != d.target || !in.keyframe {
			if layer == d.target && now.Sub(d.askedAt) >= keyframeRetry {
				// Still waiting for the keyframe asked for: that request,
				// or its answer, was lost (asked before the publisher's
				// first packet, or before this receiver's DTLS was up).
				// Ask again, or the receiver could wait for a keyframe
				// the publisher never sends by itself.
				d.askedAt = now
				d.up.requestKeyframe(layer)
			}
			return
		}
		switched = true
		if d.started {
			delta := uint32(uint64(now.Sub(d.lastAt)) * d.clock / uint64(time.Second))
			if delta == 0 {
				delta = 1
			}
			d.seqOff = d.lastSeq + 1 - in.seq
			d.tsOff = d.lastTs + delta - in.ts
		}
		d.current, d.baseSeq, d.started = layer, in.seq, true
	} else if int16(in.seq-d.baseSeq) < 0 {
		return // late packet from before the switch: its number is taken
	}
	seq := in.seq + d.seqOff
	if len(in.payload) == 0 {
		// Padding-only probe: drop it, and close the gap it leaves when in order.
		if seq == d.lastSeq+1 {
			d.seqOff--
		}
		return
	}
	ts := in.ts + d.tsOff
	d.hdr.Version = 2
	d.hdr.Marker = in.marker
	d.hdr.PayloadType = d.pt
	d.hdr.SequenceNumber = seq
	d.hdr.Timestamp = ts
	d.hdr.SSRC = d.ssrc
	if n, err := d.writer.WriteRTP(&d.hdr, in.payload); err != nil || n == 0 {
		// Pion drops packets silently until DTLS-SRTP is up. A keyframe
		// lost that way would leave the receiver with nothing to decode:
		// undo the switch and ask for another keyframe.
		if switched {
			d.current, d.started, d.seqOff, d.tsOff, d.baseSeq = prevCurrent, prevStarted, prevSeqOff, prevTsOff, prevBase
			go d.up.requestKeyframe(layer)
		}
		return
	}
	if int16(seq-d.lastSeq) > 0 || d.packets == 0 {
		d.lastSeq, d.lastTs, d.lastAt = seq, ts, now
	}
	n := 12 + len(in.payload)
	d.packets++
	d.octets += uint64(len(in.payload))
	d.account(uint64(n), now)
	d.receiver.room.sfu.packets.Add(1)
	d.receiver.room.sfu.bytes.Add(uint64(n))
	if d.cache != nil && n <= len(d.cache[0].buf) {
		c := &d.cache[seq%cacheSize]
		if _, err := d.hdr.MarshalTo(c.buf[:]); err == nil {
			copy(c.buf[12:], in.payload)
			c.seq, c.n = seq, n
		}
	}
}

func (d *downTrack) account(n uint64, now time.Time) {
	if d.windowStart.IsZero() {
		d.windowStart = now
	}
	d.windowBytes += n
	if el := now.Sub(d.windowStart); el >= time.Second {
		d.bitrate = d.windowBytes * 8 * uint64(time.Second) / uint64(el)
		d.windowBytes, d.windowStart = 0, now
	}
}

// retransmit resends the cached packets a receiver reported lost. It
// does not allocate.
func (d *downTrack) retransmit(nacks []rtcp.NackPair) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.writer == nil || d.cache == nil {
		return
	}
	for _, pair := range nacks {
		d.retransmitLocked(pair.PacketID)
		for i := range uint16(16) {
			if pair.LostPackets&(1<<i) != 0 {
				d.retransmitLocked(pair.PacketID + i + 1)
			}
		}
	}
}

// retransmitLocked resends packet seq if the cache still holds it. Call
// with d.mu held.
func (d *downTrack) retransmitLocked(seq uint16) {
	c := &d.cache[seq%cacheSize]
	if c.n == 0 || c.seq != seq {
		return
	}
	off, err := d.rtxHdr.Unmarshal(c.buf[:c.n])
	if err != nil {
		return
	}
	if _, err := d.writer.WriteRTP(&d.rtxHdr, c.buf[off:c.n]); err == nil {
		d.receiver.room.sfu.retransmissions.Add(1)
	}
}

// readRTCP handles the receiver's feedback on this track until the
// sender is stopped. It reads into one buffer and parses in place:
// Pion's ReadRTCP allocates a buffer and a struct per packet.
func (d *downTrack) readRTCP() {
	buf := make([]byte, 1500)
	var fb rtcpFeedback
	for {
		n, _, err := d.sender.Read(buf)
		if err != nil {
			return
		}
		d.mu.Lock()
		ssrc := d.ssrc
		d.mu.Unlock()
		parseRTCP(buf[:n], ssrc, &fb)
		if fb.keyframe {
			d.up.requestKeyframe(d.currentOrTarget())
		}
		if fb.nNackPackets > 0 {
			d.receiver.room.sfu.nacks.Add(uint64(fb.nNackPackets))
			d.retransmit(fb.nacks[:fb.nNacks])
		}
		if fb.remb != 0 {
			d.mu.Lock()
			d.remb, d.rembAt = fb.remb, time.Now()
			d.mu.Unlock()
		}
		for _, r := range fb.reports[:fb.nReports] {
			d.receptionReport(r)
		}
		d.adapt()
	}
}

func (d *downTrack) currentOrTarget() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current >= 0 {
		return d.current
	}
	return d.target
}

// ntpMiddle returns the middle 32 bits of the NTP time of t, the unit of
// the LSR field of reception reports.
func ntpMiddle(t time.Time) uint32 {
	return uint32(ntpTime(t) >> 16)
}

// receptionReport updates loss, jitter, RTT and the loss-based estimate.
func (d *downTrack) receptionReport(r rtcp.ReceptionReport) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.SSRC != d.ssrc {
		return
	}
	d.fractionLost = r.FractionLost
	d.jitter = time.Duration(uint64(r.Jitter) * uint64(time.Second) / d.clock)
	if r.LastSenderReport != 0 {
		if rtt := ntpMiddle(now) - r.LastSenderReport - r.Delay; rtt < 65536*10 {
			d.rtt = time.Duration(uint64(rtt) * uint64(time.Second) / 65536)
		}
	}
	// Loss-based estimate, as in Google Congestion Control's loss
	// controller: back off above 10% loss, probe upwards below 2%.
	loss := float64(r.FractionLost) / 256
	switch {
	case loss > 0.1:
		base := d.bitrate
		if base == 0 || base > d.estimate {
			base = d.estimate
		}
		d.estimate = uint64(float64(base) * (1 - loss/2))
	case loss < 0.02:
		d.estimate = d.estimate * 108 / 100
	}
	d.estimate = min(max(d.estimate, minEstimate), maxEstimate)
}

// effectiveEstimateLocked is the receiver's bandwidth estimate: the
// loss-based estimate, capped by a recent REMB. Call with d.mu held.
func (d *downTrack) effectiveEstimateLocked() uint64 {
	e := d.estimate
	if d.remb != 0 && time.Since(d.rembAt) < rembLifetime && d.remb < e {
		e = d.remb
	}
	return e
}

// pickLayerLocked chooses the richest layer whose bitrate fits the
// estimate, else the cheapest. Call with d.mu held (or before d is shared).
func (d *downTrack) pickLayerLocked() int {
	layers := d.up.layersByQuality()
	if len(layers) == 0 {
		return 0
	}
	budget := d.effectiveEstimateLocked()
	best := layers[0].index
	for _, l := range layers[1:] {
		br := l.bitrate.Load()
		if br == 0 || br > budget {
			break
		}
		best = l.index
	}
	return best
}

// adapt re-chooses the layer from the current estimate and asks for a
// keyframe on the new layer so that the switch happens soon.
func (d *downTrack) adapt() {
	if d.up.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	d.mu.Lock()
	t := d.pickLayerLocked()
	changed := t != d.target
	d.target = t
	d.mu.Unlock()
	if changed {
		d.up.requestKeyframe(t)
	}
}

// DownStats describes one received track for the practitioner's quality
// panel.
type DownStats struct {
	From         string        `json:"from"` // publisher participant id
	Label        string        `json:"label"`
	Kind         string        `json:"kind"`
	Bitrate      uint64        `json:"bitrate"` // bits per second sent to the receiver
	FractionLost float64       `json:"loss"`    // reported by the receiver, 0..1
	Jitter       time.Duration `json:"jitter"`
	RTT          time.Duration `json:"rtt"`
	Layer        string        `json:"layer,omitempty"` // rid of the simulcast layer forwarded
	Estimate     uint64        `json:"estimate,omitempty"`
}

func (d *downTrack) stats() DownStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := DownStats{
		From: d.up.publisher.ID, Label: d.up.label, Kind: d.up.kind.String(),
		Bitrate: d.bitrate, FractionLost: float64(d.fractionLost) / 256, Jitter: d.jitter, RTT: d.rtt,
	}
	if d.up.kind == webrtc.RTPCodecTypeVideo {
		s.Estimate = d.effectiveEstimateLocked()
		if l := d.up.layer(d.current); l != nil {
			s.Layer = l.rid
		}
	}
	return s
}
