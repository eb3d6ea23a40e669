package payments

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"

	"teleconsult/store"
)

// Receipt renders the PDF receipt of what the patient paid for an
// appointment, for their insurer. Only the appointment's patient gets it,
// and only once money was captured; anything else is ErrNotFound, exactly
// like a missing appointment.
func (s *Service) Receipt(ctx context.Context, appointmentID, patientID string) ([]byte, error) {
	f, err := store.ReceiptFactsOf(ctx, s.db.Pool, appointmentID)
	if err != nil {
		return nil, err
	}
	if f.PatientID != patientID || f.AmountCaptured == 0 || f.CapturedAt == nil {
		return nil, store.ErrNotFound.With("receipt not found")
	}
	return renderReceipt(f, s.TestMode())
}

func renderReceipt(f store.ReceiptFacts, testMode bool) ([]byte, error) {
	loc, err := time.LoadLocation(f.PractitionerTZ)
	if err != nil {
		loc = time.UTC
	}
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCreationDate(*f.CapturedAt)
	pdf.SetModificationDate(*f.CapturedAt)
	pdf.SetTitle("Payment receipt", true)
	pdf.SetProducer("teleconsult", true)
	// Embedded UTF-8 fonts: accents in names render everywhere, and the
	// PDF does not depend on fonts installed on the reader's machine.
	pdf.AddUTF8FontFromBytes("Go", "", goregular.TTF)
	pdf.AddUTF8FontFromBytes("Go", "B", gobold.TTF)
	pdf.SetMargins(20, 20, 20)
	pdf.AddPage()

	pdf.SetFont("Go", "B", 18)
	pdf.CellFormat(0, 10, "Payment receipt / Reçu de paiement", "", 1, "L", false, 0, "")
	if testMode {
		pdf.SetFont("Go", "B", 11)
		pdf.SetTextColor(176, 0, 32)
		pdf.CellFormat(0, 7, "TEST MODE — no real payment was made", "", 1, "L", false, 0, "")
		pdf.SetTextColor(0, 0, 0)
	}
	pdf.Ln(4)

	row := func(label, value string) {
		pdf.SetFont("Go", "B", 10)
		pdf.CellFormat(55, 7, label, "", 0, "L", false, 0, "")
		pdf.SetFont("Go", "", 10)
		pdf.MultiCell(0, 7, value, "", "L", false)
	}
	row("Receipt number", f.AppointmentID)
	row("Paid on", f.CapturedAt.In(loc).Format("2006-01-02 15:04 MST"))
	row("Patient", f.PatientName)
	pdf.Ln(3)
	row("Practitioner", f.PractitionerName)
	if f.Specialty != "" {
		row("Specialty", f.Specialty)
	}
	if f.PractitionerRPPS != "" {
		row("RPPS", f.PractitionerRPPS)
	}
	if addr := joinNonEmpty(f.PractitionerAddr, f.PractitionerPost+" "+f.PractitionerCity); addr != "" {
		row("Address", addr)
	}
	pdf.Ln(3)
	mode := "In person"
	if f.Mode == "video" {
		mode = "Video"
	}
	row("Consultation", mode+", "+f.StartsAt.In(loc).Format("2006-01-02 15:04 MST"))
	row("Amount paid", formatAmount(f.AmountCaptured, f.Currency))
	if f.AmountRefunded > 0 {
		row("Refunded", formatAmount(f.AmountRefunded, f.Currency))
		row("Net paid", formatAmount(f.AmountCaptured-f.AmountRefunded, f.Currency))
	}
	row("Payment method", "Card")
	pdf.Ln(8)
	pdf.SetFont("Go", "", 8)
	pdf.MultiCell(0, 4, "This receipt states the amount paid for the consultation above. It contains no medical information.", "", "L", false)

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
