package httpapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"

	"teleconsult/notify"
	"teleconsult/store"
)

// An operator creates a practitioner: account and directory entry at
// once, searchable and able to log in; every bad field is named; an email
// already taken is 409; other roles get 404 and the anonymous 401.
func TestAdminCreatePractitioner(t *testing.T) {
	e := newBookingEnv(t)
	admin, adminAcct := e.user("admin", "Ada Admin")
	patient, _ := e.user("patient", "Paul Patient")
	good := map[string]any{"name": "Dr Louise Garnier", "email": "Louise.Garnier@Example.org", "password": "a long enough passphrase",
		"specialty": "dermatology", "rpps": "10001234567", "address": "4 rue Victor Hugo", "postcode": "69002", "city": "Lyon"}

	var created store.AdminPractitioner
	if st := admin.json("POST", "/api/v1/admin/practitioners", good, &created); st != 201 {
		t.Fatalf("create: %d", st)
	}
	if created.ID == "" || created.Email != "louise.garnier@example.org" || created.RPPS != "10001234567" || created.City != "Lyon" {
		t.Errorf("created %+v", created)
	}
	// In the public directory, and the practitioner can log in.
	var prof struct {
		Name      string `json:"name"`
		Specialty string `json:"specialty"`
		Postcode  string `json:"postcode"`
	}
	if st := e.client().json("GET", "/api/v1/practitioners/"+created.ID, nil, &prof); st != 200 || prof.Name != "Dr Louise Garnier" || prof.Specialty != "dermatology" || prof.Postcode != "69002" {
		t.Errorf("public profile: %d %+v", st, prof)
	}
	var me accountJSON
	doc := e.client()
	if st := doc.json("POST", "/api/v1/login", map[string]string{"email": "louise.garnier@example.org", "password": "a long enough passphrase"}, &me); st != 200 || me.Role != "practitioner" {
		t.Errorf("login as the new practitioner: %d %+v", st, me)
	}
	var list struct {
		Practitioners []store.AdminPractitioner `json:"practitioners"`
	}
	if st := admin.json("GET", "/api/v1/admin/practitioners", nil, &list); st != 200 || len(list.Practitioners) != 1 || list.Practitioners[0].ID != created.ID {
		t.Errorf("admin list: %d %+v", st, list)
	}
	var audited int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE actor_id = $1 AND action = 'create' AND object_type = 'practitioner' AND object_id = $2`,
		adminAcct.ID, created.ID).Scan(&audited)
	if audited != 1 {
		t.Errorf("%d audit entries for the creation", audited)
	}

	// The same email again, in other letter case.
	dup := clone(good)
	dup["email"] = "louise.garnier@EXAMPLE.org"
	if resp, b := admin.do("POST", "/api/v1/admin/practitioners", dup); resp.StatusCode != 409 || errorCode(b) != "email_taken" {
		t.Errorf("same email: %d %s", resp.StatusCode, b)
	}

	for _, c := range []struct {
		field, value string
		says         string
	}{
		{"rpps", "1234", "rpps: the RPPS number has 11 digits"},
		{"rpps", "1000123456a", "rpps: the RPPS number has 11 digits"},
		{"postcode", "6900", "postcode: a postcode has 5 digits"},
		{"postcode", "69 002", "postcode:"},
		{"specialty", "astrology", "specialty: unknown specialty"},
		{"password", "short", "password:"},
		{"email", "not-an-email", "email: not a valid email address"},
		{"name", "  ", "name: required"},
		{"city", "", "city: required"},
		{"address", "", "address: required"},
	} {
		bad := clone(good)
		bad["email"] = "other@example.org"
		bad[c.field] = c.value
		resp, b := admin.do("POST", "/api/v1/admin/practitioners", bad)
		if resp.StatusCode != 400 || errorCode(b) != "invalid_fields" || !strings.Contains(string(b), c.says) {
			t.Errorf("%s=%q: %d %s, want 400 saying %q", c.field, c.value, resp.StatusCode, b, c.says)
		}
	}
	// Several bad fields: each is named.
	bad := clone(good)
	bad["email"], bad["rpps"], bad["postcode"] = "x@example.org", "1", "abc"
	if _, b := admin.do("POST", "/api/v1/admin/practitioners", bad); !strings.Contains(string(b), "rpps:") || !strings.Contains(string(b), "postcode:") {
		t.Errorf("two bad fields: %s", b)
	}
	if resp, b := admin.do("POST", "/api/v1/admin/practitioners", map[string]any{"name": "x", "role": "admin"}); resp.StatusCode != 400 || errorCode(b) != "bad_json" {
		t.Errorf("unknown field: %d %s", resp.StatusCode, b)
	}
	other := clone(good)
	other["email"] = "someone@example.org"
	if resp, b := patient.do("POST", "/api/v1/admin/practitioners", other); resp.StatusCode != 404 || errorCode(b) != "not_found" {
		t.Errorf("patient: %d %s", resp.StatusCode, b)
	}
	if resp, _ := patient.do("GET", "/api/v1/admin/practitioners", nil); resp.StatusCode != 404 {
		t.Errorf("patient listing: %d", resp.StatusCode)
	}
	if resp, _ := e.client().do("POST", "/api/v1/admin/practitioners", other); resp.StatusCode != 401 {
		t.Errorf("anonymous: %d", resp.StatusCode)
	}
	var n int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM accounts WHERE role = 'practitioner'`).Scan(&n)
	if n != 1 {
		t.Errorf("%d practitioner accounts, want only the one created", n)
	}
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// An operator adds a pharmacy: patients find it; the same pharmacy twice
// is 409; bad fields are named; other roles get 404.
func TestAdminCreatePharmacy(t *testing.T) {
	e := newBookingEnv(t)
	admin, _ := e.user("admin", "Ada Admin")
	pharmacist, _ := e.user("pharmacist", "Paula Pharma")
	good := map[string]any{"name": "Pharmacie des Brotteaux", "address": "8 boulevard des Brotteaux", "postcode": "69006", "city": "Lyon", "phone": "+33 4 78 00 00 00"}
	var ph store.Pharmacy
	if st := admin.json("POST", "/api/v1/admin/pharmacies", good, &ph); st != 201 || ph.ID == "" || ph.Phone != "+33 4 78 00 00 00" {
		t.Fatalf("create: %d %+v", st, ph)
	}
	var found struct {
		Pharmacies []store.Pharmacy `json:"results"`
	}
	pat, _ := e.user("patient", "Paul Patient")
	if st := pat.json("GET", "/api/v1/pharmacies?city=Lyon", nil, &found); st != 200 || len(found.Pharmacies) != 1 || found.Pharmacies[0].ID != ph.ID {
		t.Errorf("search: %d %+v", st, found)
	}
	dup := clone(good)
	dup["name"] = "PHARMACIE DES BROTTEAUX"
	if resp, b := admin.do("POST", "/api/v1/admin/pharmacies", dup); resp.StatusCode != 409 || errorCode(b) != "pharmacy_exists" {
		t.Errorf("duplicate: %d %s", resp.StatusCode, b)
	}
	for _, c := range []struct{ field, value, says string }{
		{"postcode", "690", "postcode: a postcode has 5 digits"},
		{"phone", "call us", "phone: a phone number"},
		{"phone", "", "phone: required"},
		{"name", "", "name: required"},
		{"city", strings.Repeat("x", 101), "city: at most 100 characters"},
	} {
		bad := clone(good)
		bad[c.field] = c.value
		resp, b := admin.do("POST", "/api/v1/admin/pharmacies", bad)
		if resp.StatusCode != 400 || !strings.Contains(string(b), c.says) {
			t.Errorf("%s=%q: %d %s, want 400 saying %q", c.field, c.value, resp.StatusCode, b, c.says)
		}
	}
	if resp, _ := pharmacist.do("POST", "/api/v1/admin/pharmacies", good); resp.StatusCode != 404 {
		t.Errorf("pharmacist: %d", resp.StatusCode)
	}
	var list struct {
		Pharmacies []store.Pharmacy `json:"pharmacies"`
	}
	if st := admin.json("GET", "/api/v1/admin/pharmacies", nil, &list); st != 200 || len(list.Pharmacies) != 1 {
		t.Errorf("admin list: %d %+v", st, list)
	}
	var audited int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'create' AND object_type = 'pharmacy' AND object_id = $1`, ph.ID).Scan(&audited)
	if audited != 1 {
		t.Errorf("%d audit entries for the pharmacy", audited)
	}
}

// Operators see the verified webhook events that failed, newest first
// with the reason, until a later delivery of the event succeeds; and the
// failed payments (a declined card).
func TestAdminFailedWebhooksAndPayments(t *testing.T) {
	e := newPaymentsEnv(t, true)
	admin, _ := e.user("admin", "Ada Admin")
	patient, _ := e.user("patient", "Paul Patient")
	base := e.Srv.URL
	now := time.Now()

	// A forged delivery is refused and not listed (anyone can post).
	forged, forgedSig := signed(t, "evt_forged", "checkout.session.completed", stripe.APIVersion, map[string]any{"id": 1}, "whsec_wrong", now)
	if st := deliver(t, base, forged, forgedSig); st != 400 {
		t.Fatalf("forged: %d", st)
	}
	// Two verified events whose object is not what the type says.
	bad1, sig1 := signed(t, "evt_bad_1", "checkout.session.completed", stripe.APIVersion, map[string]any{"id": 1}, testWebhookSecret, now)
	bad2, sig2 := signed(t, "evt_bad_2", "charge.refunded", stripe.APIVersion, map[string]any{"id": "ch_1", "object": "charge"}, testWebhookSecret, now)
	for _, d := range [][2]string{{string(bad1), sig1}, {string(bad2), sig2}} {
		if st := deliver(t, base, []byte(d[0]), d[1]); st != 400 {
			t.Fatalf("malformed event: %d", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	type hooks struct {
		Webhooks []store.WebhookFailure `json:"webhooks"`
	}
	var got hooks
	if st := admin.json("GET", "/api/v1/admin/webhooks?status=failed", nil, &got); st != 200 {
		t.Fatalf("listing: %d", st)
	}
	if len(got.Webhooks) != 2 || got.Webhooks[0].EventID != "evt_bad_2" || got.Webhooks[1].EventID != "evt_bad_1" {
		t.Fatalf("failed webhooks %+v, want evt_bad_2 then evt_bad_1", got.Webhooks)
	}
	if w := got.Webhooks[1]; w.Type != "checkout.session.completed" || w.Status != "failed" || !strings.Contains(w.Reason, "not a checkout session") || w.Attempts != 1 {
		t.Errorf("failure %+v", w)
	}
	// Stripe delivers evt_bad_1 again, well-formed this time (about no
	// payment of ours): it is processed, so no longer failed.
	again, againSig := signed(t, "evt_bad_1", "checkout.session.completed", stripe.APIVersion, map[string]any{"id": "cs_unknown", "object": "checkout.session"}, testWebhookSecret, time.Now())
	if st := deliver(t, base, again, againSig); st != 200 {
		t.Fatalf("redelivery: %d", st)
	}
	got = hooks{}
	admin.json("GET", "/api/v1/admin/webhooks?status=failed", nil, &got)
	if len(got.Webhooks) != 1 || got.Webhooks[0].EventID != "evt_bad_2" {
		t.Errorf("after the redelivery, failed: %+v", got.Webhooks)
	}
	got = hooks{}
	admin.json("GET", "/api/v1/admin/webhooks?status=recovered", nil, &got)
	if len(got.Webhooks) != 1 || got.Webhooks[0].EventID != "evt_bad_1" {
		t.Errorf("recovered: %+v", got.Webhooks)
	}
	if resp, b := admin.do("GET", "/api/v1/admin/webhooks?status=nope", nil); resp.StatusCode != 400 || errorCode(b) != "admin_query_invalid" {
		t.Errorf("bad status: %d %s", resp.StatusCode, b)
	}
	if resp, _ := patient.do("GET", "/api/v1/admin/webhooks?status=failed", nil); resp.StatusCode != 404 {
		t.Errorf("patient: %d", resp.StatusCode)
	}

	// A declined card is a failed payment; a paid one is not listed.
	_, docID, _, paidID := e.doctor(t)
	declined := e.bookPaid(t, patient, docID, paidID, 0)
	paid := e.bookPaid(t, patient, docID, paidID, 1)
	pressButton(t, patient, declined.Payment.CheckoutURL, "decline")
	pressButton(t, patient, paid.Payment.CheckoutURL, "pay")
	e.waitStatus(t, patient, declined.ID, "expired", store.PaymentFailed)
	e.waitStatus(t, patient, paid.ID, "confirmed", store.PaymentAuthorized)
	var pays struct {
		Payments []struct {
			AppointmentID string `json:"appointment_id"`
			Status        string `json:"status"`
		} `json:"payments"`
	}
	if st := admin.json("GET", "/api/v1/admin/payments?status=failed", nil, &pays); st != 200 || len(pays.Payments) != 1 ||
		pays.Payments[0].AppointmentID != declined.ID || pays.Payments[0].Status != "failed" {
		t.Errorf("failed payments: %d %+v", st, pays)
	}
}

// The signed-in account chooses its language: the next email is written
// in it; only the catalogue's languages are accepted.
func TestAccountLanguage(t *testing.T) {
	e := newEnv(t)
	e.start()
	c, acct := e.user("patient", "Paul Patient") // created in English
	ctx := context.Background()
	w, err := notify.NewWorker(e.DB, notify.Config{BaseURL: "https://rdv.example.org", TokenKey: []byte("0123456789abcdef0123456789abcdef")}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	nextSubject := func() string {
		t.Helper()
		if err := store.Enqueue(ctx, e.DB.Pool, store.OutboxEvent{Kind: store.EventPasswordReset, RecipientID: acct.ID,
			Data: map[string]string{"token": "t"}}); err != nil {
			t.Fatal(err)
		}
		if n, err := w.DeliverDue(ctx); err != nil || n != 1 {
			t.Fatalf("deliver: %d, %v", n, err)
		}
		msgs, err := store.ListOutbox(ctx, e.DB.Pool, "", 1)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("outbox: %v", err)
		}
		return msgs[0].Subject
	}
	en := nextSubject()
	if en != "Reset your password" {
		t.Fatalf("English subject %q", en)
	}

	var out accountJSON
	if st := c.json("PATCH", "/api/v1/me", map[string]string{"language": "fr"}, &out); st != 200 || out.Language != "fr" {
		t.Fatalf("patch: %d %+v", st, out)
	}
	var me accountJSON
	c.json("GET", "/api/v1/me", nil, &me)
	if me.Language != "fr" {
		t.Errorf("me says %q after the change", me.Language)
	}
	if fr := nextSubject(); fr == en || fr == "" {
		t.Errorf("after switching to French the email's subject is %q", fr)
	}

	for _, body := range []any{map[string]string{"language": "de"}, map[string]string{"language": "EN"}, map[string]string{"language": ""}} {
		if resp, b := c.do("PATCH", "/api/v1/me", body); resp.StatusCode != 400 || errorCode(b) != "unknown_language" {
			t.Errorf("%v: %d %s", body, resp.StatusCode, b)
		}
	}
	if resp, b := c.do("PATCH", "/api/v1/me", map[string]string{}); resp.StatusCode != 400 || errorCode(b) != "missing_field" {
		t.Errorf("empty body: %d %s", resp.StatusCode, b)
	}
	if resp, b := c.do("PATCH", "/api/v1/me", map[string]string{"role": "admin"}); resp.StatusCode != 400 || errorCode(b) != "bad_json" {
		t.Errorf("other field: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.client().do("PATCH", "/api/v1/me", map[string]string{"language": "en"}); resp.StatusCode != 401 {
		t.Errorf("anonymous: %d", resp.StatusCode)
	}
}
