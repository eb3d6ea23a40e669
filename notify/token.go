package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"

	"teleconsult/problem"
)

// Action token purposes: what a one-click link in an email may do.
const (
	PurposeCancel     = "cancel"
	PurposeReschedule = "reschedule"
)

// purposeByte encodes a purpose in the token; 0 is never valid.
var purposeByte = map[string]byte{PurposeCancel: 1, PurposeReschedule: 2}

// Action token problems.
var (
	ErrActionToken   = problem.New(problem.NotFound, "link_invalid", "this link is not valid")
	ErrActionExpired = problem.New(problem.Gone, "link_expired", "this link has expired")
)

// actionMACSize is the truncated HMAC-SHA256 length: 128 bits is far more
// than an online guesser can search, and keeps the link short.
const actionMACSize = 16

// actionPayloadSize: purpose (1) + appointment UUID (16) + expiry (8).
const actionPayloadSize = 1 + 16 + 8

// actionKey derives the key for action tokens from the configured secret,
// so that the same secret used elsewhere cannot produce a valid link.
func actionKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("teleconsult action token v1"))
	return m.Sum(nil)
}

// SignActionToken returns a URL-safe token that lets whoever holds it do
// one thing (purpose) to one appointment until expires, without logging
// in. The token is an HMAC-SHA256 over purpose, appointment id and expiry.
func SignActionToken(secret []byte, purpose, appointmentID string, expires time.Time) (string, error) {
	p, ok := purposeByte[purpose]
	if !ok {
		return "", ErrActionToken.Withf("unknown link purpose %q", purpose)
	}
	id, err := hex.DecodeString(strings.ReplaceAll(appointmentID, "-", ""))
	if err != nil || len(id) != 16 {
		return "", ErrActionToken.With("the appointment id is not a UUID")
	}
	buf := make([]byte, 0, actionPayloadSize+actionMACSize)
	buf = append(buf, p)
	buf = append(buf, id...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(expires.Unix()))
	m := hmac.New(sha256.New, actionKey(secret))
	m.Write(buf)
	buf = append(buf, m.Sum(nil)[:actionMACSize]...)
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// VerifyActionToken checks token against secret and returns the
// appointment it acts on. It fails with ErrActionToken if the token is
// malformed, forged, or made for another purpose, and with
// ErrActionExpired if it is genuine but expired at now.
func VerifyActionToken(secret []byte, token, purpose string, now time.Time) (appointmentID string, err error) {
	p, ok := purposeByte[purpose]
	if !ok {
		return "", ErrActionToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != actionPayloadSize+actionMACSize {
		return "", ErrActionToken
	}
	payload, mac := raw[:actionPayloadSize], raw[actionPayloadSize:]
	m := hmac.New(sha256.New, actionKey(secret))
	m.Write(payload)
	if !hmac.Equal(mac, m.Sum(nil)[:actionMACSize]) {
		return "", ErrActionToken
	}
	if payload[0] != p {
		return "", ErrActionToken.With("this link is for another action")
	}
	expires := time.Unix(int64(binary.BigEndian.Uint64(payload[17:])), 0)
	if !now.Before(expires) {
		return "", ErrActionExpired
	}
	h := hex.EncodeToString(payload[1:17])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// TokenPurpose returns the purpose a well-formed token claims, without
// checking it: the action page uses it to know which check to run.
func TokenPurpose(token string) string {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != actionPayloadSize+actionMACSize {
		return ""
	}
	for name, b := range purposeByte {
		if raw[0] == b {
			return name
		}
	}
	return ""
}
