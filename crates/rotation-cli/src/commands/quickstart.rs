//! `rotation quickstart`: the main job, end to end, on the embedded store.

use rotation_core::chain::ChainVerdict;
use rotation_core::engine::{IssueRequest, NewAuthority, RotateRequest, RotationResult, RotationStatusInfo};
use rotation_core::ids::{AgentId, AuthorityId};
use rotation_core::ports::RecordQuery;
use rotation_core::{Error, Reason, Result};
use serde::Serialize;

use crate::app::{Context, KEK_META};
use crate::cli::Output;
use crate::commands::{authority, chain, init};
use crate::output;

const AUTHORITY: &str = "org-acme";

#[derive(Serialize)]
struct QuickstartReport {
    initialised: bool,
    authority_created: bool,
    chains_issued: Vec<String>,
    rotation: RotationResult,
    verification: Vec<ChainVerdict>,
    status: RotationStatusInfo,
}

pub(crate) async fn run(ctx: &Context) -> Result<()> {
    let out = ctx.global.output;
    let say = |text: &str| {
        if out == Output::Table {
            output::line(text)
        } else {
            Ok(())
        }
    };

    let initialised = needs_init(ctx).await?;
    if initialised {
        let report = init::initialise(ctx).await?;
        say(&format!(
            "initialised {} (master key: {})",
            report.store, report.master_key
        ))?;
    }
    let engine = ctx.engine(true).await?;
    let id = AuthorityId::parse(AUTHORITY)?;
    let authority_created = engine.store().get_authority(&id).await?.is_none();
    if authority_created {
        engine
            .create_authority(NewAuthority {
                id: id.clone(),
                name: Some("Acme Corporation".into()),
                rotation_period_days: None,
                grace_period_hours: None,
            })
            .await?;
        say(&format!("created authority {AUTHORITY}"))?;
    }
    let agent = |s: &str| AgentId::parse(s);
    let wanted = [
        IssueRequest {
            agent_id: agent("agent-alpha")?,
            authority_id: id.clone(),
            capabilities: vec!["read:reports".into(), "write:reports".into()],
            delegate_to: None,
        },
        IssueRequest {
            agent_id: agent("agent-beta")?,
            authority_id: id.clone(),
            capabilities: vec!["deploy:services".into()],
            delegate_to: Some(agent("agent-gamma")?),
        },
        IssueRequest {
            agent_id: agent("agent-gamma")?,
            authority_id: id.clone(),
            capabilities: vec!["audit:logs".into()],
            delegate_to: None,
        },
    ];
    let mut chains_issued = Vec::new();
    for request in wanted {
        let existing = engine
            .list_records(&RecordQuery {
                agent: Some(request.agent_id.clone()),
                limit: 1,
                ..RecordQuery::default()
            })
            .await?;
        if existing.is_empty() {
            let records = engine.issue_chain(request.clone()).await?;
            say(&format!(
                "issued trust chain of {} ({} records)",
                request.agent_id,
                records.len()
            ))?;
            chains_issued.push(request.agent_id.to_string());
        }
    }
    let rotation = engine.rotate_key(RotateRequest::new(id.clone())).await?;
    let verification = engine.verify_all_chains().await?;
    let status = engine.get_rotation_status(&id).await?;
    match out {
        Output::Json => output::json(&QuickstartReport {
            initialised,
            authority_created,
            chains_issued,
            rotation,
            verification: verification.clone(),
            status,
        })?,
        Output::Table => {
            output::line("\nrotation")?;
            authority::print_rotation(out, &rotation)?;
            output::line("\ntrust chains")?;
            chain::print_verdicts(out, &verification)?;
            output::line("\nstatus")?;
            authority::print_status(out, &status)?;
        }
    }
    chain::check_verdicts(&verification)
}

/// Whether the store still has to be initialised.
async fn needs_init(ctx: &Context) -> Result<bool> {
    if !ctx.store_may_exist()? {
        return Ok(true);
    }
    let store = ctx.open_store(false).await?;
    match rotation_core::ports::StateStore::get_meta(store.as_ref(), KEK_META).await {
        Ok(Some(_)) => Ok(false),
        Ok(None) => Ok(true),
        Err(e) if e.reason == Reason::NotFound => Ok(true),
        Err(e) => Err(Error::new(e.reason, e.message)),
    }
}
