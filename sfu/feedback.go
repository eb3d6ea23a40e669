package sfu

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// The feedback a publisher gets from us on its up connection: NACKs for
// lost packets, receiver reports, and transport-wide congestion control
// (TWCC) feedback so that its encoder adapts. Pion's interceptors for
// these (nack generator, report receiver, twcc sender) each parse every
// packet into freshly allocated headers and attribute maps and hand it to
// their own goroutine; here the forwarding loop records what it already
// parsed, without allocating, and one ticker per participant sends.
const (
	feedbackInterval = 100 * time.Millisecond // TWCC and NACK cadence, as Pion's interceptors
	reportEvery      = 10                     // receiver reports every 10 ticks: once a second
	nackMaxTries     = 5                      // a lost packet is asked for at most this many times
	nackMaxGap       = 64                     // a larger jump is a restart, not a loss worth repairing
	nackSlots        = 128                    // lost packets tracked per layer
)

// upFeedback is a participant's TWCC recorder. Its mutex is taken once
// per packet by the read loops of the participant's layers.
type upFeedback struct {
	mu    sync.Mutex // guards rec
	rec   *twcc.Recorder
	start time.Time
	ssrc  uint32 // sender SSRC of our RTCP packets
}

func newUpFeedback() *upFeedback {
	ssrc := rand.Uint32()
	return &upFeedback{rec: twcc.NewRecorder(ssrc), start: time.Now(), ssrc: ssrc}
}

// record notes the arrival of transport-wide sequence number seq.
func (f *upFeedback) record(ssrc uint32, seq uint16, now time.Time) {
	f.mu.Lock()
	f.rec.Record(ssrc, seq, now.Sub(f.start).Microseconds())
	f.mu.Unlock()
}

// transportCCID returns the id the up connection negotiated for the
// transport-wide sequence number extension, or 0.
func transportCCID(r *webrtc.RTPReceiver) uint8 {
	for _, e := range r.GetParameters().HeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			return uint8(e.ID)
		}
	}
	return 0
}

// headerExtension returns the value of RTP header extension id in packet
// b (one-byte or two-byte form, RFC 8285), or nil.
func headerExtension(b []byte, id uint8) []byte {
	if len(b) < 12 || b[0]&0x10 == 0 || id == 0 {
		return nil
	}
	off := 12 + 4*int(b[0]&0x0f)
	if len(b) < off+4 {
		return nil
	}
	profile := binary.BigEndian.Uint16(b[off:])
	end := off + 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	if end > len(b) {
		return nil
	}
	i := off + 4
	switch {
	case profile == 0xBEDE:
		for i < end {
			if b[i] == 0 { // padding
				i++
				continue
			}
			eid, n := b[i]>>4, int(b[i]&0x0f)+1
			if eid == 15 {
				return nil
			}
			if i+1+n > end {
				return nil
			}
			if eid == id {
				return b[i+1 : i+1+n]
			}
			i += 1 + n
		}
	case profile&0xfff0 == 0x1000:
		for i+1 < end {
			if b[i] == 0 {
				i++
				continue
			}
			eid, n := b[i], int(b[i+1])
			if i+2+n > end {
				return nil
			}
			if eid == id {
				return b[i+2 : i+2+n]
			}
			i += 2 + n
		}
	}
	return nil
}

// missingPacket is a lost packet we may still ask for.
type missingPacket struct {
	seq   uint16
	tries uint8
}

// reception is a layer's receive statistics and lost packets, shared by
// its read loop and the participant's feedback ticker under mu.
type reception struct {
	mu              sync.Mutex
	clock           uint64
	start           time.Time
	init            bool
	baseSeq, maxSeq uint32 // extended sequence numbers
	received        uint64
	expectedPrior   uint64
	receivedPrior   uint64
	lastTransit     int64
	jitter          uint32 // RFC 3550 A.8: 16 times the interarrival jitter, in clock units
	missing         [nackSlots]missingPacket
	nMissing        int
	bytesWindow     uint64
	windowStart     time.Time
}

// onPacket accounts for one packet of sequence number seq, RTP timestamp
// ts and n bytes arriving at now. It returns the lost and received totals,
// and the bitrate when a one-second window is over. Gaps of up to
// nackMaxGap packets are remembered for NACKs; a packet older than the
// newest clears its entry (a retransmission or reordering).
func (r *reception) onPacket(seq uint16, ts uint32, n int, now time.Time) (lost, received uint64, bitrate uint64, windowDone bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.init {
		r.init, r.start, r.windowStart = true, now, now
		r.baseSeq, r.maxSeq = uint32(seq), uint32(seq)
	} else {
		delta := int16(seq - uint16(r.maxSeq))
		switch {
		case delta > 0:
			ext := r.maxSeq + uint32(uint16(delta))
			if delta > 1 && delta <= nackMaxGap {
				for s := uint16(r.maxSeq) + 1; s != seq; s++ {
					r.addMissingLocked(s)
				}
			}
			r.maxSeq = ext
		case delta < 0:
			r.removeMissingLocked(seq) // a retransmission or a late packet
		}
	}
	r.received++
	// Interarrival jitter (RFC 3550 section 6.4.1) in clock units.
	arrival := int64(uint64(now.Sub(r.start).Microseconds()) * r.clock / 1e6)
	transit := arrival - int64(ts)
	if r.received > 1 {
		d := transit - r.lastTransit
		if d < 0 {
			d = -d
		}
		r.jitter += uint32(d) - ((r.jitter + 8) >> 4)
	}
	r.lastTransit = transit
	r.bytesWindow += uint64(n)
	if el := now.Sub(r.windowStart); el >= time.Second {
		bitrate, windowDone = r.bytesWindow*8*uint64(time.Second)/uint64(el), true
		r.bytesWindow, r.windowStart = 0, now
	}
	if exp := uint64(r.maxSeq-r.baseSeq) + 1; exp > r.received {
		lost = exp - r.received
	}
	return lost, r.received, bitrate, windowDone
}

// addMissingLocked remembers seq as lost, dropping the oldest when full.
func (r *reception) addMissingLocked(seq uint16) {
	if r.nMissing == len(r.missing) {
		copy(r.missing[:], r.missing[1:])
		r.nMissing--
	}
	r.missing[r.nMissing] = missingPacket{seq: seq}
	r.nMissing++
}

func (r *reception) removeMissingLocked(seq uint16) {
	for i := 0; i < r.nMissing; i++ {
		if r.missing[i].seq == seq {
			copy(r.missing[i:], r.missing[i+1:r.nMissing])
			r.nMissing--
			return
		}
	}
}

// appendNACKs appends the sequence numbers still worth asking for and
// counts the request; packets asked for nackMaxTries times are given up.
func (r *reception) appendNACKs(seqs []uint16) []uint16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	j := 0
	for i := 0; i < r.nMissing; i++ {
		m := r.missing[i]
		if m.tries >= nackMaxTries || int16(uint16(r.maxSeq)-m.seq) > 2*nackMaxGap+nackSlots {
			continue
		}
		m.tries++
		seqs = append(seqs, m.seq)
		r.missing[j] = m
		j++
	}
	r.nMissing = j
	return seqs
}

// report fills a reception report block (RFC 3550 section 6.4.1) and
// starts a new report interval. It reports false before any packet.
func (r *reception) report(ssrc uint32, out *rtcp.ReceptionReport) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.init {
		return false
	}
	expected := uint64(r.maxSeq-r.baseSeq) + 1
	lost := int64(expected) - int64(r.received)
	expInterval := expected - r.expectedPrior
	recvInterval := r.received - r.receivedPrior
	r.expectedPrior, r.receivedPrior = expected, r.received
	var fraction uint8
	if lostInterval := int64(expInterval) - int64(recvInterval); expInterval != 0 && lostInterval > 0 {
		fraction = uint8(uint64(lostInterval) << 8 / expInterval)
	}
	lost = max(min(lost, 0x7fffff), -0x800000)
	*out = rtcp.ReceptionReport{
		SSRC:               ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(lost) & 0xffffff,
		LastSequenceNumber: r.maxSeq,
		Jitter:             r.jitter >> 4,
	}
	return true
}

// feedbackLoop sends p's publisher its NACKs, TWCC feedback and receiver
// reports, and p's receivers the sender reports of what we forward to
// them, until p closes. It owns the buffers it reuses.
func (p *Peer) feedbackLoop() {
	tick := time.NewTicker(feedbackInterval)
	defer tick.Stop()
	var (
		tracks []*upTrack
		layers []*upLayer
		seqs   []uint16
		pkts   []rtcp.Packet
		rr     = &rtcp.ReceiverReport{SSRC: p.feedback.ssrc}
		nacks  []rtcp.TransportLayerNack
		downs  []*downTrack
		srs    []rtcp.SenderReport
	)
	for n := 1; ; n++ {
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
		pkts, nacks = pkts[:0], nacks[:0]
		report := n%reportEvery == 0
		rr.Reports = rr.Reports[:0]

		p.room.mu.Lock()
		tracks = append(tracks[:0], p.tracks...)
		p.room.mu.Unlock()
		for _, t := range tracks {
			t.mu.Lock()
			layers = append(layers[:0], t.layers...)
			t.mu.Unlock()
			for _, l := range layers {
				if t.kind == webrtc.RTPCodecTypeVideo {
					if seqs = l.rx.appendNACKs(seqs[:0]); len(seqs) > 0 {
						nacks = append(nacks, rtcp.TransportLayerNack{SenderSSRC: p.feedback.ssrc, MediaSSRC: l.ssrc,
							Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)})
					}
				}
				if report && len(rr.Reports) < 31 {
					var b rtcp.ReceptionReport
					if l.rx.report(l.ssrc, &b) {
						rr.Reports = append(rr.Reports, b)
					}
				}
			}
		}
		if len(rr.Reports) > 0 {
			pkts = append(pkts, rr) // a compound packet starts with its report
		}
		for i := range nacks {
			pkts = append(pkts, &nacks[i])
		}
		p.feedback.mu.Lock()
		pkts = append(pkts, p.feedback.rec.BuildFeedbackPacket()...)
		p.feedback.mu.Unlock()
		if len(pkts) > 0 {
			_ = p.up.WriteRTCP(pkts)
		}
		if !report {
			continue
		}
		// Sender reports on the down connection, one per forwarded stream.
		p.mu.Lock()
		for _, d := range p.downs {
			downs = append(downs, d)
		}
		p.mu.Unlock()
		now := time.Now()
		srs, pkts = srs[:0], pkts[:0]
		for _, d := range downs {
			var sr rtcp.SenderReport
			if d.senderReport(now, &sr) {
				srs = append(srs, sr)
			}
		}
		clear(downs)
		downs = downs[:0]
		for i := range srs {
			pkts = append(pkts, &srs[i])
		}
		if len(pkts) > 0 {
			_ = p.down.WriteRTCP(pkts)
		}
	}
}
