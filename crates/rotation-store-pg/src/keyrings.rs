//! Keyrings, key versions, sealed values and policies: the queries behind
//! the keyring half of the store. Bulk writes (`put_values`,
//! `reseal_values`) are one statement per [`BULK_CHUNK`] values over
//! `UNNEST`ed arrays, so migrating a keyring is bound by crypto and the
//! server, not by round trips.

use rotation_core::audit::AuditEvent;
use rotation_core::ids::{KeyringName, ValueId};
use rotation_core::keyring::{KeyVersion, Keyring, Reseal, SealedValue};
use rotation_core::policy::Policy;
use rotation_core::time::Timestamp;
use rotation_core::{Error, Result};
use sqlx::{Executor, PgConnection, Postgres, Row};

use crate::binds::Query;
use crate::error::{backend, missing};
use crate::rows::{self, count, limit, micros, opt_micros};
use crate::tx::BULK_CHUNK;

/// One keyring.
pub(crate) async fn get_keyring<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    name: &KeyringName,
) -> Result<Option<Keyring>> {
    sqlx::query("SELECT * FROM keyrings WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a keyring", err))?
        .as_ref()
        .map(rows::keyring)
        .transpose()
}

/// All keyrings, by name.
pub(crate) async fn list_keyrings<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Vec<Keyring>> {
    let found = sqlx::query("SELECT * FROM keyrings ORDER BY name")
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing keyrings", err))?;
    rows::all(&found, rows::keyring)
}

/// One key version.
pub(crate) async fn get_key_version<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    keyring: &KeyringName,
    version: u32,
) -> Result<Option<KeyVersion>> {
    sqlx::query("SELECT * FROM key_versions WHERE keyring = $1 AND version = $2")
        .bind(keyring.as_str())
        .bind(i64::from(version))
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a key version", err))?
        .as_ref()
        .map(rows::key_version)
        .transpose()
}

/// A keyring's versions, ascending.
pub(crate) async fn list_key_versions<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    keyring: &KeyringName,
) -> Result<Vec<KeyVersion>> {
    let found = sqlx::query("SELECT * FROM key_versions WHERE keyring = $1 ORDER BY version")
        .bind(keyring.as_str())
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing key versions", err))?;
    rows::all(&found, rows::key_version)
}

/// One stored value.
pub(crate) async fn get_value<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    keyring: &KeyringName,
    id: &ValueId,
) -> Result<Option<SealedValue>> {
    sqlx::query("SELECT * FROM sealed_values WHERE keyring = $1 AND id = $2")
        .bind(keyring.as_str())
        .bind(id.as_str())
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a value", err))?
        .as_ref()
        .map(rows::sealed_value)
        .transpose()
}

/// A keyring's values by id after `after`, optionally only those below a version.
pub(crate) async fn list_values<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    keyring: &KeyringName,
    below_version: Option<u32>,
    after: Option<&ValueId>,
    max: usize,
) -> Result<Vec<SealedValue>> {
    let found = sqlx::query(
        "SELECT * FROM sealed_values WHERE keyring = $1 AND id > $2 AND key_version < $3 ORDER BY id LIMIT $4",
    )
    .bind(keyring.as_str())
    .bind(after.map(ValueId::as_str).unwrap_or(""))
    .bind(below_version.map(i64::from).unwrap_or(i64::MAX))
    .bind(limit(max))
    .fetch_all(e)
    .await
    .map_err(|err| backend("listing values", err))?;
    rows::all(&found, rows::sealed_value)
}

/// How many values each version seals, ascending by version.
pub(crate) async fn count_values_by_version<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    keyring: &KeyringName,
) -> Result<Vec<(u32, u64)>> {
    let found = sqlx::query(
        "SELECT key_version, COUNT(*) AS n FROM sealed_values WHERE keyring = $1 \
         GROUP BY key_version ORDER BY key_version",
    )
    .bind(keyring.as_str())
    .fetch_all(e)
    .await
    .map_err(|err| backend("counting values", err))?;
    found
        .iter()
        .map(|r| {
            let v: i64 = r
                .try_get("key_version")
                .map_err(|err| backend("counting values", err))?;
            let n: i64 = r.try_get("n").map_err(|err| backend("counting values", err))?;
            Ok((u32::try_from(v).unwrap_or(u32::MAX), u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

/// One policy.
pub(crate) async fn get_policy<'e, E: Executor<'e, Database = Postgres>>(e: E, name: &str) -> Result<Option<Policy>> {
    sqlx::query("SELECT * FROM policies WHERE name = $1")
        .bind(name)
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a policy", err))?
        .as_ref()
        .map(rows::policy)
        .transpose()
}

/// All policies, by name.
pub(crate) async fn list_policies<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Vec<Policy>> {
    let found = sqlx::query("SELECT * FROM policies ORDER BY name")
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing policies", err))?;
    rows::all(&found, rows::policy)
}

/// The insert of a keyring (run on a savepoint by the transaction).
pub(crate) fn insert_keyring(k: &Keyring) -> Query<'_> {
    sqlx::query("INSERT INTO keyrings (name, current_version, created_at, rotated_at) VALUES ($1, $2, $3, $4)")
        .bind(k.name.as_str())
        .bind(i64::from(k.current_version))
        .bind(micros(k.created_at))
        .bind(opt_micros(k.rotated_at))
}

/// Replaces a keyring's row.
pub(crate) async fn update_keyring(c: &mut PgConnection, k: &Keyring) -> Result<()> {
    let done =
        sqlx::query("UPDATE keyrings SET current_version = $1, created_at = $2, rotated_at = $3 WHERE name = $4")
            .bind(i64::from(k.current_version))
            .bind(micros(k.created_at))
            .bind(opt_micros(k.rotated_at))
            .bind(k.name.as_str())
            .execute(c)
            .await
            .map_err(|e| backend("updating a keyring", e))?;
    if done.rows_affected() == 0 {
        return Err(missing(format_args!("keyring {}", k.name)));
    }
    Ok(())
}

/// The insert of a key version (run on a savepoint by the transaction).
pub(crate) fn insert_key_version(v: &KeyVersion) -> Result<Query<'_>> {
    Ok(sqlx::query(
        "INSERT INTO key_versions (keyring, version, state, created_at, activated_at, rotated_at, retired_at, \
         usage_count, created_by, custody, custody_handle) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(v.keyring.as_str())
    .bind(i64::from(v.version))
    .bind(v.state.as_str())
    .bind(micros(v.created_at))
    .bind(opt_micros(v.activated_at))
    .bind(opt_micros(v.rotated_at))
    .bind(opt_micros(v.retired_at))
    .bind(count("usage_count", v.usage_count)?)
    .bind(v.created_by.map(|id| id.to_string()))
    .bind(v.wrapped.custody.clone())
    .bind(v.wrapped.handle.clone()))
}

/// Replaces a key version's row, its usage count excepted.
pub(crate) async fn update_key_version(c: &mut PgConnection, v: &KeyVersion) -> Result<()> {
    let done = sqlx::query(
        "UPDATE key_versions SET state = $1, created_at = $2, activated_at = $3, rotated_at = $4, retired_at = $5, \
         created_by = $6, custody = $7, custody_handle = $8 WHERE keyring = $9 AND version = $10",
    )
    .bind(v.state.as_str())
    .bind(micros(v.created_at))
    .bind(opt_micros(v.activated_at))
    .bind(opt_micros(v.rotated_at))
    .bind(opt_micros(v.retired_at))
    .bind(v.created_by.map(|id| id.to_string()))
    .bind(v.wrapped.custody.clone())
    .bind(v.wrapped.handle.clone())
    .bind(v.keyring.as_str())
    .bind(i64::from(v.version))
    .execute(c)
    .await
    .map_err(|e| backend("updating a key version", e))?;
    if done.rows_affected() == 0 {
        return Err(missing(format_args!("version {} of keyring {}", v.version, v.keyring)));
    }
    Ok(())
}

/// Deletes a key version; a missing one is not an error.
pub(crate) async fn delete_key_version(c: &mut PgConnection, keyring: &KeyringName, version: u32) -> Result<()> {
    sqlx::query("DELETE FROM key_versions WHERE keyring = $1 AND version = $2")
        .bind(keyring.as_str())
        .bind(i64::from(version))
        .execute(c)
        .await
        .map_err(|e| backend("deleting a key version", e))?;
    Ok(())
}

/// Adds `n` to a version's usage count.
pub(crate) async fn add_usage(c: &mut PgConnection, keyring: &KeyringName, version: u32, n: u64) -> Result<()> {
    let done =
        sqlx::query("UPDATE key_versions SET usage_count = usage_count + $1 WHERE keyring = $2 AND version = $3")
            .bind(count("usage", n)?)
            .bind(keyring.as_str())
            .bind(i64::from(version))
            .execute(c)
            .await
            .map_err(|e| backend("counting key usage", e))?;
    if done.rows_affected() == 0 {
        return Err(missing(format_args!("version {version} of keyring {keyring}")));
    }
    Ok(())
}

/// How many values of the keyring `version` seals.
pub(crate) async fn count_values_at(c: &mut PgConnection, keyring: &KeyringName, version: u32) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sealed_values WHERE keyring = $1 AND key_version = $2")
        .bind(keyring.as_str())
        .bind(i64::from(version))
        .fetch_one(c)
        .await
        .map_err(|e| backend("counting values", e))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Inserts or replaces values, one `UNNEST` statement per chunk.
pub(crate) async fn put_values(c: &mut PgConnection, values: &[SealedValue]) -> Result<()> {
    for chunk in values.chunks(BULK_CHUNK) {
        let mut keyring = Vec::with_capacity(chunk.len());
        let mut id = Vec::with_capacity(chunk.len());
        let mut version = Vec::with_capacity(chunk.len());
        let mut sealed = Vec::with_capacity(chunk.len());
        let mut created = Vec::with_capacity(chunk.len());
        let mut updated = Vec::with_capacity(chunk.len());
        for v in chunk {
            keyring.push(v.keyring.as_str().to_owned());
            id.push(v.id.as_str().to_owned());
            version.push(i64::from(v.key_version));
            sealed.push(v.sealed.clone());
            created.push(micros(v.created_at));
            updated.push(micros(v.updated_at));
        }
        sqlx::query(
            "INSERT INTO sealed_values (keyring, id, key_version, sealed, created_at, updated_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::bytea[], $5::int8[], $6::int8[]) \
             ON CONFLICT (keyring, id) DO UPDATE SET key_version = excluded.key_version, sealed = excluded.sealed, \
             updated_at = excluded.updated_at",
        )
        .bind(keyring)
        .bind(id)
        .bind(version)
        .bind(sealed)
        .bind(created)
        .bind(updated)
        .execute(&mut *c)
        .await
        .map_err(|e| backend("writing values", e))?;
    }
    Ok(())
}

/// Replaces the sealed bytes of values still under their `from_version`.
pub(crate) async fn reseal_values(
    c: &mut PgConnection,
    keyring: &KeyringName,
    to_version: u32,
    values: &[Reseal],
    at: Timestamp,
) -> Result<u64> {
    let mut replaced = 0;
    for chunk in values.chunks(BULK_CHUNK) {
        let mut id = Vec::with_capacity(chunk.len());
        let mut from = Vec::with_capacity(chunk.len());
        let mut sealed = Vec::with_capacity(chunk.len());
        for r in chunk {
            id.push(r.id.as_str().to_owned());
            from.push(i64::from(r.from_version));
            sealed.push(r.sealed.clone());
        }
        let done = sqlx::query(
            "UPDATE sealed_values AS s SET sealed = v.sealed, key_version = $4, updated_at = $5 \
             FROM UNNEST($1::text[], $2::int8[], $3::bytea[]) AS v(id, from_version, sealed) \
             WHERE s.keyring = $6 AND s.id = v.id AND s.key_version = v.from_version",
        )
        .bind(id)
        .bind(from)
        .bind(sealed)
        .bind(i64::from(to_version))
        .bind(micros(at))
        .bind(keyring.as_str())
        .execute(&mut *c)
        .await
        .map_err(|e| backend("re-sealing values", e))?;
        replaced += done.rows_affected();
    }
    Ok(replaced)
}

/// Inserts or replaces a policy.
pub(crate) async fn put_policy(c: &mut PgConnection, p: &Policy) -> Result<()> {
    let body = serde_json::to_string(p)
        .map_err(|e| Error::invalid_input(format!("policy {} cannot be stored: {e}", p.name)))?;
    sqlx::query(
        "INSERT INTO policies (name, body, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
    )
    .bind(p.name.as_str())
    .bind(body)
    .bind(micros(p.updated_at))
    .execute(c)
    .await
    .map_err(|e| backend("writing a policy", e))?;
    Ok(())
}

/// Deletes a policy; `not_found` if missing.
pub(crate) async fn delete_policy(c: &mut PgConnection, name: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM policies WHERE name = $1")
        .bind(name)
        .execute(c)
        .await
        .map_err(|e| backend("deleting a policy", e))?;
    if done.rows_affected() == 0 {
        return Err(missing(format_args!("policy {name}")));
    }
    Ok(())
}

/// The newest audit events of one target, newest first.
pub(crate) async fn list_audit_for_target<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    target: &str,
    max: usize,
) -> Result<Vec<AuditEvent>> {
    let found = sqlx::query("SELECT * FROM audit_events WHERE target = $1 ORDER BY seq DESC LIMIT $2")
        .bind(target)
        .bind(limit(max))
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing audit events", err))?;
    rows::all(&found, rows::audit_event)
}
