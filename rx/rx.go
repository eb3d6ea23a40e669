// Package rx is the prescription module: practitioners write prescriptions
// for the patient of an appointment, sign them (a PDF rendered with fpdf
// and carrying an embedded PKCS#7 signature made with a key certified by
// the deployment's own certificate authority), patients send them to a
// pharmacy, and pharmacies dispense them following the German E-Rezept
// task states (ready -> in_progress -> completed, reject back to ready).
//
// A signed prescription never changes: the database refuses it too. A
// correction cancels the prescription and issues a new one that names the
// one it replaces. Prescription contents, PDFs and private keys are stored
// only sealed by the vault.
package rx

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"teleconsult/problem"
)

// Status is where a prescription is in its life.
type Status string

// The statuses of a prescription. Draft is editable; the others follow
// the E-Rezept task model once the prescription is signed.
const (
	StatusDraft      Status = "draft"       // being written, editable
	StatusReady      Status = "ready"       // signed, waiting for a pharmacy
	StatusInProgress Status = "in_progress" // accepted by a pharmacy
	StatusCompleted  Status = "completed"   // fully dispensed
	StatusCancelled  Status = "cancelled"   // withdrawn by the prescriber
)

// Errors of the prescription module.
var (
	ErrNotFound          = problem.New(problem.NotFound, "prescription_not_found", "prescription not found")
	ErrAppointment       = problem.New(problem.NotFound, "appointment_not_found", "appointment not found")
	ErrInvalid           = problem.New(problem.Invalid, "invalid_prescription", "the prescription is not valid")
	ErrNotDraft          = problem.New(problem.Conflict, "prescription_signed", "this prescription is signed and can no longer be changed; cancel it and write a new one")
	ErrNotCancellable    = problem.New(problem.Conflict, "prescription_not_cancellable", "this prescription can no longer be cancelled")
	ErrNotReady          = problem.New(problem.Conflict, "prescription_not_ready", "this prescription is not available for dispensing")
	ErrBadAccessCode     = problem.New(problem.NotFound, "prescription_not_found", "no prescription matches this number and access code")
	ErrBadSecret         = problem.New(problem.Forbidden, "bad_secret", "this secret does not match the pharmacy that accepted the prescription")
	ErrExpired           = problem.New(problem.Gone, "prescription_expired", "this prescription has expired")
	ErrNoPharmacy        = problem.New(problem.Forbidden, "no_pharmacy", "your account is not linked to a pharmacy")
	ErrPharmacyNotFound  = problem.New(problem.NotFound, "pharmacy_not_found", "pharmacy not found")
	ErrNoSigningIdentity = problem.New(problem.Conflict, "no_signing_identity", "the prescriber's profile lacks what a prescription must carry")
)

// Limits on what a prescription may hold; they keep a document on a few
// pages and a request small.
const (
	maxItems        = 30
	maxText         = 500
	maxInstructions = 4000
	maxRenewals     = 11  // a year of monthly renewals at most
	maxDurationDays = 366 // R5132-3 style prescriptions rarely exceed a year
	maxQuantity     = 99
)

// Item is one line of a prescription.
type Item struct {
	Drug          string `json:"drug"`          // name or INN
	Strength      string `json:"strength"`      // e.g. "500 mg", "100 µg/dose"
	Form          string `json:"form"`          // e.g. "gélule", "solution buvable"
	Dosage        string `json:"dosage"`        // instructions: "1 gélule matin et soir"
	DurationDays  int    `json:"duration_days"` // treatment length, or 0
	Quantity      int    `json:"quantity"`      // number of packs, or 0
	Renewals      int    `json:"renewals"`      // times it may be dispensed again
	Substitutable bool   `json:"substitutable"` // a generic may be given
}

// UnmarshalJSON decodes an item, with substitution allowed unless the
// prescriber says otherwise (the French default: "non substituable" must
// be written explicitly).
func (it *Item) UnmarshalJSON(b []byte) error {
	type plain Item
	p := plain{Substitutable: true}
	// Strict like the request around it: a misspelt field must not be
	// dropped silently from a prescription.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*it = Item(p)
	return nil
}

// Content is what the practitioner writes: the items and free instructions.
type Content struct {
	Items        []Item `json:"items"`
	Instructions string `json:"instructions"`
}

func cleanText(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Validate normalises c (trimmed text) and reports the first problem as an
// ErrInvalid with a message saying which item and field.
func (c *Content) Validate() error {
	if len(c.Items) == 0 {
		return ErrInvalid.With("a prescription needs at least one item")
	}
	if len(c.Items) > maxItems {
		return ErrInvalid.Withf("a prescription holds at most %d items", maxItems)
	}
	for i := range c.Items {
		it := &c.Items[i]
		n := i + 1
		it.Drug, it.Strength, it.Form, it.Dosage = cleanText(it.Drug), cleanText(it.Strength), cleanText(it.Form), strings.TrimSpace(it.Dosage)
		switch {
		case it.Drug == "":
			return ErrInvalid.Withf("item %d: the drug (name or INN) is missing", n)
		case it.Dosage == "":
			return ErrInvalid.Withf("item %d: the dosage instructions are missing", n)
		case !utf8.ValidString(it.Drug + it.Strength + it.Form + it.Dosage):
			return ErrInvalid.Withf("item %d: text is not valid UTF-8", n)
		case len(it.Drug) > maxText || len(it.Strength) > maxText || len(it.Form) > maxText || len(it.Dosage) > maxText:
			return ErrInvalid.Withf("item %d: a field is longer than %d bytes", n, maxText)
		case it.DurationDays < 0 || it.DurationDays > maxDurationDays:
			return ErrInvalid.Withf("item %d: duration_days must be between 0 and %d", n, maxDurationDays)
		case it.Quantity < 0 || it.Quantity > maxQuantity:
			return ErrInvalid.Withf("item %d: quantity must be between 0 and %d", n, maxQuantity)
		case it.DurationDays == 0 && it.Quantity == 0:
			return ErrInvalid.Withf("item %d: give a duration (duration_days) or a number of packs (quantity)", n)
		case it.Renewals < 0 || it.Renewals > maxRenewals:
			return ErrInvalid.Withf("item %d: renewals must be between 0 and %d", n, maxRenewals)
		}
	}
	c.Instructions = strings.TrimSpace(c.Instructions)
	if !utf8.ValidString(c.Instructions) {
		return ErrInvalid.With("instructions are not valid UTF-8")
	}
	if len(c.Instructions) > maxInstructions {
		return ErrInvalid.Withf("instructions are longer than %d bytes", maxInstructions)
	}
	return nil
}

// Renewals is how many times the prescription may be dispensed again after
// the first time: the most any item allows.
func (c *Content) Renewals() int {
	r := 0
	for _, it := range c.Items {
		r = max(r, it.Renewals)
	}
	return r
}

// ItemsForRenewal returns the items still due at dispense number k (0 for
// the first dispense, 1 for the first renewal...).
func (c *Content) ItemsForRenewal(k int) []Item {
	var out []Item
	for _, it := range c.Items {
		if it.Renewals >= k {
			out = append(out, it)
		}
	}
	return out
}

// ValidUntil is the last day a pharmacy may dispense it: three months from
// signature (the French rule for a first dispense), extended to cover the
// renewals' treatment time, never more than a year.
func (c *Content) ValidUntil(signed time.Time) time.Time {
	end := signed.AddDate(0, 3, 0)
	longest := 0
	for _, it := range c.Items {
		days := it.DurationDays
		if days == 0 {
			days = 30 // a pack is about a month of treatment
		}
		longest = max(longest, days*(it.Renewals+1))
	}
	if e := signed.AddDate(0, 0, longest); e.After(end) {
		end = e
	}
	if limit := signed.AddDate(1, 0, 0); end.After(limit) {
		end = limit
	}
	return end
}

// Prescriber is the practitioner block of a prescription, as R5132-3 asks.
type Prescriber struct {
	AccountID string `json:"-"`
	Name      string `json:"name"`
	Specialty string `json:"specialty"`
	RPPS      string `json:"rpps"`
	Address   string `json:"address"`
	Phone     string `json:"phone"`
	Email     string `json:"email"`
}

// Patient is the patient block of a prescription.
type Patient struct {
	AccountID  string  `json:"-"`
	Surname    string  `json:"surname"`
	FirstNames string  `json:"first_names"`
	Sex        string  `json:"sex"`        // "F", "M" or "X"
	BirthDate  string  `json:"birth_date"` // YYYY-MM-DD
	WeightKg   float64 `json:"weight_kg,omitempty"`
	HeightCm   float64 `json:"height_cm,omitempty"`
}

// Document is everything printed on a prescription.
type Document struct {
	Number     string // canonical
	AccessCode string // canonical
	Prescriber Prescriber
	Patient    Patient
	Content    Content
	SignedAt   time.Time
	ValidUntil time.Time
	Replaces   string // number of the prescription this one corrects, if any
	// Draft marks a preview of a draft: no number, access code or QR
	// code, no signature, and every page says it is not valid for
	// dispensing. SignedAt is then the date of the preview.
	Draft bool
	// SignerSubject and Issuer describe the certificate in the signature block.
	SignerSubject string
	SignerSerial  string
	Issuer        string
}
