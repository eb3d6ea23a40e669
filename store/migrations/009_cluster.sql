-- Several `teleconsult serve` nodes share this database. Each node keeps
-- its own row fresh (heartbeat_at) with its load; a row not refreshed for
-- three heartbeats belongs to a node that is gone.
CREATE TABLE nodes (
    id             text PRIMARY KEY,
    signaling_url  text NOT NULL,
    media_address  text NOT NULL,
    rooms          integer NOT NULL DEFAULT 0 CHECK (rooms >= 0),
    participants   integer NOT NULL DEFAULT 0 CHECK (participants >= 0),
    cpu            double precision NOT NULL DEFAULT 0 CHECK (cpu >= 0),  -- share of all cores, 0..1
    bandwidth      bigint NOT NULL DEFAULT 0 CHECK (bandwidth >= 0),      -- forwarded bits per second
    draining       boolean NOT NULL DEFAULT false,
    started_at     timestamptz NOT NULL DEFAULT now(),
    heartbeat_at   timestamptz NOT NULL DEFAULT now()
);

-- The node a consult's room lives on. A placement on a gone node is
-- replaced at the next join; a finished one no longer counts as load.
CREATE TABLE room_placements (
    room         uuid PRIMARY KEY REFERENCES appointments (id) ON DELETE CASCADE,
    node_id      text NOT NULL,   -- no foreign key: the node's row goes when it stops
    placed_at    timestamptz NOT NULL DEFAULT now(),
    admitted_at  timestamptz,     -- when the practitioner first admitted the patient
    finished_at  timestamptz
);
CREATE INDEX room_placements_open ON room_placements (node_id) WHERE finished_at IS NULL;
