package rx

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
	"teleconsult/store"
	"teleconsult/vault"
)

// authorityAAD is where the authority's sealed private key lives.
var authorityAAD = vault.AAD{Table: "rx_authority", Column: "key_sealed", RowID: "authority"}

// LoadOrCreateAuthority returns the deployment's certificate authority.
//
// With certPEMPath and keyPEMPath set, the authority is read from those
// PEM files (an operator's own CA); the database keeps no copy of its
// key. Otherwise the authority stored in the database is used, and at
// first start one is created, its private key sealed by the vault with a
// data key of its own. Several nodes starting at once agree on one.
func LoadOrCreateAuthority(ctx context.Context, db *store.DB, v *vault.Vault, certPEMPath, keyPEMPath string) (*Authority, error) {
	if certPEMPath != "" || keyPEMPath != "" {
		if certPEMPath == "" || keyPEMPath == "" {
			return nil, errors.New("rx: give both the CA certificate and key files, or neither")
		}
		certPEM, err := os.ReadFile(certPEMPath)
		if err != nil {
			return nil, fmt.Errorf("rx: read CA certificate: %w", err)
		}
		keyPEM, err := os.ReadFile(keyPEMPath)
		if err != nil {
			return nil, fmt.Errorf("rx: read CA key: %w", err)
		}
		return ParseAuthority(certPEM, keyPEM)
	}
	for range 2 {
		rec, err := store.Authority(ctx, db.Pool)
		if err == nil {
			return openAuthority(ctx, db, v, rec)
		}
		if problem.KindOf(err) != problem.NotFound {
			return nil, err
		}
		a, err := NewAuthority(authorityName(), time.Now())
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(a.key)
		if err != nil {
			return nil, fmt.Errorf("rx: authority key: %w", err)
		}
		stored := false
		err = db.Tx(ctx, func(tx pgx.Tx) error {
			keyID, err := v.NewKey(ctx, tx)
			if err != nil {
				return err
			}
			sealed, err := v.Seal(ctx, tx, keyID, authorityAAD, der)
			if err != nil {
				return err
			}
			stored, err = store.SaveAuthority(ctx, tx, store.AuthorityRecord{CertDER: a.Cert.Raw, KeySealed: sealed}, false)
			return err
		})
		if err != nil {
			return nil, err
		}
		if stored {
			return a, nil
		}
		// Another node stored one first: read it back.
	}
	return nil, errors.New("rx: could not load or create the certificate authority")
}

func openAuthority(ctx context.Context, db *store.DB, v *vault.Vault, rec store.AuthorityRecord) (*Authority, error) {
	der, err := v.Open(ctx, db.Pool, authorityAAD, rec.KeySealed)
	if err != nil {
		return nil, fmt.Errorf("rx: open authority key: %w", err)
	}
	key, err := parsePrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("rx: authority key: %w", err)
	}
	return authorityFrom(rec.CertDER, key)
}

// authorityName names a new authority, with a random suffix so that two
// deployments' authorities are told apart in a certificate store.
func authorityName() string {
	b := make([]byte, 3)
	rand.Read(b)
	return "Téléconsultation — autorité des ordonnances " + hex.EncodeToString(b)
}

// fingerprint is the SHA-256 of the authority's certificate.
func (a *Authority) fingerprint() []byte {
	h := sha256.Sum256(a.Cert.Raw)
	return h[:]
}
