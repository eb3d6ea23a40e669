package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
)

// PrescriptionsConstraintImmutable is the name the prescriptions_guard
// trigger reports when a change to a signed prescription, its history or
// its dispenses is refused.
const PrescriptionsConstraintImmutable = "prescriptions_immutable"

// PrescriptionsConstraintDispenseOnce is the unique constraint allowing
// one dispense per prescription and renewal.
const PrescriptionsConstraintDispenseOnce = "prescription_dispenses_once"

// PrescriptionsConstraintNumber is the unique constraint on numbers.
const PrescriptionsConstraintNumber = "prescriptions_number_key"

// PrescriptionsConstraintReplaces allows one live correction per prescription.
const PrescriptionsConstraintReplaces = "prescriptions_one_correction"

// ErrPrescriptionState is a change the prescription's status does not allow
// (the conditional update matched no row).
var ErrPrescriptionState = problem.New(problem.Conflict, "prescription_state", "this prescription cannot change that way now")

// Prescription is a row of prescriptions. Content, AccessCode and Document
// are sealed with the patient's vault key under
// vault.AAD{Table: "prescriptions", Column: "content"|"access_code"|"document", RowID: ID}.
type Prescription struct {
	ID                 string     `db:"id"`
	AppointmentID      string     `db:"appointment_id"`
	PractitionerID     string     `db:"practitioner_id"`
	PatientID          string     `db:"patient_id"`
	ProfileID          *string    `db:"profile_id"`
	Status             string     `db:"status"`
	Content            []byte     `db:"content"`
	ReplacesID         *string    `db:"replaces_id"`
	Number             *string    `db:"number"`
	AccessCodeHash     []byte     `db:"access_code_hash"`
	AccessCode         []byte     `db:"access_code"`
	DocumentSHA256     []byte     `db:"document_sha256"`
	SignedAt           *time.Time `db:"signed_at"`
	ValidUntil         *time.Time `db:"valid_until"`
	Renewals           int        `db:"renewals"`
	DispensedCount     int        `db:"dispensed_count"`
	PharmacyID         *string    `db:"pharmacy_id"`
	AcceptedPharmacyID *string    `db:"accepted_pharmacy_id"`
	AcceptedBy         *string    `db:"accepted_by"`
	AcceptedAt         *time.Time `db:"accepted_at"`
	SecretHash         []byte     `db:"secret_hash"`
	CancelledAt        *time.Time `db:"cancelled_at"`
	ReplacedByID       *string    `db:"replaced_by_id"`
	CreatedAt          time.Time  `db:"created_at"`
	UpdatedAt          time.Time  `db:"updated_at"`
}

// The document column is read only by PrescriptionDocument: lists and
// state changes never carry the PDF.
const prescriptionColumns = `p.id, p.appointment_id, p.practitioner_id, p.patient_id, p.profile_id, p.status, p.content,
	p.replaces_id, p.number, p.access_code_hash, p.access_code, p.document_sha256, p.signed_at, p.valid_until,
	p.renewals, p.dispensed_count, p.pharmacy_id, p.accepted_pharmacy_id, p.accepted_by, p.accepted_at,
	p.secret_hash, p.cancelled_at,
	(SELECT r.id FROM prescriptions r WHERE r.replaces_id = p.id
		ORDER BY r.status = 'cancelled', r.created_at DESC LIMIT 1) AS replaced_by_id,
	p.created_at, p.updated_at`

func collectPrescription(rows pgx.Rows, err error) (Prescription, error) {
	if err != nil {
		return Prescription{}, fmt.Errorf("store: prescription: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Prescription])
	if err != nil {
		return Prescription{}, notFound(err, "prescription")
	}
	return p, nil
}

// InsertPrescription stores a new draft (p.ID chosen with NewUUID, so the
// sealed content can bind it).
func InsertPrescription(ctx context.Context, q Q, p Prescription) error {
	_, err := q.Exec(ctx, `INSERT INTO prescriptions (id, appointment_id, practitioner_id, patient_id, profile_id, content, replaces_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		p.ID, p.AppointmentID, p.PractitionerID, p.PatientID, p.ProfileID, p.Content, p.ReplacesID)
	if err != nil {
		return fmt.Errorf("store: insert prescription: %w", err)
	}
	return nil
}

// PrescriptionByID returns a prescription, whoever it belongs to: callers
// check that the caller may see it.
func PrescriptionByID(ctx context.Context, q Q, id string) (Prescription, error) {
	if !IsUUID(id) {
		return Prescription{}, ErrNotFound.With("prescription not found")
	}
	rows, err := q.Query(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions p WHERE p.id = $1`, id)
	return collectPrescription(rows, err)
}

// LockPrescription is PrescriptionByID with a row lock held until the end
// of q's transaction.
func LockPrescription(ctx context.Context, q Q, id string) (Prescription, error) {
	if !IsUUID(id) {
		return Prescription{}, ErrNotFound.With("prescription not found")
	}
	rows, err := q.Query(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions p WHERE p.id = $1 FOR UPDATE OF p`, id)
	return collectPrescription(rows, err)
}

// PrescriptionByNumber returns the signed prescription with that
// (canonical) number.
func PrescriptionByNumber(ctx context.Context, q Q, number string) (Prescription, error) {
	rows, err := q.Query(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions p WHERE p.number = $1`, number)
	return collectPrescription(rows, err)
}

// PrescriptionByDocument returns the prescription whose signed PDF has
// this SHA-256.
func PrescriptionByDocument(ctx context.Context, q Q, sha256 []byte) (Prescription, error) {
	rows, err := q.Query(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions p WHERE p.document_sha256 = $1`, sha256)
	return collectPrescription(rows, err)
}

// PrescriptionDocument returns the sealed signed PDF of a prescription.
func PrescriptionDocument(ctx context.Context, q Q, id string) ([]byte, error) {
	var doc []byte
	err := q.QueryRow(ctx, `SELECT document FROM prescriptions WHERE id = $1 AND document IS NOT NULL`, id).Scan(&doc)
	if err != nil {
		return nil, notFound(err, "prescription document")
	}
	return doc, nil
}

// PrescriptionFilter selects the prescriptions a list shows.
type PrescriptionFilter struct {
	PatientID      string // prescriptions for this account
	PractitionerID string // prescriptions by this practitioner
	PharmacyID     string // sent to, accepted by or dispensed at this pharmacy (signed only)
	Limit          int
}

// Prescriptions lists prescriptions matching f, newest first. Exactly one
// of the filter's ids must be set.
func Prescriptions(ctx context.Context, q Q, f PrescriptionFilter) ([]Prescription, error) {
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = 200
	}
	var cond string
	var arg string
	switch {
	case f.PatientID != "":
		cond, arg = `p.patient_id = $1 AND p.signed_at IS NOT NULL`, f.PatientID
	case f.PractitionerID != "":
		cond, arg = `p.practitioner_id = $1`, f.PractitionerID
	case f.PharmacyID != "":
		cond, arg = `p.signed_at IS NOT NULL AND (p.pharmacy_id = $1 OR p.accepted_pharmacy_id = $1
			OR EXISTS (SELECT 1 FROM prescription_dispenses d WHERE d.prescription_id = p.id AND d.pharmacy_id = $1))`, f.PharmacyID
	default:
		return nil, fmt.Errorf("store: prescriptions: empty filter")
	}
	if !IsUUID(arg) {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT `+prescriptionColumns+` FROM prescriptions p WHERE `+cond+`
		ORDER BY coalesce(p.signed_at, p.created_at) DESC, p.id LIMIT $2`, arg, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("store: prescriptions: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Prescription])
}

// stateError turns a conditional update that matched nothing, or the
// guard trigger refusing it, into ErrPrescriptionState.
func stateError(err error, what string) error {
	if ConstraintViolated(err, PrescriptionsConstraintImmutable) {
		return ErrPrescriptionState.Wrap(err)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

// UpdatePrescriptionDraft replaces the sealed content of a draft.
func UpdatePrescriptionDraft(ctx context.Context, q Q, id string, content []byte) error {
	tag, err := q.Exec(ctx, `UPDATE prescriptions SET content = $2 WHERE id = $1 AND status = 'draft'`, id, content)
	if err != nil {
		return stateError(err, "update prescription")
	}
	if tag.RowsAffected() == 0 {
		return ErrPrescriptionState
	}
	return nil
}

// SignedPrescription is what signing sets on a draft.
type SignedPrescription struct {
	Content        []byte // sealed, with the prescriber and patient blocks as signed
	Number         string
	AccessCodeHash []byte
	AccessCode     []byte // sealed
	Document       []byte // sealed
	DocumentSHA256 []byte
	SignedAt       time.Time
	ValidUntil     time.Time
	Renewals       int
}

// SignPrescription turns a draft into a ready prescription, if it is
// still a draft whose content is draftContent (nobody edited it while it
// was being signed). A number already taken reports
// PrescriptionsConstraintNumber (the caller draws another).
func SignPrescription(ctx context.Context, q Q, id string, draftContent []byte, s SignedPrescription) error {
	tag, err := q.Exec(ctx, `UPDATE prescriptions SET status = 'ready', content = $3, number = $4, access_code_hash = $5,
			access_code = $6, document = $7, document_sha256 = $8, signed_at = $9, valid_until = $10, renewals = $11
		WHERE id = $1 AND status = 'draft' AND content = $2`,
		id, draftContent, s.Content, s.Number, s.AccessCodeHash, s.AccessCode, s.Document, s.DocumentSHA256,
		s.SignedAt, s.ValidUntil, s.Renewals)
	if err != nil {
		if ConstraintViolated(err, PrescriptionsConstraintNumber) {
			return err
		}
		return stateError(err, "sign prescription")
	}
	if tag.RowsAffected() == 0 {
		return ErrPrescriptionState
	}
	return nil
}

// CancelPrescription cancels a draft or a ready prescription and returns
// the status it had.
func CancelPrescription(ctx context.Context, q Q, id string, at time.Time) (string, error) {
	var from string
	err := q.QueryRow(ctx, `UPDATE prescriptions p SET status = 'cancelled', cancelled_at = $2
		FROM (SELECT id, status FROM prescriptions WHERE id = $1 FOR UPDATE) old
		WHERE p.id = old.id AND p.status IN ('draft', 'ready')
		RETURNING old.status`, id, at).Scan(&from)
	if err != nil {
		if err == pgx.ErrNoRows {
			return "", ErrPrescriptionState
		}
		return "", stateError(err, "cancel prescription")
	}
	return from, nil
}

// SendPrescription records the pharmacy a ready prescription is sent to.
func SendPrescription(ctx context.Context, q Q, id, pharmacyID string) error {
	tag, err := q.Exec(ctx, `UPDATE prescriptions SET pharmacy_id = $2 WHERE id = $1 AND status = 'ready'`, id, pharmacyID)
	if err != nil {
		return stateError(err, "send prescription")
	}
	if tag.RowsAffected() == 0 {
		return ErrPrescriptionState
	}
	return nil
}

// AcceptPrescription gives a ready, unexpired prescription to a pharmacy:
// one conditional UPDATE, so of any number of pharmacies racing, exactly
// one matches the row while it is still ready. It returns the row as
// updated, or ErrPrescriptionState when the number and access code hash
// match no ready prescription.
func AcceptPrescription(ctx context.Context, q Q, number string, accessCodeHash, secretHash []byte, pharmacyID, pharmacistID string, at time.Time) (Prescription, error) {
	rows, err := q.Query(ctx, `WITH a AS (
			UPDATE prescriptions SET status = 'in_progress', secret_hash = $3, accepted_pharmacy_id = $4,
				accepted_by = $5, accepted_at = $6
			WHERE number = $1 AND access_code_hash = $2 AND status = 'ready' AND valid_until >= $6
			RETURNING *)
		SELECT `+prescriptionColumns+` FROM a p`, number, accessCodeHash, secretHash, pharmacyID, pharmacistID, at)
	if err != nil {
		return Prescription{}, stateError(err, "accept prescription")
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Prescription])
	if err == pgx.ErrNoRows {
		return Prescription{}, ErrPrescriptionState
	}
	if err != nil {
		return Prescription{}, stateError(err, "accept prescription")
	}
	return p, nil
}

// CompleteDispense ends a pharmacy's work on a prescription it accepted,
// if secretHash is the secret it was given: the dispense count goes up and
// the prescription is completed, or ready again when renewals remain. It
// returns the renewal index of this dispense and the new status.
func CompleteDispense(ctx context.Context, q Q, id string, secretHash []byte, pharmacyID string) (int, string, error) {
	var index int
	var status string
	err := q.QueryRow(ctx, `UPDATE prescriptions SET dispensed_count = dispensed_count + 1,
			status = CASE WHEN dispensed_count + 1 > renewals THEN 'completed' ELSE 'ready' END,
			secret_hash = NULL, accepted_pharmacy_id = NULL, accepted_by = NULL, accepted_at = NULL
		WHERE id = $1 AND status = 'in_progress' AND secret_hash = $2 AND accepted_pharmacy_id = $3
		RETURNING dispensed_count - 1, status`, id, secretHash, pharmacyID).Scan(&index, &status)
	if err == pgx.ErrNoRows {
		return 0, "", ErrPrescriptionState
	}
	if err != nil {
		return 0, "", stateError(err, "dispense prescription")
	}
	return index, status, nil
}

// ReleasePrescription returns a prescription a pharmacy accepted to
// ready, if secretHash is the secret it was given.
func ReleasePrescription(ctx context.Context, q Q, id string, secretHash []byte, pharmacyID string) error {
	tag, err := q.Exec(ctx, `UPDATE prescriptions SET status = 'ready',
			secret_hash = NULL, accepted_pharmacy_id = NULL, accepted_by = NULL, accepted_at = NULL
		WHERE id = $1 AND status = 'in_progress' AND secret_hash = $2 AND accepted_pharmacy_id = $3`, id, secretHash, pharmacyID)
	if err != nil {
		return stateError(err, "reject prescription")
	}
	if tag.RowsAffected() == 0 {
		return ErrPrescriptionState
	}
	return nil
}

// PrescriptionEvent is one step of a prescription's history.
type PrescriptionEvent struct {
	ID             int64     `db:"id"`
	PrescriptionID string    `db:"prescription_id"`
	At             time.Time `db:"at"`
	ActorID        *string   `db:"actor_id"`
	Action         string    `db:"action"`
	FromStatus     string    `db:"from_status"`
	ToStatus       string    `db:"to_status"`
	PharmacyID     *string   `db:"pharmacy_id"`
}

// RecordPrescriptionEvent appends a step to a prescription's history.
func RecordPrescriptionEvent(ctx context.Context, q Q, e PrescriptionEvent) error {
	_, err := q.Exec(ctx, `INSERT INTO prescription_events (prescription_id, at, actor_id, action, from_status, to_status, pharmacy_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.PrescriptionID, e.At, e.ActorID, e.Action, e.FromStatus, e.ToStatus, e.PharmacyID)
	if err != nil {
		return fmt.Errorf("store: record prescription event: %w", err)
	}
	return nil
}

// PrescriptionEvents returns a prescription's history, oldest first.
func PrescriptionEvents(ctx context.Context, q Q, id string) ([]PrescriptionEvent, error) {
	rows, err := q.Query(ctx, `SELECT id, prescription_id, at, actor_id, action, from_status, to_status, pharmacy_id
		FROM prescription_events WHERE prescription_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("store: prescription events: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[PrescriptionEvent])
}

// Dispense is one delivery of a prescription by a pharmacy. Items and
// Receipt are sealed with the patient's key under
// vault.AAD{Table: "prescription_dispenses", Column: "items"|"receipt", RowID: ID}.
type Dispense struct {
	ID             string    `db:"id"`
	PrescriptionID string    `db:"prescription_id"`
	RenewalIndex   int       `db:"renewal_index"`
	PharmacyID     string    `db:"pharmacy_id"`
	PharmacistID   string    `db:"pharmacist_id"`
	Items          []byte    `db:"items"`
	Receipt        []byte    `db:"receipt"`
	DispensedAt    time.Time `db:"dispensed_at"`
}

// InsertDispense records a dispense. A second one for the same renewal
// violates PrescriptionsConstraintDispenseOnce.
func InsertDispense(ctx context.Context, q Q, d Dispense) error {
	_, err := q.Exec(ctx, `INSERT INTO prescription_dispenses (id, prescription_id, renewal_index, pharmacy_id, pharmacist_id, items, receipt, dispensed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		d.ID, d.PrescriptionID, d.RenewalIndex, d.PharmacyID, d.PharmacistID, d.Items, d.Receipt, d.DispensedAt)
	if err != nil {
		if ConstraintViolated(err, PrescriptionsConstraintDispenseOnce) {
			return ErrPrescriptionState.Wrap(err)
		}
		return fmt.Errorf("store: insert dispense: %w", err)
	}
	return nil
}

// DispensesOf returns a prescription's dispenses, first first.
func DispensesOf(ctx context.Context, q Q, prescriptionID string) ([]Dispense, error) {
	rows, err := q.Query(ctx, `SELECT id, prescription_id, renewal_index, pharmacy_id, pharmacist_id, items, receipt, dispensed_at
		FROM prescription_dispenses WHERE prescription_id = $1 ORDER BY renewal_index`, prescriptionID)
	if err != nil {
		return nil, fmt.Errorf("store: dispenses: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Dispense])
}

// PharmacyDispensed reports whether a pharmacy has dispensed a prescription.
func PharmacyDispensed(ctx context.Context, q Q, prescriptionID, pharmacyID string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM prescription_dispenses WHERE prescription_id = $1 AND pharmacy_id = $2)`,
		prescriptionID, pharmacyID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: pharmacy dispensed: %w", err)
	}
	return ok, nil
}

// SigningKey is a practitioner's sealed signing key and its certificate.
type SigningKey struct {
	PractitionerID string    `db:"practitioner_id"`
	CertDER        []byte    `db:"cert_der"`
	KeySealed      []byte    `db:"key_sealed"`
	CASHA256       []byte    `db:"ca_sha256"`
	NotAfter       time.Time `db:"not_after"`
}

// SigningKeyOf returns a practitioner's signing key.
func SigningKeyOf(ctx context.Context, q Q, practitionerID string) (SigningKey, error) {
	rows, err := q.Query(ctx, `SELECT practitioner_id, cert_der, key_sealed, ca_sha256, not_after
		FROM rx_signing_keys WHERE practitioner_id = $1`, practitionerID)
	if err != nil {
		return SigningKey{}, fmt.Errorf("store: signing key: %w", err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[SigningKey])
	return k, notFound(err, "signing key")
}

// SaveSigningKey stores (or replaces) a practitioner's signing key.
func SaveSigningKey(ctx context.Context, q Q, k SigningKey) error {
	_, err := q.Exec(ctx, `INSERT INTO rx_signing_keys (practitioner_id, cert_der, key_sealed, ca_sha256, not_after)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (practitioner_id) DO UPDATE SET cert_der = $2, key_sealed = $3, ca_sha256 = $4, not_after = $5, created_at = now()`,
		k.PractitionerID, k.CertDER, k.KeySealed, k.CASHA256, k.NotAfter)
	if err != nil {
		return fmt.Errorf("store: save signing key: %w", err)
	}
	return nil
}

// AuthorityRecord is the stored certificate authority.
type AuthorityRecord struct {
	CertDER   []byte `db:"cert_der"`
	KeySealed []byte `db:"key_sealed"`
	Imported  bool   `db:"imported"`
}

// Authority returns the stored certificate authority.
func Authority(ctx context.Context, q Q) (AuthorityRecord, error) {
	rows, err := q.Query(ctx, `SELECT cert_der, key_sealed, imported FROM rx_authority`)
	if err != nil {
		return AuthorityRecord{}, fmt.Errorf("store: authority: %w", err)
	}
	a, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[AuthorityRecord])
	return a, notFound(err, "authority")
}

// SaveAuthority stores the certificate authority, replacing any other
// when replace is set; otherwise a concurrent first start that stored one
// first wins and false is returned.
func SaveAuthority(ctx context.Context, q Q, a AuthorityRecord, replace bool) (bool, error) {
	conflict := `DO NOTHING`
	if replace {
		conflict = `DO UPDATE SET cert_der = $1, key_sealed = $2, imported = $3, created_at = now()`
	}
	tag, err := q.Exec(ctx, `INSERT INTO rx_authority (cert_der, key_sealed, imported) VALUES ($1, $2, $3)
		ON CONFLICT (singleton) `+conflict, a.CertDER, a.KeySealed, a.Imported)
	if err != nil {
		return false, fmt.Errorf("store: save authority: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
