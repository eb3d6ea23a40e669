package rx

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is required (apt-get install poppler-utils qpdf libnss3-tools): %v", name, err)
	}
}

// pdfsigReport is what poppler's pdfsig says about a file's signature.
type pdfsigReport struct {
	Valid, Total, Trusted bool
	Output                string
}

// runPdfsig checks a file with Debian's pdfsig. It exits 0 even for a
// broken signature, so the verdict is read from its output.
func runPdfsig(t *testing.T, path, nssdir string) pdfsigReport {
	t.Helper()
	needTool(t, "pdfsig")
	args := []string{}
	if nssdir != "" {
		args = append(args, "-nssdir", "sql:"+nssdir)
	}
	args = append(args, path)
	out, _ := exec.Command("pdfsig", args...).CombinedOutput()
	s := string(out)
	return pdfsigReport{
		Valid:   strings.Contains(s, "Signature Validation: Signature is Valid."),
		Total:   strings.Contains(s, "Total document signed") && !strings.Contains(s, "Not total document signed"),
		Trusted: strings.Contains(s, "Certificate Validation: Certificate is Trusted."),
		Output:  s,
	}
}

// nssWithCA makes an NSS database that trusts the authority's certificate.
func nssWithCA(t *testing.T, a *Authority) string {
	t.Helper()
	needTool(t, "certutil")
	dir := t.TempDir()
	if out, err := exec.Command("certutil", "-N", "-d", "sql:"+dir, "--empty-password").CombinedOutput(); err != nil {
		t.Fatalf("certutil -N: %v\n%s", err, out)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, a.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("certutil", "-A", "-d", "sql:"+dir, "-n", "teleconsult-ca", "-t", "CT,C,C", "-i", caFile).CombinedOutput(); err != nil {
		t.Fatalf("certutil -A: %v\n%s", err, out)
	}
	return dir
}

func pdfText(t *testing.T, pdf []byte) string {
	t.Helper()
	needTool(t, "pdftotext")
	path := filepath.Join(t.TempDir(), "rx.pdf")
	if err := os.WriteFile(path, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", "-enc", "UTF-8", path, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v\n%s", err, out)
	}
	return string(out)
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func sampleDocument(t testing.TB, id *SigningIdentity, a *Authority, at time.Time) Document {
	content := Content{
		Items: []Item{
			{Drug: "Amoxicilline", Strength: "500 mg", Form: "gélule", Dosage: "1 gélule matin, midi et soir pendant les repas", DurationDays: 7, Substitutable: true},
			{Drug: "Salbutamol", Strength: "100 µg/dose", Form: "suspension pour inhalation", Dosage: "2 bouffées en cas de gêne respiratoire, 4 fois par jour au maximum", Quantity: 1, Renewals: 2, Substitutable: false},
			{Drug: "Paracétamol", Strength: "1 g", Form: "comprimé effervescent", Dosage: "1 comprimé si fièvre > 38,5 °C, espacer de 6 heures", Quantity: 2, Substitutable: true},
		},
		Instructions: "Boire abondamment. Revoir un médecin si la fièvre persiste au-delà de 72 heures.",
	}
	if err := content.Validate(); err != nil {
		t.Fatal(err)
	}
	return Document{
		Number:        NewNumber(),
		AccessCode:    NewAccessCode(),
		Prescriber:    Prescriber{Name: "Dr Hélène Garçon", Specialty: "Médecine générale", RPPS: "10101234567", Address: "12 rue de l'Église\n69003 Lyon", Phone: "04 78 00 00 00", Email: "helene.garcon@example.org"},
		Patient:       Patient{Surname: "Lefèvre", FirstNames: "Éloïse Anaïs", Sex: "F", BirthDate: "1990-03-12", WeightKg: 58.5, HeightCm: 165},
		Content:       content,
		SignedAt:      at,
		ValidUntil:    content.ValidUntil(at),
		SignerSubject: id.Cert.Subject.CommonName,
		SignerSerial:  SerialHex(id.Cert),
		Issuer:        a.Cert.Subject.CommonName,
	}
}

func TestRenderAndSignVerifiesWithPdfsig(t *testing.T) {
	now := time.Now()
	a, err := NewAuthority("Téléconsultation — autorité de test", now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Issue("Dr Hélène Garçon", "10101234567", "helene.garcon@example.org", now)
	if err != nil {
		t.Fatal(err)
	}
	doc := sampleDocument(t, id, a, now)
	unsigned, err := Render(doc)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := signPDF(unsigned, id, a.Cert, "Ordonnance", now)
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, "signed.pdf", signed)
	if os.Getenv("RX_KEEP_PDF") != "" {
		os.WriteFile(os.Getenv("RX_KEEP_PDF"), signed, 0o600)
	}

	t.Run("valid and total", func(t *testing.T) {
		r := runPdfsig(t, path, "")
		if !r.Valid || !r.Total {
			t.Fatalf("pdfsig: want valid and total, got:\n%s", r.Output)
		}
	})
	t.Run("trusted with the CA", func(t *testing.T) {
		r := runPdfsig(t, path, nssWithCA(t, a))
		if !r.Valid || !r.Total || !r.Trusted {
			t.Fatalf("pdfsig with CA: want valid, total, trusted, got:\n%s", r.Output)
		}
	})
	t.Run("qpdf check", func(t *testing.T) {
		needTool(t, "qpdf")
		if out, err := exec.Command("qpdf", "--check", path).CombinedOutput(); err != nil {
			t.Fatalf("qpdf --check: %v\n%s", err, out)
		}
	})
	t.Run("tampered byte", func(t *testing.T) {
		// Change a character of the page content (inside the signed range).
		bad := bytes.Clone(signed)
		i := bytes.Index(bad, []byte("/Producer"))
		if i < 0 {
			t.Fatal("no /Producer in the PDF")
		}
		bad[i+2] ^= 0x01
		r := runPdfsig(t, writeTemp(t, "tampered.pdf", bad), "")
		if r.Valid {
			t.Fatalf("pdfsig says a tampered file is valid:\n%s", r.Output)
		}
	})
	t.Run("appended bytes", func(t *testing.T) {
		more := append(bytes.Clone(signed), []byte("\n% appended after signing\n")...)
		r := runPdfsig(t, writeTemp(t, "appended.pdf", more), "")
		if r.Total {
			t.Fatalf("pdfsig says a file with appended bytes is totally signed:\n%s", r.Output)
		}
	})
	t.Run("QR code scans", func(t *testing.T) {
		if _, err := exec.LookPath("zbarimg"); err != nil {
			t.Skip("zbarimg (zbar-tools) is not installed")
		}
		needTool(t, "pdftoppm")
		dir := t.TempDir()
		if out, err := exec.Command("pdftoppm", "-png", "-r", "150", "-f", "1", "-l", "1", path, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
			t.Fatalf("pdftoppm: %v\n%s", err, out)
		}
		pngs, _ := filepath.Glob(filepath.Join(dir, "page*.png"))
		if len(pngs) != 1 {
			t.Fatalf("pdftoppm made %v", pngs)
		}
		out, err := exec.Command("zbarimg", "--raw", "-q", pngs[0]).Output()
		if err != nil {
			t.Fatalf("zbarimg found no QR code: %v", err)
		}
		got := strings.TrimSpace(string(out))
		num, code, ok := ParseQR(got)
		if !ok || num != doc.Number || code != doc.AccessCode {
			t.Fatalf("QR code says %q; want number %s and access code %s", got, doc.Number, doc.AccessCode)
		}
	})
	t.Run("text with accents", func(t *testing.T) {
		text := pdfText(t, signed)
		for _, want := range []string{
			"Dr Hélène Garçon", "Médecine générale", "N° RPPS : 10101234567", "12 rue de l'Église", "69003 Lyon",
			"04 78 00 00 00", "helene.garcon@example.org",
			"LEFÈVRE Éloïse Anaïs", "Femme", "Née le 12/03/1990", "Poids : 58,5 kg", "Taille : 165 cm",
			"ORDONNANCE", "Amoxicilline 500 mg, gélule", "Durée du traitement : 7 jours",
			"Salbutamol 100 µg/dose", "À renouveler 2 fois", "Non substituable",
			"Paracétamol 1 g", "fièvre > 38,5 °C", "Quantité : 2 boîtes",
			"Boire abondamment", "Ordonnance valable jusqu'au " + shortDate(doc.ValidUntil),
			"Le " + longDate(now), "Signé électroniquement par",
			FormatNumber(doc.Number), FormatAccessCode(doc.AccessCode),
		} {
			if !strings.Contains(text, want) {
				t.Errorf("the PDF text lacks %q", want)
			}
		}
		if strings.Count(text, "Non substituable") != 1 {
			t.Errorf("want exactly one \"Non substituable\" (only item 2), got:\n%s", text)
		}
		if t.Failed() {
			t.Logf("PDF text:\n%s", text)
		}
	})
}
