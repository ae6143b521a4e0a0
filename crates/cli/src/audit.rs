//! `sspr audit`: query the log, verify its hash chain, sign a checkpoint, prune old events.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use sspr_domain::clock::rfc3339;

use crate::commands::ListFormat;
use crate::runtime::Runtime;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    cmd: Option<AuditCmd>,
    #[command(flatten)]
    query: QueryArgs,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Recompute the hash chain over every event and check it against the signed checkpoints;
    /// exit 1 and name the first broken link if anything was changed, inserted or deleted.
    Verify,
    /// Sign and store a checkpoint at the newest event now (`serve` makes one every
    /// `audit.checkpoint_minutes`), and print it: keep that line apart from the database.
    Checkpoint,
    /// Delete events older than `audit.retention_days` (or --older-than-days) now, as `serve`
    /// does every hour, archiving them first when `audit.archive_dir` is set.
    Prune {
        #[arg(long)]
        older_than_days: Option<u32>,
    },
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// From (UTC): 2026-11-24 or 2026-11-24T09:00:00Z.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    activity: Option<String>,
    /// success or failure.
    #[arg(long)]
    result: Option<String>,
    /// logon_screen, ssh, browser, cli, api or system.
    #[arg(long)]
    client_type: Option<String>,
    #[arg(long)]
    ip: Option<String>,
    #[arg(long)]
    support_code: Option<String>,
    /// The next, older page: the cursor a full page ended with (printed on standard error).
    #[arg(long)]
    before: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// table, json, csv, or ecs: every matching event oldest first (no --limit), one ECS
    /// document a line, as the SIEM export sends them (docs/siem.md).
    #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
    format: AuditFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    Table,
    Json,
    Csv,
    Ecs,
}

pub async fn audit(a: AuditArgs, rt: &Runtime) -> anyhow::Result<ExitCode> {
    match a.cmd {
        None => query(a.query, rt).await,
        Some(AuditCmd::Verify) => verify(rt).await,
        Some(AuditCmd::Checkpoint) => checkpoint(rt).await,
        Some(AuditCmd::Prune { older_than_days }) => prune(rt, older_than_days).await,
    }
}

async fn query(a: QueryArgs, rt: &Runtime) -> anyhow::Result<ExitCode> {
    let params = sspr_server::routes::AuditParams {
        since: a.since,
        until: a.until,
        before: a.before,
        user: a.user,
        activity: a.activity,
        result: a.result,
        client_type: a.client_type,
        ip: a.ip,
        support_code: a.support_code,
        limit: Some(a.limit),
        format: None,
        lang: None,
    };
    let filter = match sspr_server::routes::audit_filter(&params) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let format = match a.format {
        AuditFormat::Ecs => return audit_ecs(filter, rt).await,
        AuditFormat::Table => ListFormat::Table,
        AuditFormat::Json => ListFormat::Json,
        AuditFormat::Csv => ListFormat::Csv,
    };
    let found = rt.app.audit_events(&filter).await?;
    let next = (a.limit > 0 && found.len() >= a.limit as usize)
        .then(|| found.first().map(sspr_app::ports::AuditCursor::of))
        .flatten();
    let events: Vec<_> = found
        .into_iter()
        .map(sspr_server::routes::event_dto)
        .collect();
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&events)?),
        ListFormat::Csv => print!("{}", sspr_server::routes::events_csv(&events)),
        ListFormat::Table => {
            println!(
                "{:<20} {:<24} {:<7} {:<16} {:<15} {:<12} {:<22} SUPPORT",
                "TIME", "ACTIVITY", "RESULT", "USER", "IP", "CLIENT", "REASON"
            );
            for e in events {
                println!(
                    "{:<20} {:<24} {:<7} {:<16} {:<15} {:<12} {:<22} {}",
                    e.time,
                    e.activity,
                    e.result,
                    e.target,
                    e.client_ip,
                    e.client_type,
                    e.reason,
                    e.support_code.unwrap_or_default()
                );
            }
        }
    }
    if let Some(c) = next {
        eprintln!(
            "more: the same command with --before {} shows the older events",
            c.encode()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Pages through the whole matching log by id, so an export of millions of events holds one
/// page in memory, and a line is written as soon as its page is read.
async fn audit_ecs(
    mut filter: sspr_app::ports::AuditFilter,
    rt: &Runtime,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    filter.after_id = Some(0);
    filter.before = None;
    filter.limit = 1000;
    let mut out = std::io::stdout().lock();
    loop {
        let page = rt.app.audit_events(&filter).await?;
        let Some(last) = page.last().map(|e| e.id) else {
            break;
        };
        for e in &page {
            writeln!(out, "{}", sspr_server::siem::ecs(e))?;
        }
        filter.after_id = Some(last);
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn verify(rt: &Runtime) -> anyhow::Result<ExitCode> {
    let v = sspr_app::audit_chain::verify(rt.store.as_ref(), &rt.app.key).await?;
    let range = match (v.first_id, v.last_id) {
        (Some(a), Some(b)) => format!("events #{a} to #{b}"),
        _ => "no events".into(),
    };
    let unchained = if v.unchained > 0 {
        format!(
            " ({} written before the chain existed, not covered)",
            v.unchained
        )
    } else {
        String::new()
    };
    if v.intact() {
        println!(
            "intact: {} events checked, {range}{unchained}; {} signed checkpoints agree",
            v.events, v.checkpoints
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "BROKEN: {} events checked, {range}{unchained}; {} checkpoints",
        v.events, v.checkpoints
    );
    for p in &v.problems {
        println!("  {p}");
    }
    Ok(ExitCode::from(1))
}

async fn checkpoint(rt: &Runtime) -> anyhow::Result<ExitCode> {
    match sspr_app::audit_chain::checkpoint(rt.store.as_ref(), &rt.app.key, rt.app.now()).await? {
        Some(c) => println!(
            "audit checkpoint: event #{} chain {} at {} mac {}",
            c.last_id,
            c.chain,
            rfc3339(c.at),
            c.mac
        ),
        None => println!("no new events since the last checkpoint"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn prune(rt: &Runtime, days: Option<u32>) -> anyhow::Result<ExitCode> {
    let days = days.unwrap_or(rt.config.audit.retention_days);
    if days == 0 {
        eprintln!(
            "error: no retention is set: audit.retention_days is 0 (keep for ever); pass --older-than-days N"
        );
        return Ok(ExitCode::from(2));
    }
    let now = rt.app.now();
    let before = now - i64::from(days) * 86_400;
    let n = sspr_app::audit_chain::prune(
        rt.store.as_ref(),
        &rt.app.key,
        now,
        before,
        PRUNE_BATCH,
        rt.config.audit.archive_dir.as_deref(),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    println!("{n} events older than {} deleted", rfc3339(before));
    Ok(ExitCode::SUCCESS)
}

/// Events deleted per transaction: a writer waits for one batch at most.
pub const PRUNE_BATCH: u32 = 2000;
