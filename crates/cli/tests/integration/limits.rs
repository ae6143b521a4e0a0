//! Every lifetime and throttle, at its boundary, on the shared manual clock.

// Helpers fail loudly on purpose: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::header::HeaderMap;
use reqwest::{Method as HttpMethod, StatusCode};
use serde_json::{Value, json};
use sspr_domain::Window;

use crate::harness::{PASSWORD, Server, wrong};

const NEW: &str = "quiet violet harbour lamps";
const NEWER: &str = "amber kettle under moonlight";

/// A POST that also returns the response headers.
async fn post_raw(
    s: &Server,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> (StatusCode, HeaderMap, Value) {
    let mut rb = s
        .http
        .post(format!("{}{}", s.url, path))
        .header("x-sspr-client", "api")
        .json(&body);
    if let Some(b) = bearer {
        rb = rb.bearer_auth(b);
    }
    let resp = rb.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn challenge(s: &Server, token: &str, method: &str) -> (StatusCode, HeaderMap, Value) {
    post_raw(
        s,
        "/api/v1/flow/challenge",
        Some(token),
        json!({ "method": method }),
    )
    .await
}

fn assert_too_many(st: StatusCode, h: &HeaderMap, v: &Value) {
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"], "too_many_requests", "{v}");
    let ra: i64 = h
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ra > 0, "Retry-After {ra}");
    assert_eq!(v["support_code"].as_str().unwrap().len(), 11, "{v}");
}

#[tokio::test]
async fn email_code_expires_exactly_at_its_ttl() {
    let s = Server::start_with(|c| c.limits.code_ttl_secs = 300).await;
    s.registered_user("alice").await;

    // One second before expiry: accepted.
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    s.clock.advance(299);
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "set_password");

    // Exactly at expiry: refused, and not counted as a guess.
    let t2 = s.flow("alice").await;
    let code2 = s.email_code(&t2, "alice@contoso.test").await;
    s.clock.advance(300);
    let (st, v) = s.verify(&t2, "email", &code2).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "verification_failed", "{v}");
    let ev = s.audit("user=alice&activity=verification_failed").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["reason"], "expired_or_used");
    // A fresh code in the same flow works.
    let code3 = s.email_code(&t2, "alice@contoso.test").await;
    let (st, v) = s.verify(&t2, "email", &code3).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn flow_expires_exactly_at_its_ttl() {
    let s = Server::start_with(|c| c.limits.flow_ttl_secs = 900).await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    s.clock.advance(899);
    let (st, v) = s
        .call(HttpMethod::GET, "/api/v1/flow", Some(&t), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["expires_in"], 1, "{v}");
    let (st, _, v) = challenge(&s, &t, "email").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.audit("user=alice&activity=flow_expired").await.is_empty());

    s.clock.advance(1);
    let (st, v) = s
        .call(HttpMethod::GET, "/api/v1/flow", Some(&t), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "unauthorized", "{v}");
    let (st, _, v) = challenge(&s, &t, "sms").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let ev = s.audit("user=alice&activity=flow_expired").await;
    assert!(!ev.is_empty(), "no flow_expired event");
    assert_eq!(ev[0]["result"], "failure");
    assert!(
        ev.iter().any(|e| e["support_code"] == v["support_code"]),
        "{ev:?} / {v}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_code_dies_after_its_wrong_guesses() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    for _ in 0..3 {
        let (st, v) = s.verify(&t, "email", &wrong(&code)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"], "verification_failed");
    }
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "the right code after 3 misses must be refused: {v}"
    );
    assert_eq!(v["error"], "verification_failed");
    let (_, v) = s
        .call(HttpMethod::GET, "/api/v1/flow", Some(&t), None)
        .await;
    assert_eq!(v["status"], "choose_method", "{v}");
    assert_eq!(v["verified"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn a_new_code_does_not_reset_the_failure_count_and_the_block_lasts_block_secs() {
    let s = Server::start_with(|c| {
        c.limits.account_failures = Window {
            max: 5,
            secs: 24 * 3600,
        };
        c.limits.block_secs = 24 * 3600;
    })
    .await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    for _ in 0..3 {
        let (st, _) = s.verify(&t, "email", &wrong(&code)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
    }
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &wrong(&code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // The fifth miss blocks, and its answer says so (not "wrong code, try again").
    let (st, h, v) = post_raw(
        &s,
        "/api/v1/flow/verify",
        Some(&t),
        json!({ "method": "email", "code": wrong(&code) }),
    )
    .await;
    assert_too_many(st, &h, &v);
    assert!(v["message"].as_str().unwrap().contains("blocked"), "{v}");
    let blocks = s.audit("user=alice&activity=blocked_from_reset").await;
    assert_eq!(blocks.len(), 1, "{blocks:?}");

    // Blocked: even the right code is refused.
    let (st, h, v) = post_raw(
        &s,
        "/api/v1/flow/verify",
        Some(&t),
        json!({ "method": "email", "code": code }),
    )
    .await;
    assert_too_many(st, &h, &v);
    assert!(v["message"].as_str().unwrap().contains("blocked"), "{v}");
    let ra: i64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(ra, 24 * 3600, "{h:?}");
    // Other methods and new codes too.
    let (st, h, v) = challenge(&s, &t, "sms").await;
    assert_too_many(st, &h, &v);
    // And a new flow.
    let (st, h, v) = post_raw(
        &s,
        "/api/v1/flow/start",
        None,
        json!({ "user": "alice", "kind": "reset" }),
    )
    .await;
    assert_too_many(st, &h, &v);
    assert!(v["message"].as_str().unwrap().contains("blocked"), "{v}");
    assert!(v.get("flow_token").is_none(), "{v}");

    // One second before the end of the block: still blocked.
    s.clock.advance(24 * 3600 - 1);
    let (st, h, v) = post_raw(
        &s,
        "/api/v1/flow/start",
        None,
        json!({ "user": "alice", "kind": "reset" }),
    )
    .await;
    assert_too_many(st, &h, &v);
    assert_eq!(h["retry-after"], "1");

    s.clock.advance(1);
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.password_works("alice", NEW).await);
    s.stop().await;
}

#[tokio::test]
async fn a_successful_reset_clears_the_failure_count() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    for _ in 0..3 {
        s.verify(&t, "email", &wrong(&code)).await;
    }
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, _) = s.verify(&t, "email", &wrong(&code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "4 failures do not block: {v}");
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Four more: without the clearing this would be 8 ≥ 5.
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    for _ in 0..3 {
        let (st, v) = s.verify(&t, "email", &wrong(&code)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    }
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &wrong(&code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        s.audit("user=alice&activity=blocked_from_reset")
            .await
            .is_empty()
    );
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.set_password(&t, NEWER).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn codes_per_account_are_limited_within_the_window() {
    let s = Server::start_with(|c| {
        c.limits.account_codes = Window { max: 3, secs: 600 };
        c.limits.destination_codes = Window {
            max: 100,
            secs: 600,
        };
    })
    .await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    // Email and SMS both count against the account.
    s.email_code(&t, "alice@contoso.test").await;
    s.sms_code(&t).await;
    s.email_code(&t, "alice@contoso.test").await;
    let mails = s.mail_count("alice@contoso.test");
    let texts = s.sms.texts().len();
    for m in ["email", "sms"] {
        let (st, h, v) = challenge(&s, &t, m).await;
        assert_too_many(st, &h, &v);
        assert!(
            v["message"].as_str().unwrap().contains("Too many codes"),
            "{v}"
        );
    }
    let ev = s.audit("user=alice&activity=rate_limited").await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev.iter().all(|e| e["reason"] == "code_rate"), "{ev:?}");

    // Window boundary: one second short, still refused; at the window's end, allowed.
    s.clock.advance(599);
    let (st, h, v) = challenge(&s, &t, "email").await;
    assert_too_many(st, &h, &v);
    s.clock.advance(1);
    let code = s.email_code(&t, "alice@contoso.test").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        s.mail_count("alice@contoso.test"),
        mails + 1,
        "refused requests must not have sent mail"
    );
    assert_eq!(
        s.sms.texts().len(),
        texts,
        "refused requests must not have sent texts"
    );
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn codes_per_destination_are_limited_within_the_window() {
    let s = Server::start_with(|c| {
        c.limits.account_codes = Window {
            max: 100,
            secs: 3600,
        };
        c.limits.destination_codes = Window { max: 2, secs: 600 };
    })
    .await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    s.email_code(&t, "alice@contoso.test").await;
    s.email_code(&t, "alice@contoso.test").await;
    let (st, h, v) = challenge(&s, &t, "email").await;
    assert_too_many(st, &h, &v);
    // Another destination is not affected.
    s.sms_code(&t).await;
    // The limit is per address, across accounts: bob shares alice's address.
    s.user("bob", &["staff"]).await;
    s.registered("bob", sspr_domain::Method::Email, "alice@contoso.test")
        .await;
    let tb = s.flow("bob").await;
    let (st, h, v) = challenge(&s, &tb, "email").await;
    assert_too_many(st, &h, &v);

    s.clock.advance(599);
    let (st, h, v) = challenge(&s, &t, "email").await;
    assert_too_many(st, &h, &v);
    s.clock.advance(1);
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn starts_per_ip_are_limited_the_same_for_known_and_unknown_users() {
    let s = Server::start_with(|c| c.limits.ip_starts = Window { max: 5, secs: 600 }).await;
    s.registered_user("alice").await;
    for u in ["alice", "nobody1", "alice", "nobody2", "alice"] {
        let (st, v) = s.start_flow(u, "reset").await;
        assert_eq!(st, StatusCode::OK, "{u}: {v}");
    }
    let (st_k, h_k, v_k) = post_raw(
        &s,
        "/api/v1/flow/start",
        None,
        json!({ "user": "alice", "kind": "reset" }),
    )
    .await;
    let (st_u, h_u, v_u) = post_raw(
        &s,
        "/api/v1/flow/start",
        None,
        json!({ "user": "nobody3", "kind": "reset" }),
    )
    .await;
    assert_too_many(st_k, &h_k, &v_k);
    assert_too_many(st_u, &h_u, &v_u);
    assert_eq!(st_k, st_u);
    assert_eq!(v_k["error"], v_u["error"]);
    assert_eq!(v_k["message"], v_u["message"]);
    assert_eq!(h_k["retry-after"], h_u["retry-after"]);
    let mut a = v_k.clone();
    let mut b = v_u.clone();
    a["support_code"] = Value::Null;
    b["support_code"] = Value::Null;
    assert_eq!(a, b);
    // Sign-ins from the IP count against the same limit.
    let (st, _) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "alice", "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);

    s.clock.advance(600);
    let (st, v) = s.start_flow("alice", "reset").await;
    assert_eq!(st, StatusCode::OK, "after the window: {v}");
    s.stop().await;
}

#[tokio::test]
async fn a_block_is_durable_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    let d1 = dir.clone();
    let s = Server::start_with(move |c| c.data_dir = d1).await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    for _ in 0..3 {
        s.verify(&t, "email", &wrong(&code)).await;
    }
    let code = s.email_code(&t, "alice@contoso.test").await;
    for _ in 0..2 {
        s.verify(&t, "email", &wrong(&code)).await;
    }
    let until =
        s.rt.store
            .blocked_until("acct-block:alice", s.clock_now())
            .await
            .unwrap();
    assert_eq!(until, Some(s.clock_now() + 24 * 3600));
    s.stop().await;

    // A new process on the same data directory still refuses alice.
    let d2 = dir.clone();
    let s = Server::start_with(move |c| c.data_dir = d2).await;
    let until2 =
        s.rt.store
            .blocked_until("acct-block:alice", s.clock_now())
            .await
            .unwrap();
    assert_eq!(until2, until);
    let (st, h, v) = post_raw(
        &s,
        "/api/v1/flow/start",
        None,
        json!({ "user": "alice", "kind": "reset" }),
    )
    .await;
    assert_too_many(st, &h, &v);
    // The old flow token is still known and still refused.
    let (st, _, v) = challenge(&s, &t, "email").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    async fn start_with_xff(s: &Server, user: &str) -> StatusCode {
        s.http
            .post(format!("{}/api/v1/flow/start", s.url))
            .header("x-forwarded-for", "203.0.113.7")
            .json(&json!({ "user": user, "kind": "reset" }))
            .send()
            .await
            .unwrap()
            .status()
    }

    let s = Server::start().await;
    s.registered_user("alice").await;
    assert_eq!(start_with_xff(&s, "alice").await, StatusCode::OK);
    let ev = s.audit("user=alice&activity=reset_started").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["client_ip"], "127.0.0.1", "{ev:?}");
    assert!(s.audit("ip=203.0.113.7").await.is_empty());
    s.stop().await;

    let s = Server::start_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    s.registered_user("alice").await;
    assert_eq!(start_with_xff(&s, "alice").await, StatusCode::OK);
    let ev = s.audit("user=alice&activity=reset_started").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["client_ip"], "203.0.113.7", "{ev:?}");
    // Without the header, the proxy itself is the client.
    let (st, _) = s.start_flow("alice", "reset").await;
    assert_eq!(st, StatusCode::OK);
    let ev = s.audit("user=alice&activity=reset_started").await;
    assert_eq!(ev[1]["client_ip"], "127.0.0.1", "{ev:?}");
    s.stop().await;
}

#[tokio::test]
async fn failures_from_one_ip_block_that_ip_from_starting_and_guessing() {
    let s = Server::start_with(|c| c.limits.ip_failures = Window { max: 3, secs: 3600 }).await;
    s.registered_user("alice").await;
    s.registered_user("bob").await;
    let ta = s.flow("alice").await;
    let tb = s.flow("bob").await;
    let ca = s.email_code(&ta, "alice@contoso.test").await;
    let cb = s.email_code(&tb, "bob@contoso.test").await;
    for _ in 0..3 {
        let (st, v) = s.verify(&ta, "email", &wrong(&ca)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    }
    // The IP is blocked now: no new flows, no sign-ins.
    let (st, h, v) = post_raw(
        &s,
        "/api/v1/flow/start",
        None,
        json!({ "user": "carol", "kind": "reset" }),
    )
    .await;
    assert_too_many(st, &h, &v);
    let (st, _) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "bob", "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    // Nor more guesses on flows it opened before the block (bob's account has no failures).
    let (st, h, v) = post_raw(
        &s,
        "/api/v1/flow/verify",
        Some(&tb),
        json!({ "method": "email", "code": wrong(&cb) }),
    )
    .await;
    assert_too_many(st, &h, &v);
    let (st, h, v) = challenge(&s, &tb, "sms").await;
    assert_too_many(st, &h, &v);

    // The block ends with the window.
    s.clock.advance(3600);
    let t = s.flow("bob").await.len();
    assert_eq!(t, 32);
    s.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_from_one_ip_block_that_ip() {
    let s = Server::start_with(|c| c.limits.ip_failures = Window { max: 3, secs: 3600 }).await;
    s.user("alice", &["staff"]).await;
    s.registered_user("bob").await;
    // Wrong passwords for different users (so no per-user limit is reached).
    for u in ["alice", "carol", "dave"] {
        let (st, v) = s
            .post(
                "/api/v1/session",
                None,
                json!({ "user": u, "password": "not the password at all" }),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    }
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "eve", "password": "not the password at all" }),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        "3 failed sign-ins from one IP must block it (limits.ip_failures): {v}"
    );
    let (st, v) = s.start_flow("bob", "reset").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn retry_after_of_the_destination_limit_is_the_destination_window() {
    let s = Server::start_with(|c| {
        c.limits.account_codes = Window {
            max: 100,
            secs: 3600,
        };
        c.limits.destination_codes = Window { max: 1, secs: 600 };
    })
    .await;
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    s.email_code(&t, "alice@contoso.test").await;
    s.clock.advance(100);
    let (st, h, v) = challenge(&s, &t, "email").await;
    assert_too_many(st, &h, &v);
    let ra: i64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        ra <= 600,
        "Retry-After {ra} s, but sending works again after at most 500 s"
    );
    s.clock.advance(500);
    s.email_code(&t, "alice@contoso.test").await;
    s.stop().await;
}

#[tokio::test]
async fn waiting_retry_after_of_the_per_user_start_limit_is_enough() {
    let s = Server::start_with(|c| {
        c.limits.account_starts = Window { max: 2, secs: 3600 };
        c.limits.ip_starts = Window {
            max: 1000,
            secs: 600,
        };
    })
    .await;
    s.registered_user("alice").await;
    for _ in 0..2 {
        s.flow("alice").await;
    }
    // Known and unknown user IDs are limited alike.
    for u in ["nobody", "nobody"] {
        s.start_flow(u, "reset").await;
    }
    let (st, h, v) = post_raw(
        &s,
        "/api/v1/flow/start",
        None,
        json!({ "user": "alice", "kind": "reset" }),
    )
    .await;
    assert_too_many(st, &h, &v);
    let (st2, h2, v2) = post_raw(
        &s,
        "/api/v1/flow/start",
        None,
        json!({ "user": "nobody", "kind": "reset" }),
    )
    .await;
    assert_too_many(st2, &h2, &v2);
    assert_eq!(h["retry-after"], h2["retry-after"]);
    assert_eq!(v["message"], v2["message"]);
    // Another user from the same IP is not affected.
    s.registered_user("bob").await;
    s.flow("bob").await;

    let ra: i64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    s.clock.advance(ra);
    let (st, v) = s.start_flow("alice", "reset").await;
    assert_eq!(
        st,
        StatusCode::OK,
        "after waiting Retry-After ({ra} s) the start must work: {v}"
    );
    s.stop().await;
}

/// A logon agent speaks for a machine that many people use, locally and over SSH: one SSH
/// client, or one user, using up the start limit leaves everyone else on that machine their
/// self-service, and the machine as a whole is still capped (10 times one share).
#[tokio::test]
async fn a_machines_start_limit_is_shared_out_per_remote_host_and_user_under_a_cap() {
    async fn start(s: &Server, user: &str, client: &str, rhost: Option<&str>) -> StatusCode {
        let mut rb = s
            .http
            .post(format!("{}/api/v1/flow/start", s.url))
            .header("x-sspr-client", client)
            .json(&json!({ "user": user, "kind": "reset" }));
        if let Some(h) = rhost {
            rb = rb.header("x-sspr-remote-host", h);
        }
        rb.send().await.unwrap().status()
    }
    let s = Server::start_with(|c| {
        c.limits.ip_starts = Window { max: 5, secs: 600 };
        c.limits.account_starts = Window {
            max: 1000,
            secs: 600,
        };
    })
    .await;
    let attacker = Some("198.51.100.66");
    for i in 0..5 {
        let st = start(&s, &format!("guess{i}"), "ssh", attacker).await;
        assert_eq!(st, StatusCode::OK, "start {i}");
    }
    assert_eq!(
        start(&s, "guess5", "ssh", attacker).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the SSH client has used its share"
    );
    assert_eq!(
        start(&s, "alice", "ssh", Some("203.0.113.9")).await,
        StatusCode::OK,
        "another SSH client of the same machine still can"
    );
    assert_eq!(
        start(&s, "alice", "logon_screen", None).await,
        StatusCode::OK,
        "and so can a user at the machine's own screen"
    );
    for _ in 0..5 {
        assert_eq!(start(&s, "bob", "logon_screen", None).await, StatusCode::OK);
    }
    assert_eq!(
        start(&s, "bob", "logon_screen", None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "one user at the screen has a share too"
    );
    assert_eq!(
        start(&s, "carol", "logon_screen", None).await,
        StatusCode::OK
    );
    // The machine's cap: 50 starts in all (5 × 10); 5 + 1 + 1 + 5 + 1 were taken above.
    let mut taken = 13;
    let mut host = 0;
    while taken < 50 {
        host += 1;
        let h = format!("192.0.2.{host}");
        assert_eq!(
            start(&s, "dave", "ssh", Some(&h)).await,
            StatusCode::OK,
            "{taken}"
        );
        taken += 1;
    }
    assert_eq!(
        start(&s, "erin", "ssh", Some("192.0.2.200")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the machine as a whole is capped"
    );
    // The browser's own per-address budget is apart from the machine's.
    let (st, v) = s.start_flow("frank", "reset").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let starts = s
        .audit("activity=reset_started&client_type=ssh&limit=500")
        .await;
    assert!(
        starts
            .iter()
            .any(|e| e["details"]["remote_host"] == "203.0.113.9"),
        "{starts:#?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn one_address_cannot_lock_an_account_out_of_sign_in_for_everyone() {
    let s = Server::start().await;
    s.user("ann", &["staff"]).await;
    let from = |last: u8| {
        crate::harness::client_builder(&s.ca())
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .unwrap()
    };
    let sign_in = |c: reqwest::Client, password: &'static str| {
        let url = format!("{}/api/v1/session", s.url);
        async move {
            let r = c
                .post(url)
                .header("x-sspr-client", "api")
                .json(&json!({ "user": "ann", "password": password }))
                .send()
                .await
                .unwrap();
            (r.status(), r.headers().clone())
        }
    };
    // The default budget: 5 failures per (account, address) a day.
    let attacker = from(1);
    for _ in 0..5 {
        let (st, _) = sign_in(attacker.clone(), "not the password at all").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let (st, h) = sign_in(attacker.clone(), PASSWORD).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "that address is stopped");
    assert!(h.contains_key("retry-after"));
    // The owner, elsewhere, still signs in: the lockout is not a denial of service.
    let (st, _) = sign_in(from(2), PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "another address is not locked out");

    // An administrator clears it, for every address.
    let code = sspr::commands::users(
        sspr::commands::UsersCmd::Unlock {
            login: "ann".into(),
        },
        &s.rt,
    )
    .await
    .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let (st, _) = sign_in(attacker.clone(), PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "`sspr users unlock` clears the lockout");
    let ev = s.audit("activity=admin_user_changed").await;
    assert!(ev.iter().any(|e| e["reason"] == "unlocked"), "{ev:?}");

    // Ten addresses' budgets stop the account everywhere: a distributed guess is bounded.
    for last in 10..20 {
        for _ in 0..5 {
            let (st, _) = sign_in(from(last), "not the password at all").await;
            assert_eq!(st, StatusCode::UNAUTHORIZED);
        }
    }
    let (st, _) = sign_in(from(30), PASSWORD).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "the account-wide limit");
    s.stop().await;
}
