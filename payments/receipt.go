package payments

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/go-pdf/fpdf"
	"github.com/jackc/pgx/v5"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"

	"teleconsult/audit"
	"teleconsult/booking"
	"teleconsult/store"
)

// Receipt renders the PDF receipt of what the patient paid for an
// appointment, for their insurer. Only the appointment's patient gets it,
// and only once money was captured; anyone else is ErrNotFound, exactly
// like a missing appointment. The receipt names the practitioner's
// specialty, so each access is audited (a refusal too).
func (s *Service) Receipt(ctx context.Context, who audit.Actor, appointmentID string) ([]byte, error) {
	f, err := store.ReceiptFactsOf(ctx, s.db.Pool, appointmentID)
	if err != nil {
		return nil, err
	}
	entry := audit.Entry{Actor: who, Action: "read", ObjectType: "receipt", ObjectID: appointmentID,
		SubjectID: f.PatientID, Outcome: audit.OK}
	if who.ID == "" || f.PatientID != who.ID {
		entry.Outcome = audit.Denied
		if err := s.db.Tx(ctx, func(tx pgx.Tx) error { return audit.Record(ctx, tx, entry) }); err != nil {
			return nil, err
		}
		return nil, store.ErrNotFound.With("receipt not found")
	}
	if f.AmountCaptured == 0 || f.CapturedAt == nil {
		return nil, store.ErrNotFound.With("receipt not found")
	}
	pdf, err := renderReceipt(f, s.TestMode())
	if err != nil {
		return nil, err
	}
	if err := s.db.Tx(ctx, func(tx pgx.Tx) error { return audit.Record(ctx, tx, entry) }); err != nil {
		return nil, err
	}
	return pdf, nil
}

// receiptWords are the receipt's words in the patient's language.
var receiptWords = map[string]map[string]string{
	"en": {
		"title": "Payment receipt", "test": "TEST MODE — no real payment was made", "number": "Receipt number",
		"paid_on": "Paid on", "patient": "Patient", "practitioner": "Practitioner", "specialty": "Specialty",
		"rpps": "RPPS number", "address": "Address", "consultation": "Consultation", "video": "Video",
		"in_person": "In person", "amount": "Amount paid", "refunded": "Refunded", "net": "Net paid",
		"method": "Payment method", "card": "Card",
		"footer": "This receipt states the amount paid for the consultation above. It contains no medical information.",
	},
	"fr": {
		"title": "Reçu de paiement", "test": "MODE TEST — aucun paiement réel n'a eu lieu", "number": "Numéro de reçu",
		"paid_on": "Payé le", "patient": "Patient", "practitioner": "Praticien", "specialty": "Spécialité",
		"rpps": "Numéro RPPS", "address": "Adresse", "consultation": "Consultation", "video": "Vidéo",
		"in_person": "Au cabinet", "amount": "Montant payé", "refunded": "Remboursé", "net": "Net payé",
		"method": "Moyen de paiement", "card": "Carte",
		"footer": "Ce reçu atteste du montant payé pour la consultation ci-dessus. Il ne contient aucune information médicale.",
	},
}

func renderReceipt(f store.ReceiptFacts, testMode bool) ([]byte, error) {
	w, ok := receiptWords[f.PatientLanguage]
	if !ok {
		w = receiptWords["fr"]
	}
	loc, err := time.LoadLocation(f.PractitionerTZ)
	if err != nil {
		loc = time.UTC
	}
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCreationDate(*f.CapturedAt)
	pdf.SetModificationDate(*f.CapturedAt)
	pdf.SetTitle(w["title"], true)
	pdf.SetProducer("teleconsult", true)
	// Embedded UTF-8 fonts: accents in names render everywhere, and the
	// PDF does not depend on fonts installed on the reader's machine.
	pdf.AddUTF8FontFromBytes("Go", "", goregular.TTF)
	pdf.AddUTF8FontFromBytes("Go", "B", gobold.TTF)
	pdf.SetMargins(20, 20, 20)
	pdf.AddPage()

	pdf.SetFont("Go", "B", 18)
	pdf.CellFormat(0, 10, w["title"], "", 1, "L", false, 0, "")
	if testMode {
		pdf.SetFont("Go", "B", 11)
		pdf.SetTextColor(176, 0, 32)
		pdf.CellFormat(0, 7, w["test"], "", 1, "L", false, 0, "")
		pdf.SetTextColor(0, 0, 0)
	}
	pdf.Ln(4)

	row := func(label, value string) {
		pdf.SetFont("Go", "B", 10)
		pdf.CellFormat(55, 7, label, "", 0, "L", false, 0, "")
		pdf.SetFont("Go", "", 10)
		pdf.MultiCell(0, 7, value, "", "L", false)
	}
	row(w["number"], f.AppointmentID)
	row(w["paid_on"], f.CapturedAt.In(loc).Format("2006-01-02 15:04 MST"))
	row(w["patient"], f.PatientName)
	pdf.Ln(3)
	row(w["practitioner"], f.PractitionerName)
	if sp, ok := booking.SpecialtyByCode(f.Specialty); ok {
		row(w["specialty"], sp.Label(f.PatientLanguage))
	}
	if f.PractitionerRPPS != "" {
		row(w["rpps"], f.PractitionerRPPS)
	}
	if addr := joinNonEmpty(f.PractitionerAddr, f.PractitionerPost+" "+f.PractitionerCity); addr != "" {
		row(w["address"], addr)
	}
	pdf.Ln(3)
	mode := w["in_person"]
	if f.Mode == "video" {
		mode = w["video"]
	}
	row(w["consultation"], mode+", "+f.StartsAt.In(loc).Format("2006-01-02 15:04 MST"))
	row(w["amount"], formatAmount(f.AmountCaptured, f.Currency))
	if f.AmountRefunded > 0 {
		row(w["refunded"], formatAmount(f.AmountRefunded, f.Currency))
		row(w["net"], formatAmount(f.AmountCaptured-f.AmountRefunded, f.Currency))
	}
	row(w["method"], w["card"])
	pdf.Ln(8)
	pdf.SetFont("Go", "", 8)
	pdf.MultiCell(0, 4, w["footer"], "", "L", false)

	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		return nil, fmt.Errorf("payments: render receipt: %w", err)
	}
	return buf.Bytes(), nil
}

func joinNonEmpty(parts ...string) string {
	out := ""
	for _, p := range parts {
		if len(bytes.TrimSpace([]byte(p))) == 0 {
			continue
		}
		if out != "" {
			out += ", "
		}
		out += p
	}
	return out
}
