package payments

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"teleconsult/problem"
)

// testPageCSS is the page's only style, allowed by its hash in the
// Content-Security-Policy: the page loads nothing and runs no script.
const testPageCSS = `body{font-family:system-ui,sans-serif;background:#f4f4f6;color:#1d1d1f;margin:0}
.banner{background:#b00020;color:#fff;text-align:center;padding:.6em;font-weight:bold;letter-spacing:.05em}
main{max-width:28em;margin:2em auto;background:#fff;border-radius:8px;padding:1.5em;box-shadow:0 1px 4px #0002}
h1{font-size:1.3em;margin-top:0}.amount{font-size:2em;margin:.3em 0}
.note{color:#555;font-size:.9em}form{display:flex;flex-wrap:wrap;gap:.6em;margin-top:1.2em}
button{font-size:1em;padding:.7em 1.2em;border-radius:6px;border:0;cursor:pointer}
.pay{background:#0a7d32;color:#fff}.decline{background:#ddd;color:#222}`

var testPageCSP = "default-src 'none'; style-src 'sha256-" + func() string {
	h := sha256.Sum256([]byte(testPageCSS))
	return base64.StdEncoding.EncodeToString(h[:])
}() + "'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var testPage = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>TEST MODE checkout</title><style>{{.CSS}}</style></head>
<body><div class="banner" role="alert">TEST MODE &mdash; no real card, no real money</div>
<main>
{{if eq .Status "open"}}
<h1>{{if eq .Mode "setup"}}Save a card for your consultation{{else}}Authorise your consultation{{end}}</h1>
{{if eq .Mode "payment"}}<p class="amount">{{.Amount}}</p>
<p class="note">Your card is authorised now and charged only after the consultation.</p>{{else}}
<p class="note">Your card is saved now and authorised about 48 hours before the consultation.</p>{{end}}
<p class="note">This page stands in for Stripe Checkout while the service runs without a Stripe key. It expires at {{.Expires}}.</p>
<form method="post" action="{{.Action}}">
{{if eq .Mode "payment"}}<button class="pay" name="action" value="pay">Pay</button>{{else}}
<button class="pay" name="action" value="save">Save card</button>
<button class="pay" name="action" value="save_auth">Save card (bank will ask to authenticate)</button>{{end}}
<button class="decline" name="action" value="decline">Decline</button>
</form>
{{else}}
<h1>This checkout is {{.Status}}</h1>
<p class="note">Nothing more to do here.</p>
{{end}}
</main></body></html>
`))

func formatAmount(cents int64, currency string) string {
	return fmt.Sprintf("%d.%02d %s", cents/100, cents%100, currency)
}

// ServeHTTP serves the test checkout page: GET shows it, POST does what the
// button says (pay, decline, save a card) and sends the browser on to the
// success or cancel URL, as Stripe Checkout does.
func (g *testGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, testCheckoutPath)
	if id == "" || strings.Contains(id, "/") || !strings.HasPrefix(id, "cs_test_") {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", testPageCSP)
	h.Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s, err := g.GetCheckoutSession(r.Context(), id)
		if err != nil {
			g.pageError(w, err)
			return
		}
		full, err := g.loadSession(r.Context(), g.db.Pool, id, false)
		if err != nil {
			g.pageError(w, err)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		testPage.Execute(w, map[string]any{
			"CSS": template.CSS(testPageCSS), "Status": s.Status, "Mode": s.Mode,
			"Amount": formatAmount(full.Amount, full.Currency), "Action": testCheckoutPath + id,
			"Expires": s.ExpiresAt.UTC().Format(time.Kitchen + " MST"),
		})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		action := r.PostForm.Get("action")
		s, err := g.pay(r.Context(), id, action)
		if err != nil {
			g.pageError(w, err)
			return
		}
		next := s.SuccessURL
		if s.Status != SessionComplete {
			next = s.CancelURL
		}
		http.Redirect(w, r, strings.ReplaceAll(next, "{CHECKOUT_SESSION_ID}", s.ID), http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (g *testGateway) pageError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrGatewayNotFound) {
		http.Error(w, "no such checkout", http.StatusNotFound)
		return
	}
	if problem.KindOf(err) == problem.Invalid {
		http.Error(w, "unknown action", http.StatusBadRequest)
		return
	}
	g.log.Error("test checkout page", "err", err)
	http.Error(w, "test checkout failed", http.StatusInternalServerError)
}
