//! Malformed, oversized and wrongly typed input gets a clear 4xx that says what to fix, with a
//! support code in the audit log, and changes nothing.

// Helpers fail loudly on purpose: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::{Method as HttpMethod, StatusCode};
use serde_json::{Value, json};

use crate::harness::{PASSWORD, Server};

/// A raw request: any bytes, any (or no) content type.
async fn raw(
    s: &Server,
    method: HttpMethod,
    path: &str,
    bearer: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut rb = s
        .http
        .request(method, format!("{}{}", s.url, path))
        .header("x-sspr-client", "logon_screen");
    if let Some(b) = bearer {
        rb = rb.bearer_auth(b);
    }
    if let Some(ct) = content_type {
        rb = rb.header("content-type", ct);
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{path}: answer {status} is not JSON ({ct}): {text:?}"));
    assert!(
        ct.starts_with("application/json"),
        "{path}: content-type {ct:?}"
    );
    (status, v)
}

/// Checks the error's shape and that its support code finds exactly one audit event, a failure.
async fn assert_error(
    s: &Server,
    what: &str,
    st: StatusCode,
    v: &Value,
    status: StatusCode,
    error: &str,
    mentions: &[&str],
) {
    assert_eq!(st, status, "{what}: {v}");
    assert_eq!(v["error"], error, "{what}: {v}");
    let msg = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no message: {v}"));
    assert!(!msg.trim().is_empty(), "{what}: empty message");
    for m in mentions {
        assert!(
            msg.to_lowercase().contains(&m.to_lowercase()),
            "{what}: message {msg:?} does not mention {m:?}"
        );
    }
    let code = v["support_code"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no support_code: {v}"));
    assert_eq!(code.len(), 11, "{what}: {v}");
    let ev = s.audit(&format!("support_code={code}")).await;
    assert_eq!(ev.len(), 1, "{what}: support code {code} → {ev:?}");
    assert_eq!(ev[0]["result"], "failure", "{what}: {:?}", ev[0]);
    assert_eq!(ev[0]["client_ip"], "127.0.0.1");
}

const JSON: Option<&str> = Some("application/json");

/// The malformed bodies every JSON endpoint must refuse: (label, content type, body, status,
/// error, words the message must contain).
type Case = (
    String,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
    &'static str,
    Vec<String>,
);

fn malformed(field: &str) -> Vec<Case> {
    let u = StatusCode::UNPROCESSABLE_ENTITY;
    let mut big = format!("{{\"{field}\":\"").into_bytes();
    big.extend(std::iter::repeat_n(b'a', 100 * 1024));
    big.extend(b"\"}");
    vec![
        (
            "no content type".into(),
            None,
            format!("{{\"{field}\":\"a\"}}").into_bytes(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            vec!["Content-Type: application/json".into()],
        ),
        (
            "text/plain".into(),
            Some("text/plain"),
            format!("{{\"{field}\":\"a\"}}").into_bytes(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            vec!["application/json".into()],
        ),
        (
            "invalid JSON".into(),
            JSON,
            format!("{{\"{field}\": \"a\"").into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            vec!["not valid JSON".into()],
        ),
        (
            "not JSON at all".into(),
            JSON,
            b"user=alice".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            vec!["not valid JSON".into()],
        ),
        (
            "number".into(),
            JSON,
            format!("{{\"{field}\": 5}}").into_bytes(),
            u,
            "invalid_request",
            vec!["invalid type".into(), "expected a string".into()],
        ),
        (
            "array".into(),
            JSON,
            format!("{{\"{field}\": [\"a\",\"b\"]}}").into_bytes(),
            u,
            "invalid_request",
            vec!["invalid type".into()],
        ),
        (
            "null field".into(),
            JSON,
            format!("{{\"{field}\": null}}").into_bytes(),
            u,
            "invalid_request",
            vec!["invalid type".into()],
        ),
        (
            "null body".into(),
            JSON,
            b"null".to_vec(),
            u,
            "invalid_request",
            vec!["invalid type".into()],
        ),
        (
            "unknown field".into(),
            JSON,
            format!("{{\"{field}\":\"a\",\"admin\":true}}").into_bytes(),
            u,
            "invalid_request",
            vec!["unknown field".into(), "admin".into()],
        ),
        (
            "repeated field".into(),
            JSON,
            format!("{{\"{field}\":\"a\",\"{field}\":\"b\"}}").into_bytes(),
            u,
            "invalid_request",
            vec!["duplicate field".into(), field.into()],
        ),
        (
            "missing field".into(),
            JSON,
            b"{}".to_vec(),
            u,
            "invalid_request",
            vec!["missing field".into(), field.into()],
        ),
        (
            "100 KiB".into(),
            JSON,
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            vec!["too large".into()],
        ),
    ]
}

async fn success_count(s: &Server) -> usize {
    s.audit("result=success").await.len()
}

#[tokio::test]
async fn flow_start_refuses_malformed_bodies_and_creates_no_flow() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let before = success_count(&s).await;
    for (label, ct, body, status, error, mentions) in malformed("user") {
        let (st, v) = raw(
            &s,
            HttpMethod::POST,
            "/api/v1/flow/start",
            None,
            ct,
            Some(body),
        )
        .await;
        let m: Vec<&str> = mentions.iter().map(String::as_str).collect();
        assert_error(
            &s,
            &format!("flow/start {label}"),
            st,
            &v,
            status,
            error,
            &m,
        )
        .await;
        assert!(v.get("flow_token").is_none(), "{label}: {v}");
    }
    for user in ["", "   "] {
        let (st, v) = s.start_flow(user, "reset").await;
        assert_error(
            &s,
            &format!("flow/start user {user:?}"),
            st,
            &v,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &["user ID"],
        )
        .await;
        assert!(v.get("flow_token").is_none(), "{v}");
    }
    let (st, v) = s.start_flow("alice", "explode").await;
    assert_error(
        &s,
        "flow/start bad kind",
        st,
        &v,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["reset", "unlock"],
    )
    .await;

    assert_eq!(
        success_count(&s).await,
        before,
        "a refused request recorded a success"
    );
    assert!(
        s.audit("activity=reset_started&result=success")
            .await
            .is_empty()
    );
    // Nothing counted against the user or the IP: a proper start still works and sends nothing.
    let t = s.flow("alice").await;
    assert_eq!(t.len(), 32);
    assert!(s.smtp.messages().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn sign_in_refuses_malformed_bodies_and_opens_no_session() {
    let s = Server::start().await;
    s.user("alice", &["staff"]).await;
    let before = success_count(&s).await;
    for (label, ct, body, status, error, mentions) in malformed("user") {
        // Sign-in also needs the password; the shapes about `user` stay the same.
        let body = if label == "missing field"
            || label == "repeated field"
            || label == "100 KiB"
            || ct != JSON
            || label.starts_with("invalid")
            || label.starts_with("not JSON")
            || label == "null body"
        {
            body
        } else {
            let mut v: Value = serde_json::from_slice(&body).unwrap();
            v["password"] = json!(PASSWORD);
            serde_json::to_vec(&v).unwrap()
        };
        let (st, v) = raw(
            &s,
            HttpMethod::POST,
            "/api/v1/session",
            None,
            ct,
            Some(body),
        )
        .await;
        let m: Vec<&str> = mentions.iter().map(String::as_str).collect();
        assert_error(&s, &format!("session {label}"), st, &v, status, error, &m).await;
        assert!(v.get("session_token").is_none(), "{label}: {v}");
    }
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "", "password": PASSWORD }),
        )
        .await;
    assert_error(
        &s,
        "session empty user",
        st,
        &v,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["user ID"],
    )
    .await;
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "alice", "password": "" }),
        )
        .await;
    assert_error(
        &s,
        "session empty password",
        st,
        &v,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["password"],
    )
    .await;
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "alice", "password": 12345 }),
        )
        .await;
    assert_error(
        &s,
        "session numeric password",
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        &["invalid type"],
    )
    .await;

    assert_eq!(
        success_count(&s).await,
        before,
        "a refused request recorded a success"
    );
    // The real sign-in still works (no failure was counted against alice).
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "alice", "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn flow_verify_refuses_malformed_bodies_and_counts_no_guess() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let before = success_count(&s).await;
    for (label, ct, body, status, error, mentions) in malformed("method") {
        let (st, v) = raw(
            &s,
            HttpMethod::POST,
            "/api/v1/flow/verify",
            Some(&t),
            ct,
            Some(body),
        )
        .await;
        let m: Vec<&str> = mentions.iter().map(String::as_str).collect();
        assert_error(
            &s,
            &format!("flow/verify {label}"),
            st,
            &v,
            status,
            error,
            &m,
        )
        .await;
    }
    let cases = [
        (
            "empty method",
            json!({ "method": "", "code": code }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown method",
            json!({ "method": "carrier-pigeon", "code": code }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "letters in code",
            json!({ "method": "email", "code": "12ab56" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "short code",
            json!({ "method": "email", "code": "123" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "no code",
            json!({ "method": "email" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "numeric code",
            json!({ "method": "email", "code": 123456 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "answers as string",
            json!({ "method": "questions", "answers": "Paris" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ];
    for (label, body, status, error) in cases {
        let (st, v) = s.post("/api/v1/flow/verify", Some(&t), body).await;
        assert_error(
            &s,
            &format!("flow/verify {label}"),
            st,
            &v,
            status,
            error,
            &[],
        )
        .await;
    }
    assert_eq!(
        success_count(&s).await,
        before,
        "a refused request recorded a success"
    );
    // No guess was counted: no verification failure, the code's attempts untouched.
    assert!(
        s.audit("user=alice&activity=verification_failed")
            .await
            .is_empty()
    );
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "the right code must still work: {v}");
    assert_eq!(v["status"], "set_password");
    s.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_missing_or_garbage_bearers() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let (st, v) = raw(
        &s,
        HttpMethod::GET,
        "/api/v1/no/such/thing",
        None,
        None,
        None,
    )
    .await;
    assert_error(
        &s,
        "unknown route",
        st,
        &v,
        StatusCode::NOT_FOUND,
        "invalid_request",
        &["/api/v1"],
    )
    .await;
    let (st, v) = raw(
        &s,
        HttpMethod::POST,
        "/api/v2/flow/start",
        None,
        JSON,
        Some(b"{}".to_vec()),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    let t = s.flow("alice").await;
    let flow_calls: [(HttpMethod, &str, Option<Value>); 6] = [
        (HttpMethod::GET, "/api/v1/flow", None),
        (
            HttpMethod::POST,
            "/api/v1/flow/challenge",
            Some(json!({ "method": "email" })),
        ),
        (
            HttpMethod::POST,
            "/api/v1/flow/verify",
            Some(json!({ "method": "email", "code": "123456" })),
        ),
        (
            HttpMethod::POST,
            "/api/v1/flow/password",
            Some(json!({ "new_password": "quiet violet harbour lamps" })),
        ),
        (HttpMethod::POST, "/api/v1/flow/unlock", None),
        (HttpMethod::GET, "/api/v1/me", None),
    ];
    let garbage = [
        String::new(),
        "garbage".into(),
        "x".repeat(32),
        t[..31].to_string(),
        format!("{t}x"),
        "Bearer Bearer".into(),
    ];
    for (m, path, body) in &flow_calls {
        let (st, v) = s.call(m.clone(), path, None, body.clone()).await;
        assert_error(
            &s,
            &format!("{path} without bearer"),
            st,
            &v,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &[],
        )
        .await;
        for g in &garbage {
            let (st, v) = s.call(m.clone(), path, Some(g), body.clone()).await;
            assert_error(
                &s,
                &format!("{path} with bearer {g:?}"),
                st,
                &v,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                &[],
            )
            .await;
        }
    }
    // A session token is not a flow token, and a flow token not a session token.
    let (_, sess) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "alice", "password": PASSWORD }),
        )
        .await;
    let sess = sess["session_token"].as_str().unwrap().to_string();
    let (st, _) = s
        .call(HttpMethod::GET, "/api/v1/flow", Some(&sess), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.call(HttpMethod::GET, "/api/v1/me", Some(&t), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // The real token still works, and nothing was sent.
    let (st, v) = s
        .call(HttpMethod::GET, "/api/v1/flow", Some(&t), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.smtp.messages().is_empty());
    s.stop().await;
}

/// Who is asking is checked before the body is read: without its token, a request is
/// unauthorised whatever its body, and audited as such (an admin one as `admin_auth_failed`).
/// With the token, the same body gets the body's own error.
#[tokio::test]
async fn without_a_token_a_malformed_body_is_unauthorised_first() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    let (_, sess) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "alice", "password": PASSWORD }),
        )
        .await;
    let sess = sess["session_token"].as_str().unwrap().to_string();
    let admin = s.admin_token.clone();
    let calls = [
        (HttpMethod::POST, "/api/v1/flow/challenge", t.as_str()),
        (HttpMethod::POST, "/api/v1/me/email", sess.as_str()),
        (HttpMethod::PUT, "/api/v1/admin/policy", admin.as_str()),
    ];
    for (m, path, token) in calls {
        let (st, v) = raw(&s, m.clone(), path, None, JSON, Some(b"{".to_vec())).await;
        assert_error(
            &s,
            &format!("{path} without a token"),
            st,
            &v,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &["Authorization: Bearer"],
        )
        .await;
        let (st, v) = raw(&s, m, path, Some(token), JSON, Some(b"{".to_vec())).await;
        assert_error(
            &s,
            &format!("{path} with its token"),
            st,
            &v,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &["not valid JSON"],
        )
        .await;
    }
    let ev = s.audit("activity=admin_auth_failed").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["reason"], "no_token");
    s.stop().await;
}

#[tokio::test]
async fn email_registration_refuses_arrays_and_header_injection_and_sends_nothing() {
    let s = Server::start().await;
    s.user("alice", &["staff"]).await;
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "alice", "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sess = v["session_token"].as_str().unwrap().to_string();

    let (st, v) = s
        .post(
            "/api/v1/me/email",
            Some(&sess),
            json!({ "value": ["a@b.c", "x@y.z"] }),
        )
        .await;
    assert_error(
        &s,
        "email array",
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
        &["invalid type"],
    )
    .await;
    for bad in [
        "a@b.c\r\nBcc: x@y.z",
        "a@b.c\nBcc: x@y.z",
        "a@b.c, x@y.z",
        "\"x\"@b.c",
        "a@b.c>\r\nRCPT TO:<x@y.z",
    ] {
        let (st, v) = s
            .post("/api/v1/me/email", Some(&sess), json!({ "value": bad }))
            .await;
        assert_error(
            &s,
            &format!("email {bad:?}"),
            st,
            &v,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &["valid email address"],
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(s.smtp.messages().is_empty(), "{:?}", s.smtp.messages());
    let (st, v) = s
        .call(HttpMethod::GET, "/api/v1/me", Some(&sess), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let dump = v.to_string();
    assert!(!dump.contains("x@y.z") && !dump.contains("a@b.c"), "{v}");
    assert!(
        s.audit("activity=security_info_added&result=success")
            .await
            .is_empty()
    );

    // A proper address is accepted and gets one code: the endpoint itself works.
    let (st, v) = s
        .post(
            "/api/v1/me/email",
            Some(&sess),
            json!({ "value": "alice@contoso.test" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.wait_mail_code("alice@contoso.test", 0).await;
    assert_eq!(s.smtp.messages().len(), 1);
    assert!(!s.smtp.messages()[0].to_lowercase().contains("bcc"));
    s.stop().await;
}

#[tokio::test]
async fn a_wrong_http_method_gets_a_json_405() {
    let s = Server::start().await;
    let resp = s
        .http
        .get(format!("{}/api/v1/flow/start", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = resp
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(allow.as_deref(), Some("POST"));
    let text = resp.text().await.unwrap();
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("405 body is not JSON: {text:?}"));
    assert_eq!(v["error"], "invalid_request", "{v}");
    assert_eq!(v["support_code"].as_str().map(str::len), Some(11), "{v}");
    s.stop().await;
}
