package rx

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"teleconsult/problem"
)

// The prescriber previews a draft as a PDF: what signing now would print,
// but with no number, access code, QR code or signature, and every page
// saying it is a draft not valid for dispensing. Nobody else may preview
// it, and once signed the preview is refused.
func TestPreviewOfADraft(t *testing.T) {
	w := newWorld(t)
	c := sampleContent()
	// Enough items for a second page.
	for i := range 12 {
		c.Items = append(c.Items, Item{Drug: fmt.Sprintf("Médicament %d", i+3), Dosage: "1 comprimé le soir", DurationDays: 10, Substitutable: true})
	}
	draft, err := w.svc.Create(ctx, w.practitioner, w.appointment.ID, c)
	if err != nil {
		t.Fatal(err)
	}
	pdf, err := w.svc.Preview(ctx, w.practitioner, draft.ID)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("RX_KEEP_PREVIEW") != "" {
		os.WriteFile(os.Getenv("RX_KEEP_PREVIEW"), pdf, 0o600)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Fatalf("the preview is not a PDF: %.20q", pdf)
	}
	if bytes.Contains(pdf, []byte("/ByteRange")) || bytes.Contains(pdf, []byte("/Type /Sig")) {
		t.Error("the preview carries a signature")
	}
	text := pdfText(t, pdf)
	pages := strings.Split(strings.TrimRight(text, "\f"), "\f")
	if len(pages) < 2 {
		t.Fatalf("want at least 2 pages, got %d:\n%s", len(pages), text)
	}
	for i, page := range pages {
		for _, want := range []string{"BROUILLON — NON SIGNÉ — NON VALABLE POUR LA DÉLIVRANCE", "Brouillon non valable — LEFÈVRE Éloïse"} {
			if !strings.Contains(page, want) {
				t.Errorf("page %d lacks %q:\n%s", i+1, want, page)
			}
		}
	}
	for _, want := range []string{"Dr Hélène Garçon", "N° RPPS : 10101234567", "LEFÈVRE Éloïse", "Née le 12/03/1990",
		"Amoxicilline 500 mg, gélule", "Salbutamol 100 µg/dose", "Médicament 14", "Revoir un médecin",
		"Non signé : brouillon", "Si elle est signée ce jour : ordonnance valable jusqu'au " + shortDate(c.ValidUntil(w.clock.now()))} {
		if !strings.Contains(text, want) {
			t.Errorf("the preview lacks %q", want)
		}
	}
	for _, not := range []string{"Signé électroniquement", "Code d'accès :", "Certificat n°", "Ordonnance n°", "RX-"} {
		if strings.Contains(text, not) {
			t.Errorf("the preview says %q, as only a signed prescription may", not)
		}
	}
	if t.Failed() {
		t.Logf("preview text:\n%s", text)
	}
	// The banner is drawn, not only written: red across the top of each page.
	needTool(t, "pdftoppm")
	dir := t.TempDir()
	path := filepath.Join(dir, "preview.pdf")
	if err := os.WriteFile(path, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("pdftoppm", "-png", "-r", "50", path, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v\n%s", err, out)
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "page*.png"))
	if len(pngs) != len(pages) {
		t.Fatalf("pdftoppm made %d pages, want %d", len(pngs), len(pages))
	}
	for _, f := range pngs {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
		// 50 dpi: the banner spans 6-14 mm from the top, about rows 12-27;
		// its left end, 18 mm in, is column 35.
		r, g, b, _ := img.At(40, 16).RGBA()
		if r>>8 < 150 || g>>8 > 60 || b>>8 > 60 {
			t.Errorf("%s: the banner is not red at its left end: rgb(%d,%d,%d)", filepath.Base(f), r>>8, g>>8, b>>8)
		}
	}

	// Only the prescriber: others get what a missing prescription gets.
	other := w.newPractitioner("Dr Autre", "10109999999")
	pharmacist := w.account(rolePharmacist, "Pharmacien")
	for name, who := range map[string]Caller{"another practitioner": other, "the patient": w.patient, "a pharmacist": pharmacist} {
		if _, err := w.svc.Preview(ctx, who, draft.ID); problem.KindOf(err) != problem.NotFound {
			t.Errorf("%s previews the draft: %v", name, err)
		}
	}
	if _, err := w.svc.Preview(ctx, w.practitioner, "00000000-0000-0000-0000-000000000000"); problem.KindOf(err) != problem.NotFound {
		t.Errorf("preview of a missing prescription: %v", err)
	}

	if _, err := w.svc.Sign(ctx, w.practitioner, draft.ID); err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.Preview(ctx, w.practitioner, draft.ID)
	wantKind(t, err, problem.Conflict, "prescription_signed")
}
