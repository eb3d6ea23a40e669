package rx

import (
	"context"
	"time"

	"teleconsult/audit"
	"teleconsult/store"
)

// Preview renders draft id for its prescriber as the signature would
// print it now (the prescriber and patient blocks taken afresh from the
// profiles, as Sign does), but without number, access code, QR code or
// signature, and marked on every page as a draft not valid for
// dispensing. Anyone but the prescriber gets ErrNotFound; once the
// prescription is signed or cancelled, ErrNotDraft: the signed PDF is
// then the document.
func (s *Service) Preview(ctx context.Context, who Caller, id string) ([]byte, error) {
	p, err := s.prescriberOwn(ctx, who, id, "preview")
	if err != nil {
		return nil, err
	}
	if p.Status != string(StatusDraft) {
		return nil, ErrNotDraft.With("this prescription is no longer a draft: only a draft has a preview")
	}
	c, err := s.openContent(ctx, s.db.Pool, p)
	if err != nil {
		return nil, err
	}
	a, err := store.AppointmentByID(ctx, s.db.Pool, p.AppointmentID)
	if err != nil {
		return nil, err
	}
	prescriber, patient, err := s.blocks(ctx, s.db.Pool, a)
	if err != nil {
		return nil, err
	}
	now := s.now().Truncate(time.Second)
	doc := Document{Draft: true, Prescriber: prescriber, Patient: patient, Content: c.Content, SignedAt: now, ValidUntil: c.ValidUntil(now)}
	if p.ReplacesID != nil {
		r, err := store.PrescriptionByID(ctx, s.db.Pool, *p.ReplacesID)
		if err != nil {
			return nil, err
		}
		if r.Number != nil {
			doc.Replaces = *r.Number
		}
	}
	pdf, err := Render(doc)
	if err != nil {
		return nil, err
	}
	if err := audit.Record(ctx, s.db.Pool, audit.Entry{Actor: who, Action: "read", ObjectType: "prescription", ObjectID: id, SubjectID: p.PatientID,
		Detail: "draft preview"}); err != nil {
		return nil, err
	}
	return pdf, nil
}
