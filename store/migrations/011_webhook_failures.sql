-- Stripe webhook deliveries that failed after their signature verified,
-- so that operators see what went wrong (Stripe retries for three days;
-- a failure stays listed as failed until the event is processed). One
-- row per event, counting its failed deliveries. The reason is our error
-- text: never card data (objects are re-read from Stripe by id).
CREATE TABLE stripe_event_failures (
    event_id        text PRIMARY KEY,
    type            text NOT NULL,
    reason          text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_event_failures_last_idx ON stripe_event_failures (last_failed_at DESC);
