package httpapi

import (
	"io"
	"net/http"
	"strconv"
	"strings"

	"teleconsult/rx"
)

// prescriptionRoutes registers the prescription routes served by svc:
// writing and signing (practitioner), reading, the PDF and FHIR (patient,
// prescriber, the pharmacy it was sent to), sending to a pharmacy
// (patient), and the pharmacy inbox and dispensing flow (pharmacist).
// The pharmacy directory (GET /api/v1/pharmacies) is booking's.
func (a *API) prescriptionRoutes(mux *http.ServeMux, svc *rx.Service) {
	h := &prescriptionHandlers{API: a, svc: svc}
	mux.HandleFunc("POST /api/v1/appointments/{id}/prescriptions", h.create)
	mux.HandleFunc("GET /api/v1/prescriptions", h.list)
	mux.HandleFunc("GET /api/v1/prescriptions/authority.pem", h.authority)
	mux.HandleFunc("GET /api/v1/prescriptions/{id}", h.get)
	mux.HandleFunc("PUT /api/v1/prescriptions/{id}", h.update)
	mux.HandleFunc("POST /api/v1/prescriptions/{id}/sign", h.sign)
	mux.HandleFunc("POST /api/v1/prescriptions/{id}/cancel", h.cancel)
	mux.HandleFunc("POST /api/v1/prescriptions/{id}/correct", h.correct)
	mux.HandleFunc("POST /api/v1/prescriptions/{id}/send", h.send)
	mux.HandleFunc("GET /api/v1/prescriptions/{id}/pdf", h.pdf)
	mux.HandleFunc("GET /api/v1/prescriptions/{id}/preview.pdf", h.preview)
	mux.HandleFunc("GET /api/v1/prescriptions/{id}/fhir", h.fhir)
	mux.HandleFunc("GET /api/v1/prescriptions/{id}/dispenses", h.dispenses)
	mux.HandleFunc("GET /api/v1/pharmacy/prescriptions", h.inbox)
	mux.HandleFunc("POST /api/v1/pharmacy/prescriptions/accept", h.accept)
	mux.HandleFunc("POST /api/v1/pharmacy/prescriptions/verify", h.verify)
	mux.HandleFunc("POST /api/v1/pharmacy/prescriptions/{id}/dispense", h.dispense)
	mux.HandleFunc("POST /api/v1/pharmacy/prescriptions/{id}/reject", h.reject)
}

type prescriptionHandlers struct {
	*API
	svc *rx.Service
}

// caller returns the logged-in caller as the prescription service sees
// it, or writes 401.
func (h *prescriptionHandlers) caller(w http.ResponseWriter, r *http.Request) (rx.Caller, bool) {
	if _, err := h.account(r); err != nil {
		writeError(w, r, err)
		return rx.Caller{}, false
	}
	return h.actor(r), true
}

// reply writes v as JSON with status, or the error.
func (h *prescriptionHandlers) reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

func (h *prescriptionHandlers) create(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	var c rx.Content
	if err := decodeJSON(w, r, &c); err != nil {
		writeError(w, r, err)
		return
	}
	v, err := h.svc.Create(r.Context(), who, r.PathValue("id"), c)
	h.reply(w, r, http.StatusCreated, v, err)
}

func (h *prescriptionHandlers) update(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	var c rx.Content
	if err := decodeJSON(w, r, &c); err != nil {
		writeError(w, r, err)
		return
	}
	v, err := h.svc.Update(r.Context(), who, r.PathValue("id"), c)
	h.reply(w, r, http.StatusOK, v, err)
}

func (h *prescriptionHandlers) correct(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	var c rx.Content
	if err := decodeJSON(w, r, &c); err != nil {
		writeError(w, r, err)
		return
	}
	v, err := h.svc.Correct(r.Context(), who, r.PathValue("id"), c)
	h.reply(w, r, http.StatusCreated, v, err)
}

func (h *prescriptionHandlers) sign(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	v, err := h.svc.Sign(r.Context(), who, r.PathValue("id"))
	h.reply(w, r, http.StatusOK, v, err)
}

func (h *prescriptionHandlers) cancel(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	v, err := h.svc.Cancel(r.Context(), who, r.PathValue("id"))
	h.reply(w, r, http.StatusOK, v, err)
}

func (h *prescriptionHandlers) list(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	vs, err := h.svc.List(r.Context(), who)
	h.reply(w, r, http.StatusOK, map[string]any{"results": vs}, err)
}

func (h *prescriptionHandlers) get(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	v, err := h.svc.Get(r.Context(), who, r.PathValue("id"))
	h.reply(w, r, http.StatusOK, v, err)
}

func (h *prescriptionHandlers) pdf(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	pdf, name, err := h.svc.PDF(r.Context(), who, r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/pdf")
	hd.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	hd.Set("Content-Length", strconv.Itoa(len(pdf)))
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(pdf)
}

// preview serves the prescriber a draft rendered as a PDF marked "not
// valid for dispensing", shown inline in a frame of the call page: the
// one response the site's own pages may frame.
func (h *prescriptionHandlers) preview(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	pdf, err := h.svc.Preview(r.Context(), who, r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/pdf")
	hd.Set("Content-Disposition", `inline; filename="brouillon-ordonnance.pdf"`)
	hd.Set("Content-Length", strconv.Itoa(len(pdf)))
	hd.Set("Cache-Control", "no-store")
	// Framed by the site's own pages only. Chromium shows a PDF in a page
	// it makes up: an <embed> of this URL (object-src 'self') styled
	// inline (style-src 'unsafe-inline'); default-src 'none' alone leaves
	// the frame blank or cut short. Nothing else is allowed.
	hd.Set("Content-Security-Policy", "default-src 'none'; object-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'")
	hd.Set("X-Frame-Options", "SAMEORIGIN")
	w.WriteHeader(http.StatusOK)
	w.Write(pdf)
}

func (h *prescriptionHandlers) fhir(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	b, err := h.svc.FHIR(r.Context(), who, r.PathValue("id"), h.BaseURL+"/fhir")
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeFHIR(w, http.StatusOK, b)
}

func (h *prescriptionHandlers) dispenses(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	ds, err := h.svc.Dispenses(r.Context(), who, r.PathValue("id"))
	h.reply(w, r, http.StatusOK, map[string]any{"results": ds}, err)
}

// authority serves the certificate of the authority prescriptions are
// signed under, for pharmacies to import into their PDF reader.
func (h *prescriptionHandlers) authority(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="prescriptions-ca.pem"`)
	w.WriteHeader(http.StatusOK)
	w.Write(h.svc.Authority().CertPEM)
}

func (h *prescriptionHandlers) send(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	var body struct {
		PharmacyID string `json:"pharmacy_id"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		writeError(w, r, err)
		return
	}
	if body.PharmacyID == "" {
		writeError(w, r, missing("pharmacy_id"))
		return
	}
	v, err := h.svc.Send(r.Context(), who, r.PathValue("id"), body.PharmacyID)
	h.reply(w, r, http.StatusOK, v, err)
}

func (h *prescriptionHandlers) inbox(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	vs, err := h.svc.Inbox(r.Context(), who)
	h.reply(w, r, http.StatusOK, map[string]any{"results": vs}, err)
}

func (h *prescriptionHandlers) accept(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	var body struct {
		Number     string `json:"number"`
		AccessCode string `json:"access_code"`
		QR         string `json:"qr"` // the scanned QR code, instead of number and access_code
	}
	if err := decodeJSON(w, r, &body); err != nil {
		writeError(w, r, err)
		return
	}
	if body.QR != "" {
		n, c, ok := rx.ParseQR(body.QR)
		if !ok {
			writeError(w, r, rx.ErrInvalid.With("this QR code is not a prescription's"))
			return
		}
		body.Number, body.AccessCode = n, c
	}
	acc, err := h.svc.Accept(r.Context(), who, body.Number, body.AccessCode)
	h.reply(w, r, http.StatusOK, acc, err)
}

func (h *prescriptionHandlers) dispense(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	var body struct {
		Secret string             `json:"secret"`
		Items  []rx.DispensedItem `json:"items"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		writeError(w, r, err)
		return
	}
	if body.Secret == "" {
		writeError(w, r, missing("secret"))
		return
	}
	d, err := h.svc.Dispense(r.Context(), who, r.PathValue("id"), body.Secret, body.Items)
	h.reply(w, r, http.StatusOK, d, err)
}

func (h *prescriptionHandlers) reject(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	var body struct {
		Secret string `json:"secret"`
	}
	if err := decodeJSON(w, r, &body); err != nil {
		writeError(w, r, err)
		return
	}
	if body.Secret == "" {
		writeError(w, r, missing("secret"))
		return
	}
	v, err := h.svc.Reject(r.Context(), who, r.PathValue("id"), body.Secret)
	h.reply(w, r, http.StatusOK, v, err)
}

// maxPrescriptionPDF bounds an uploaded PDF to verify; ours are tens of
// kilobytes.
const maxPrescriptionPDF = 4 << 20

// verify tells a pharmacist whether the uploaded PDF (the request body,
// Content-Type application/pdf) is exactly a prescription signed here.
func (h *prescriptionHandlers) verify(w http.ResponseWriter, r *http.Request) {
	who, ok := h.caller(w, r)
	if !ok {
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/pdf") {
		writeError(w, r, rx.ErrInvalid.With("send the PDF as the request body, with Content-Type: application/pdf"))
		return
	}
	pdf, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPrescriptionPDF))
	if err != nil {
		writeError(w, r, rx.ErrInvalid.With("the PDF is too large or could not be read"))
		return
	}
	v, err := h.svc.VerifyDocument(r.Context(), who, pdf)
	h.reply(w, r, http.StatusOK, v, err)
}
