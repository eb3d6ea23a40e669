-- Transactional outbox: events are written in the same transaction as
-- the change that causes them; a worker renders and delivers them.
CREATE TABLE outbox_events (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind            text NOT NULL,
    recipient_id    uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    appointment_id  uuid,
    prescription_id uuid,
    data            jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
