package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"teleconsult/problem"
)

// Join token roles: who a participant is in a video room.
const (
	RolePatient      = "patient"
	RolePractitioner = "practitioner"
	RoleGuest        = "guest"
)

// joinTokenPrefix versions the token format so that a later format can be
// told apart without guessing.
const joinTokenPrefix = "j1."

// Join token problems. Both are Unauthorized: whoever holds a bad token
// must get a fresh one from the join endpoint.
var (
	ErrJoinTokenInvalid = problem.New(problem.Unauthorized, "join_token_invalid", "this join link is not valid; please join again from your appointment")
	ErrJoinTokenExpired = problem.New(problem.Unauthorized, "join_token_expired", "this join link has expired; please join again from your appointment")
	ErrJoinClaims       = problem.New(problem.Invalid, "join_claims_invalid", "the join token claims are not valid")
)

// JoinClaims is what a join token proves: who (Participant, shown as Name)
// may enter which video room (Room, the appointment id), as which Role,
// until when. Admitted says the practitioner already let this patient in
// (on another node, before it failed): the waiting room is skipped.
type JoinClaims struct {
	Room, Participant, Name, Role string
	Expires                       time.Time
	Admitted                      bool
}

// joinPayload is the compact wire form of JoinClaims.
type joinPayload struct {
	Room        string `json:"r"`
	Participant string `json:"p"`
	Name        string `json:"n,omitempty"`
	Role        string `json:"o"`
	Expires     int64  `json:"e"`
	Admitted    bool   `json:"a,omitempty"`
}

// JoinSigner signs and verifies join tokens with HMAC-SHA256. The
// signalling server holds one to admit participants without asking the
// database; the join endpoint holds one with the same key to issue them.
type JoinSigner struct {
	key []byte
}

// NewJoinSigner returns a signer for key, which should be 32 random bytes
// kept out of the database. The key is domain-separated so that the same
// secret used elsewhere cannot produce a valid join token by accident.
func NewJoinSigner(key []byte) *JoinSigner {
	if len(key) == 0 {
		panic("auth: NewJoinSigner needs a non-empty key")
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("teleconsult join token v1"))
	return &JoinSigner{key: m.Sum(nil)}
}

func validRole(r string) bool {
	return r == RolePatient || r == RolePractitioner || r == RoleGuest
}

// Sign returns a compact token for c: "j1.<base64url claims>.<base64url mac>".
func (s *JoinSigner) Sign(c JoinClaims) (string, error) {
	if c.Room == "" || c.Participant == "" || !validRole(c.Role) || c.Expires.IsZero() {
		return "", ErrJoinClaims.With("a join token needs a room, a participant, a known role and an expiry")
	}
	body, err := json.Marshal(joinPayload{Room: c.Room, Participant: c.Participant, Name: c.Name, Role: c.Role, Expires: c.Expires.Unix(), Admitted: c.Admitted})
	if err != nil {
		return "", ErrJoinClaims.Wrap(err)
	}
	signed := joinTokenPrefix + base64.RawURLEncoding.EncodeToString(body)
	return signed + "." + base64.RawURLEncoding.EncodeToString(s.mac(signed)), nil
}

func (s *JoinSigner) mac(signed string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// maxJoinTokenLen bounds the work done on a hostile token.
const maxJoinTokenLen = 2048

// Verify checks token's signature and expiry at now and returns its
// claims. A token that is malformed, forged or tampered with gives
// ErrJoinTokenInvalid; a genuine one past its expiry gives
// ErrJoinTokenExpired.
func (s *JoinSigner) Verify(token string, now time.Time) (JoinClaims, error) {
	if len(token) > maxJoinTokenLen || !strings.HasPrefix(token, joinTokenPrefix) {
		return JoinClaims{}, ErrJoinTokenInvalid
	}
	dot := strings.LastIndexByte(token, '.')
	if dot <= len(joinTokenPrefix) {
		return JoinClaims{}, ErrJoinTokenInvalid
	}
	signed, sig := token[:dot], token[dot+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(signed)) {
		return JoinClaims{}, ErrJoinTokenInvalid
	}
	body, err := base64.RawURLEncoding.DecodeString(signed[len(joinTokenPrefix):])
	if err != nil {
		return JoinClaims{}, ErrJoinTokenInvalid
	}
	var p joinPayload
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return JoinClaims{}, ErrJoinTokenInvalid
	}
	if p.Room == "" || p.Participant == "" || !validRole(p.Role) {
		return JoinClaims{}, ErrJoinTokenInvalid
	}
	c := JoinClaims{Room: p.Room, Participant: p.Participant, Name: p.Name, Role: p.Role, Expires: time.Unix(p.Expires, 0), Admitted: p.Admitted}
	if !now.Before(c.Expires) {
		return JoinClaims{}, ErrJoinTokenExpired
	}
	return c, nil
}
