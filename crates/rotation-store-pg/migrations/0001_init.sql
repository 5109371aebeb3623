-- rotation store schema for PostgreSQL, version 1.
--
-- The same tables and semantics as the SQLite store:
-- - timestamps are BIGINT unix microseconds (UTC), so they round-trip
--   exactly and compare like the other stores';
-- - ids, targets and states are TEXT with the "C" collation, so ordering
--   and keyset paging are by bytes whatever the database's locale is;
-- - JSON bodies and details are TEXT, stored exactly as written (JSONB
--   would normalise them);
-- - binary values are BYTEA.

-- Store metadata (e.g. the KEK salt and check value).
CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE authorities (
    id                   TEXT COLLATE "C" PRIMARY KEY,
    name                 TEXT NOT NULL,
    rotation_period_days BIGINT NOT NULL,
    grace_period_hours   BIGINT NOT NULL,
    current_key_id       TEXT COLLATE "C" NOT NULL,
    created_at           BIGINT NOT NULL,
    last_rotated_at      BIGINT
);

CREATE TABLE signing_keys (
    key_id            TEXT COLLATE "C" PRIMARY KEY,
    authority_id      TEXT COLLATE "C" NOT NULL,
    algorithm         TEXT NOT NULL,
    public_key        BYTEA NOT NULL,
    state             TEXT COLLATE "C" NOT NULL,
    created_at        BIGINT NOT NULL,
    activated_at      BIGINT,
    rotated_at        BIGINT,
    grace_until       BIGINT,
    revoked_at        BIGINT,
    revocation_reason TEXT,
    created_by        TEXT COLLATE "C",
    custody           TEXT NOT NULL,
    custody_handle    BYTEA NOT NULL
);

CREATE INDEX signing_keys_by_authority ON signing_keys (authority_id, created_at);

CREATE TABLE trust_records (
    id           TEXT COLLATE "C" PRIMARY KEY,
    agent_id     TEXT COLLATE "C" NOT NULL,
    authority_id TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    body         TEXT NOT NULL,
    key_id       TEXT COLLATE "C" NOT NULL,
    signature    BYTEA NOT NULL,
    issued_at    BIGINT NOT NULL,
    signed_at    BIGINT NOT NULL,
    resigned_by  TEXT COLLATE "C"
);

CREATE INDEX trust_records_by_agent ON trust_records (agent_id, id);
CREATE INDEX trust_records_by_key ON trust_records (authority_id, key_id, agent_id, id);
CREATE INDEX trust_records_by_resigner ON trust_records (resigned_by, agent_id) WHERE resigned_by IS NOT NULL;

-- The rotation journal.
CREATE TABLE runs (
    rotation_id        TEXT COLLATE "C" PRIMARY KEY,
    target             TEXT COLLATE "C" NOT NULL,
    state              TEXT COLLATE "C" NOT NULL,
    started_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    completed_at       BIGINT,
    lease_owner        TEXT NOT NULL,
    lease_expires_at   BIGINT NOT NULL,
    actor              TEXT NOT NULL,
    old_key_id         TEXT COLLATE "C",
    new_key_id         TEXT COLLATE "C",
    grace_period_hours BIGINT NOT NULL,
    grace_period_end   BIGINT,
    chains_updated     BIGINT NOT NULL,
    error_reason       TEXT,
    error_message      TEXT,
    schedule_id        TEXT COLLATE "C"
);

-- At most one non-terminal run per target, enforced by the store (the
-- name is matched by the store to report `concurrent_rotation`).
CREATE UNIQUE INDEX runs_one_active_per_target ON runs (target)
    WHERE state NOT IN ('completed', 'rolled_back', 'failed');
CREATE INDEX runs_by_start ON runs (started_at, rotation_id);
CREATE INDEX runs_by_target ON runs (target, started_at, rotation_id);

CREATE TABLE schedules (
    id               TEXT COLLATE "C" PRIMARY KEY,
    target           TEXT COLLATE "C" NOT NULL,
    due_at           BIGINT NOT NULL,
    state            TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL,
    actor            TEXT NOT NULL,
    claimed_by       TEXT,
    claim_expires_at BIGINT,
    last_error       TEXT
);

CREATE INDEX schedules_by_state_due ON schedules (state, due_at, id);
CREATE INDEX schedules_by_target ON schedules (target, due_at, id);

-- The audit hash chain.
CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    at          BIGINT NOT NULL,
    event       TEXT NOT NULL,
    target      TEXT NOT NULL,
    rotation_id TEXT COLLATE "C",
    actor       TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);

-- The newest event's position and hash, moved by every append. The single
-- row exists from the start (seq 0: an empty log), so a transaction that
-- appends can lock it (`SELECT ... FOR UPDATE`) even before the first
-- event, and concurrent appenders queue on it.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL CHECK (seq >= 0),
    hash TEXT NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
