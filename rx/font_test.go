package rx

import (
	"bytes"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// TestLatinFontKeepsEveryWindows1252Glyph checks the font program cut
// down for the fast path: each character of Windows-1252 draws exactly
// as in Go Regular, and a glyph outside it is gone.
func TestLatinFontKeepsEveryWindows1252Glyph(t *testing.T) {
	orig, err := sfnt.Parse(goregular.TTF)
	if err != nil {
		t.Fatal(err)
	}
	keep := map[sfnt.GlyphIndex]bool{0: true}
	var buf sfnt.Buffer
	var runes []rune
	for b := 0x20; b < 0x100; b++ {
		if b == 0x7f {
			continue // DEL, a control character
		}
		r := rune(b)
		if b >= 0x80 && b < 0xA0 {
			if r = cp1252High[b-0x80]; r == 0 {
				continue
			}
		}
		if got, ok := cp1252Byte(r); !ok || got != byte(b) {
			t.Errorf("cp1252Byte(%q) = %#x, %v; want %#x", r, got, ok, b)
		}
		g, err := orig.GlyphIndex(&buf, r)
		if err != nil || g == 0 {
			t.Fatalf("Go Regular has no glyph for %q", r)
		}
		keep[g] = true
		runes = append(runes, r)
	}
	program, err := subsetTrueType(goregular.TTF, keep)
	if err != nil {
		t.Fatal(err)
	}
	if len(program) >= len(goregular.TTF)*2/3 {
		t.Errorf("subset is %d bytes, the whole font %d: little was cut", len(program), len(goregular.TTF))
	}
	if checksum(program) != 0xB1B0AFBA {
		t.Errorf("whole-font checksum %#x, want 0xB1B0AFBA", checksum(program))
	}
	sub, err := sfnt.Parse(program)
	if err != nil {
		t.Fatalf("the subset does not parse: %v", err)
	}
	outline := func(f *sfnt.Font, r rune) sfnt.Segments {
		var b sfnt.Buffer
		g, err := f.GlyphIndex(&b, r)
		if err != nil {
			t.Fatal(err)
		}
		segs, err := f.LoadGlyph(&b, g, fixed.I(2048), nil)
		if err != nil {
			t.Fatalf("glyph of %q: %v", r, err)
		}
		return slices.Clone(segs)
	}
	for _, r := range runes {
		if !slices.Equal(outline(orig, r), outline(sub, r)) {
			t.Errorf("%q draws differently in the subset", r)
		}
	}
	for _, r := range []rune{'Ł', 'ş'} {
		if len(outline(orig, r)) == 0 {
			t.Fatalf("Go Regular has no outline for %q", r)
		}
		if n := len(outline(sub, r)); n != 0 {
			t.Errorf("%q still has %d segments in the subset", r, n)
		}
	}
}

func TestCP1252Encoder(t *testing.T) {
	var e cp1252Encoder
	if got := e.encode("Œdème « cœur » — l’été, 5 €"); got != "\x8cd\xe8me \xab c\x9cur \xbb \x97 l\x92\xe9t\xe9, 5 \x80" || e.lossy {
		t.Errorf("encode = %q, lossy %v", got, e.lossy)
	}
	if e.encode("Łukasz"); !e.lossy {
		t.Error("Ł has no Windows-1252 byte but the encoder is not lossy")
	}
}

// TestRenderFonts checks both ways of embedding the font: the prepared
// Windows-1252 font for French text, fpdf's UTF-8 font for a name outside
// it, both embedded and extracted as typed.
func TestRenderFonts(t *testing.T) {
	now := time.Now()
	a, err := NewAuthority("Test", now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Issue("Dr Hélène Garçon", "10101234567", "", now)
	if err != nil {
		t.Fatal(err)
	}
	french := "Œdème, cœur « repos » — l’été coûte 5 € … ½"
	for _, tc := range []struct {
		name, surname, given string
		latin                bool
	}{
		{"Windows-1252", "Lefèvre", "Éloïse Anaïs", true},
		{"UTF-8", "Nguyễn", "Łukasz Şahin", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := sampleDocument(t, id, a, now)
			doc.Patient.Surname, doc.Patient.FirstNames = tc.surname, tc.given
			doc.Content.Instructions = french
			// Enough items for a second page: the footer's page count
			// is filled in on every page.
			for len(doc.Content.Items) < maxItems {
				doc.Content.Items = append(doc.Content.Items, doc.Content.Items[len(doc.Content.Items)%3])
			}
			pdf, err := Render(doc)
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.Contains(pdf, []byte("/BaseFont /"+latinFontName)); got != tc.latin {
				t.Errorf("prepared Windows-1252 font used: %v, want %v", got, tc.latin)
			}
			if !bytes.Contains(pdf, []byte("/FontFile2 ")) {
				t.Error("the font is not embedded")
			}
			text := pdfText(t, pdf)
			for _, want := range []string{strings.ToUpper(tc.surname) + " " + tc.given, french, "Ordonnance n° " + FormatNumber(doc.Number)} {
				if !strings.Contains(text, want) {
					t.Errorf("the PDF text lacks %q:\n%s", want, text)
				}
			}
			pages := regexp.MustCompile(`Page (\d+)/(\d+)`).FindAllStringSubmatch(text, -1)
			if len(pages) < 2 {
				t.Fatalf("want several pages, got %d page footers:\n%s", len(pages), text)
			}
			for i, m := range pages {
				if m[1] != strconv.Itoa(i+1) || m[2] != strconv.Itoa(len(pages)) {
					t.Errorf("footer of page %d says %q", i+1, m[0])
				}
			}
		})
	}
}

// TestRenderConcurrently draws one prescription from several goroutines
// at once: they share the prepared font, and each must get the document
// a lone call gets.
func TestRenderConcurrently(t *testing.T) {
	now := time.Now()
	a, err := NewAuthority("Test", now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.Issue("Dr Hélène Garçon", "10101234567", "", now)
	if err != nil {
		t.Fatal(err)
	}
	doc := sampleDocument(t, id, a, now)
	want, err := Render(doc)
	if err != nil {
		t.Fatal(err)
	}
	got := make([][]byte, 8)
	errs := make([]error, len(got))
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i], errs[i] = Render(doc) })
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(got[i], want) {
			t.Fatalf("render %d differs from a lone render (%d and %d bytes)", i, len(got[i]), len(want))
		}
	}
}
