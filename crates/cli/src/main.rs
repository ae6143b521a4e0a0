//! `sspr`: the self-service password reset server and its admin CLI.

use std::path::PathBuf;

use sspr::{commands, config, runtime, serve};

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "sspr", version, about = "Self-service password reset: server and admin CLI", long_about = None)]
struct Cli {
    /// TOML configuration file. Default: /etc/sspr/sspr.toml if it exists (the server
    /// package's), else none: defaults run a demo in ./sspr-data.
    #[arg(short, long, global = true, env = "SSPR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTPS server (API, health, OpenAPI) and the outbox worker.
    Serve,
    /// Validate or show the configuration.
    #[command(subcommand)]
    Config(commands::ConfigCmd),
    /// Manage users of the built-in directory.
    #[command(subcommand)]
    Users(commands::UsersCmd),
    /// Show, change or validate the self-service policy.
    #[command(subcommand)]
    Policy(commands::PolicyCmd),
    /// Query the audit log.
    Audit(sspr::audit::AuditArgs),
    /// Show queued and sent messages (in dev mode: the codes that were "sent").
    Outbox(commands::OutboxArgs),
    /// Admin API tokens.
    #[command(subcommand)]
    Admin(commands::AdminCmd),
    /// Password-expiry reminders: run them now, or report what expires when (--dry-run).
    #[command(subcommand)]
    Reminders(sspr::reminders::RemindersCmd),
    /// Generate a new server key (64 hex characters) on standard output.
    Key,
    /// Create or upgrade the database schema (also done at every start) and print its version.
    Migrate,
    /// Check the configuration, the database, the directory (network, TLS, bind, search,
    /// groups, rights) and SMTP, explaining each failure with its fix.
    Doctor {
        /// A user to look up, to check the search, group resolution and rights on a real entry.
        #[arg(long)]
        user: Option<String>,
    },
    /// Move an installation between databases (SQLite ↔ PostgreSQL).
    #[command(subcommand)]
    Store(commands::StoreCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve) {
        end_quietly_on_a_closed_pipe();
    }
    give_large_blocks_back();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sspr: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sspr: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    // A key needs no configuration (and a user who cannot read the installed one may make it).
    if matches!(cli.command, Command::Key) {
        println!(
            "{}",
            sspr_app::crypto::ServerKey::generate(&sspr_domain::OsRandom).to_hex()
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let file = cli.config.or_else(config::installed_config);
    let cfg =
        config::Config::load(file.as_deref()).map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    // Run in the wrong directory, the CLI would open an empty quick-start database there and
    // answer from it ("no users"). Say where it looked instead, unless the command is one
    // that starts an installation.
    let nothing_here = file.is_none() && cfg.postgres_url().is_none() && !cfg.data_dir.exists();
    if nothing_here
        && !matches!(
            cli.command,
            Command::Serve | Command::Key | Command::Config(_) | Command::Migrate
        )
    {
        let dir = std::env::current_dir()
            .map(|d| d.join(&cfg.data_dir))
            .unwrap_or_else(|_| cfg.data_dir.clone());
        if !creates_data(&cli.command) {
            anyhow::bail!(
                "no sspr installation found: no configuration file (looked for --config, SSPR_CONFIG and {}) and no quick-start data at {}. Run this where `sspr serve` runs, or name the configuration: sspr -c FILE …",
                config::INSTALLED_CONFIG,
                dir.display()
            );
        }
        eprintln!(
            "sspr: no configuration file (looked for --config, SSPR_CONFIG and {}): starting a new quick-start installation at {}",
            config::INSTALLED_CONFIG,
            dir.display()
        );
    }
    match cli.command {
        Command::Serve => {
            serve::init_logging(&cfg);
            serve::run(cfg).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Config(c) => commands::config(c, cfg),
        Command::Migrate => {
            serve::init_cli_logging();
            let (store, _) = runtime::open_store(&cfg).await?;
            store.ping().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("database schema is up to date");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Doctor { user } => {
            serve::init_cli_logging();
            commands::doctor(cfg, user.as_deref()).await
        }
        Command::Store(c) => {
            serve::init_cli_logging();
            commands::store(c, cfg).await
        }
        Command::Key => Ok(std::process::ExitCode::SUCCESS),
        other => {
            serve::init_cli_logging();
            let rt =
                runtime::build(cfg, std::sync::Arc::new(sspr_domain::SystemClock::new())).await?;
            match other {
                Command::Users(c) => commands::users(c, &rt).await,
                Command::Policy(c) => commands::policy(c, &rt).await,
                Command::Audit(a) => sspr::audit::audit(a, &rt).await,
                Command::Outbox(a) => commands::outbox(a, &rt).await,
                Command::Admin(c) => commands::admin(c, &rt).await,
                Command::Reminders(c) => sspr::reminders::reminders(c, &rt).await,
                Command::Serve
                | Command::Config(_)
                | Command::Key
                | Command::Migrate
                | Command::Store(_)
                | Command::Doctor { .. } => Ok(std::process::ExitCode::SUCCESS),
            }
        }
    }
}

/// Commands that make what an installation is built from (users, a policy, an API token), so
/// that running one in a directory without data is a deliberate start.
fn creates_data(c: &Command) -> bool {
    use commands::{PolicyCmd, UsersCmd};
    matches!(
        c,
        Command::Users(UsersCmd::Add { .. } | UsersCmd::Import { .. })
            | Command::Policy(PolicyCmd::Set { .. } | PolicyCmd::Apply { .. })
            | Command::Admin(_)
    )
}

/// `sspr audit | head` ends quietly when `head` has read enough, as other Unix tools do: the
/// default SIGPIPE ends the process. Rust ignores SIGPIPE so that a closed socket is an error
/// rather than a death, and printing to a closed pipe then panics; `serve` keeps that.
/// glibc serves a block of 128 KiB or more with its own mapping, returned to the system when
/// freed, but after the first such free it raises that threshold to the freed size, so later
/// 19 MiB Argon2 buffers come from the heap and stay resident after they are freed. A fixed
/// threshold keeps large blocks as mappings: the hash pool's buffers, dropped when it goes
/// idle, then leave resident memory for good.
#[allow(unsafe_code)]
fn give_large_blocks_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called at the start of main, before any other thread exists; mallopt only
    // changes the allocator's thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[allow(unsafe_code)]
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: called at the start of main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
