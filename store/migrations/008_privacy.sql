-- Documents the law requires us to keep after a patient erases their
-- account (signed prescriptions, dispenses, payment receipts), re-sealed
-- to the data-protection officer's offline "legal hold" public key: the
-- running platform cannot open them.
CREATE TABLE legal_hold_records (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subject_id  uuid NOT NULL REFERENCES accounts (id),  -- the erased account
    kind        text NOT NULL CHECK (kind IN ('prescription', 'dispense', 'receipt', 'identity')),
    ref_id      text NOT NULL,                            -- the prescription, dispense or appointment id
    sealed      bytea NOT NULL,                           -- privacy.SealLegalHold
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT legal_hold_records_one UNIQUE (subject_id, kind, ref_id)
);
