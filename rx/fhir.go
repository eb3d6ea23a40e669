package rx

import (
	"context"
	"fmt"
	"time"

	"teleconsult/audit"
	"teleconsult/store"
)

// FHIR R4 resources for a prescription: one MedicationRequest per item
// (grouped by the prescription number, as FHIR models a paper
// prescription) and one MedicationDispense per delivered item, in a
// collection Bundle. Only the fields we fill are declared.

// rppsSystem identifies French RPPS numbers (ANS, IdNat_PS).
const rppsSystem = "urn:oid:1.2.250.1.71.4.2.1"

// numberSystem identifies prescription numbers of this service.
const numberSystem = "urn:teleconsult:prescription-number"

type fhirReference struct {
	Reference  string          `json:"reference,omitempty"`
	Display    string          `json:"display,omitempty"`
	Identifier *fhirIdentifier `json:"identifier,omitempty"`
}

type fhirIdentifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirCodeableConcept struct {
	Text string `json:"text"`
}

type fhirQuantity struct {
	Value  float64 `json:"value"`
	Unit   string  `json:"unit,omitempty"`
	System string  `json:"system,omitempty"`
	Code   string  `json:"code,omitempty"`
}

type fhirPeriod struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

type fhirDosage struct {
	Sequence int    `json:"sequence,omitempty"`
	Text     string `json:"text"`
}

type fhirAnnotation struct {
	Text string `json:"text"`
}

type fhirDispenseRequest struct {
	ValidityPeriod         *fhirPeriod   `json:"validityPeriod,omitempty"`
	NumberOfRepeatsAllowed int           `json:"numberOfRepeatsAllowed"`
	Quantity               *fhirQuantity `json:"quantity,omitempty"`
	ExpectedSupplyDuration *fhirQuantity `json:"expectedSupplyDuration,omitempty"`
}

type fhirRequestSubstitution struct {
	AllowedBoolean bool `json:"allowedBoolean"`
}

// MedicationRequest is a FHIR R4 MedicationRequest (the fields we use).
type MedicationRequest struct {
	ResourceType              string                   `json:"resourceType"`
	ID                        string                   `json:"id"`
	Identifier                []fhirIdentifier         `json:"identifier,omitempty"`
	Status                    string                   `json:"status"`
	Intent                    string                   `json:"intent"`
	MedicationCodeableConcept fhirCodeableConcept      `json:"medicationCodeableConcept"`
	Subject                   fhirReference            `json:"subject"`
	AuthoredOn                string                   `json:"authoredOn,omitempty"`
	Requester                 fhirReference            `json:"requester"`
	GroupIdentifier           *fhirIdentifier          `json:"groupIdentifier,omitempty"`
	Note                      []fhirAnnotation         `json:"note,omitempty"`
	DosageInstruction         []fhirDosage             `json:"dosageInstruction"`
	DispenseRequest           fhirDispenseRequest      `json:"dispenseRequest"`
	Substitution              *fhirRequestSubstitution `json:"substitution,omitempty"`
	PriorPrescription         *fhirReference           `json:"priorPrescription,omitempty"`
}

type fhirPerformer struct {
	Actor fhirReference `json:"actor"`
}

type fhirDispenseSubstitution struct {
	WasSubstituted bool `json:"wasSubstituted"`
}

// MedicationDispense is a FHIR R4 MedicationDispense (the fields we use).
type MedicationDispense struct {
	ResourceType              string                    `json:"resourceType"`
	ID                        string                    `json:"id"`
	Status                    string                    `json:"status"`
	MedicationCodeableConcept fhirCodeableConcept       `json:"medicationCodeableConcept"`
	Subject                   fhirReference             `json:"subject"`
	Performer                 []fhirPerformer           `json:"performer"`
	AuthorizingPrescription   []fhirReference           `json:"authorizingPrescription"`
	Quantity                  *fhirQuantity             `json:"quantity,omitempty"`
	WhenHandedOver            string                    `json:"whenHandedOver"`
	Substitution              *fhirDispenseSubstitution `json:"substitution,omitempty"`
	Note                      []fhirAnnotation          `json:"note,omitempty"`
}

// Bundle is a FHIR R4 Bundle of type collection.
type Bundle struct {
	ResourceType string          `json:"resourceType"`
	Type         string          `json:"type"`
	Timestamp    string          `json:"timestamp"`
	Identifier   *fhirIdentifier `json:"identifier,omitempty"`
	Entry        []BundleEntry   `json:"entry"`
}

// BundleEntry is one resource of a Bundle.
type BundleEntry struct {
	FullURL  string `json:"fullUrl"`
	Resource any    `json:"resource"`
}

func fhirStatus(s Status) string {
	switch s {
	case StatusDraft:
		return "draft"
	case StatusReady, StatusInProgress:
		return "active"
	case StatusCompleted:
		return "completed"
	case StatusCancelled:
		return "cancelled"
	}
	return "unknown"
}

func medicationText(drug, strength, form string) string {
	t := drug
	if strength != "" {
		t += " " + strength
	}
	if form != "" {
		t += ", " + form
	}
	return t
}

func requestID(prescriptionID string, item int) string {
	return fmt.Sprintf("%s-%d", prescriptionID, item)
}

// MedicationRequests turns a prescription into FHIR MedicationRequests,
// one per item.
func MedicationRequests(v View) []MedicationRequest {
	out := make([]MedicationRequest, 0, len(v.Items))
	patient := fhirReference{Reference: "Patient/" + v.Patient.AccountID, Display: v.Patient.FirstNames + " " + v.Patient.Surname}
	if v.Patient.AccountID == "" {
		patient.Reference = ""
	}
	requester := fhirReference{Display: v.Prescriber.Name}
	if v.Prescriber.AccountID != "" {
		requester.Reference = "Practitioner/" + v.Prescriber.AccountID
	}
	if v.Prescriber.RPPS != "" {
		requester.Identifier = &fhirIdentifier{System: rppsSystem, Value: v.Prescriber.RPPS}
	}
	for i, it := range v.Items {
		r := MedicationRequest{
			ResourceType:              "MedicationRequest",
			ID:                        requestID(v.ID, i+1),
			Status:                    fhirStatus(v.Status),
			Intent:                    "order",
			MedicationCodeableConcept: fhirCodeableConcept{Text: medicationText(it.Drug, it.Strength, it.Form)},
			Subject:                   patient,
			Requester:                 requester,
			DosageInstruction:         []fhirDosage{{Sequence: 1, Text: it.Dosage}},
			DispenseRequest:           fhirDispenseRequest{NumberOfRepeatsAllowed: it.Renewals},
			Substitution:              &fhirRequestSubstitution{AllowedBoolean: it.Substitutable},
		}
		if v.Number != "" {
			id := fhirIdentifier{System: numberSystem, Value: v.Number}
			r.GroupIdentifier = &id
			r.Identifier = []fhirIdentifier{{System: numberSystem + ":item", Value: fmt.Sprintf("%s/%d", v.Number, i+1)}}
		}
		if v.SignedAt != nil {
			r.AuthoredOn = v.SignedAt.UTC().Format(time.RFC3339)
		} else {
			r.AuthoredOn = v.CreatedAt.UTC().Format(time.RFC3339)
		}
		if v.SignedAt != nil && v.ValidUntil != nil {
			r.DispenseRequest.ValidityPeriod = &fhirPeriod{Start: v.SignedAt.UTC().Format(time.RFC3339), End: v.ValidUntil.UTC().Format(time.RFC3339)}
		}
		if it.Quantity > 0 {
			r.DispenseRequest.Quantity = &fhirQuantity{Value: float64(it.Quantity), Unit: "boîte"}
		}
		if it.DurationDays > 0 {
			r.DispenseRequest.ExpectedSupplyDuration = &fhirQuantity{Value: float64(it.DurationDays), Unit: "days", System: "http://unitsofmeasure.org", Code: "d"}
		}
		if v.Instructions != "" {
			r.Note = []fhirAnnotation{{Text: v.Instructions}}
		}
		if v.ReplacesID != nil {
			r.PriorPrescription = &fhirReference{Reference: "MedicationRequest/" + requestID(*v.ReplacesID, i+1)}
		}
		out = append(out, r)
	}
	return out
}

// MedicationDispenses turns a dispense into FHIR MedicationDispenses, one
// per delivered item.
func MedicationDispenses(v View, d Dispense, pharmacyName string) []MedicationDispense {
	out := make([]MedicationDispense, 0, len(d.Items))
	for _, it := range d.Items {
		md := MedicationDispense{
			ResourceType:              "MedicationDispense",
			ID:                        fmt.Sprintf("%s-%d", d.ID, it.Item),
			Status:                    "completed",
			MedicationCodeableConcept: fhirCodeableConcept{Text: medicationText(it.Drug, it.Strength, it.Form)},
			Subject:                   fhirReference{Reference: "Patient/" + v.Patient.AccountID, Display: v.Patient.FirstNames + " " + v.Patient.Surname},
			Performer:                 []fhirPerformer{{Actor: fhirReference{Reference: "Organization/" + d.PharmacyID, Display: pharmacyName}}},
			AuthorizingPrescription:   []fhirReference{{Reference: "MedicationRequest/" + requestID(v.ID, it.Item)}},
			Quantity:                  &fhirQuantity{Value: float64(it.Quantity), Unit: "boîte"},
			WhenHandedOver:            d.DispensedAt.UTC().Format(time.RFC3339),
			Substitution:              &fhirDispenseSubstitution{WasSubstituted: it.Substituted},
		}
		if it.Note != "" {
			md.Note = []fhirAnnotation{{Text: it.Note}}
		}
		out = append(out, md)
	}
	return out
}

// FHIR returns a prescription the caller may read as a FHIR R4 Bundle of
// MedicationRequests and MedicationDispenses. baseURL prefixes the
// entries' fullUrl (e.g. https://consult.example.org/fhir).
func (s *Service) FHIR(ctx context.Context, who Caller, id, baseURL string) (Bundle, error) {
	p, _, _, err := s.readable(ctx, who, id, "read")
	if err != nil {
		return Bundle{}, err
	}
	v, err := s.view(ctx, s.db.Pool, p, false)
	if err != nil {
		return Bundle{}, err
	}
	b := Bundle{ResourceType: "Bundle", Type: "collection", Timestamp: s.now().UTC().Format(time.RFC3339), Entry: []BundleEntry{}}
	if v.Number != "" {
		b.Identifier = &fhirIdentifier{System: numberSystem, Value: v.Number}
	}
	for _, r := range MedicationRequests(v) {
		b.Entry = append(b.Entry, BundleEntry{FullURL: baseURL + "/MedicationRequest/" + r.ID, Resource: r})
	}
	ds, err := s.dispenses(ctx, p)
	if err != nil {
		return Bundle{}, err
	}
	names := map[string]string{}
	for _, d := range ds {
		if _, ok := names[d.PharmacyID]; !ok {
			ph, err := store.PharmacyByID(ctx, s.db.Pool, d.PharmacyID)
			if err == nil {
				names[d.PharmacyID] = ph.Name
			}
		}
		for _, md := range MedicationDispenses(v, d, names[d.PharmacyID]) {
			b.Entry = append(b.Entry, BundleEntry{FullURL: baseURL + "/MedicationDispense/" + md.ID, Resource: md})
		}
	}
	if err := audit.Record(ctx, s.db.Pool, audit.Entry{Actor: who, Action: "read", ObjectType: "prescription", ObjectID: id, SubjectID: p.PatientID, Detail: "fhir"}); err != nil {
		return Bundle{}, err
	}
	return b, nil
}
