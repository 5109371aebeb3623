//! `rotation policy ...`.

use rotation_core::policy::{Policy, Trigger};
use rotation_core::{Error, Reason, Result};

use crate::app::Context;
use crate::cli::{Output, PolicyCommand};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: PolicyCommand) -> Result<()> {
    let out = ctx.global.output;
    let engine = ctx.engine(false).await?;
    match command {
        PolicyCommand::Set {
            name,
            max_age_days,
            max_uses,
            cron,
            timezone,
            monthly,
            all,
            migrate,
            retire_old,
        } => {
            let mut triggers = Vec::new();
            if let Some(days) = max_age_days {
                triggers.push(Trigger::MaxAgeDays(days));
            }
            if let Some(n) = max_uses {
                triggers.push(Trigger::MaxUses(n));
            }
            if let Some(expr) = cron {
                triggers.push(Trigger::Cron { expr, timezone });
            }
            if let Some(m) = monthly {
                triggers.push(parse_monthly(&m)?);
            }
            let trigger = match triggers.len() {
                0 => {
                    return Err(Error::new(
                        Reason::InvalidPolicy,
                        "invalid policy field `trigger`: give --max-age-days, --max-uses, --cron or --monthly",
                    ));
                }
                1 => triggers.remove(0),
                _ if all => Trigger::All(triggers),
                _ => Trigger::Any(triggers),
            };
            let policy = engine
                .set_policy(Policy {
                    name,
                    trigger,
                    migrate,
                    retire_old,
                    updated_at: engine.now(),
                    procedure: Default::default(),
                })
                .await?;
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
    let rows = [
        ("policy", p.name.clone()),
        ("trigger", serde_json::to_string(&p.trigger).unwrap_or_default()),
        ("migrate", p.migrate.to_string()),
        ("retire old", p.retire_old.to_string()),
    ];
    output::record(out, p, &rows)
}

/// `DAY:HH:MM`.
fn parse_monthly(text: &str) -> Result<Trigger> {
    let bad = || {
        Error::new(
            Reason::InvalidPolicy,
            format!("invalid policy field `monthly`: {text:?} is not DAY:HH:MM"),
        )
    };
    let parts: Vec<&str> = text.split(':').collect();
    let [day, hour, minute] = parts.as_slice() else {
        return Err(bad());
    };
    Ok(Trigger::Monthly {
        day: day.parse().map_err(|_| bad())?,
        hour: hour.parse().map_err(|_| bad())?,
        minute: minute.parse().map_err(|_| bad())?,
    })
}
