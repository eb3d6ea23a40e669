-- A counter that every destruction of a data key increments in its own
-- transaction. Each node caches unwrapped data keys; reading this one row
-- tells it whether a key it caches may have been destroyed since it last
-- looked, even when it missed the notification (package vault).
CREATE TABLE vault_generation (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    generation bigint NOT NULL CHECK (generation >= 0)
);
INSERT INTO vault_generation (generation) VALUES (0);
