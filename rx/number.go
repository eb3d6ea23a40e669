package rx

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// alphabet holds the characters of prescription numbers and access codes:
// digits and capitals without the look-alikes 0/O, 1/I/L and U/V, so that
// a pharmacist can type what is printed without guessing.
const alphabet = "23456789ABCDEFGHJKMNPQRSTWXYZ"

// numberLen is the count of random characters in a prescription number:
// 29^11 ≈ 1.2e16 possibilities, so numbers are neither sequential nor
// guessable. A twelfth character is a check character.
const numberLen = 11

// accessCodeLen is the count of characters in an access code: 29^8 ≈ 5e11,
// which together with the number makes guessing hopeless.
const accessCodeLen = 8

func randomChars(n int) string {
	// rand.Text-like: rejection sampling so every character is equally likely.
	var b strings.Builder
	buf := make([]byte, 1)
	for b.Len() < n {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		if int(buf[0]) < 256-256%len(alphabet) {
			b.WriteByte(alphabet[int(buf[0])%len(alphabet)])
		}
	}
	return b.String()
}

// checkChar computes a Luhn mod N check character over s, which catches
// every single-character error and most swaps of adjacent characters.
func checkChar(s string) byte {
	n := len(alphabet)
	factor, sum := 2, 0
	for i := len(s) - 1; i >= 0; i-- {
		addend := factor * strings.IndexByte(alphabet, s[i])
		addend = addend/n + addend%n
		sum += addend
		if factor == 2 {
			factor = 1
		} else {
			factor = 2
		}
	}
	return alphabet[(n-sum%n)%n]
}

// NewNumber returns a fresh random prescription number in canonical form
// (12 characters, the last one a check character).
func NewNumber() string {
	s := randomChars(numberLen)
	return s + string(checkChar(s))
}

// NewAccessCode returns a fresh random access code in canonical form.
func NewAccessCode() string { return randomChars(accessCodeLen) }

// canonical upper-cases s and drops spaces, dashes and the "RX" prefix
// printed before a number.
func canonical(s string) string {
	s = strings.NewReplacer("-", "", " ", "").Replace(strings.ToUpper(s))
	if len(s) == numberLen+3 && strings.HasPrefix(s, "RX") {
		s = s[2:]
	}
	return s
}

// ParseNumber returns the canonical form of a typed prescription number,
// or false if it cannot be one (wrong length, stray characters, bad check
// character).
func ParseNumber(s string) (string, bool) {
	c := canonical(s)
	if len(c) != numberLen+1 {
		return "", false
	}
	for i := 0; i < len(c); i++ {
		if strings.IndexByte(alphabet, c[i]) < 0 {
			return "", false
		}
	}
	if checkChar(c[:numberLen]) != c[numberLen] {
		return "", false
	}
	return c, true
}

// ParseAccessCode returns the canonical form of a typed access code, or
// false if it cannot be one.
func ParseAccessCode(s string) (string, bool) {
	c := strings.NewReplacer("-", "", " ", "").Replace(strings.ToUpper(s))
	if len(c) != accessCodeLen {
		return "", false
	}
	for i := 0; i < len(c); i++ {
		if strings.IndexByte(alphabet, c[i]) < 0 {
			return "", false
		}
	}
	return c, true
}

// FormatNumber prints a canonical number the way it appears on paper:
// "RX-ABCD-EFGH-JKLM".
func FormatNumber(n string) string {
	if len(n) != numberLen+1 {
		return n
	}
	return "RX-" + n[0:4] + "-" + n[4:8] + "-" + n[8:12]
}

// FormatAccessCode prints a canonical access code as "ABCD-EFGH".
func FormatAccessCode(c string) string {
	if len(c) != accessCodeLen {
		return c
	}
	return c[:4] + "-" + c[4:]
}

// hashSecret is how access codes and pharmacy secrets are kept: only their
// SHA-256, so that a database dump cannot be used to claim a prescription.
// They are long random values, so a plain hash is enough (no password
// stretching needed).
func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// newSecret returns the secret a pharmacy receives on accept.
func newSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// equalHash compares two hashes in constant time.
func equalHash(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
