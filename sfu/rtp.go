package sfu

import "encoding/binary"

// rtpInfo is what the forwarding loop needs from an RTP packet, parsed
// without allocating.
type rtpInfo struct {
	seq       uint16
	ts        uint32
	marker    bool
	payload   []byte // without header, extensions and padding
	keyframe  bool   // first packet of a keyframe (always true for audio)
	frameHead bool   // first packet of a frame
}

// parseRTP fills info from packet b. It reports false for a packet too
// short or malformed to forward.
func parseRTP(b []byte, info *rtpInfo) bool {
	if len(b) < 12 || b[0]>>6 != 2 {
		return false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 { // header extension
		if len(b) < off+4 {
			return false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 { // padding; its length is in the last byte
		if end == 0 {
			return false
		}
		end -= int(b[end-1])
	}
	if off > end {
		return false
	}
	info.marker = b[1]&0x80 != 0
	info.seq = binary.BigEndian.Uint16(b[2:])
	info.ts = binary.BigEndian.Uint32(b[4:])
	info.payload = b[off:end]
	return true
}

// codecKind tells the forwarding loop how to find keyframes.
type codecKind uint8

const (
	codecKindAudio codecKind = iota
	codecKindVP8
	codecKindH264
)

// classify sets info.keyframe and info.frameHead for a payload of codec k.
func classify(k codecKind, info *rtpInfo) {
	switch k {
	case codecKindAudio:
		info.keyframe, info.frameHead = true, true
	case codecKindVP8:
		info.frameHead, info.keyframe = vp8Keyframe(info.payload)
	case codecKindH264:
		info.frameHead, info.keyframe = h264Keyframe(info.payload)
	}
}

// vp8Keyframe parses the VP8 payload descriptor (RFC 7741 section 4.2)
// and reports whether the packet starts a frame and whether that frame is
// a keyframe (the P bit of the VP8 payload header is 0).
func vp8Keyframe(p []byte) (start, key bool) {
	if len(p) < 1 {
		return false, false
	}
	x, s, pid := p[0]&0x80 != 0, p[0]&0x10 != 0, p[0]&0x0f
	i := 1
	if x {
		if len(p) < 2 {
			return false, false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture id
			if len(p) <= i {
				return false, false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/KEYIDX byte
			i++
		}
	}
	if !s || pid != 0 {
		return false, false
	}
	if len(p) <= i {
		return true, false
	}
	return true, p[i]&0x01 == 0
}

// h264Keyframe reports whether an H.264 payload (RFC 6184) starts a
// frame and whether it carries an IDR slice or a sequence parameter set,
// from which a decoder can start.
func h264Keyframe(p []byte) (start, key bool) {
	if len(p) < 1 {
		return false, false
	}
	isKey := func(t byte) bool { return t == 5 || t == 7 }
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		return true, isKey(t)
	case t == 24: // STAP-A: 2-byte sizes then NAL units
		for i := 1; i+2 < len(p); {
			n := int(binary.BigEndian.Uint16(p[i:]))
			if i+2 >= len(p) {
				break
			}
			if isKey(p[i+2] & 0x1f) {
				return true, true
			}
			i += 2 + n
		}
		return true, false
	case t == 28: // FU-A: start bit and original NAL type in the FU header
		if len(p) < 2 || p[1]&0x80 == 0 {
			return false, false
		}
		return true, isKey(p[1] & 0x1f)
	}
	return false, false
}
