package rx

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"teleconsult/audit"
	"teleconsult/store"
	"teleconsult/vault"
)

// How Sign talks to PostgreSQL: two round trips, one of them the whole
// transaction.
//
//   - Everything it reads (the draft, the prescriber's profile and
//     account, the patient's profile, the signing key, the number of the
//     prescription a correction replaces) is one pipelined batch, outside
//     any transaction: one snapshot, no lock.
//   - The PDF is rendered, signed and sealed with no transaction open.
//   - BEGIN, the signature, its history event, the cancellation of the
//     corrected prescription, the outbox event, the audit entry and COMMIT
//     are a second pipelined batch. The signature is a conditional UPDATE
//     (still a draft, with the content that was signed) whose row id the
//     history event takes: when it matched nothing (a concurrent Sign, an
//     edit or a cancellation won), the event's prescription_id is null,
//     the NOT NULL constraint aborts the transaction, PostgreSQL skips the
//     rest of the batch and nothing is written. So a draft is signed once
//     whatever the number of concurrent calls.

// SQL of Sign's reads. The draft and the prescription it corrects are
// keyed by the draft's id, the prescriber's rows by the caller's: they
// are used only once the draft is found to be the caller's.
const (
	sqlSignDraft = `SELECT id, appointment_id, practitioner_id, patient_id, profile_id, status, content, replaces_id,
		dispensed_count, created_at FROM prescriptions WHERE id = $1`
	// As store.PractitionerByID and store.AccountByID read them.
	sqlSignPractitioner = `SELECT p.specialty, p.rpps, p.address, p.postcode, p.city, p.phone
		FROM practitioners p JOIN accounts a ON a.id = p.account_id WHERE p.account_id = $1 AND a.disabled_at IS NULL`
	sqlSignAccount = `SELECT name, email, phone FROM accounts WHERE id = $1 AND erased_at IS NULL`
	// The profile the prescription is for, else the patient's own.
	sqlSignProfile = `SELECT f.id, f.family_name, f.given_names, f.sex, f.birth_date, f.measurements
		FROM prescriptions r JOIN patient_profiles f ON (r.profile_id IS NOT NULL AND f.id = r.profile_id)
			OR (r.profile_id IS NULL AND f.account_id = r.patient_id AND f.relationship = 'self')
		WHERE r.id = $1`
	sqlSignKey      = `SELECT cert_der, key_sealed, ca_sha256, not_after FROM rx_signing_keys WHERE practitioner_id = $1`
	sqlSignReplaces = `SELECT r.id, r.number FROM prescriptions d JOIN prescriptions r ON r.id = d.replaces_id WHERE d.id = $1`
)

// SQL of Sign's transaction.
const (
	// store.SignPrescription and store.RecordPrescriptionEvent in one
	// statement; the event's prescription_id is null (refused) when the
	// draft was not signed.
	sqlSign = `WITH signed AS (
			UPDATE prescriptions SET status = 'ready', content = $3, number = $4, access_code_hash = $5,
				access_code = $6, document = $7, document_sha256 = $8, signed_at = $9, valid_until = $10, renewals = $11
			WHERE id = $1 AND status = 'draft' AND content = $2
			RETURNING id)
		INSERT INTO prescription_events (prescription_id, at, actor_id, action, from_status, to_status)
		VALUES ((SELECT id FROM signed), $9, $12, 'sign', 'draft', 'ready')`
	// store.CancelPrescription and its event, refused the same way when
	// the corrected prescription can no longer be cancelled.
	sqlCancelReplaced = `WITH cancelled AS (
			UPDATE prescriptions p SET status = 'cancelled', cancelled_at = $2
			FROM (SELECT id, status FROM prescriptions WHERE id = $1 FOR UPDATE) old
			WHERE p.id = old.id AND p.status IN ('draft', 'ready')
			RETURNING p.id, old.status)
		INSERT INTO prescription_events (prescription_id, at, actor_id, action, from_status, to_status)
		VALUES ((SELECT id FROM cancelled), $2, $3, 'cancel', coalesce((SELECT status FROM cancelled), ''), 'cancelled')`
)

// signInputs is what Sign reads before it renders.
type signInputs struct {
	draft        store.Prescription
	found        bool
	practitioner *store.Practitioner
	account      *store.Account
	profile      *store.PatientProfile
	key          *store.SigningKey
	replaced     *store.Prescription
}

// readSignInputs reads what signing draft id for who needs, in one round
// trip.
func (s *Service) readSignInputs(ctx context.Context, who Caller, id string) (signInputs, error) {
	var in signInputs
	b := &pgx.Batch{}
	b.Queue(sqlSignDraft, id).QueryRow(func(row pgx.Row) error {
		p := &in.draft
		err := row.Scan(&p.ID, &p.AppointmentID, &p.PractitionerID, &p.PatientID, &p.ProfileID, &p.Status, &p.Content, &p.ReplacesID,
			&p.DispensedCount, &p.CreatedAt)
		in.found = err == nil
		return noRows(err)
	})
	b.Queue(sqlSignPractitioner, who.ID).QueryRow(func(row pgx.Row) error {
		var pr store.Practitioner
		err := row.Scan(&pr.Specialty, &pr.RPPS, &pr.Address, &pr.Postcode, &pr.City, &pr.Phone)
		if err == nil {
			pr.AccountID = who.ID
			in.practitioner = &pr
		}
		return noRows(err)
	})
	b.Queue(sqlSignAccount, who.ID).QueryRow(func(row pgx.Row) error {
		var a store.Account
		err := row.Scan(&a.Name, &a.Email, &a.Phone)
		if err == nil {
			a.ID = who.ID
			in.account = &a
		}
		return noRows(err)
	})
	b.Queue(sqlSignProfile, id).QueryRow(func(row pgx.Row) error {
		var f store.PatientProfile
		err := row.Scan(&f.ID, &f.FamilyName, &f.GivenNames, &f.Sex, &f.BirthDate, &f.Measurements)
		if err == nil {
			in.profile = &f
		}
		return noRows(err)
	})
	b.Queue(sqlSignKey, who.ID).QueryRow(func(row pgx.Row) error {
		k := store.SigningKey{PractitionerID: who.ID}
		err := row.Scan(&k.CertDER, &k.KeySealed, &k.CASHA256, &k.NotAfter)
		if err == nil {
			in.key = &k
		}
		return noRows(err)
	})
	b.Queue(sqlSignReplaces, id).QueryRow(func(row pgx.Row) error {
		var r store.Prescription
		err := row.Scan(&r.ID, &r.Number)
		if err == nil {
			in.replaced = &r
		}
		return noRows(err)
	})
	if err := s.db.Pool.SendBatch(ctx, b).Close(); err != nil {
		return in, fmt.Errorf("rx: sign: read: %w", err)
	}
	return in, nil
}

// noRows makes a missing row no error: the caller looks at what was set.
func noRows(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return err
}

// Sign renders the draft, signs the PDF with the practitioner's key and
// makes the prescription ready: from then on it never changes. The
// patient is told through the outbox in the same transaction. Signing a
// correction cancels the prescription it corrects. Of concurrent calls
// for one draft, one signs it and the others get ErrNotDraft.
func (s *Service) Sign(ctx context.Context, who Caller, id string) (View, error) {
	if who.Role != rolePractitioner || !store.IsUUID(id) {
		return View{}, ErrNotFound
	}
	in, err := s.readSignInputs(ctx, who, id)
	if err != nil {
		return View{}, err
	}
	p := in.draft
	if !in.found {
		return View{}, ErrNotFound
	}
	if p.PractitionerID != who.ID {
		return View{}, s.deny(ctx, who, "sign", "prescription", id, p.PatientID, ErrNotFound)
	}
	if p.Status != string(StatusDraft) {
		return View{}, ErrNotDraft.With("this prescription is already signed or cancelled")
	}
	c, err := s.openContent(ctx, s.db.Pool, p)
	if err != nil {
		return View{}, err
	}
	if err := c.Validate(); err != nil {
		return View{}, err
	}
	// The blocks are taken afresh: the prescription carries the profiles
	// as they are when it is signed.
	if in.practitioner == nil {
		return View{}, ErrNoSigningIdentity.With("the practitioner profile (specialty, RPPS number) is missing").Wrap(store.ErrNotFound)
	}
	if in.account == nil {
		return View{}, store.ErrNotFound.With("account not found")
	}
	if in.profile == nil {
		return View{}, ErrNoPatientProfile
	}
	prescriber := prescriberOf(who.ID, *in.practitioner, *in.account)
	patient, err := s.patientOf(ctx, s.db.Pool, p.PatientID, *in.profile)
	if err != nil {
		return View{}, err
	}
	c.Prescriber, c.Patient = prescriber, patient
	signer, err := s.signingIdentity(ctx, p.PractitionerID, prescriber, in.key)
	if err != nil {
		return View{}, err
	}
	// The draft is sealed with the patient's account key (sealContent),
	// and an account's key never changes: no need to look it up again.
	patientKey, err := vault.KeyOf(p.Content)
	if err != nil {
		return View{}, err
	}
	now := s.now().Truncate(time.Second)
	for attempt := 0; ; attempt++ {
		doc := Document{
			Number: NewNumber(), AccessCode: NewAccessCode(), Prescriber: prescriber, Patient: patient, Content: c.Content,
			SignedAt: now, ValidUntil: c.ValidUntil(now),
			SignerSubject: signer.Cert.Subject.CommonName, SignerSerial: SerialHex(signer.Cert), Issuer: s.ca.Cert.Subject.CommonName,
		}
		if in.replaced != nil && in.replaced.Number != nil {
			doc.Replaces = *in.replaced.Number
		}
		pdf, err := s.signDocument(doc, signer)
		if err != nil {
			return View{}, err
		}
		out, err := s.commitSignature(ctx, who, p, in.replaced, c, doc, pdf, patientKey)
		if err != nil && store.ConstraintViolated(err, store.PrescriptionsConstraintNumber) && attempt < 3 {
			continue // a number drawn twice: 29^11 makes this all but impossible
		}
		return out, err
	}
}

// signDocument renders and signs a prescription.
func (s *Service) signDocument(doc Document, signer *SigningIdentity) ([]byte, error) {
	unsigned, err := Render(doc)
	if err != nil {
		return nil, err
	}
	return signPDF(unsigned, signer, s.ca.Cert, "Ordonnance n° "+FormatNumber(doc.Number), doc.SignedAt)
}

// commitSignature seals what the signature wrote and commits it in one
// round trip (see the top of this file); it returns the prescription as
// signed.
func (s *Service) commitSignature(ctx context.Context, who Caller, p store.Prescription, replaced *store.Prescription, c sealedContent, doc Document, pdf []byte, patientKey string) (View, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return View{}, err
	}
	sum := sha256.Sum256(pdf)
	signed := store.SignedPrescription{
		Number: doc.Number, AccessCodeHash: hashSecret(doc.AccessCode), DocumentSHA256: sum[:],
		SignedAt: doc.SignedAt, ValidUntil: doc.ValidUntil, Renewals: c.Renewals(),
	}
	if signed.Content, err = s.vault.Seal(ctx, s.db.Pool, patientKey, contentAAD(p.ID), body); err != nil {
		return View{}, err
	}
	if signed.AccessCode, err = s.vault.Seal(ctx, s.db.Pool, patientKey, accessCodeAAD(p.ID), []byte(doc.AccessCode)); err != nil {
		return View{}, err
	}
	if signed.Document, err = s.vault.Seal(ctx, s.db.Pool, patientKey, documentAAD(p.ID), pdf); err != nil {
		return View{}, err
	}
	var actor *string
	if who.ID != "" {
		actor = &who.ID
	}

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(sqlSign, p.ID, p.Content, signed.Content, signed.Number, signed.AccessCodeHash, signed.AccessCode, signed.Document,
		signed.DocumentSHA256, signed.SignedAt, signed.ValidUntil, signed.Renewals, actor).Fn = func(br pgx.BatchResults) error {
		_, err := br.Exec()
		switch {
		case err == nil, store.ConstraintViolated(err, store.PrescriptionsConstraintNumber):
			return err
		case notNull(err) || store.ConstraintViolated(err, store.PrescriptionsConstraintImmutable):
			return ErrNotDraft.With("this prescription changed while it was being signed; reload it and sign again").Wrap(err)
		}
		return fmt.Errorf("rx: sign: %w", err)
	}
	if replaced != nil {
		b.Queue(sqlCancelReplaced, replaced.ID, doc.SignedAt, actor).Fn = func(br pgx.BatchResults) error {
			_, err := br.Exec()
			if notNull(err) || store.ConstraintViolated(err, store.PrescriptionsConstraintImmutable) {
				return ErrNotCancellable.With("the prescription this one corrects is held or dispensed by a pharmacy and can no longer be replaced").Wrap(err)
			}
			return err
		}
	}
	q := store.Queue{Batch: b}
	if err := store.Enqueue(ctx, q, store.OutboxEvent{Kind: "prescription.ready", RecipientID: p.PatientID, PrescriptionID: p.ID}); err != nil {
		return View{}, err
	}
	if err := audit.Record(ctx, q, audit.Entry{Actor: who, Action: "sign", ObjectType: "prescription", ObjectID: p.ID, SubjectID: p.PatientID,
		Detail: "number " + FormatNumber(doc.Number)}); err != nil {
		return View{}, err
	}
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		if ct.String() != "COMMIT" {
			return fmt.Errorf("rx: sign: commit answered %q", ct.String())
		}
		return nil
	})
	if err := s.runTx(ctx, b); err != nil {
		return View{}, err
	}

	// The row as the statement left it: the draft with what was just
	// written (a draft has no pharmacy, dispense or correction).
	p.Status = string(StatusReady)
	p.Number, p.AccessCodeHash, p.DocumentSHA256 = &signed.Number, signed.AccessCodeHash, signed.DocumentSHA256
	p.SignedAt, p.ValidUntil, p.Renewals = &signed.SignedAt, &signed.ValidUntil, signed.Renewals
	p.Content, p.AccessCode = signed.Content, signed.AccessCode
	// The content as sealed: account ids are not part of it.
	c.Prescriber.AccountID, c.Patient.AccountID = "", ""
	return viewOf(p, c), nil
}

// runTx sends b, a transaction from BEGIN to COMMIT, on one connection
// and rolls it back if it did not commit.
func (s *Service) runTx(ctx context.Context, b *pgx.Batch) error {
	conn, err := s.db.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("rx: sign: %w", err)
	}
	defer func() {
		// A connection that cannot roll back is closed by Release, since
		// it is not idle.
		if !conn.Conn().IsClosed() && conn.Conn().PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		conn.Release()
	}()
	return conn.SendBatch(ctx, b).Close()
}

// notNull reports whether err is a NOT NULL violation (23502).
func notNull(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23502"
}

// parsedSigner is a practitioner's signing identity as last parsed, with
// the DER it was parsed from.
type parsedSigner struct {
	keyDER, certDER []byte
	id              *SigningIdentity
}

// signingIdentity returns the practitioner's signing key and certificate
// (k, as stored; nil if none), issuing them (sealed with the
// practitioner's key) at first use, when the authority changed, or when
// the certificate is about to expire.
func (s *Service) signingIdentity(ctx context.Context, practitionerID string, prescriber Prescriber, k *store.SigningKey) (*SigningIdentity, error) {
	now := s.now()
	if k != nil && string(k.CASHA256) == string(s.ca.fingerprint()) && k.NotAfter.After(now.Add(renewWithin)) {
		// Opened every time, so that a destroyed key stops signing.
		der, err := s.vault.Open(ctx, s.db.Pool, signingKeyAAD(practitionerID), k.KeySealed)
		if err != nil {
			return nil, err
		}
		id, err := s.parseSigner(practitionerID, der, k.CertDER)
		if err != nil {
			return nil, err
		}
		// A certificate names the practitioner: a new name or RPPS number
		// gets a new one.
		if id.Cert.Subject.CommonName == prescriber.Name && id.Cert.Subject.SerialNumber == prescriber.RPPS {
			return id, nil
		}
	}
	id, err := s.ca.Issue(prescriber.Name, prescriber.RPPS, prescriber.Email, now)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		return nil, err
	}
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		keyID, err := s.vault.AccountKey(ctx, tx, practitionerID)
		if err != nil {
			return err
		}
		sealed, err := s.vault.Seal(ctx, tx, keyID, signingKeyAAD(practitionerID), der)
		if err != nil {
			return err
		}
		if err := store.SaveSigningKey(ctx, tx, store.SigningKey{PractitionerID: practitionerID, CertDER: id.Cert.Raw,
			KeySealed: sealed, CASHA256: s.ca.fingerprint(), NotAfter: id.Cert.NotAfter}); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: audit.System, Action: "create", ObjectType: "signing_key", ObjectID: practitionerID,
			Detail: "certificate " + SerialHex(id.Cert)})
	})
	if err != nil {
		return nil, err
	}
	return id, nil
}

// parseSigner parses a practitioner's key and certificate, or returns
// them as parsed last time if they are the same: parsing an ECDSA key
// recomputes its public key, a scalar multiplication per signature.
func (s *Service) parseSigner(practitionerID string, keyDER, certDER []byte) (*SigningIdentity, error) {
	s.mu.Lock()
	ps, ok := s.signers[practitionerID]
	s.mu.Unlock()
	if ok && bytes.Equal(ps.keyDER, keyDER) && bytes.Equal(ps.certDER, certDER) {
		return ps.id, nil
	}
	key, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("rx: signing key: %w", err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("rx: signing certificate: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("rx: signing key is not ECDSA")
	}
	id := &SigningIdentity{Key: ec, Cert: cert}
	s.mu.Lock()
	if s.signers == nil {
		s.signers = map[string]parsedSigner{}
	}
	s.signers[practitionerID] = parsedSigner{keyDER: keyDER, certDER: certDER, id: id}
	s.mu.Unlock()
	return id, nil
}
