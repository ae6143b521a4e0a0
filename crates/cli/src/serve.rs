//! `sspr serve`: TLS, the API, the outbox worker and housekeeping, until SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use sspr_delivery::{DevSender, OutboxWorker, Sender, SmsSender, SmtpSender, WorkerConfig};
use sspr_domain::{Clock, SystemClock};

use crate::config::Config;
use crate::runtime::{
    self, DEMO_ADMIN, DEMO_ADMIN_PASSWORD, DEMO_ANSWERS, DEMO_EMAIL, DEMO_PASSWORD, DEMO_USER,
    Runtime,
};

pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cfg.log_level.clone()));
    // Colours only on a terminal: in a file or the journal, escapes would split
    // `support_code=X` and defeat a grep for it.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

pub fn init_cli_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(cfg.listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}: {e} (set `listen` in the config or SSPR_LISTEN=127.0.0.1:PORT)",
            cfg.listen
        )
    })?;
    run_with(
        cfg,
        Arc::new(SystemClock::new()),
        listener,
        shutdown_signal(),
    )
    .await
}

/// What `run` does, with the clock, the socket and the stop signal handed in (for tests).
pub async fn run_with(
    cfg: Config,
    clock: Arc<dyn Clock>,
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let rt = runtime::build(cfg, clock.clone()).await?;
    let cfg = rt.config.clone();
    let (cert, key, ca) = match (&cfg.tls.cert_file, &cfg.tls.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), None),
        _ => {
            let s =
                sspr_server::tls::ensure_self_signed(&cfg.data_dir.join("tls"), &cfg.tls_names())
                    .map_err(|e| anyhow::anyhow!(e))?;
            (s.cert, s.key, Some(s.ca))
        }
    };
    let tls = sspr_server::tls::server_config(&cert, &key).map_err(|e| anyhow::anyhow!(e))?;
    let seeded = runtime::seed_demo(&rt).await?;
    // Made before the first request, so that the first unknown ID costs what the others do.
    let _ = rt.app.hasher.dummy_hash();

    let worker = build_worker(&rt, clock.clone())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker_task = tokio::spawn(worker.run(stop_rx.clone()));
    let housekeeping = tokio::spawn(housekeeping(rt.app.clone(), stop_rx.clone()));
    if cfg.reminders.enabled {
        let every = i64::from(cfg.reminders.every_minutes) * 60;
        tokio::spawn(reminder_job(rt.app.clone(), every, stop_rx.clone()));
    }
    for sink in &cfg.siem {
        // Host and listen address: stable across this instance's restarts, distinct between
        // instances, so a restart takes its lease back at once.
        let holder = format!("{}/{}", hostname(), cfg.listen);
        let exporter = sspr_server::siem::Exporter::new(sink.clone(), rt.app.clone(), holder)
            .map_err(|e| anyhow::anyhow!(e))?;
        tokio::spawn(exporter.run(stop_rx.clone()));
    }

    tokio::spawn(audit_job(
        rt.app.clone(),
        cfg.audit.clone(),
        stop_rx.clone(),
    ));

    if let Some(addr) = cfg.metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {addr} for metrics (metrics.listen): {e}")
        })?;
        let token = cfg.metrics.token().map_err(|e| anyhow::anyhow!(e))?;
        let mut stop = stop_rx.clone();
        let app = rt.app.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = sspr_server::metrics::serve(listener, app, token, stopped).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
        tracing::info!(listen = %addr, "metrics at http://{addr}/metrics");
    }
    banner(&rt, ca.as_deref(), seeded);
    let state = Arc::new(sspr_server::State {
        app: rt.app.clone(),
        trusted_proxies: cfg.trusted_proxies.clone(),
    });
    let router = sspr_server::router_with(state, sspr_web::routes(), sspr_web::fallbacks());
    tracing::info!(listen = %cfg.listen, public_url = %cfg.public_url, "sspr is listening");
    let limits = sspr_server::conn::ConnLimits {
        max: cfg.connections.max,
        per_ip: cfg.connections.per_ip,
        handshake: Duration::from_secs(cfg.connections.handshake_timeout_secs),
        defer_accept: Duration::from_secs(cfg.connections.defer_accept_secs),
        exempt: cfg.trusted_proxies.clone(),
        requests: cfg.connections.max_requests,
    };
    sspr_server::serve(listener, tls, router, limits, shutdown).await?;
    tracing::info!("stopping: the outbox worker finishes sends under way and gives back the rest");
    let _ = stop_tx.send(true);
    // The worker needs at most its grace (5 s) plus a moment to give messages back.
    if tokio::time::timeout(Duration::from_secs(10), worker_task)
        .await
        .is_err()
    {
        tracing::warn!(
            "outbox worker did not stop in time; its messages are sent once their lease runs out"
        );
    }
    let _ = housekeeping.await;
    Ok(())
}

fn build_worker(rt: &Runtime, clock: Arc<dyn Clock>) -> anyhow::Result<OutboxWorker> {
    let cfg = &rt.config;
    let live = cfg.delivery.mode == "live";
    let mut wc = WorkerConfig {
        keep_bodies: !live,
        ..WorkerConfig::default()
    };
    let (email, sms): (Arc<dyn Sender>, Option<Arc<dyn Sender>>) = if live {
        let smtp = cfg
            .delivery
            .smtp
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("delivery.mode = \"live\" needs [delivery.smtp]"))?;
        let smtp_sender =
            SmtpSender::new(smtp).map_err(|e| anyhow::anyhow!("delivery.smtp: {}", e.0))?;
        // As many emails at once as connections to the relay.
        wc.email_concurrency = smtp.pool_size as usize;
        let email_deadline = smtp_sender.deadline();
        let email: Arc<dyn Sender> = Arc::new(smtp_sender);
        let (sms, sms_deadline): (Option<Arc<dyn Sender>>, _) = match &cfg.delivery.sms {
            Some(s) => {
                let sender =
                    SmsSender::new(s).map_err(|e| anyhow::anyhow!("delivery.sms: {}", e.0))?;
                let d = sender.deadline();
                wc.sms_concurrency = s.concurrency as usize;
                (Some(Arc::new(sender)), d)
            }
            None => (None, Duration::from_secs(1)),
        };
        // The worker's deadline per send follows each channel's configured one.
        wc = wc.with_deadlines(email_deadline, sms_deadline);
        (email, sms)
    } else {
        (Arc::new(DevSender), Some(Arc::new(DevSender)))
    };
    // The app rings this handle after queueing a message.
    Ok(
        OutboxWorker::new(rt.app.store.clone(), email, sms, clock, wc)
            .with_notifier(rt.app.outbox_wake.clone()),
    )
}

/// Settles interrupted directory writes and reports abandoned flows at start and then every
/// few seconds; deletes expired flows, sessions, codes and counters every ten minutes.
async fn housekeeping(app: Arc<sspr_app::App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let sweep_every =
        Duration::from_secs((app.settings.limits.finish_lease_secs / 4).clamp(1, 15) as u64);
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        match app.sweep_flows().await {
            Ok(n) if n > 0 => tracing::info!(flows = n, "settled or reported flows"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "flow sweep failed"),
        }
        // Every minute: a used or expired code's message leaves the dev outbox (and the WAL)
        // soon after, not ten minutes later.
        if last_purge.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            last_purge = Some(tokio::time::Instant::now());
            match app.store.purge_expired(app.now()).await {
                Ok(n) if n > 0 => tracing::debug!(rows = n, "purged expired rows"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(sweep_every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The audit log's upkeep: a signed checkpoint every `checkpoint_minutes` (logged, so a copy
/// lives outside the database) and, with a retention, old events pruned once an hour. Each
/// minute every instance asks the store whether it is its turn; one wins each window.
async fn audit_job(
    app: Arc<sspr_app::App>,
    cfg: crate::config::AuditConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use sspr_app::audit_chain;
    loop {
        let now = app.now();
        if cfg.checkpoint_minutes > 0 {
            let every = i64::from(cfg.checkpoint_minutes) * 60;
            match app
                .store
                .hit_within("audit:checkpoint", now, now - every, 1)
                .await
            {
                Ok(true) => {
                    match audit_chain::checkpoint(app.store.as_ref(), &app.key, now).await {
                        Ok(Some(c)) => tracing::info!(
                            event = c.last_id,
                            chain = %c.chain,
                            mac = %c.mac,
                            "audit checkpoint: keep this line; `sspr audit verify` checks the log against it"
                        ),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "audit checkpoint failed; the next window tries again")
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "audit checkpoint failed; the next window tries again")
                }
            }
        }
        if cfg.retention_days > 0 {
            match app
                .store
                .hit_within("audit:prune", now, now - 3600, 1)
                .await
            {
                Ok(true) => {
                    let before = now - i64::from(cfg.retention_days) * 86_400;
                    match audit_chain::prune(
                        app.store.as_ref(),
                        &app.key,
                        now,
                        before,
                        crate::audit::PRUNE_BATCH,
                        cfg.archive_dir.as_deref(),
                    )
                    .await
                    {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(
                            events = n,
                            days = cfg.retention_days,
                            "pruned audit events past their retention"
                        ),
                        Err(e) => {
                            tracing::warn!(error = %e, "pruning the audit log failed; nothing past the failed batch was deleted, the next hour tries again")
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the audit log failed; the next hour tries again")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Password-expiry reminders: every minute each instance asks the store whether it is its
/// turn; one instance per `every_secs` window wins and runs them.
async fn reminder_job(
    app: Arc<sspr_app::App>,
    every_secs: i64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match app.reminders_turn(every_secs).await {
            Ok(true) => match app
                .run_reminders(false, sspr_app::reminders::ReminderRunner::Job)
                .await
            {
                Ok(_) => {}
                // Nothing expires here (no maximum age): said once per window, quietly.
                Err(e) if e.kind == sspr_app::ErrorKind::Invalid => {
                    tracing::info!(reason = %e.message, "password-expiry reminders skipped")
                }
                Err(e) => {
                    tracing::warn!(error = %e.message, cause = %e.log, "password-expiry reminders failed; the next window tries again")
                }
            },
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the store whose turn the reminders are")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => return,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn banner(rt: &Runtime, ca: Option<&std::path::Path>, seeded: bool) {
    let cfg = &rt.config;
    let url = cfg.public_url.trim_end_matches('/');
    let cacert = ca
        .map(|p| format!(" --cacert {}", p.display()))
        .unwrap_or_default();
    let config = cfg
        .source
        .as_ref()
        .map(|p| format!("config: {}, ", p.display()))
        .unwrap_or_default();
    let mut s = format!(
        "\nsspr is running at {url}  ({config}data: {})\n",
        cfg.data_dir.display()
    );
    if cfg.delivery.mode == "dev" {
        s.push_str("  DEV MODE: no email or SMS leaves this machine; read \"sent\" messages with `sspr outbox`.\n");
    }
    if let Some(ca) = ca {
        s.push_str(&format!(
            "  TLS: development certificate; clients trust {}\n",
            ca.display()
        ));
    }
    // Said, not looked up: reading the accounts at every start would cost a large directory
    // its whole user table.
    if !cfg.demo && cfg.directory.kind == "builtin" {
        s.push_str(
            "  Built-in directory: administrators are added with `sspr users add --admin LOGIN`.\n",
        );
    }
    if cfg.demo {
        s.push_str("  QUICK START (no config file): the demo accounts below have passwords published in the README. A config file, live delivery or an LDAP directory turns them off.\n");
        if seeded {
            s.push_str("  Demo user created:\n");
        } else {
            s.push_str("  Demo user (if not changed since):\n");
        }
        s.push_str(&format!(
            "    login {DEMO_USER}, password {DEMO_PASSWORD}, email {DEMO_EMAIL}, security answers {}\n",
            DEMO_ANSWERS.iter().map(|(q, a)| format!("{q}={a}")).collect::<Vec<_>>().join(", ")
        ));
        s.push_str(&format!(
            "    admin pages: {url}/admin as {DEMO_ADMIN}, password {DEMO_ADMIN_PASSWORD}\n"
        ));
        s.push_str(&format!(
            "  Open {url}/ in a browser (accept the development certificate), or\n"
        ));
        s.push_str(&format!(
            "  Try:  curl{cacert} -s {url}/api/v1/flow/start -H 'content-type: application/json' -d '{{\"user\":\"{DEMO_USER}\"}}'\n"
        ));
        s.push_str("  Walk-through: README.md, \"Try a reset in five minutes\".\n");
    }
    eprintln!("{s}");
}
