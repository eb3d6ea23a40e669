package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestJoinTokenRoundTrip(t *testing.T) {
	s := NewJoinSigner([]byte("0123456789abcdef0123456789abcdef"))
	now := time.Unix(1_800_000_000, 0)
	want := JoinClaims{Room: "appt-1", Participant: "acc-7", Name: "Dr Émile Roux", Role: RolePractitioner, Expires: now.Add(2 * time.Minute)}
	tok, err := s.Sign(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Verify(tok, now)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("claims = %+v, want %+v", got, want)
	}
}

func TestJoinTokenCarriesAdmission(t *testing.T) {
	s := NewJoinSigner([]byte("0123456789abcdef0123456789abcdef"))
	now := time.Unix(1_800_000_000, 0)
	want := JoinClaims{Room: "appt-1", Participant: "acc-8", Role: RolePatient, Expires: now.Add(time.Minute), Admitted: true}
	tok, err := s.Sign(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Verify(tok, now)
	if err != nil || got != want {
		t.Fatalf("claims = %+v (%v), want %+v", got, err, want)
	}
	// The admission is signed: flipping it breaks the token.
	forged, _ := s.Sign(JoinClaims{Room: "appt-1", Participant: "acc-8", Role: RolePatient, Expires: now.Add(time.Minute)})
	body := tok[:strings.LastIndexByte(tok, '.')]
	if _, err := s.Verify(body+forged[strings.LastIndexByte(forged, '.'):], now); err == nil {
		t.Fatal("a token with another token's signature was accepted")
	}
}

func TestJoinTokenRefused(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	s := NewJoinSigner(key)
	now := time.Unix(1_800_000_000, 0)
	good, err := s.Sign(JoinClaims{Room: "r", Participant: "p", Role: RolePatient, Expires: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewJoinSigner([]byte("another key, another service....")).Sign(JoinClaims{Room: "r", Participant: "p", Role: RolePatient, Expires: now.Add(time.Minute)})
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
	for _, tc := range []struct {
		name, token string
		at          time.Time
		want        error
	}{
		{"empty", "", now, ErrJoinTokenInvalid},
		{"garbage", "hello", now, ErrJoinTokenInvalid},
		{"no signature", parts[0] + "." + parts[1], now, ErrJoinTokenInvalid},
		{"other key", other, now, ErrJoinTokenInvalid},
		{"tampered claims", tampered, now, ErrJoinTokenInvalid},
		{"expired", good, now.Add(time.Minute), ErrJoinTokenExpired},
		{"huge", "j1." + strings.Repeat("A", 5000) + ".x", now, ErrJoinTokenInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Verify(tc.token, tc.at); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestJoinTokenSignRejectsIncompleteClaims(t *testing.T) {
	s := NewJoinSigner([]byte("k"))
	exp := time.Now().Add(time.Minute)
	for _, c := range []JoinClaims{
		{Participant: "p", Role: RolePatient, Expires: exp},
		{Room: "r", Role: RolePatient, Expires: exp},
		{Room: "r", Participant: "p", Role: "admin", Expires: exp},
		{Room: "r", Participant: "p", Role: RoleGuest},
	} {
		if _, err := s.Sign(c); !errors.Is(err, ErrJoinClaims) {
			t.Errorf("Sign(%+v) = %v, want ErrJoinClaims", c, err)
		}
	}
}
