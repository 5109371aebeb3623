-- Secrets' metadata, the versions kept by the store's own secret backend,
-- the notification outbox; schedules gain retry counting and an offset.
-- Mirrors the SQLite store's migration 0005.

ALTER TABLE schedules ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE schedules ADD COLUMN offset_seconds BIGINT NOT NULL DEFAULT 0;

-- A secret's metadata, as its JSON body (like policies).
CREATE TABLE secrets (
    path       TEXT COLLATE "C" PRIMARY KEY,
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Labels (JSON array) and non-secret attributes (JSON object) of each
-- version; listed per path in version order, the primary-key order.
CREATE TABLE secret_versions (
    path       TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    stages     TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (path, version)
);

-- Notifications waiting for delivery. At most one message per dedup_key
-- (NULLs never collide).
CREATE TABLE outbox (
    id               TEXT COLLATE "C" PRIMARY KEY,
    dedup_key        TEXT COLLATE "C" UNIQUE,
    recipient        TEXT NOT NULL,
    notification     TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    delivered_at     BIGINT,
    last_error       TEXT,
    claimed_by       TEXT,
    claim_expires_at BIGINT
);

-- Pending messages in delivery order: what claiming (FOR UPDATE SKIP
-- LOCKED) and listing pending messages read.
CREATE INDEX outbox_pending ON outbox (created_at, id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_by_created ON outbox (created_at, id);
