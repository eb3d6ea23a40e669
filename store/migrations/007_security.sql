-- Two-factor login, password resets and third-party API tokens.

-- The last TOTP time step accepted, so that a code cannot be replayed.
ALTER TABLE accounts ADD COLUMN totp_last_step bigint NOT NULL DEFAULT 0;

-- Recovery codes, kept only as SHA-256 hashes; each works once.
CREATE TABLE recovery_codes (
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (account_id, code_hash)
);

-- Password reset tokens, single use, kept only as SHA-256 hashes.
CREATE TABLE password_resets (
    token_hash bytea PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX password_resets_account_idx ON password_resets (account_id);

-- API tokens for third-party software (practice management, hospital
-- systems): scoped to one owner's practice, shown once, stored hashed,
-- revocable at once.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id     uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash   bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL CHECK (cardinality(scopes) > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_tokens_owner_idx ON api_tokens (owner_id);
