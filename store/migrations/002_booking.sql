-- Booking: the directory (practitioners, consultation types, pharmacies),
-- patient profiles, availability rules, appointments and their history,
-- waiting lists and no-show blocks.
--
-- The one rule that must never break -- a practitioner is never booked
-- twice for the same time -- is the exclusion constraint
-- appointments_no_overlap, so no race between nodes can break it.

CREATE TABLE practitioners (
    account_id            uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    -- specialty is a code from booking/specialties.go (general_practice, ...).
    specialty             text NOT NULL CHECK (specialty ~ '^[a-z_]{2,40}$'),
    -- rpps is the French national professional identifier (11 digits).
    rpps                  text NOT NULL CHECK (rpps ~ '^[0-9]{11}$'),
    address               text NOT NULL DEFAULT '' CHECK (length(address) <= 300),
    city                  text NOT NULL DEFAULT '' CHECK (length(city) <= 100),
    postcode              text NOT NULL DEFAULT '' CHECK (postcode ~ '^[0-9A-Za-z -]{0,10}$'),
    latitude              double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude             double precision CHECK (longitude BETWEEN -180 AND 180),
    languages             text[] NOT NULL DEFAULT '{fr}',
    photo_url             text NOT NULL DEFAULT '' CHECK (length(photo_url) <= 500),
    presentation          text NOT NULL DEFAULT '' CHECK (length(presentation) <= 2000),
    phone                 text NOT NULL DEFAULT '' CHECK (length(phone) <= 30),
    time_zone             text NOT NULL DEFAULT 'Europe/Paris',
    horizon_days          integer NOT NULL DEFAULT 60 CHECK (horizon_days BETWEEN 1 AND 365),
    min_notice_minutes    integer NOT NULL DEFAULT 120 CHECK (min_notice_minutes BETWEEN 0 AND 20160),
    cancel_cutoff_minutes integer NOT NULL DEFAULT 240 CHECK (cancel_cutoff_minutes BETWEEN 0 AND 20160),
    no_show_limit         integer NOT NULL DEFAULT 3 CHECK (no_show_limit BETWEEN 1 AND 100),
    -- The private iCalendar feed is reached by a random token; only its
    -- SHA-256 is kept, and clearing it revokes the feed.
    calendar_token_hash   bytea UNIQUE,
    -- Precomputed earliest free slot (over all consultation types, and over
    -- video ones), refreshed when the agenda changes and by a periodic job,
    -- so that search never computes slots for thousands of practitioners.
    next_free_at          timestamptz,
    next_video_free_at    timestamptz,
    offers_video          boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT practitioners_coordinates_both CHECK ((latitude IS NULL) = (longitude IS NULL))
);
CREATE INDEX practitioners_next_free_idx ON practitioners (next_free_at, account_id);
CREATE INDEX practitioners_specialty_next_idx ON practitioners (specialty, next_free_at, account_id);
CREATE INDEX practitioners_specialty_video_idx ON practitioners (specialty, next_video_free_at, account_id) WHERE offers_video;
CREATE INDEX practitioners_video_idx ON practitioners (next_video_free_at, account_id) WHERE offers_video;
CREATE INDEX practitioners_city_idx ON practitioners (lower(city), next_free_at);
CREATE INDEX practitioners_postcode_idx ON practitioners (postcode, next_free_at);
CREATE INDEX practitioners_point_idx ON practitioners USING gist (point(longitude, latitude)) WHERE latitude IS NOT NULL;
CREATE INDEX practitioners_languages_idx ON practitioners USING gin (languages);

CREATE TABLE consultation_types (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    practitioner_id  uuid NOT NULL REFERENCES practitioners (account_id) ON DELETE CASCADE,
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    mode             text NOT NULL CHECK (mode IN ('video', 'in_person')),
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 5 AND 240),
    fee_cents        integer NOT NULL DEFAULT 0 CHECK (fee_cents BETWEEN 0 AND 1000000),
    currency         text NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    new_patients     boolean NOT NULL DEFAULT true,
    active           boolean NOT NULL DEFAULT true,
    next_free_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Target of the composite foreign keys below: a row that names a
    -- consultation type names its practitioner too, and they must agree.
    CONSTRAINT consultation_types_id_practitioner_key UNIQUE (id, practitioner_id)
);
CREATE INDEX consultation_types_practitioner_idx ON consultation_types (practitioner_id);

-- Weekly opening hours, per consultation type, in the practitioner's
-- local time; several ranges a day are several rows. weekday: 0 = Sunday.
-- (A sequential key: directories of 100,000+ practitioners load millions
-- of these rows, and random keys make that several times slower.)
CREATE TABLE opening_hours (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    practitioner_id      uuid NOT NULL,
    consultation_type_id uuid NOT NULL,
    weekday              smallint NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    start_time           time NOT NULL,
    end_time             time NOT NULL,
    CHECK (end_time > start_time),
    FOREIGN KEY (consultation_type_id, practitioner_id) REFERENCES consultation_types (id, practitioner_id) ON DELETE CASCADE
);
CREATE INDEX opening_hours_practitioner_idx ON opening_hours (practitioner_id);

CREATE TABLE absences (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    practitioner_id uuid NOT NULL REFERENCES practitioners (account_id) ON DELETE CASCADE,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX absences_practitioner_idx ON absences (practitioner_id, ends_at);

-- A patient account has one 'self' profile and may hold relatives'.
-- Weight and height are health data: sealed (bytea) with the account's key.
CREATE TABLE patient_profiles (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    relationship text NOT NULL CHECK (relationship IN ('self', 'child', 'parent')),
    family_name  text NOT NULL CHECK (length(family_name) BETWEEN 1 AND 100),
    given_names  text NOT NULL CHECK (length(given_names) BETWEEN 1 AND 200),
    sex          text NOT NULL CHECK (sex IN ('F', 'M', 'X')),
    birth_date   date NOT NULL CHECK (birth_date > '1900-01-01'),
    measurements bytea,
    phone        text NOT NULL DEFAULT '' CHECK (length(phone) <= 30),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX patient_profiles_self_key ON patient_profiles (account_id) WHERE relationship = 'self';
CREATE INDEX patient_profiles_account_idx ON patient_profiles (account_id);

CREATE TABLE pharmacies (
    id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name      text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    address   text NOT NULL DEFAULT '',
    city      text NOT NULL DEFAULT '',
    postcode  text NOT NULL DEFAULT '',
    latitude  double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude double precision CHECK (longitude BETWEEN -180 AND 180),
    phone     text NOT NULL DEFAULT ''
);
CREATE INDEX pharmacies_city_idx ON pharmacies (lower(city));
CREATE INDEX pharmacies_postcode_idx ON pharmacies (postcode);
CREATE INDEX pharmacies_point_idx ON pharmacies USING gist (point(longitude, latitude)) WHERE latitude IS NOT NULL;

CREATE TABLE pharmacists (
    account_id  uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    pharmacy_id uuid NOT NULL REFERENCES pharmacies (id) ON DELETE CASCADE
);

-- Appointment statuses:
--   pending_payment  held for 30 minutes (hold_expires_at) until paid
--   confirmed        booked
--   arrived          the patient is there (or in the video waiting room)
--   in_progress      the consultation has started
--   completed, no_show
--   cancelled        by the patient or the practitioner
--   expired          an unpaid hold that lapsed
-- Every status but cancelled and expired occupies its time slot.
CREATE TABLE appointments (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    practitioner_id      uuid NOT NULL,
    consultation_type_id uuid NOT NULL,
    patient_id           uuid NOT NULL REFERENCES accounts (id),        -- the account that booked
    profile_id           uuid REFERENCES patient_profiles (id),         -- who is seen (a relative), or null for the patient
    mode                 text NOT NULL CHECK (mode IN ('video', 'in_person')),
    starts_at            timestamptz NOT NULL,
    ends_at              timestamptz NOT NULL,
    status               text NOT NULL CHECK (status IN ('pending_payment', 'confirmed', 'arrived', 'in_progress', 'completed', 'no_show', 'cancelled', 'expired')),
    fee_cents            integer NOT NULL DEFAULT 0 CHECK (fee_cents >= 0),
    currency             text NOT NULL DEFAULT 'EUR',
    reason               bytea,     -- sealed with the patient's key (vault)
    cancel_reason        bytea,     -- sealed with the patient's key (vault)
    cancelled_by         uuid REFERENCES accounts (id),
    hold_expires_at      timestamptz,
    delay_minutes        integer NOT NULL DEFAULT 0 CHECK (delay_minutes BETWEEN 0 AND 720),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (status <> 'pending_payment' OR hold_expires_at IS NOT NULL),
    FOREIGN KEY (consultation_type_id, practitioner_id) REFERENCES consultation_types (id, practitioner_id),
    CONSTRAINT appointments_no_overlap EXCLUDE USING gist (
        practitioner_id WITH =, tstzrange(starts_at, ends_at) WITH &&
    ) WHERE (status IN ('pending_payment', 'confirmed', 'arrived', 'in_progress', 'completed', 'no_show'))
);
CREATE INDEX appointments_patient_idx ON appointments (patient_id, starts_at);
CREATE INDEX appointments_practitioner_idx ON appointments (practitioner_id, starts_at);
CREATE INDEX appointments_hold_idx ON appointments (hold_expires_at) WHERE status = 'pending_payment';

-- Every status change of an appointment: who, when, from, to.
CREATE TABLE appointment_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    appointment_id uuid NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,
    at             timestamptz NOT NULL DEFAULT now(),
    actor_id       uuid REFERENCES accounts (id),   -- null for the system
    from_status    text NOT NULL DEFAULT '',        -- '' at creation
    to_status      text NOT NULL,
    note           text NOT NULL DEFAULT ''         -- never health data
);
CREATE INDEX appointment_events_appointment_idx ON appointment_events (appointment_id, id);

-- Waiting list: a patient waits for an earlier slot with a practitioner.
CREATE TABLE waitlist_entries (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    practitioner_id      uuid NOT NULL REFERENCES practitioners (account_id) ON DELETE CASCADE,
    patient_id           uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    consultation_type_id uuid REFERENCES consultation_types (id) ON DELETE CASCADE,  -- null: any
    before_at            timestamptz,                                                 -- null: any date
    status               text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'booked', 'left')),
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX waitlist_entries_one_key ON waitlist_entries (practitioner_id, patient_id) WHERE status = 'waiting';
CREATE INDEX waitlist_entries_queue_idx ON waitlist_entries (practitioner_id, created_at) WHERE status = 'waiting';

-- An offer of a freed slot to one waiting patient, exclusive until it
-- expires; then the next in line gets it.
CREATE TABLE waitlist_offers (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    entry_id             uuid NOT NULL REFERENCES waitlist_entries (id) ON DELETE CASCADE,
    practitioner_id      uuid NOT NULL REFERENCES practitioners (account_id) ON DELETE CASCADE,
    patient_id           uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    consultation_type_id uuid NOT NULL REFERENCES consultation_types (id) ON DELETE CASCADE,
    starts_at            timestamptz NOT NULL,
    ends_at              timestamptz NOT NULL,
    expires_at           timestamptz NOT NULL,
    status               text NOT NULL DEFAULT 'offered' CHECK (status IN ('offered', 'taken', 'expired', 'void')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    -- One standing offer per slot at a time.
    CONSTRAINT waitlist_offers_one_standing EXCLUDE USING gist (
        practitioner_id WITH =, tstzrange(starts_at, ends_at) WITH &&
    ) WHERE (status = 'offered')
);
CREATE INDEX waitlist_offers_expiry_idx ON waitlist_offers (expires_at) WHERE status = 'offered';
CREATE INDEX waitlist_offers_entry_idx ON waitlist_offers (entry_id);

-- A practitioner's block of a patient: by hand (blocked), or the no-show
-- rule, which counts only no-shows after lifted_at.
CREATE TABLE patient_blocks (
    practitioner_id uuid NOT NULL REFERENCES practitioners (account_id) ON DELETE CASCADE,
    patient_id      uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    blocked         boolean NOT NULL DEFAULT false,
    lifted_at       timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (practitioner_id, patient_id)
);
