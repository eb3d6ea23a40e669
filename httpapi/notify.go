package httpapi

import (
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/problem"
	"teleconsult/store"
)

// ErrOutboxQuery is a bad filter on the admin outbox listing.
var ErrOutboxQuery = problem.New(problem.Invalid, "outbox_query_invalid", "the outbox filter is not valid")

// outboxStatuses are the statuses the admin listing may filter on.
var outboxStatuses = map[string]bool{
	"": true, store.MessagePending: true, store.MessageSending: true, store.MessageSent: true,
	store.MessageFailed: true, store.MessageCancelled: true, store.MessageHeld: true,
}

// notifyRoutes serves the admin view of the notification outbox and each
// account's choice of notification channels.
func (a *API) notifyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/admin/outbox", a.adminOutbox)
	mux.HandleFunc("POST /api/v1/admin/outbox/{id}/retry", a.adminRetryOutbox)
	mux.HandleFunc("GET /api/v1/account/notifications", a.getNotificationPrefs)
	mux.HandleFunc("PUT /api/v1/account/notifications", a.putNotificationPrefs)
}

// adminOutbox lists recent deliveries, newest first, with their rendered
// subject and body (secret links redacted), status, attempts and last
// error: ?status=failed|held|... and ?limit=1..500 (default 100).
func (a *API) adminOutbox(w http.ResponseWriter, r *http.Request) {
	_, err := a.accountWithRole(r, "admin")
	if err != nil {
		writeError(w, r, err)
		return
	}
	status := r.URL.Query().Get("status")
	if !outboxStatuses[status] {
		writeError(w, r, ErrOutboxQuery.Withf("unknown status %q", status))
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			writeError(w, r, ErrOutboxQuery.With("limit must be a number from 1 to 500"))
			return
		}
		limit = n
	}
	msgs, err := store.ListOutbox(r.Context(), a.DB.Pool, status, limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Messages name patients and their appointment times: reading them
	// is an audited access.
	if err := audit.Record(r.Context(), a.DB.Pool, audit.Entry{Actor: a.actor(r), Action: "read",
		ObjectType: "outbox", Detail: "admin outbox listing, status " + strconv.Quote(status)}); err != nil {
		writeError(w, r, err)
		return
	}
	if msgs == nil {
		msgs = []store.OutboxMessage{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

// adminRetryOutbox puts a failed or held message back in the queue with
// fresh attempts, e.g. after the SMTP settings were fixed.
func (a *API) adminRetryOutbox(w http.ResponseWriter, r *http.Request) {
	if _, err := a.accountWithRole(r, "admin"); err != nil {
		writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	err := a.DB.Tx(r.Context(), func(tx pgx.Tx) error {
		if err := store.RetryOutbox(r.Context(), tx, id); err != nil {
			return err
		}
		return audit.Record(r.Context(), tx, audit.Entry{Actor: a.actor(r), Action: "write",
			ObjectType: "outbox", ObjectID: id, Detail: "retry"})
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) getNotificationPrefs(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	p, err := store.GetNotificationPrefs(r.Context(), a.DB.Pool, acct.ID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// putNotificationPrefs sets the caller's channels: {"email": bool, "sms": bool}.
// Both fields are required, so that a partial body cannot switch a
// channel off by omission.
func (a *API) putNotificationPrefs(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var body struct {
		Email *bool `json:"email"`
		SMS   *bool `json:"sms"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		writeError(w, r, err)
		return
	}
	if body.Email == nil || body.SMS == nil {
		writeError(w, r, ErrBadJSON.With(`give both "email" and "sms" (true or false)`))
		return
	}
	p := store.NotificationPrefs{Email: *body.Email, SMS: *body.SMS}
	if err := store.SetNotificationPrefs(r.Context(), a.DB.Pool, acct.ID, p); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
