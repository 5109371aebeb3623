//! `rotation chain ...`.

use rotation_core::chain::ChainVerdict;
use rotation_core::engine::IssueRequest;
use rotation_core::ids::{AgentId, AuthorityId};
use rotation_core::ports::RecordQuery;
use rotation_core::{Error, Reason, Result};

use crate::app::Context;
use crate::cli::{ChainCommand, Output};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: ChainCommand) -> Result<()> {
    let out = ctx.global.output;
    match command {
        ChainCommand::Issue {
            agent_id,
            authority,
            capabilities,
            delegate_to,
        } => {
            let engine = ctx.engine(true).await?;
            let records = engine
                .issue_chain(IssueRequest {
                    agent_id: AgentId::parse(agent_id)?,
                    authority_id: AuthorityId::parse(authority)?,
                    capabilities,
                    delegate_to: delegate_to.map(AgentId::parse).transpose()?,
                })
                .await?;
            output::records(out, &records)
        }
        ChainCommand::Verify { agent_id, all } => {
            let engine = ctx.engine(false).await?;
            let verdicts = match agent_id {
                Some(agent) if !all => vec![engine.verify_agent_chain(&AgentId::parse(agent)?).await?],
                _ => engine.verify_all_chains().await?,
            };
            print_verdicts(out, &verdicts)?;
            check_verdicts(&verdicts)
        }
        ChainCommand::List { authority, agent } => {
            let engine = ctx.engine(false).await?;
            let query = RecordQuery {
                agent: agent.map(AgentId::parse).transpose()?,
                authority: authority.map(AuthorityId::parse).transpose()?,
                ..RecordQuery::default()
            };
            if let Some(a) = &query.authority {
                engine.authority(a).await?;
            }
            let records = engine.list_records(&query).await?;
            output::records(out, &records)
        }
    }
}

pub(crate) fn print_verdicts(out: Output, verdicts: &[ChainVerdict]) -> Result<()> {
    match out {
        Output::Json => output::json(verdicts),
        Output::Table => {
            let mut t = output::table(&["agent", "valid", "records", "reason", "record"]);
            for v in verdicts {
                t.add_row(vec![
                    v.agent_id.to_string(),
                    v.valid.to_string(),
                    v.records.to_string(),
                    v.reason.clone().unwrap_or_else(|| "-".into()),
                    v.record_id.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
                ]);
            }
            output::print_table(&t)
        }
    }
}

/// `verification_failed` when any chain is invalid.
pub(crate) fn check_verdicts(verdicts: &[ChainVerdict]) -> Result<()> {
    let invalid = verdicts.iter().filter(|v| !v.valid).count();
    if invalid == 0 {
        Ok(())
    } else {
        Err(Error::new(
            Reason::VerificationFailed,
            format!("{invalid} of {} trust chains failed verification", verdicts.len()),
        ))
    }
}
