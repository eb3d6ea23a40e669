// Package web serves the pages of the service: HTML shells rendered from
// templates with the strings of the visitor's language, a stylesheet and
// one JavaScript module per page that talks to the JSON API. Everything is
// embedded in the binary; nothing is loaded from another origin.
//
// A page is a template in templates/pages wrapped by templates/layout.html.
// Its module (static/js/<module>.js) reads the session through
// GET /api/v1/me and fetches what it shows.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
)

//go:embed templates static i18n
var embedded embed.FS

// Config is what the site is told from outside.
type Config struct {
	// BaseURL is the public URL of the service (https://consult.example.org);
	// it fixes the host the pages may open WebSockets to.
	BaseURL string
	// DevMode reads templates, catalogues and static files from ./web on
	// disk at each request, so that edits show without a rebuild, and turns
	// off caching of static files.
	DevMode bool
	// Log receives rendering errors; nil means slog.Default().
	Log *slog.Logger
	// SignalOrigins, when set, returns the ws(s)://host origins of every
	// live node's signalling (several nodes share one database): the pages
	// may open sockets to them too.
	SignalOrigins func() []string
}

// Site renders the pages.
type Site struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex // guards assets in DevMode, where they are reloaded
	assets *assets
}

// assets is one consistent load of the templates, catalogues and static
// files, with the version that names the static files in URLs.
type assets struct {
	fsys      fs.FS
	pages     map[string]*template.Template
	catalogue *Catalogue
	version   string
}

// New loads and checks the templates and catalogues.
func New(cfg Config) (*Site, error) {
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	s := &Site{cfg: cfg, log: cfg.Log}
	if s.log == nil {
		s.log = slog.Default()
	}
	a, err := s.load()
	if err != nil {
		return nil, err
	}
	s.assets = a
	return s, nil
}

func (s *Site) source() fs.FS {
	if s.cfg.DevMode {
		return os.DirFS("web")
	}
	return embedded
}

// load parses every page template (each with the layout) and the
// catalogues, and computes the static files' version.
func (s *Site) load() (*assets, error) {
	fsys := s.source()
	cat, err := LoadCatalogue(fsys, "i18n")
	if err != nil {
		return nil, err
	}
	layout, err := fs.ReadFile(fsys, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	names, err := fs.Glob(fsys, "templates/pages/*.html")
	if err != nil {
		return nil, err
	}
	pages := make(map[string]*template.Template, len(names))
	for _, n := range names {
		body, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
		name := strings.TrimSuffix(path.Base(n), ".html")
		t, err := template.New("layout").Parse(string(layout))
		if err == nil {
			_, err = t.New(name).Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		pages[name] = t
	}
	version, err := staticVersion(fsys)
	if err != nil {
		return nil, err
	}
	return &assets{fsys: fsys, pages: pages, catalogue: cat, version: version}, nil
}

// staticVersion hashes every static file, so that a new build gets new
// URLs and browsers may cache a version forever.
func staticVersion(fsys fs.FS) (string, error) {
	var files []string
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("web: %w", err)
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// current returns the assets to use for one request: reloaded from disk
// in DevMode.
func (s *Site) current() (*assets, error) {
	if !s.cfg.DevMode {
		return s.assets, nil
	}
	a, err := s.load()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.assets = a
	s.mu.Unlock()
	return a, nil
}

// page describes one page: its template, its script module, the title
// key in the catalogue, and whether it frames documents of this site
// (the call page shows the draft prescription's PDF).
type page struct {
	template string
	module   string
	title    string
	frames   bool
}

// Routes registers the page routes, the language switch and the static
// files on mux.
func (s *Site) Routes(mux *http.ServeMux) {
	pages := map[string]page{
		"GET /{$}":                   {"home", "home", "home.title", false},
		"GET /login":                 {"login", "login", "login.title", false},
		"GET /signup":                {"signup", "login", "signup.title", false},
		"GET /search":                {"search", "search", "search.title", false},
		"GET /practitioners/{id}":    {"practitioner", "practitioner", "practitioner.title", false},
		"GET /appointments":          {"appointments", "appointments", "appointments.title", false},
		"GET /appointments/{id}":     {"appointment", "appointment", "appointment.title", false},
		"GET /consult/{id}":          {"consult", "consult", "consult.title", true},
		"GET /prescriptions":         {"prescriptions", "prescriptions", "prescriptions.title", false},
		"GET /account":               {"account", "account", "account.title", false},
		"GET /pro/agenda":            {"agenda", "agenda", "agenda.title", false},
		"GET /pro/appointments/{id}": {"pro-appointment", "pro-appointment", "proappt.title", false},
		"GET /pro/settings":          {"settings", "settings", "settings.title", false},
		"GET /pro/dashboard":         {"dashboard", "dashboard", "dashboard.title", false},
		// Stripe's Connect onboarding comes back here (payments' return URL).
		"GET /settings/payouts": {"dashboard", "dashboard", "dashboard.title", false},
		"GET /pharmacy":         {"pharmacy", "pharmacy", "pharmacy.title", false},
		"GET /admin":            {"admin", "admin", "admin.title", false},
	}
	for pattern, p := range pages {
		mux.Handle(pattern, s.pageHandler(p))
	}
	mux.HandleFunc("GET /lang", s.switchLanguage)
	mux.HandleFunc("GET /static/{version}/{file...}", s.serveStatic)
	mux.HandleFunc("GET /favicon.ico", s.favicon)
}

// pageData is what a page template sees.
type pageData struct {
	L       Localizer
	Title   string
	Module  string
	Static  string // URL prefix of the static files, with the version
	Path    string // request path, to come back after switching language
	ID      string // the {id} of the route, if any
	Langs   []string
	Strings template.JS // the catalogue of the language, as JSON
}

func (s *Site) pageHandler(p page) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := s.current()
		if err != nil {
			s.log.Error("web: load", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		t, ok := a.pages[p.template]
		if !ok {
			s.log.Error("web: no template", "template", p.template)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		loc := a.catalogue.Negotiate(r)
		strs, err := a.catalogue.JSON(loc.Lang)
		if err != nil {
			s.log.Error("web: catalogue", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		data := pageData{
			L: loc, Title: loc.T(p.title), Module: p.module,
			Static: "/static/" + a.version, Path: r.URL.RequestURI(),
			ID: r.PathValue("id"), Langs: a.catalogue.Languages(), Strings: template.JS(strs),
		}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
			s.log.Error("web: render", "template", p.template, "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		s.pageHeaders(w, r, p.frames)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Language", loc.Lang)
		w.Header().Add("Vary", "Accept-Language, Cookie")
		w.Write(buf.Bytes())
	})
}

// pageHeaders sets the page's security headers over the API's defaults:
// no inline script or style at all, media and WebSockets to this host only,
// and frames of this site only on the pages that need them.
func (s *Site) pageHeaders(w http.ResponseWriter, r *http.Request, frames bool) {
	host := r.Host
	if u, err := url.Parse(s.cfg.BaseURL); err == nil && u.Host != "" {
		host = u.Host
	}
	var extraOrigins string
	if s.cfg.SignalOrigins != nil {
		for _, o := range s.cfg.SignalOrigins() {
			if !strings.ContainsAny(o, " ;,'") { // an origin, nothing that could change the policy
				extraOrigins += " " + o
			}
		}
	}
	frameSrc := "'none'"
	if frames {
		frameSrc = "'self'"
	}
	csp := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
		"media-src 'self' blob:; font-src 'self'; object-src 'none'; worker-src 'self'; " +
		"connect-src 'self' ws://" + host + " wss://" + host + extraOrigins + "; " +
		"frame-src " + frameSrc + "; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), geolocation=(self), interest-cohort=()")
}

// switchLanguage remembers the chosen language in a cookie for a year and
// goes back to the page the visitor was on (on this site only).
func (s *Site) switchLanguage(w http.ResponseWriter, r *http.Request) {
	a, err := s.current()
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	lang := r.URL.Query().Get("lang")
	if !a.catalogue.Has(lang) {
		http.Error(w, "unknown language", http.StatusBadRequest)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: LangCookie, Value: lang, Path: "/", MaxAge: 365 * 24 * 3600, HttpOnly: true,
		Secure: strings.HasPrefix(s.cfg.BaseURL, "https://"), SameSite: http.SameSiteLaxMode,
	})
	next := r.URL.Query().Get("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		next = "/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// Why "immutable" for a year: the URL carries the hash of every static
// file, so a changed file is a new URL.
const staticCacheControl = "public, max-age=31536000, immutable"

func (s *Site) serveStatic(w http.ResponseWriter, r *http.Request) {
	a, err := s.current()
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	file := r.PathValue("file")
	if !fs.ValidPath(file) || strings.HasPrefix(path.Base(file), ".") {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(a.fsys, "static/"+file)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType(file))
	h.Set("X-Content-Type-Options", "nosniff")
	switch {
	case s.cfg.DevMode || r.PathValue("version") != a.version:
		// An old or unknown version: serve what we have, but never let it
		// be cached under that name.
		h.Set("Cache-Control", "no-cache")
	default:
		h.Set("Cache-Control", staticCacheControl)
	}
	w.Write(b)
}

func (s *Site) favicon(w http.ResponseWriter, r *http.Request) {
	a, err := s.current()
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/static/"+a.version+"/img/icon.svg", http.StatusMovedPermanently)
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".json":
		return "application/json; charset=utf-8"
	case ".png":
		return "image/png"
	case ".woff2":
		return "font/woff2"
	}
	return "application/octet-stream"
}
