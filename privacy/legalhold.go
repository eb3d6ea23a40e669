package privacy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Legal-hold sealed format: "TCLH" | version (1 byte) | curve (1 byte:
// 1 X25519, 2 P-256) | ephemeral public key length (1 byte) | ephemeral
// public key | nonce (12 bytes) | AES-256-GCM ciphertext and tag. The AES
// key is HKDF-SHA256 of the ECDH secret, salted with both public keys.
const (
	holdMagic   = "TCLH"
	holdVersion = 1
	holdInfo    = "teleconsult legal hold v1"
)

// Demo key files, written into DATA_DIR at first start when no
// LEGAL_HOLD_PUBLIC_KEY is configured. The private half is there only so
// a demo can be inspected: a real deployment gives only the public key
// and the data-protection officer keeps the private one offline.
const (
	DemoPublicKeyFile  = "legal-hold-public.pem"
	DemoPrivateKeyFile = "legal-hold-private.pem"
)

// ErrLegalHold is returned when a legal-hold record does not open.
var ErrLegalHold = errors.New("privacy: legal-hold record does not open with this key")

func curveID(c ecdh.Curve) (byte, error) {
	switch c {
	case ecdh.X25519():
		return 1, nil
	case ecdh.P256():
		return 2, nil
	}
	return 0, fmt.Errorf("privacy: legal-hold key: unsupported curve %v", c)
}

func holdKey(secret, ephemeral, recipient []byte) ([]byte, error) {
	salt := append(append([]byte{}, ephemeral...), recipient...)
	return hkdf.Key(sha256.New, secret, salt, holdInfo, 32)
}

// SealLegalHold encrypts plaintext to the legal-hold public key; only its
// private half (held offline) opens it. aad binds the record to its place.
func SealLegalHold(pub *ecdh.PublicKey, aad, plaintext []byte) ([]byte, error) {
	cid, err := curveID(pub.Curve())
	if err != nil {
		return nil, err
	}
	eph, err := pub.Curve().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	secret, err := eph.ECDH(pub)
	if err != nil {
		return nil, err
	}
	ephPub := eph.PublicKey().Bytes()
	key, err := holdKey(secret, ephPub, pub.Bytes())
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := append([]byte(holdMagic), holdVersion, cid, byte(len(ephPub)))
	out = append(out, ephPub...)
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return gcm.Seal(out, nonce, plaintext, aad), nil
}

// OpenLegalHold decrypts a legal-hold record with the private key: what
// the data-protection officer runs offline when the law asks for a kept
// document.
func OpenLegalHold(priv *ecdh.PrivateKey, aad, sealed []byte) ([]byte, error) {
	n := len(holdMagic)
	if len(sealed) < n+3 || string(sealed[:n]) != holdMagic || sealed[n] != holdVersion {
		return nil, ErrLegalHold
	}
	cid, err := curveID(priv.Curve())
	if err != nil || sealed[n+1] != cid {
		return nil, ErrLegalHold
	}
	pl := int(sealed[n+2])
	rest := sealed[n+3:]
	if len(rest) < pl+12 {
		return nil, ErrLegalHold
	}
	ephPub, err := priv.Curve().NewPublicKey(rest[:pl])
	if err != nil {
		return nil, ErrLegalHold
	}
	secret, err := priv.ECDH(ephPub)
	if err != nil {
		return nil, ErrLegalHold
	}
	key, err := holdKey(secret, rest[:pl], priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	rest = rest[pl:]
	pt, err := gcm.Open(nil, rest[:gcm.NonceSize()], rest[gcm.NonceSize():], aad)
	if err != nil {
		return nil, ErrLegalHold
	}
	return pt, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// ParseLegalHoldPublicKey reads a PEM "PUBLIC KEY" (X25519 or ECDH P-256).
func ParseLegalHoldPublicKey(pemText []byte) (*ecdh.PublicKey, error) {
	b, _ := pem.Decode(pemText)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("privacy: LEGAL_HOLD_PUBLIC_KEY: expected a PEM PUBLIC KEY block")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("privacy: LEGAL_HOLD_PUBLIC_KEY: %w", err)
	}
	switch k := k.(type) {
	case *ecdh.PublicKey:
		if _, err := curveID(k.Curve()); err != nil {
			return nil, err
		}
		return k, nil
	case *ecdsa.PublicKey:
		pk, err := k.ECDH()
		if err != nil {
			return nil, fmt.Errorf("privacy: LEGAL_HOLD_PUBLIC_KEY: %w", err)
		}
		if _, err := curveID(pk.Curve()); err != nil {
			return nil, err
		}
		return pk, nil
	}
	return nil, fmt.Errorf("privacy: LEGAL_HOLD_PUBLIC_KEY: %T is not an X25519 or P-256 key", k)
}

// ParseLegalHoldPrivateKey reads a PEM "PRIVATE KEY" (PKCS #8, X25519 or
// P-256): for the officer's offline tool and the tests.
func ParseLegalHoldPrivateKey(pemText []byte) (*ecdh.PrivateKey, error) {
	b, _ := pem.Decode(pemText)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("privacy: legal-hold private key: expected a PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("privacy: legal-hold private key: %w", err)
	}
	switch k := k.(type) {
	case *ecdh.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k.ECDH()
	}
	return nil, fmt.Errorf("privacy: legal-hold private key: %T is not an X25519 or P-256 key", k)
}

// LegalHoldKey returns the legal-hold public key: the PEM given by
// configuration (LEGAL_HOLD_PUBLIC_KEY) or, when it is empty, a demo key
// pair kept in demoDir (created at first start, private half 0600).
func LegalHoldKey(pemText, demoDir string) (*ecdh.PublicKey, error) {
	if pemText != "" {
		return ParseLegalHoldPublicKey([]byte(pemText))
	}
	pubPath := filepath.Join(demoDir, DemoPublicKeyFile)
	if b, err := os.ReadFile(pubPath); err == nil {
		return ParseLegalHoldPublicKey(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.PublicKey())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(demoDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(demoDir, DemoPrivateKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, err
	}
	return priv.PublicKey(), nil
}
