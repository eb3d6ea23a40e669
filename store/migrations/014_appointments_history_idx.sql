-- A patient's past consultations with a practitioner: the no-shows that
-- can stop them booking online and the visits that make them a known
-- patient, which every booking checks. Without it the checks read all of
-- the patient's appointments. Partial, so that a new booking (confirmed
-- or pending payment) adds no entry: only the end of a consultation does.
CREATE INDEX appointments_history_idx ON appointments (patient_id, practitioner_id)
    WHERE status IN ('completed', 'arrived', 'in_progress', 'no_show');
