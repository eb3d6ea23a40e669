package signaling

import (
	"testing"
)

// FuzzDecode feeds arbitrary client messages to the parser the reader
// uses: it must never panic, and whatever it accepts must be a known type
// within the limits.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","version":1,"token":"j1.x.y"}`,
		`{"type":"offer","pc":"up","sdp":"v=0\r\n","labels":{"a":"camera"}}`,
		`{"type":"answer","pc":"down","sdp":"v=0"}`,
		`{"type":"candidate","pc":"up","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
		`{"type":"chat","text":"bonjour"}`,
		`{"type":"file","file":{"name":"a.pdf","mime":"application/pdf","data":"AAEC"}}`,
		`{"type":"admit","participant":"p"}`,
		`{"type":"invite","name":"Interprète"}`,
		`{"type":"end"}`, `{"type":"leave"}`, `{"type":"restart"}`,
		`{"type":"chat","text":42}`, `{}`, `[]`, `null`, `{"type":"hello"}{"type":"hello"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			if code, text := closeCode(err); code == 0 || text == "" {
				t.Fatalf("error %v maps to close %d %q", err, code, text)
			}
			return
		}
		if err := m.validate(); err != nil {
			t.Fatalf("accepted message fails validation: %v", err)
		}
		if len(m.Text) > maxChatBytes || len(m.SDP) > maxSDPBytes {
			t.Fatalf("accepted oversized fields")
		}
	})
}
