// Package fhir maps the service's records to HL7 FHIR R4 resources in
// JSON, for the third-party software of a practice: Practitioner,
// PractitionerRole, Schedule, Slot, Appointment, and a searchset Bundle
// to carry several. Only what a record holds is said; nothing is made up.
package fhir

import (
	"time"
)

// ContentType is the media type of FHIR JSON.
const ContentType = "application/fhir+json"

// Reference points at another resource.
type Reference struct {
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

// Coding is a code from a system.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is a concept with codings and a text.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Identifier is a business identifier (RPPS for practitioners).
type Identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// HumanName is a person's name.
type HumanName struct {
	Text string `json:"text"`
}

// ContactPoint is a phone or an email.
type ContactPoint struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// Address is a postal address.
type Address struct {
	Line       []string `json:"line,omitempty"`
	City       string   `json:"city,omitempty"`
	PostalCode string   `json:"postalCode,omitempty"`
	Country    string   `json:"country,omitempty"`
}

// Period is a time range.
type Period struct {
	Start *time.Time `json:"start,omitempty"`
	End   *time.Time `json:"end,omitempty"`
}

// Practitioner is a FHIR Practitioner.
type Practitioner struct {
	ResourceType  string            `json:"resourceType"`
	ID            string            `json:"id"`
	Identifier    []Identifier      `json:"identifier,omitempty"`
	Active        bool              `json:"active"`
	Name          []HumanName       `json:"name"`
	Telecom       []ContactPoint    `json:"telecom,omitempty"`
	Address       []Address         `json:"address,omitempty"`
	Communication []CodeableConcept `json:"communication,omitempty"`
}

// PractitionerRole is a FHIR PractitionerRole: what and where.
type PractitionerRole struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id"`
	Active       bool              `json:"active"`
	Practitioner Reference         `json:"practitioner"`
	Specialty    []CodeableConcept `json:"specialty,omitempty"`
}

// Schedule is a FHIR Schedule: one per consultation type.
type Schedule struct {
	ResourceType string            `json:"resourceType"`
	ID           string            `json:"id"`
	Active       bool              `json:"active"`
	ServiceType  []CodeableConcept `json:"serviceType,omitempty"`
	Actor        []Reference       `json:"actor"`
	Comment      string            `json:"comment,omitempty"`
}

// Slot is a FHIR Slot.
type Slot struct {
	ResourceType string    `json:"resourceType"`
	ID           string    `json:"id"`
	Schedule     Reference `json:"schedule"`
	Status       string    `json:"status"` // free
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
}

// Participant is a participant of an Appointment.
type Participant struct {
	Actor    Reference `json:"actor"`
	Required string    `json:"required,omitempty"`
	Status   string    `json:"status"`
}

// Appointment is a FHIR Appointment.
type Appointment struct {
	ResourceType    string            `json:"resourceType"`
	ID              string            `json:"id"`
	Status          string            `json:"status"`
	ServiceType     []CodeableConcept `json:"serviceType,omitempty"`
	AppointmentType *CodeableConcept  `json:"appointmentType,omitempty"`
	Start           time.Time         `json:"start"`
	End             time.Time         `json:"end"`
	MinutesDuration int               `json:"minutesDuration"`
	Created         *time.Time        `json:"created,omitempty"`
	Participant     []Participant     `json:"participant"`
}

// BundleEntry is one resource in a Bundle.
type BundleEntry struct {
	FullURL  string `json:"fullUrl,omitempty"`
	Resource any    `json:"resource"`
}

// Bundle is a searchset.
type Bundle struct {
	ResourceType string        `json:"resourceType"`
	Type         string        `json:"type"`
	Total        int           `json:"total"`
	Entry        []BundleEntry `json:"entry"`
}

// NewBundle wraps resources (each with its id) in a searchset Bundle.
func NewBundle(base string, typ string, ids []string, resources []any) Bundle {
	b := Bundle{ResourceType: "Bundle", Type: "searchset", Total: len(resources), Entry: []BundleEntry{}}
	for i, r := range resources {
		b.Entry = append(b.Entry, BundleEntry{FullURL: base + "/fhir/" + typ + "/" + ids[i], Resource: r})
	}
	return b
}

// OperationOutcome reports an error the FHIR way.
type OperationOutcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []Issue `json:"issue"`
}

// Issue is one problem in an OperationOutcome.
type Issue struct {
	Severity    string `json:"severity"`
	Code        string `json:"code"`
	Diagnostics string `json:"diagnostics"`
}

// AppointmentStatus maps our appointment statuses to FHIR's.
func AppointmentStatus(s string) string {
	switch s {
	case "pending_payment":
		return "pending"
	case "confirmed":
		return "booked"
	case "arrived":
		return "arrived"
	case "in_progress":
		return "checked-in"
	case "completed":
		return "fulfilled"
	case "no_show":
		return "noshow"
	case "cancelled", "expired":
		return "cancelled"
	}
	return "proposed"
}

// RPPSSystem is the naming system of French RPPS numbers.
const RPPSSystem = "urn:oid:1.2.250.1.71.4.2.1"

// ModeConcept codes video or in-person consultations.
func ModeConcept(mode string) *CodeableConcept {
	if mode == "video" {
		return &CodeableConcept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", Code: "VIDEOCONF", Display: "videoconferencing"}}, Text: "video"}
	}
	return &CodeableConcept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", Code: "FACE", Display: "face-to-face"}}, Text: "in person"}
}
