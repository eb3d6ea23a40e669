package store

import (
	"context"
	"fmt"
	"slices"

	"teleconsult/problem"
)

// Outbox event kinds. The notify package renders one message per kind; the
// Data keys each kind expects are listed beside it. Data values may be
// secret (tokens): they are never logged.
const (
	// EventAppointmentBooked confirms a booking to the patient (with the
	// .ics attached) or tells the practitioner about it. While the
	// appointment awaits payment the confirmation waits too.
	EventAppointmentBooked = "appointment.booked"
	// EventAppointmentCancelled tells a patient or practitioner that an
	// appointment is cancelled. Data: "cancelled_by" (or "by") =
	// "patient", "practitioner" or "payment".
	EventAppointmentCancelled = "appointment.cancelled"
	// EventAppointmentRescheduled tells of a new time. Data (optional):
	// "old_start" (RFC 3339).
	EventAppointmentRescheduled = "appointment.rescheduled"
	// EventAppointmentDelayed tells the patient the practitioner runs late.
	// Data: "minutes".
	EventAppointmentDelayed = "appointment.delay"
	// EventAppointmentReminder is enqueued by the notify reminder job.
	// Data: "reminder" (the schedule entry's name) and "starts_at" (RFC
	// 3339, the start the reminder was scheduled for).
	EventAppointmentReminder = "appointment.reminder"
	// EventWaitlistOffer offers a freed slot to a patient on the waiting
	// list. Data: "start" and "expires_at" (RFC 3339), "practitioner_id";
	// optional "path", the page (relative to the base URL) where the
	// offer is taken (default: the practitioner's page).
	EventWaitlistOffer = "waitlist.offer"
	// EventPrescriptionReady tells a patient a prescription is signed.
	EventPrescriptionReady = "prescription.ready"
	// EventPasswordReset sends a reset link. Data: "token".
	EventPasswordReset = "password.reset"
	// EventPaymentActionRequired asks the patient to complete a payment
	// step (e.g. 3-D Secure) for an appointment. Data: "url", the page
	// where they do it (treated as secret), optional "deadline" (RFC 3339).
	EventPaymentActionRequired = "payment.action_required"
)

// Delivery channels.
const (
	ChannelEmail = "email"
	ChannelSMS   = "sms"
)

// ErrOutboxEvent is returned by Enqueue for an event it cannot accept.
var ErrOutboxEvent = problem.New(problem.Invalid, "outbox_event_invalid", "the notification is not valid")

// OutboxEvent is something a person must be told about. It carries ids,
// not content: the notify worker renders the message when it delivers it,
// so health data never sits in the outbox.
type OutboxEvent struct {
	Kind           string // one of the Event* constants
	RecipientID    string // account id
	AppointmentID  string // optional
	PrescriptionID string // optional
	Data           map[string]string
	// Channels, when set, restricts delivery to these channels (still
	// subject to the recipient's preferences). Empty means the kind's
	// default channels.
	Channels []string
}

// defaultChannels lists where each kind goes when the event names none.
var defaultChannels = map[string][]string{
	EventAppointmentBooked:      {ChannelEmail, ChannelSMS},
	EventAppointmentCancelled:   {ChannelEmail, ChannelSMS},
	EventAppointmentRescheduled: {ChannelEmail, ChannelSMS},
	EventAppointmentDelayed:     {ChannelEmail, ChannelSMS},
	EventAppointmentReminder:    {ChannelEmail, ChannelSMS},
	EventWaitlistOffer:          {ChannelEmail, ChannelSMS},
	EventPrescriptionReady:      {ChannelEmail, ChannelSMS},
	EventPasswordReset:          {ChannelEmail},
	EventPaymentActionRequired:  {ChannelEmail},
}

// essentialEmail lists kinds whose email goes out even when the recipient
// turned email notifications off: without it they cannot use their account.
var essentialEmail = map[string]bool{
	EventPasswordReset:         true,
	EventPaymentActionRequired: true,
}

// Enqueue writes e to the outbox, with one delivery row per channel the
// recipient accepts. Call it with the transaction that makes the change e
// announces, so that both commit or neither does.
//
// A cancellation or a reschedule also cancels the appointment's reminders
// not yet sent, in the same transaction.
func Enqueue(ctx context.Context, q Q, e OutboxEvent) error {
	defaults, ok := defaultChannels[e.Kind]
	if !ok {
		return ErrOutboxEvent.Withf("unknown notification kind %q", e.Kind)
	}
	channels := defaults
	if len(e.Channels) > 0 {
		channels = nil
		for _, c := range e.Channels {
			if c != ChannelEmail && c != ChannelSMS {
				return ErrOutboxEvent.Withf("unknown channel %q", c)
			}
			if !slices.Contains(channels, c) {
				channels = append(channels, c)
			}
		}
	}
	if e.Data == nil {
		e.Data = map[string]string{}
	}
	// One statement: the event, then its deliveries filtered by the
	// recipient's preferences and addresses.
	_, err := q.Exec(ctx, `
		WITH ev AS (
			INSERT INTO outbox_events (kind, recipient_id, appointment_id, prescription_id, data)
			VALUES ($1, $2, nullif($3, '')::uuid, nullif($4, '')::uuid, $5)
			RETURNING id, recipient_id)
		INSERT INTO outbox_messages (event_id, channel)
		SELECT ev.id, c.channel
		FROM ev
		JOIN accounts a ON a.id = ev.recipient_id
		LEFT JOIN notification_prefs p ON p.account_id = a.id
		CROSS JOIN unnest($6::text[]) AS c (channel)
		WHERE a.erased_at IS NULL AND (
			(c.channel = 'email' AND (coalesce(p.email, true) OR $7))
			OR (c.channel = 'sms' AND coalesce(p.sms, true) AND a.phone <> ''))`,
		e.Kind, e.RecipientID, e.AppointmentID, e.PrescriptionID, e.Data, channels, essentialEmail[e.Kind])
	if err != nil {
		return fmt.Errorf("store: enqueue %s: %w", e.Kind, err)
	}
	if e.AppointmentID != "" && (e.Kind == EventAppointmentCancelled || e.Kind == EventAppointmentRescheduled) {
		if err := CancelPendingReminders(ctx, q, e.AppointmentID); err != nil {
			return err
		}
	}
	return nil
}

// CancelPendingReminders cancels the reminders of an appointment that are
// not yet sent. A reminder being sent right now is checked again by the
// worker before it goes out.
func CancelPendingReminders(ctx context.Context, q Q, appointmentID string) error {
	_, err := q.Exec(ctx, `
		UPDATE outbox_messages m SET status = 'cancelled', last_error = 'appointment cancelled or moved',
			next_attempt_at = NULL, updated_at = now()
		FROM outbox_events e
		WHERE m.event_id = e.id AND e.appointment_id = $1 AND e.kind = $2
		  AND m.status = 'pending'`, appointmentID, EventAppointmentReminder)
	if err != nil {
		return fmt.Errorf("store: cancel reminders: %w", err)
	}
	return nil
}
