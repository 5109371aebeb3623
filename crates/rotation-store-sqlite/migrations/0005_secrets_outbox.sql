-- Secrets' metadata, the versions kept by the store's own secret backend,
-- the notification outbox; schedules gain retry counting and an offset.

ALTER TABLE schedules ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schedules ADD COLUMN offset_seconds INTEGER NOT NULL DEFAULT 0;

-- A secret's metadata, as its JSON body (like policies).
CREATE TABLE secrets (
    path       TEXT PRIMARY KEY NOT NULL,
    body       TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Labels (JSON array) and non-secret attributes (JSON object) of each
-- version; listed per path in version order, the primary-key order.
CREATE TABLE secret_versions (
    path       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    stages     TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (path, version)
) STRICT, WITHOUT ROWID;

-- Notifications waiting for delivery. At most one message per dedup_key
-- (NULLs never collide).
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY NOT NULL,
    dedup_key        TEXT UNIQUE,
    recipient        TEXT NOT NULL,
    notification     TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    delivered_at     INTEGER,
    last_error       TEXT,
    claimed_by       TEXT,
    claim_expires_at INTEGER
) STRICT;

-- Pending messages in delivery order: what claiming and listing pending
-- messages read.
CREATE INDEX outbox_pending ON outbox (created_at, id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_by_created ON outbox (created_at, id);
