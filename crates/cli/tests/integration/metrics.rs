//! Prometheus metrics from the real `sspr` binary: on their own plain-HTTP listener, behind a
//! bearer token, counting a real reset (audit events by activity, client and method; HTTP
//! requests by route template; directory operations; Argon2's queue) and the outbox's
//! backlog, and naming no user.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{client_builder, client_for, free_port};

const TOKEN: &str = "0123456789abcdef-metrics-token";

#[tokio::test]
async fn metrics_count_a_reset_on_their_own_listener_and_name_no_user() {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let token_file = dir.path().join("metrics.token");
    sspr_server::tls::write_private(&token_file, format!("{TOKEN}\n").as_bytes()).unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    // The zero-config quick start (its demo user has security answers), with the metrics
    // listener set from the environment as a container would.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .arg("serve")
        .current_dir(dir.path())
        .env("SSPR_LISTEN", format!("127.0.0.1:{port}"))
        .env("SSPR_METRICS__LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("SSPR_METRICS__TOKEN_FILE", &token_file)
        .env_remove("SSPR_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _stop = KillOnDrop(child.id());
    let ca = dir.path().join("sspr-data/tls/ca.pem");
    for _ in 0..300 {
        if ca.exists()
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_ok()
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "sspr exited: {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let https = client_for(&ca);
    let url = format!("https://localhost:{port}");
    let plain = client_builder(&ca).https_only(false).build().unwrap();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");

    // Without the token, or with a wrong one: 401, and nothing counted is shown.
    for auth in [None, Some("Bearer wrong-token-of-some-length")] {
        let mut r = plain.get(&metrics_url);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(!r.text().await.unwrap().contains("sspr_"));
    }
    // The portal's address does not serve them.
    let r = https.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // A whole reset with the security questions, and a start for a login that does not exist.
    let call = |path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut r = https.post(format!("{url}/api/v1{path}")).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let v: serde_json::Value = call("/flow/start", None, json!({"user": "demo"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["flow_token"].as_str().unwrap().to_owned();
    let ch: serde_json::Value = call(
        "/flow/challenge",
        Some(&token),
        json!({"method": "questions"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let answers: Vec<serde_json::Value> = ch["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let id = q["id"].as_str().unwrap();
            let a = sspr::runtime::DEMO_ANSWERS
                .iter()
                .find(|(q, _)| *q == id)
                .unwrap()
                .1;
            json!({"question_id": id, "answer": a})
        })
        .collect();
    let r = call(
        "/flow/verify",
        Some(&token),
        json!({"method": "questions", "answers": answers}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = call(
        "/flow/password",
        Some(&token),
        json!({"new_password": "metrics are counted on their own port"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = call("/flow/start", None, json!({"user": "nobody-by-this-name"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = plain
        .get(&metrics_url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers()
    );
    let text = r.text().await.unwrap();
    for line in [
        "sspr_audit_events_total{activity=\"method_verified\",client=\"api\",outcome=\"success\",method=\"questions\"} 1",
        "sspr_audit_events_total{activity=\"reset_password\",client=\"api\",outcome=\"success\",method=\"none\"} 1",
        "sspr_http_request_duration_seconds_count{route=\"/api/v1/flow/start\",method=\"POST\",status=\"200\"} 2",
        "sspr_http_request_duration_seconds_count{route=\"/api/v1/flow/password\",method=\"POST\",status=\"200\"} 1",
        "sspr_directory_request_duration_seconds_count{operation=\"reset_password\",outcome=\"ok\"} 1",
        "sspr_store_up 1",
        "sspr_build_info{version=\"",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    // Three answers, the history, the new hash: Argon2 ran, and its waits were measured.
    let hashed = value(&text, "sspr_argon2_queue_wait_seconds_count");
    assert!(hashed >= 4.0, "argon2 waits counted: {hashed}\n{text}");
    assert!(text.contains("sspr_outbox_waiting "), "{text}");
    assert!(text.contains("sspr_outbox_oldest_age_seconds "), "{text}");
    // Neither the user who reset nor the unknown login appears: labels come from closed sets.
    for who in ["demo", "nobody-by-this-name"] {
        assert!(
            !text.contains(&format!("\"{who}\"")) && !text.contains(&format!("/{who}")),
            "{who} is named in the metrics:\n{text}"
        );
    }

    // A real Prometheus scrapes it with the token from a file, as the README shows, and can
    // query what it read: the format is one Prometheus accepts, not only one this test reads.
    let prom = Prometheus::start(dir.path(), metrics_port, &token_file);
    let query = format!(
        "http://127.0.0.1:{}/api/v1/query?query=sspr_audit_events_total%7Bactivity%3D%22reset_password%22%7D",
        prom.port
    );
    let mut seen = serde_json::Value::Null;
    for _ in 0..150 {
        if let Ok(r) = plain.get(&query).send().await
            && let Ok(v) = r.json::<serde_json::Value>().await
        {
            seen = v;
            if seen["data"]["result"][0]["value"][1] == "1" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        seen["data"]["result"][0]["value"][1],
        "1",
        "Prometheus did not scrape the reset: {seen}\n{}",
        prom.log()
    );
}

/// The alert rules the README offers are valid Prometheus rules.
#[test]
fn the_example_alert_rules_are_valid() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/prometheus-alerts.yml"
    );
    let out = Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
        .expect("promtool (Debian: prometheus) is not installed");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian's Prometheus, scraping one target every second with a bearer token from a file.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Prometheus {
    fn start(dir: &std::path::Path, target: u16, token_file: &std::path::Path) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s }}\n\
                 scrape_configs:\n\
                 \x20 - job_name: sspr\n\
                 \x20   static_configs: [{{ targets: [\"127.0.0.1:{target}\"] }}]\n\
                 \x20   authorization: {{ credentials_file: {} }}\n",
                token_file.display()
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus (Debian: prometheus) is not installed");
        Prometheus { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first sample of `name` (no labels) in the text.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}
