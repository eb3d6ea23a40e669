package rx

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/digitorus/pdf"
	"github.com/digitorus/pdfsign/sign"
)

// Authority is the deployment's own certificate authority: it certifies
// each practitioner's signing key, and pharmacies (or anyone) import its
// certificate to see prescriptions as trusted.
type Authority struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
}

// Validity periods. A practitioner certificate is short-lived compared to
// the authority so that a leaked key stops working on its own.
const (
	authorityValidity    = 20 * 365 * 24 * time.Hour
	practitionerValidity = 3 * 365 * 24 * time.Hour
)

// oidDocumentSigning is id-kp-documentSigning (RFC 9336).
var oidDocumentSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 36}

func randomSerial() *big.Int {
	// 128 random bits, positive: serials must be unique and unpredictable.
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

// NewAuthority creates a fresh certificate authority named name.
func NewAuthority(name string, now time.Time) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("rx: authority key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{name}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(authorityValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("rx: authority certificate: %w", err)
	}
	return authorityFrom(der, key)
}

func authorityFrom(der []byte, key crypto.Signer) (*Authority, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("rx: authority certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("rx: authority certificate is not a CA certificate")
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("rx: authority key does not match its certificate")
	}
	return &Authority{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:     key,
	}, nil
}

// ParseAuthority reads a CA certificate and its private key from PEM
// (the key as PKCS#8, SEC 1 "EC PRIVATE KEY" or PKCS#1 RSA).
func ParseAuthority(certPEM, keyPEM []byte) (*Authority, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("rx: authority certificate: no CERTIFICATE PEM block")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("rx: authority key: no PEM block")
	}
	key, err := parsePrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("rx: authority key: %w", err)
	}
	return authorityFrom(cb.Bytes, key)
}

func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("unsupported key type")
		}
		return s, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#8, EC or PKCS#1 private key")
}

// Pool returns a pool holding the authority's certificate, to verify
// signatures against.
func (a *Authority) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Cert)
	return p
}

// SigningIdentity is a practitioner's key and certificate.
type SigningIdentity struct {
	Key  *ecdsa.PrivateKey
	Cert *x509.Certificate
}

// Issue creates a signing key for a practitioner and certifies it. The
// certificate names the practitioner and carries the RPPS number as the
// subject's serial number, the way health professional cards do.
func (a *Authority) Issue(name, rpps, email string, now time.Time) (*SigningIdentity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("rx: signing key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject: pkix.Name{
			CommonName:   name,
			SerialNumber: rpps,
			Organization: a.Cert.Subject.Organization,
		},
		NotBefore:          now.Add(-time.Hour),
		NotAfter:           now.Add(practitionerValidity),
		KeyUsage:           x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtKeyUsage:        []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidDocumentSigning},
	}
	if email != "" {
		tmpl.EmailAddresses = []string{email}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("rx: signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("rx: signing certificate: %w", err)
	}
	return &SigningIdentity{Key: key, Cert: cert}, nil
}

// SerialHex prints a certificate serial number as grouped hex digits.
func SerialHex(c *x509.Certificate) string {
	h := fmt.Sprintf("%X", c.SerialNumber)
	var b bytes.Buffer
	for i := 0; i < len(h); i++ {
		if i > 0 && (len(h)-i)%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteByte(h[i])
	}
	return b.String()
}

// signPDF adds an embedded detached PKCS#7 signature to an unsigned PDF
// (a certification signature: no later change is allowed). The whole file
// is covered, so appended bytes show as "not total document signed".
func signPDF(unsigned []byte, id *SigningIdentity, ca *x509.Certificate, reason string, at time.Time) ([]byte, error) {
	rd := bytes.NewReader(unsigned)
	r, err := pdf.NewReader(rd, int64(len(unsigned)))
	if err != nil {
		return nil, fmt.Errorf("rx: read pdf to sign: %w", err)
	}
	var out bytes.Buffer
	out.Grow(len(unsigned) + 16<<10)
	err = sign.Sign(rd, &out, r, int64(len(unsigned)), sign.SignData{
		Signature: sign.SignDataSignature{
			Info: sign.SignDataSignatureInfo{
				Name:   id.Cert.Subject.CommonName,
				Reason: reason,
				Date:   at,
			},
			CertType:   sign.CertificationSignature,
			DocMDPPerm: sign.DoNotAllowAnyChangesPerms,
		},
		Signer:            id.Key,
		DigestAlgorithm:   crypto.SHA256,
		Certificate:       id.Cert,
		CertificateChains: [][]*x509.Certificate{{id.Cert, ca}},
		// No TSA and no revocation fetch: both would reach outside hosts.
	})
	if err != nil {
		return nil, fmt.Errorf("rx: sign pdf: %w", err)
	}
	return out.Bytes(), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
