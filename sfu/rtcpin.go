package sfu

import (
	"encoding/binary"
	"time"

	"github.com/pion/rtcp"
)

// RTCP packet types and feedback formats we act on (RFC 3550, 4585,
// 5104, draft-alvestrand-rmcat-remb).
const (
	rtcpSR    = 200
	rtcpRR    = 201
	rtcpRTPFB = 205
	rtcpPSFB  = 206

	fmtNACK = 1  // RTPFB: generic NACK
	fmtPLI  = 1  // PSFB: picture loss indication
	fmtFIR  = 4  // PSFB: full intra request
	fmtAFB  = 15 // PSFB: application layer feedback (REMB)
)

// rtcpFeedback is what one compound RTCP packet from a receiver asks of
// a down track, read without allocating.
type rtcpFeedback struct {
	keyframe     bool
	remb         uint64 // bits per second, 0 if none
	reports      [4]rtcp.ReceptionReport
	nReports     int
	nacks        [16]rtcp.NackPair
	nNacks       int
	nNackPackets int
}

// parseRTCP walks compound packet b and collects what concerns media
// SSRC ssrc. Malformed trailing packets are ignored.
func parseRTCP(b []byte, ssrc uint32, fb *rtcpFeedback) {
	*fb = rtcpFeedback{}
	for len(b) >= 4 {
		if b[0]>>6 != 2 {
			return
		}
		count, pt := b[0]&0x1f, b[1]
		n := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
		if n > len(b) {
			return
		}
		p := b[:n]
		b = b[n:]
		switch pt {
		case rtcpSR, rtcpRR:
			off := 8
			if pt == rtcpSR {
				off = 28
			}
			for i := 0; i < int(count) && off+24 <= len(p); i, off = i+1, off+24 {
				r := p[off:]
				if binary.BigEndian.Uint32(r) != ssrc || fb.nReports == len(fb.reports) {
					continue
				}
				fb.reports[fb.nReports] = rtcp.ReceptionReport{
					SSRC:               ssrc,
					FractionLost:       r[4],
					TotalLost:          uint32(r[5])<<16 | uint32(r[6])<<8 | uint32(r[7]),
					LastSequenceNumber: binary.BigEndian.Uint32(r[8:]),
					Jitter:             binary.BigEndian.Uint32(r[12:]),
					LastSenderReport:   binary.BigEndian.Uint32(r[16:]),
					Delay:              binary.BigEndian.Uint32(r[20:]),
				}
				fb.nReports++
			}
		case rtcpRTPFB:
			if count != fmtNACK || len(p) < 12 || binary.BigEndian.Uint32(p[8:]) != ssrc {
				continue
			}
			fb.nNackPackets++
			for off := 12; off+4 <= len(p) && fb.nNacks < len(fb.nacks); off += 4 {
				fb.nacks[fb.nNacks] = rtcp.NackPair{PacketID: binary.BigEndian.Uint16(p[off:]), LostPackets: rtcp.PacketBitmap(binary.BigEndian.Uint16(p[off+2:]))}
				fb.nNacks++
			}
		case rtcpPSFB:
			if len(p) < 12 {
				continue
			}
			switch count {
			case fmtPLI:
				if binary.BigEndian.Uint32(p[8:]) == ssrc {
					fb.keyframe = true
				}
			case fmtFIR:
				for off := 12; off+8 <= len(p); off += 8 {
					if binary.BigEndian.Uint32(p[off:]) == ssrc {
						fb.keyframe = true
					}
				}
			case fmtAFB:
				// REMB: "REMB", SSRC count, 6-bit exponent and 18-bit mantissa.
				if len(p) >= 20 && string(p[12:16]) == "REMB" {
					exp := uint(p[17] >> 2)
					mantissa := uint64(p[17]&3)<<16 | uint64(p[18])<<8 | uint64(p[19])
					if exp > 46 {
						exp = 46 // beyond any real rate: keep the shift from overflowing
					}
					fb.remb = max(mantissa<<exp, 1)
				}
			}
		}
	}
}

// ntpTime is t in the 64-bit NTP format of sender reports.
func ntpTime(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return secs<<32 | frac
}

// senderReport fills sr for d at now, so that the receiver can map RTP
// timestamps to wall-clock time (lip sync) and measure the round trip.
// It reports false before the first packet.
func (d *downTrack) senderReport(now time.Time, sr *rtcp.SenderReport) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.packets == 0 || d.writer == nil {
		return false
	}
	ts := d.lastTs + uint32(uint64(now.Sub(d.lastAt))*d.clock/uint64(time.Second))
	*sr = rtcp.SenderReport{SSRC: d.ssrc, NTPTime: ntpTime(now), RTPTime: ts,
		PacketCount: uint32(d.packets), OctetCount: uint32(d.octets)}
	return true
}
