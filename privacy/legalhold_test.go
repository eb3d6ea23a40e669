package privacy

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestLegalHoldSealOpen(t *testing.T) {
	for _, curve := range []ecdh.Curve{ecdh.X25519(), ecdh.P256()} {
		priv, err := curve.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		aad := HoldAAD("subject", "prescription", "rx1")
		msg := []byte("Amoxicilline 1 g, 3 fois par jour")
		sealed, err := SealLegalHold(priv.PublicKey(), aad, msg)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sealed, msg[:11]) {
			t.Fatalf("%v: sealed record in the clear", curve)
		}
		got, err := OpenLegalHold(priv, aad, sealed)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%v: open: %q %v", curve, got, err)
		}
		other, _ := curve.GenerateKey(rand.Reader)
		bad := append([]byte{}, sealed...)
		bad[len(bad)-1] ^= 1
		for name, try := range map[string]func() ([]byte, error){
			"other key":  func() ([]byte, error) { return OpenLegalHold(other, aad, sealed) },
			"other row":  func() ([]byte, error) { return OpenLegalHold(priv, HoldAAD("subject", "prescription", "rx2"), sealed) },
			"tampered":   func() ([]byte, error) { return OpenLegalHold(priv, aad, bad) },
			"truncated":  func() ([]byte, error) { return OpenLegalHold(priv, aad, sealed[:20]) },
			"not a hold": func() ([]byte, error) { return OpenLegalHold(priv, aad, []byte("hello")) },
		} {
			if _, err := try(); err == nil {
				t.Errorf("%v: %s opens", curve, name)
			}
		}
	}
}

func TestLegalHoldKeyConfigAndDemo(t *testing.T) {
	dir := t.TempDir()
	pub, err := LegalHoldKey("", dir)
	if err != nil {
		t.Fatal(err)
	}
	// The demo pair is kept: the next start uses the same key.
	again, err := LegalHoldKey("", dir)
	if err != nil || !again.Equal(pub) {
		t.Fatalf("second start: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, DemoPrivateKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("demo private key: %v %v", st.Mode(), err)
	}
	privPEM, _ := os.ReadFile(filepath.Join(dir, DemoPrivateKeyFile))
	priv, err := ParseLegalHoldPrivateKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := SealLegalHold(pub, nil, []byte("kept"))
	if got, err := OpenLegalHold(priv, nil, sealed); err != nil || string(got) != "kept" {
		t.Fatalf("demo pair: %q %v", got, err)
	}

	// A configured P-256 key (as openssl writes it) is used as given.
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ek.PublicKey)
	cfg, err := LegalHoldKey(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), t.TempDir())
	if err != nil || cfg.Curve() != ecdh.P256() {
		t.Fatalf("configured key: %v", err)
	}
	// Bad configuration is an error, never a silently generated key.
	for _, bad := range []string{"not pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")}))} {
		if _, err := LegalHoldKey(bad, t.TempDir()); err == nil {
			t.Errorf("LegalHoldKey(%q) accepted", bad)
		}
	}
	rsaLike, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ = x509.MarshalPKIXPublicKey(&rsaLike.PublicKey)
	if _, err := LegalHoldKey(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), t.TempDir()); err == nil {
		t.Error("a P-384 key is accepted")
	}
}
