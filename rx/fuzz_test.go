package rx

import "testing"

// FuzzParseQR feeds arbitrary scanned text to the QR and code parsers a
// pharmacy's accept goes through: no panic, and whatever parses round-
// trips to the same number and access code.
func FuzzParseQR(f *testing.F) {
	f.Add(QRPayload(NewNumber(), NewAccessCode()))
	f.Add("RX-ABCD-EFGH-JKLM")
	f.Add("")
	f.Add("\x00\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if n, c, ok := ParseQR(s); ok {
			n2, c2, ok2 := ParseQR(QRPayload(n, c))
			if !ok2 || n2 != n || c2 != c {
				t.Fatalf("%q parsed to %q %q, which does not round-trip", s, n, c)
			}
		}
		if n, ok := ParseNumber(s); ok {
			if n2, ok2 := ParseNumber(n); !ok2 || n2 != n {
				t.Fatalf("number %q not stable", n)
			}
		}
		ParseAccessCode(s)
	})
}
