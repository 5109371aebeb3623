//! A consistent copy of the whole store, read inside one transaction (for
//! encrypted backups), and the wholesale delete a forced restore needs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rotation_core::Result;
use rotation_core::ports::Snapshot;
use sqlx::{Row, SqliteConnection, SqlitePool};

use crate::error::backend;
use crate::rows;

/// Every table, in a deferred read transaction: WAL gives it one
/// consistent view while writers go on.
pub(crate) async fn snapshot(pool: &SqlitePool) -> Result<Snapshot> {
    let mut tx = pool.begin().await.map_err(|e| backend("beginning a snapshot", e))?;
    let read = |what: &'static str| move |e| backend(what, e);
    let meta = sqlx::query("SELECT key, value FROM meta ORDER BY key")
        .fetch_all(&mut *tx)
        .await
        .map_err(read("reading meta"))?
        .iter()
        .map(|r| {
            let key: String = r.try_get("key").map_err(read("reading meta"))?;
            let value: Vec<u8> = r.try_get("value").map_err(read("reading meta"))?;
            Ok((key, URL_SAFE_NO_PAD.encode(value)))
        })
        .collect::<Result<Vec<_>>>()?;
    macro_rules! table {
        ($sql:literal, $map:path, $what:literal) => {
            rows::all(
                &sqlx::query($sql).fetch_all(&mut *tx).await.map_err(read($what))?,
                $map,
            )?
        };
    }
    let snapshot = Snapshot {
        meta,
        authorities: table!(
            "SELECT * FROM authorities ORDER BY id",
            rows::authority,
            "reading authorities"
        ),
        keys: table!(
            "SELECT * FROM signing_keys ORDER BY key_id",
            rows::signing_key,
            "reading keys"
        ),
        records: table!(
            "SELECT * FROM trust_records ORDER BY agent_id, id",
            rows::trust_record,
            "reading records"
        ),
        runs: table!(
            "SELECT * FROM runs ORDER BY started_at, rotation_id",
            rows::run,
            "reading runs"
        ),
        schedules: table!(
            "SELECT * FROM schedules ORDER BY due_at, id",
            rows::schedule,
            "reading schedules"
        ),
        audit: table!(
            "SELECT * FROM audit_events ORDER BY seq",
            rows::audit_event,
            "reading audit events"
        ),
        audit_head: sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(read("reading the audit head"))?
            .as_ref()
            .map(rows::audit_head)
            .transpose()?,
        keyrings: table!(
            "SELECT * FROM keyrings ORDER BY name",
            rows::keyring,
            "reading keyrings"
        ),
        versions: table!(
            "SELECT * FROM key_versions ORDER BY keyring, version",
            rows::key_version,
            "reading key versions"
        ),
        values: table!(
            "SELECT * FROM sealed_values ORDER BY keyring, id",
            rows::sealed_value,
            "reading values"
        ),
        policies: table!("SELECT * FROM policies ORDER BY name", rows::policy, "reading policies"),
        secrets: table!("SELECT * FROM secrets ORDER BY path", rows::secret, "reading secrets"),
        secret_versions: table!(
            "SELECT * FROM secret_versions ORDER BY path, version",
            rows::secret_version,
            "reading secret versions"
        ),
        outbox: table!(
            "SELECT * FROM outbox ORDER BY created_at, id",
            rows::outbox_message,
            "reading the outbox"
        ),
    };
    tx.rollback().await.map_err(read("ending a snapshot"))?;
    Ok(snapshot)
}

/// Deletes every row of every table.
pub(crate) async fn clear_all(c: &mut SqliteConnection) -> Result<()> {
    for table in [
        "meta",
        "authorities",
        "signing_keys",
        "trust_records",
        "runs",
        "schedules",
        "audit_events",
        "audit_head",
        "keyrings",
        "key_versions",
        "sealed_values",
        "policies",
        "secrets",
        "secret_versions",
        "outbox",
    ] {
        // Fixed table names only.
        let sql = sqlx::AssertSqlSafe(format!("DELETE FROM {table}"));
        sqlx::query(sql)
            .execute(&mut *c)
            .await
            .map_err(|e| backend("clearing the store", e))?;
    }
    Ok(())
}
