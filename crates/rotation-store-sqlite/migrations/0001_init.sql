-- rotation store schema, version 1.
--
-- Timestamps are INTEGER unix microseconds (UTC). Ids are stored as their
-- canonical strings (UUIDs lower-case hyphenated). JSON bodies and details
-- are TEXT. Tables are STRICT so a value of the wrong type cannot be stored.

-- Store metadata (e.g. the KEK salt and check value).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE authorities (
    id                   TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    rotation_period_days INTEGER NOT NULL,
    grace_period_hours   INTEGER NOT NULL,
    current_key_id       TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    last_rotated_at      INTEGER
) STRICT;

CREATE TABLE signing_keys (
    key_id            TEXT PRIMARY KEY NOT NULL,
    authority_id      TEXT NOT NULL,
    algorithm         TEXT NOT NULL,
    public_key        BLOB NOT NULL,
    state             TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    activated_at      INTEGER,
    rotated_at        INTEGER,
    grace_until       INTEGER,
    revoked_at        INTEGER,
    revocation_reason TEXT,
    created_by        TEXT,
    custody           TEXT NOT NULL,
    custody_handle    BLOB NOT NULL
) STRICT;

CREATE INDEX signing_keys_by_authority ON signing_keys (authority_id, created_at);

CREATE TABLE trust_records (
    id           TEXT PRIMARY KEY NOT NULL,
    agent_id     TEXT NOT NULL,
    authority_id TEXT NOT NULL,
    kind         TEXT NOT NULL,
    body         TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    signature    BLOB NOT NULL,
    issued_at    INTEGER NOT NULL,
    signed_at    INTEGER NOT NULL,
    resigned_by  TEXT
) STRICT;

CREATE INDEX trust_records_by_agent ON trust_records (agent_id, id);
CREATE INDEX trust_records_by_key ON trust_records (authority_id, key_id);
CREATE INDEX trust_records_by_resigner ON trust_records (resigned_by, agent_id);

-- The rotation journal.
CREATE TABLE runs (
    rotation_id        TEXT PRIMARY KEY NOT NULL,
    target             TEXT NOT NULL,
    state              TEXT NOT NULL,
    started_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    completed_at       INTEGER,
    lease_owner        TEXT NOT NULL,
    lease_expires_at   INTEGER NOT NULL,
    actor              TEXT NOT NULL,
    old_key_id         TEXT,
    new_key_id         TEXT,
    grace_period_hours INTEGER NOT NULL,
    grace_period_end   INTEGER,
    chains_updated     INTEGER NOT NULL,
    error_reason       TEXT,
    error_message      TEXT,
    schedule_id        TEXT
) STRICT;

-- At most one non-terminal run per target, enforced by the store.
CREATE UNIQUE INDEX runs_one_active_per_target ON runs (target)
    WHERE state NOT IN ('completed', 'rolled_back', 'failed');
CREATE INDEX runs_by_start ON runs (started_at, rotation_id);
CREATE INDEX runs_by_target ON runs (target, started_at, rotation_id);

CREATE TABLE schedules (
    id               TEXT PRIMARY KEY NOT NULL,
    target           TEXT NOT NULL,
    due_at           INTEGER NOT NULL,
    state            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    actor            TEXT NOT NULL,
    claimed_by       TEXT,
    claim_expires_at INTEGER,
    last_error       TEXT
) STRICT;

CREATE INDEX schedules_by_state_due ON schedules (state, due_at);
CREATE INDEX schedules_by_target ON schedules (target, due_at);

-- The audit hash chain.
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY NOT NULL,
    id          TEXT NOT NULL UNIQUE,
    at          INTEGER NOT NULL,
    event       TEXT NOT NULL,
    target      TEXT NOT NULL,
    rotation_id TEXT,
    actor       TEXT NOT NULL,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
) STRICT;

-- The newest event's position and hash, moved by every append.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
) STRICT;
