//! SmsSender against a real HTTP server standing in for the gateway (axum on 127.0.0.1,
//! plain HTTP with `allow_insecure`). The server records every request; the path picks the
//! status it answers with.

// Test helpers live outside `#[test]` functions, where clippy.toml's allow-*-in-tests does
// not reach; failing loudly is what a test should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use sspr_app::ports::{Channel, OutboxMessage};
use sspr_delivery::{Sender, SmsConfig, SmsKind, SmsSender};

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// The answer for each path. `/slow` takes 10 s and records `done` in the log afterwards.
async fn gateway(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    log.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        headers,
        body,
    });
    let json = r#"{"id":"gw-1","status":"queued"}"#.to_string();
    match path.as_str() {
        "/fail500" => (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
        "/fail429" => (StatusCode::TOO_MANY_REQUESTS, String::new()),
        "/fail400" => (StatusCode::BAD_REQUEST, String::new()),
        "/twilio" => (
            StatusCode::CREATED,
            r#"{"sid":"SM0123","status":"queued"}"#.into(),
        ),
        "/twilio-garbage" => (StatusCode::CREATED, r#"{"status":"queued"}"#.into()),
        // A captive portal or a wrong URL: 200, but not the gateway talking. It quotes the
        // number and the code, which must not reach the log.
        "/garbage" => (
            StatusCode::OK,
            "<html><body>Welcome!\nForwarding +4915112345678: Code 493817</body></html>".into(),
        ),
        "/json-error" => (StatusCode::OK, r#"{"error":"number blocked"}"#.into()),
        "/json-false" => (StatusCode::OK, r#"{"success":false}"#.into()),
        "/accepted" => (StatusCode::OK, r#"{"accepted":true}"#.into()),
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            log.lock().unwrap().push(Seen {
                method: Method::GET,
                path: "done".into(),
                headers: HeaderMap::new(),
                body: Bytes::new(),
            });
            (StatusCode::OK, json)
        }
        _ => (StatusCode::OK, json),
    }
}

async fn start() -> (String, Log) {
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .fallback(gateway)
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

fn json_cfg(base: &str, path: &str) -> SmsConfig {
    SmsConfig {
        kind: SmsKind::Json,
        url: format!("{base}{path}"),
        allow_insecure: true,
        token: "tok-123".into(),
        timeout_secs: 5,
        ..Default::default()
    }
}

fn sms(to: &str, body: &str) -> OutboxMessage {
    let mut m = OutboxMessage::new(Channel::Sms, to, "", body, 0);
    m.id = 1;
    m
}

#[tokio::test]
async fn json_gateway_gets_bearer_and_json_body() {
    let (base, log) = start().await;
    let s = SmsSender::new(&json_cfg(&base, "/send")).unwrap();
    s.send(&sms("+4915112345678", "Ihr Code: 493817"))
        .await
        .unwrap();

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/send"));
    assert_eq!(r.headers["authorization"], "Bearer tok-123");
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"to": "+4915112345678", "message": "Ihr Code: 493817"})
    );
}

#[tokio::test]
async fn twilio_gets_basic_auth_and_form_fields() {
    let (base, log) = start().await;
    let cfg = SmsConfig {
        kind: SmsKind::Twilio,
        url: format!("{base}/twilio"),
        allow_insecure: true,
        account_sid: "AC0123".into(),
        auth_token: "authtok".into(),
        from: "+4930123456".into(),
        timeout_secs: 5,
        ..Default::default()
    };
    let s = SmsSender::new(&cfg).unwrap();
    s.send(&sms("+33612345678", "Code 111 & more=yes"))
        .await
        .unwrap();

    let r = log.lock().unwrap()[0].clone();
    assert_eq!(r.method, Method::POST);
    // base64("AC0123:authtok")
    assert_eq!(r.headers["authorization"], "Basic QUMwMTIzOmF1dGh0b2s=");
    assert_eq!(
        r.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let form: Vec<(String, String)> = serde_urlencoded_pairs(&r.body);
    assert_eq!(
        form,
        vec![
            ("To".to_string(), "+33612345678".to_string()),
            ("From".to_string(), "+4930123456".to_string()),
            ("Body".to_string(), "Code 111 & more=yes".to_string()),
        ]
    );
}

/// Decodes `application/x-www-form-urlencoded` (enough for the test: `+`, `%XX`).
fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (dec(k), dec(v))
        })
        .collect()
}

#[tokio::test]
async fn statuses_decide_retrying() {
    let (base, _log) = start().await;
    for (path, retryable) in [("/fail500", true), ("/fail429", true), ("/fail400", false)] {
        let s = SmsSender::new(&json_cfg(&base, path)).unwrap();
        let e = s
            .send(&sms("+4915112345678", "Code 493817"))
            .await
            .unwrap_err();
        assert_eq!(e.retryable, retryable, "{path}: {e:?}");
        assert!(
            !e.detail.contains("493817") && !e.detail.contains("+4915112345678"),
            "{}",
            e.detail
        );
    }
}

#[tokio::test]
async fn prefix_allowlist_refuses_before_any_request() {
    let (base, log) = start().await;
    let cfg = SmsConfig {
        allowed_prefixes: vec!["+49".into(), "+33".into()],
        ..json_cfg(&base, "/send")
    };
    let s = SmsSender::new(&cfg).unwrap();
    let e = s
        .send(&sms("+88216123456", "Code 493817"))
        .await
        .unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.class, "destination_not_allowed");
    assert!(
        log.lock().unwrap().is_empty(),
        "no request may reach the gateway"
    );
    s.send(&sms("+4915112345678", "Code 493817")).await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unreachable_gateway_is_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = SmsSender::new(&json_cfg(&format!("http://127.0.0.1:{port}"), "/send")).unwrap();
    let e = s
        .send(&sms("+4915112345678", "Code 493817"))
        .await
        .unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert_eq!(e.class, "connection");
}

#[tokio::test]
async fn without_allow_insecure_http_is_refused() {
    let (base, _log) = start().await;
    let e = SmsSender::new(&SmsConfig {
        allow_insecure: false,
        ..json_cfg(&base, "/send")
    })
    .err()
    .unwrap();
    assert!(e.0.contains("https"), "{e}");
}

#[tokio::test]
async fn a_2xx_answer_that_is_not_the_gateway_is_a_retryable_failure_quoted_safely() {
    let (base, _log) = start().await;
    let s = SmsSender::new(&json_cfg(&base, "/garbage")).unwrap();
    let e = s
        .send(&sms("+4915112345678", "Code 493817"))
        .await
        .unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert_eq!(e.class, "unexpected_answer");
    assert!(e.detail.contains("200 OK"), "{}", e.detail);
    assert!(
        e.detail.contains("<html><body>Welcome!"),
        "the raw answer: {}",
        e.detail
    );
    assert!(
        !e.detail.contains("493817") && !e.detail.contains("+4915112345678"),
        "{}",
        e.detail
    );
    assert!(!e.detail.contains('\n'), "one line: {}", e.detail);

    for path in ["/json-error", "/json-false"] {
        let s = SmsSender::new(&json_cfg(&base, path)).unwrap();
        let e = s
            .send(&sms("+4915112345678", "Code 493817"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.retryable, e.class),
            (true, "unexpected_answer"),
            "{path}"
        );
    }
    let tw = SmsSender::new(&SmsConfig {
        kind: SmsKind::Twilio,
        url: format!("{base}/twilio-garbage"),
        allow_insecure: true,
        account_sid: "AC0123".into(),
        auth_token: "authtok".into(),
        from: "+4930123456".into(),
        timeout_secs: 5,
        ..Default::default()
    })
    .unwrap();
    let e = tw.send(&sms("+4915112345678", "c")).await.unwrap_err();
    assert!(e.detail.contains("sid"), "{}", e.detail);
}

#[tokio::test]
async fn success_match_is_what_a_2xx_answer_must_contain() {
    let (base, _log) = start().await;
    let cfg = |path| SmsConfig {
        success_match: Some(r#""accepted":true"#.into()),
        ..json_cfg(&base, path)
    };
    let msg = sms("+4915112345678", "Code 493817");
    SmsSender::new(&cfg("/accepted"))
        .unwrap()
        .send(&msg)
        .await
        .unwrap();
    let e = SmsSender::new(&cfg("/send"))
        .unwrap()
        .send(&msg)
        .await
        .unwrap_err();
    assert_eq!(e.class, "unexpected_answer");
    assert!(e.detail.contains("success_match"), "{}", e.detail);
}

#[tokio::test]
async fn a_slow_gateway_fails_at_its_deadline_not_when_it_answers() {
    let (base, log) = start().await;
    let s = SmsSender::new(&SmsConfig {
        timeout_secs: 1,
        ..json_cfg(&base, "/slow")
    })
    .unwrap();
    let e = s
        .send(&sms("+4915112345678", "Code 493817"))
        .await
        .unwrap_err();
    assert_eq!((e.retryable, e.class), (true, "timeout"), "{e:?}");
    let seen: Vec<String> = log.lock().unwrap().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        seen,
        vec!["/slow".to_string()],
        "the request reached the gateway and was given up before the gateway answered"
    );
}

#[tokio::test]
async fn every_copy_of_a_row_carries_the_same_idempotency_key() {
    let (base, log) = start().await;
    let s = SmsSender::new(&json_cfg(&base, "/send")).unwrap();
    let mut m = sms("+4915112345678", "Code 493817");
    m.id = 42;
    m.created_at = 1_700_000_000;
    s.send(&m).await.unwrap();
    m.attempts = 2;
    s.send(&m).await.unwrap();
    let keys: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, vec!["sspr-42-1700000000"; 2]);
}
