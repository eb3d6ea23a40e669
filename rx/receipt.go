package rx

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// A dispense receipt is a JSON Web Signature (RFC 7515, flattened JSON
// serialization) made with ES256 by a service key the deployment's
// authority certifies; the certificate chain travels in the "x5c" header,
// so anyone holding the authority's certificate can check it, with
// VerifyReceipt or any JOSE library.

type receiptPharmacy struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	City string `json:"city,omitempty"`
}

// receiptPayload is what a receipt attests.
type receiptPayload struct {
	Type           string          `json:"type"`
	DispenseID     string          `json:"dispense_id"`
	PrescriptionID string          `json:"prescription_id"`
	Number         string          `json:"number"`
	RenewalIndex   int             `json:"renewal_index"`
	Pharmacy       receiptPharmacy `json:"pharmacy"`
	PharmacistID   string          `json:"pharmacist_id"`
	Items          []DispensedItem `json:"items"`
	DispensedAt    time.Time       `json:"dispensed_at"`
	DocumentSHA256 string          `json:"document_sha256"`
}

// Receipt is a verified receipt's content.
type Receipt = receiptPayload

type jwsHeader struct {
	Alg string   `json:"alg"`
	Typ string   `json:"typ"`
	X5C []string `json:"x5c"`
}

type jws struct {
	Protected string `json:"protected"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

var b64 = base64.RawURLEncoding

// receiptSigner returns the identity that signs receipts, issuing it from
// the authority on first use.
func (s *Service) receiptSigner() (*SigningIdentity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.receipts == nil || s.receipts.Cert.NotAfter.Before(s.now().Add(renewWithin)) {
		id, err := s.ca.Issue("Service de délivrance des ordonnances", "", "", s.now())
		if err != nil {
			return nil, err
		}
		s.receipts = id
	}
	return s.receipts, nil
}

func (s *Service) signReceipt(p receiptPayload) ([]byte, error) {
	id, err := s.receiptSigner()
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(jwsHeader{Alg: "ES256", Typ: "JOSE+JSON", X5C: []string{
		base64.StdEncoding.EncodeToString(id.Cert.Raw), base64.StdEncoding.EncodeToString(s.ca.Cert.Raw)}})
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	j := jws{Protected: b64.EncodeToString(hdr), Payload: b64.EncodeToString(body)}
	digest := sha256.Sum256([]byte(j.Protected + "." + j.Payload))
	r, sig, err := ecdsa.Sign(rand.Reader, id.Key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("rx: sign receipt: %w", err)
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	sig.FillBytes(raw[32:])
	j.Signature = b64.EncodeToString(raw)
	return json.Marshal(j)
}

// ErrBadReceipt is a receipt that does not verify.
var ErrBadReceipt = errors.New("rx: receipt does not verify")

// VerifyReceipt checks a dispense receipt's signature and that its
// certificate chains to roots (the deployment's authority), and returns
// what it attests.
func VerifyReceipt(receipt []byte, roots *x509.CertPool) (Receipt, error) {
	var j jws
	if err := json.Unmarshal(receipt, &j); err != nil {
		return Receipt{}, fmt.Errorf("%w: %v", ErrBadReceipt, err)
	}
	hb, err := b64.DecodeString(j.Protected)
	if err != nil {
		return Receipt{}, fmt.Errorf("%w: header: %v", ErrBadReceipt, err)
	}
	var hdr jwsHeader
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr.Alg != "ES256" || len(hdr.X5C) == 0 {
		return Receipt{}, fmt.Errorf("%w: header", ErrBadReceipt)
	}
	var certs []*x509.Certificate
	for _, c := range hdr.X5C {
		der, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return Receipt{}, fmt.Errorf("%w: x5c: %v", ErrBadReceipt, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return Receipt{}, fmt.Errorf("%w: x5c: %v", ErrBadReceipt, err)
		}
		certs = append(certs, cert)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Receipt{}, fmt.Errorf("%w: certificate: %v", ErrBadReceipt, err)
	}
	pub, ok := certs[0].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return Receipt{}, fmt.Errorf("%w: not an ECDSA key", ErrBadReceipt)
	}
	sig, err := b64.DecodeString(j.Signature)
	if err != nil || len(sig) != 64 {
		return Receipt{}, fmt.Errorf("%w: signature encoding", ErrBadReceipt)
	}
	digest := sha256.Sum256([]byte(j.Protected + "." + j.Payload))
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return Receipt{}, fmt.Errorf("%w: signature", ErrBadReceipt)
	}
	body, err := b64.DecodeString(j.Payload)
	if err != nil {
		return Receipt{}, fmt.Errorf("%w: payload: %v", ErrBadReceipt, err)
	}
	var p Receipt
	if err := json.Unmarshal(body, &p); err != nil {
		return Receipt{}, fmt.Errorf("%w: payload: %v", ErrBadReceipt, err)
	}
	return p, nil
}
