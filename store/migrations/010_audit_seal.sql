-- The audit log is sealed off the request path. An entry is inserted in
-- the transaction of the action it records, with an identity id and no
-- place in the chain yet (seq, prev_hash and hash NULL), so it commits or
-- rolls back with that action and no writer waits for another. A sealer
-- (one at a time across the cluster) later gives committed entries their
-- chain sequence number and hashes, in order, in small batches.
--
-- Existing rows are already sealed: they keep their seq and hashes and
-- get id = seq, so the chain verifies as before.

ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update;
ALTER TABLE audit_log ADD COLUMN id bigint;
UPDATE audit_log SET id = seq;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update;

ALTER TABLE audit_log ALTER COLUMN id SET NOT NULL;
ALTER TABLE audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;
SELECT setval(pg_get_serial_sequence('audit_log', 'id'), coalesce(max(id), 0) + 1, false) FROM audit_log;

ALTER TABLE audit_log DROP CONSTRAINT audit_log_pkey;
ALTER TABLE audit_log ADD PRIMARY KEY (id);
ALTER TABLE audit_log
    ALTER COLUMN seq DROP NOT NULL,
    ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN hash DROP NOT NULL,
    ADD CONSTRAINT audit_log_seq_key UNIQUE (seq),
    -- Sealed means all three chain columns, never some.
    ADD CONSTRAINT audit_log_sealed_whole CHECK (
        (seq IS NULL) = (prev_hash IS NULL) AND (seq IS NULL) = (hash IS NULL));

-- The sealer's queue: unsealed rows in insert order.
CREATE INDEX audit_log_unsealed_idx ON audit_log (id) WHERE seq IS NULL;

-- "Who saw my data" lists by insert order, sealed or not.
DROP INDEX audit_log_subject_idx;
CREATE INDEX audit_log_subject_idx ON audit_log (subject_id, id) WHERE subject_id IS NOT NULL;

-- Still append-only, whoever asks: the one UPDATE allowed is the sealer
-- setting the three chain columns of an unsealed row, once, leaving every
-- other column as it was. DELETE and TRUNCATE are refused.
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND to_jsonb(NEW) - '{seq,prev_hash,hash}'::text[] = to_jsonb(OLD) - '{seq,prev_hash,hash}'::text[] THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END $$;

-- New rows come unsealed: only the sealer gives a row its place.
CREATE FUNCTION audit_log_insert_unsealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL THEN
        RAISE EXCEPTION 'audit_log rows are inserted unsealed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_insert_unsealed BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_insert_unsealed();
