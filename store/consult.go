package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ConsultMessage is one in-call chat line; Body is sealed.
type ConsultMessage struct {
	ID            string    `db:"id"`
	AppointmentID string    `db:"appointment_id"`
	SenderID      string    `db:"sender_id"`
	SenderRole    string    `db:"sender_role"`
	SenderName    string    `db:"sender_name"`
	SentAt        time.Time `db:"sent_at"`
	Body          []byte    `db:"body"`
}

// NewConsultMessageID returns a fresh id, so the body can be sealed to
// its row before the row is written.
func NewConsultMessageID(ctx context.Context, q Q) (string, error) {
	var id string
	err := q.QueryRow(ctx, `SELECT gen_random_uuid()::text`).Scan(&id)
	return id, err
}

// InsertConsultMessage stores a chat line.
func InsertConsultMessage(ctx context.Context, q Q, m ConsultMessage) error {
	_, err := q.Exec(ctx, `INSERT INTO consult_messages (id, appointment_id, sender_id, sender_role, sender_name, sent_at, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, m.ID, m.AppointmentID, m.SenderID, m.SenderRole, m.SenderName, m.SentAt, m.Body)
	if err != nil {
		return fmt.Errorf("store: insert chat message: %w", err)
	}
	return nil
}

// ConsultMessages returns the chat of an appointment, oldest first.
func ConsultMessages(ctx context.Context, q Q, appointmentID string) ([]ConsultMessage, error) {
	rows, err := q.Query(ctx, `SELECT id::text, appointment_id::text, sender_id, sender_role, sender_name, sent_at, body
		FROM consult_messages WHERE appointment_id = $1 ORDER BY sent_at, id`, appointmentID)
	if err != nil {
		return nil, fmt.Errorf("store: chat messages: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[ConsultMessage])
}
