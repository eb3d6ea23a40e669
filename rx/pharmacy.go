package rx

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/problem"
	"teleconsult/store"
	"teleconsult/vault"
)

// Errors of the pharmacy flow.
var (
	ErrAlreadyAccepted  = problem.New(problem.Conflict, "prescription_in_progress", "a pharmacy has already accepted this prescription")
	ErrAlreadyDispensed = problem.New(problem.Conflict, "prescription_completed", "this prescription has already been dispensed")
	ErrCancelled        = problem.New(problem.Gone, "prescription_cancelled", "this prescription was cancelled by its prescriber")
	ErrNotSubstitutable = problem.New(problem.Invalid, "not_substitutable", "this item is marked non substituable: deliver the prescribed drug")
)

// pharmacyOf returns the pharmacy of a pharmacist caller.
func (s *Service) pharmacyOf(ctx context.Context, who Caller) (store.Pharmacy, error) {
	if who.Role != rolePharmacist {
		return store.Pharmacy{}, ErrNotFound
	}
	ph, err := store.PharmacyOfPharmacist(ctx, s.db.Pool, who.ID)
	if err != nil {
		if problem.KindOf(err) == problem.NotFound {
			return store.Pharmacy{}, ErrNoPharmacy
		}
		return store.Pharmacy{}, err
	}
	return ph, nil
}

// Inbox lists the signed prescriptions sent to, held by or dispensed at
// the caller's pharmacy, newest first, with the access code of those the
// patient sent there.
func (s *Service) Inbox(ctx context.Context, who Caller) ([]View, error) {
	ph, err := s.pharmacyOf(ctx, who)
	if err != nil {
		return nil, err
	}
	ps, err := store.Prescriptions(ctx, s.db.Pool, store.PrescriptionFilter{PharmacyID: ph.ID})
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(ps))
	for _, p := range ps {
		sentHere := p.PharmacyID != nil && *p.PharmacyID == ph.ID
		v, err := s.view(ctx, s.db.Pool, p, sentHere && p.Status == string(StatusReady))
		if errors.Is(err, vault.ErrKeyDestroyed) {
			continue // its patient erased their account: kept under legal hold only
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := audit.Record(ctx, s.db.Pool, audit.Entry{Actor: who, Action: "read", ObjectType: "pharmacy_inbox", ObjectID: ph.ID,
		Detail: fmt.Sprintf("%d prescriptions", len(out))}); err != nil {
		return nil, err
	}
	return out, nil
}

// Acceptance is what a pharmacy gets when it accepts a prescription: the
// secret that proves it holds it, and what to deliver now.
type Acceptance struct {
	ID           string `json:"id"`
	Secret       string `json:"secret"`
	Status       Status `json:"status"`
	Number       string `json:"number"`
	RenewalIndex int    `json:"renewal_index"` // 0 for the first dispense
	Items        []Item `json:"items"`         // due at this dispense
	Prescription View   `json:"prescription"`
}

// Accept gives a ready prescription to the caller's pharmacy, found by
// its number and access code (typed, or read from the QR code). Of any
// number of pharmacies accepting at once exactly one wins: the database
// decides. The others get ErrAlreadyAccepted.
func (s *Service) Accept(ctx context.Context, who Caller, number, accessCode string) (Acceptance, error) {
	ph, err := s.pharmacyOf(ctx, who)
	if err != nil {
		return Acceptance{}, err
	}
	if strings.TrimSpace(number) == "" || strings.TrimSpace(accessCode) == "" {
		return Acceptance{}, ErrInvalid.With("give the prescription number and its access code")
	}
	num, ok := ParseNumber(number)
	if !ok {
		return Acceptance{}, ErrInvalid.With("this is not a prescription number (expected RX-XXXX-XXXX-XXXX as printed under the QR code)")
	}
	code, ok := ParseAccessCode(accessCode)
	if !ok {
		return Acceptance{}, ErrInvalid.With("this is not an access code (expected XXXX-XXXX as printed under the QR code)")
	}
	secret := newSecret()
	now := s.now()
	var out Acceptance
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		p, err := store.AcceptPrescription(ctx, tx, num, hashSecret(code), hashSecret(secret), ph.ID, who.ID, now)
		if err != nil {
			return err
		}
		if err := store.RecordPrescriptionEvent(ctx, tx, event(p.ID, who, "accept", string(StatusReady), string(StatusInProgress), &ph.ID, now)); err != nil {
			return err
		}
		v, err := s.view(ctx, tx, p, false)
		if err != nil {
			return err
		}
		c, err := s.openContent(ctx, tx, p)
		if err != nil {
			return err
		}
		out = Acceptance{ID: p.ID, Secret: secret, Status: StatusInProgress, Number: FormatNumber(num),
			RenewalIndex: p.DispensedCount, Items: c.ItemsForRenewal(p.DispensedCount), Prescription: v}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "accept", ObjectType: "prescription", ObjectID: p.ID, SubjectID: p.PatientID,
			Detail: "pharmacy " + ph.ID})
	})
	if errors.Is(err, store.ErrPrescriptionState) {
		return Acceptance{}, s.whyNotAccepted(ctx, who, num, code, now)
	}
	return out, err
}

// whyNotAccepted explains a failed accept. A wrong access code is
// answered exactly like an unknown number, and recorded as refused.
func (s *Service) whyNotAccepted(ctx context.Context, who Caller, number, code string, now time.Time) error {
	p, err := store.PrescriptionByNumber(ctx, s.db.Pool, number)
	if err != nil {
		if problem.KindOf(err) == problem.NotFound {
			return s.deny(ctx, who, "accept", "prescription", "", "", ErrBadAccessCode)
		}
		return err
	}
	if !equalHash(p.AccessCodeHash, hashSecret(code)) {
		return s.deny(ctx, who, "accept", "prescription", p.ID, p.PatientID, ErrBadAccessCode)
	}
	switch Status(p.Status) {
	case StatusInProgress:
		return ErrAlreadyAccepted
	case StatusCompleted:
		return ErrAlreadyDispensed
	case StatusCancelled:
		return ErrCancelled
	case StatusReady:
		if p.ValidUntil != nil && p.ValidUntil.Before(now) {
			return ErrExpired.Withf("this prescription expired on %s", shortDate(*p.ValidUntil))
		}
	}
	return ErrNotReady
}

// heldBy loads a prescription the caller's pharmacy holds and checks the
// secret. A prescription the pharmacy cannot see is ErrNotFound; one it
// does not hold (any more) is ErrNotReady; a wrong secret is ErrBadSecret.
func (s *Service) heldBy(ctx context.Context, who Caller, id, secret, action string) (store.Prescription, store.Pharmacy, error) {
	ph, err := s.pharmacyOf(ctx, who)
	if err != nil {
		return store.Prescription{}, ph, err
	}
	p, acc, _, err := s.readable(ctx, who, id, action)
	if err != nil {
		return p, ph, err
	}
	if acc != asPharmacy {
		return p, ph, ErrNotFound
	}
	if p.Status != string(StatusInProgress) || p.AcceptedPharmacyID == nil || *p.AcceptedPharmacyID != ph.ID {
		return p, ph, ErrNotReady.With("your pharmacy does not hold this prescription: accept it first")
	}
	if secret == "" {
		return p, ph, ErrInvalid.With("missing required field: secret")
	}
	if !equalHash(p.SecretHash, hashSecret(secret)) {
		return p, ph, s.deny(ctx, who, action, "prescription", id, p.PatientID, ErrBadSecret)
	}
	return p, ph, nil
}

// DispensedItem is what a pharmacy delivered for one prescribed item.
type DispensedItem struct {
	Item        int    `json:"item"`        // 1-based number of the prescribed item
	Drug        string `json:"drug"`        // what was delivered (the prescribed drug when empty)
	Strength    string `json:"strength"`    // delivered strength (prescribed when empty)
	Form        string `json:"form"`        // delivered form (prescribed when empty)
	Quantity    int    `json:"quantity"`    // packs delivered
	Substituted bool   `json:"substituted"` // another product than prescribed (a generic)
	Note        string `json:"note,omitempty"`
}

// Dispense is a recorded delivery, with its signed receipt.
type Dispense struct {
	ID             string          `json:"id"`
	PrescriptionID string          `json:"prescription_id"`
	Number         string          `json:"number"`
	RenewalIndex   int             `json:"renewal_index"`
	PharmacyID     string          `json:"pharmacy_id"`
	PharmacistID   string          `json:"pharmacist_id"`
	Items          []DispensedItem `json:"items"`
	DispensedAt    time.Time       `json:"dispensed_at"`
	Status         Status          `json:"status"` // of the prescription after this dispense
	Receipt        json.RawMessage `json:"receipt"`
}

// resolveItems checks what a pharmacy says it delivered against what is
// due at renewal k; no items means everything due, as prescribed.
func resolveItems(c Content, k int, given []DispensedItem) ([]DispensedItem, error) {
	if len(given) == 0 {
		var out []DispensedItem
		for i, it := range c.Items {
			if it.Renewals < k {
				continue
			}
			out = append(out, DispensedItem{Item: i + 1, Drug: it.Drug, Strength: it.Strength, Form: it.Form, Quantity: max(it.Quantity, 1)})
		}
		return out, nil
	}
	seen := map[int]bool{}
	out := make([]DispensedItem, 0, len(given))
	for _, d := range given {
		if d.Item < 1 || d.Item > len(c.Items) {
			return nil, ErrInvalid.Withf("item %d: the prescription has items 1 to %d", d.Item, len(c.Items))
		}
		if seen[d.Item] {
			return nil, ErrInvalid.Withf("item %d is given twice", d.Item)
		}
		seen[d.Item] = true
		it := c.Items[d.Item-1]
		if it.Renewals < k {
			return nil, ErrInvalid.Withf("item %d is not renewable this time", d.Item)
		}
		d.Drug, d.Strength, d.Form, d.Note = cleanText(d.Drug), cleanText(d.Strength), cleanText(d.Form), strings.TrimSpace(d.Note)
		if len(d.Drug) > maxText || len(d.Strength) > maxText || len(d.Form) > maxText || len(d.Note) > maxText {
			return nil, ErrInvalid.Withf("item %d: a field is longer than %d bytes", d.Item, maxText)
		}
		if d.Drug == "" {
			d.Drug = it.Drug
		}
		if d.Strength == "" {
			d.Strength = it.Strength
		}
		if d.Form == "" {
			d.Form = it.Form
		}
		if !strings.EqualFold(d.Drug, it.Drug) {
			d.Substituted = true
		}
		if d.Substituted && !it.Substitutable {
			return nil, ErrNotSubstitutable.Withf("item %d (%s) is marked non substituable: deliver the prescribed drug", d.Item, it.Drug)
		}
		if d.Quantity < 0 || d.Quantity > maxQuantity {
			return nil, ErrInvalid.Withf("item %d: quantity must be between 0 and %d", d.Item, maxQuantity)
		}
		if d.Quantity == 0 {
			d.Quantity = max(it.Quantity, 1)
		}
		out = append(out, d)
	}
	return out, nil
}

func dispenseAAD(id, column string) vault.AAD {
	return vault.AAD{Table: "prescription_dispenses", Column: column, RowID: id}
}

// Dispense records that the caller's pharmacy, holding the prescription
// with secret, delivered items (nil: everything due, as prescribed). The
// prescription is completed, or ready again for its next renewal; the
// dispense is stored with a receipt signed by the service.
func (s *Service) Dispense(ctx context.Context, who Caller, id, secret string, items []DispensedItem) (Dispense, error) {
	p, ph, err := s.heldBy(ctx, who, id, secret, "dispense")
	if err != nil {
		return Dispense{}, err
	}
	c, err := s.openContent(ctx, s.db.Pool, p)
	if err != nil {
		return Dispense{}, err
	}
	delivered, err := resolveItems(c.Content, p.DispensedCount, items)
	if err != nil {
		return Dispense{}, err
	}
	d := Dispense{ID: store.NewUUID(), PrescriptionID: id, Number: FormatNumber(*p.Number), RenewalIndex: p.DispensedCount,
		PharmacyID: ph.ID, PharmacistID: who.ID, Items: delivered, DispensedAt: s.now().UTC().Truncate(time.Second)}
	receipt, err := s.signReceipt(receiptPayload{
		Type: "prescription-dispense", DispenseID: d.ID, PrescriptionID: id, Number: d.Number, RenewalIndex: d.RenewalIndex,
		Pharmacy: receiptPharmacy{ID: ph.ID, Name: ph.Name, City: ph.City}, PharmacistID: who.ID,
		Items: delivered, DispensedAt: d.DispensedAt, DocumentSHA256: fmt.Sprintf("%x", p.DocumentSHA256),
	})
	if err != nil {
		return Dispense{}, err
	}
	d.Receipt = receipt
	itemsJSON, err := json.Marshal(delivered)
	if err != nil {
		return Dispense{}, err
	}
	key, err := s.vault.AccountKey(ctx, s.db.Pool, p.PatientID)
	if err != nil {
		return Dispense{}, err
	}
	sealedItems, err := s.vault.Seal(ctx, s.db.Pool, key, dispenseAAD(d.ID, "items"), itemsJSON)
	if err != nil {
		return Dispense{}, err
	}
	sealedReceipt, err := s.vault.Seal(ctx, s.db.Pool, key, dispenseAAD(d.ID, "receipt"), receipt)
	if err != nil {
		return Dispense{}, err
	}
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		index, status, err := store.CompleteDispense(ctx, tx, id, hashSecret(secret), ph.ID)
		if err != nil {
			if errors.Is(err, store.ErrPrescriptionState) {
				return ErrNotReady.With("your pharmacy no longer holds this prescription").Wrap(err)
			}
			return err
		}
		if index != d.RenewalIndex {
			// The receipt names the renewal: never store one that lies.
			return ErrNotReady.With("this prescription changed while it was being dispensed; try again")
		}
		d.Status = Status(status)
		if err := store.InsertDispense(ctx, tx, store.Dispense{ID: d.ID, PrescriptionID: id, RenewalIndex: index, PharmacyID: ph.ID,
			PharmacistID: who.ID, Items: sealedItems, Receipt: sealedReceipt, DispensedAt: d.DispensedAt}); err != nil {
			if errors.Is(err, store.ErrPrescriptionState) {
				return ErrAlreadyDispensed.Wrap(err)
			}
			return err
		}
		if err := store.RecordPrescriptionEvent(ctx, tx, event(id, who, "dispense", string(StatusInProgress), status, &ph.ID, d.DispensedAt)); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "dispense", ObjectType: "prescription", ObjectID: id, SubjectID: p.PatientID,
			Detail: fmt.Sprintf("pharmacy %s, renewal %d", ph.ID, index)})
	})
	if err != nil {
		return Dispense{}, err
	}
	return d, nil
}

// Reject hands a prescription the caller's pharmacy holds back: it is
// ready again, for this pharmacy or another.
func (s *Service) Reject(ctx context.Context, who Caller, id, secret string) (View, error) {
	p, ph, err := s.heldBy(ctx, who, id, secret, "reject")
	if err != nil {
		return View{}, err
	}
	var out View
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		if err := store.ReleasePrescription(ctx, tx, id, hashSecret(secret), ph.ID); err != nil {
			if errors.Is(err, store.ErrPrescriptionState) {
				return ErrNotReady.With("your pharmacy no longer holds this prescription").Wrap(err)
			}
			return err
		}
		if err := store.RecordPrescriptionEvent(ctx, tx, event(id, who, "reject", string(StatusInProgress), string(StatusReady), &ph.ID, s.now())); err != nil {
			return err
		}
		got, err := store.PrescriptionByID(ctx, tx, id)
		if err != nil {
			return err
		}
		if out, err = s.view(ctx, tx, got, false); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "reject", ObjectType: "prescription", ObjectID: id, SubjectID: p.PatientID,
			Detail: "pharmacy " + ph.ID})
	})
	return out, err
}

// Dispenses returns the dispenses of a prescription the caller may read.
func (s *Service) Dispenses(ctx context.Context, who Caller, id string) ([]Dispense, error) {
	p, _, _, err := s.readable(ctx, who, id, "read")
	if err != nil {
		return nil, err
	}
	return s.dispenses(ctx, p)
}

func (s *Service) dispenses(ctx context.Context, p store.Prescription) ([]Dispense, error) {
	rows, err := store.DispensesOf(ctx, s.db.Pool, p.ID)
	if err != nil {
		return nil, err
	}
	out := make([]Dispense, 0, len(rows))
	for _, r := range rows {
		d := Dispense{ID: r.ID, PrescriptionID: p.ID, RenewalIndex: r.RenewalIndex, PharmacyID: r.PharmacyID,
			PharmacistID: r.PharmacistID, DispensedAt: r.DispensedAt}
		if p.Number != nil {
			d.Number = FormatNumber(*p.Number)
		}
		b, err := s.vault.Open(ctx, s.db.Pool, dispenseAAD(r.ID, "items"), r.Items)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &d.Items); err != nil {
			return nil, fmt.Errorf("rx: decode dispense: %w", err)
		}
		if d.Receipt, err = s.vault.Open(ctx, s.db.Pool, dispenseAAD(r.ID, "receipt"), r.Receipt); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Verification says whether a PDF is a prescription this service signed,
// byte for byte, and where that prescription stands.
type Verification struct {
	Authentic  bool       `json:"authentic"`
	ID         string     `json:"id,omitempty"`
	Number     string     `json:"number,omitempty"`
	Status     Status     `json:"status,omitempty"`
	SignedAt   *time.Time `json:"signed_at,omitempty"`
	ValidUntil *time.Time `json:"valid_until,omitempty"`
}

// VerifyDocument tells a pharmacist whether pdf is exactly a prescription
// signed here (not a copy with one byte changed), and its status: a
// signature that verifies in a PDF reader says who signed, this says
// whether it was cancelled or already dispensed.
func (s *Service) VerifyDocument(ctx context.Context, who Caller, pdf []byte) (Verification, error) {
	if who.Role != rolePharmacist {
		return Verification{}, ErrNotFound
	}
	sum := sha256.Sum256(pdf)
	p, err := store.PrescriptionByDocument(ctx, s.db.Pool, sum[:])
	if err != nil {
		if problem.KindOf(err) == problem.NotFound {
			return Verification{Authentic: false}, nil
		}
		return Verification{}, err
	}
	v := Verification{Authentic: true, ID: p.ID, Number: FormatNumber(*p.Number), Status: Status(p.Status), SignedAt: p.SignedAt, ValidUntil: p.ValidUntil}
	if err := audit.Record(ctx, s.db.Pool, audit.Entry{Actor: who, Action: "read", ObjectType: "prescription", ObjectID: p.ID, SubjectID: p.PatientID, Detail: "verify"}); err != nil {
		return Verification{}, err
	}
	return v, nil
}
