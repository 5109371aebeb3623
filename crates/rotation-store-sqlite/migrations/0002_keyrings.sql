-- Keyrings, stored values and policies; runs and schedules gain the
-- fields keyring rotation and policy schedules need.

ALTER TABLE runs ADD COLUMN old_version INTEGER;
ALTER TABLE runs ADD COLUMN new_version INTEGER;
ALTER TABLE schedules ADD COLUMN policy TEXT;

-- One genesis record per agent, enforced by the store.
CREATE UNIQUE INDEX trust_records_one_genesis ON trust_records (agent_id) WHERE kind = 'genesis';

CREATE INDEX audit_events_by_target ON audit_events (target, seq);

CREATE TABLE keyrings (
    name            TEXT PRIMARY KEY NOT NULL,
    current_version INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    rotated_at      INTEGER
) STRICT;

CREATE TABLE key_versions (
    keyring        TEXT NOT NULL,
    version        INTEGER NOT NULL,
    state          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    activated_at   INTEGER,
    rotated_at     INTEGER,
    retired_at     INTEGER,
    usage_count    INTEGER NOT NULL,
    created_by     TEXT,
    custody        TEXT NOT NULL,
    custody_handle BLOB NOT NULL,
    PRIMARY KEY (keyring, version)
) STRICT;

-- Sealed values, clustered by (keyring, id): keyset paging reads them in
-- primary-key order.
CREATE TABLE sealed_values (
    keyring     TEXT NOT NULL,
    id          TEXT NOT NULL,
    key_version INTEGER NOT NULL,
    sealed      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (keyring, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX sealed_values_by_version ON sealed_values (keyring, key_version);

CREATE TABLE policies (
    name       TEXT PRIMARY KEY NOT NULL,
    body       TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
