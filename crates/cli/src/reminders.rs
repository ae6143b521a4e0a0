//! `sspr reminders run`: the password-expiry reminders by hand, or as a dry run that only
//! reports what expires when and what would be sent.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use sspr_app::reminders::ReminderRunner;

use crate::runtime::Runtime;

#[derive(Subcommand, Debug)]
pub enum RemindersCmd {
    /// Queue the reminders due now (each at most once per password, whoever runs it) and
    /// print what expires when. Messages go out through the outbox of `sspr serve`.
    Run {
        /// Only report: queue nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

pub async fn reminders(c: RemindersCmd, rt: &Runtime) -> anyhow::Result<ExitCode> {
    let RemindersCmd::Run { dry_run, format } = c;
    let report = match rt.app.run_reminders(dry_run, ReminderRunner::Cli).await {
        Ok(r) => r,
        Err(e) => {
            if !e.log.is_empty() {
                tracing::error!(cause = %e.log, "reminders");
            }
            anyhow::bail!("{}", e.message);
        }
    };
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Passwords that expire");
    println!("  {:<22} {:>8}", "when", "accounts");
    // Buckets come smallest first after "expired": each holds the days above the one before.
    let mut after = 0;
    for (bucket, n) in &report.expiring {
        let when = match bucket.parse::<u32>() {
            Err(_) => "already expired".to_string(),
            Ok(1) => "within a day".to_string(),
            Ok(d) if after + 1 == d => format!("in {d} days"),
            Ok(d) => format!("in {}–{d} days", after + 1),
        };
        after = bucket.parse().unwrap_or(after);
        println!("  {when:<22} {n:>8}");
    }
    println!();
    let verb = if dry_run { "would be queued" } else { "queued" };
    for (what, n) in [
        ("reminders due now", report.due),
        (verb, report.queued),
        ("  of them asking to register", report.registration_nudges),
        ("already sent earlier", report.already_sent),
        ("due, but no address", report.no_address),
        ("outside the policy's scope", report.out_of_scope),
    ] {
        println!("  {what:<30} {n:>8}");
    }
    Ok(ExitCode::SUCCESS)
}
