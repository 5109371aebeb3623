//! `rotation value ...`: values stored encrypted under a keyring.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};

use rotation_core::ids::{KeyringName, ValueId};
use rotation_core::time::rfc3339;
use rotation_core::{Error, Result};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::app::Context;
use crate::cli::{Output, ValueCommand};
use crate::output;

/// Values per batch for import and export.
const BATCH: usize = 2000;

/// One line of the import/export format.
#[derive(Deserialize)]
struct Line {
    id: String,
    value: String,
}

#[derive(Serialize)]
struct OutLine<'a> {
    id: &'a str,
    value: &'a str,
}

pub(crate) async fn run(ctx: &Context, command: ValueCommand) -> Result<()> {
    let out = ctx.global.output;
    super::user_keyring(command.keyring_name())?;
    match command {
        ValueCommand::Encrypt { keyring, id, value } => {
            let engine = ctx.engine(true).await?;
            let plaintext = match value {
                Some(v) => Zeroizing::new(v.into_bytes()),
                None => {
                    let mut buf = Zeroizing::new(Vec::new());
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .map_err(|e| Error::invalid_input(format!("cannot read the value from stdin: {e}")))?;
                    buf
                }
            };
            let stored = engine
                .encrypt_value(&KeyringName::parse(keyring)?, &ValueId::parse(id)?, &plaintext)
                .await?;
            let view = ValueView::from(&stored);
            let rows = [
                ("id", view.id.clone()),
                ("keyring", view.keyring.clone()),
                ("key version", view.key_version.to_string()),
                ("sealed", view.sealed.clone()),
            ];
            output::record(out, &view, &rows)
        }
        ValueCommand::Decrypt { keyring, id } => {
            let engine = ctx.engine(true).await?;
            let id = ValueId::parse(id)?;
            let plaintext = engine.decrypt_value(&KeyringName::parse(keyring)?, &id).await?;
            if out == Output::Json {
                let text = std::str::from_utf8(&plaintext).map_err(|_| {
                    Error::invalid_input(format!("value {id} is not UTF-8; print it without --output json"))
                })?;
                let line = Zeroizing::new(
                    serde_json::to_string(&OutLine {
                        id: id.as_str(),
                        value: text,
                    })
                    .map_err(|e| Error::invalid_input(e.to_string()))?,
                );
                return output::line(&line);
            }
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&plaintext)
                .and_then(|()| stdout.flush())
                .map_err(|e| Error::backend(format!("cannot write to stdout: {e}")))
        }
        ValueCommand::List { keyring, limit, after } => {
            let engine = ctx.engine(false).await?;
            let after = after.map(ValueId::parse).transpose()?;
            let values = engine
                .list_values(&KeyringName::parse(keyring)?, after.as_ref(), limit)
                .await?;
            let views: Vec<ValueView> = values.iter().map(ValueView::from).collect();
            match out {
                Output::Json => output::json(&views),
                Output::Table => {
                    let mut t = output::table(&["id", "key version", "updated"]);
                    for v in &views {
                        t.add_row(vec![v.id.clone(), v.key_version.to_string(), v.updated_at.clone()]);
                    }
                    output::print_table(&t)
                }
            }
        }
        ValueCommand::Import { keyring, file } => {
            let engine = ctx.engine(true).await?;
            let name = KeyringName::parse(keyring)?;
            let reader: Box<dyn BufRead> = match &file {
                Some(path) => {
                    Box::new(BufReader::new(std::fs::File::open(path).map_err(|e| {
                        Error::invalid_input(format!("cannot open {}: {e}", path.display()))
                    })?))
                }
                None => Box::new(BufReader::new(std::io::stdin())),
            };
            let mut batch: Vec<(ValueId, Zeroizing<Vec<u8>>)> = Vec::with_capacity(BATCH);
            let mut imported = 0u64;
            let mut version = 0;
            for (n, line) in reader.lines().enumerate() {
                let line = Zeroizing::new(line.map_err(|e| Error::invalid_input(format!("line {}: {e}", n + 1)))?);
                if line.trim().is_empty() {
                    continue;
                }
                // Parse errors never echo the line: it holds a secret.
                let parsed: Line = serde_json::from_str(&line).map_err(|e| {
                    Error::invalid_input(format!(
                        "line {}: expected {{\"id\": \"...\", \"value\": \"...\"}} (bad {} at column {}); {imported} values imported before it",
                        n + 1,
                        match e.classify() {
                            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "JSON",
                            _ => "fields",
                        },
                        e.column()
                    ))
                })?;
                let id = ValueId::parse(parsed.id).map_err(|e| {
                    Error::invalid_input(format!(
                        "line {}: {}; {imported} values imported before it",
                        n + 1,
                        e.message
                    ))
                })?;
                batch.push((id, Zeroizing::new(parsed.value.into_bytes())));
                if batch.len() == BATCH {
                    let r = engine.import_batch(&name, &batch).await?;
                    imported += r.imported;
                    version = r.key_version;
                    batch.clear();
                }
            }
            let r = engine.import_batch(&name, &batch).await?;
            imported += r.imported;
            if r.imported > 0 {
                version = r.key_version;
            }
            #[derive(Serialize)]
            struct Imported<'a> {
                keyring: &'a str,
                imported: u64,
                key_version: u32,
            }
            let report = Imported {
                keyring: name.as_str(),
                imported,
                key_version: version,
            };
            output::record(
                out,
                &report,
                &[
                    ("keyring", name.to_string()),
                    ("imported", imported.to_string()),
                    ("key version", version.to_string()),
                ],
            )
        }
        ValueCommand::Export { keyring, out: path } => {
            let engine = ctx.engine(true).await?;
            let name = KeyringName::parse(keyring)?;
            let sink: Box<dyn Write> = match &path {
                Some(p) => Box::new(private_file(p)?),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut sink = BufWriter::new(sink);
            let mut after: Option<ValueId> = None;
            let mut exported = 0u64;
            loop {
                let page = engine.list_values(&name, after.as_ref(), BATCH).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                let opened = engine.open_values(&name, &page).await?;
                for (value, plaintext) in page.iter().zip(opened) {
                    let plaintext = plaintext?;
                    let text = std::str::from_utf8(&plaintext).map_err(|_| {
                        Error::invalid_input(format!(
                            "value {} is not UTF-8 and cannot be exported as JSON text",
                            value.id
                        ))
                    })?;
                    let line = Zeroizing::new(
                        serde_json::to_string(&OutLine {
                            id: value.id.as_str(),
                            value: text,
                        })
                        .map_err(|e| Error::invalid_input(e.to_string()))?,
                    );
                    match sink.write_all(line.as_bytes()).and_then(|()| sink.write_all(b"\n")) {
                        Ok(()) => {}
                        // The reader went away (e.g. `| head`): stop quietly.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                        Err(e) => return Err(Error::backend(format!("cannot write the export: {e}"))),
                    }
                }
                engine.audit_read(&name, &page).await?;
                exported += page.len() as u64;
            }
            match sink.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(Error::backend(format!("cannot write the export: {e}"))),
            }
            if path.is_some() {
                eprintln!("exported {exported} values");
            }
            Ok(())
        }
    }
}

/// A stored value as listed: its sealed text form, never the plaintext.
#[derive(Serialize)]
struct ValueView {
    id: String,
    keyring: String,
    key_version: u32,
    sealed: String,
    created_at: String,
    updated_at: String,
}

impl From<&rotation_core::keyring::SealedValue> for ValueView {
    fn from(v: &rotation_core::keyring::SealedValue) -> Self {
        use base64::Engine as _;
        ValueView {
            id: v.id.to_string(),
            keyring: v.keyring.to_string(),
            key_version: v.key_version,
            sealed: format!(
                "rot:v{}:{}",
                v.key_version,
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&v.sealed)
            ),
            created_at: rfc3339(v.created_at),
            updated_at: rfc3339(v.updated_at),
        }
    }
}

/// A new file readable only by its owner.
pub(crate) fn private_file(path: &std::path::Path) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| {
        Error::invalid_input(format!(
            "cannot create {}: {e} (the export never overwrites a file)",
            path.display()
        ))
    })
}
