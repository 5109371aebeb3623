-- Keyrings, stored values and policies; runs and schedules gain the
-- fields keyring rotation and policy schedules need. Mirrors the SQLite
-- store's migration 0002.

ALTER TABLE runs ADD COLUMN old_version BIGINT;
ALTER TABLE runs ADD COLUMN new_version BIGINT;
ALTER TABLE schedules ADD COLUMN policy TEXT;

-- One genesis record per agent, enforced by the store.
CREATE UNIQUE INDEX trust_records_one_genesis ON trust_records (agent_id) WHERE kind = 'genesis';

CREATE INDEX audit_events_by_target ON audit_events (target, seq);

CREATE TABLE keyrings (
    name            TEXT COLLATE "C" PRIMARY KEY,
    current_version BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    rotated_at      BIGINT
);

CREATE TABLE key_versions (
    keyring        TEXT COLLATE "C" NOT NULL,
    version        BIGINT NOT NULL,
    state          TEXT COLLATE "C" NOT NULL,
    created_at     BIGINT NOT NULL,
    activated_at   BIGINT,
    rotated_at     BIGINT,
    retired_at     BIGINT,
    usage_count    BIGINT NOT NULL,
    created_by     TEXT COLLATE "C",
    custody        TEXT NOT NULL,
    custody_handle BYTEA NOT NULL,
    PRIMARY KEY (keyring, version)
);

-- Sealed values; keyset paging reads them in (keyring, id) order.
CREATE TABLE sealed_values (
    keyring     TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    key_version BIGINT NOT NULL,
    sealed      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (keyring, id)
);

CREATE INDEX sealed_values_by_version ON sealed_values (keyring, key_version);

CREATE TABLE policies (
    name       TEXT COLLATE "C" PRIMARY KEY,
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
