-- Payments: one row per paid appointment, the Stripe events already
-- processed, Stripe customers (for saved cards) and practitioners'
-- Connect accounts. No health data lives here: Stripe objects are tied to
-- us by opaque appointment and account ids only.
--
-- Payment states (payments.state), each reachable only from the ones
-- listed in payment_transition_allowed, so that a replayed or late
-- webhook can never move a payment backwards:
--   checkout_open    a Checkout Session (mode=payment) awaits the patient
--   setup_open       a Checkout Session (mode=setup) awaits the card
--   card_saved       the card is saved; authorisation comes ~48 h before
--   action_required  the bank asked the patient to authenticate
--   authorized       the card is on hold (manual capture)
--   captured         charged (amount_captured, maybe less than amount)
--   refunded         money went back (amount_refunded)
--   canceled         the hold was released (free)
--   failed           the card was declined or never authorised
--   expired          the checkout lapsed unpaid

CREATE TABLE payments (
    appointment_id     uuid PRIMARY KEY REFERENCES appointments (id) ON DELETE CASCADE,
    patient_id         uuid NOT NULL REFERENCES accounts (id),
    practitioner_id    uuid NOT NULL REFERENCES accounts (id),
    state              text NOT NULL CHECK (state IN ('checkout_open', 'setup_open', 'card_saved',
                           'action_required', 'authorized', 'captured', 'refunded', 'canceled', 'failed', 'expired')),
    amount             bigint NOT NULL CHECK (amount > 0),
    currency           text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    application_fee    bigint NOT NULL DEFAULT 0 CHECK (application_fee >= 0 AND application_fee <= amount),
    -- destination is the practitioner's Connect account, when charged to it.
    destination        text NOT NULL DEFAULT '',
    checkout_session   text NOT NULL DEFAULT '',
    checkout_url       text NOT NULL DEFAULT '',
    checkout_expires_at timestamptz,
    customer           text NOT NULL DEFAULT '',
    payment_method     text NOT NULL DEFAULT '',
    payment_intent     text NOT NULL DEFAULT '',
    amount_captured    bigint NOT NULL DEFAULT 0 CHECK (amount_captured >= 0 AND amount_captured <= amount),
    amount_refunded    bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount_captured),
    -- authorize_at: when the off-session authorisation of a saved card is due.
    authorize_at       timestamptz,
    -- action_deadline: when an unanswered authentication request releases the appointment.
    action_deadline    timestamptz,
    authorized_at      timestamptz,
    captured_at        timestamptz,
    refunded_at        timestamptz,
    -- lease_until keeps other nodes' jobs off a row being worked on.
    lease_until        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (state <> 'captured' OR amount_captured > 0),
    CHECK (state <> 'refunded' OR amount_refunded > 0)
);
CREATE UNIQUE INDEX payments_checkout_session_key ON payments (checkout_session) WHERE checkout_session <> '';
CREATE INDEX payments_payment_intent_idx ON payments (payment_intent) WHERE payment_intent <> '';
CREATE INDEX payments_open_idx ON payments (state, updated_at)
    WHERE state IN ('checkout_open', 'setup_open', 'card_saved', 'action_required', 'authorized');

-- payment_transition_allowed lists the forward moves of a payment.
CREATE FUNCTION payment_transition_allowed(from_state text, to_state text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT from_state = to_state OR (from_state, to_state) IN (
        ('checkout_open', 'authorized'), ('checkout_open', 'expired'), ('checkout_open', 'failed'), ('checkout_open', 'canceled'),
        ('setup_open', 'card_saved'), ('setup_open', 'expired'), ('setup_open', 'failed'), ('setup_open', 'canceled'),
        ('card_saved', 'authorized'), ('card_saved', 'action_required'), ('card_saved', 'failed'), ('card_saved', 'canceled'),
        ('action_required', 'authorized'), ('action_required', 'failed'), ('action_required', 'canceled'),
        ('authorized', 'captured'), ('authorized', 'canceled'),
        ('captured', 'refunded'),
        -- a hold that arrived after its checkout was given up is released
        ('expired', 'canceled'), ('failed', 'canceled'))
$$;

CREATE FUNCTION payments_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT payment_transition_allowed(OLD.state, NEW.state) THEN
        RAISE EXCEPTION 'payment % cannot move from % to %', OLD.appointment_id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'payments_forward_only';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payments_forward_only BEFORE UPDATE OF state ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_forward_only();

-- Stripe events already processed: the row is inserted in the same
-- transaction as the event's effect, so an event applies at most once.
CREATE TABLE stripe_events (
    id           text PRIMARY KEY,
    type         text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- A patient's Stripe customer, holding cards saved for later authorisation.
CREATE TABLE payment_customers (
    account_id uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    customer   text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A practitioner's Stripe Connect (Express) account.
CREATE TABLE payout_accounts (
    practitioner_id uuid PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    account         text NOT NULL UNIQUE,
    charges_enabled boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- State of the in-process test gateway (TEST MODE, used when no Stripe key
-- is configured): Stripe-like objects as JSON, and the idempotency keys it
-- has seen. Unused with real Stripe.
CREATE TABLE test_gateway_objects (
    id         text PRIMARY KEY,
    kind       text NOT NULL,
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE test_gateway_idempotency (
    key         text PRIMARY KEY,
    fingerprint text NOT NULL,
    response    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
