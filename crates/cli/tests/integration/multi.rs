//! Three real `sspr serve` processes on one PostgreSQL database behind a real nginx
//! (round-robin): flows move between instances, limits and single use hold globally, each
//! message is sent once, and losing an instance mid-flow loses nothing.
//!
//! Needs PostgreSQL (`SSPR_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`),
//! nginx and python3-aiosmtpd. Every instance reads the same TOML file except for `listen` and
//! `data_dir`; the directory's email counts as registered (`[directory] trust_contacts = true`),
//! so users need nothing but `sspr users add`. nginx writes `$upstream_addr` and a per-request
//! label (the `x-test-step` header) to its access log: that is how the test knows which instance
//! served which request.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{PrivatePostgres, SmtpSink, client_for, extract_code, free_port, wrong};

const PASSWORD: &str = "an initial passphrase for all";

struct Instance {
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Instance {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    instances: Vec<Instance>,
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
        for i in &mut self.instances {
            if let Some(c) = i.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
        // Best effort, also when the test failed: a runtime of its own on a thread of its own,
        // since this runs inside the test's runtime.
        let (url, schema) = (self.pg_url.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let pool = sqlx::PgPool::connect(&url).await.ok()?;
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&pool)
                .await;
                pool.close().await;
                Some(())
            })
        })
        .join();
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
log_format = "json"

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
from = "sspr@test"
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

fn spawn_instance(cfg: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["serve", "-c"])
        .arg(cfg)
        .env_remove("SSPR_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn nginx_installed() -> bool {
    Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Cluster {
    /// PostgreSQL schema, shared key and certificate, SMTP sink, three instances, nginx, and
    /// the users (`sspr users add`, in parallel).
    async fn start(users: &[&str]) -> Cluster {
        assert!(
            nginx_installed(),
            "nginx is not installed: apt-get install nginx (CI installs it)"
        );
        let t0 = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let pg_url = std::env::var("SSPR_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("sspr_multi_{}_{}", std::process::id(), free_port());
        let pool = sqlx::PgPool::connect(&pg_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {pg_url} (SSPR_TEST_POSTGRES_URL): {e}"));
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
            let log = dir.path().join(format!("i{n}.log"));
            let child = spawn_instance(&cfg, &log);
            instances.push(Instance {
                port,
                log,
                child: Some(child),
            });
            // The first instance creates the tables; the others find them.
            first_cfg.get_or_insert(cfg);
        }
        let http = client_for(&tls.ca);
        for i in &instances {
            let mut ready = false;
            for _ in 0..400 {
                if let Ok(r) = http
                    .get(format!("https://localhost:{}/readyz", i.port))
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
                "instance on {} never became ready: {}",
                i.port,
                std::fs::read_to_string(&i.log).unwrap_or_default()
            );
        }
        let d = dir.path().display();
        let upstreams: String = instances
            .iter()
            .map(|i| format!("    server {} max_fails=1 fail_timeout=30s;\n", i.addr()))
            .collect();
        // One worker: round-robin is then strictly cyclic, so N consecutive requests reach
        // min(N, 3) instances. No upstream keepalive: every request is balanced on its own.
        let conf = format!(
            r#"user root;
worker_processes 1;
error_log {d}/nginx-error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  log_format up '$upstream_addr|$status|$request_method $uri|$http_x_test_step';
  access_log {d}/access.log up;
  client_body_temp_path {d}/ngx-body;
  proxy_temp_path {d}/ngx-proxy;
  fastcgi_temp_path {d}/ngx-fcgi;
  uwsgi_temp_path {d}/ngx-uwsgi;
  scgi_temp_path {d}/ngx-scgi;
  upstream sspr {{
{upstreams}  }}
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
        let nginx_err = std::fs::File::create(dir.path().join("nginx-stderr.log")).unwrap();
        let nginx = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-g")
            .arg("daemon off;")
            .stdout(Stdio::null())
            .stderr(nginx_err)
            .spawn()
            .expect("nginx is not installed: apt-get install nginx (CI installs it)");
        let url = format!("https://localhost:{nginx_port}");
        let mut up = false;
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            up,
            "nginx did not come up: {}{}",
            std::fs::read_to_string(dir.path().join("nginx-stderr.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("nginx-error.log")).unwrap_or_default()
        );
        let c = Cluster {
            dir,
            instances,
            nginx,
            url,
            http,
            smtp,
            config: first_cfg.unwrap(),
            schema,
            pg_url,
        };
        let adds: Vec<_> = users
            .iter()
            .map(|u| {
                let email = format!("{u}@contoso.test");
                c.spawn_cli(&["users", "add", u, "--email", &email, "--group", "staff"])
            })
            .collect();
        for (u, child) in users.iter().zip(adds) {
            let (code, out) = finish(child, &format!("{PASSWORD}\n"));
            assert_eq!(code, 0, "users add {u}: {out}");
        }
        eprintln!(
            "multi: cluster and {} users ready in {:?}",
            users.len(),
            t0.elapsed()
        );
        c
    }

    fn spawn_cli(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_sspr"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env_remove("SSPR_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn cli(&self, args: &[&str]) -> (i32, String) {
        finish(self.spawn_cli(args), "")
    }

    fn instance_of(&self, addr: &str) -> usize {
        self.instances
            .iter()
            .position(|i| i.addr() == addr)
            .unwrap_or_else(|| panic!("{addr} is none of the instances"))
    }

    /// POST through nginx, labelled `step` in nginx's access log.
    async fn post(
        &self,
        step: &str,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .post(format!("{}{path}", self.url))
            .header("x-sspr-client", "logon_screen")
            .header("x-test-step", step)
            .json(&body);
        if let Some(b) = bearer {
            rb = rb.bearer_auth(b);
        }
        let r = rb.send().await.unwrap();
        let st = r.status();
        (st, r.json().await.unwrap_or(Value::Null))
    }

    async fn flow(&self, step: &str, user: &str) -> String {
        let (st, v) = self
            .post(step, "/api/v1/flow/start", None, json!({ "user": user }))
            .await;
        assert_eq!(
            (st, v["status"].as_str()),
            (StatusCode::OK, Some("choose_method")),
            "{v}"
        );
        v["flow_token"].as_str().unwrap().to_string()
    }

    async fn verify(&self, step: &str, token: &str, code: &str) -> (StatusCode, Value) {
        self.post(
            step,
            "/api/v1/flow/verify",
            Some(token),
            json!({ "method": "email", "code": code }),
        )
        .await
    }

    async fn set_password(&self, step: &str, token: &str, pw: &str) -> (StatusCode, Value) {
        self.post(
            step,
            "/api/v1/flow/password",
            Some(token),
            json!({ "new_password": pw }),
        )
        .await
    }

    async fn sign_in(&self, step: &str, user: &str, pw: &str) -> StatusCode {
        self.post(
            step,
            "/api/v1/session",
            None,
            json!({ "user": user, "password": pw }),
        )
        .await
        .0
    }

    /// Code mails to `to`, in order of arrival.
    fn code_mails(&self, to: &str) -> Vec<String> {
        self.smtp
            .messages()
            .into_iter()
            .filter(|m| m.contains(&format!("To: {to}")) && m.contains("reset code"))
            .collect()
    }

    /// Waits until `to` has received `n` code mails (or 10 s pass); the codes received.
    async fn wait_codes(&self, to: &str, n: usize) -> Vec<String> {
        let mut codes = Vec::new();
        for _ in 0..200 {
            codes = self
                .code_mails(to)
                .iter()
                .filter_map(|m| extract_code(m))
                .collect();
            if codes.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        codes
    }

    /// Asks for an email code through nginx and waits for the mail.
    async fn email_code(&self, step: &str, token: &str, to: &str) -> String {
        let before = self.code_mails(to).len();
        let (st, v) = self
            .post(
                step,
                "/api/v1/flow/challenge",
                Some(token),
                json!({ "method": "email" }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let codes = self.wait_codes(to, before + 1).await;
        assert!(codes.len() > before, "no code mail to {to}");
        codes[before].clone()
    }

    /// nginx's access log: (upstream addresses tried, status) of the `n` requests labelled
    /// `step`. nginx logs a request after answering it, so this waits for the lines.
    async fn served(&self, step: &str, n: usize) -> Vec<(Vec<String>, u16)> {
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen = std::fs::read_to_string(self.dir.path().join("access.log"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split('|').collect();
                    (f.len() == 4 && f[3] == step).then(|| {
                        (
                            f[0].split(',').map(|a| a.trim().to_string()).collect(),
                            f[1].parse().unwrap_or(0),
                        )
                    })
                })
                .collect::<Vec<_>>();
            if seen.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen.len(), n, "requests labelled {step}: {seen:?}");
        seen
    }

    /// The instance that answered the one request labelled `step`.
    async fn served_by(&self, step: &str) -> String {
        self.served(step, 1).await[0].0.last().unwrap().clone()
    }

    /// The instances that answered the `n` requests labelled `step`.
    async fn served_on(&self, step: &str, n: usize) -> BTreeSet<String> {
        self.served(step, n)
            .await
            .into_iter()
            .map(|(a, _)| a.last().unwrap().clone())
            .collect()
    }

    /// Outbox ids each instance's log says it delivered.
    fn delivered(&self) -> Vec<(usize, i64)> {
        let mut out = Vec::new();
        for (n, i) in self.instances.iter().enumerate() {
            for l in std::fs::read_to_string(&i.log).unwrap_or_default().lines() {
                let Ok(v) = serde_json::from_str::<Value>(l) else {
                    continue;
                };
                if v["fields"]["message"] == "outbox: delivered" {
                    out.push((n, v["fields"]["id"].as_i64().expect("an outbox id")));
                }
            }
        }
        out
    }

    fn audit(&self, user: &str) -> Vec<Value> {
        let (code, out) = self.cli(&["audit", "--format", "json", "--user", user]);
        assert_eq!(code, 0, "{out}");
        serde_json::from_str::<Value>(&out)
            .unwrap_or_else(|e| panic!("audit JSON: {e}: {out}"))
            .as_array()
            .unwrap()
            .clone()
    }
}

fn finish(mut child: Child, stdin: &str) -> (i32, String) {
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn skip_second_pass(what: &str) -> bool {
    let skip = std::env::var("SSPR_TEST_DB").as_deref() == Ok("postgres");
    if skip {
        eprintln!(
            "{what}: skipped in the PostgreSQL pass, the first pass already ran it on PostgreSQL"
        );
    }
    skip
}

fn statuses(v: &[StatusCode]) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for s in v {
        *m.entry(s.as_u16()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_nginx_share_one_postgresql() {
    if skip_second_pass("multi-instance test") {
        return;
    }
    let quartet = ["erin", "frank", "grace", "heidi"];
    let mut users = vec!["alice", "bob", "carol", "dave"];
    users.extend(quartet);
    let mut c = Cluster::start(&users).await;
    let all: BTreeSet<String> = c.instances.iter().map(Instance::addr).collect();

    // 1. One flow's four steps land on all three instances; the reset completes, and the new
    //    password (not the old one) signs in through nginx.
    let t = c.flow("alice-start", "alice").await;
    let code = c
        .email_code("alice-challenge", &t, "alice@contoso.test")
        .await;
    let (st, v) = c.verify("alice-verify", &t, &code).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("set_password")),
        "{v}"
    );
    let (st, v) = c
        .set_password("alice-password", &t, "quiet violet harbour lamps")
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let steps = [
        "alice-start",
        "alice-challenge",
        "alice-verify",
        "alice-password",
    ];
    let mut alice_by = BTreeMap::new();
    for s in steps {
        alice_by.insert(s, c.served_by(s).await);
    }
    assert_eq!(
        alice_by.values().cloned().collect::<BTreeSet<_>>(),
        all,
        "alice's steps must spread over all three instances: {alice_by:?}"
    );
    assert_eq!(
        c.sign_in("alice-new-pw", "alice", "quiet violet harbour lamps")
            .await,
        StatusCode::OK
    );
    assert_eq!(
        c.sign_in("alice-old-pw", "alice", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "the old password must no longer work"
    );

    // 2. 50 concurrent uses of one code, spread over the instances: exactly one succeeds.
    let t = c.flow("bob-start", "bob").await;
    let code = c.email_code("bob-challenge", &t, "bob@contoso.test").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (http, url, t, code) = (c.http.clone(), c.url.clone(), t.clone(), code.clone());
        set.spawn(async move {
            http.post(format!("{url}/api/v1/flow/verify"))
                .header("x-test-step", "bob-race")
                .bearer_auth(&t)
                .json(&json!({ "method": "email", "code": code }))
                .send()
                .await
                .map(|r| r.status())
                .unwrap_or(StatusCode::IM_A_TEAPOT)
        });
    }
    let mut got = Vec::new();
    while let Some(r) = set.join_next().await {
        got.push(r.unwrap());
    }
    let by_status = statuses(&got);
    eprintln!("multi: 50 concurrent uses of one code: {by_status:?}");
    assert_eq!(
        by_status,
        BTreeMap::from([(200, 1), (400, 49)]),
        "exactly one of 50 concurrent uses across instances succeeds; the others are told the \
         code is spent"
    );
    let race_on = c.served_on("bob-race", 50).await;
    assert_eq!(race_on, all, "the 50 requests reached every instance");
    let (st, v) = c
        .set_password("bob-password", &t, "copper lantern beside rivers")
        .await;
    assert_eq!(st, StatusCode::OK, "the one winner verified the flow: {v}");

    // 3. The failure limit counts across instances: five wrong codes, each on another instance
    //    than the one before, block the account everywhere.
    let t = c.flow("carol-start", "carol").await;
    let mut code = c
        .email_code("carol-challenge-1", &t, "carol@contoso.test")
        .await;
    for i in 0..5 {
        // code_max_attempts is 3: a fresh code keeps the per-code limit out of the way.
        if i == 3 {
            code = c
                .email_code("carol-challenge-2", &t, "carol@contoso.test")
                .await;
        }
        let (st, v) = c
            .verify(&format!("carol-wrong-{i}"), &t, &wrong(&code))
            .await;
        // The fifth miss blocks, and its answer says so at once.
        let want = if i < 4 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(st, want, "wrong code {i}: {v}");
    }
    let mut wrong_on = BTreeSet::new();
    for i in 0..5 {
        wrong_on.insert(c.served_by(&format!("carol-wrong-{i}")).await);
    }
    assert_eq!(wrong_on, all, "the wrong codes reached every instance");
    for i in 0..3 {
        let (st, v) = c.verify(&format!("carol-right-{i}"), &t, &code).await;
        assert_eq!(
            st,
            StatusCode::TOO_MANY_REQUESTS,
            "even the right code is refused once blocked: {v}"
        );
        let (st, v) = c
            .post(
                &format!("carol-restart-{i}"),
                "/api/v1/flow/start",
                None,
                json!({ "user": "carol" }),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::TOO_MANY_REQUESTS,
            "blocked on every instance: {v}"
        );
    }
    let mut blocked_on = BTreeSet::new();
    for i in 0..3 {
        blocked_on.insert(c.served_by(&format!("carol-right-{i}")).await);
        blocked_on.insert(c.served_by(&format!("carol-restart-{i}")).await);
    }
    assert_eq!(blocked_on, all, "every instance refused carol");
    let blocks: Vec<String> = c
        .audit("carol")
        .iter()
        .filter(|e| e["activity"] == "blocked_from_reset" && e["reason"] != "blocked")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(blocks, ["5 failed verifications"], "one block, after five");

    // 4. Each queued message is sent exactly once although the outbox workers of all three
    //    instances compete: 20 concurrent challenges (5 per account, the hourly limit) → 20
    //    mails, each outbox id delivered by exactly one instance.
    let delivered_before = c.delivered().len();
    let mut tokens = Vec::new();
    for u in quartet {
        tokens.push((u, c.flow(&format!("{u}-start"), u).await));
    }
    let mut set = tokio::task::JoinSet::new();
    for (u, t) in &tokens {
        for _ in 0..5 {
            let (http, url, t, u) = (c.http.clone(), c.url.clone(), t.clone(), *u);
            set.spawn(async move {
                let r = http
                    .post(format!("{url}/api/v1/flow/challenge"))
                    .header("x-test-step", "quartet-challenge")
                    .bearer_auth(&t)
                    .json(&json!({ "method": "email" }))
                    .send()
                    .await
                    .unwrap();
                (u, r.status())
            });
        }
    }
    let mut got = Vec::new();
    while let Some(r) = set.join_next().await {
        let (u, st) = r.unwrap();
        assert_eq!(st, StatusCode::OK, "challenge for {u}");
        got.push(st);
    }
    assert_eq!(got.len(), 20);
    let challenged_on = c.served_on("quartet-challenge", 20).await;
    assert_eq!(challenged_on, all, "the challenges reached every instance");
    for u in quartet {
        c.wait_codes(&format!("{u}@contoso.test"), 5).await;
    }
    // Time for a duplicate to show up, if a second worker were to send one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for u in quartet {
        let mails = c.code_mails(&format!("{u}@contoso.test"));
        assert_eq!(mails.len(), 5, "{u}: exactly five code mails");
        let distinct: BTreeSet<&String> = mails.iter().collect();
        assert_eq!(distinct.len(), 5, "{u}: a mail came twice");
    }
    let new = c.delivered();
    let ids: BTreeSet<i64> = new.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids.len(),
        new.len(),
        "an outbox id was delivered twice: {new:?}"
    );
    assert_eq!(
        new.len() - delivered_before,
        20,
        "twenty new deliveries in the instances' logs"
    );
    assert_eq!(
        new.len(),
        c.smtp.messages().len(),
        "every mail in the maildir is one logged delivery"
    );
    let per_instance: BTreeMap<usize, usize> = new.iter().fold(BTreeMap::new(), |mut m, (n, _)| {
        *m.entry(*n).or_insert(0) += 1;
        m
    });
    eprintln!("multi: deliveries per instance: {per_instance:?}");

    // 5. Losing an instance mid-flow loses nothing: the one that sent dave's code dies
    //    (kill -9), nginx routes around it, the code still verifies and the reset completes.
    let t = c.flow("dave-start", "dave").await;
    let code = c
        .email_code("dave-challenge", &t, "dave@contoso.test")
        .await;
    let victim_addr = c.served_by("dave-challenge").await;
    let victim = c.instance_of(&victim_addr);
    let mut child = c.instances[victim].child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (st, v) = c.verify("dave-verify", &t, &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = c
        .set_password("dave-password", &t, "amber kettle under moonlight")
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        c.sign_in("dave-new-pw", "dave", "amber kettle under moonlight")
            .await,
        StatusCode::OK
    );
    // Three consecutive requests: round-robin offered the dead instance one of them, and
    // nginx retried that one on a live instance.
    let mut retried = Vec::new();
    for s in ["dave-verify", "dave-password", "dave-new-pw"] {
        let (tried, st) = c.served(s, 1).await.remove(0);
        assert_eq!(st, 200, "{s}");
        if tried.len() > 1 {
            retried.push(tried);
        }
    }
    assert_eq!(
        retried.len(),
        1,
        "one request went to the dead instance first"
    );
    assert_eq!(retried[0][0], victim_addr);
    assert_ne!(retried[0][1], victim_addr);

    // 6. One audit log for all instances, with the client's IP through the trusted proxy.
    let events = c.audit("alice");
    let flow_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["client_type"] != "cli" && e["flow_id"].is_string())
        .collect();
    let acts: Vec<&str> = flow_events
        .iter()
        .map(|e| e["activity"].as_str().unwrap())
        .collect();
    assert_eq!(
        acts.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "reset_started",
            "code_sent",
            "method_verified",
            "reset_password"
        ]),
        "the four steps served by three instances, in one log: {events:?}"
    );
    let flow_ids: BTreeSet<&str> = flow_events
        .iter()
        .map(|e| e["flow_id"].as_str().unwrap())
        .collect();
    assert_eq!(flow_ids.len(), 1, "one flow: {flow_ids:?}");
    for e in &flow_events {
        assert_eq!(e["client_ip"], "127.0.0.1", "{e}");
        assert_eq!(e["client_type"], "logon_screen", "{e}");
        assert_eq!(e["result"], "success", "{e}");
    }
    let dave: Vec<String> = c
        .audit("dave")
        .iter()
        .filter(|e| e["client_type"] == "logon_screen")
        .map(|e| e["activity"].as_str().unwrap().to_string())
        .collect();
    for a in [
        "reset_started",
        "code_sent",
        "method_verified",
        "reset_password",
    ] {
        assert!(
            dave.contains(&a.to_string()),
            "dave's {a} (before and after the kill) is in the log: {dave:?}"
        );
    }
}

/// `account_codes` (5 per hour) must hold when the challenges arrive at once on several
/// instances: ten concurrent challenges for one account → five codes sent, five refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_rate_limit_holds_for_concurrent_challenges_across_instances() {
    if skip_second_pass("multi-instance code-rate test") {
        return;
    }
    let c = Cluster::start(&["zoe"]).await;
    let t = c.flow("zoe-start", "zoe").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (http, url, t) = (c.http.clone(), c.url.clone(), t.clone());
        set.spawn(async move {
            http.post(format!("{url}/api/v1/flow/challenge"))
                .header("x-test-step", "zoe-challenge")
                .bearer_auth(&t)
                .json(&json!({ "method": "email" }))
                .send()
                .await
                .map(|r| r.status())
                .unwrap_or(StatusCode::IM_A_TEAPOT)
        });
    }
    let mut got = Vec::new();
    while let Some(r) = set.join_next().await {
        got.push(r.unwrap());
    }
    let on = c.served_on("zoe-challenge", 10).await;
    assert_eq!(on.len(), 3, "the challenges reached every instance: {on:?}");
    c.wait_codes("zoe@contoso.test", 5).await;
    // Time for any code beyond the limit to arrive too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails = c.code_mails("zoe@contoso.test").len();
    let by_status = statuses(&got);
    assert_eq!(
        (by_status.get(&200), by_status.get(&429), mails),
        (Some(&5), Some(&5), 5),
        "account_codes max 5: (200s, 429s, mails sent) for 10 concurrent challenges: {by_status:?}"
    );
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
    let pg = PrivatePostgres::create();
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

    pg.stop();
    let down = wait_for(&http, &readyz, StatusCode::SERVICE_UNAVAILABLE, 100).await;
    assert_eq!(
        down,
        Some(StatusCode::SERVICE_UNAVAILABLE),
        "readiness must fail while the database is down"
    );
    pg.start();
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
