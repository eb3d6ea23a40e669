package rx

import "testing"

func TestNumbersAndCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		n := NewNumber()
		if seen[n] {
			t.Fatalf("number %s drawn twice", n)
		}
		seen[n] = true
		for _, typed := range []string{n, FormatNumber(n), " rx " + FormatNumber(n)[3:], "rx-" + FormatNumber(n)[3:]} {
			if got, ok := ParseNumber(typed); !ok || got != n {
				t.Fatalf("ParseNumber(%q) = %q %v, want %s", typed, got, ok, n)
			}
		}
		// A single mistyped character is caught by the check character.
		for i := 0; i < len(n); i++ {
			b := []byte(n)
			b[i] = alphabet[(indexOf(b[i])+1)%len(alphabet)]
			if _, ok := ParseNumber(string(b)); ok {
				t.Fatalf("typo %s of %s accepted", b, n)
			}
		}
		c := NewAccessCode()
		if gotN, gotC, ok := ParseQR(QRPayload(n, c)); !ok || gotN != n || gotC != c {
			t.Fatalf("QR round trip of %s %s failed", n, c)
		}
	}
	for _, bad := range []string{"", "RX-0000-0000-0000", "RX-ABCD-EFGH", "RX-ABCD-EFGH-JKLMN", "RX-ABCD-EFGH-JKL!"} {
		if _, ok := ParseNumber(bad); ok {
			t.Errorf("ParseNumber(%q) accepted", bad)
		}
	}
	if _, ok := ParseAccessCode("ABCD-EFG1"); ok {
		t.Error("access code with a 1 accepted")
	}
}

func indexOf(c byte) int {
	for i := 0; i < len(alphabet); i++ {
		if alphabet[i] == c {
			return i
		}
	}
	return -1
}
