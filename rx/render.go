package rx

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // prescriptions are dated in Paris time on any host

	"github.com/go-pdf/fpdf"
	"github.com/skip2/go-qrcode"
	"golang.org/x/image/font/gofont/goregular"
)

// paris is the time zone prescriptions are dated in.
var paris = mustZone("Europe/Paris")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

var frenchMonths = [...]string{"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"}

// longDate prints "28 novembre 2026".
func longDate(t time.Time) string {
	t = t.In(paris)
	day := fmt.Sprint(t.Day())
	if t.Day() == 1 {
		day = "1er"
	}
	return fmt.Sprintf("%s %s %d", day, frenchMonths[t.Month()-1], t.Year())
}

// shortDate prints "28/11/2026".
func shortDate(t time.Time) string { return t.In(paris).Format("02/01/2006") }

// ageAt returns the age in whole years of someone born on birth at t.
func ageAt(birth, t time.Time) int {
	t = t.In(paris)
	age := t.Year() - birth.Year()
	if t.Month() < birth.Month() || (t.Month() == birth.Month() && t.Day() < birth.Day()) {
		age--
	}
	return age
}

// QRPayload is what the QR code on a prescription carries: the number
// and the access code as printed, "RX-ABCD-EFGH-JKLM/ABCD-EFGH". Only
// capitals, digits, "-" and "/" are used, so the code is in QR
// alphanumeric mode: fewer, larger modules that scan well off a
// crumpled printout. ParseQR reads it back.
func QRPayload(number, accessCode string) string {
	return FormatNumber(number) + "/" + FormatAccessCode(accessCode)
}

// ParseQR splits a scanned QR payload into a canonical number and access
// code.
func ParseQR(s string) (number, accessCode string, ok bool) {
	n, c, found := strings.Cut(strings.TrimSpace(s), "/")
	if !found {
		return "", "", false
	}
	if number, ok = ParseNumber(n); !ok {
		return "", "", false
	}
	if accessCode, ok = ParseAccessCode(c); !ok {
		return "", "", false
	}
	return number, accessCode, true
}

// Page geometry, in millimetres on A4 portrait.
const (
	pageW   = 210.0
	margin  = 18.0
	textW   = pageW - 2*margin
	qrSize  = 34.0
	lineH   = 5.0
	footerY = -14.0
)

func sexLabel(s string) string {
	switch s {
	case "F":
		return "Femme"
	case "M":
		return "Homme"
	default:
		return "Non précisé"
	}
}

func bornLabel(s string) string {
	switch s {
	case "F":
		return "Née le"
	case "M":
		return "Né le"
	default:
		return "Né(e) le"
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func formatMeasure(v float64) string {
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return strings.Replace(s, ".", ",", 1)
}

// Render draws the prescription as an A4 PDF, unsigned. The signature
// block shows who signs; the signature itself is added by signPDF. A
// draft (d.Draft) is drawn without number, access code, QR code or
// signature block, under a banner and a watermark on every page saying
// that it is not valid for dispensing.
//
// The text is set in Go Regular, embedded. When every character fits
// Windows-1252 (the usual case) the font is the one prepared once per
// process (see font.go); otherwise the document is drawn again with
// fpdf's UTF-8 font, subset for this document.
func Render(d Document) ([]byte, error) {
	latin, err := loadLatinFont()
	if err != nil {
		return nil, err
	}
	enc := new(cp1252Encoder)
	b, err := render(d, func(pdf *fpdf.Fpdf) { pdf.AddFontFromBytes("Go", "", latin.def, latin.file) }, enc.encode)
	if err != nil || !enc.lossy {
		return b, err
	}
	return render(d, func(pdf *fpdf.Fpdf) { pdf.AddUTF8FontFromBytes("Go", "", goregular.TTF) }, func(s string) string { return s })
}

// render draws d with the font addFont adds as "Go"; every text goes
// through tx, which encodes it for that font.
func render(d Document, addFont func(*fpdf.Fpdf), tx func(string) string) ([]byte, error) {
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetMargins(margin, margin, margin)
	pdf.SetAutoPageBreak(true, 24)
	// The page itself is left uncompressed: it is a few kilobytes of
	// text operators, and a zlib writer per document costs more CPU and
	// memory than the bytes it saves (the embedded font stays compressed).
	pdf.SetCompression(false)
	// One embedded face; bold is drawn from it (see setFont).
	addFont(pdf)
	st := &textStyle{pdf: pdf}
	pdf.SetHeaderFunc(st.reapply)
	title := "Ordonnance " + FormatNumber(d.Number)
	if d.Draft {
		pdf.SetHeaderFunc(func() {
			draftMarks(pdf, tx)
			st.reapply()
		})
		title = "Brouillon d'ordonnance, non valable"
	}
	pdf.SetTitle(title, true)
	pdf.SetAuthor(d.Prescriber.Name, true)
	pdf.SetSubject("Ordonnance médicale", true)
	pdf.SetCreator("teleconsult", true)
	pdf.SetLang("fr-FR")
	pdf.SetCreationDate(d.SignedAt)
	pdf.SetModificationDate(d.SignedAt)
	pdf.AliasNbPages("{nb}")

	pdf.SetFooterFunc(func() {
		pdf.SetY(footerY)
		pdf.SetTextRenderingMode(0)
		pdf.SetFont("Go", "", 7.5)
		pdf.SetTextColor(90, 90, 90)
		// Every page names the prescription and the patient, so a loose
		// second page is still attributable.
		name := "Ordonnance n° " + FormatNumber(d.Number)
		if d.Draft {
			name = "Brouillon non valable"
		}
		pdf.CellFormat(textW*0.8, 4, tx(name+" — "+strings.ToUpper(d.Patient.Surname)+" "+d.Patient.FirstNames), "", 0, "L", false, 0, "")
		pdf.CellFormat(textW*0.2, 4, tx(fmt.Sprintf("Page %d/{nb}", pdf.PageNo())), "", 0, "R", false, 0, "")
		pdf.SetTextColor(0, 0, 0)
	})
	pdf.AddPage()

	// Prescriber, top left.
	p := d.Prescriber
	st.set(true, 13)
	pdf.SetXY(margin, margin)
	pdf.CellFormat(textW-qrSize-6, 6, tx(p.Name), "", 2, "L", false, 0, "")
	st.set(false, 10)
	if p.Specialty != "" {
		pdf.CellFormat(textW-qrSize-6, lineH, tx(p.Specialty), "", 2, "L", false, 0, "")
	}
	st.set(true, 9.5)
	pdf.CellFormat(textW-qrSize-6, lineH, tx("N° RPPS : "+p.RPPS), "", 2, "L", false, 0, "")
	st.set(false, 9.5)
	for _, line := range strings.Split(p.Address, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			pdf.CellFormat(textW-qrSize-6, lineH-0.5, tx(line), "", 2, "L", false, 0, "")
		}
	}
	if p.Phone != "" {
		pdf.CellFormat(textW-qrSize-6, lineH-0.5, tx("Tél. : "+p.Phone), "", 2, "L", false, 0, "")
	}
	if p.Email != "" {
		pdf.CellFormat(textW-qrSize-6, lineH-0.5, tx("Courriel : "+p.Email), "", 2, "L", false, 0, "")
	}
	leftBottom := pdf.GetY()

	// QR code, number and access code, top right. A draft has none: an
	// empty frame stands where they will be.
	qrX := pageW - margin - qrSize
	if d.Draft {
		pdf.SetDrawColor(150, 150, 150)
		pdf.SetLineWidth(0.3)
		pdf.SetDashPattern([]float64{1.5, 1.5}, 0)
		pdf.Rect(qrX, margin, qrSize, qrSize, "D")
		pdf.SetDashPattern(nil, 0)
		st.set(false, 7.5)
		st.color(90, 90, 90)
		pdf.SetXY(qrX+2, margin+qrSize/2-6)
		pdf.MultiCell(qrSize-4, 3.5, tx("Code QR, numéro et code d'accès donnés à la signature"), "", "C", false)
		st.color(0, 0, 0)
		pdf.SetY(margin + qrSize + 0.5)
	} else {
		if err := drawQR(pdf, QRPayload(d.Number, d.AccessCode), qrX, margin, qrSize); err != nil {
			return nil, err
		}
		st.set(true, 8.5)
		pdf.SetXY(qrX-8, margin+qrSize+0.5)
		pdf.CellFormat(qrSize+8, 4, tx(FormatNumber(d.Number)), "", 2, "C", false, 0, "")
		st.set(false, 7.5)
		pdf.SetX(qrX - 8)
		pdf.CellFormat(qrSize+8, 3.5, tx("Code d'accès : "+FormatAccessCode(d.AccessCode)), "", 2, "C", false, 0, "")
	}
	rightBottom := pdf.GetY()

	y := max(leftBottom, rightBottom) + 3
	pdf.SetDrawColor(60, 60, 60)
	pdf.SetLineWidth(0.3)
	pdf.Line(margin, y, pageW-margin, y)

	// Place and date, right.
	pdf.SetXY(margin, y+3)
	st.set(false, 10)
	pdf.CellFormat(textW, lineH, tx("Le "+longDate(d.SignedAt)), "", 1, "R", false, 0, "")

	// Patient block.
	pt := d.Patient
	pdf.Ln(1)
	st.set(true, 11)
	pdf.CellFormat(textW, 6, tx(strings.ToUpper(pt.Surname)+" "+pt.FirstNames), "", 1, "L", false, 0, "")
	st.set(false, 9.5)
	line := sexLabel(pt.Sex)
	if birth, err := time.Parse(time.DateOnly, pt.BirthDate); err == nil {
		line += fmt.Sprintf(" — %s %s (%s)", bornLabel(pt.Sex), birth.Format("02/01/2006"), plural(ageAt(birth, d.SignedAt), "an", "ans"))
	}
	pdf.CellFormat(textW, lineH, tx(line), "", 1, "L", false, 0, "")
	var measures []string
	if pt.WeightKg > 0 {
		measures = append(measures, "Poids : "+formatMeasure(pt.WeightKg)+" kg")
	}
	if pt.HeightCm > 0 {
		measures = append(measures, "Taille : "+formatMeasure(pt.HeightCm)+" cm")
	}
	if len(measures) > 0 {
		pdf.CellFormat(textW, lineH, tx(strings.Join(measures, " — ")), "", 1, "L", false, 0, "")
	}

	// Title.
	pdf.Ln(5)
	st.set(true, 15)
	pdf.CellFormat(textW, 8, tx("ORDONNANCE"), "", 1, "C", false, 0, "")
	if d.Replaces != "" {
		st.set(true, 9)
		pdf.CellFormat(textW, lineH, tx("Annule et remplace l'ordonnance n° "+FormatNumber(d.Replaces)), "", 1, "C", false, 0, "")
	}
	pdf.Ln(4)

	// Items.
	const indent = 8.0
	for i, it := range d.Content.Items {
		if pdf.GetY() > 250 {
			pdf.AddPage()
		}
		st.set(true, 11)
		pdf.CellFormat(indent, 6, tx(fmt.Sprintf("%d.", i+1)), "", 0, "L", false, 0, "")
		title := it.Drug
		if it.Strength != "" {
			title += " " + it.Strength
		}
		if it.Form != "" {
			title += ", " + it.Form
		}
		pdf.MultiCell(textW-indent, 6, tx(title), "", "L", false)
		st.set(false, 10)
		pdf.SetX(margin + indent)
		pdf.MultiCell(textW-indent, lineH, tx(it.Dosage), "", "L", false)
		var facts []string
		if it.DurationDays > 0 {
			facts = append(facts, "Durée du traitement : "+plural(it.DurationDays, "jour", "jours"))
		}
		if it.Quantity > 0 {
			facts = append(facts, "Quantité : "+plural(it.Quantity, "boîte", "boîtes"))
		}
		if it.Renewals > 0 {
			facts = append(facts, "À renouveler "+plural(it.Renewals, "fois", "fois"))
		} else {
			facts = append(facts, "Non renouvelable")
		}
		pdf.SetX(margin + indent)
		st.set(false, 9.5)
		st.color(70, 70, 70)
		pdf.MultiCell(textW-indent, lineH, tx(strings.Join(facts, " — ")), "", "L", false)
		st.color(0, 0, 0)
		if !it.Substitutable {
			pdf.SetX(margin + indent)
			st.set(true, 9.5)
			pdf.MultiCell(textW-indent, lineH, tx("Non substituable"), "", "L", false)
		}
		pdf.Ln(3)
	}

	// Free instructions.
	if d.Content.Instructions != "" {
		pdf.Ln(1)
		st.set(true, 10)
		pdf.CellFormat(textW, lineH, tx("Instructions"), "", 1, "L", false, 0, "")
		st.set(false, 10)
		pdf.MultiCell(textW, lineH, tx(d.Content.Instructions), "", "L", false)
		pdf.Ln(2)
	}

	// Validity and signature block, kept together at the end.
	const sigH = 30.0
	if pdf.GetY()+sigH+14 > 297-24 {
		pdf.AddPage()
	}
	pdf.Ln(2)
	st.set(false, 9.5)
	validity := "Ordonnance valable jusqu'au " + shortDate(d.ValidUntil) + " inclus"
	if r := d.Content.Renewals(); r > 0 {
		validity += ", renouvellements compris. Délivrance initiale puis " + plural(r, "renouvellement", "renouvellements") + " au plus"
	}
	validity += "."
	if d.Draft {
		validity = "Si elle est signée ce jour : " + strings.ToLower(validity[:1]) + validity[1:]
	}
	pdf.MultiCell(textW, lineH, tx(validity), "", "L", false)

	pdf.Ln(4)
	boxW := 92.0
	boxX := pageW - margin - boxW
	boxY := pdf.GetY()
	pdf.SetDrawColor(30, 60, 120)
	pdf.SetLineWidth(0.4)
	pdf.Rect(boxX, boxY, boxW, sigH, "D")
	pdf.SetXY(boxX+3, boxY+2)
	if d.Draft {
		st.set(true, 9.5)
		st.color(draftRed[0], draftRed[1], draftRed[2])
		pdf.CellFormat(boxW-6, lineH, tx("Non signé : brouillon"), "", 2, "L", false, 0, "")
		st.color(0, 0, 0)
		st.set(true, 10.5)
		pdf.CellFormat(boxW-6, lineH+0.5, tx(p.Name), "", 2, "L", false, 0, "")
		st.set(false, 8.5)
		pdf.MultiCell(boxW-6, 4.2, tx("La signature électronique, la date et l'heure sont apposées quand le prescripteur signe."), "", "L", false)
		return output(pdf)
	}
	st.set(true, 9.5)
	st.color(30, 60, 120)
	pdf.CellFormat(boxW-6, lineH, tx("Signé électroniquement par"), "", 2, "L", false, 0, "")
	st.color(0, 0, 0)
	st.set(true, 10.5)
	pdf.CellFormat(boxW-6, lineH+0.5, tx(p.Name), "", 2, "L", false, 0, "")
	st.set(false, 8.5)
	pdf.CellFormat(boxW-6, 4.2, tx("Le "+longDate(d.SignedAt)+" à "+d.SignedAt.In(paris).Format("15:04")+" (heure de Paris)"), "", 2, "L", false, 0, "")
	pdf.CellFormat(boxW-6, 4.2, tx("Certificat n° "+d.SignerSerial), "", 2, "L", false, 0, "")
	pdf.CellFormat(boxW-6, 4.2, tx("Émis par : "+d.Issuer), "", 2, "L", false, 0, "")
	st.set(false, 7.5)
	st.color(90, 90, 90)
	pdf.CellFormat(boxW-6, 4, tx("Signature numérique vérifiable dans tout lecteur PDF"), "", 2, "L", false, 0, "")
	return output(pdf)
}

func output(pdf *fpdf.Fpdf) ([]byte, error) {
	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		return nil, fmt.Errorf("rx: render: %w", err)
	}
	return buf.Bytes(), nil
}

// draftRed is the colour of a draft's marks.
var draftRed = [3]int{180, 20, 20}

// Draft marks: the banner across the top margin, and the watermark
// across the page.
const (
	draftBanner    = "BROUILLON — NON SIGNÉ — NON VALABLE POUR LA DÉLIVRANCE"
	draftWatermark = "BROUILLON NON VALABLE"
)

// draftMarks draws, at the start of each page of a draft, a banner in the
// top margin and a pale diagonal watermark under the page's text: a
// printed or forwarded preview cannot pass for a prescription, whichever
// page is looked at.
func draftMarks(pdf *fpdf.Fpdf, tx func(string) string) {
	x, y := pdf.GetXY()
	pdf.SetTextRenderingMode(0)

	pdf.SetFillColor(draftRed[0], draftRed[1], draftRed[2])
	pdf.Rect(margin, 6, textW, 8, "F")
	pdf.SetFont("Go", "", 10)
	pdf.SetTextColor(255, 255, 255)
	pdf.SetXY(margin, 6)
	pdf.CellFormat(textW, 8, tx(draftBanner), "", 0, "C", false, 0, "")

	// Pale enough that the text drawn over it reads as on white paper.
	pdf.SetFont("Go", "", 54)
	pdf.SetTextColor(246, 206, 206)
	w := pdf.GetStringWidth(tx(draftWatermark))
	const cx, cy = pageW / 2, 297.0 / 2
	pdf.TransformBegin()
	pdf.TransformRotate(55, cx, cy)
	pdf.Text(cx-w/2, cy+7, tx(draftWatermark))
	pdf.TransformEnd()

	pdf.SetXY(x, y)
}

// drawQR draws the QR code of payload as filled squares (crisp at any
// zoom and print resolution, and no image to encode).
func drawQR(pdf *fpdf.Fpdf, payload string, x, y, size float64) error {
	q, err := qrcode.New(payload, qrcode.Medium)
	if err != nil {
		return fmt.Errorf("rx: qr code: %w", err)
	}
	bm := q.Bitmap()
	cell := size / float64(len(bm))
	pdf.SetFillColor(0, 0, 0)
	// One rectangle per run of dark modules, extended down over the rows
	// that repeat the same run: far fewer drawing operators than one
	// square per module.
	done := make(map[[2]int]bool) // row, start of runs already drawn
	for r, row := range bm {
		for c := 0; c < len(row); {
			if !row[c] {
				c++
				continue
			}
			start := c
			for c < len(row) && row[c] {
				c++
			}
			if done[[2]int{r, start}] {
				continue
			}
			rows := 1
			for r+rows < len(bm) && sameRun(bm[r+rows], start, c) {
				done[[2]int{r + rows, start}] = true
				rows++
			}
			pdf.Rect(x+float64(start)*cell, y+float64(r)*cell, float64(c-start)*cell, float64(rows)*cell, "F")
		}
	}
	return nil
}

// sameRun reports whether row has a dark run exactly from start to end.
func sameRun(row []bool, start, end int) bool {
	if start > 0 && row[start-1] || end < len(row) && row[end] {
		return false
	}
	for i := start; i < end; i++ {
		if !row[i] {
			return false
		}
	}
	return true
}

// textStyle sets the font size, colour and weight of the text that follows.
// Bold is the regular face filled and stroked with a thin outline of the
// same colour (PDF text rendering mode 2), the way word processors make
// bold from a single face.
type textStyle struct {
	pdf     *fpdf.Fpdf
	bold    bool
	size    float64
	r, g, b int
}

// set selects the weight and size in points.
func (s *textStyle) set(bold bool, size float64) {
	s.bold, s.size = bold, size
	s.pdf.SetFont("Go", "", size)
	s.apply()
}

// color sets the text colour (and the outline colour of bold text).
func (s *textStyle) color(r, g, b int) {
	s.r, s.g, s.b = r, g, b
	s.pdf.SetTextColor(r, g, b)
	s.apply()
}

func (s *textStyle) apply() {
	if s.bold {
		// Why 1/30 of the size: heavy enough to read as bold at 8-15 pt
		// without closing the counters of small letters.
		s.pdf.SetDrawColor(s.r, s.g, s.b)
		s.pdf.SetLineWidth(s.size / 30 * 25.4 / 72)
		s.pdf.SetTextRenderingMode(2)
	} else {
		s.pdf.SetTextRenderingMode(0)
	}
}

// reapply restores the rendering mode at the top of a new page: fpdf
// restores the font and colours but not the mode.
func (s *textStyle) reapply() {
	if s.bold {
		s.pdf.SetTextRenderingMode(2)
	}
}
