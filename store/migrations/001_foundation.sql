-- Foundation: accounts, sessions, login throttling, data keys, audit log.
-- Identifiers are random UUIDs (never sequential) so that they cannot be
-- guessed or enumerated.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Data keys for envelope encryption: each is an AES-256 key wrapped by a
-- master key that lives outside the database (see package vault).
CREATE TABLE data_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    master_key_id text NOT NULL,
    wrapped       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    destroyed_at  timestamptz
);

CREATE TABLE accounts (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (email = lower(email) AND email LIKE '%_@_%'),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          text NOT NULL CHECK (role IN ('patient', 'practitioner', 'pharmacist', 'admin')),
    password_hash text NOT NULL,
    language      text NOT NULL DEFAULT 'fr' CHECK (language IN ('fr', 'en')),
    phone         text NOT NULL DEFAULT '',
    -- data_key_id encrypts this account's health data (a patient's reasons,
    -- chat, prescriptions; a practitioner's signing key).
    data_key_id   uuid REFERENCES data_keys (id),
    totp_secret   bytea,           -- sealed with the account's data key
    totp_enabled  boolean NOT NULL DEFAULT false,
    disabled_at   timestamptz,
    erased_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_email_key UNIQUE (email)
);

-- Sessions are stored by the SHA-256 of their token: a database dump
-- cannot be replayed as a login.
CREATE TABLE sessions (
    token_hash   bytea PRIMARY KEY,
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    mfa_at       timestamptz,      -- when the second factor was given
    reauth_at    timestamptz,      -- last password re-entry, for sensitive actions
    ip           text NOT NULL DEFAULT '',
    user_agent   text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_account_idx ON sessions (account_id);

-- Failed logins, per account key (the lower-cased email, existing or not),
-- counted over a sliding window by every node.
CREATE TABLE login_failures (
    email text NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_email_at_idx ON login_failures (email, at);

-- The audit log is append-only and hash-chained: each row's hash covers
-- its content and the previous row's hash. Updates and deletes are refused
-- by a trigger, whoever asks.
CREATE TABLE audit_log (
    seq         bigint PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid,
    actor_role  text NOT NULL DEFAULT '',
    action      text NOT NULL,
    object_type text NOT NULL,
    object_id   text NOT NULL DEFAULT '',
    subject_id  uuid,              -- whose data it is (a patient), for "who saw my data"
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'denied')),
    ip          text NOT NULL DEFAULT '',
    detail      text NOT NULL DEFAULT '',
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject_id, seq) WHERE subject_id IS NOT NULL;

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
