//! Load benchmark: the real server in-process over HTTPS on SQLite, driven by a keep-alive
//! client pool. Prints a table; asserts nothing. `cargo run --release -p sspr --example bench`.
//!
//! Client and server share the machine, so the figures are a floor for the server alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sspr::config::Config;
use sspr_app::ports::{MethodRecord, MethodStatus};
use sspr_domain::{Method, SystemClock, Window};
use sspr_store::NewUser;

const USERS: usize = 200;
const SECS: u64 = 6;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

fn client(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .http1_only()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}

struct Row {
    rss_mib: u64,
    name: &'static str,
    conc: usize,
    n: usize,
    errors: usize,
    secs: f64,
    p50: f64,
    p99: f64,
}

async fn run<F, Fut>(name: &'static str, conc: usize, f: F) -> Row
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let f = Arc::new(f);
    let counter = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(SECS);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (f, counter, errors) = (f.clone(), counter.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if !f(i).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Row {
        rss_mib: rss_kib("VmHWM:") / 1024,
        name,
        conc,
        n: all.len(),
        errors: errors.load(Ordering::Relaxed),
        secs,
        p50: pct(0.5),
        p99: pct(0.99),
    }
}

/// Start a reset for a registered user and ask for an email code: the request the peer
/// comparison is about.
async fn reset_request(h: &reqwest::Client, u: &str, i: usize) -> bool {
    let Ok(r) = h
        .post(format!("{u}/flow/start"))
        .json(&json!({"user": format!("user{}", i % USERS)}))
        .send()
        .await
    else {
        return false;
    };
    let Ok(v) = r.json::<serde_json::Value>().await else {
        return false;
    };
    let Some(t) = v["flow_token"].as_str() else {
        return false;
    };
    h.post(format!("{u}/flow/challenge"))
        .bearer_auth(t)
        .json(&json!({"method": "email"}))
        .send()
        .await
        .map(|r| r.status() == 200)
        .unwrap_or(false)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let big = Window {
        max: 1_000_000_000,
        secs: 60,
    };
    let mut cfg = Config {
        data_dir: dir.path().join("data"),
        listen: listener.local_addr().unwrap(),
        public_url: format!("https://localhost:{port}"),
        demo: false,
        ..Config::default()
    };
    cfg.limits.ip_starts = big;
    cfg.limits.account_starts = big;
    cfg.limits.account_codes = big;
    cfg.limits.destination_codes = big;
    cfg.limits.ip_failures = big;
    cfg.log_level = "error".into();
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let rt = sspr::runtime::build(cfg.clone(), Arc::new(SystemClock::new()))
        .await
        .unwrap();
    eprintln!("creating {USERS} registered users…");
    for i in 0..USERS {
        let login = format!("user{i}");
        rt.builtin
            .add_user(&NewUser {
                login: login.clone(),
                display_name: login.clone(),
                password: "bench password long enough".into(),
                groups: vec!["staff".into()],
                email: None,
                mobile: None,
            })
            .await
            .unwrap();
        rt.store
            .put_method(&MethodRecord {
                user_id: login.clone(),
                method: Method::Email,
                status: MethodStatus::Active,
                value: format!("{login}@bench.test"),
                created_at: 0,
                verified_at: Some(0),
            })
            .await
            .unwrap();
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sspr::serve::run_with(
        cfg.clone(),
        Arc::new(SystemClock::new()),
        listener,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let ca = cfg.data_dir.join("tls/ca.pem");
    while !ca.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let http = client(&ca);
    let url = Arc::new(format!("https://localhost:{port}/api/v1"));
    while http
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_before = rss_kib("VmRSS:");
    let mut rows: Vec<Row> = Vec::new();

    let (h, u) = (http.clone(), url.clone());
    rows.push(
        run("start, unknown user", 32, move |i| {
            let (h, u) = (h.clone(), u.clone());
            async move {
                h.post(format!("{u}/flow/start"))
                    .json(&json!({"user": format!("ghost{i}")}))
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            }
        })
        .await,
    );
    let (h, u) = (http.clone(), url.clone());
    rows.push(
        run("start, registered user", 32, move |i| {
            let (h, u) = (h.clone(), u.clone());
            async move {
                h.post(format!("{u}/flow/start"))
                    .json(&json!({"user": format!("user{}", i % USERS)}))
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            }
        })
        .await,
    );
    let (h, u) = (http.clone(), url.clone());
    rows.push(
        run("reset request: start + email code", 32, move |i| {
            let (h, u) = (h.clone(), u.clone());
            async move { reset_request(&h, &u, i).await }
        })
        .await,
    );
    let (h, u) = (http.clone(), url.clone());
    rows.push(
        run("reset request, one client", 1, move |i| {
            let (h, u) = (h.clone(), u.clone());
            async move { reset_request(&h, &u, i).await }
        })
        .await,
    );
    let (h, u) = (http.clone(), url.clone());
    rows.push(
        run("registration sign-in (Argon2id)", 64, move |i| {
            let (h, u) = (h.clone(), u.clone());
            async move {
                h.post(format!("{u}/session"))
                    .json(&json!({"user": format!("user{}", i % USERS), "password": "bench password long enough"}))
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            }
        })
        .await,
    );
    let rss_peak = rss_kib("VmHWM:");
    let rss_after = rss_kib("VmRSS:");
    let queued = rt
        .store
        .outbox_list(1)
        .await
        .unwrap()
        .first()
        .map(|m| m.id)
        .unwrap_or(0);

    println!(
        "| scenario | concurrency | requests | errors | req/s | p50 ms | p99 ms | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {} |",
            r.name,
            r.conc,
            r.n,
            r.errors,
            r.n as f64 / r.secs,
            r.p50,
            r.p99,
            r.rss_mib
        );
    }
    println!();
    println!(
        "process RSS: {} MiB before load, {} MiB peak, {} MiB after (client and server together; argon2_concurrency = {})",
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024,
        cfg.limits.argon2_concurrency
    );
    println!("codes queued in the outbox during the run: {queued}");
    let _ = stop_tx.send(());
    let _ = server.await;
}
