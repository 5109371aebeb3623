//! Row mapping: SQLite rows to domain types, with every stored value
//! checked on the way out (a malformed value is `tampered`, naming the row).

use chrono::DateTime;
use rotation_core::audit::{AuditEvent, AuditHead};
use rotation_core::authority::{Authority, CustodyRef, KeyState, SigningKey};
use rotation_core::chain::{RecordKind, TrustRecord};
use rotation_core::ids::{AgentId, AuthorityId, KeyId, KeyringName, RotationId, Target, ValueId};
use rotation_core::keyring::{KeyVersion, Keyring, SealedValue, VersionState};
use rotation_core::policy::Policy;
use rotation_core::ports::OutboxMessage;
use rotation_core::run::{Run, RunState};
use rotation_core::schedule::{Schedule, ScheduleState};
use rotation_core::secret::{Secret, SecretVersion};
use rotation_core::time::Timestamp;
use rotation_core::{Error, Result};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::tampered;

/// A timestamp as stored: unix microseconds.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// An optional timestamp as stored.
pub(crate) fn opt_micros(t: Option<Timestamp>) -> Option<i64> {
    t.map(micros)
}

/// A count as stored (SQLite integers are signed 64-bit).
pub(crate) fn count(what: &str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid_input(format!("{what} {n} is too large to store")))
}

/// A `LIMIT` value: `usize::MAX` (or anything past `i64::MAX`) means no limit.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads the columns of one row, naming the row in every error.
struct Reader<'r> {
    row: &'r SqliteRow,
    table: &'static str,
    key: String,
}

impl<'r> Reader<'r> {
    /// A reader of `row` of `table`, whose key is column `key_col`.
    fn new(row: &'r SqliteRow, table: &'static str, key_col: &str) -> Self {
        let key = row
            .try_get::<String, _>(key_col)
            .or_else(|_| row.try_get::<i64, _>(key_col).map(|k| k.to_string()))
            .unwrap_or_else(|_| "<unreadable key>".to_owned());
        Reader { row, table, key }
    }

    fn bad(&self, column: &str, problem: impl std::fmt::Display) -> Error {
        tampered(self.table, &self.key, column, problem)
    }

    fn get<T>(&self, column: &str) -> Result<T>
    where
        T: for<'q> sqlx::Decode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        self.row.try_get::<T, _>(column).map_err(|e| self.bad(column, e))
    }

    fn text(&self, column: &str) -> Result<String> {
        self.get(column)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        self.get(column)
    }

    fn blob(&self, column: &str) -> Result<Vec<u8>> {
        self.get(column)
    }

    fn int(&self, column: &str) -> Result<i64> {
        self.get(column)
    }

    fn u32(&self, column: &str) -> Result<u32> {
        let v = self.int(column)?;
        u32::try_from(v).map_err(|_| self.bad(column, format!("{v} is out of range")))
    }

    fn opt_u32(&self, column: &str) -> Result<Option<u32>> {
        match self.get::<Option<i64>>(column)? {
            None => Ok(None),
            Some(v) => u32::try_from(v).map(Some).map_err(|_| self.bad(column, "out of range")),
        }
    }

    fn u64(&self, column: &str) -> Result<u64> {
        let v = self.int(column)?;
        u64::try_from(v).map_err(|_| self.bad(column, format!("{v} is out of range")))
    }

    fn to_ts(&self, column: &str, v: i64) -> Result<Timestamp> {
        DateTime::from_timestamp_micros(v).ok_or_else(|| self.bad(column, format!("{v} is not a valid timestamp")))
    }

    fn ts(&self, column: &str) -> Result<Timestamp> {
        let v = self.int(column)?;
        self.to_ts(column, v)
    }

    fn opt_ts(&self, column: &str) -> Result<Option<Timestamp>> {
        self.get::<Option<i64>>(column)?
            .map(|v| self.to_ts(column, v))
            .transpose()
    }

    /// Parses a text column with `parse`, which reports failure as `None`.
    fn parsed<T>(&self, column: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
        let s = self.text(column)?;
        parse(&s).ok_or_else(|| self.bad(column, format!("{s:?} is not valid")))
    }

    fn opt_parsed<T>(&self, column: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>> {
        match self.opt_text(column)? {
            None => Ok(None),
            Some(s) => parse(&s)
                .map(Some)
                .ok_or_else(|| self.bad(column, format!("{s:?} is not valid"))),
        }
    }

    fn json(&self, column: &str) -> Result<serde_json::Value> {
        let s = self.text(column)?;
        serde_json::from_str(&s).map_err(|e| self.bad(column, format!("invalid JSON: {e}")))
    }
}

fn authority_id(s: &str) -> Option<AuthorityId> {
    AuthorityId::parse(s).ok()
}

fn key_id(s: &str) -> Option<KeyId> {
    KeyId::parse(s).ok()
}

fn agent_id(s: &str) -> Option<AgentId> {
    AgentId::parse(s).ok()
}

fn rotation_id(s: &str) -> Option<RotationId> {
    s.parse().ok()
}

fn target(s: &str) -> Option<Target> {
    s.parse().ok()
}

fn uuid(s: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(s).ok()
}

/// An `authorities` row.
pub(crate) fn authority(row: &SqliteRow) -> Result<Authority> {
    let r = Reader::new(row, "authorities", "id");
    Ok(Authority {
        id: r.parsed("id", authority_id)?,
        name: r.text("name")?,
        rotation_period_days: r.u32("rotation_period_days")?,
        grace_period_hours: r.u32("grace_period_hours")?,
        current_key_id: r.parsed("current_key_id", key_id)?,
        created_at: r.ts("created_at")?,
        last_rotated_at: r.opt_ts("last_rotated_at")?,
        prepublish_hours: r.u32("prepublish_hours")?,
    })
}

/// A `signing_keys` row.
pub(crate) fn signing_key(row: &SqliteRow) -> Result<SigningKey> {
    let r = Reader::new(row, "signing_keys", "key_id");
    Ok(SigningKey {
        key_id: r.parsed("key_id", key_id)?,
        authority_id: r.parsed("authority_id", authority_id)?,
        algorithm: r.text("algorithm")?,
        public_key: r.blob("public_key")?,
        state: r.parsed("state", KeyState::parse)?,
        created_at: r.ts("created_at")?,
        activated_at: r.opt_ts("activated_at")?,
        rotated_at: r.opt_ts("rotated_at")?,
        grace_until: r.opt_ts("grace_until")?,
        revoked_at: r.opt_ts("revoked_at")?,
        revocation_reason: r.opt_text("revocation_reason")?,
        created_by: r.opt_parsed("created_by", rotation_id)?,
        custody: CustodyRef {
            custody: r.text("custody")?,
            handle: r.blob("custody_handle")?,
        },
    })
}

/// A `trust_records` row.
pub(crate) fn trust_record(row: &SqliteRow) -> Result<TrustRecord> {
    let r = Reader::new(row, "trust_records", "id");
    Ok(TrustRecord {
        id: r.parsed("id", uuid)?,
        agent_id: r.parsed("agent_id", agent_id)?,
        authority_id: r.parsed("authority_id", authority_id)?,
        kind: r.parsed("kind", RecordKind::parse)?,
        body: r.json("body")?,
        key_id: r.parsed("key_id", key_id)?,
        signature: r.blob("signature")?,
        issued_at: r.ts("issued_at")?,
        signed_at: r.ts("signed_at")?,
        resigned_by: r.opt_parsed("resigned_by", rotation_id)?,
    })
}

/// A `runs` row.
pub(crate) fn run(row: &SqliteRow) -> Result<Run> {
    let r = Reader::new(row, "runs", "rotation_id");
    Ok(Run {
        rotation_id: r.parsed("rotation_id", rotation_id)?,
        target: r.parsed("target", target)?,
        state: r.parsed("state", RunState::parse)?,
        started_at: r.ts("started_at")?,
        updated_at: r.ts("updated_at")?,
        completed_at: r.opt_ts("completed_at")?,
        lease_owner: r.text("lease_owner")?,
        lease_expires_at: r.ts("lease_expires_at")?,
        actor: r.text("actor")?,
        old_key_id: r.opt_parsed("old_key_id", key_id)?,
        new_key_id: r.opt_parsed("new_key_id", key_id)?,
        grace_period_hours: r.u32("grace_period_hours")?,
        grace_period_end: r.opt_ts("grace_period_end")?,
        chains_updated: r.u64("chains_updated")?,
        error_reason: r.opt_text("error_reason")?,
        error_message: r.opt_text("error_message")?,
        schedule_id: r.opt_parsed("schedule_id", rotation_id)?,
        old_version: r.opt_u32("old_version")?,
        new_version: r.opt_u32("new_version")?,
        staged_key: match r.opt_text("staged_custody")? {
            Some(custody) => Some(CustodyRef {
                custody,
                handle: r.blob("staged_handle")?,
            }),
            None => None,
        },
    })
}

/// A `schedules` row.
pub(crate) fn schedule(row: &SqliteRow) -> Result<Schedule> {
    let r = Reader::new(row, "schedules", "id");
    Ok(Schedule {
        id: r.parsed("id", rotation_id)?,
        target: r.parsed("target", target)?,
        due_at: r.ts("due_at")?,
        state: r.parsed("state", ScheduleState::parse)?,
        created_at: r.ts("created_at")?,
        actor: r.text("actor")?,
        claimed_by: r.opt_text("claimed_by")?,
        claim_expires_at: r.opt_ts("claim_expires_at")?,
        last_error: r.opt_text("last_error")?,
        policy: r.opt_text("policy")?,
        attempts: r.u32("attempts")?,
        offset_seconds: r.int("offset_seconds")?,
    })
}

/// An `audit_events` row.
pub(crate) fn audit_event(row: &SqliteRow) -> Result<AuditEvent> {
    let r = Reader::new(row, "audit_events", "seq");
    Ok(AuditEvent {
        seq: r.int("seq")?,
        id: r.parsed("id", uuid)?,
        at: r.ts("at")?,
        event: r.text("event")?,
        target: r.text("target")?,
        rotation_id: r.opt_parsed("rotation_id", rotation_id)?,
        actor: r.text("actor")?,
        details: r.json("details")?,
        prev_hash: r.text("prev_hash")?,
        hash: r.text("hash")?,
    })
}

/// The `audit_head` row.
pub(crate) fn audit_head(row: &SqliteRow) -> Result<AuditHead> {
    let r = Reader::new(row, "audit_head", "id");
    Ok(AuditHead {
        seq: r.int("seq")?,
        hash: r.text("hash")?,
    })
}

/// A `keyrings` row.
pub(crate) fn keyring(row: &SqliteRow) -> Result<Keyring> {
    let r = Reader::new(row, "keyrings", "name");
    Ok(Keyring {
        name: r.parsed("name", |s| KeyringName::parse(s).ok())?,
        current_version: r.u32("current_version")?,
        created_at: r.ts("created_at")?,
        rotated_at: r.opt_ts("rotated_at")?,
    })
}

/// A `key_versions` row.
pub(crate) fn key_version(row: &SqliteRow) -> Result<KeyVersion> {
    let r = Reader::new(row, "key_versions", "keyring");
    Ok(KeyVersion {
        keyring: r.parsed("keyring", |s| KeyringName::parse(s).ok())?,
        version: r.u32("version")?,
        state: r.parsed("state", VersionState::parse)?,
        created_at: r.ts("created_at")?,
        activated_at: r.opt_ts("activated_at")?,
        rotated_at: r.opt_ts("rotated_at")?,
        retired_at: r.opt_ts("retired_at")?,
        usage_count: r.u64("usage_count")?,
        created_by: r.opt_parsed("created_by", rotation_id)?,
        wrapped: CustodyRef {
            custody: r.text("custody")?,
            handle: r.blob("custody_handle")?,
        },
    })
}

/// A `sealed_values` row.
pub(crate) fn sealed_value(row: &SqliteRow) -> Result<SealedValue> {
    let r = Reader::new(row, "sealed_values", "id");
    Ok(SealedValue {
        keyring: r.parsed("keyring", |s| KeyringName::parse(s).ok())?,
        id: r.parsed("id", |s| ValueId::from_stored(s).ok())?,
        key_version: r.u32("key_version")?,
        sealed: r.blob("sealed")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
    })
}

/// A `policies` row.
pub(crate) fn policy(row: &SqliteRow) -> Result<Policy> {
    let r = Reader::new(row, "policies", "name");
    let body = r.text("body")?;
    serde_json::from_str(&body).map_err(|e| r.bad("body", e))
}

/// A `secrets` row: its JSON body, which must name the row's path.
pub(crate) fn secret(row: &SqliteRow) -> Result<Secret> {
    let r = Reader::new(row, "secrets", "path");
    let body = r.text("body")?;
    let secret: Secret = serde_json::from_str(&body).map_err(|e| r.bad("body", e))?;
    if secret.path != r.text("path")? {
        return Err(r.bad("body", "names another path"));
    }
    Ok(secret)
}

/// A `secret_versions` row.
pub(crate) fn secret_version(row: &SqliteRow) -> Result<SecretVersion> {
    let r = Reader::new(row, "secret_versions", "path");
    let stages = r.text("stages")?;
    let attributes = r.text("attributes")?;
    Ok(SecretVersion {
        path: r.text("path")?,
        version: r.u32("version")?,
        stages: serde_json::from_str(&stages).map_err(|e| r.bad("stages", e))?,
        created_at: r.ts("created_at")?,
        attributes: serde_json::from_str(&attributes).map_err(|e| r.bad("attributes", e))?,
    })
}

/// An `outbox` row.
pub(crate) fn outbox_message(row: &SqliteRow) -> Result<OutboxMessage> {
    let r = Reader::new(row, "outbox", "id");
    let notification = r.text("notification")?;
    Ok(OutboxMessage {
        id: r.parsed("id", uuid)?,
        dedup_key: r.opt_text("dedup_key")?,
        recipient: r.text("recipient")?,
        notification: serde_json::from_str(&notification).map_err(|e| r.bad("notification", e))?,
        created_at: r.ts("created_at")?,
        attempts: r.u32("attempts")?,
        next_attempt_at: r.ts("next_attempt_at")?,
        delivered_at: r.opt_ts("delivered_at")?,
        last_error: r.opt_text("last_error")?,
        claimed_by: r.opt_text("claimed_by")?,
        claim_expires_at: r.opt_ts("claim_expires_at")?,
    })
}

/// Maps every row with `f`.
pub(crate) fn all<T>(rows: &[SqliteRow], f: impl Fn(&SqliteRow) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}
