package rx

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/booking"
	"teleconsult/problem"
	"teleconsult/store"
	"teleconsult/vault"
)

// Roles of the accounts the service deals with.
const (
	rolePatient      = "patient"
	rolePractitioner = "practitioner"
	rolePharmacist   = "pharmacist"
)

// renewWithin is how long before expiry a practitioner's certificate is
// replaced at the next signature.
const renewWithin = 30 * 24 * time.Hour

// More errors of the service.
var (
	ErrAppointmentState = problem.New(problem.Conflict, "appointment_not_consulted", "a prescription can only be written for a consultation that takes place or took place")
	ErrNoPatientProfile = problem.New(problem.Conflict, "patient_profile_missing", "the patient's profile (surname, first names, sex, date of birth) is missing; the patient must complete it")
	ErrAlreadyCorrected = problem.New(problem.Conflict, "already_corrected", "this prescription already has a correction")
)

// Service writes, signs, sends and dispenses prescriptions. It is safe
// for concurrent use.
type Service struct {
	db    *store.DB
	vault *vault.Vault
	ca    *Authority
	now   func() time.Time

	mu       sync.Mutex
	receipts *SigningIdentity        // signs dispense receipts; issued on first use
	signers  map[string]parsedSigner // practitioners' identities as last parsed, by account id
}

// NewService returns the prescription service. now is the clock (nil
// means time.Now).
func NewService(db *store.DB, v *vault.Vault, ca *Authority, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, vault: v, ca: ca, now: now}
}

// Authority returns the certificate authority prescriptions chain to.
func (s *Service) Authority() *Authority { return s.ca }

// sealedContent is what the content column holds: the practitioner's
// items and instructions with the prescriber and patient blocks.
type sealedContent struct {
	Content
	Prescriber Prescriber `json:"prescriber"`
	Patient    Patient    `json:"patient"`
}

func contentAAD(id string) vault.AAD {
	return vault.AAD{Table: "prescriptions", Column: "content", RowID: id}
}

func accessCodeAAD(id string) vault.AAD {
	return vault.AAD{Table: "prescriptions", Column: "access_code", RowID: id}
}

func documentAAD(id string) vault.AAD {
	return vault.AAD{Table: "prescriptions", Column: "document", RowID: id}
}

func signingKeyAAD(practitionerID string) vault.AAD {
	return vault.AAD{Table: "rx_signing_keys", Column: "key_sealed", RowID: practitionerID}
}

// View is a prescription as its readers see it. AccessCode is set for the
// patient (and the pharmacy the patient sent it to) only.
type View struct {
	ID             string     `json:"id"`
	Status         Status     `json:"status"`
	Number         string     `json:"number,omitempty"`
	AccessCode     string     `json:"access_code,omitempty"`
	AppointmentID  string     `json:"appointment_id"`
	Prescriber     Prescriber `json:"prescriber"`
	Patient        Patient    `json:"patient"`
	Items          []Item     `json:"items"`
	Instructions   string     `json:"instructions"`
	Renewals       int        `json:"renewals"`
	DispensedCount int        `json:"dispensed_count"`
	CreatedAt      time.Time  `json:"created_at"`
	SignedAt       *time.Time `json:"signed_at,omitempty"`
	ValidUntil     *time.Time `json:"valid_until,omitempty"`
	CancelledAt    *time.Time `json:"cancelled_at,omitempty"`
	PharmacyID     *string    `json:"pharmacy_id,omitempty"`
	ReplacesID     *string    `json:"replaces_id,omitempty"`
	ReplacedByID   *string    `json:"replaced_by_id,omitempty"`
	DocumentSHA256 string     `json:"document_sha256,omitempty"`
}

// Caller is who asks: an account with its role, and its address for the
// audit log.
type Caller = audit.Actor

// openContent opens a prescription's sealed content.
func (s *Service) openContent(ctx context.Context, q store.Q, p store.Prescription) (sealedContent, error) {
	var c sealedContent
	b, err := s.vault.Open(ctx, q, contentAAD(p.ID), p.Content)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("rx: decode content: %w", err)
	}
	return c, nil
}

func (s *Service) view(ctx context.Context, q store.Q, p store.Prescription, withCode bool) (View, error) {
	c, err := s.openContent(ctx, q, p)
	if err != nil {
		return View{}, err
	}
	v := viewOf(p, c)
	if withCode && p.AccessCode != nil {
		code, err := s.vault.OpenString(ctx, q, accessCodeAAD(p.ID), p.AccessCode)
		if err != nil {
			return View{}, err
		}
		v.AccessCode = FormatAccessCode(code)
	}
	return v, nil
}

// viewOf is the view of p with its content c opened, without access code.
func viewOf(p store.Prescription, c sealedContent) View {
	v := View{
		ID: p.ID, Status: Status(p.Status), AppointmentID: p.AppointmentID,
		Prescriber: c.Prescriber, Patient: c.Patient, Items: c.Items, Instructions: c.Instructions,
		Renewals: c.Renewals(), DispensedCount: p.DispensedCount, CreatedAt: p.CreatedAt,
		SignedAt: p.SignedAt, ValidUntil: p.ValidUntil, CancelledAt: p.CancelledAt, PharmacyID: p.PharmacyID,
		ReplacesID: p.ReplacesID, ReplacedByID: p.ReplacedByID,
	}
	if v.Items == nil {
		v.Items = []Item{}
	}
	if p.Number != nil {
		v.Number = FormatNumber(*p.Number)
	}
	if p.DocumentSHA256 != nil {
		v.DocumentSHA256 = hex.EncodeToString(p.DocumentSHA256)
	}
	return v
}

// deny records a refused access and returns err: the caller sees the
// same answer as for a missing object.
func (s *Service) deny(ctx context.Context, who Caller, action, objectType, objectID, subjectID string, err error) error {
	if aerr := audit.Record(ctx, s.db.Pool, audit.Entry{
		Actor: who, Action: action, ObjectType: objectType, ObjectID: objectID, SubjectID: subjectID, Outcome: audit.Denied,
	}); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// blocks reads the prescriber and patient blocks from their profiles.
func (s *Service) blocks(ctx context.Context, q store.Q, a store.Appointment) (Prescriber, Patient, error) {
	pr, err := store.PractitionerByID(ctx, q, a.PractitionerID)
	if err != nil {
		return Prescriber{}, Patient{}, ErrNoSigningIdentity.With("the practitioner profile (specialty, RPPS number) is missing").Wrap(err)
	}
	acct, err := store.AccountByID(ctx, q, a.PractitionerID)
	if err != nil {
		return Prescriber{}, Patient{}, err
	}
	prescriber := prescriberOf(a.PractitionerID, pr, acct)
	var prof store.PatientProfile
	if a.ProfileID != nil {
		prof, err = store.ProfileByID(ctx, q, *a.ProfileID)
	} else {
		prof, err = store.SelfProfile(ctx, q, a.PatientID)
	}
	if err != nil {
		if problem.KindOf(err) == problem.NotFound {
			return prescriber, Patient{}, ErrNoPatientProfile
		}
		return prescriber, Patient{}, err
	}
	patient, err := s.patientOf(ctx, q, a.PatientID, prof)
	return prescriber, patient, err
}

// prescriberOf is the prescriber block of a practitioner's profile and
// account.
func prescriberOf(accountID string, pr store.Practitioner, acct store.Account) Prescriber {
	specialty := pr.Specialty
	if sp, ok := booking.SpecialtyByCode(pr.Specialty); ok {
		specialty = sp.FR
	}
	address := pr.Address
	if city := strings.TrimSpace(strings.TrimSpace(pr.Postcode) + " " + strings.TrimSpace(pr.City)); city != "" {
		address += "\n" + city
	}
	prescriber := Prescriber{
		AccountID: accountID, Name: acct.Name, Specialty: specialty, RPPS: pr.RPPS,
		Address: strings.TrimSpace(address), Phone: pr.Phone, Email: acct.Email,
	}
	if prescriber.Phone == "" {
		prescriber.Phone = acct.Phone
	}
	return prescriber
}

// patientOf is the patient block of a profile, its measurements opened.
func (s *Service) patientOf(ctx context.Context, q store.Q, patientID string, prof store.PatientProfile) (Patient, error) {
	patient := Patient{
		AccountID: patientID, Surname: prof.FamilyName, FirstNames: prof.GivenNames, Sex: prof.Sex,
		BirthDate: prof.BirthDate.Format(time.DateOnly),
	}
	if prof.Measurements != nil {
		b, err := s.vault.Open(ctx, q, vault.AAD{Table: "patient_profiles", Column: "measurements", RowID: prof.ID}, prof.Measurements)
		if err != nil {
			return Patient{}, err
		}
		var m struct {
			WeightKg float64 `json:"weight_kg"`
			HeightCm float64 `json:"height_cm"`
		}
		// Measurements are optional on a prescription: an unreadable
		// record leaves them out rather than blocking the prescription.
		if json.Unmarshal(b, &m) == nil {
			patient.WeightKg, patient.HeightCm = m.WeightKg, m.HeightCm
		}
	}
	return patient, nil
}

// consulted reports whether an appointment's consultation takes or took
// place, so that a prescription may be written for it.
func consulted(status string) bool {
	switch status {
	case store.StatusConfirmed, store.StatusArrived, store.StatusInProgress, store.StatusCompleted:
		return true
	}
	return false
}

func (s *Service) sealContent(ctx context.Context, q store.Q, patientID, id string, c sealedContent) ([]byte, error) {
	key, err := s.vault.AccountKey(ctx, q, patientID)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return s.vault.Seal(ctx, q, key, contentAAD(id), b)
}

func event(id string, who Caller, action, from, to string, pharmacyID *string, at time.Time) store.PrescriptionEvent {
	e := store.PrescriptionEvent{PrescriptionID: id, At: at, Action: action, FromStatus: from, ToStatus: to, PharmacyID: pharmacyID}
	if who.ID != "" {
		e.ActorID = &who.ID
	}
	return e
}

// Create writes a draft prescription for the patient of an appointment
// the caller (its practitioner) holds.
func (s *Service) Create(ctx context.Context, who Caller, appointmentID string, c Content) (View, error) {
	return s.create(ctx, who, appointmentID, nil, c)
}

func (s *Service) create(ctx context.Context, who Caller, appointmentID string, replaces *string, c Content) (View, error) {
	if who.Role != rolePractitioner {
		return View{}, ErrAppointment
	}
	a, err := store.AppointmentByID(ctx, s.db.Pool, appointmentID)
	if err != nil {
		return View{}, ErrAppointment.Wrap(err)
	}
	if a.PractitionerID != who.ID {
		return View{}, s.deny(ctx, who, "create", "prescription", "", a.PatientID, ErrAppointment)
	}
	if !consulted(a.Status) {
		return View{}, ErrAppointmentState
	}
	if err := c.Validate(); err != nil {
		return View{}, err
	}
	prescriber, patient, err := s.blocks(ctx, s.db.Pool, a)
	if err != nil && !errors.Is(err, ErrNoPatientProfile) {
		return View{}, err
	}
	id := store.NewUUID()
	now := s.now()
	var out View
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		sealed, err := s.sealContent(ctx, tx, a.PatientID, id, sealedContent{Content: c, Prescriber: prescriber, Patient: patient})
		if err != nil {
			return err
		}
		p := store.Prescription{ID: id, AppointmentID: a.ID, PractitionerID: a.PractitionerID, PatientID: a.PatientID,
			ProfileID: a.ProfileID, Content: sealed, ReplacesID: replaces}
		if err := store.InsertPrescription(ctx, tx, p); err != nil {
			if store.ConstraintViolated(err, store.PrescriptionsConstraintReplaces) {
				return ErrAlreadyCorrected.Wrap(err)
			}
			return err
		}
		if err := store.RecordPrescriptionEvent(ctx, tx, event(id, who, "create", "", string(StatusDraft), nil, now)); err != nil {
			return err
		}
		got, err := store.PrescriptionByID(ctx, tx, id)
		if err != nil {
			return err
		}
		if out, err = s.view(ctx, tx, got, false); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "create", ObjectType: "prescription", ObjectID: id, SubjectID: a.PatientID})
	})
	return out, err
}

// Correct starts the correction of a signed prescription: a new draft for
// the same appointment that names it. Signing the correction cancels the
// original; both are kept.
func (s *Service) Correct(ctx context.Context, who Caller, id string, c Content) (View, error) {
	p, err := s.prescriberOwn(ctx, who, id, "correct")
	if err != nil {
		return View{}, err
	}
	if p.Status != string(StatusReady) {
		return View{}, ErrNotCancellable.With("only a signed prescription that no pharmacy holds can be corrected")
	}
	return s.create(ctx, who, p.AppointmentID, &p.ID, c)
}

// prescriberOwn returns prescription id if the caller wrote it.
func (s *Service) prescriberOwn(ctx context.Context, who Caller, id, action string) (store.Prescription, error) {
	if who.Role != rolePractitioner {
		return store.Prescription{}, ErrNotFound
	}
	p, err := store.PrescriptionByID(ctx, s.db.Pool, id)
	if err != nil {
		return store.Prescription{}, ErrNotFound.Wrap(err)
	}
	if p.PractitionerID != who.ID {
		return store.Prescription{}, s.deny(ctx, who, action, "prescription", id, p.PatientID, ErrNotFound)
	}
	return p, nil
}

// Update replaces the items and instructions of a draft.
func (s *Service) Update(ctx context.Context, who Caller, id string, c Content) (View, error) {
	p, err := s.prescriberOwn(ctx, who, id, "write")
	if err != nil {
		return View{}, err
	}
	if p.Status != string(StatusDraft) {
		return View{}, ErrNotDraft
	}
	if err := c.Validate(); err != nil {
		return View{}, err
	}
	var out View
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		p, err := store.LockPrescription(ctx, tx, id)
		if err != nil {
			return err
		}
		if p.Status != string(StatusDraft) {
			return ErrNotDraft
		}
		old, err := s.openContent(ctx, tx, p)
		if err != nil {
			return err
		}
		sealed, err := s.sealContent(ctx, tx, p.PatientID, id, sealedContent{Content: c, Prescriber: old.Prescriber, Patient: old.Patient})
		if err != nil {
			return err
		}
		if err := store.UpdatePrescriptionDraft(ctx, tx, id, sealed); err != nil {
			if errors.Is(err, store.ErrPrescriptionState) {
				return ErrNotDraft.Wrap(err)
			}
			return err
		}
		if err := store.RecordPrescriptionEvent(ctx, tx, event(id, who, "edit", p.Status, p.Status, nil, s.now())); err != nil {
			return err
		}
		p.Content = sealed
		if out, err = s.view(ctx, tx, p, false); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "write", ObjectType: "prescription", ObjectID: id, SubjectID: p.PatientID})
	})
	return out, err
}

// Cancel withdraws a draft or a signed prescription no pharmacy holds.
// It is kept, marked cancelled.
func (s *Service) Cancel(ctx context.Context, who Caller, id string) (View, error) {
	p, err := s.prescriberOwn(ctx, who, id, "cancel")
	if err != nil {
		return View{}, err
	}
	var out View
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		now := s.now()
		from, err := store.CancelPrescription(ctx, tx, id, now)
		if err != nil {
			if errors.Is(err, store.ErrPrescriptionState) {
				return ErrNotCancellable.Withf("a prescription that is %s can no longer be cancelled", strings.ReplaceAll(p.Status, "_", " ")).Wrap(err)
			}
			return err
		}
		if err := store.RecordPrescriptionEvent(ctx, tx, event(id, who, "cancel", from, string(StatusCancelled), nil, now)); err != nil {
			return err
		}
		got, err := store.PrescriptionByID(ctx, tx, id)
		if err != nil {
			return err
		}
		if out, err = s.view(ctx, tx, got, false); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "cancel", ObjectType: "prescription", ObjectID: id, SubjectID: p.PatientID})
	})
	return out, err
}

// access is how a caller relates to a prescription.
type access int

const (
	noAccess access = iota
	asPatient
	asPrescriber
	asPharmacy // sent to, held by, or dispensed at the caller's pharmacy
)

// accessOf says how who may see p (noAccess: a 404).
func (s *Service) accessOf(ctx context.Context, q store.Q, who Caller, p store.Prescription) (access, string, error) {
	switch who.Role {
	case rolePatient:
		// A patient never sees what was not signed (drafts, abandoned ones).
		if p.PatientID == who.ID && p.SignedAt != nil {
			return asPatient, "", nil
		}
	case rolePractitioner:
		if p.PractitionerID == who.ID {
			return asPrescriber, "", nil
		}
	case rolePharmacist:
		if p.SignedAt == nil {
			return noAccess, "", nil
		}
		ph, err := store.PharmacyOfPharmacist(ctx, q, who.ID)
		if err != nil {
			if problem.KindOf(err) == problem.NotFound {
				return noAccess, "", nil
			}
			return noAccess, "", err
		}
		if (p.PharmacyID != nil && *p.PharmacyID == ph.ID) || (p.AcceptedPharmacyID != nil && *p.AcceptedPharmacyID == ph.ID) {
			return asPharmacy, ph.ID, nil
		}
		ok, err := store.PharmacyDispensed(ctx, q, p.ID, ph.ID)
		if err != nil {
			return noAccess, "", err
		}
		if ok {
			return asPharmacy, ph.ID, nil
		}
	}
	return noAccess, "", nil
}

// readable loads a prescription the caller may read, recording a refusal.
func (s *Service) readable(ctx context.Context, who Caller, id, action string) (store.Prescription, access, string, error) {
	p, err := store.PrescriptionByID(ctx, s.db.Pool, id)
	if err != nil {
		return p, noAccess, "", ErrNotFound.Wrap(err)
	}
	acc, pharmacyID, err := s.accessOf(ctx, s.db.Pool, who, p)
	if err != nil {
		return p, noAccess, "", err
	}
	if acc == noAccess {
		return p, noAccess, "", s.deny(ctx, who, action, "prescription", id, p.PatientID, ErrNotFound)
	}
	return p, acc, pharmacyID, nil
}

// Get returns a prescription to its patient, its prescriber or the
// pharmacy it was sent to. The patient (and the pharmacy it was sent to)
// see the access code.
func (s *Service) Get(ctx context.Context, who Caller, id string) (View, error) {
	p, acc, pharmacyID, err := s.readable(ctx, who, id, "read")
	if err != nil {
		return View{}, err
	}
	withCode := acc == asPatient || (acc == asPharmacy && p.PharmacyID != nil && *p.PharmacyID == pharmacyID)
	v, err := s.view(ctx, s.db.Pool, p, withCode)
	if err != nil {
		return View{}, err
	}
	if err := audit.Record(ctx, s.db.Pool, audit.Entry{Actor: who, Action: "read", ObjectType: "prescription", ObjectID: id, SubjectID: p.PatientID}); err != nil {
		return View{}, err
	}
	return v, nil
}

// PDF returns the signed PDF and a file name for it.
func (s *Service) PDF(ctx context.Context, who Caller, id string) ([]byte, string, error) {
	p, _, _, err := s.readable(ctx, who, id, "read")
	if err != nil {
		return nil, "", err
	}
	if p.Number == nil {
		return nil, "", ErrNotFound.With("this prescription is not signed: it has no PDF yet")
	}
	sealed, err := store.PrescriptionDocument(ctx, s.db.Pool, id)
	if err != nil {
		return nil, "", err
	}
	pdf, err := s.vault.Open(ctx, s.db.Pool, documentAAD(id), sealed)
	if err != nil {
		return nil, "", err
	}
	if err := audit.Record(ctx, s.db.Pool, audit.Entry{Actor: who, Action: "read", ObjectType: "prescription", ObjectID: id, SubjectID: p.PatientID, Detail: "pdf"}); err != nil {
		return nil, "", err
	}
	return pdf, "ordonnance-" + FormatNumber(*p.Number) + ".pdf", nil
}

// List returns the caller's prescriptions, newest first: a patient's
// (signed ones, cancelled included), a practitioner's (drafts too), or those of a
// pharmacist's pharmacy (as Inbox).
func (s *Service) List(ctx context.Context, who Caller) ([]View, error) {
	var f store.PrescriptionFilter
	switch who.Role {
	case rolePatient:
		f.PatientID = who.ID
	case rolePractitioner:
		f.PractitionerID = who.ID
	case rolePharmacist:
		return s.Inbox(ctx, who)
	default:
		return []View{}, nil
	}
	ps, err := store.Prescriptions(ctx, s.db.Pool, f)
	if err != nil {
		return nil, err
	}
	out := make([]View, 0, len(ps))
	for _, p := range ps {
		v, err := s.view(ctx, s.db.Pool, p, who.Role == rolePatient)
		if errors.Is(err, vault.ErrKeyDestroyed) {
			continue // its patient erased their account: kept under legal hold only
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	subject := ""
	if who.Role == rolePatient {
		subject = who.ID
	}
	if err := audit.Record(ctx, s.db.Pool, audit.Entry{Actor: who, Action: "read", ObjectType: "prescription_list", SubjectID: subject,
		Detail: fmt.Sprintf("%d prescriptions", len(out))}); err != nil {
		return nil, err
	}
	return out, nil
}

// Send addresses a ready prescription to a pharmacy, which then finds it
// in its inbox with the access code. The patient may send it elsewhere
// later, as long as no pharmacy holds it.
func (s *Service) Send(ctx context.Context, who Caller, id, pharmacyID string) (View, error) {
	if who.Role != rolePatient {
		return View{}, ErrNotFound
	}
	p, acc, _, err := s.readable(ctx, who, id, "send")
	if err != nil {
		return View{}, err
	}
	if acc != asPatient {
		return View{}, ErrNotFound
	}
	if pharmacyID == "" {
		return View{}, ErrInvalid.With("missing required field: pharmacy_id")
	}
	ph, err := store.PharmacyByID(ctx, s.db.Pool, pharmacyID)
	if err != nil {
		return View{}, ErrPharmacyNotFound.Wrap(err)
	}
	var out View
	err = s.db.Tx(ctx, func(tx pgx.Tx) error {
		if err := store.SendPrescription(ctx, tx, id, ph.ID); err != nil {
			if errors.Is(err, store.ErrPrescriptionState) {
				return ErrNotReady.With("only a signed prescription that no pharmacy holds can be sent").Wrap(err)
			}
			return err
		}
		if err := store.RecordPrescriptionEvent(ctx, tx, event(id, who, "send", p.Status, p.Status, &ph.ID, s.now())); err != nil {
			return err
		}
		got, err := store.PrescriptionByID(ctx, tx, id)
		if err != nil {
			return err
		}
		if out, err = s.view(ctx, tx, got, true); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{Actor: who, Action: "send", ObjectType: "prescription", ObjectID: id, SubjectID: p.PatientID,
			Detail: "pharmacy " + ph.ID})
	})
	return out, err
}
