//! SIEM export to a real syslog receiver (Debian's rsyslogd, imtcp, plain and with the gtls
//! driver): every audit event arrives as RFC 5424 with its ECS document, at least once, across a
//! receiver outage and a `kill -9` of sspr (the durable cursor).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sspr_app::ports::{AuditFilter, AuditStore, Store};
use sspr_domain::audit::{Activity, AuditEvent, Outcome};

use crate::harness::{Reaped, Server, client_for, free_port};

/// rsyslogd's path, or `None` (the test is skipped) when it is absent outside CI.
fn rsyslogd() -> Option<PathBuf> {
    for p in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(p).exists() {
            return Some(p.into());
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("rsyslogd is missing; CI installs the rsyslog and rsyslog-gnutls packages");
    }
    eprintln!("SKIPPED: rsyslogd not installed (apt-get install rsyslog rsyslog-gnutls)");
    None
}

/// A private rsyslogd on `port` that writes each message as `MSGID<TAB>SD<TAB>MSG` to `out`.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    proc: Option<Reaped>,
}

impl Rsyslog {
    fn out(&self) -> PathBuf {
        self.dir.join("received.log")
    }

    fn start(&mut self) {
        let bin = rsyslogd().unwrap();
        let work = self.dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let (global, module) = match &self.tls {
            Some((ca, cert, key)) => (
                format!(
                    "global(workDirectory=\"{}\" maxMessageSize=\"64k\" DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\")",
                    work.display(),
                    ca.display(),
                    cert.display(),
                    key.display()
                ),
                "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.Authmode=\"anon\")",
            ),
            None => (
                format!(
                    "global(workDirectory=\"{}\" maxMessageSize=\"64k\")",
                    work.display()
                ),
                "module(load=\"imtcp\")",
            ),
        };
        let conf = self.dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "{global}\n{module}\n\
                 template(name=\"t\" type=\"string\" string=\"%msgid%\\t%structured-data%\\t%msg%\\n\")\n\
                 ruleset(name=\"r\") {{ action(type=\"omfile\" file=\"{}\" template=\"t\") }}\n\
                 input(type=\"imtcp\" port=\"{}\" ruleset=\"r\")\n",
                self.out().display(),
                self.port
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslogd.log")).unwrap())
            .spawn()
            .unwrap();
        self.proc = Some(Reaped(child));
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "rsyslogd did not listen on {}: {}",
            self.port,
            std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
        );
    }

    fn kill(&mut self) {
        self.proc = None;
        let _ = std::fs::remove_file(self.dir.join("rsyslogd.pid"));
    }

    /// Each received message: (MSGID, structured data, ECS document).
    fn received(&self) -> Vec<(String, String, Value)> {
        std::fs::read_to_string(self.out())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut p = l.splitn(3, '\t');
                let (m, sd, msg) = (p.next()?, p.next()?, p.next()?);
                let doc = serde_json::from_str(msg.trim()).unwrap_or_else(|e| {
                    panic!("not an ECS document ({e}): {l}");
                });
                Some((m.to_string(), sd.to_string(), doc))
            })
            .collect()
    }

    /// How many times each event id arrived.
    fn counts(&self) -> HashMap<i64, usize> {
        let mut n = HashMap::new();
        for (_, _, d) in self.received() {
            let id: i64 = d["event"]["id"].as_str().unwrap().parse().unwrap();
            *n.entry(id).or_insert(0) += 1;
        }
        n
    }

    /// Waits until every one of `events` arrived, then checks each against its ECS mapping.
    async fn wait_for(&self, events: &[AuditEvent]) {
        let mut missing = Vec::new();
        for _ in 0..300 {
            let got = self.counts();
            missing = events
                .iter()
                .filter(|e| !got.contains_key(&e.id))
                .map(|e| e.id)
                .collect();
            if missing.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            missing.is_empty(),
            "events {missing:?} never reached rsyslog; received: {:?}",
            std::fs::read_to_string(self.out()).unwrap_or_default()
        );
        let received = self.received();
        for e in events {
            let (msgid, sd, doc) = received
                .iter()
                .find(|(_, _, d)| d["event"]["id"] == json!(e.id.to_string()))
                .unwrap();
            assert_eq!(msgid, e.activity.as_str());
            assert!(
                sd.starts_with(&format!("[sspr@32473 eventId=\"{}\"", e.id)),
                "{sd}"
            );
            assert_eq!(doc["@timestamp"], sspr_domain::clock::rfc3339(e.at));
            assert_eq!(doc["event"]["action"], e.activity.as_str());
            let outcome = match e.outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            };
            assert_eq!(doc["event"]["outcome"], outcome, "{doc}");
            assert!(doc["event"]["category"].is_array(), "{doc}");
            assert_eq!(doc["ecs"]["version"], "8.11.0");
            assert_eq!(doc["sspr"]["client_type"], e.client_type.as_str());
            if !e.actor.is_empty() {
                assert_eq!(doc["user"]["name"], e.actor.as_str(), "{doc}");
            }
            if !e.target.is_empty() {
                assert_eq!(doc["user"]["target"]["name"], e.target.as_str(), "{doc}");
            }
            if !e.reason.is_empty() {
                assert_eq!(doc["event"]["reason"], e.reason.as_str(), "{doc}");
            }
            if e.client_ip.parse::<std::net::IpAddr>().is_ok() {
                assert_eq!(doc["source"]["ip"], e.client_ip.as_str(), "{doc}");
            }
        }
    }
}

async fn all_events(store: &dyn Store) -> Vec<AuditEvent> {
    store
        .audit_query(&AuditFilter {
            after_id: Some(0),
            limit: 10_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
}

/// Events that arrived in `events` but not in `before`.
fn after(events: &[AuditEvent], before: &[AuditEvent]) -> Vec<AuditEvent> {
    let last = before.last().map_or(0, |e| e.id);
    events.iter().filter(|e| e.id > last).cloned().collect()
}

struct Sspr {
    proc: Option<Reaped>,
    port: u16,
    conf: PathBuf,
    log: PathBuf,
    http: Option<reqwest::Client>,
}

impl Sspr {
    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_sspr"))
            .arg("-c")
            .arg(&self.conf)
            .arg("serve")
            .env_remove("SSPR_CONFIG")
            .env("RUST_LOG", "info,sspr_server::siem=debug")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.proc = Some(Reaped(child));
    }

    async fn ready(&mut self, ca: &Path) {
        for _ in 0..400 {
            if ca.exists() && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.http = Some(client_for(ca));
    }

    /// One audit event per call: a reset started for someone unknown.
    async fn reset_for(&self, user: &str) {
        let r = self
            .http
            .as_ref()
            .unwrap()
            .post(format!("https://localhost:{}/api/v1/flow/start", self.port))
            .json(&json!({ "user": user, "kind": "reset" }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success() || r.status().is_client_error(),
            "{r:?}"
        );
    }

    fn kill9(&mut self) {
        // Reaped's kill is SIGKILL: no shutdown, nothing flushed, like a crash.
        self.proc = None;
    }
}

async fn wait_cursor(store: &dyn Store, id: i64) {
    for _ in 0..300 {
        let c = store.export_cursors().await.unwrap();
        if c.iter().any(|(n, last, _)| n == "test" && *last >= id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the cursor never reached {id}: {:?}",
        store.export_cursors().await
    );
}

/// The real binary over plain TCP: events arrive with their ECS fields; those made while
/// rsyslog is down arrive after it is back; after `kill -9` sspr resumes from the cursor
/// (nothing already acknowledged is sent again, nothing made while it was down is lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_reach_rsyslog_at_least_once_across_outages_and_a_crash() {
    if rsyslogd().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rs = Rsyslog {
        dir: d.join("rsyslog"),
        port: free_port(),
        tls: None,
        proc: None,
    };
    std::fs::create_dir_all(&rs.dir).unwrap();
    rs.start();

    let port = free_port();
    let conf = d.join("sspr.toml");
    std::fs::write(
        &conf,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\n\n\
             [[siem]]\nname = \"test\"\ntarget = \"tcp://127.0.0.1:{}\"\nretry_max_secs = 1\ntimeout_secs = 3\n",
            d.join("data").display(),
            rs.port
        ),
    )
    .unwrap();
    let mut s = Sspr {
        proc: None,
        port,
        conf,
        log: d.join("serve.log"),
        http: None,
    };
    s.start();
    s.ready(&d.join("data/tls/ca.pem")).await;
    let store = sspr_store::SqliteStore::open(&d.join("data/sspr.db"))
        .await
        .unwrap();

    // 1. Events arrive, each with its ECS fields.
    for u in ["ann", "bob", "cy"] {
        s.reset_for(u).await;
    }
    let phase1 = all_events(&store).await;
    assert!(phase1.len() >= 3, "{phase1:?}");
    rs.wait_for(&phase1).await;

    // 2. The receiver goes away; events made meanwhile arrive once it is back.
    rs.kill();
    for u in ["dee", "eve", "fay"] {
        s.reset_for(u).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let phase2 = all_events(&store).await;
    let during = after(&phase2, &phase1);
    assert!(during.len() >= 3);
    rs.start();
    rs.wait_for(&phase2).await;
    let last = phase2.last().unwrap().id;
    wait_cursor(&store, last).await;

    // 3. kill -9; an event is written while sspr is down (by another writer), more after.
    s.kill9();
    let mut e = AuditEvent::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        Activity::PolicyChanged,
        Outcome::Success,
    );
    e.actor = "admin:while-down".into();
    e.target = "policy".into();
    store.audit(&e).await.unwrap();
    s.start();
    s.ready(&d.join("data/tls/ca.pem")).await;
    s.reset_for("gus").await;
    let phase3 = all_events(&store).await;
    let resumed = after(&phase3, &phase2);
    assert!(resumed.len() >= 2, "{resumed:?}");
    rs.wait_for(&phase3).await;

    // At least once, and no more than once for what was acknowledged before each outage.
    let counts = rs.counts();
    for e in phase1.iter().chain(&resumed) {
        assert_eq!(
            counts.get(&e.id),
            Some(&1),
            "event {} arrived {:?} times",
            e.id,
            counts.get(&e.id)
        );
    }
    // The one-off export prints the same documents as the stream sent.
    let out = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .arg("-c")
        .arg(&s.conf)
        .args(["audit", "--format", "ecs"])
        .env_remove("SSPR_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let received = rs.received();
    for e in &phase3 {
        let id = json!(e.id.to_string());
        let one = exported.iter().find(|d| d["event"]["id"] == id);
        let sent = received.iter().find(|(_, _, d)| d["event"]["id"] == id);
        assert_eq!(one, sent.map(|(_, _, d)| d), "event {}", e.id);
    }
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(
        log.contains("SIEM export failed; retrying from the cursor"),
        "{log}"
    );
    s.kill9();
    rs.kill();
}

/// Over TLS (rsyslog's gtls driver, a CA made here): the receiver is verified against
/// `ca_file`, and a receiver whose certificate does not chain to it gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_reach_rsyslog_over_tls_verified_against_the_ca_file() {
    if rsyslogd().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .current_dir(&d)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=siem test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "rs.key",
        "-out",
        "rs.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "rs.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "rs.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    // Another CA, which the receiver's certificate does not chain to.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.pem",
        "-days",
        "2",
        "-subj",
        "/CN=other CA",
    ]);

    let mut rs = Rsyslog {
        dir: d.join("rsyslog"),
        port: free_port(),
        tls: Some((d.join("ca.pem"), d.join("rs.pem"), d.join("rs.key"))),
        proc: None,
    };
    std::fs::create_dir_all(&rs.dir).unwrap();
    rs.start();

    let sink = |name: &str, ca: PathBuf| -> sspr_server::siem::SiemConfig {
        serde_json::from_value(json!({
            "name": name,
            "target": format!("tls://localhost:{}", rs.port),
            "ca_file": ca,
            "retry_max_secs": 1,
            "timeout_secs": 3,
        }))
        .unwrap()
    };
    let (good, bad) = (
        sink("tls", d.join("ca.pem")),
        sink("wrong-ca", d.join("other.pem")),
    );
    let srv = Server::start_with(move |c| c.siem = vec![good, bad]).await;
    srv.start_flow("hal", "reset").await;
    srv.start_flow("ida", "reset").await;
    let events = all_events(srv.rt.store.as_ref()).await;
    assert!(events.len() >= 2);
    rs.wait_for(&events).await;
    // Each event once: the sink with the wrong CA never completed a handshake.
    let counts = rs.counts();
    for e in &events {
        assert_eq!(counts.get(&e.id), Some(&1), "{counts:?}");
    }
    let metrics = sspr_app::metrics::encode(None);
    for m in [
        "sspr_siem_exported_events_total{sink=\"tls\"}",
        "sspr_siem_caught_up_timestamp_seconds{sink=\"tls\"}",
        "sspr_siem_lag_events{sink=\"tls\"} 0",
    ] {
        assert!(metrics.contains(m), "{m} missing: {metrics}");
    }
    let cursors = srv.rt.store.export_cursors().await.unwrap();
    assert!(
        cursors
            .iter()
            .any(|(n, last, _)| n == "wrong-ca" && *last == 0),
        "{cursors:?}"
    );
    srv.stop().await;
    rs.kill();
}

/// `target = "stdout"`: JSON lines on the process's stdout (the journal under systemd), each
/// event once, the same documents as the syslog sinks send; the log (stderr) stays apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_go_to_stdout_as_ecs_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let conf = d.join("sspr.toml");
    std::fs::write(
        &conf,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\n\n\
             [[siem]]\nname = \"journal\"\ntarget = \"stdout\"\n",
            d.join("data").display()
        ),
    )
    .unwrap();
    let stdout = d.join("stdout.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .arg("-c")
        .arg(&conf)
        .arg("serve")
        .env_remove("SSPR_CONFIG")
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(d.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let _child = Reaped(child);
    let mut s = Sspr {
        proc: None,
        port,
        conf,
        log: d.join("serve.log"),
        http: None,
    };
    s.ready(&d.join("data/tls/ca.pem")).await;
    s.reset_for("joe").await;
    s.reset_for("kim").await;
    let store = sspr_store::SqliteStore::open(&d.join("data/sspr.db"))
        .await
        .unwrap();
    let events = all_events(&store).await;
    assert!(events.len() >= 2);
    let mut lines = Vec::new();
    for _ in 0..300 {
        lines = std::fs::read_to_string(&stdout)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.len() >= events.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<String> = lines
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, want, "each event once, in order");
    assert_eq!(lines[0], sspr_server::siem::ecs(&events[0]));
    assert_eq!(lines[0]["event"]["action"], "reset_started");
}

/// Two instances sharing one database (here: a second exporter of the same sink beside the
/// server's, under another instance's name): one holds the lease, so each event arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_exporting_one_sink_send_each_event_once() {
    if rsyslogd().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rs = Rsyslog {
        dir: dir.path().join("rsyslog"),
        port: free_port(),
        tls: None,
        proc: None,
    };
    std::fs::create_dir_all(&rs.dir).unwrap();
    rs.start();
    let sink: sspr_server::siem::SiemConfig = serde_json::from_value(json!({
        "name": "shared", "target": format!("tcp://127.0.0.1:{}", rs.port), "retry_max_secs": 1,
        // One event a batch, so that both exporters would be busy with the backlog at once.
        "batch": 1,
    }))
    .unwrap();
    let theirs = sink.clone();
    let srv = Server::start_with(move |c| c.siem = vec![theirs]).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let other = sspr_server::siem::Exporter::new(
        sink,
        srv.rt.app.clone(),
        "other-host/10.0.0.2:443".into(),
    )
    .unwrap();
    let task = tokio::spawn(other.run(stop_rx));
    srv.start_flow("lou", "reset").await;
    // A backlog, written faster than it is sent.
    for i in 0..40 {
        let mut e = AuditEvent::new(
            srv.clock_now(),
            Activity::AdminUserChanged,
            Outcome::Success,
        );
        e.actor = "admin:tests".into();
        e.target = format!("user{i}");
        srv.rt.store.audit(&e).await.unwrap();
    }
    let events = all_events(srv.rt.store.as_ref()).await;
    rs.wait_for(&events).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = rs.counts();
    for e in &events {
        assert_eq!(counts.get(&e.id), Some(&1), "{counts:?}");
    }
    let _ = stop_tx.send(true);
    let _ = task.await;
    srv.stop().await;
    rs.kill();
}
