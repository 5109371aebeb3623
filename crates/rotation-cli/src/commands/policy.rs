//! `rotation policy ...`.

use rotation_core::Result;
use rotation_core::policy::Policy;

use crate::app::Context;
use crate::cli::{Output, PolicyCommand};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: PolicyCommand) -> Result<()> {
    let out = ctx.global.output;
    let engine = ctx.engine(false).await?;
    match command {
        PolicyCommand::Set { name, spec } => {
            let policy = spec.into_spec().into_policy(&name, engine.now())?;
            // http: tests and webhooks may not point at internal addresses.
            rotation_app::check_policy_urls(&policy, &rotation_app::url_allowlist_from_env()?).await?;
            let policy = engine.set_policy(policy).await?;
            show(out, &policy)
        }
        PolicyCommand::List => {
            let policies = engine.list_policies().await?;
            match out {
                Output::Json => output::json(&policies),
                Output::Table => {
                    let mut t = output::table(&["policy", "trigger", "migrate", "retire old"]);
                    for p in &policies {
                        t.add_row(vec![
                            p.name.clone(),
                            serde_json::to_string(&p.trigger).unwrap_or_default(),
                            p.migrate.to_string(),
                            p.retire_old.to_string(),
                        ]);
                    }
                    output::print_table(&t)
                }
            }
        }
        PolicyCommand::Show { name } => show(out, &engine.policy(&name).await?),
        PolicyCommand::Remove { name } => {
            engine.remove_policy(&name).await?;
            output::record(out, &serde_json::json!({"removed": name}), &[("removed", name.clone())])
        }
    }
}

fn show(out: Output, p: &Policy) -> Result<()> {
    let d = &p.procedure;
    let rows = [
        ("policy", p.name.clone()),
        ("trigger", serde_json::to_string(&p.trigger).unwrap_or_default()),
        ("rotation type", d.rotation_type.as_str().to_owned()),
        ("window", d.window_minutes.map_or("-".into(), |m| format!("{m} min"))),
        (
            "strategy",
            d.strategy.map_or("by secret type".into(), |s| s.as_str().to_owned()),
        ),
        ("generator", d.generator.as_ref().map_or("default".into(), |g| g.spec())),
        (
            "verification",
            if d.require_verification {
                format!("on: {}", d.verification_tests.join(", "))
            } else {
                "off".into()
            },
        ),
        ("auto rollback", d.auto_rollback.to_string()),
        (
            "max retries",
            format!("{} (backoff {} s, doubling)", d.max_retries, d.retry_backoff_seconds),
        ),
        (
            "grace period",
            d.grace_period_hours.map_or("default".into(), |h| format!("{h} h")),
        ),
        ("active", d.is_active.to_string()),
        (
            "notify",
            if d.notify.is_empty() {
                "-".into()
            } else {
                d.notify.len().to_string() + " recipient(s)"
            },
        ),
        ("notify on failure", d.notify_on_failure.to_string()),
        (
            "notify before",
            d.notify_before_hours
                .iter()
                .map(|h| format!("{h}h"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("auto revoke", d.auto_revoke.to_string()),
        ("migrate", p.migrate.to_string()),
        ("retire old", p.retire_old.to_string()),
    ];
    output::record(out, p, &rows)
}
