package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/store"
	"teleconsult/vault"
)

// HeldDocument is the plaintext of a legal-hold record: the facts and
// files kept for the law about an erased account.
type HeldDocument struct {
	Kind      string            `json:"kind"` // prescription, dispense, receipt, identity
	RefID     string            `json:"ref_id"`
	SubjectID string            `json:"subject_id"`
	HeldAt    time.Time         `json:"held_at"`
	Facts     json.RawMessage   `json:"facts,omitempty"`
	Files     map[string][]byte `json:"files,omitempty"`
}

// HoldAAD binds a legal-hold record to its row (subject, kind, reference).
func HoldAAD(subjectID, kind, refID string) []byte {
	return []byte("teleconsult/legal-hold/v1|" + subjectID + "|" + kind + "|" + refID)
}

// Erased is what an erasure did.
type Erased struct {
	Cancelled []string `json:"cancelled_appointments"`
	Held      int      `json:"documents_kept_for_the_law"`
}

// Erase erases the caller's (patient) account: upcoming appointments are
// cancelled through booking (slots freed, practitioners told), documents
// the law requires are re-sealed to the legal-hold key, then personal
// data is deleted or anonymised and the account's data key destroyed.
// When an upcoming appointment can no longer be cancelled online, nothing
// is changed and ErrAppointmentTooClose is returned. Past appointments
// never marked by the practitioner are left as they are.
func (s *Service) Erase(ctx context.Context, who audit.Actor) (Erased, error) {
	out := Erased{Cancelled: []string{}}
	acct, err := store.AccountByID(ctx, s.db.Pool, who.ID)
	if err != nil {
		return out, err
	}
	if acct.Role != "patient" {
		return out, ErrNotSelfService
	}
	if s.legalHold == nil {
		return out, ErrNoLegalHold
	}
	now := s.now()
	upcoming, err := store.UpcomingAppointmentsOfPatient(ctx, s.db.Pool, acct.ID, now)
	if err != nil {
		return out, err
	}
	for _, u := range upcoming {
		if u.Status != store.StatusPendingPayment && !now.Before(u.StartsAt.Add(-time.Duration(u.Cutoff)*time.Minute)) {
			return out, ErrAppointmentTooClose.Withf("the appointment of %s can no longer be cancelled online; contact the practice, or erase the account after it",
				u.StartsAt.UTC().Format("2006-01-02 15:04 UTC"))
		}
	}
	if len(upcoming) > 0 && s.booking == nil {
		return out, ErrNoLegalHold.With("account erasure is not available: appointments cannot be cancelled now")
	}
	for _, u := range upcoming {
		if _, err := s.booking.Cancel(ctx, who, u.ID, ""); err != nil {
			return out, fmt.Errorf("privacy: erase: cancel appointment: %w", err)
		}
		out.Cancelled = append(out.Cancelled, u.ID)
	}
	// Receipts are rendered before the account loses its name.
	receipts := map[string][]byte{}
	pays, err := store.PaymentsOfPatient(ctx, s.db.Pool, acct.ID)
	if err != nil {
		return out, err
	}
	for _, p := range pays {
		pdf, err := s.receipt(ctx, who, p)
		if err != nil {
			return out, err
		}
		receipts[p.AppointmentID] = pdf
	}

	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		keyID, err := store.AccountForErasure(ctx, tx, acct.ID)
		if err != nil {
			return err
		}
		// A booking made (from another session) while the others were
		// being cancelled would be left behind: start again.
		if late, err := store.UpcomingAppointmentsOfPatient(ctx, tx, acct.ID, now); err != nil {
			return err
		} else if len(late) > 0 {
			return ErrBookedMeanwhile
		}
		var held []HeldDocument
		identity, _ := json.Marshal(map[string]any{"account_id": acct.ID, "email": acct.Email, "name": acct.Name,
			"phone": acct.Phone, "created_at": acct.CreatedAt, "erased_at": now.UTC()})
		held = append(held, HeldDocument{Kind: "identity", RefID: acct.ID, Facts: identity})
		rxHeld, err := s.heldPrescriptions(ctx, tx, acct.ID)
		if err != nil {
			return err
		}
		held = append(held, rxHeld...)
		for _, p := range pays {
			facts, _ := json.Marshal(map[string]any{"appointment_id": p.AppointmentID, "practitioner_id": p.PractitionerID,
				"state": p.State, "amount": p.Amount, "currency": p.Currency, "amount_captured": p.AmountCaptured,
				"amount_refunded": p.AmountRefunded, "captured_at": p.CapturedAt, "refunded_at": p.RefundedAt,
				"payment_intent": p.PaymentIntent, "created_at": p.CreatedAt})
			d := HeldDocument{Kind: "receipt", RefID: p.AppointmentID, Facts: facts}
			if pdf := receipts[p.AppointmentID]; pdf != nil {
				d.Files = map[string][]byte{"receipt.pdf": pdf}
			}
			held = append(held, d)
		}
		for _, d := range held {
			d.SubjectID, d.HeldAt = acct.ID, now.UTC()
			plain, err := json.Marshal(d)
			if err != nil {
				return err
			}
			sealed, err := SealLegalHold(s.legalHold, HoldAAD(acct.ID, d.Kind, d.RefID), plain)
			if err != nil {
				return fmt.Errorf("privacy: seal legal hold: %w", err)
			}
			if err := store.SaveLegalHold(ctx, tx, store.LegalHoldRecord{SubjectID: acct.ID, Kind: d.Kind, RefID: d.RefID, Sealed: sealed}); err != nil {
				return err
			}
		}
		out.Held = len(held)
		if err := store.EraseAccountData(ctx, tx, acct.ID, now); err != nil {
			return err
		}
		if keyID != "" {
			if err := s.vault.DestroyKey(ctx, tx, keyID); err != nil {
				return err
			}
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "erase", ObjectType: "account", ObjectID: acct.ID,
			SubjectID: acct.ID, Outcome: audit.OK, Detail: fmt.Sprintf("cancelled %d, kept %d for the law", len(out.Cancelled), len(held))})
	})
	if err != nil {
		return out, err
	}
	return out, nil
}

// heldPrescriptions opens the signed prescriptions of an account (content,
// signed PDF, dispenses) for the legal hold.
func (s *Service) heldPrescriptions(ctx context.Context, q store.Q, accountID string) ([]HeldDocument, error) {
	rxs, err := store.AllPrescriptionsOfPatient(ctx, q, accountID)
	if err != nil {
		return nil, err
	}
	var out []HeldDocument
	for _, p := range rxs {
		if p.SignedAt == nil {
			continue
		}
		content, err := s.vault.Open(ctx, q, vault.AAD{Table: "prescriptions", Column: "content", RowID: p.ID}, p.Content)
		if err != nil {
			return nil, fmt.Errorf("privacy: hold prescription: %w", err)
		}
		facts, _ := json.Marshal(map[string]any{"id": p.ID, "number": p.Number, "appointment_id": p.AppointmentID,
			"practitioner_id": p.PractitionerID, "status": p.Status, "signed_at": p.SignedAt, "valid_until": p.ValidUntil,
			"renewals": p.Renewals, "dispensed_count": p.DispensedCount, "document_sha256": p.DocumentSHA256,
			"content": rawJSON(content)})
		d := HeldDocument{Kind: "prescription", RefID: p.ID, Facts: facts}
		sealed, err := store.PrescriptionDocument(ctx, q, p.ID)
		if err == nil {
			pdf, err := s.vault.Open(ctx, q, vault.AAD{Table: "prescriptions", Column: "document", RowID: p.ID}, sealed)
			if err != nil {
				return nil, fmt.Errorf("privacy: hold prescription document: %w", err)
			}
			d.Files = map[string][]byte{"prescription.pdf": pdf}
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		out = append(out, d)
		ds, err := store.DispensesOf(ctx, q, p.ID)
		if err != nil {
			return nil, err
		}
		for _, dp := range ds {
			items, err := s.vault.Open(ctx, q, vault.AAD{Table: "prescription_dispenses", Column: "items", RowID: dp.ID}, dp.Items)
			if err != nil {
				return nil, fmt.Errorf("privacy: hold dispense: %w", err)
			}
			receipt, err := s.vault.Open(ctx, q, vault.AAD{Table: "prescription_dispenses", Column: "receipt", RowID: dp.ID}, dp.Receipt)
			if err != nil {
				return nil, fmt.Errorf("privacy: hold dispense: %w", err)
			}
			facts, _ := json.Marshal(map[string]any{"id": dp.ID, "prescription_id": p.ID, "renewal_index": dp.RenewalIndex,
				"pharmacy_id": dp.PharmacyID, "pharmacist_id": dp.PharmacistID, "dispensed_at": dp.DispensedAt, "items": rawJSON(items)})
			out = append(out, HeldDocument{Kind: "dispense", RefID: dp.ID, Facts: facts, Files: map[string][]byte{"receipt": receipt}})
		}
	}
	return out, nil
}
