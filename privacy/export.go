package privacy

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"teleconsult/audit"
	"teleconsult/problem"
	"teleconsult/store"
	"teleconsult/vault"
)

// Export is everything held about an account, as written to data.json in
// the export zip. Files (prescription PDFs, receipts) are beside it in the
// zip under the names the JSON gives.
type Export struct {
	GeneratedAt   time.Time               `json:"generated_at"`
	Account       ExportAccount           `json:"account"`
	Profiles      []ExportProfile         `json:"profiles"`
	Appointments  []ExportAppointment     `json:"appointments"`
	Prescriptions []ExportPrescription    `json:"prescriptions"`
	Payments      []ExportPayment         `json:"payments"`
	Notifications store.NotificationPrefs `json:"notification_preferences"`
	AccessLog     []ExportAccess          `json:"access_log"`
	Sessions      []ExportSession         `json:"sessions"`
}

// ExportAccount is the account itself.
type ExportAccount struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Language  string    `json:"language"`
	Phone     string    `json:"phone"`
	TwoFactor bool      `json:"two_factor_enabled"`
	CreatedAt time.Time `json:"created_at"`
}

// ExportProfile is the patient or a relative.
type ExportProfile struct {
	store.PatientProfile
	Measurements json.RawMessage `json:"measurements,omitempty"`
}

// ExportAppointment is an appointment with its reasons, history and chat.
type ExportAppointment struct {
	store.Appointment
	PractitionerName string                   `json:"practitioner_name"`
	Reason           string                   `json:"reason"`
	CancelReason     string                   `json:"cancel_reason,omitempty"`
	History          []store.AppointmentEvent `json:"history"`
	Chat             []ExportChatLine         `json:"chat"`
}

// ExportChatLine is a line of a consultation's chat.
type ExportChatLine struct {
	At   time.Time `json:"at"`
	Role string    `json:"from_role"`
	Name string    `json:"from_name"`
	Text string    `json:"text"`
}

// ExportPrescription is a prescription with its content and its PDF.
type ExportPrescription struct {
	ID               string           `json:"id"`
	AppointmentID    string           `json:"appointment_id"`
	PractitionerName string           `json:"practitioner_name"`
	Status           string           `json:"status"`
	Number           string           `json:"number,omitempty"`
	AccessCode       string           `json:"access_code,omitempty"`
	SignedAt         *time.Time       `json:"signed_at,omitempty"`
	ValidUntil       *time.Time       `json:"valid_until,omitempty"`
	Content          json.RawMessage  `json:"content"`
	Document         string           `json:"document,omitempty"` // file in the zip
	Dispenses        []ExportDispense `json:"dispenses"`
}

// ExportDispense is one delivery of a prescription by a pharmacy.
type ExportDispense struct {
	At         time.Time       `json:"at"`
	PharmacyID string          `json:"pharmacy_id"`
	Items      json.RawMessage `json:"items"`
}

// ExportPayment is a payment, without the processor's internals.
type ExportPayment struct {
	AppointmentID  string     `json:"appointment_id"`
	State          string     `json:"state"`
	Amount         int64      `json:"amount"`
	Currency       string     `json:"currency"`
	AmountCaptured int64      `json:"amount_captured"`
	AmountRefunded int64      `json:"amount_refunded"`
	AuthorizedAt   *time.Time `json:"authorized_at,omitempty"`
	CapturedAt     *time.Time `json:"captured_at,omitempty"`
	RefundedAt     *time.Time `json:"refunded_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	Receipt        string     `json:"receipt,omitempty"` // file in the zip
}

// ExportAccess is one entry of the record of who accessed the data.
type ExportAccess struct {
	At         time.Time `json:"at"`
	ActorID    string    `json:"actor_id,omitempty"`
	ActorRole  string    `json:"actor_role"`
	Action     string    `json:"action"`
	ObjectType string    `json:"object_type"`
	ObjectID   string    `json:"object_id"`
	Outcome    string    `json:"outcome"`
}

// ExportSession is a login session (its token is never stored, only its
// hash, of which the first bytes identify it).
type ExportSession struct {
	ID         string     `json:"id"`
	CreatedAt  time.Time  `json:"created_at"`
	LastSeenAt time.Time  `json:"last_seen_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	IP         string     `json:"ip"`
	UserAgent  string     `json:"user_agent"`
}

// exportAccessLimit bounds the access log in an export (the newest).
const exportAccessLimit = 100000

// files collects the PDFs that go beside data.json.
type files map[string][]byte

// Gather reads everything held about the caller's account, opening the
// sealed values, and returns it with the files for the zip. It records
// the export in the audit log.
func (s *Service) Gather(ctx context.Context, who audit.Actor) (Export, map[string][]byte, error) {
	q := s.db.Pool
	acct, err := store.AccountByID(ctx, q, who.ID)
	if err != nil {
		return Export{}, nil, err
	}
	out := Export{GeneratedAt: s.now().UTC(), Account: ExportAccount{ID: acct.ID, Email: acct.Email, Name: acct.Name,
		Role: acct.Role, Language: acct.Language, Phone: acct.Phone, TwoFactor: acct.TOTPEnabled, CreatedAt: acct.CreatedAt}}
	fs := files{}
	names := nameCache{q: q, m: map[string]string{}}

	profiles, err := store.ProfilesOf(ctx, q, acct.ID)
	if err != nil {
		return Export{}, nil, err
	}
	for _, p := range profiles {
		ep := ExportProfile{PatientProfile: p}
		if p.Measurements != nil {
			b, err := s.vault.Open(ctx, q, vault.AAD{Table: "patient_profiles", Column: "measurements", RowID: p.ID}, p.Measurements)
			if err != nil {
				return Export{}, nil, fmt.Errorf("privacy: export profile: %w", err)
			}
			ep.Measurements = rawJSON(b)
		}
		out.Profiles = append(out.Profiles, ep)
	}

	appts, err := store.AllAppointmentsOfPatient(ctx, q, acct.ID)
	if err != nil {
		return Export{}, nil, err
	}
	for _, a := range appts {
		ea := ExportAppointment{Appointment: a, PractitionerName: names.of(ctx, a.PractitionerID)}
		if ea.Reason, err = s.vault.OpenString(ctx, q, vault.AAD{Table: "appointments", Column: "reason", RowID: a.ID}, a.Reason); err != nil {
			return Export{}, nil, fmt.Errorf("privacy: export appointment reason: %w", err)
		}
		if ea.CancelReason, err = s.vault.OpenString(ctx, q, vault.AAD{Table: "appointments", Column: "cancel_reason", RowID: a.ID}, a.CancelReason); err != nil {
			return Export{}, nil, fmt.Errorf("privacy: export cancel reason: %w", err)
		}
		if ea.History, err = store.AppointmentEvents(ctx, q, a.ID); err != nil {
			return Export{}, nil, err
		}
		lines, err := store.ConsultMessages(ctx, q, a.ID)
		if err != nil {
			return Export{}, nil, err
		}
		ea.Chat = []ExportChatLine{}
		for _, m := range lines {
			text, err := s.vault.OpenString(ctx, q, vault.AAD{Table: "consult_messages", Column: "body", RowID: m.ID}, m.Body)
			if err != nil {
				return Export{}, nil, fmt.Errorf("privacy: export chat: %w", err)
			}
			ea.Chat = append(ea.Chat, ExportChatLine{At: m.SentAt, Role: m.SenderRole, Name: m.SenderName, Text: text})
		}
		out.Appointments = append(out.Appointments, ea)
	}

	rxs, err := store.AllPrescriptionsOfPatient(ctx, q, acct.ID)
	if err != nil {
		return Export{}, nil, err
	}
	for _, p := range rxs {
		if p.SignedAt == nil {
			continue // a draft is the practitioner's work in progress, not yet a prescription
		}
		ep, err := s.exportPrescription(ctx, p, fs)
		if err != nil {
			return Export{}, nil, err
		}
		ep.PractitionerName = names.of(ctx, p.PractitionerID)
		out.Prescriptions = append(out.Prescriptions, ep)
	}

	pays, err := store.PaymentsOfPatient(ctx, q, acct.ID)
	if err != nil {
		return Export{}, nil, err
	}
	for _, p := range pays {
		ep := ExportPayment{AppointmentID: p.AppointmentID, State: p.State, Amount: p.Amount, Currency: p.Currency,
			AmountCaptured: p.AmountCaptured, AmountRefunded: p.AmountRefunded, AuthorizedAt: p.AuthorizedAt,
			CapturedAt: p.CapturedAt, RefundedAt: p.RefundedAt, CreatedAt: p.CreatedAt}
		if pdf, err := s.receipt(ctx, who, p); err != nil {
			return Export{}, nil, err
		} else if pdf != nil {
			ep.Receipt = "receipts/" + p.AppointmentID + ".pdf"
			fs[ep.Receipt] = pdf
		}
		out.Payments = append(out.Payments, ep)
	}

	if out.Notifications, err = store.GetNotificationPrefs(ctx, q, acct.ID); err != nil {
		return Export{}, nil, err
	}
	rows, err := audit.ForSubject(ctx, q, acct.ID, exportAccessLimit)
	if err != nil {
		return Export{}, nil, err
	}
	for _, r := range rows {
		e := ExportAccess{At: r.At, ActorRole: r.ActorRole, Action: r.Action, ObjectType: r.ObjectType, ObjectID: r.ObjectID, Outcome: r.Outcome}
		if r.ActorID != nil {
			e.ActorID = *r.ActorID
		}
		out.AccessLog = append(out.AccessLog, e)
	}
	sessions, err := store.SessionsOfAccount(ctx, q, acct.ID)
	if err != nil {
		return Export{}, nil, err
	}
	for _, se := range sessions {
		out.Sessions = append(out.Sessions, ExportSession{ID: hex.EncodeToString(se.TokenHash[:8]), CreatedAt: se.CreatedAt,
			LastSeenAt: se.LastSeenAt, ExpiresAt: se.ExpiresAt, RevokedAt: se.RevokedAt, IP: se.IP, UserAgent: se.UserAgent})
	}
	err = audit.Record(ctx, q, audit.Entry{Actor: who, Action: "export", ObjectType: "account", ObjectID: acct.ID,
		SubjectID: subjectOf(acct), Outcome: audit.OK})
	return out, fs, err
}

// subjectOf is the audit subject of an account's own data: patients only.
func subjectOf(a store.Account) string {
	if a.Role == "patient" {
		return a.ID
	}
	return ""
}

func (s *Service) exportPrescription(ctx context.Context, p store.Prescription, fs files) (ExportPrescription, error) {
	q := s.db.Pool
	ep := ExportPrescription{ID: p.ID, AppointmentID: p.AppointmentID, Status: p.Status, SignedAt: p.SignedAt, ValidUntil: p.ValidUntil,
		Dispenses: []ExportDispense{}}
	if p.Number != nil {
		ep.Number = *p.Number
	}
	content, err := s.vault.Open(ctx, q, vault.AAD{Table: "prescriptions", Column: "content", RowID: p.ID}, p.Content)
	if err != nil {
		return ep, fmt.Errorf("privacy: export prescription: %w", err)
	}
	ep.Content = rawJSON(content)
	if p.AccessCode != nil {
		if ep.AccessCode, err = s.vault.OpenString(ctx, q, vault.AAD{Table: "prescriptions", Column: "access_code", RowID: p.ID}, p.AccessCode); err != nil {
			return ep, fmt.Errorf("privacy: export prescription: %w", err)
		}
	}
	sealed, err := store.PrescriptionDocument(ctx, q, p.ID)
	if err == nil {
		pdf, err := s.vault.Open(ctx, q, vault.AAD{Table: "prescriptions", Column: "document", RowID: p.ID}, sealed)
		if err != nil {
			return ep, fmt.Errorf("privacy: export prescription document: %w", err)
		}
		ep.Document = "prescriptions/" + fileName(ep.Number, p.ID) + ".pdf"
		fs[ep.Document] = pdf
	} else if !errors.Is(err, store.ErrNotFound) {
		return ep, err
	}
	ds, err := store.DispensesOf(ctx, q, p.ID)
	if err != nil {
		return ep, err
	}
	for _, d := range ds {
		items, err := s.vault.Open(ctx, q, vault.AAD{Table: "prescription_dispenses", Column: "items", RowID: d.ID}, d.Items)
		if err != nil {
			return ep, fmt.Errorf("privacy: export dispense: %w", err)
		}
		ep.Dispenses = append(ep.Dispenses, ExportDispense{At: d.DispensedAt, PharmacyID: d.PharmacyID, Items: rawJSON(items)})
	}
	return ep, nil
}

// receipt returns the receipt of a captured payment, nil when there is none.
func (s *Service) receipt(ctx context.Context, who audit.Actor, p store.Payment) ([]byte, error) {
	if s.receipts == nil || p.AmountCaptured == 0 {
		return nil, nil
	}
	pdf, err := s.receipts.Receipt(ctx, who, p.AppointmentID)
	if problem.KindOf(err) == problem.NotFound {
		return nil, nil
	}
	return pdf, err
}

func fileName(number, id string) string {
	if number != "" {
		return number
	}
	return id
}

// rawJSON keeps b as JSON when it is, else as a JSON string.
func rawJSON(b []byte) json.RawMessage {
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

type nameCache struct {
	q store.Q
	m map[string]string
}

func (n nameCache) of(ctx context.Context, id string) string {
	if name, ok := n.m[id]; ok {
		return name
	}
	name := store.ErasedName
	if a, err := store.AccountByID(ctx, n.q, id); err == nil {
		name = a.Name
	}
	n.m[id] = name
	return name
}

// Zip writes the export as a zip: data.json and the PDFs.
func Zip(e Export, fs map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "data.json", Method: zip.Deflate, Modified: e.GeneratedAt})
	if err != nil {
		return nil, err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	for name, b := range fs {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, Modified: e.GeneratedAt})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Export returns the caller's data as a zip (see Gather).
func (s *Service) Export(ctx context.Context, who audit.Actor) ([]byte, error) {
	e, fs, err := s.Gather(ctx, who)
	if err != nil {
		return nil, err
	}
	return Zip(e, fs)
}
