package sfu

import "testing"

func TestVP8Keyframe(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p          []byte
		start, key bool
	}{
		{"keyframe start", []byte{0x10, 0x00, 0x9d}, true, true},
		{"interframe start", []byte{0x10, 0x01}, true, false},
		{"continuation", []byte{0x00, 0x00}, false, false},
		{"extended with 15-bit picture id", []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true, true},
		{"extended, other partition", []byte{0x91, 0x80, 0x05, 0x00}, false, false},
		{"truncated", []byte{0x90}, false, false},
	} {
		start, key := vp8Keyframe(tc.p)
		if start != tc.start || key != tc.key {
			t.Errorf("%s: start=%v key=%v, want %v %v", tc.name, start, key, tc.start, tc.key)
		}
	}
}

func TestH264Keyframe(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p          []byte
		start, key bool
	}{
		{"IDR", []byte{0x65, 0x88}, true, true},
		{"non-IDR slice", []byte{0x41, 0x9a}, true, false},
		{"STAP-A with SPS", []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true, true},
		{"FU-A start of IDR", []byte{0x7c, 0x85, 0x00}, true, true},
		{"FU-A middle", []byte{0x7c, 0x05, 0x00}, false, false},
	} {
		start, key := h264Keyframe(tc.p)
		if start != tc.start || key != tc.key {
			t.Errorf("%s: start=%v key=%v, want %v %v", tc.name, start, key, tc.start, tc.key)
		}
	}
}

// FuzzParseRTP checks that hostile packets from a publisher never crash
// the forwarding loop's parser.
func FuzzParseRTP(f *testing.F) {
	f.Add([]byte{0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0x10, 0x00})
	f.Add([]byte{0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 0x10, 0x01, 0, 0, 0x7c, 0x85})
	f.Add([]byte{0xa0, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0x10, 0, 0, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var info rtpInfo
		if parseRTP(b, &info) {
			for _, k := range []codecKind{codecKindAudio, codecKindVP8, codecKindH264} {
				classify(k, &info)
			}
		}
	})
}
