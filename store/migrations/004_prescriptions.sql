-- Prescriptions: the deployment's certificate authority, practitioners'
-- signing keys, prescriptions (sealed content and signed PDF), their
-- history, and dispenses by pharmacies (E-Rezept task states).
--
-- Two rules are kept here rather than in Go:
--   * a signed prescription never changes and is never deleted
--     (trigger prescriptions_guard, reported as constraint
--     prescriptions_immutable), and its status only moves along
--     draft -> ready <-> in_progress -> completed, draft|ready -> cancelled;
--   * a prescription is dispensed at most once per renewal
--     (unique prescription_dispenses_once).

-- The certificate authority that certifies practitioners' signing keys:
-- one row. Its private key (PKCS#8) is sealed by the vault with a data key
-- of its own, bound to (rx_authority, key_sealed, 'authority').
CREATE TABLE rx_authority (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cert_der   bytea NOT NULL,
    key_sealed bytea NOT NULL,
    imported   boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A practitioner's signing key (ECDSA P-256, PKCS#8 sealed with the
-- practitioner's account key, bound to (rx_signing_keys, key_sealed,
-- practitioner_id)) and its certificate from the authority whose
-- certificate hashes to ca_sha256.
CREATE TABLE rx_signing_keys (
    practitioner_id uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    cert_der        bytea NOT NULL,
    key_sealed      bytea NOT NULL,
    ca_sha256       bytea NOT NULL,
    not_after       timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Prescription statuses:
--   draft        being written by the practitioner, editable
--   ready        signed; waiting for a pharmacy (again, between renewals)
--   in_progress  accepted by a pharmacy, which holds the secret
--   completed    dispensed (every renewal)
--   cancelled    withdrawn by the prescriber (a correction cancels too)
CREATE TABLE prescriptions (
    id                   uuid PRIMARY KEY,
    appointment_id       uuid NOT NULL REFERENCES appointments (id),
    practitioner_id      uuid NOT NULL REFERENCES accounts (id),
    patient_id           uuid NOT NULL REFERENCES accounts (id),   -- the account it is for
    profile_id           uuid REFERENCES patient_profiles (id),    -- who is treated (a relative), or null
    status               text NOT NULL DEFAULT 'draft'
                         CHECK (status IN ('draft', 'ready', 'in_progress', 'completed', 'cancelled')),
    -- Items, instructions and the prescriber and patient blocks (JSON),
    -- sealed with the patient's key: (prescriptions, content, id).
    content              bytea NOT NULL,
    replaces_id          uuid REFERENCES prescriptions (id),   -- the prescription this one corrects
    -- Set when signed.
    number               text UNIQUE CHECK (number ~ '^[2-9A-Z]{12}$'),
    access_code_hash     bytea,      -- SHA-256 of the access code
    access_code          bytea,      -- sealed (prescriptions, access_code, id), shown to the patient
    document             bytea,      -- signed PDF, sealed (prescriptions, document, id)
    document_sha256      bytea,
    signed_at            timestamptz,
    valid_until          timestamptz,
    renewals             integer NOT NULL DEFAULT 0 CHECK (renewals BETWEEN 0 AND 11),
    dispensed_count      integer NOT NULL DEFAULT 0,
    -- The pharmacy the patient sent it to, if any.
    pharmacy_id          uuid REFERENCES pharmacies (id),
    -- The pharmacy working on it (in_progress), and the SHA-256 of the
    -- secret it was given.
    accepted_pharmacy_id uuid REFERENCES pharmacies (id),
    accepted_by          uuid REFERENCES accounts (id),
    accepted_at          timestamptz,
    secret_hash          bytea,
    cancelled_at         timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT prescriptions_signed_complete CHECK (
        status IN ('draft', 'cancelled') OR
        (number IS NOT NULL AND access_code_hash IS NOT NULL AND access_code IS NOT NULL AND document IS NOT NULL
         AND document_sha256 IS NOT NULL AND signed_at IS NOT NULL AND valid_until IS NOT NULL)),
    CONSTRAINT prescriptions_accepted_complete CHECK (
        (status = 'in_progress') = (secret_hash IS NOT NULL AND accepted_pharmacy_id IS NOT NULL AND accepted_at IS NOT NULL)),
    CONSTRAINT prescriptions_dispense_count CHECK (dispensed_count BETWEEN 0 AND renewals + 1),
    CONSTRAINT prescriptions_completed_count CHECK ((status = 'completed') = (dispensed_count = renewals + 1))
);
-- One live correction per prescription (a cancelled draft of a
-- correction does not block another).
CREATE UNIQUE INDEX prescriptions_one_correction ON prescriptions (replaces_id)
    WHERE replaces_id IS NOT NULL AND status <> 'cancelled';
CREATE INDEX prescriptions_patient_idx ON prescriptions (patient_id, created_at DESC);
CREATE INDEX prescriptions_practitioner_idx ON prescriptions (practitioner_id, created_at DESC);
CREATE INDEX prescriptions_appointment_idx ON prescriptions (appointment_id);
CREATE INDEX prescriptions_pharmacy_idx ON prescriptions (pharmacy_id, signed_at DESC) WHERE pharmacy_id IS NOT NULL;
CREATE INDEX prescriptions_document_idx ON prescriptions (document_sha256) WHERE document_sha256 IS NOT NULL;
CREATE INDEX prescriptions_accepted_idx ON prescriptions (accepted_pharmacy_id) WHERE accepted_pharmacy_id IS NOT NULL;

CREATE FUNCTION prescriptions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'prescription % is % and cannot be deleted', OLD.id, OLD.status
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'prescriptions_immutable';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status IN ('completed', 'cancelled') THEN
        RAISE EXCEPTION 'prescription % is % and cannot change', OLD.id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'prescriptions_immutable';
    END IF;
    IF NEW.id <> OLD.id OR NEW.appointment_id <> OLD.appointment_id OR NEW.practitioner_id <> OLD.practitioner_id
       OR NEW.patient_id <> OLD.patient_id OR NEW.profile_id IS DISTINCT FROM OLD.profile_id
       OR NEW.replaces_id IS DISTINCT FROM OLD.replaces_id THEN
        RAISE EXCEPTION 'prescription % cannot change its appointment, people or lineage', OLD.id
            USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'prescriptions_immutable';
    END IF;
    IF OLD.status <> 'draft' AND (
           NEW.content IS DISTINCT FROM OLD.content OR NEW.number IS DISTINCT FROM OLD.number
        OR NEW.access_code_hash IS DISTINCT FROM OLD.access_code_hash OR NEW.access_code IS DISTINCT FROM OLD.access_code
        OR NEW.document IS DISTINCT FROM OLD.document OR NEW.document_sha256 IS DISTINCT FROM OLD.document_sha256
        OR NEW.signed_at IS DISTINCT FROM OLD.signed_at OR NEW.valid_until IS DISTINCT FROM OLD.valid_until
        OR NEW.renewals <> OLD.renewals OR NEW.created_at <> OLD.created_at) THEN
        RAISE EXCEPTION 'prescription % is signed and cannot change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'prescriptions_immutable';
    END IF;
    IF NEW.dispensed_count < OLD.dispensed_count THEN
        RAISE EXCEPTION 'prescription % cannot be undispensed', OLD.id
            USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'prescriptions_immutable';
    END IF;
    IF NEW.status <> OLD.status AND NOT (
           (OLD.status = 'draft' AND NEW.status IN ('ready', 'cancelled'))
        OR (OLD.status = 'ready' AND NEW.status IN ('in_progress', 'cancelled'))
        OR (OLD.status = 'in_progress' AND NEW.status IN ('ready', 'completed'))) THEN
        RAISE EXCEPTION 'prescription % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'prescriptions_immutable';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER prescriptions_guard BEFORE UPDATE OR DELETE ON prescriptions
    FOR EACH ROW EXECUTE FUNCTION prescriptions_guard();

-- Every step of a prescription: who, when, from which status to which.
CREATE TABLE prescription_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prescription_id uuid NOT NULL REFERENCES prescriptions (id),
    at              timestamptz NOT NULL DEFAULT now(),
    actor_id        uuid REFERENCES accounts (id),
    action          text NOT NULL CHECK (action IN ('create', 'edit', 'sign', 'cancel', 'send', 'accept', 'reject', 'dispense')),
    from_status     text NOT NULL DEFAULT '',
    to_status       text NOT NULL,
    pharmacy_id     uuid REFERENCES pharmacies (id)
);
CREATE INDEX prescription_events_prescription_idx ON prescription_events (prescription_id, id);

-- One row per dispense: the first (renewal_index 0), then one per renewal.
-- items (what was delivered, with substitutions) and receipt (a JWS signed
-- by the service) are sealed with the patient's key, bound to
-- (prescription_dispenses, items|receipt, id).
CREATE TABLE prescription_dispenses (
    id              uuid PRIMARY KEY,
    prescription_id uuid NOT NULL REFERENCES prescriptions (id),
    renewal_index   integer NOT NULL CHECK (renewal_index BETWEEN 0 AND 11),
    pharmacy_id     uuid NOT NULL REFERENCES pharmacies (id),
    pharmacist_id   uuid NOT NULL REFERENCES accounts (id),
    items           bytea NOT NULL,
    receipt         bytea NOT NULL,
    dispensed_at    timestamptz NOT NULL,
    CONSTRAINT prescription_dispenses_once UNIQUE (prescription_id, renewal_index)
);
CREATE INDEX prescription_dispenses_pharmacy_idx ON prescription_dispenses (pharmacy_id, prescription_id);

CREATE FUNCTION prescription_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'prescriptions_immutable';
END $$;
CREATE TRIGGER prescription_dispenses_append_only BEFORE UPDATE OR DELETE ON prescription_dispenses
    FOR EACH ROW EXECUTE FUNCTION prescription_history_append_only();
CREATE TRIGGER prescription_events_append_only BEFORE UPDATE OR DELETE ON prescription_events
    FOR EACH ROW EXECUTE FUNCTION prescription_history_append_only();
