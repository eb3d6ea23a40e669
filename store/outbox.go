package store

import (
	"context"
	"fmt"
)

// OutboxEvent is something a person must be told about. It carries ids,
// not content: the notify worker renders the message when it delivers it,
// so health data never sits in the outbox.
type OutboxEvent struct {
	Kind           string // e.g. "appointment.booked", "appointment.cancelled"
	RecipientID    string // account id
	AppointmentID  string // optional
	PrescriptionID string // optional
	Data           map[string]string
}

// Enqueue writes e to the outbox. Call it with the transaction that makes
// the change e announces, so that both commit or neither does.
func Enqueue(ctx context.Context, q Q, e OutboxEvent) error {
	if e.Data == nil {
		e.Data = map[string]string{}
	}
	_, err := q.Exec(ctx, `INSERT INTO outbox_events (kind, recipient_id, appointment_id, prescription_id, data)
		VALUES ($1, $2, nullif($3, '')::uuid, nullif($4, '')::uuid, $5)`,
		e.Kind, e.RecipientID, e.AppointmentID, e.PrescriptionID, e.Data)
	if err != nil {
		return fmt.Errorf("store: enqueue %s: %w", e.Kind, err)
	}
	return nil
}
