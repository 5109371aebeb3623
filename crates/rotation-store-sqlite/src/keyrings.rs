//! Keyrings, key versions, sealed values and policies: the queries behind
//! the keyring half of the store. Bulk writes are set based (multi-row
//! `VALUES`), so a batch of thousands of values is a handful of statements.

use rotation_core::ids::{KeyringName, ValueId};
use rotation_core::keyring::{KeyVersion, Keyring, Reseal, SealedValue};
use rotation_core::policy::Policy;
use rotation_core::time::Timestamp;
use rotation_core::{Error, Result};
use sqlx::{AssertSqlSafe, Executor, Row, SqlSafeStr, Sqlite, SqliteConnection};

use crate::error::{backend, insert, missing};
use crate::rows::{self, count, limit, micros, opt_micros};

/// Rows per multi-row statement (6 parameters per value row; SQLite allows 32,766).
const CHUNK: usize = 1000;

/// `prefix` followed by `rows` groups of `group`, comma separated.
fn multi_row_sql(prefix: &str, group: &str, rows: usize, suffix: &str) -> sqlx::SqlStr {
    let mut sql = String::with_capacity(prefix.len() + rows * (group.len() + 2) + suffix.len());
    sql.push_str(prefix);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(group);
    }
    sql.push_str(suffix);
    // Fixed text and placeholders only.
    AssertSqlSafe(sql).into_sql_str()
}

pub(crate) async fn get_keyring<'e, E: Executor<'e, Database = Sqlite>>(
    e: E,
    name: &KeyringName,
) -> Result<Option<Keyring>> {
    sqlx::query("SELECT * FROM keyrings WHERE name = ?")
        .bind(name.as_str())
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a keyring", err))?
        .as_ref()
        .map(rows::keyring)
        .transpose()
}

pub(crate) async fn list_keyrings<'e, E: Executor<'e, Database = Sqlite>>(e: E) -> Result<Vec<Keyring>> {
    let found = sqlx::query("SELECT * FROM keyrings ORDER BY name")
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing keyrings", err))?;
    rows::all(&found, rows::keyring)
}

pub(crate) async fn get_key_version<'e, E: Executor<'e, Database = Sqlite>>(
    e: E,
    keyring: &KeyringName,
    version: u32,
) -> Result<Option<KeyVersion>> {
    sqlx::query("SELECT * FROM key_versions WHERE keyring = ? AND version = ?")
        .bind(keyring.as_str())
        .bind(i64::from(version))
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a key version", err))?
        .as_ref()
        .map(rows::key_version)
        .transpose()
}

pub(crate) async fn list_key_versions<'e, E: Executor<'e, Database = Sqlite>>(
    e: E,
    keyring: &KeyringName,
) -> Result<Vec<KeyVersion>> {
    let found = sqlx::query("SELECT * FROM key_versions WHERE keyring = ? ORDER BY version")
        .bind(keyring.as_str())
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing key versions", err))?;
    rows::all(&found, rows::key_version)
}

pub(crate) async fn get_value<'e, E: Executor<'e, Database = Sqlite>>(
    e: E,
    keyring: &KeyringName,
    id: &ValueId,
) -> Result<Option<SealedValue>> {
    sqlx::query("SELECT * FROM sealed_values WHERE keyring = ? AND id = ?")
        .bind(keyring.as_str())
        .bind(id.as_str())
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a value", err))?
        .as_ref()
        .map(rows::sealed_value)
        .transpose()
}

pub(crate) async fn list_values<'e, E: Executor<'e, Database = Sqlite>>(
    e: E,
    keyring: &KeyringName,
    below_version: Option<u32>,
    after: Option<&ValueId>,
    max: usize,
) -> Result<Vec<SealedValue>> {
    let found =
        sqlx::query("SELECT * FROM sealed_values WHERE keyring = ? AND id > ? AND key_version < ? ORDER BY id LIMIT ?")
            .bind(keyring.as_str())
            .bind(after.map(ValueId::as_str).unwrap_or(""))
            .bind(below_version.map(i64::from).unwrap_or(i64::MAX))
            .bind(limit(max))
            .fetch_all(e)
            .await
            .map_err(|err| backend("listing values", err))?;
    rows::all(&found, rows::sealed_value)
}

pub(crate) async fn count_values_by_version<'e, E: Executor<'e, Database = Sqlite>>(
    e: E,
    keyring: &KeyringName,
) -> Result<Vec<(u32, u64)>> {
    let found = sqlx::query(
        "SELECT key_version, COUNT(*) AS n FROM sealed_values WHERE keyring = ? GROUP BY key_version ORDER BY key_version",
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

pub(crate) async fn get_policy<'e, E: Executor<'e, Database = Sqlite>>(e: E, name: &str) -> Result<Option<Policy>> {
    sqlx::query("SELECT * FROM policies WHERE name = ?")
        .bind(name)
        .fetch_optional(e)
        .await
        .map_err(|err| backend("reading a policy", err))?
        .as_ref()
        .map(rows::policy)
        .transpose()
}

pub(crate) async fn list_policies<'e, E: Executor<'e, Database = Sqlite>>(e: E) -> Result<Vec<Policy>> {
    let found = sqlx::query("SELECT * FROM policies ORDER BY name")
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing policies", err))?;
    rows::all(&found, rows::policy)
}

pub(crate) async fn insert_keyring(c: &mut SqliteConnection, k: &Keyring) -> Result<()> {
    sqlx::query("INSERT INTO keyrings (name, current_version, created_at, rotated_at) VALUES (?, ?, ?, ?)")
        .bind(k.name.as_str())
        .bind(i64::from(k.current_version))
        .bind(micros(k.created_at))
        .bind(opt_micros(k.rotated_at))
        .execute(c)
        .await
        .map_err(|e| insert("inserting a keyring", &format!("keyring {}", k.name), e))?;
    Ok(())
}

pub(crate) async fn update_keyring(c: &mut SqliteConnection, k: &Keyring) -> Result<()> {
    let done = sqlx::query("UPDATE keyrings SET current_version = ?, created_at = ?, rotated_at = ? WHERE name = ?")
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

pub(crate) async fn insert_key_version(c: &mut SqliteConnection, v: &KeyVersion) -> Result<()> {
    sqlx::query(
        "INSERT INTO key_versions (keyring, version, state, created_at, activated_at, rotated_at, retired_at, \
         usage_count, created_by, custody, custody_handle) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .bind(v.wrapped.handle.clone())
    .execute(c)
    .await
    .map_err(|e| {
        insert(
            "inserting a key version",
            &format!("version {} of keyring {}", v.version, v.keyring),
            e,
        )
    })?;
    Ok(())
}

pub(crate) async fn update_key_version(c: &mut SqliteConnection, v: &KeyVersion) -> Result<()> {
    let done = sqlx::query(
        "UPDATE key_versions SET state = ?, created_at = ?, activated_at = ?, rotated_at = ?, retired_at = ?, \
         created_by = ?, custody = ?, custody_handle = ? WHERE keyring = ? AND version = ?",
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

pub(crate) async fn delete_key_version(c: &mut SqliteConnection, keyring: &KeyringName, version: u32) -> Result<()> {
    sqlx::query("DELETE FROM key_versions WHERE keyring = ? AND version = ?")
        .bind(keyring.as_str())
        .bind(i64::from(version))
        .execute(c)
        .await
        .map_err(|e| backend("deleting a key version", e))?;
    Ok(())
}

pub(crate) async fn add_usage(c: &mut SqliteConnection, keyring: &KeyringName, version: u32, n: u64) -> Result<()> {
    let done = sqlx::query("UPDATE key_versions SET usage_count = usage_count + ? WHERE keyring = ? AND version = ?")
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

pub(crate) async fn count_values_at(c: &mut SqliteConnection, keyring: &KeyringName, version: u32) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sealed_values WHERE keyring = ? AND key_version = ?")
        .bind(keyring.as_str())
        .bind(i64::from(version))
        .fetch_one(c)
        .await
        .map_err(|e| backend("counting values", e))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) async fn put_values(c: &mut SqliteConnection, values: &[SealedValue]) -> Result<()> {
    for chunk in values.chunks(CHUNK) {
        let sql = multi_row_sql(
            "INSERT INTO sealed_values (keyring, id, key_version, sealed, created_at, updated_at) VALUES ",
            "(?,?,?,?,?,?)",
            chunk.len(),
            " ON CONFLICT (keyring, id) DO UPDATE SET key_version = excluded.key_version, sealed = excluded.sealed, \
             updated_at = excluded.updated_at",
        );
        let mut q = sqlx::query(sql);
        for v in chunk {
            q = q
                .bind(v.keyring.as_str())
                .bind(v.id.as_str())
                .bind(i64::from(v.key_version))
                .bind(v.sealed.as_slice())
                .bind(micros(v.created_at))
                .bind(micros(v.updated_at));
        }
        q.execute(&mut *c).await.map_err(|e| backend("writing values", e))?;
    }
    Ok(())
}

pub(crate) async fn reseal_values(
    c: &mut SqliteConnection,
    keyring: &KeyringName,
    to_version: u32,
    values: &[Reseal],
    at: Timestamp,
) -> Result<u64> {
    let mut replaced = 0;
    for chunk in values.chunks(CHUNK) {
        let sql = multi_row_sql(
            "WITH v(id, from_version, sealed) AS (VALUES ",
            "(?,?,?)",
            chunk.len(),
            ") UPDATE sealed_values SET sealed = v.sealed, key_version = ?, updated_at = ? FROM v \
             WHERE sealed_values.keyring = ? AND sealed_values.id = v.id AND sealed_values.key_version = v.from_version",
        );
        let mut q = sqlx::query(sql);
        for r in chunk {
            q = q
                .bind(r.id.as_str())
                .bind(i64::from(r.from_version))
                .bind(r.sealed.as_slice());
        }
        let done = q
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

pub(crate) async fn put_policy(c: &mut SqliteConnection, p: &Policy) -> Result<()> {
    let body = serde_json::to_string(p)
        .map_err(|e| Error::invalid_input(format!("policy {} cannot be stored: {e}", p.name)))?;
    sqlx::query(
        "INSERT INTO policies (name, body, updated_at) VALUES (?, ?, ?) \
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

pub(crate) async fn delete_policy(c: &mut SqliteConnection, name: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM policies WHERE name = ?")
        .bind(name)
        .execute(c)
        .await
        .map_err(|e| backend("deleting a policy", e))?;
    if done.rows_affected() == 0 {
        return Err(missing(format_args!("policy {name}")));
    }
    Ok(())
}

pub(crate) async fn list_audit_for_target<'e, E: Executor<'e, Database = Sqlite>>(
    e: E,
    target: &str,
    max: usize,
) -> Result<Vec<rotation_core::audit::AuditEvent>> {
    let found = sqlx::query("SELECT * FROM audit_events WHERE target = ? ORDER BY seq DESC LIMIT ?")
        .bind(target)
        .bind(limit(max))
        .fetch_all(e)
        .await
        .map_err(|err| backend("listing audit events", err))?;
    rows::all(&found, rows::audit_event)
}
