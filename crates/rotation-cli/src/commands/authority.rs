//! `rotation authority ...`.

use rotation_core::engine::{NewAuthority, RevokeOptions, RotateRequest, RotationResult, RotationStatusInfo};
use rotation_core::ids::{AuthorityId, KeyId};
use rotation_core::time::rfc3339;
use rotation_core::{Error, Result};
use serde::Serialize;

use crate::app::Context;
use crate::cli::{AuthorityCommand, Output};
use crate::output::{self, KeyView, time};

pub(crate) async fn run(ctx: &Context, command: AuthorityCommand) -> Result<()> {
    let out = ctx.global.output;
    match command {
        AuthorityCommand::Create {
            id,
            name,
            rotation_period_days,
            grace_period_hours,
            prepublish_hours,
        } => {
            let engine = ctx.engine(true).await?;
            let authority = engine
                .create_authority(NewAuthority {
                    id: AuthorityId::parse(id)?,
                    name,
                    rotation_period_days: Some(rotation_period_days),
                    grace_period_hours: Some(grace_period_hours),
                })
                .await?;
            if prepublish_hours > 0 {
                engine.set_prepublish_hours(&authority.id, prepublish_hours).await?;
            }
            show(ctx, &authority.id).await
        }
        AuthorityCommand::List => {
            let engine = ctx.engine(false).await?;
            let authorities = engine.list_authorities().await?;
            match out {
                Output::Json => output::json(&authorities),
                Output::Table => {
                    let mut t = output::table(&[
                        "id",
                        "name",
                        "current key",
                        "period (days)",
                        "grace (h)",
                        "last rotated",
                    ]);
                    for a in &authorities {
                        t.add_row(vec![
                            a.id.to_string(),
                            a.name.clone(),
                            a.current_key_id.to_string(),
                            a.rotation_period_days.to_string(),
                            a.grace_period_hours.to_string(),
                            time(a.last_rotated_at),
                        ]);
                    }
                    output::print_table(&t)
                }
            }
        }
        AuthorityCommand::Show { id } => show(ctx, &AuthorityId::parse(id)?).await,
        AuthorityCommand::Rotate { id, grace_period_hours } => {
            let engine = ctx.engine(true).await?;
            let mut request = RotateRequest::new(AuthorityId::parse(id)?);
            request.grace_period_hours = grace_period_hours;
            let result = engine.rotate_key(request).await?;
            print_rotation(out, &result)
        }
        AuthorityCommand::Schedule { id, at } => {
            let engine = ctx.engine(false).await?;
            let authority = AuthorityId::parse(id)?;
            let at = chrono::DateTime::parse_from_rfc3339(&at)
                .map_err(|e| Error::invalid_input(format!("--at {at:?} is not an RFC 3339 time: {e}")))?
                .with_timezone(&chrono::Utc);
            let rotation_id = engine.schedule_rotation(&authority, at).await?;
            #[derive(Serialize)]
            struct Scheduled {
                rotation_id: String,
                authority_id: String,
                due_at: String,
            }
            let s = Scheduled {
                rotation_id: rotation_id.to_string(),
                authority_id: authority.to_string(),
                due_at: rfc3339(rotation_core::time::truncate(at)),
            };
            let rows = [
                ("rotation id", s.rotation_id.clone()),
                ("authority", s.authority_id.clone()),
                ("due at", s.due_at.clone()),
            ];
            output::record(out, &s, &rows)
        }
        AuthorityCommand::Status { id } => {
            let engine = ctx.engine(false).await?;
            let status = engine.get_rotation_status(&AuthorityId::parse(id)?).await?;
            print_status(out, &status)
        }
        AuthorityCommand::Revoke {
            id,
            key_id,
            force,
            reason,
        } => {
            let engine = ctx.engine(false).await?;
            let key = engine
                .revoke_old_key(
                    &AuthorityId::parse(id)?,
                    &KeyId::parse(key_id)?,
                    RevokeOptions { force, reason },
                )
                .await?;
            let view = KeyView::new(&key, engine.now());
            let rows = [
                ("key", view.key_id.clone()),
                ("state", "revoked".into()),
                ("revoked at", time(view.revoked_at)),
                ("reason", view.revocation_reason.clone().unwrap_or_else(|| "-".into())),
            ];
            output::record(out, &view, &rows)
        }
        AuthorityCommand::Jwks { id } => {
            let engine = ctx.engine(false).await?;
            let jwks = engine.jwks(&AuthorityId::parse(id)?).await?;
            output::json(&jwks)
        }
    }
}

async fn show(ctx: &Context, id: &AuthorityId) -> Result<()> {
    let engine = ctx.engine(false).await?;
    let authority = engine.authority(id).await?;
    let now = engine.now();
    let keys: Vec<KeyView> = engine.keys(id).await?.iter().map(|k| KeyView::new(k, now)).collect();
    match ctx.global.output {
        Output::Json => {
            #[derive(Serialize)]
            struct Shown<'a> {
                #[serde(flatten)]
                authority: &'a rotation_core::authority::Authority,
                keys: &'a [KeyView],
            }
            output::json(&Shown {
                authority: &authority,
                keys: &keys,
            })
        }
        Output::Table => {
            let mut t = output::table(&["field", "value"]);
            t.add_row(vec!["id".into(), authority.id.to_string()]);
            t.add_row(vec!["name".into(), authority.name.clone()]);
            t.add_row(vec!["current key".into(), authority.current_key_id.to_string()]);
            t.add_row(vec![
                "rotation period (days)".into(),
                authority.rotation_period_days.to_string(),
            ]);
            t.add_row(vec![
                "grace period (hours)".into(),
                authority.grace_period_hours.to_string(),
            ]);
            t.add_row(vec![
                "prepublish next key (hours)".into(),
                authority.prepublish_hours.to_string(),
            ]);
            t.add_row(vec!["created".into(), rfc3339(authority.created_at)]);
            t.add_row(vec!["last rotated".into(), time(authority.last_rotated_at)]);
            output::print_table(&t)?;
            let mut k = output::table(&["key", "state", "created", "activated", "grace until", "revoked"]);
            for key in &keys {
                k.add_row(vec![
                    key.key_id.clone(),
                    key.state.as_str().to_owned(),
                    rfc3339(key.created_at),
                    time(key.activated_at),
                    time(key.grace_until),
                    time(key.revoked_at),
                ]);
            }
            output::print_table(&k)
        }
    }
}

pub(crate) fn print_rotation(out: Output, r: &RotationResult) -> Result<()> {
    let rows = [
        ("rotation id", r.rotation_id.to_string()),
        ("authority", r.authority_id.to_string()),
        ("old key", r.old_key_id.to_string()),
        ("new key", r.new_key_id.to_string()),
        ("chains updated", r.chains_updated.to_string()),
        ("started", rfc3339(r.started_at)),
        ("completed", rfc3339(r.completed_at)),
        ("grace period end", time(r.grace_period_end)),
        ("resumed", r.resumed.to_string()),
    ];
    output::record(out, r, &rows)
}

pub(crate) fn print_status(out: Output, s: &RotationStatusInfo) -> Result<()> {
    let list = |v: &[KeyId]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        }
    };
    let grace = if s.grace_period_keys.is_empty() {
        "-".to_owned()
    } else {
        s.grace_period_keys
            .iter()
            .map(|(k, t)| format!("{k} until {}", rfc3339(*t)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = [
        ("authority", s.authority_id.to_string()),
        ("status", s.status.as_str().to_owned()),
        ("current key", s.current_key_id.to_string()),
        ("last rotation", time(s.last_rotation)),
        ("next scheduled", time(s.next_scheduled)),
        ("rotation due", rfc3339(s.rotation_due_at)),
        ("overdue", s.overdue.to_string()),
        ("rotation period (days)", s.rotation_period_days.to_string()),
        ("keys in grace period", grace),
        ("pending revocations", list(&s.pending_revocations)),
        (
            "active rotation",
            s.active_rotation_id
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
        ),
    ];
    output::record(out, s, &rows)
}
