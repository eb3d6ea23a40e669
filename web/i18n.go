package web

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
)

// LangCookie remembers the language the visitor chose.
const LangCookie = "tc_lang"

// DefaultLanguage is used when neither the cookie nor Accept-Language
// names a language the catalogue has.
const DefaultLanguage = "fr"

// Catalogue holds every string of the interface, per language. Each
// language is one file, i18n/<lang>.json, a flat object of key -> text;
// adding a language is adding a file.
type Catalogue struct {
	langs   []string
	strings map[string]map[string]string
	json    map[string]string
}

// LoadCatalogue reads every <lang>.json in dir of fsys. Every language
// must have exactly the keys of the default language, so that no page
// shows a raw key.
func LoadCatalogue(fsys fs.FS, dir string) (*Catalogue, error) {
	files, err := fs.Glob(fsys, dir+"/*.json")
	if err != nil {
		return nil, err
	}
	c := &Catalogue{strings: map[string]map[string]string{}, json: map[string]string{}}
	for _, f := range files {
		lang := strings.TrimSuffix(path.Base(f), ".json")
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("web: catalogue %s: %w", lang, err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("web: catalogue %s: %w", lang, err)
		}
		// Re-encode: json.Marshal escapes <, > and &, so the result is
		// safe inside a <script type="application/json"> data block.
		enc, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		c.langs = append(c.langs, lang)
		c.strings[lang] = m
		c.json[lang] = string(enc)
	}
	sort.Strings(c.langs)
	def, ok := c.strings[DefaultLanguage]
	if !ok {
		return nil, fmt.Errorf("web: catalogue: no %s.json", DefaultLanguage)
	}
	for _, lang := range c.langs {
		for k := range def {
			if _, ok := c.strings[lang][k]; !ok {
				return nil, fmt.Errorf("web: catalogue %s: missing key %q", lang, k)
			}
		}
		for k := range c.strings[lang] {
			if _, ok := def[k]; !ok {
				return nil, fmt.Errorf("web: catalogue %s: key %q is not in %s.json", lang, k, DefaultLanguage)
			}
		}
	}
	return c, nil
}

// Languages lists the catalogue's languages, sorted.
func (c *Catalogue) Languages() []string { return c.langs }

// Has reports whether lang is one of the catalogue's languages.
func (c *Catalogue) Has(lang string) bool { _, ok := c.strings[lang]; return ok }

// JSON returns the strings of lang as a JSON object.
func (c *Catalogue) JSON(lang string) (string, error) {
	s, ok := c.json[lang]
	if !ok {
		return "", fmt.Errorf("web: no catalogue for %q", lang)
	}
	return s, nil
}

// Negotiate picks the request's language: the cookie when it names a
// known language, else the best match of Accept-Language, else the default.
func (c *Catalogue) Negotiate(r *http.Request) Localizer {
	if ck, err := r.Cookie(LangCookie); err == nil && c.Has(ck.Value) {
		return c.Localizer(ck.Value)
	}
	return c.Localizer(c.match(r.Header.Get("Accept-Language")))
}

// match returns the catalogue language that Accept-Language prefers most.
func (c *Catalogue) match(header string) string {
	best, bestQ := DefaultLanguage, 0.0
	for _, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if c.Has(base) && q > bestQ {
			best, bestQ = base, q
		}
	}
	return best
}

// Localizer returns the strings of one language.
func (c *Catalogue) Localizer(lang string) Localizer {
	return Localizer{Lang: lang, strings: c.strings[lang]}
}

// Localizer translates keys into one language.
type Localizer struct {
	Lang    string
	strings map[string]string
}

// T returns the text of key; a missing key shows as itself, which the
// catalogue check at load time makes rare.
func (l Localizer) T(key string) string {
	if s, ok := l.strings[key]; ok {
		return s
	}
	return key
}
