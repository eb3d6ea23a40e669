package web

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

func newSite(t *testing.T) *http.ServeMux {
	t.Helper()
	s, err := New(Config{BaseURL: "https://consult.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Routes(mux)
	return mux
}

func get(t *testing.T, h http.Handler, path string, header map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

var pagePaths = []string{
	"/", "/login", "/signup", "/search?specialty=x", "/practitioners/abc", "/appointments",
	"/appointments/abc", "/consult/abc", "/prescriptions", "/account", "/pro/agenda",
	"/pro/appointments/abc", "/pro/settings", "/pro/dashboard", "/settings/payouts?onboarding=done", "/pharmacy", "/admin",
}

// Every page renders in every language, with the page's strict CSP, and
// holds no inline script or style that the CSP would block.
func TestPagesRenderWithStrictCSP(t *testing.T) {
	mux := newSite(t)
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>`)
	for _, lang := range []string{"fr", "en"} {
		for _, p := range pagePaths {
			res := get(t, mux, p, map[string]string{"Accept-Language": lang})
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 {
				t.Fatalf("%s %s: status %d", lang, p, res.StatusCode)
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "script-src 'self';", "style-src 'self';", "frame-ancestors 'none'", "base-uri 'none'", "connect-src 'self' ws://consult.example.org wss://consult.example.org;"} {
				if !strings.Contains(csp, want) {
					t.Errorf("%s: CSP %q lacks %q", p, csp, want)
				}
			}
			// Only the call page frames a document: the site's own
			// draft prescription preview.
			frames := "frame-src 'none';"
			if strings.HasPrefix(p, "/consult/") {
				frames = "frame-src 'self';"
			}
			if !strings.Contains(csp, frames) || !strings.Contains(csp, "object-src 'none'") {
				t.Errorf("%s: CSP %q, want %s and object-src 'none'", p, csp, frames)
			}
			if res.Header.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("%s: Referrer-Policy %q", p, res.Header.Get("Referrer-Policy"))
			}
			if !strings.Contains(res.Header.Get("Permissions-Policy"), "camera=(self)") {
				t.Errorf("%s: Permissions-Policy %q", p, res.Header.Get("Permissions-Policy"))
			}
			html := string(body)
			if !strings.Contains(html, `<html lang="`+lang+`">`) {
				t.Errorf("%s %s: not in %s", lang, p, lang)
			}
			for _, tag := range inlineScript.FindAllString(html, -1) {
				if !strings.Contains(tag, `src="/static/`) && !strings.Contains(tag, `type="application/json"`) {
					t.Errorf("%s: inline script %s", p, tag)
				}
			}
			if strings.Contains(html, " style=") || strings.Contains(html, "<style") {
				t.Errorf("%s: inline style", p)
			}
			if strings.Contains(html, "http://") || strings.Contains(html, "https://") {
				t.Errorf("%s: absolute URL in page (another origin?)", p)
			}
		}
	}
}

// The visitor's language comes from the cookie, else Accept-Language,
// else French.
func TestLanguageNegotiation(t *testing.T) {
	mux := newSite(t)
	cases := []struct {
		header map[string]string
		want   string
	}{
		{map[string]string{}, "fr"},
		{map[string]string{"Accept-Language": "en-GB,en;q=0.9"}, "en"},
		{map[string]string{"Accept-Language": "de-DE,de;q=0.9,en;q=0.5,fr;q=0.4"}, "en"},
		{map[string]string{"Accept-Language": "de-DE"}, "fr"},
		{map[string]string{"Accept-Language": "en", "Cookie": LangCookie + "=fr"}, "fr"},
		{map[string]string{"Cookie": LangCookie + "=en"}, "en"},
		{map[string]string{"Cookie": LangCookie + "=xx", "Accept-Language": "en"}, "en"},
	}
	for _, c := range cases {
		res := get(t, mux, "/login", c.header)
		if got := res.Header.Get("Content-Language"); got != c.want {
			t.Errorf("%v: language %s, want %s", c.header, got, c.want)
		}
	}
}

// The switch remembers the language and goes back to a page of this site
// only, never elsewhere.
func TestSwitchLanguage(t *testing.T) {
	mux := newSite(t)
	res := get(t, mux, "/lang?lang=en&next=/search?place=Lyon", nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/search?place=Lyon" {
		t.Fatalf("status %d location %q", res.StatusCode, res.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == LangCookie {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != "en" || !cookie.Secure {
		t.Fatalf("cookie %+v", cookie)
	}
	for _, next := range []string{"//evil.example", "https://evil.example", "/\\evil.example", "javascript:alert(1)"} {
		res := get(t, mux, "/lang?lang=fr&next="+next, nil)
		if loc := res.Header.Get("Location"); loc != "/" {
			t.Errorf("next=%s: redirected to %q", next, loc)
		}
	}
	if res := get(t, mux, "/lang?lang=xx", nil); res.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown language: status %d", res.StatusCode)
	}
}

// Static files of the current version are cached for good; any other
// version is served but never cached; paths cannot leave static/.
func TestStaticCaching(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Routes(mux)
	v := s.assets.version
	res := get(t, mux, "/static/"+v+"/js/api.js", nil)
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != staticCacheControl || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("api.js: %d %q %q", res.StatusCode, res.Header.Get("Cache-Control"), res.Header.Get("Content-Type"))
	}
	res = get(t, mux, "/static/old/css/app.css", nil)
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("old version: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	for _, p := range []string{"/static/" + v + "/../web.go", "/static/" + v + "/js/nope.js", "/static/" + v + "/%2e%2e/i18n/fr.json"} {
		if res := get(t, mux, p, nil); res.StatusCode == 200 {
			t.Errorf("%s: served", p)
		}
	}
}

// Every string the templates and scripts ask for is in the catalogue, so
// that no page shows a raw key; and every script a page or module loads
// exists.
func TestCatalogueCoversEveryString(t *testing.T) {
	cat, err := LoadCatalogue(embedded, "i18n")
	if err != nil {
		t.Fatal(err)
	}
	var en map[string]string
	b, _ := fs.ReadFile(embedded, "i18n/en.json")
	if err := json.Unmarshal(b, &en); err != nil {
		t.Fatal(err)
	}
	if len(cat.Languages()) < 2 {
		t.Fatalf("languages %v", cat.Languages())
	}
	tmplKey := regexp.MustCompile(`\.L\.T "([^"]+)"`)
	jsKey := regexp.MustCompile(`\bt\('([a-z0-9_.]+)'[,)]`)
	jsImport := regexp.MustCompile(`from '\./([a-z0-9-]+\.js)'`)
	err = fs.WalkDir(embedded, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, _ := fs.ReadFile(embedded, p)
		var keys [][]string
		switch {
		case strings.HasSuffix(p, ".html"):
			keys = tmplKey.FindAllStringSubmatch(string(src), -1)
		case strings.HasSuffix(p, ".js"):
			keys = jsKey.FindAllStringSubmatch(string(src), -1)
			for _, m := range jsImport.FindAllStringSubmatch(string(src), -1) {
				if _, err := fs.Stat(embedded, "static/js/"+m[1]); err != nil {
					t.Errorf("%s imports missing %s", p, m[1])
				}
			}
		}
		for _, k := range keys {
			if _, ok := en[k[1]]; !ok {
				t.Errorf("%s: key %q is not in the catalogue", p, k[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"home", "login", "search", "practitioner", "appointments", "appointment", "consult", "prescriptions", "account", "agenda", "pro-appointment", "settings", "dashboard", "pharmacy", "admin"} {
		if _, err := fs.Stat(embedded, "static/js/"+p+".js"); err != nil {
			t.Errorf("page module %s.js is missing", p)
		}
	}
	_ = s
}

// A catalogue with a key missing in one language is refused at start.
func TestCatalogueRefusesMissingKeys(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(dir+"/i18n", 0o755)
	os.WriteFile(dir+"/i18n/fr.json", []byte(`{"a":"A","b":"B"}`), 0o644)
	os.WriteFile(dir+"/i18n/en.json", []byte(`{"a":"A"}`), 0o644)
	if _, err := LoadCatalogue(os.DirFS(dir), "i18n"); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("err = %v", err)
	}
}

// In DevMode the files are read from ./web at each request (run from the
// module root) and static files are never cached.
func TestDevModeReadsFromDisk(t *testing.T) {
	t.Chdir("..")
	s, err := New(Config{DevMode: true})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Routes(mux)
	if res := get(t, mux, "/login", nil); res.StatusCode != 200 {
		t.Fatalf("login: %d", res.StatusCode)
	}
	res := get(t, mux, "/static/"+s.assets.version+"/css/app.css", nil)
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("static in dev mode: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
}

// The admin page names each field the server refuses with the
// catalogue's admin.invalid.<field>: every field its forms send has one,
// in every language.
func TestAdminFieldMessages(t *testing.T) {
	cat, err := LoadCatalogue(embedded, "i18n")
	if err != nil {
		t.Fatal(err)
	}
	src, err := fs.ReadFile(embedded, "static/js/admin.js")
	if err != nil {
		t.Fatal(err)
	}
	lists := regexp.MustCompile(`creator\([^\[]*\[([^\]]*)\]\)`).FindAllStringSubmatch(string(src), -1)
	if len(lists) != 2 {
		t.Fatalf("found %d forms in admin.js, want the practitioner's and the pharmacy's", len(lists))
	}
	for _, l := range lists {
		for _, f := range regexp.MustCompile(`'([a-z_]+)'`).FindAllStringSubmatch(l[1], -1) {
			for _, lang := range cat.Languages() {
				key := "admin.invalid." + f[1]
				if got := cat.Localizer(lang).T(key); got == key || got == "" {
					t.Errorf("%s: no %s", lang, key)
				}
			}
		}
	}
}
