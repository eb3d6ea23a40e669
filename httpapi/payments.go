package httpapi

import (
	"errors"
	"io"
	"net/http"

	"teleconsult/payments"
	"teleconsult/problem"
)

// paymentsRoutes registers Stripe's webhook endpoint, the patient's
// receipts, the practitioner's payout onboarding and, in TEST MODE, the
// test checkout pages, served by svc.
func (a *API) paymentsRoutes(mux *http.ServeMux, svc *payments.Service) {
	h := &paymentHandlers{API: a, svc: svc}
	mux.HandleFunc("POST /api/v1/payments/stripe/webhook", h.webhook)
	mux.HandleFunc("GET /api/v1/appointments/{id}/payment", h.payment)
	mux.HandleFunc("GET /api/v1/appointments/{id}/receipt", h.receipt)
	mux.HandleFunc("POST /api/v1/practitioner/payouts/onboard", h.onboard)
	mux.HandleFunc("GET /api/v1/admin/payments", h.adminPayments)
	if page := svc.TestCheckoutHandler(); page != nil {
		mux.Handle("GET "+payments.TestCheckoutPattern, page)
		mux.Handle("POST "+payments.TestCheckoutPattern, page)
	}
}

type paymentHandlers struct {
	*API
	svc *payments.Service
}

// errWebhookBody is a delivery whose body cannot be read whole.
var errWebhookBody = problem.New(problem.Invalid, "bad_body", "the webhook body is too large or unreadable")

// webhook receives Stripe's events. The signature is checked on the raw
// body, so it is read untouched; 400 means "never send this again", 503
// "try again later" (Stripe retries for three days), 200 "done".
func (h *paymentHandlers) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, payments.MaxWebhookBody))
	if err != nil {
		writeError(w, r, errWebhookBody.Wrap(err))
		return
	}
	if err := h.svc.HandleWebhook(r.Context(), body, r.Header.Get("Stripe-Signature")); err != nil {
		if errors.Is(err, payments.ErrBadSignature) {
			h.Log.Warn("stripe webhook refused", "request_id", requestID(r.Context()), "err", err)
		}
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"received": true})
}

// payment shows where the payment of an appointment stands (with the
// checkout link for its patient while it is open).
func (h *paymentHandlers) payment(w http.ResponseWriter, r *http.Request) {
	acct, err := h.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	v, err := h.svc.ViewFor(r.Context(), r.PathValue("id"), acct.ID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// receipt sends the PDF receipt of a paid appointment to its patient;
// anyone else, or an appointment not (yet) charged, gets 404.
func (h *paymentHandlers) receipt(w http.ResponseWriter, r *http.Request) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return
	}
	pdf, err := h.svc.Receipt(r.Context(), h.actor(r), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pdf")
	w.Header().Set("Content-Disposition", `attachment; filename="receipt.pdf"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(pdf)
}

// onboard returns the Stripe Connect onboarding link of the logged-in
// practitioner's payout account.
func (h *paymentHandlers) onboard(w http.ResponseWriter, r *http.Request) {
	acct, err := h.accountWithRole(r, "practitioner")
	if err != nil {
		writeError(w, r, err)
		return
	}
	url, err := h.svc.OnboardingLink(r.Context(), acct.ID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"url": url})
}

// adminPayments lists recent payments for operators, optionally those in
// one state (?status=failed).
func (h *paymentHandlers) adminPayments(w http.ResponseWriter, r *http.Request) {
	if _, err := h.accountWithRole(r, "admin"); err != nil {
		writeError(w, r, err)
		return
	}
	ps, err := h.svc.Recent(r.Context(), r.URL.Query().Get("status"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"payments": ps})
}
