//! Delivery failures: the request never waits on the gateway, the worker retries on the
//! shared clock (5, 15, 45, 135 s), gives up after 5 attempts, and the user is told to choose
//! another method. Bodies (they hold codes) are erased once sent or given up.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sspr_app::ports::{Channel, OutboxMessage, Store};

use crate::harness::{PASSWORD, Server};

const NEW: &str = "quiet violet harbour lamps";

async fn outbox(s: &Server) -> Vec<OutboxMessage> {
    Store::outbox_list(s.rt.store.as_ref(), 50).await.unwrap()
}

async fn sms_row(s: &Server) -> OutboxMessage {
    let rows = outbox(s).await;
    let sms: Vec<OutboxMessage> = rows
        .into_iter()
        .filter(|m| m.channel == Channel::Sms)
        .collect();
    assert_eq!(sms.len(), 1, "{sms:?}");
    sms.into_iter().next().unwrap()
}

/// Waits (real time) until the SMS row is back in the queue after `attempts` attempts.
async fn wait_queued_after(s: &Server, attempts: u32) -> OutboxMessage {
    for _ in 0..100 {
        let r = sms_row(s).await;
        if r.status == "queued" && r.attempts == attempts {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the sms was not re-queued after attempt {attempts}: {:?}",
        sms_row(s).await
    );
}

async fn challenge(s: &Server, t: &str, method: &str) -> (StatusCode, serde_json::Value) {
    s.post(
        "/api/v1/flow/challenge",
        Some(t),
        json!({ "method": method }),
    )
    .await
}

#[tokio::test]
async fn a_failing_sms_gateway_is_retried_then_given_up_and_email_still_works() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    s.sms.failing.store(true, SeqCst);

    let t = s.flow("alice").await;
    let began = Instant::now();
    let (st, v) = challenge(&s, &t, "sms").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "the request waited on the gateway"
    );
    assert_eq!(v["sent_to"], "+•••••••••••78", "{v}");
    let flow_id = s.audit("user=alice&activity=code_sent").await[0]["flow_id"].clone();
    assert!(flow_id.is_string(), "{flow_id}");

    // Attempts 1 to 4 fail and are rescheduled by the backoff, exactly.
    for (attempt, backoff) in [(1u32, 5i64), (2, 15), (3, 45), (4, 135)] {
        let r = wait_queued_after(&s, attempt).await;
        assert_eq!(r.next_attempt_at, s.clock_now() + backoff, "{r:?}");
        assert!(r.last_error.contains("500"), "{r:?}");
        assert!(!r.last_error.contains("4915112345678"), "{r:?}");
        assert!(!r.body.is_empty(), "the body is needed for the retry");
        // One second early: nothing happens.
        s.clock.advance(backoff - 1);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let r = sms_row(&s).await;
        assert_eq!(r.attempts, attempt, "retried before its backoff: {r:?}");
        assert_eq!(r.status, "queued", "{r:?}");
        assert!(s.audit("activity=delivery_failed").await.is_empty());
        s.clock.advance(1);
    }

    // The fifth attempt fails for good.
    let mut ev = Vec::new();
    for _ in 0..100 {
        ev = s.audit("activity=delivery_failed").await;
        if !ev.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    assert_eq!(e["result"], "failure", "{e}");
    assert_eq!(e["actor"], "system", "{e}");
    assert_eq!(e["target"], "alice", "{e}");
    assert_eq!(e["flow_id"], flow_id, "{e}");
    assert_eq!(e["details"]["attempts"], 5, "{e}");
    assert_eq!(e["details"]["channel"], "sms", "{e}");
    assert_eq!(e["details"]["destination"], "+•••••••••••78", "{e}");
    assert!(!e.to_string().contains("4915112345678"), "{e}");
    let r = sms_row(&s).await;
    assert_eq!(r.status, "failed", "{r:?}");
    assert_eq!(r.attempts, 5, "{r:?}");
    assert_eq!(r.body, "", "a given-up body must be erased: {r:?}");
    assert!(s.sms.texts().is_empty());
    // And it stays given up (200 s have passed: the code and the flow are still live).
    s.clock.advance(60);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = sms_row(&s).await;
    assert_eq!((r.status.as_str(), r.attempts), ("failed", 5), "{r:?}");

    // Any SMS code is now refused with words that point to another method.
    for code in ["123456", "000000"] {
        let (st, v) = s.verify(&t, "sms", code).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"], "verification_failed", "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("could not deliver the code") && msg.contains("Choose another method"),
            "{msg}"
        );
    }
    // Those were not guesses: no verification failure counted against the account.
    assert!(
        s.audit("user=alice&activity=verification_failed")
            .await
            .is_empty()
    );

    // Email still completes the reset; its body is erased once sent.
    s.sms.failing.store(false, SeqCst);
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "set_password", "{v}");
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.password_works("alice", NEW).await);
    assert!(!s.password_works("alice", PASSWORD).await);

    let mut email = None;
    for _ in 0..100 {
        email = outbox(&s)
            .await
            .into_iter()
            .find(|m| m.channel == Channel::Email && m.subject.contains("reset code"));
        if email.as_ref().is_some_and(|m| m.status == "sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let email = email.expect("the email code message is in the outbox");
    assert_eq!(email.status, "sent", "{email:?}");
    assert_eq!(email.body, "", "a sent body must be erased: {email:?}");
    assert_eq!(email.recipient, "alice@contoso.test");
    assert_eq!(email.attempts, 1, "{email:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_gateway_that_recovers_delivers_on_the_next_retry() {
    let s = Server::start().await;
    s.registered_user("bob").await;
    s.sms.failing.store(true, SeqCst);
    let t = s.flow("bob").await;
    let (st, v) = challenge(&s, &t, "sms").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    wait_queued_after(&s, 1).await;
    s.clock.advance(5);
    wait_queued_after(&s, 2).await;

    s.sms.failing.store(false, SeqCst);
    s.clock.advance(15);
    let code = s.wait_sms_code(0).await;
    assert_eq!(s.sms.texts().len(), 1, "sent exactly once");
    assert_eq!(s.sms.texts()[0]["to"], "+4915112345678");
    let mut r = sms_row(&s).await;
    for _ in 0..100 {
        if r.status == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = sms_row(&s).await;
    }
    assert_eq!(r.status, "sent", "{r:?}");
    assert_eq!(r.attempts, 3, "{r:?}");
    assert_eq!(r.body, "", "{r:?}");
    assert!(s.audit("activity=delivery_failed").await.is_empty());

    // 20 s have passed on the clock; the code (5 min) still works.
    let (st, v) = s.verify(&t, "sms", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "set_password", "{v}");
    s.stop().await;
}

/// Whether any of the SQLite files holds `needle` (the WAL and its index included).
fn in_database_files(s: &Server, needle: &str) -> Vec<String> {
    let dir = s.dir.path().join("data");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("sspr.db") {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(name);
            }
        }
    }
    found
}

#[tokio::test]
async fn no_code_stays_readable_in_the_database_files_once_used() {
    if std::env::var("SSPR_TEST_DB").as_deref() == Ok("postgres") {
        return; // the files are SQLite's
    }
    // Live delivery erases a body once sent; the dev outbox keeps it for `sspr outbox` until
    // its code is used or expired. Either way, after housekeeping no copy remains in the
    // database file, its free pages or the WAL.
    for dev in [false, true] {
        let s = Server::start_with(move |c| {
            if dev {
                c.delivery.mode = "dev".into();
            }
        })
        .await;
        s.registered_user("alice").await;
        let t = s.flow("alice").await;
        let code = if dev {
            let (st, v) = challenge(&s, &t, "email").await;
            assert_eq!(st, StatusCode::OK, "{v}");
            let mut code = None;
            for _ in 0..200 {
                let sent = outbox(&s).await.into_iter().find(|m| m.status == "sent");
                if let Some(m) = sent {
                    code = crate::harness::extract_code(&m.body);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            code.expect("the dev outbox keeps the body until the code is used")
        } else {
            s.email_code(&t, "alice@contoso.test").await
        };
        let needle = format!("reset code is {code}");
        let (st, v) = s.verify(&t, "email", &code).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        Store::purge_expired(s.rt.store.as_ref(), s.clock_now())
            .await
            .unwrap();
        assert_eq!(
            in_database_files(&s, &needle),
            Vec::<String>::new(),
            "dev={dev}: the used code is still readable"
        );
        assert!(
            outbox(&s)
                .await
                .iter()
                .all(|m| m.code_id.is_none() || m.body.is_empty())
        );
        s.stop().await;
    }
}
