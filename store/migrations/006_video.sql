-- Video consultations: the in-call chat, kept with the appointment,
-- sealed with the patient's data key.
CREATE TABLE consult_messages (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    appointment_id uuid NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,
    sender_id      text NOT NULL,   -- account id, or a guest's participant id
    sender_role    text NOT NULL CHECK (sender_role IN ('patient', 'practitioner', 'guest')),
    sender_name    text NOT NULL DEFAULT '',
    sent_at        timestamptz NOT NULL DEFAULT now(),
    body           bytea NOT NULL
);
CREATE INDEX consult_messages_appointment_idx ON consult_messages (appointment_id, sent_at);
