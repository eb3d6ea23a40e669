package httpapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"teleconsult/notify"
	"teleconsult/store"
)

func TestAdminOutbox(t *testing.T) {
	e := newEnv(t)
	e.start()
	admin, _ := e.user("admin", "Ada Admin")
	patient, acct := e.user("patient", "Paul Patient")

	// Without SMTP configuration the worker holds the message, rendered.
	ctx := context.Background()
	if err := store.Enqueue(ctx, e.DB.Pool, store.OutboxEvent{Kind: store.EventPasswordReset, RecipientID: acct.ID,
		Data: map[string]string{"token": "very-secret-reset-token"}}); err != nil {
		t.Fatal(err)
	}
	w, err := notify.NewWorker(e.DB, notify.Config{BaseURL: "https://rdv.example.org", TokenKey: []byte("0123456789abcdef0123456789abcdef")}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.DeliverDue(ctx); err != nil || n != 1 {
		t.Fatalf("deliver: %d, %v", n, err)
	}

	var out struct {
		Messages []store.OutboxMessage `json:"messages"`
	}
	if st := admin.json("GET", "/api/v1/admin/outbox", nil, &out); st != 200 {
		t.Fatalf("admin listing: %d", st)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("%d messages, want 1", len(out.Messages))
	}
	m := out.Messages[0]
	if m.Status != "held" || m.Channel != "email" || m.Kind != "password.reset" || m.Attempts != 1 ||
		m.Subject != "Reset your password" || !strings.Contains(m.Body, "https://rdv.example.org/reset?token=[redacted]") {
		t.Errorf("message %+v", m)
	}
	_, raw := admin.do("GET", "/api/v1/admin/outbox", nil)
	if strings.Contains(string(raw), "very-secret-reset-token") {
		t.Error("the listing shows the reset token")
	}

	// An admin puts the held message back in the queue; a second retry
	// finds it pending.
	if resp, b := admin.do("POST", "/api/v1/admin/outbox/"+m.ID+"/retry", nil); resp.StatusCode != 204 {
		t.Fatalf("retry: %d %s", resp.StatusCode, b)
	}
	if resp, b := admin.do("POST", "/api/v1/admin/outbox/"+m.ID+"/retry", nil); resp.StatusCode != 409 || errorCode(b) != "outbox_wrong_status" {
		t.Errorf("second retry: %d %s", resp.StatusCode, b)
	}
	if resp, _ := patient.do("POST", "/api/v1/admin/outbox/"+m.ID+"/retry", nil); resp.StatusCode != 404 {
		t.Errorf("patient retry: %d", resp.StatusCode)
	}
	if resp, _ := admin.do("POST", "/api/v1/admin/outbox/not-an-id/retry", nil); resp.StatusCode != 404 {
		t.Errorf("retry of a bad id: %d", resp.StatusCode)
	}
	if n, err := w.DeliverDue(ctx); err != nil || n != 1 {
		t.Fatalf("deliver after retry: %d, %v", n, err)
	}

	tests := []struct {
		name   string
		c      *client
		path   string
		status int
		count  int
	}{
		{"filter on held", admin, "/api/v1/admin/outbox?status=held", 200, 1},
		{"filter on failed", admin, "/api/v1/admin/outbox?status=failed&limit=10", 200, 0},
		{"unknown status", admin, "/api/v1/admin/outbox?status=lost", 400, 0},
		{"bad limit", admin, "/api/v1/admin/outbox?limit=0", 400, 0},
		{"a patient cannot see it", patient, "/api/v1/admin/outbox", 404, 0},
		{"nor can a stranger", e.client(), "/api/v1/admin/outbox", 401, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out struct {
				Messages []store.OutboxMessage `json:"messages"`
			}
			if st := tt.c.json("GET", tt.path, nil, &out); st != tt.status || len(out.Messages) != tt.count {
				t.Errorf("%d with %d messages, want %d with %d", st, len(out.Messages), tt.status, tt.count)
			}
		})
	}
}

func TestNotificationPrefs(t *testing.T) {
	e := newEnv(t)
	e.start()
	c, acct := e.user("patient", "Paula Patient")

	var p store.NotificationPrefs
	if st := c.json("GET", "/api/v1/account/notifications", nil, &p); st != 200 || !p.Email || !p.SMS {
		t.Fatalf("defaults: %d %+v", st, p)
	}
	if st := c.json("PUT", "/api/v1/account/notifications", map[string]bool{"email": true, "sms": false}, &p); st != 200 || !p.Email || p.SMS {
		t.Fatalf("put: %d %+v", st, p)
	}
	if resp, b := c.do("PUT", "/api/v1/account/notifications", `{"email": false}`); resp.StatusCode != 400 || errorCode(b) != "bad_json" {
		t.Errorf("partial body: %d %s", resp.StatusCode, b)
	}
	got, err := store.GetNotificationPrefs(context.Background(), e.DB.Pool, acct.ID)
	if err != nil || !got.Email || got.SMS {
		t.Errorf("stored %+v, %v: the refused request changed something", got, err)
	}
	if st := e.client().json("GET", "/api/v1/account/notifications", nil, nil); st != 401 {
		t.Errorf("anonymous: %d", st)
	}
}
