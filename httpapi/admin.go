package httpapi

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/auth"
	"teleconsult/booking"
	"teleconsult/problem"
	"teleconsult/store"
)

// Problems of the admin routes.
var (
	// ErrInvalidFields lists every field of a form that is not valid.
	ErrInvalidFields = problem.New(problem.Invalid, "invalid_fields", "some fields are not valid")
	// ErrPharmacyExists is a pharmacy already listed at that address.
	ErrPharmacyExists = problem.New(problem.Conflict, "pharmacy_exists", "this pharmacy is already listed at this address")
	// ErrAdminQuery is a bad filter on an admin listing.
	ErrAdminQuery = problem.New(problem.Invalid, "admin_query_invalid", "the filter is not valid")
)

// adminRoutes serves the operators' directory management (practitioners
// and pharmacies) and the failed Stripe webhook deliveries.
func (a *API) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/admin/practitioners", a.adminPractitioners)
	mux.HandleFunc("POST /api/v1/admin/practitioners", a.adminCreatePractitioner)
	mux.HandleFunc("GET /api/v1/admin/pharmacies", a.adminPharmacies)
	mux.HandleFunc("POST /api/v1/admin/pharmacies", a.adminCreatePharmacy)
	mux.HandleFunc("GET /api/v1/admin/webhooks", a.adminWebhooks)
}

// adminOnly returns the caller's account if it is an administrator: 401
// without a session, 404 for any other role, as every route answers a
// role it does not serve (accountWithRole).
func (a *API) adminOnly(r *http.Request) (*auth.Account, error) {
	return a.accountWithRole(r, auth.RoleAdmin)
}

// adminListLimit is the length of the admin lists.
const adminListLimit = 200

var (
	postcodeFR = regexp.MustCompile(`^[0-9]{5}$`)
	rppsNumber = regexp.MustCompile(`^[0-9]{11}$`)
	phoneRe    = regexp.MustCompile(`^\+?[0-9][0-9 .()-]{5,28}$`)
)

// fieldErrors collects what is wrong with each field of a form, in the
// order the fields were checked.
type fieldErrors struct {
	order []string
	msg   map[string]string
}

func (f *fieldErrors) add(field, msg string) {
	if f.msg == nil {
		f.msg = map[string]string{}
	}
	if _, ok := f.msg[field]; ok {
		return
	}
	f.order = append(f.order, field)
	f.msg[field] = msg
}

// err is nil when every field is valid, or one 400 problem whose message
// names each bad field ("rpps: the RPPS number has 11 digits; ...").
func (f *fieldErrors) err() error {
	if len(f.order) == 0 {
		return nil
	}
	parts := make([]string, len(f.order))
	for i, k := range f.order {
		parts[i] = k + ": " + f.msg[k]
	}
	return ErrInvalidFields.With(strings.Join(parts, "; "))
}

// text trims s and checks it is present (when required) and at most max
// characters long.
func (f *fieldErrors) text(field string, s *string, required bool, max int) {
	*s = strings.TrimSpace(*s)
	switch {
	case *s == "" && required:
		f.add(field, "required")
	case utf8.RuneCountInString(*s) > max:
		f.add(field, "at most "+strconv.Itoa(max)+" characters")
	case strings.ContainsAny(*s, "\r\n\x00"):
		f.add(field, "must be on one line")
	}
}

// place checks an address, postcode and city of the directory.
func (f *fieldErrors) place(address, postcode, city *string) {
	f.text("address", address, true, 300)
	f.text("postcode", postcode, true, 5)
	if _, bad := f.msg["postcode"]; !bad && !postcodeFR.MatchString(*postcode) {
		f.add("postcode", "a postcode has 5 digits")
	}
	f.text("city", city, true, 100)
}

type newPractitioner struct {
	Name      string `json:"name"`
	Email     string `json:"email"`
	Password  string `json:"password"`
	Specialty string `json:"specialty"`
	RPPS      string `json:"rpps"`
	Address   string `json:"address"`
	Postcode  string `json:"postcode"`
	City      string `json:"city"`
}

// check validates every field, normalising the email.
func (in *newPractitioner) check() error {
	var f fieldErrors
	f.text("name", &in.Name, true, 200)
	if email, err := auth.NormalizeEmail(in.Email); err != nil {
		f.add("email", "not a valid email address")
	} else {
		in.Email = email
	}
	if err := auth.CheckPassword(in.Password); err != nil {
		f.add("password", problem.As(err).Message)
	}
	if _, ok := booking.SpecialtyByCode(in.Specialty); !ok {
		f.add("specialty", "unknown specialty (see /api/v1/specialties)")
	}
	in.RPPS = strings.TrimSpace(in.RPPS)
	if !rppsNumber.MatchString(in.RPPS) {
		f.add("rpps", "the RPPS number has 11 digits")
	}
	f.place(&in.Address, &in.Postcode, &in.City)
	return f.err()
}

// adminCreatePractitioner creates a practitioner's account and directory
// entry in one transaction: 201 with the practitioner, 409 when the email
// has an account already.
func (a *API) adminCreatePractitioner(w http.ResponseWriter, r *http.Request) {
	if _, err := a.adminOnly(r); err != nil {
		writeError(w, r, err)
		return
	}
	var in newPractitioner
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if err := in.check(); err != nil {
		writeError(w, r, err)
		return
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var out store.AdminPractitioner
	err = a.DB.Tx(r.Context(), func(tx pgx.Tx) error {
		acct, err := store.InsertAccount(r.Context(), tx, in.Email, in.Name, auth.RolePractitioner, hash, "fr")
		if store.ConstraintViolated(err, store.AccountsConstraintEmail) {
			return auth.ErrEmailTaken
		}
		if err != nil {
			return err
		}
		p := booking.DefaultPractitioner(acct.ID)
		p.Specialty, p.RPPS, p.Address, p.Postcode, p.City = in.Specialty, in.RPPS, in.Address, in.Postcode, in.City
		if err := store.UpsertPractitioner(r.Context(), tx, p); err != nil {
			return err
		}
		out = store.AdminPractitioner{ID: acct.ID, Name: acct.Name, Email: acct.Email, Specialty: p.Specialty, RPPS: p.RPPS,
			Address: p.Address, Postcode: p.Postcode, City: p.City, CreatedAt: acct.CreatedAt}
		return audit.Record(r.Context(), tx, audit.Entry{Actor: a.actor(r), Action: "create",
			ObjectType: "practitioner", ObjectID: acct.ID, Detail: "admin created practitioner account and directory entry"})
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) adminPractitioners(w http.ResponseWriter, r *http.Request) {
	if _, err := a.adminOnly(r); err != nil {
		writeError(w, r, err)
		return
	}
	ps, err := store.ListPractitionersForAdmin(r.Context(), a.DB.Pool, adminListLimit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if ps == nil {
		ps = []store.AdminPractitioner{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"practitioners": ps})
}

type newPharmacy struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Postcode string `json:"postcode"`
	City     string `json:"city"`
	Phone    string `json:"phone"`
}

func (in *newPharmacy) check() error {
	var f fieldErrors
	f.text("name", &in.Name, true, 200)
	f.place(&in.Address, &in.Postcode, &in.City)
	f.text("phone", &in.Phone, true, 30)
	if _, bad := f.msg["phone"]; !bad && !phoneRe.MatchString(in.Phone) {
		f.add("phone", "a phone number has digits, spaces, dots or dashes, with an optional leading +")
	}
	return f.err()
}

// adminCreatePharmacy adds a pharmacy to the directory: 201 with it, 409
// when one of that name is listed at that address.
func (a *API) adminCreatePharmacy(w http.ResponseWriter, r *http.Request) {
	if _, err := a.adminOnly(r); err != nil {
		writeError(w, r, err)
		return
	}
	var in newPharmacy
	if err := decodeJSON(w, r, &in); err != nil {
		writeError(w, r, err)
		return
	}
	if err := in.check(); err != nil {
		writeError(w, r, err)
		return
	}
	var out store.Pharmacy
	err := a.DB.Tx(r.Context(), func(tx pgx.Tx) error {
		if dup, err := store.PharmacyListed(r.Context(), tx, in.Name, in.Address, in.Postcode); err != nil || dup {
			if dup {
				return ErrPharmacyExists
			}
			return err
		}
		var err error
		out, err = store.SavePharmacy(r.Context(), tx, store.Pharmacy{Name: in.Name, Address: in.Address, Postcode: in.Postcode, City: in.City, Phone: in.Phone})
		if err != nil {
			return err
		}
		return audit.Record(r.Context(), tx, audit.Entry{Actor: a.actor(r), Action: "create",
			ObjectType: "pharmacy", ObjectID: out.ID, Detail: "admin created pharmacy"})
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) adminPharmacies(w http.ResponseWriter, r *http.Request) {
	if _, err := a.adminOnly(r); err != nil {
		writeError(w, r, err)
		return
	}
	ps, err := store.ListPharmaciesForAdmin(r.Context(), a.DB.Pool, adminListLimit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if ps == nil {
		ps = []store.Pharmacy{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"pharmacies": ps})
}

// adminWebhooks lists the Stripe events whose processing failed, newest
// first, with the reason: ?status=failed (never processed since) or
// recovered (a later delivery succeeded); all of them without a status.
func (a *API) adminWebhooks(w http.ResponseWriter, r *http.Request) {
	if _, err := a.adminOnly(r); err != nil {
		writeError(w, r, err)
		return
	}
	status := r.URL.Query().Get("status")
	if status != "" && status != store.WebhookFailed && status != store.WebhookRecovered {
		writeError(w, r, ErrAdminQuery.Withf("status must be %s or %s", store.WebhookFailed, store.WebhookRecovered))
		return
	}
	hooks, err := store.ListWebhookFailures(r.Context(), a.DB.Pool, status, adminListLimit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if hooks == nil {
		hooks = []store.WebhookFailure{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": hooks})
}
