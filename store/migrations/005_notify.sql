-- Notifications: a transactional outbox. Events are written in the same
-- transaction as the change that causes them (store.Enqueue), and fanned
-- out at once into one delivery row per channel the recipient accepts.
-- Workers on any node claim delivery rows with FOR UPDATE SKIP LOCKED and
-- a lease, so that each message is sent once per channel and a crash
-- between claim and send is retried when the lease runs out.
--
-- Events carry ids, not content: the worker renders the message when it
-- delivers it, so health data never sits in the outbox.
CREATE TABLE outbox_events (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind            text NOT NULL CHECK (kind ~ '^[a-z_]+\.[a-z_]+$'),
    recipient_id    uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    appointment_id  uuid,
    prescription_id uuid,
    data            jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_events_appointment_idx ON outbox_events (appointment_id) WHERE appointment_id IS NOT NULL;
CREATE INDEX outbox_events_created_idx ON outbox_events (created_at);

-- A person's choice of channels. No row means the defaults: both on (SMS
-- needs a phone number on the account anyway).
CREATE TABLE notification_prefs (
    account_id uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    email      boolean NOT NULL DEFAULT true,
    sms        boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One delivery per event and channel.
--   pending   waiting for next_attempt_at (NULL: as soon as possible)
--   sending   claimed by the worker holding claim_id until claimed_until;
--             after that any worker may claim it again
--   sent      handed to the SMTP server or SMS provider
--   failed    gave up after the last attempt (shown to admins)
--   cancelled no longer relevant (e.g. a reminder of a cancelled appointment)
--   held      no transport configured for the channel: kept here, never
--             sent, so that a development machine sends nothing outside
-- subject and body are the rendered message with secret links redacted,
-- for the admin page; the real links are rendered only at send time.
CREATE TABLE outbox_messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        uuid NOT NULL REFERENCES outbox_events (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('email', 'sms')),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled', 'held')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz,
    claimed_until   timestamptz,
    claim_id        uuid,
    last_error      text NOT NULL DEFAULT '',
    subject         text NOT NULL DEFAULT '',
    body            text NOT NULL DEFAULT '',
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbox_messages_event_channel_key UNIQUE (event_id, channel),
    CONSTRAINT outbox_messages_lease_check
        CHECK ((status = 'sending') = (claimed_until IS NOT NULL AND claim_id IS NOT NULL)),
    CONSTRAINT outbox_messages_sent_check CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX outbox_messages_due_idx ON outbox_messages (coalesce(next_attempt_at, '-infinity'::timestamptz))
    WHERE status = 'pending';
CREATE INDEX outbox_messages_lease_idx ON outbox_messages (claimed_until) WHERE status = 'sending';
CREATE INDEX outbox_messages_recent_idx ON outbox_messages (created_at DESC);

-- Reminders already scheduled, so that several nodes scanning the same
-- upcoming appointments enqueue each reminder once. starts_at is part of
-- the key: a rescheduled appointment gets its reminders again for its new
-- time.
CREATE TABLE appointment_reminders (
    appointment_id uuid NOT NULL,
    kind           text NOT NULL,
    starts_at      timestamptz NOT NULL,
    event_id       uuid REFERENCES outbox_events (id) ON DELETE SET NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (appointment_id, kind, starts_at)
);
CREATE INDEX appointment_reminders_starts_idx ON appointment_reminders (starts_at);
