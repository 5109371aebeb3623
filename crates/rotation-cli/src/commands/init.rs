//! `rotation init`: data directory, store and master key.

use std::io::Write;
use std::path::Path;

use rotation_core::audit::{self, AuditDraft, event};
use rotation_core::ids::Target;
use rotation_core::ports::CryptoProvider;
use rotation_core::{Error, Reason, Result};
use rotation_crypto::{Kek, MasterSecret, RingCrypto};
use serde::Serialize;
use serde_json::json;

use crate::app::{Context, KEK_META, PASSWORD_ENV};
use crate::output;

/// What `init` did.
#[derive(Debug, Serialize)]
pub(crate) struct InitReport {
    pub(crate) store: String,
    pub(crate) data_dir: String,
    pub(crate) master_key: String,
    pub(crate) key_file: Option<String>,
    pub(crate) key_file_created: bool,
}

/// Initialises a store; `already_exists` if it already is.
pub(crate) async fn run(ctx: &Context) -> Result<InitReport> {
    let report = initialise(ctx).await?;
    let rows = [
        ("store", report.store.clone()),
        ("data dir", report.data_dir.clone()),
        ("master key", report.master_key.clone()),
        ("key file", report.key_file.clone().unwrap_or_else(|| "-".into())),
    ];
    output::record(ctx.global.output, &report, &rows)?;
    Ok(report)
}

/// Initialises a store without printing.
pub(crate) async fn initialise(ctx: &Context) -> Result<InitReport> {
    let cost = rotation_app::kdf_cost_from_env()?;
    let data_dir = ctx.data_dir()?;
    create_private_dir(&data_dir)?;
    let store = ctx.open_store(true).await?;
    if store.get_meta(KEK_META).await?.is_some() {
        return Err(Error::new(
            Reason::AlreadyExists,
            format!(
                "the store {} is already initialised; nothing was changed",
                ctx.store_display()
            ),
        ));
    }
    let crypto = RingCrypto::new();
    let mut key_file = None;
    let mut key_file_created = false;
    let secret = if std::env::var(PASSWORD_ENV).is_ok_and(|p| !p.is_empty()) {
        ctx.master_secret(None)?
    } else {
        let path = ctx.key_file()?;
        if !path.exists() {
            create_key_file(&path, &crypto)?;
            key_file_created = true;
        }
        key_file = Some(path.display().to_string());
        ctx.master_secret(None)?
    };
    let kind = match secret {
        MasterSecret::Password(_) => format!("password ({PASSWORD_ENV})"),
        MasterSecret::KeyFile(_) => "key file".to_owned(),
    };
    if let Some(notice) = rotation_app::kdf_cost_notice(&secret, cost) {
        eprintln!("{notice}");
    }
    let (_kek, params) = Kek::create_generation(&secret, 1, cost)?;
    let params_json = serde_json::to_vec(&params).map_err(|e| Error::invalid_input(e.to_string()))?;
    let mut tx = store.begin().await?;
    tx.put_meta(KEK_META, &params_json).await?;
    let now = rotation_core::time::truncate(chrono::Utc::now());
    let draft = AuditDraft {
        event: event::STORE_INITIALISED.into(),
        target: Target::Store,
        rotation_id: None,
        actor: "cli".into(),
        details: json!({"master_key": params.kind}),
    };
    audit::append(tx.as_mut(), &crypto, now, vec![draft]).await?;
    tx.commit().await?;
    Ok(InitReport {
        store: ctx.store_display(),
        data_dir: data_dir.display().to_string(),
        master_key: kind,
        key_file,
        key_file_created,
    })
}

/// Creates a data directory (and missing parents) with mode 0700; an
/// existing one is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::backend(format!("cannot create data directory {}: {e}", dir.display())))
}

/// Writes 32 random bytes as hex to a new file readable only by its owner.
pub(crate) fn create_key_file(path: &Path, crypto: &RingCrypto) -> Result<()> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    crypto.fill_random(bytes.as_mut())?;
    let text = zeroize::Zeroizing::new(format!("{}\n", hex::encode(bytes.as_ref())));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Error::backend(format!("cannot create master key file {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::backend(format!("cannot write master key file {}: {e}", path.display())))
}
