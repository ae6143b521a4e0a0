//! Starts sspr in-process on a free port with real delivery, and gives tests a client.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method as HttpMethod, StatusCode};
use serde_json::{Value, json};
use sspr::config::Config;
use sspr::runtime::{self, Runtime};
use sspr_app::ports::{MethodRecord, MethodStatus};
use sspr_delivery::{SmsConfig, SmtpConfig};
use sspr_domain::{ManualClock, Method};
use sspr_store::NewUser;

pub const PASSWORD: &str = "initial-password-for-tests";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A helper process that dies with its owner, even when an assertion fails first.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An SMTP listener (Python's aiosmtpd) that stores every message in a maildir.
pub struct SmtpSink {
    _child: Reaped,
    pub port: u16,
    pub maildir: PathBuf,
}

impl SmtpSink {
    pub fn start(dir: &Path) -> SmtpSink {
        let port = free_port();
        let maildir = dir.join("maildir");
        let child = Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd must be installed (see .ci/run)");
        // Ready means the 220 greeting, not just an open port: a send to a sink that is still
        // starting fails as retryable, and its retry waits on the tests' frozen clock for ever.
        let ready = Instant::now();
        while !smtp_greets(port) {
            assert!(
                ready.elapsed() < Duration::from_secs(60),
                "the SMTP sink on port {port} did not greet within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpSink {
            _child: Reaped(child),
            port,
            maildir,
        }
    }

    /// All messages received so far, as raw text.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir.join(sub)) {
                let mut files: Vec<_> = rd.flatten().collect();
                files.sort_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
                for f in files {
                    if let Ok(s) = std::fs::read_to_string(f.path()) {
                        out.push(decode_body(s));
                    }
                }
            }
        }
        out
    }
}

fn smtp_greets(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 3];
    c.read_exact(&mut buf).is_ok() && &buf == b"220"
}

/// A non-ASCII (e.g. Chinese) message is sent base64-encoded; tests read its text, so the
/// body is decoded and appended after the raw message.
fn decode_body(raw: String) -> String {
    use base64::Engine;
    let Some((head, body)) = raw.split_once("\n\n") else {
        return raw;
    };
    if !head
        .to_ascii_lowercase()
        .contains("content-transfer-encoding: base64")
    {
        return raw;
    }
    let b64: String = body.split_whitespace().collect();
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(bytes) => format!("{raw}\n{}", String::from_utf8_lossy(&bytes)),
        Err(_) => raw,
    }
}

/// A local HTTP server standing in for the SMS gateway (generic JSON kind).
pub struct SmsGateway {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Value>>>,
    /// When set, the gateway answers 500 (a failing provider).
    pub failing: Arc<std::sync::atomic::AtomicBool>,
}

impl SmsGateway {
    pub async fn start() -> SmsGateway {
        let received = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, f) = (received.clone(), failing.clone());
        let app = axum::Router::new().route(
            "/send",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let (r, f) = (r.clone(), f.clone());
                async move {
                    if f.load(std::sync::atomic::Ordering::SeqCst) {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "");
                    }
                    r.lock().unwrap().push(v);
                    // What a gateway says: a 2xx alone does not count as delivered.
                    (StatusCode::OK, r#"{"status":"queued"}"#)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        SmsGateway {
            port,
            received,
            failing,
        }
    }

    pub fn texts(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub clock: ManualClock,
    pub rt: Runtime,
    pub smtp: SmtpSink,
    pub sms: SmsGateway,
    pub http: reqwest::Client,
    pub admin_token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// One HTTP/1.1 request over TLS on a socket the caller opened; returns the status and body.
pub async fn https_get_over(sock: tokio::net::TcpStream, ca: &Path, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let sock = sock.into_std().unwrap();
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let pem = std::fs::read(ca).unwrap();
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let conn =
            rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        // The server may close without close_notify; what arrived is the answer.
        let _ = tls.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

/// Whether the file holds at least one certificate and nothing unreadable: written whole.
fn whole_pem(path: &Path) -> bool {
    let Ok(pem) = std::fs::read(path) else {
        return false;
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
    !certs.is_empty() && certs.iter().all(|c| c.is_ok())
}

pub fn client_for(ca: &Path) -> reqwest::Client {
    client_builder(ca).build().unwrap()
}

/// A client that trusts only the test CA, TLS 1.2/1.3, HTTPS only; to be finished by the caller.
pub fn client_builder(ca: &Path) -> reqwest::ClientBuilder {
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
        .https_only(true)
        .timeout(Duration::from_secs(30))
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config) + Send + 'static) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let smtp = SmtpSink::start(dir.path());
        let sms = SmsGateway::start().await;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut cfg = Config {
            data_dir: dir.path().join("data"),
            listen: listener.local_addr().unwrap(),
            public_url: format!("https://localhost:{port}"),
            organisation: "Contoso".into(),
            demo: false,
            ..Config::default()
        };
        cfg.delivery.mode = "live".into();
        let smtp_cfg: SmtpConfig = serde_json::from_value(json!({
            "host": "127.0.0.1", "port": smtp.port, "tls": "none", "allow_insecure": true, "from": "sspr@contoso.test"
        }))
        .unwrap();
        let token_file = dir.path().join("sms.token");
        sspr_server::tls::write_private(&token_file, b"t0ken\n").unwrap();
        let mut sms_cfg: SmsConfig = serde_json::from_value(json!({
            "kind": "json", "url": format!("http://127.0.0.1:{}/send", sms.port), "allow_insecure": true, "token_file": token_file
        }))
        .unwrap();
        sms_cfg.load_secrets().unwrap();
        cfg.delivery.smtp = Some(smtp_cfg);
        cfg.delivery.sms = Some(sms_cfg);
        cfg.limits.argon2_concurrency = 4;
        tweak(&mut cfg);
        std::fs::create_dir_all(&cfg.data_dir).unwrap();
        use_postgres_if_asked(&mut cfg).await;

        // Start the clock at a whole TOTP step, a fixed distance from the real time.
        let start = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            / 30)
            * 30;
        let clock = ManualClock::new(start);
        let rt = runtime::build(cfg.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let admin_token = rt
            .app
            .create_admin_token(&ctx(), "tests", sspr_app::admin::StaffRole::Admin)
            .await
            .unwrap();
        // Administrators in these tests sign in without registering first; the tests of that
        // request (`admin::…asked_to_register…`) turn it back on.
        let policy = sspr_domain::Policy {
            require_registration: false,
            ..rt.app.policy().await.unwrap()
        };
        rt.store.save_policy(&policy, rt.app.now()).await.unwrap();

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sspr::serve::run_with(
            cfg.clone(),
            Arc::new(clock.clone()),
            listener,
            async move {
                let _ = stop_rx.await;
            },
        ));
        let ca = cfg.data_dir.join("tls/ca.pem");
        for _ in 0..200 {
            if whole_pem(&ca) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let url = format!("https://localhost:{port}");
        // The CA file can exist before it is whole: a client built from a half-written file
        // trusts nothing (UnknownIssuer). Read it again until a health check gets through.
        let mut http = client_for(&ca);
        for _ in 0..200 {
            if http.get(format!("{url}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            http = client_for(&ca);
        }
        Server {
            dir,
            url,
            clock,
            rt,
            smtp,
            sms,
            http,
            admin_token,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(20), t).await;
            assert!(
                matches!(r, Ok(Ok(Ok(())))),
                "server did not stop cleanly: {r:?}"
            );
        }
    }

    /// Runs SQL straight on this server's database (SQLite file or PostgreSQL schema), as
    /// an operator or a fault would: for faults the store must meet, such as a trigger that
    /// makes one kind of write fail.
    pub async fn exec_sql(&self, sql: &str) {
        use sqlx::Connection;
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match &self.rt.config.database.schema {
            Some(schema) => {
                let mut c = sqlx::PgConnection::connect(&self.rt.config.database.url)
                    .await
                    .unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET search_path TO {schema}")))
                    .execute(&mut c)
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            None => {
                let db = self.rt.config.data_dir.join("sspr.db");
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.rt.config.data_dir.join("tls/ca.pem")
    }

    /// Adds a user to the built-in directory.
    pub async fn user(&self, login: &str, groups: &[&str]) {
        self.rt
            .builtin
            .add_user(&NewUser {
                login: login.into(),
                display_name: format!("{login} Tester"),
                password: PASSWORD.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                email: None,
                mobile: None,
            })
            .await
            .unwrap();
    }

    /// Registers a verified method directly in the store (as an earlier registration would).
    pub async fn registered(&self, login: &str, method: Method, value: &str) {
        self.rt
            .store
            .put_method(&MethodRecord {
                user_id: login.into(),
                method,
                status: MethodStatus::Active,
                value: value.into(),
                created_at: self.clock_now(),
                verified_at: Some(self.clock_now()),
            })
            .await
            .unwrap();
    }

    /// Registers answers to the questions `ids` in the store, all `answer` (as an earlier
    /// registration would).
    pub async fn answered(&self, login: &str, ids: &[&str], answer: &str) {
        let mut answers = Vec::new();
        for q in ids {
            let norm = sspr_domain::questions::normalise_answer(answer);
            let h = self
                .rt
                .app
                .hasher
                .hash(&norm, self.rt.app.rng.as_ref())
                .await
                .unwrap();
            answers.push((q.to_string(), h));
        }
        self.rt
            .store
            .put_answers(login, &answers, self.clock_now())
            .await
            .unwrap();
    }

    pub fn clock_now(&self) -> i64 {
        use sspr_domain::Clock;
        self.clock.now()
    }

    /// A user with email and phone registered.
    pub async fn registered_user(&self, login: &str) {
        self.user(login, &["staff"]).await;
        self.registered(login, Method::Email, &format!("{login}@contoso.test"))
            .await;
        self.registered(login, Method::Sms, "+4915112345678").await;
    }

    pub async fn call(
        &self,
        method: HttpMethod,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(method, path, bearer, body, "api").await
    }

    pub async fn call_as(
        &self,
        method: HttpMethod,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
        client: &str,
    ) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .header("x-sspr-client", client);
        if let Some(b) = bearer {
            rb = rb.bearer_auth(b);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(HttpMethod::POST, path, bearer, Some(body)).await
    }

    pub async fn start_flow(&self, user: &str, kind: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/flow/start",
            None,
            json!({ "user": user, "kind": kind }),
        )
        .await
    }

    /// Starts a reset and returns the flow token; panics unless methods are offered.
    pub async fn flow(&self, user: &str) -> String {
        let (s, v) = self.start_flow(user, "reset").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "choose_method", "{v}");
        v["flow_token"].as_str().unwrap().to_string()
    }

    /// Sends an email code and reads it from the SMTP sink.
    pub async fn email_code(&self, token: &str, to: &str) -> String {
        let before = self.mail_count(to);
        let (s, v) = self
            .post(
                "/api/v1/flow/challenge",
                Some(token),
                json!({ "method": "email" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        self.wait_mail_code(to, before).await
    }

    pub fn mail_count(&self, to: &str) -> usize {
        self.smtp
            .messages()
            .iter()
            .filter(|m| m.contains(&format!("To: {to}")))
            .count()
    }

    /// Waits for message number `before + 1` to `to` and returns the code in it.
    pub async fn wait_mail_code(&self, to: &str, before: usize) -> String {
        for _ in 0..200 {
            let msgs: Vec<String> = self
                .smtp
                .messages()
                .into_iter()
                .filter(|m| m.contains(&format!("To: {to}")))
                .collect();
            // Notices (no code) may arrive in between; the code is in the first message with one.
            if let Some(code) = msgs.iter().skip(before).find_map(|m| extract_code(m)) {
                return code;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        use sspr_domain::Clock;
        let outbox = self.rt.store.outbox_list(20).await;
        let outbox: Vec<String> = outbox
            .iter()
            .flatten()
            .map(|m| {
                format!(
                    "#{} {} {} attempts={} next_at={} error={:?}",
                    m.id, m.recipient, m.status, m.attempts, m.next_attempt_at, m.last_error
                )
            })
            .collect();
        panic!(
            "no mail to {to} arrived within 10 s; the outbox (clock at {}):\n{}",
            self.clock.now(),
            outbox.join("\n")
        );
    }

    pub async fn sms_code(&self, token: &str) -> String {
        let before = self.sms.texts().len();
        let (s, v) = self
            .post(
                "/api/v1/flow/challenge",
                Some(token),
                json!({ "method": "sms" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        self.wait_sms_code(before).await
    }

    pub async fn wait_sms_code(&self, before: usize) -> String {
        for _ in 0..200 {
            // Notices (no code) go to a phone too and may arrive in between: the code is in
            // the first text with one.
            let t = self.sms.texts();
            if let Some(code) = t
                .iter()
                .skip(before)
                .find_map(|m| m["message"].as_str().and_then(extract_code))
            {
                return code;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no text message arrived");
    }

    pub async fn verify(&self, token: &str, method: &str, code: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/flow/verify",
            Some(token),
            json!({ "method": method, "code": code }),
        )
        .await
    }

    pub async fn set_password(&self, token: &str, pw: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/flow/password",
            Some(token),
            json!({ "new_password": pw }),
        )
        .await
    }

    /// Whether the directory accepts this password (registration sign-in checks it there).
    pub async fn password_works(&self, user: &str, pw: &str) -> bool {
        let (s, _) = self
            .post(
                "/api/v1/session",
                None,
                json!({ "user": user, "password": pw }),
            )
            .await;
        s == StatusCode::OK
    }

    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let (s, v) = self
            .call(
                HttpMethod::GET,
                &format!("/api/v1/admin/audit?{query}"),
                Some(&self.admin_token.clone()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v.as_array().unwrap().clone()
    }

    pub async fn set_policy(&self, f: impl FnOnce(&mut Value)) {
        let (s, mut p) = self
            .call(
                HttpMethod::GET,
                "/api/v1/admin/policy",
                Some(&self.admin_token.clone()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        f(&mut p);
        let (s, v) = self
            .call(
                HttpMethod::PUT,
                "/api/v1/admin/policy",
                Some(&self.admin_token.clone()),
                Some(p),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

/// With `SSPR_TEST_DB=postgres` the server runs on PostgreSQL (`SSPR_TEST_POSTGRES_URL`), in a
/// schema of its own named after the data directory, so a restart on the same directory finds
/// the same data. Otherwise: SQLite in the data directory.
pub async fn use_postgres_if_asked(cfg: &mut Config) {
    if std::env::var("SSPR_TEST_DB").as_deref() != Ok("postgres") {
        return;
    }
    let url = std::env::var("SSPR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in cfg.data_dir.to_string_lossy().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let schema = format!("sspr_it_{h:016x}");
    let pool = sqlx::PgPool::connect(&url)
        .await
        .expect("PostgreSQL for SSPR_TEST_DB=postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    cfg.database.url = url;
    cfg.database.schema = Some(schema);
}

pub fn ctx() -> sspr_app::RequestCtx {
    sspr_app::RequestCtx::new("local", sspr_domain::ClientType::Cli, sspr_app::Lang::En)
}

/// The first run of 6 to 8 digits in a message.
pub fn extract_code(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let j = (i..b.len())
                .find(|&j| !b[j].is_ascii_digit())
                .unwrap_or(b.len());
            if (6..=8).contains(&(j - i)) {
                return Some(text[i..j].to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    None
}

/// A wrong code of the right shape.
pub fn wrong(code: &str) -> String {
    code.chars()
        .map(|c| {
            if c == '9' {
                '0'
            } else {
                char::from(c as u8 + 1)
            }
        })
        .collect()
}

/// A private PostgreSQL cluster (initdb, pg_ctl as the postgres user) on a free port, so a
/// test can stop it without disturbing the shared one. Stopped on drop. Needs root.
pub struct PrivatePostgres {
    _tmp: tempfile::TempDir,
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

fn pg_bin() -> Option<PathBuf> {
    let mut bins: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    bins.sort();
    bins.pop().map(|(_, b)| b)
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

fn run_ok(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePostgres {
    /// initdb and start, in a directory of its own.
    pub fn create() -> PrivatePostgres {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pg");
        let bin = pg_bin().expect(
            "PostgreSQL's server programs (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql (CI installs it)",
        );
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Command::new("chown");
        c.args(["-R", "postgres:postgres"]).arg(tmp.path());
        run_ok(c, "chown the cluster's directory to postgres");
        let mut c = as_postgres(&bin, "initdb");
        c.args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(dir.join("data"));
        run_ok(c, "initdb");
        let pg = PrivatePostgres {
            _tmp: tmp,
            bin,
            dir,
            port: free_port(),
        };
        pg.start();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let t0 = Instant::now();
        let mut c = as_postgres(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .stdout(Stdio::null());
        run_ok(c, "pg_ctl start");
        println!("private PostgreSQL up in {:?}", t0.elapsed());
    }

    pub fn stop(&self) {
        let mut c = as_postgres(&self.bin, "pg_ctl");
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null());
        run_ok(c, "pg_ctl stop");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
