//! The store's contract, against a real SQLite file. The PostgreSQL store must pass the same.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use sspr_app::ports::{Channel, CodeRecord, MethodRecord, MethodStatus, OutboxMessage, Store};
use sspr_domain::Method;
use sspr_store::SqliteStore;

async fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    (dir, Arc::new(s))
}

fn code(owner: &str, mac: &str, expires_at: i64) -> CodeRecord {
    CodeRecord {
        id: 0,
        owner: owner.into(),
        purpose: "email".into(),
        code_mac: mac.into(),
        destination: "a@b.c".into(),
        created_at: 0,
        expires_at,
        attempts: 0,
        used: false,
        delivery_failed: false,
    }
}

#[tokio::test]
async fn fifty_concurrent_consumers_of_one_code_one_wins() {
    let (_d, s) = store().await;
    let msg = OutboxMessage::new(Channel::Email, "a@b.c", "s", "b", 0);
    let id = s.issue_code(&code("f1", "m", 1000), &msg).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let s = s.clone();
        set.spawn(async move { s.consume_code(id, 10, 3).await.unwrap() });
    }
    let mut wins = 0;
    while let Some(r) = set.join_next().await {
        wins += r.unwrap() as u32;
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn a_new_code_retires_the_old_and_queues_its_message() {
    let (_d, s) = store().await;
    let msg = OutboxMessage::new(Channel::Email, "a@b.c", "s", "b", 0);
    let first = s.issue_code(&code("f1", "m1", 1000), &msg).await.unwrap();
    let second = s.issue_code(&code("f1", "m2", 1000), &msg).await.unwrap();
    assert!(
        !s.consume_code(first, 10, 3).await.unwrap(),
        "the first code must be dead"
    );
    assert_eq!(
        s.latest_code("f1", "email").await.unwrap().unwrap().id,
        second
    );
    let queued = s.outbox_list(10).await.unwrap();
    assert_eq!(queued.len(), 2);
    assert_eq!(queued[0].code_id, Some(second));
}

#[tokio::test]
async fn expiry_boundary_and_attempts() {
    let (_d, s) = store().await;
    let msg = OutboxMessage::new(Channel::Email, "a@b.c", "s", "b", 0);
    let id = s.issue_code(&code("f1", "m", 600), &msg).await.unwrap();
    assert!(
        !s.consume_code(id, 600, 3).await.unwrap(),
        "at expires_at the code is dead"
    );
    let id = s.issue_code(&code("f2", "m", 600), &msg).await.unwrap();
    for _ in 0..3 {
        s.code_attempt_failed(id).await.unwrap();
    }
    assert!(!s.consume_code(id, 1, 3).await.unwrap(), "no attempts left");
    let id = s.issue_code(&code("f3", "m", 600), &msg).await.unwrap();
    assert!(s.consume_code(id, 599, 3).await.unwrap());
}

#[tokio::test]
async fn throttle_windows_blocks_and_clearing() {
    let (_d, s) = store().await;
    for t in [10, 20, 30] {
        s.hit("k", t).await.unwrap();
    }
    assert_eq!(s.hits_since("k", 15).await.unwrap(), 2);
    s.block("b", 100).await.unwrap();
    assert_eq!(s.blocked_until("b", 99).await.unwrap(), Some(100));
    assert_eq!(s.blocked_until("b", 100).await.unwrap(), None);
    s.clear_throttle(&["k".into(), "b".into()]).await.unwrap();
    assert_eq!(s.hits_since("k", 0).await.unwrap(), 0);
    assert_eq!(s.blocked_until("b", 0).await.unwrap(), None);
}

#[tokio::test]
async fn outbox_lease_expires_and_is_claimed_again() {
    let (_d, s) = store().await;
    s.enqueue(&OutboxMessage::new(
        Channel::Sms,
        "+4915112345678",
        "",
        "hello",
        0,
    ))
    .await
    .unwrap();
    let first = s.claim_outbox(0, 60, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        s.claim_outbox(30, 60, 10).await.unwrap().is_empty(),
        "leased to the first worker"
    );
    let again = s.claim_outbox(61, 60, 10).await.unwrap();
    assert_eq!(again.len(), 1, "a dead worker's lease runs out");
    assert_eq!(again[0].attempts, 2);
    s.outbox_sent(again[0].id, false).await.unwrap();
    assert!(s.claim_outbox(1000, 60, 10).await.unwrap().is_empty());
    assert_eq!(
        s.outbox_list(1).await.unwrap()[0].body,
        "",
        "a sent body is erased"
    );
}

#[tokio::test]
async fn pending_address_waits_beside_the_active_one() {
    let (_d, s) = store().await;
    let rec = |status, value: &str| MethodRecord {
        user_id: "u".into(),
        method: Method::Email,
        status,
        value: value.into(),
        created_at: 0,
        verified_at: None,
    };
    s.put_method(&rec(MethodStatus::Active, "old@x.y"))
        .await
        .unwrap();
    s.put_method(&rec(MethodStatus::Pending, "new@x.y"))
        .await
        .unwrap();
    assert_eq!(s.methods("u").await.unwrap().len(), 2);
    assert!(s.activate_method("u", Method::Email, 5).await.unwrap());
    let m = s.methods("u").await.unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].status, m[0].value.as_str()),
        (MethodStatus::Active, "new@x.y")
    );
}

#[tokio::test]
async fn totp_steps_are_single_use() {
    let (_d, s) = store().await;
    assert!(s.totp_use_step("u", 100).await.unwrap());
    assert!(!s.totp_use_step("u", 100).await.unwrap());
    assert!(!s.totp_use_step("u", 99).await.unwrap());
    assert!(s.totp_use_step("u", 101).await.unwrap());
}

#[tokio::test]
async fn migrations_are_idempotent_and_the_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.db");
    drop(SqliteStore::open(&p).await.unwrap());
    let s = SqliteStore::open(&p).await.unwrap();
    assert_eq!(s.schema_version().await.unwrap(), 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
