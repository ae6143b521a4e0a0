//! What a crash, a lost answer or a clock jump leaves behind, settled: each case placed exactly
//! (the kill -9 loop in `faults.rs` reaches them by chance; these reach them every time).

use std::time::Duration;

use reqwest::{Method as HttpMethod, StatusCode};
use serde_json::json;
use sspr_app::crypto::token_hash;
use sspr_app::ports::UserFlag;

use crate::harness::{PASSWORD, Server};

const NEW: &str = "a brand new passphrase of hers";

/// A flow of alice's that has passed verification (email code), and its store id.
async fn verified_flow(s: &Server) -> (String, String) {
    s.registered_user("alice").await;
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "set_password");
    (t.clone(), token_hash(&t))
}

/// What a server killed mid-write leaves: the flow `Finishing` with the stamp it read before
/// the write; with `landed`, the password already changed in the directory.
async fn crash_mid_write(s: &Server, flow_id: &str, landed: bool) {
    let app = &s.rt.app;
    let user = app.directory.find_user("alice").await.unwrap().unwrap();
    let stamp = app.directory.password_stamp(&user).await.unwrap();
    assert!(stamp.is_some(), "the built-in directory always has a stamp");
    assert!(
        app.store
            .flow_begin_finish(flow_id, s.clock_now(), stamp.as_deref())
            .await
            .unwrap()
    );
    if landed {
        app.directory.reset_password(&user, NEW).await.unwrap();
    }
}

async fn status(s: &Server, t: &str) -> (StatusCode, serde_json::Value) {
    s.call(HttpMethod::GET, "/api/v1/flow", Some(t), None).await
}

#[tokio::test]
async fn a_write_that_landed_before_a_crash_is_completed_audited_and_notified() {
    let s = Server::start().await;
    let (t, id) = verified_flow(&s).await;
    let mails = s.mail_count("alice@contoso.test");
    crash_mid_write(&s, &id, true).await;

    // Within the lease the write may still be running somewhere: wait, and say so.
    let (st, v) = status(&s, &t).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("being completed"),
        "{v}"
    );
    let (st, v) = s.set_password(&t, "yet another passphrase").await;
    assert_eq!(st, StatusCode::CONFLICT, "not 'verify first': {v}");

    // After it, the next request settles the flow from what the directory shows.
    s.clock.advance(61);
    let (st, v) = status(&s, &t).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    let events = s.audit("user=alice&activity=reset_password").await;
    let ours: Vec<_> = events
        .iter()
        .filter(|e| e["flow_id"].as_str().is_some_and(|f| id.starts_with(f)))
        .collect();
    assert_eq!(ours.len(), 1, "{events:?}");
    assert_eq!(ours[0]["result"], "success");
    assert_eq!(ours[0]["reason"], "recovered");
    for _ in 0..100 {
        if s.mail_count("alice@contoso.test") > mails {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        s.mail_count("alice@contoso.test"),
        mails + 1,
        "one notice of the reset"
    );
    // A retry of the last step says which password is in force, and changes nothing.
    let (st, v) = s.set_password(&t, "yet another passphrase").await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("already complete"),
        "{v}"
    );
    assert!(s.password_works("alice", NEW).await);
    assert_eq!(
        s.audit("user=alice&activity=reset_password").await.len(),
        1,
        "nothing recorded twice"
    );
}

#[tokio::test]
async fn a_write_that_never_landed_is_reopened_and_the_retry_succeeds() {
    let s = Server::start().await;
    let (t, id) = verified_flow(&s).await;
    crash_mid_write(&s, &id, false).await;
    s.clock.advance(61);
    // The housekeeping sweep (not a request) settles it this time.
    let n = s.rt.app.sweep_flows().await.unwrap();
    assert_eq!(n, 1);
    let events = s.audit("user=alice&activity=reset_password").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["result"], "failure");
    assert_eq!(events[0]["reason"], "interrupted_nothing_written");
    assert!(s.password_works("alice", PASSWORD).await);

    let (st, v) = status(&s, &t).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("set_password")),
        "{v}"
    );
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.password_works("alice", NEW).await);
}

#[tokio::test]
async fn an_interrupted_unlock_is_settled_by_the_lock_state() {
    let s = Server::start().await;
    s.registered_user("bob").await;
    s.rt.builtin
        .set_flag("bob", UserFlag::Locked, true)
        .await
        .unwrap();
    let (st, v) = s.start_flow("bob", "unlock").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t = v["flow_token"].as_str().unwrap().to_string();
    let code = s.email_code(&t, "bob@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let app = &s.rt.app;
    assert!(
        app.store
            .flow_begin_finish(&token_hash(&t), s.clock_now(), None)
            .await
            .unwrap()
    );
    // The unlock reached the directory, then the server died.
    s.rt.builtin
        .set_flag("bob", UserFlag::Locked, false)
        .await
        .unwrap();
    s.clock.advance(61);
    assert_eq!(app.sweep_flows().await.unwrap(), 1);
    let events = s.audit("user=bob&activity=unlock_account").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0]["result"].as_str(), events[0]["reason"].as_str()),
        (Some("success"), Some("recovered"))
    );
    let (st, v) = status(&s, &t).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{v}"
    );
}

#[tokio::test]
async fn flows_left_unfinished_are_audited_as_abandoned_once() {
    let s = Server::start().await;
    let (_t, _id) = verified_flow(&s).await;
    s.registered_user("carol").await;
    let _other = s.flow("carol").await;
    s.clock.advance(15 * 60 + 1);
    assert_eq!(s.rt.app.sweep_flows().await.unwrap(), 2);
    assert_eq!(
        s.rt.app.sweep_flows().await.unwrap(),
        0,
        "each reported once"
    );
    let a = s.audit("user=alice&activity=reset_abandoned").await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["reason"], "verified_never_finished");
    let c = s.audit("user=carol&activity=reset_abandoned").await;
    assert_eq!(c[0]["reason"], "never_verified");
}

#[tokio::test]
async fn a_clock_set_back_does_not_revive_a_code_or_a_flow() {
    let s = Server::start().await;
    s.registered_user("dave").await;
    let t = s.flow("dave").await;
    let code = s.email_code(&t, "dave@contoso.test").await;
    // An hour and five minutes back: the code would otherwise live that much longer.
    s.clock.advance(-3900);
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_ne!(st, StatusCode::OK, "{v}");
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "the flow reads as expired: {v}"
    );
    s.clock.advance(3900);
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "back in time order, the flow goes on: {v}"
    );
    let _ = json!(null);
}

/// On a real directory: a write that landed before a crash is found by its stamp and recorded
/// once; one that never landed is reopened and the retry goes through. `landed_pw` and
/// `retry_pw` must satisfy the directory's rules and differ from its recent passwords.
pub async fn crash_recovery_on(
    s: &Server,
    login: &str,
    email: &str,
    landed_pw: &str,
    retry_pw: &str,
) {
    let app = &s.rt.app;
    let verified = || async {
        let t = s.flow(login).await;
        let code = s.email_code(&t, email).await;
        let (st, v) = s.verify(&t, "email", &code).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        t
    };
    let user = app.directory.find_user(login).await.unwrap().unwrap();
    let before = app.directory.password_stamp(&user).await.unwrap();
    assert!(before.is_some(), "the directory shows a password stamp");
    assert_eq!(
        app.directory.password_stamp(&user).await.unwrap(),
        before,
        "the stamp is stable while nothing changes"
    );

    // Landed: the server wrote the password to the directory and died before recording it.
    let t = verified().await;
    assert!(
        app.store
            .flow_begin_finish(&token_hash(&t), s.clock_now(), before.as_deref())
            .await
            .unwrap()
    );
    app.directory
        .reset_password(&user, landed_pw)
        .await
        .unwrap();
    assert_ne!(app.directory.password_stamp(&user).await.unwrap(), before);
    s.clock.advance(61);
    let (st, v) = status(s, &t).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{v}"
    );
    let ev = s
        .audit(&format!("user={login}&activity=reset_password"))
        .await;
    let id = token_hash(&t);
    let ours: Vec<_> = ev
        .iter()
        .filter(|e| e["flow_id"].as_str().is_some_and(|f| id.starts_with(f)))
        .collect();
    assert_eq!(ours.len(), 1, "{ev:?}");
    assert_eq!(ours[0]["reason"], "recovered");

    // Not landed: nothing reached the directory; the flow is reopened and the retry works.
    let t = verified().await;
    let stamp = app.directory.password_stamp(&user).await.unwrap();
    assert!(
        app.store
            .flow_begin_finish(&token_hash(&t), s.clock_now(), stamp.as_deref())
            .await
            .unwrap()
    );
    s.clock.advance(61);
    app.sweep_flows().await.unwrap();
    let (st, v) = status(s, &t).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("set_password")),
        "{v}"
    );
    let (st, v) = s.set_password(&t, retry_pw).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.password_works(login, retry_pw).await);
}

#[tokio::test]
async fn an_account_disabled_after_verification_is_not_written() {
    let s = Server::start().await;
    let (t, _id) = verified_flow(&s).await;
    s.rt.builtin
        .set_flag("alice", UserFlag::Enabled, false)
        .await
        .unwrap();
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("not enabled"),
        "{v}"
    );
    s.rt.builtin
        .set_flag("alice", UserFlag::Enabled, true)
        .await
        .unwrap();
    assert!(
        s.password_works("alice", PASSWORD).await,
        "nothing was written"
    );
    let ev = s.audit("user=alice&activity=reset_password").await;
    assert_eq!(ev[0]["reason"], "disabled", "{ev:?}");
}
