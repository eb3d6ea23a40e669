package rx

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// Why two ways to embed the font: fpdf's UTF-8 fonts are parsed,
// fingerprinted, subset and compressed again for every document, most of
// the CPU time a prescription takes. Nearly every French prescription is
// written in Windows-1252 (accents, œ, €, «», ’, —, µ, °), so the fast
// path embeds Go Regular as a simple TrueType font with that encoding,
// prepared once per process: cut down to the glyphs the encoding reaches
// and compressed once. fpdf then copies the prepared bytes into each
// document. Text with any other character (a patient named Łukasz or
// Nguyễn) is drawn with the UTF-8 font as before.

// cp1252High maps the code points of Windows-1252 bytes 0x80-0x9F; bytes
// 0x00-0x7F and 0xA0-0xFF are the same code points as in Unicode.
var cp1252High = [32]rune{
	'€', 0, '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 0, 'Ž', 0,
	0, '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', 0, 'ž', 'Ÿ',
}

// cp1252Byte is the Windows-1252 byte of r.
func cp1252Byte(r rune) (byte, bool) {
	switch {
	case r < 0x80 || r >= 0xA0 && r <= 0xFF:
		return byte(r), true
	}
	for i, c := range cp1252High {
		if c == r && c != 0 {
			return byte(0x80 + i), true
		}
	}
	return 0, false
}

// cp1252Encoder turns UTF-8 text into Windows-1252 bytes and remembers
// whether some character had no byte.
type cp1252Encoder struct {
	lossy bool
	buf   []byte
}

func (e *cp1252Encoder) encode(s string) string {
	e.buf = e.buf[:0]
	for _, r := range s {
		b, ok := cp1252Byte(r)
		if !ok {
			e.lossy = true
			b = '?'
		}
		e.buf = append(e.buf, b)
	}
	return string(e.buf)
}

// latinFont is Go Regular prepared for fpdf's AddFontFromBytes: the font
// definition (JSON) and the zlib-compressed font program.
type latinFont struct {
	def, file []byte
}

// loadLatinFont prepares the font once per process; the result is never
// modified afterwards, so documents rendered at the same time share it.
var loadLatinFont = sync.OnceValues(func() (latinFont, error) {
	return prepareLatinFont(goregular.TTF)
})

// latinFontName is the font's PostScript name with a subset tag.
const latinFontName = "RXCPAA+GoRegular"

// prepareLatinFont builds the Windows-1252 font definition and the font
// program of ttf cut down to the glyphs that encoding reaches.
func prepareLatinFont(ttf []byte) (latinFont, error) {
	f, err := sfnt.Parse(ttf)
	if err != nil {
		return latinFont{}, fmt.Errorf("rx: font: %w", err)
	}
	var buf sfnt.Buffer
	upem := int(f.UnitsPerEm())
	ppem := fixed.I(upem) // one pixel per font unit: metrics come out in font units
	scale := func(v fixed.Int26_6) int { return int(math.Round(float64(v) / 64 * 1000 / float64(upem))) }

	keep := map[sfnt.GlyphIndex]bool{0: true} // .notdef
	notdef, err := f.GlyphAdvance(&buf, 0, ppem, font.HintingNone)
	if err != nil {
		return latinFont{}, fmt.Errorf("rx: font: %w", err)
	}
	widths := make([]int, 256)
	for b := range widths {
		r := rune(b)
		if b >= 0x80 && b < 0xA0 {
			r = cp1252High[b-0x80]
		}
		widths[b] = scale(notdef)
		if r == 0 || b < 0x20 {
			continue
		}
		g, err := f.GlyphIndex(&buf, r)
		if err != nil || g == 0 {
			continue
		}
		adv, err := f.GlyphAdvance(&buf, g, ppem, font.HintingNone)
		if err != nil {
			return latinFont{}, fmt.Errorf("rx: font: %w", err)
		}
		widths[b] = scale(adv)
		keep[g] = true
	}
	m, err := f.Metrics(&buf, ppem, font.HintingNone)
	if err != nil {
		return latinFont{}, fmt.Errorf("rx: font: %w", err)
	}
	bounds, err := f.Bounds(&buf, ppem, font.HintingNone)
	if err != nil {
		return latinFont{}, fmt.Errorf("rx: font: %w", err)
	}
	post := f.PostTable()

	program, err := subsetTrueType(ttf, keep)
	if err != nil {
		return latinFont{}, fmt.Errorf("rx: font: %w", err)
	}
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	zw.Write(program)
	if err := zw.Close(); err != nil {
		return latinFont{}, fmt.Errorf("rx: font: %w", err)
	}

	type box struct{ Xmin, Ymin, Xmax, Ymax int }
	type desc struct {
		Ascent, Descent, CapHeight, Flags int
		FontBBox                          box
		ItalicAngle, StemV, MissingWidth  int
	}
	def := struct {
		Tp, Name     string
		Desc         desc
		Up, Ut       int
		Cw           []int
		Enc, Diff    string
		File         string
		OriginalSize int
	}{
		Tp:   "TrueType",
		Name: latinFontName,
		Desc: desc{
			Ascent:    scale(m.Ascent),
			Descent:   -scale(m.Descent),
			CapHeight: scale(m.CapHeight),
			Flags:     32, // nonsymbolic: the glyphs are reached through WinAnsiEncoding
			// Font units have y up, fixed.Rectangle26_6 has y down.
			FontBBox:     box{scale(bounds.Min.X), -scale(bounds.Max.Y), scale(bounds.Max.X), -scale(bounds.Min.Y)},
			ItalicAngle:  int(post.ItalicAngle),
			StemV:        70, // a regular weight, as fpdf's makefont says
			MissingWidth: scale(notdef),
		},
		Up:           int(post.UnderlinePosition) * 1000 / upem,
		Ut:           int(post.UnderlineThickness) * 1000 / upem,
		Cw:           widths,
		Enc:          "cp1252",
		File:         "goregular-cp1252.z",
		OriginalSize: len(program),
	}
	js, err := json.Marshal(def)
	if err != nil {
		return latinFont{}, fmt.Errorf("rx: font: %w", err)
	}
	return latinFont{def: js, file: z.Bytes()}, nil
}

// subsetTrueType returns ttf with every glyph outside keep emptied. Glyph numbers do not move, so
// cmap, hmtx and the other tables stay valid as they are; only glyf, loca
// (rewritten in the long format), head and post (without glyph names)
// change.
func subsetTrueType(ttf []byte, keep map[sfnt.GlyphIndex]bool) ([]byte, error) {
	if len(ttf) < 12 {
		return nil, errors.New("truncated font")
	}
	type table struct {
		tag  string
		data []byte
	}
	n := int(binary.BigEndian.Uint16(ttf[4:]))
	if len(ttf) < 12+16*n {
		return nil, errors.New("truncated table directory")
	}
	tables := make([]table, n)
	byTag := map[string]int{}
	for i := range n {
		rec := ttf[12+16*i:]
		off, length := binary.BigEndian.Uint32(rec[8:]), binary.BigEndian.Uint32(rec[12:])
		if uint64(off)+uint64(length) > uint64(len(ttf)) {
			return nil, errors.New("table out of range")
		}
		tables[i] = table{string(rec[:4]), ttf[off : off+length]}
		byTag[tables[i].tag] = i
	}
	hi, ok1 := byTag["head"]
	li, ok2 := byTag["loca"]
	gi, ok3 := byTag["glyf"]
	mi, ok4 := byTag["maxp"]
	if !ok1 || !ok2 || !ok3 || !ok4 || len(tables[hi].data) < 54 || len(tables[mi].data) < 6 {
		return nil, errors.New("not a TrueType-outline font")
	}
	head, loca, glyf := tables[hi].data, tables[li].data, tables[gi].data
	numGlyphs := int(binary.BigEndian.Uint16(tables[mi].data[4:]))
	long := binary.BigEndian.Uint16(head[50:]) == 1
	entry := 2
	if long {
		entry = 4
	}
	if len(loca) < (numGlyphs+1)*entry {
		return nil, errors.New("truncated loca")
	}
	glyph := func(g int) ([]byte, error) {
		var a, b uint32
		if long {
			a, b = binary.BigEndian.Uint32(loca[4*g:]), binary.BigEndian.Uint32(loca[4*g+4:])
		} else {
			a, b = 2*uint32(binary.BigEndian.Uint16(loca[2*g:])), 2*uint32(binary.BigEndian.Uint16(loca[2*g+2:]))
		}
		if a > b || int(b) > len(glyf) {
			return nil, fmt.Errorf("glyph %d out of range", g)
		}
		return glyf[a:b], nil
	}

	var newGlyf []byte
	newLoca := make([]byte, 4*(numGlyphs+1))
	for g := range numGlyphs {
		binary.BigEndian.PutUint32(newLoca[4*g:], uint32(len(newGlyf)))
		if !keep[sfnt.GlyphIndex(g)] {
			continue
		}
		data, err := glyph(g)
		if err != nil {
			return nil, err
		}
		if len(data) >= 2 && int16(binary.BigEndian.Uint16(data)) < 0 {
			// Go Regular has none; another font would need the
			// components kept too.
			return nil, fmt.Errorf("glyph %d is a composite glyph", g)
		}
		newGlyf = append(newGlyf, data...)
		for len(newGlyf)%4 != 0 {
			newGlyf = append(newGlyf, 0)
		}
	}
	binary.BigEndian.PutUint32(newLoca[4*numGlyphs:], uint32(len(newGlyf)))
	newHead := bytes.Clone(head)
	binary.BigEndian.PutUint32(newHead[8:], 0) // checkSumAdjustment, set below
	binary.BigEndian.PutUint16(newHead[50:], 1)
	tables[hi].data, tables[li].data, tables[gi].data = newHead, newLoca, newGlyf
	if pi, ok := byTag["post"]; ok && len(tables[pi].data) >= 32 {
		// Glyph names are not needed: the text is drawn through
		// WinAnsiEncoding and the cmap. Version 3 keeps the metrics only.
		post := bytes.Clone(tables[pi].data[:32])
		binary.BigEndian.PutUint32(post, 0x00030000)
		tables[pi].data = post
	}

	// Write the tables in tag order, each 4-byte aligned, with checksums.
	sort.Slice(tables, func(i, j int) bool { return tables[i].tag < tables[j].tag })
	out := bytes.Clone(ttf[:12])
	dir := make([]byte, 16*n)
	out = append(out, dir...)
	headAt := 0
	for i, t := range tables {
		rec := out[12+16*i:]
		copy(rec, t.tag)
		binary.BigEndian.PutUint32(rec[4:], checksum(t.data))
		binary.BigEndian.PutUint32(rec[8:], uint32(len(out)))
		binary.BigEndian.PutUint32(rec[12:], uint32(len(t.data)))
		if t.tag == "head" {
			headAt = len(out)
		}
		out = append(out, t.data...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	binary.BigEndian.PutUint32(out[headAt+8:], 0xB1B0AFBA-checksum(out))
	return out, nil
}

// checksum is the TrueType table checksum: the sum of big-endian uint32s,
// the last one zero-padded.
func checksum(b []byte) uint32 {
	var sum uint32
	for len(b) >= 4 {
		sum += binary.BigEndian.Uint32(b)
		b = b[4:]
	}
	if len(b) > 0 {
		var last [4]byte
		copy(last[:], b)
		sum += binary.BigEndian.Uint32(last[:])
	}
	return sum
}
