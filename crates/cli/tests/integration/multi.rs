//! Three real `sspr serve` processes on one PostgreSQL database behind a real nginx
//! (round-robin): flows move between instances, limits and single use hold globally, each
//! message is sent once, and losing an instance mid-flow loses nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{SmtpSink, client_for, extract_code, free_port, wrong};

const PASSWORD: &str = "an initial passphrase for all";

struct Cluster {
    dir: tempfile::TempDir,
    instances: Vec<(u16, Child)>,
    nginx: Child,
    url: String,
    http: reqwest::Client,
    smtp: SmtpSink,
    config: PathBuf,
    schema: String,
    pg_url: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.instances {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

fn config(
    dir: &Path,
    n: usize,
    port: u16,
    nginx_port: u16,
    smtp_port: u16,
    pg_url: &str,
    schema: &str,
) -> PathBuf {
    let tls = dir.join("tls");
    let text = format!(
        r#"data_dir = "{data}"
listen = "127.0.0.1:{port}"
public_url = "https://localhost:{nginx_port}"
organisation = "Contoso"
trusted_proxies = ["127.0.0.1/32"]
secret_key_file = "{key}"
demo = false
log_level = "info"

[tls]
cert_file = "{cert}"
key_file = "{tkey}"

[database]
url = "{pg_url}"
schema = "{schema}"

[directory]
trust_contacts = true

[delivery]
mode = "live"

[delivery.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
allow_insecure = true
from = "sspr@contoso.test"
"#,
        data = dir.join(format!("i{n}")).display(),
        key = dir.join("secret.key").display(),
        cert = tls.join("server.pem").display(),
        tkey = tls.join("server.key").display(),
    );
    let p = dir.join(format!("sspr{n}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn spawn_instance(dir: &Path, n: usize, cfg: &Path) -> Child {
    let log = std::fs::File::create(dir.join(format!("i{n}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["serve", "-c"])
        .arg(cfg)
        .env_remove("SSPR_CONFIG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pg_url = std::env::var("SSPR_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("sspr_multi_{}_{}", std::process::id(), free_port());
        let pool = sqlx::PgPool::connect(&pg_url).await.expect("PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let tls = sspr_server::tls::ensure_self_signed(
            &dir.path().join("tls"),
            &["localhost".into(), "127.0.0.1".into()],
        )
        .unwrap();
        let key = sspr_app::crypto::ServerKey::generate(&sspr_domain::OsRandom).to_hex();
        sspr_server::tls::write_private(&dir.path().join("secret.key"), key.as_bytes()).unwrap();
        let smtp = SmtpSink::start(dir.path());
        let nginx_port = free_port();
        let mut instances = Vec::new();
        let mut first_cfg = None;
        for n in 1..=3 {
            let port = free_port();
            let cfg = config(dir.path(), n, port, nginx_port, smtp.port, &pg_url, &schema);
            instances.push((port, spawn_instance(dir.path(), n, &cfg)));
            first_cfg.get_or_insert(cfg);
        }
        let http = client_for(&tls.ca);
        for (port, _) in &instances {
            let mut ready = false;
            for _ in 0..300 {
                if let Ok(r) = http
                    .get(format!("https://localhost:{port}/readyz"))
                    .send()
                    .await
                    && r.status() == StatusCode::OK
                {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                ready,
                "instance on {port} never became ready: {}",
                std::fs::read_to_string(dir.path().join("i1.log")).unwrap_or_default()
            );
        }
        let d = dir.path().display();
        let upstreams: String = instances
            .iter()
            .map(|(p, _)| format!("server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;\n"))
            .collect();
        let conf = format!(
            r#"user root;
worker_processes 1;
error_log {d}/nginx-error.log;
pid {d}/nginx.pid;
events {{}}
http {{
  log_format up '$upstream_addr $status $request';
  access_log {d}/access.log up;
  client_body_temp_path {d}/ngx-body;
  proxy_temp_path {d}/ngx-proxy;
  fastcgi_temp_path {d}/ngx-fcgi;
  uwsgi_temp_path {d}/ngx-uwsgi;
  scgi_temp_path {d}/ngx-scgi;
  upstream sspr {{
    {upstreams}
  }}
  server {{
    listen 127.0.0.1:{nginx_port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass https://sspr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header Host $host;
      proxy_ssl_server_name on;
      proxy_ssl_name localhost;
      proxy_next_upstream error timeout non_idempotent;
      proxy_connect_timeout 2s;
    }}
  }}
}}
"#,
            cert = tls.cert.display(),
            key = tls.key.display(),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let nginx = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be installed: apt-get install nginx (.ci/run does)");
        let url = format!("https://localhost:{nginx_port}");
        let mut up = false;
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{url}/healthz")).send().await
                && r.status() == StatusCode::OK
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            up,
            "nginx did not come up: {}",
            std::fs::read_to_string(dir.path().join("nginx-error.log")).unwrap_or_default()
        );
        let config = first_cfg.unwrap();
        Cluster {
            dir,
            instances,
            nginx,
            url,
            http,
            smtp,
            config,
            schema,
            pg_url,
        }
    }

    fn cli(&self, args: &[&str], stdin: &str) -> (i32, String) {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sspr"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    }

    fn add_user(&self, login: &str) {
        let email = format!("{login}@contoso.test");
        let (code, out) = self.cli(
            &["users", "add", login, "--email", &email, "--group", "staff"],
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 0, "{out}");
    }

    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .post(format!("{}{path}", self.url))
            .header("x-sspr-client", "logon_screen")
            .json(&body);
        if let Some(b) = bearer {
            rb = rb.bearer_auth(b);
        }
        let r = rb.send().await.unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    async fn flow(&self, user: &str) -> String {
        let (st, v) = self
            .post("/api/v1/flow/start", None, json!({ "user": user }))
            .await;
        assert_eq!(
            (st, v["status"].as_str()),
            (StatusCode::OK, Some("choose_method")),
            "{v}"
        );
        v["flow_token"].as_str().unwrap().to_string()
    }

    fn code_mails(&self, to: &str) -> Vec<String> {
        self.smtp
            .messages()
            .into_iter()
            .filter(|m| m.contains(&format!("To: {to}")) && m.contains("reset code"))
            .filter_map(|m| extract_code(&m))
            .collect()
    }

    /// Asks for an email code and waits for the mail.
    async fn email_code(&self, token: &str, to: &str) -> String {
        let before = self.code_mails(to).len();
        let (st, v) = self
            .post(
                "/api/v1/flow/challenge",
                Some(token),
                json!({ "method": "email" }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for _ in 0..200 {
            let codes = self.code_mails(to);
            if codes.len() > before {
                return codes[before].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no code mail to {to}");
    }

    fn upstreams_used(&self) -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/api/v1/flow"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    async fn drop_schema(&self) {
        if let Ok(pool) = sqlx::PgPool::connect(&self.pg_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                self.schema
            )))
            .execute(&pool)
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_nginx_share_one_postgresql() {
    if std::env::var("SSPR_TEST_DB").as_deref() == Ok("postgres") {
        eprintln!("multi-instance test: already run in the first pass (it always uses PostgreSQL)");
        return;
    }
    let mut c = Cluster::start().await;
    for u in ["alice", "bob", "carol", "dave"] {
        c.add_user(u);
    }

    // 1. One flow's requests land on different instances and the reset completes.
    let t = c.flow("alice").await;
    let code = c.email_code(&t, "alice@contoso.test").await;
    let (st, v) = c
        .post(
            "/api/v1/flow/verify",
            Some(&t),
            json!({ "method": "email", "code": code }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = c
        .post(
            "/api/v1/flow/password",
            Some(&t),
            json!({ "new_password": "quiet violet harbour lamps" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let used = c.upstreams_used();
    assert!(
        used.len() >= 2,
        "the flow's requests all went to one instance: {used:?}"
    );
    let (st, _) = c
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "alice", "password": "quiet violet harbour lamps" }),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::OK,
        "the new password works through any instance"
    );

    // 2. 50 concurrent uses of one code, spread over the instances: exactly one succeeds.
    let t = c.flow("bob").await;
    let code = c.email_code(&t, "bob@contoso.test").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (http, url, t, code) = (c.http.clone(), c.url.clone(), t.clone(), code.clone());
        set.spawn(async move {
            http.post(format!("{url}/api/v1/flow/verify"))
                .bearer_auth(&t)
                .json(&json!({ "method": "email", "code": code }))
                .send()
                .await
                .map(|r| r.status())
                .ok()
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        if r.unwrap() == Some(StatusCode::OK) {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 1,
        "exactly one of 50 concurrent uses across instances may succeed"
    );

    // 3. The failure limit counts across instances: 5 wrong codes, then blocked.
    let t = c.flow("carol").await;
    let code = c.email_code(&t, "carol@contoso.test").await;
    for i in 0..5 {
        // A fresh code every third guess keeps the per-code limit out of the way.
        let code = if i == 3 {
            c.email_code(&t, "carol@contoso.test").await
        } else {
            code.clone()
        };
        let (st, v) = c
            .post(
                "/api/v1/flow/verify",
                Some(&t),
                json!({ "method": "email", "code": wrong(&code) }),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    }
    let (st, v) = c
        .post("/api/v1/flow/start", None, json!({ "user": "carol" }))
        .await;
    assert_eq!(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        "blocked on every instance: {v}"
    );

    // 4. Losing an instance mid-flow loses nothing: nginx routes around it.
    let t = c.flow("dave").await;
    let code = c.email_code(&t, "dave@contoso.test").await;
    let (_, mut victim) = c.instances.remove(1);
    victim.kill().unwrap();
    victim.wait().unwrap();
    let (st, v) = c
        .post(
            "/api/v1/flow/verify",
            Some(&t),
            json!({ "method": "email", "code": code }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = c
        .post(
            "/api/v1/flow/password",
            Some(&t),
            json!({ "new_password": "amber kettle under moonlight" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // 5. Every code mail was sent exactly once although three workers share the outbox.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (user, challenges) in [("alice", 1), ("bob", 1), ("carol", 2), ("dave", 1)] {
        let codes = c.code_mails(&format!("{user}@contoso.test"));
        assert_eq!(codes.len(), challenges, "{user}: {codes:?}");
    }

    // 6. One audit log for all instances, with the client's IP through the trusted proxy.
    let (code, out) = c.cli(&["audit", "--user", "dave", "--format", "json"], "");
    assert_eq!(code, 0, "{out}");
    let events: Value = serde_json::from_str(&out).unwrap();
    let acts: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["activity"].as_str().unwrap())
        .collect();
    for a in [
        "reset_started",
        "code_sent",
        "method_verified",
        "reset_password",
    ] {
        assert!(acts.contains(&a), "{a} missing: {acts:?}");
    }
    let flow_events: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["client_type"] != "cli")
        .collect();
    assert!(flow_events.len() >= 4, "{events}");
    assert!(
        flow_events
            .iter()
            .all(|e| e["client_ip"] == "127.0.0.1" && e["client_type"] == "logon_screen"),
        "{events}"
    );
    c.drop_schema().await;
}

/// A PostgreSQL server of the test's own (initdb + pg_ctl in a temp dir), so it can be stopped.
struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn pg_ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let cmd = format!(
            "{}/pg_ctl -D {} -w -l {}/pg.log -o '-p {} -k {} -c listen_addresses=127.0.0.1' {action}",
            self.bin.display(),
            data.display(),
            self.dir.path().display(),
            self.port,
            self.dir.path().display()
        );
        let st = Command::new("su")
            .args(["postgres", "-c", &cmd])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "pg_ctl {action} failed");
    }

    fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (apt-get install postgresql)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::tempdir().unwrap();
        let uid: u32 = String::from_utf8(
            Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), None).unwrap();
        let init = format!(
            "{}/initdb -D {}/data -A trust -U postgres",
            bin.display(),
            dir.path().display()
        );
        let st = Command::new("su")
            .args(["postgres", "-c", &init])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "initdb failed");
        let pg = OwnPostgres {
            dir,
            bin,
            port: free_port(),
        };
        pg.pg_ctl("start");
        pg
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let cmd = format!(
            "{}/pg_ctl -D {} -m immediate stop",
            self.bin.display(),
            data.display()
        );
        let _ = Command::new("su")
            .args(["postgres", "-c", &cmd])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `url` every 100 ms until it answers `want` (or `tries` run out); the last status seen.
async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    want: StatusCode,
    tries: usize,
) -> Option<StatusCode> {
    let mut seen = None;
    for _ in 0..tries {
        seen = http.get(url).send().await.map(|r| r.status()).ok();
        if seen == Some(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_the_server_reconnects_without_a_restart() {
    if std::env::var("SSPR_TEST_DB").as_deref() == Ok("postgres") {
        eprintln!("readiness test: already run in the first pass");
        return;
    }
    let pg = OwnPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let tls = sspr_server::tls::ensure_self_signed(&dir.path().join("tls"), &["localhost".into()])
        .unwrap();
    let port = free_port();
    let cfg = dir.path().join("sspr.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\ndemo = false\n\
             [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n[database]\nurl = \"postgres://postgres@127.0.0.1:{}/postgres\"\n",
            dir.path().join("data").display(),
            tls.cert.display(),
            tls.key.display(),
            pg.port
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["serve", "-c"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let http = client_for(&tls.ca);
    let readyz = format!("https://localhost:{port}/readyz");
    let seen = wait_for(&http, &readyz, StatusCode::OK, 200).await;
    assert_eq!(
        seen,
        Some(StatusCode::OK),
        "{}",
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );

    pg.pg_ctl("stop");
    let down = wait_for(&http, &readyz, StatusCode::SERVICE_UNAVAILABLE, 100).await;
    assert_eq!(
        down,
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "readiness must fail while the database is down"
    );
    pg.pg_ctl("start");
    let back = wait_for(&http, &readyz, StatusCode::OK, 150).await;
    assert_eq!(
        back,
        Some(StatusCode::OK),
        "the server reconnects by itself"
    );
    let r = http
        .post(format!("https://localhost:{port}/api/v1/flow/start"))
        .json(&json!({"user": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _ = child.kill();
    let _ = child.wait();
}
