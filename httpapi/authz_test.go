package httpapi

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"

	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"teleconsult/auth"
	"teleconsult/booking"
	"teleconsult/consult"
	"teleconsult/live"
	"teleconsult/payments"
	"teleconsult/privacy"
	"teleconsult/rx"
)

// fullEnv serves every API route with the real services (payments in
// TEST MODE, the deployment's own prescription CA, privacy with a fresh
// legal-hold key whose private half the test keeps).
type fullEnv struct {
	*bookingEnv
	pay      *payments.Service
	rx       *rx.Service
	consult  *consult.Service
	privacy  *privacy.Service
	holdPriv *ecdh.PrivateKey
}

func newFullEnv(t *testing.T) *fullEnv {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	e.API.BaseURL = base
	pay, err := payments.New(e.DB, payments.Config{WebhookSecret: testWebhookSecret, BaseURL: base,
		TestWebhookURL: base + "/api/v1/payments/stripe/webhook"}, e.API.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pay.Close)
	bsvc := booking.New(e.DB, e.API.Vault, booking.Config{Checkout: pay, PaymentRelease: pay, RescheduleCheck: pay, BaseURL: base})
	pay.SetSlotReleaser(bsvc)
	ca, err := rx.LoadOrCreateAuthority(ctx, e.DB, e.API.Vault, "", "")
	if err != nil {
		t.Fatal(err)
	}
	rxs := rx.NewService(e.DB, e.API.Vault, ca, nil)
	cs := &consult.Service{DB: e.DB, Vault: e.API.Vault, Signer: auth.NewJoinSigner(make([]byte, 32)),
		SignalingURL: "ws://127.0.0.1/api/v1/signal", Completer: pay}
	holdPriv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv := privacy.New(e.DB, e.API.Vault, privacy.Config{Booking: bsvc, Receipts: pay, LegalHold: holdPriv.PublicKey()})
	e.API.Booking, e.API.Payments, e.API.Rx, e.API.Consult = bsvc, pay, rxs, cs
	e.API.Live = live.NewHub(e.DB)
	// As in production, with two-factor login optional for every role.
	e.API.Auth.SetMFA(auth.MFAConfig{Vault: e.API.Vault, Required: map[string]bool{}})
	// The enumeration limiter would answer 429 to a walk over every route.
	e.API.ProbeBudget = 1 << 20
	mux := http.NewServeMux()
	e.API.Privacy = priv
	e.API.Routes(mux)
	srv := httptest.NewUnstartedServer(e.API.Handler(mux))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	e.Srv = srv
	return &fullEnv{bookingEnv: &bookingEnv{testEnv: e, svc: bsvc}, pay: pay, rx: rxs, consult: cs, privacy: priv, holdPriv: holdPriv}
}

func marker(prefix string) string {
	b := make([]byte, 5)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// consulted moves an appointment one hour into the past and marks it
// completed, as if the consultation had taken place (the clock shortcut
// the tests take: the practitioner could only do this after the start).
func (e *fullEnv) consulted(t *testing.T, doc *client, id string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.DB.Pool.Exec(ctx, `UPDATE appointments SET starts_at = starts_at - interval '3 days', ends_at = ends_at - interval '3 days'
		WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if resp, b := doc.do("POST", "/api/v1/appointments/"+id+"/status", map[string]string{"status": "completed"}); resp.StatusCode != 200 {
		t.Fatalf("complete: %d %s", resp.StatusCode, b)
	}
}

// prescribe writes and signs a prescription of drugs over the API.
func prescribe(t *testing.T, doc *client, appointmentID string, drugs ...string) rxView {
	t.Helper()
	var items []any
	for _, d := range drugs {
		items = append(items, map[string]any{"drug": d, "dosage": "1 comprimé le soir", "duration_days": 5})
	}
	var draft, signed rxView
	if resp, b := doc.do("POST", "/api/v1/appointments/"+appointmentID+"/prescriptions", map[string]any{"items": items}); resp.StatusCode != 201 {
		t.Fatalf("prescription: %d %s", resp.StatusCode, b)
	} else if err := jsonUnmarshal(b, &draft); err != nil {
		t.Fatal(err)
	}
	if st := doc.json("POST", "/api/v1/prescriptions/"+draft.ID+"/sign", nil, &signed); st != 200 {
		t.Fatalf("sign: %d", st)
	}
	return signed
}

// routePattern finds the patterns registered in this package's sources.
var routePattern = regexp.MustCompile(`mux\.Handle(?:Func)?\(\s*("[^"]*"(?:\s*\+\s*[\w.]+)?)`)

// routeConstants are the constants route patterns are built from.
var routeConstants = map[string]string{"payments.TestCheckoutPattern": payments.TestCheckoutPattern}

func registeredRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range routePattern.FindAllStringSubmatch(string(b), -1) {
			p := m[1]
			if i := strings.Index(p, "+"); i > 0 {
				// "GET "+payments.TestCheckoutPattern
				name := strings.TrimSpace(p[i+1:])
				v, ok := routeConstants[name]
				if !ok {
					t.Fatalf("%s: route pattern built from %s: add its value to routeConstants", f, name)
				}
				p = strings.Trim(strings.TrimSpace(p[:i]), `"`) + v
			} else {
				p = strings.Trim(p, `"`)
			}
			out = append(out, p)
		}
	}
	if len(out) < 50 {
		t.Fatalf("found only %d routes: the scan is broken", len(out))
	}
	return out
}

// authzRoute says how to walk one route: the object its path names (one
// of the keys of world.ids, owned by patient A / practitioner X /
// pharmacist P), a request body, whether it is public, and which callers
// legitimately see the object.
type authzRoute struct {
	object string // "" when the path names no object
	body   any
	public bool
	stream bool // an event stream: only its refusal is walked
}

// authzRoutes is every route of the API. A route added to the code and not
// here fails TestAuthzWalk.
var authzRoutes = map[string]authzRoute{
	"GET /healthz":        {public: true},
	"GET /readyz":         {public: true},
	"GET /metrics":        {public: true},
	"POST /api/v1/signup": {public: true, body: map[string]any{}},
	"POST /api/v1/login":  {public: true, body: map[string]any{"email": "nobody@example.test", "password": "wrong password"}},
	"POST /api/v1/logout": {public: true},
	"GET /api/v1/me":      {},

	"POST /api/v1/login/totp":                   {body: map[string]any{"code": "000000"}},
	"POST /api/v1/account/totp/setup":           {},
	"POST /api/v1/account/totp/enable":          {body: map[string]any{"code": "000000"}},
	"POST /api/v1/account/totp/disable":         {},
	"POST /api/v1/account/reauth":               {body: map[string]any{"password": "wrong password!"}},
	"POST /api/v1/account/password":             {body: map[string]any{"current_password": "wrong password!", "new_password": "another long one"}},
	"GET /api/v1/account/sessions":              {},
	"DELETE /api/v1/account/sessions/{id}":      {object: "session"},
	"POST /api/v1/password/forgot":              {public: true, body: map[string]any{"email": "nobody@example.test"}},
	"POST /api/v1/password/reset":               {public: true, body: map[string]any{"token": "x", "password": "long enough password"}},
	"GET /api/v1/account/access-log":            {},
	"GET /api/v1/account/notifications":         {},
	"PUT /api/v1/account/notifications":         {body: map[string]any{"email": true, "sms": true}},
	"GET /api/v1/account/export":                {},
	"POST /api/v1/account/erase":                {},
	"GET /api/v1/events":                        {stream: true},
	"POST /api/v1/api-tokens":                   {body: map[string]any{}},
	"GET /api/v1/api-tokens":                    {},
	"DELETE /api/v1/api-tokens/{id}":            {object: "token"},
	"POST /api/v1/appointments/{id}/join":       {object: "appointment"},
	"GET /api/v1/appointments/{id}/chat":        {object: "appointment"},
	"GET /api/v1/admin/outbox":                  {},
	"POST /api/v1/admin/outbox/{id}/retry":      {object: "outbox"},
	"GET /api/v1/admin/payments":                {},
	"GET /api/v1/admin/practitioners":           {},
	"POST /api/v1/admin/practitioners":          {body: map[string]any{}},
	"GET /api/v1/admin/pharmacies":              {},
	"POST /api/v1/admin/pharmacies":             {body: map[string]any{}},
	"GET /api/v1/admin/webhooks":                {},
	"PATCH /api/v1/me":                          {body: map[string]any{"language": "xx"}},
	"POST /api/v1/payments/stripe/webhook":      {public: true, body: map[string]any{}},
	"GET /api/v1/appointments/{id}/payment":     {object: "appointment"},
	"GET /api/v1/appointments/{id}/receipt":     {object: "appointment"},
	"POST /api/v1/practitioner/payouts/onboard": {},
	"GET " + payments.TestCheckoutPattern:       {public: true},
	"POST " + payments.TestCheckoutPattern:      {public: true},

	"GET /api/v1/specialties":                          {public: true},
	"GET /api/v1/practitioners":                        {public: true},
	"GET /api/v1/practitioners/{id}":                   {public: true, object: "practitioner"},
	"GET /api/v1/practitioners/{id}/slots":             {public: true, object: "practitioner"},
	"GET /api/v1/pharmacies":                           {public: true},
	"GET /api/v1/practitioner/profile":                 {},
	"PUT /api/v1/practitioner/profile":                 {body: map[string]any{}},
	"GET /api/v1/practitioner/consultation-types":      {},
	"POST /api/v1/practitioner/consultation-types":     {body: map[string]any{}},
	"PUT /api/v1/practitioner/consultation-types/{id}": {object: "type", body: map[string]any{"name": "Pris", "mode": "video", "duration_minutes": 20}},
	"GET /api/v1/practitioner/opening-hours":           {},
	"PUT /api/v1/practitioner/opening-hours":           {body: map[string]any{"opening_hours": []any{}}},
	"GET /api/v1/practitioner/absences":                {},
	"POST /api/v1/practitioner/absences":               {body: map[string]any{}},
	"DELETE /api/v1/practitioner/absences/{id}":        {object: "absence"},
	"POST /api/v1/practitioner/calendar-token":         {},
	"DELETE /api/v1/practitioner/calendar-token":       {},
	"GET /calendar/{file}":                             {public: true, object: "calendar"},
	"GET /api/v1/patient/profile":                      {},
	"PUT /api/v1/patient/profile":                      {body: map[string]any{}},
	"GET /api/v1/relatives":                            {},
	"POST /api/v1/relatives":                           {body: map[string]any{}},
	"PUT /api/v1/relatives/{id}":                       {object: "relative", body: map[string]any{"relationship": "child", "family_name": "Pris", "given_names": "Par", "sex": "F", "birth_date": "2015-01-01"}},
	"DELETE /api/v1/relatives/{id}":                    {object: "relative"},
	"GET /api/v1/appointments":                         {},
	"POST /api/v1/appointments":                        {body: map[string]any{}},
	"GET /api/v1/appointments/{id}":                    {object: "appointment"},
	"GET /api/v1/appointments/{id}/history":            {object: "appointment"},
	"GET /api/v1/appointments/{id}/ics":                {object: "appointment"},
	"POST /api/v1/appointments/{id}/cancel":            {object: "upcoming", body: map[string]any{"reason": ""}},
	"POST /api/v1/appointments/{id}/reschedule":        {object: "upcoming", body: map[string]any{"start": time.Now().Add(72 * time.Hour).Truncate(time.Hour).Format(time.RFC3339)}},
	"POST /api/v1/appointments/{id}/status":            {object: "upcoming", body: map[string]any{"status": "arrived"}},
	"GET /api/v1/agenda":                               {},
	"POST /api/v1/agenda/delay":                        {body: map[string]any{"minutes": 0}},
	"GET /api/v1/blocks":                               {},
	"PUT /api/v1/blocks/{patient_id}":                  {object: "patient", body: map[string]any{"blocked": true}},
	"GET /api/v1/waitlist":                             {},
	"POST /api/v1/waitlist":                            {body: map[string]any{}},
	"DELETE /api/v1/waitlist/{id}":                     {object: "waitlist"},

	"GET /fhir/metadata":               {public: true},
	"GET /fhir/Practitioner/{id}":      {object: "practitioner"},
	"GET /fhir/PractitionerRole":       {},
	"GET /fhir/Schedule":               {},
	"GET /fhir/Slot":                   {},
	"GET /fhir/Appointment":            {},
	"GET /fhir/Appointment/{id}":       {object: "appointment"},
	"PUT /fhir/Appointment/{id}":       {object: "upcoming", body: map[string]any{"resourceType": "Appointment", "status": "cancelled"}},
	"GET /fhir/MedicationRequest":      {},
	"GET /fhir/MedicationRequest/{id}": {object: "prescription"},

	"GET /api/v1/prescriptions":                         {},
	"GET /api/v1/prescriptions/authority.pem":           {public: true},
	"POST /api/v1/appointments/{id}/prescriptions":      {object: "appointment", body: map[string]any{"items": []any{map[string]any{"drug": "Pris", "dosage": "1/j", "duration_days": 1}}}},
	"GET /api/v1/prescriptions/{id}":                    {object: "prescription"},
	"PUT /api/v1/prescriptions/{id}":                    {object: "draft", body: map[string]any{"items": []any{map[string]any{"drug": "Pris", "dosage": "1/j", "duration_days": 1}}}},
	"POST /api/v1/prescriptions/{id}/sign":              {object: "draft"},
	"POST /api/v1/prescriptions/{id}/cancel":            {object: "prescription"},
	"POST /api/v1/prescriptions/{id}/correct":           {object: "prescription", body: map[string]any{"items": []any{map[string]any{"drug": "Pris", "dosage": "1/j", "duration_days": 1}}}},
	"POST /api/v1/prescriptions/{id}/send":              {object: "prescription", body: map[string]any{"pharmacy_id": ""}},
	"GET /api/v1/prescriptions/{id}/pdf":                {object: "prescription"},
	"GET /api/v1/prescriptions/{id}/preview.pdf":        {object: "draft"},
	"GET /api/v1/prescriptions/{id}/fhir":               {object: "prescription"},
	"GET /api/v1/prescriptions/{id}/dispenses":          {object: "prescription"},
	"GET /api/v1/pharmacy/prescriptions":                {},
	"POST /api/v1/pharmacy/prescriptions/accept":        {body: map[string]any{"number": "AAAAAAAAAAAA", "access_code": "x"}},
	"POST /api/v1/pharmacy/prescriptions/verify":        {body: "%PDF-1.7 not a prescription"},
	"POST /api/v1/pharmacy/prescriptions/{id}/dispense": {object: "prescription", body: map[string]any{"secret": "x"}},
	"POST /api/v1/pharmacy/prescriptions/{id}/reject":   {object: "prescription", body: map[string]any{"secret": "x"}},
}

// caller is one identity of the walk.
type caller struct {
	name  string
	c     *client
	token string // API token (Bearer) instead of a session
}

func (cl caller) do(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > 300*time.Millisecond {
			t.Logf("SLOW %s %s as %s: %v", method, path, cl.name, d)
		}
	}()
	if cl.token == "" {
		resp, b := cl.c.do(method, path, body)
		return resp.StatusCode, b
	}
	var rd *strings.Reader
	switch b := body.(type) {
	case nil:
		rd = strings.NewReader("")
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := jsonMarshal(b)
		rd = strings.NewReader(string(j))
	}
	req, err := http.NewRequest(method, cl.c.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cl.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := cl.c.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var buf strings.Builder
	_, _ = ioCopy(&buf, resp.Body)
	return resp.StatusCode, []byte(buf.String())
}

// TestAuthzWalk walks every route of the API with every kind of caller
// against objects owned by others: another user's object answers exactly
// like a missing one and leaks nothing, anonymous callers get 401 where a
// login is needed, and nothing answers 500.
func TestAuthzWalk(t *testing.T) {
	e := newFullEnv(t)
	ctx := context.Background()

	// The table is the whole API.
	registered := registeredRoutes(t)
	for _, p := range registered {
		if _, ok := authzRoutes[p]; !ok {
			t.Errorf("route %q is registered but not in authzRoutes: add it to the walk", p)
		}
	}
	for p := range authzRoutes {
		if !slices.Contains(registered, p) {
			t.Errorf("authzRoutes has %q, which no longer exists", p)
		}
	}

	// The world: A is X's patient, with a prescription sent to P's pharmacy.
	docX, x, videoX, _ := e.doctor(t)
	docY, _, _, _ := e.doctor(t)
	nameA := marker("Annabelle Zorglub ")
	patA, acctA := e.user("patient", nameA)
	patB, _ := e.user("patient", "Bruno Intrus")
	pharmP, pAcct := e.user("pharmacist", "Paula Pharma")
	pharmQ, qAcct := e.user("pharmacist", "Quentin Pharma")
	admin, _ := e.user("admin", "Ada Admin")
	for _, ph := range []struct {
		id, name string
	}{{pAcct.ID, "Pharmacie P"}, {qAcct.ID, "Pharmacie Q"}} {
		var pid string
		if err := e.DB.Pool.QueryRow(ctx, `INSERT INTO pharmacies (name, city) VALUES ($1, 'Lyon') RETURNING id::text`, ph.name).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if _, err := e.DB.Pool.Exec(ctx, `INSERT INTO pharmacists (account_id, pharmacy_id) VALUES ($1, $2)`, ph.id, pid); err != nil {
			t.Fatal(err)
		}
	}
	var pharmacyP string
	e.DB.Pool.QueryRow(ctx, `SELECT pharmacy_id::text FROM pharmacists WHERE account_id = $1`, pAcct.ID).Scan(&pharmacyP)
	if st := patA.json("PUT", "/api/v1/patient/profile", map[string]any{"family_name": "Zorglub", "given_names": "Annabelle", "sex": "F", "birth_date": "1990-01-02"}, nil); st != 200 {
		t.Fatalf("profile A: %d", st)
	}
	var rel struct {
		ID string `json:"id"`
	}
	if st := patA.json("POST", "/api/v1/relatives", map[string]any{"relationship": "child", "family_name": "Zorglub", "given_names": "Petit", "sex": "M", "birth_date": "2018-05-06"}, &rel); st != 201 {
		t.Fatalf("relative: %d", st)
	}
	reason := marker("REASON-")
	drug := marker("DRUGNAME-")
	apDone := bookFirst(t, patA, x, videoX, reason)
	e.consulted(t, docX, apDone)
	rxA := prescribe(t, docX, apDone, drug)
	if resp, b := patA.do("POST", "/api/v1/prescriptions/"+rxA.ID+"/send", map[string]any{"pharmacy_id": pharmacyP}); resp.StatusCode != 200 {
		t.Fatalf("send: %d %s", resp.StatusCode, b)
	}
	var draft rxView
	if st := docX.json("POST", "/api/v1/appointments/"+apDone+"/prescriptions", map[string]any{"items": []any{map[string]any{"drug": drug, "dosage": "1/j", "duration_days": 2}}}, &draft); st != 201 {
		t.Fatalf("draft: %d", st)
	}
	apUp := bookFirst(t, patA, x, videoX, reason)
	var wl struct {
		ID string `json:"id"`
	}
	if resp, b := patA.do("POST", "/api/v1/waitlist", map[string]any{"practitioner_id": x}); resp.StatusCode != 201 {
		t.Fatalf("waitlist: %d %s", resp.StatusCode, b)
	} else {
		_ = jsonUnmarshal(b, &wl)
	}
	var abs struct {
		ID string `json:"id"`
	}
	if resp, b := docX.do("POST", "/api/v1/practitioner/absences", map[string]any{"start": time.Now().Add(30 * 24 * time.Hour).Format(time.RFC3339),
		"end": time.Now().Add(31 * 24 * time.Hour).Format(time.RFC3339)}); resp.StatusCode != 201 {
		t.Fatalf("absence: %d %s", resp.StatusCode, b)
	} else {
		_ = jsonUnmarshal(b, &abs)
	}
	newToken(t, e.testEnv, docX, auth.Scopes...)
	tokY := newToken(t, e.testEnv, docY, auth.Scopes...)
	var tokenX, sessionA string
	e.DB.Pool.QueryRow(ctx, `SELECT id::text FROM api_tokens WHERE owner_id = $1`, x).Scan(&tokenX)
	var sessions struct {
		Sessions []struct {
			ID string `json:"id"`
		} `json:"sessions"`
	}
	if st := patA.json("GET", "/api/v1/account/sessions", nil, &sessions); st != 200 || len(sessions.Sessions) == 0 {
		t.Fatalf("sessions: %d", st)
	}
	sessionA = sessions.Sessions[0].ID
	outbox := randomUUID()
	e.DB.Pool.QueryRow(ctx, `SELECT m.id::text FROM outbox_messages m JOIN outbox_events v ON v.id = m.event_id WHERE v.recipient_id = $1 LIMIT 1`, acctA.ID).Scan(&outbox)

	// Each object: its id, a missing id of the same shape, who may see it.
	type object struct {
		id, missing string
		owners      []string
	}
	objects := map[string]object{
		"appointment":  {apDone, randomUUID(), []string{"A", "X"}},
		"upcoming":     {apUp, randomUUID(), []string{"A", "X"}},
		"prescription": {rxA.ID, randomUUID(), []string{"A", "X", "P"}},
		"draft":        {draft.ID, randomUUID(), []string{"X"}},
		"relative":     {rel.ID, randomUUID(), []string{"A"}},
		"session":      {sessionA, strings.Repeat("0", len(sessionA)), []string{"A"}},
		"waitlist":     {wl.ID, randomUUID(), []string{"A"}},
		"token":        {tokenX, randomUUID(), []string{"X"}},
		"type":         {videoX, randomUUID(), []string{"X"}},
		"absence":      {abs.ID, randomUUID(), []string{"X"}},
		"patient":      {acctA.ID, randomUUID(), []string{"X"}},
		"outbox":       {outbox, randomUUID(), []string{"admin"}},
		"practitioner": {x, randomUUID(), nil}, // public
		"calendar":     {randomUUID() + ".ics", randomUUID() + ".ics", nil},
	}
	callers := []caller{
		{"A", patA, ""}, {"B", patB, ""}, {"X", docX, ""}, {"Y", docY, ""},
		{"P", pharmP, ""}, {"Q", pharmQ, ""}, {"admin", admin, ""}, {"anonymous", e.client(), ""},
		{"token", e.client(), tokY},
	}
	// Whatever the route, these callers never see A's data.
	strangers := map[string]bool{"B": true, "Y": true, "Q": true, "anonymous": true, "token": true}
	// A route for one role answers the other roles as if it did not
	// exist: for the admin routes, 404 to every logged-in non-admin.
	adminRoute := func(p, path, who string, st int, b []byte) {
		t.Helper()
		if strings.HasPrefix(path, "/api/v1/admin/") && who != "admin" && who != "anonymous" && who != "token" && st != 404 {
			t.Errorf("%s as %s: %d %s, want 404", p, who, st, b)
		}
	}
	secrets := []string{nameA, reason, drug, apDone, apUp, rxA.ID, acctA.ID}

	patterns := make([]string, 0, len(authzRoutes))
	for p := range authzRoutes {
		patterns = append(patterns, p)
	}
	slices.Sort(patterns)
	// Logging out ends the caller's session: last, and anonymous only.
	for _, p := range patterns {
		rt := authzRoutes[p]
		method, path, _ := strings.Cut(p, " ")
		if strings.HasPrefix(path, "/api/v1/payments/test/") || strings.Contains(path, "{session}") {
			path = strings.ReplaceAll(path, "{session}", "cs_test_"+randomUUID())
		}
		for _, cl := range callers {
			if (p == "POST /api/v1/logout" || rt.stream) && cl.name != "anonymous" {
				continue
			}
			if p == "POST /api/v1/account/erase" && (cl.name == "A" || cl.name == "B") {
				continue // it would work (they logged in minutes ago) and end the walk for them
			}
			if rt.object == "" {
				if method != "GET" && (cl.name == "A" || cl.name == "X" || cl.name == "P") {
					continue // the owners' own writes would change the world under the walk
				}
				st, b := cl.do(t, method, path, rt.body)
				check500(t, p, cl.name, st, b)
				adminRoute(p, path, cl.name, st, b)
				if !rt.public && cl.name == "anonymous" && st != 401 {
					t.Errorf("%s as anonymous: %d %s, want 401", p, st, b)
				}
				if strangers[cl.name] {
					leaks(t, p, cl.name, b, secrets)
				}
				if cl.name == "admin" || cl.name == "P" {
					// Staff and pharmacists see no reasons; the admin no drugs.
					leaks(t, p, cl.name, b, []string{reason, map[string]string{"admin": drug}[cl.name]})
				}
				continue
			}
			o := objects[rt.object]
			fill := func(id string) string {
				return strings.NewReplacer("{id}", id, "{patient_id}", id, "{file}", id).Replace(path)
			}
			owner := slices.Contains(o.owners, cl.name)
			if owner || o.owners == nil {
				if method == "GET" {
					st, b := cl.do(t, method, fill(o.id), rt.body)
					check500(t, p, cl.name, st, b)
				}
				continue
			}
			stF, bF := cl.do(t, method, fill(o.id), rt.body)
			stM, bM := cl.do(t, method, fill(o.missing), rt.body)
			stX, bX := cl.do(t, method, fill("not-an-id"), rt.body)
			check500(t, p, cl.name, stF, bF)
			check500(t, p, cl.name, stM, bM)
			check500(t, p+" (malformed id)", cl.name, stX, bX)
			adminRoute(p, path, cl.name, stF, bF)
			same := func(b []byte) string {
				return strings.NewReplacer(o.id, "ID", o.missing, "ID").Replace(string(b))
			}
			if stF != stM || errorCode(bF) != errorCode(bM) || same(bF) != same(bM) {
				t.Errorf("%s as %s: another's object answers %d %s, a missing one %d %s", p, cl.name, stF, bF, stM, bM)
			}
			if stF < 400 {
				t.Errorf("%s as %s: another's object answers %d %s", p, cl.name, stF, bF)
			}
			if !rt.public && cl.name == "anonymous" && stF != 401 {
				t.Errorf("%s as anonymous: %d %s, want 401", p, stF, bF)
			}
			leaks(t, p, cl.name, bF, append(slices.Clone(secrets), o.id))
		}
	}

	// The owners do see their objects: the walk used real ids.
	for _, c := range []struct {
		cl   *client
		path string
	}{
		{patA, "/api/v1/appointments/" + apDone}, {docX, "/api/v1/appointments/" + apDone},
		{patA, "/api/v1/prescriptions/" + rxA.ID}, {pharmP, "/api/v1/pharmacy/prescriptions"},
		{docX, "/api/v1/prescriptions/" + draft.ID},
	} {
		if resp, b := c.cl.do("GET", c.path, nil); resp.StatusCode != 200 {
			t.Errorf("owner GET %s: %d %s", c.path, resp.StatusCode, b)
		}
	}
}

func check500(t *testing.T, route, who string, status int, body []byte) {
	t.Helper()
	if status >= 500 {
		t.Errorf("%s as %s: %d %s", route, who, status, body)
	}
}

func leaks(t *testing.T, route, who string, body []byte, secrets []string) {
	t.Helper()
	for i, s := range secrets {
		if s != "" && !slices.Contains(secrets[:i], s) && strings.Contains(string(body), s) {
			t.Errorf("%s as %s: the answer carries another user's data %q: %.300s", route, who, s, body)
		}
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func ioCopy(w io.Writer, r io.Reader) (int64, error) { return io.Copy(w, r) }
