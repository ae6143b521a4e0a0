//! The store's contract. Every test here runs twice, against a real SQLite file
//! (`sqlite::…`) and against PostgreSQL (`postgres::…`), from the same test body.
//!
//! PostgreSQL comes from `SSPR_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets a schema of its own, dropped at
//! the end. An unreachable server fails the PostgreSQL tests: they are never skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use sspr_app::ports::{
    AdminToken, Channel, CodeRecord, Completion, FlowRecord, MethodRecord, MethodStatus,
    OutboxMessage, RecoveryUse, StepStore, Store,
};
use sspr_domain::Method;
use sspr_domain::audit::{Activity, AuditEvent, ClientType, Outcome};
use sspr_domain::{FlowKind, FlowState};
use sspr_store::{PgStore, SqliteStore};

/// The newest migration both stores apply.
const LATEST_SCHEMA: i64 = 11;

async fn sqlite_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    (dir, Arc::new(s))
}

fn pg_url() -> String {
    std::env::var("SSPR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn pg_admin(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} is unreachable ({e}); set SSPR_TEST_POSTGRES_URL")
    })
}

/// A fresh schema for one test, dropped (best effort) when the test ends, even by a panic.
struct PgSchema {
    url: String,
    name: String,
}

impl PgSchema {
    async fn create() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let url = pg_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = pg_admin(&url).await;
        c.execute(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .await
            .unwrap();
        c.close().await.unwrap();
        Self { url, name }
    }

    /// One sspr instance on this schema: a pool of its own.
    async fn instance(&self) -> Arc<PgStore> {
        Arc::new(
            PgStore::connect_with_schema(&self.url, &self.name)
                .await
                .unwrap(),
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop cannot await, and may run while a panic unwinds: do it on a thread of its own
        // with a runtime of its own, and never panic here.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&url).await {
                    let _ = c
                        .execute(AssertSqlSafe(format!(
                            "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                        )))
                        .await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

/// Generates, for each contract test `name(store)`, `sqlite::name` and `postgres::name`.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, s) = super::sqlite_store().await;
                    super::$name(s).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let schema = super::PgSchema::create().await;
                    let s: std::sync::Arc<dyn sspr_app::ports::Store> = schema.instance().await;
                    super::$name(s).await;
                }
            )*
        }
    };
}

contract_tests!(
    concurrent_hits_never_exceed_a_window,
    fifty_concurrent_consumers_of_one_code_one_wins,
    a_new_code_retires_the_old_and_queues_its_message,
    a_sent_code_takes_its_slots_and_records_its_event_or_nothing,
    expiry_boundary_and_attempts,
    a_verified_step_spends_moves_and_records_together_or_not_at_all,
    slots_are_taken_in_order_up_to_the_first_full_window,
    throttle_state_reads_blocks_and_windows_in_one_go,
    questions_drawn_are_stored_with_their_event,
    throttle_windows_blocks_and_clearing,
    outbox_lease_expires_and_is_claimed_again,
    outbox_claims_one_channel_and_release_gives_messages_back,
    a_channel_claim_takes_the_earliest_due_lapsed_leases_included_within_one_limit,
    pending_address_waits_beside_the_active_one,
    totp_steps_are_single_use,
    one_writer_passes_the_finish_gate_and_its_completion_is_one_transaction,
    a_late_reconciler_never_reopens_a_newer_attempt,
    abandoned_flows_are_reported_once_and_finishing_flows_are_kept,
    a_code_is_dead_when_the_clock_reads_before_its_creation,
    a_kept_body_goes_once_its_code_is_used_or_expired,
    a_kept_invitation_goes_once_it_is_used_voided_or_expired,
    clearing_by_prefix_takes_exactly_the_keys_under_it,
    a_reminder_is_queued_once_however_many_race_for_it,
    recovery_codes_are_spent_once_and_a_new_set_voids_the_old,
    one_recovery_code_raced_by_many_is_spent_once,
    registration_skips_raced_by_many_sign_ins_count_to_the_limit,
    reminders_and_skips_read_back_for_a_copy,
    admin_tokens_keep_their_role,
    the_outbox_backlog_counts_what_waits_and_its_oldest,
    audit_pages_newest_first_behind_a_cursor_and_a_user_is_actor_or_target,
    concurrent_appends_make_one_unbroken_chain,
    pruning_keeps_the_newest_archives_first_and_the_chain_still_verifies,
    one_instance_holds_the_export_lease_and_the_cursor_moves_by_compare_and_set,
);

/// Raw SQL on the database under a store: the tampering an attacker with the file or the
/// database account could do.
enum Raw {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, schema: String },
}

impl Raw {
    async fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite(path) => {
                let url = format!("sqlite://{}", path.display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                c.execute(AssertSqlSafe(sql.to_string())).await.unwrap();
                c.close().await.unwrap();
            }
            Raw::Postgres { url, schema } => {
                let mut c = pg_admin(url).await;
                c.execute(AssertSqlSafe(format!("SET search_path TO {schema}; {sql}")))
                    .await
                    .unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

/// Like `contract_tests!`, for tests that also need [`Raw`] access.
macro_rules! raw_contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_raw {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("t.db");
                    let s = sspr_store::SqliteStore::open(&path).await.unwrap();
                    super::$name(std::sync::Arc::new(s), super::Raw::Sqlite(path)).await;
                }
            )*
        }
        mod postgres_raw {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let schema = super::PgSchema::create().await;
                    let s: std::sync::Arc<dyn sspr_app::ports::Store> = schema.instance().await;
                    let raw = super::Raw::Postgres { url: schema.url.clone(), schema: schema.name.clone() };
                    super::$name(s, raw).await;
                }
            )*
        }
    };
}

raw_contract_tests!(verify_names_the_first_change_deletion_truncation_and_forged_checkpoint);

fn key() -> sspr_app::crypto::ServerKey {
    sspr_app::crypto::ServerKey::from_bytes([7; 32])
}

fn event(at: i64, activity: Activity, actor: &str, target: &str) -> AuditEvent {
    let mut e = AuditEvent::new(at, activity, Outcome::Success);
    e.actor = actor.into();
    e.target = target.into();
    e.client_ip = "192.0.2.1".into();
    e.details = serde_json::json!({"n": at, "text": "ü \"quoted\""});
    e
}

async fn verified(s: &Arc<dyn Store>) -> sspr_app::audit_chain::Verification {
    sspr_app::audit_chain::verify(s.as_ref(), &key())
        .await
        .unwrap()
}

/// Each kind of tampering is found and named: a changed event (the first broken link, named
/// once), a deleted one, the newest events cut off after a checkpoint, a checkpoint written
/// without the key; and a clean log verifies.
async fn verify_names_the_first_change_deletion_truncation_and_forged_checkpoint(
    s: Arc<dyn Store>,
    raw: Raw,
) {
    for i in 1..=20 {
        s.audit(&event(1000 + i, Activity::ResetStarted, "ann", "ann"))
            .await
            .unwrap();
    }
    let v = verified(&s).await;
    assert!(v.intact(), "{:?}", v.problems);
    assert_eq!((v.events, v.first_id, v.last_id), (20, Some(1), Some(20)));
    let c = sspr_app::audit_chain::checkpoint(s.as_ref(), &key(), 2000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.last_id, 20);
    // Nothing new: no second checkpoint.
    assert!(
        sspr_app::audit_chain::checkpoint(s.as_ref(), &key(), 2001)
            .await
            .unwrap()
            .is_none()
    );
    for i in 21..=25 {
        s.audit(&event(1000 + i, Activity::ResetPassword, "ann", "ann"))
            .await
            .unwrap();
    }
    assert!(verified(&s).await.intact());

    // A changed outcome: the chain breaks at that event, once.
    raw.exec("UPDATE audit SET outcome = 'failure' WHERE id = 7")
        .await;
    let v = verified(&s).await;
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert!(
        v.problems[0].contains("breaks at event #7"),
        "{:?}",
        v.problems
    );
    raw.exec("UPDATE audit SET outcome = 'success' WHERE id = 7")
        .await;
    assert!(verified(&s).await.intact());

    // A deleted event: the next one no longer follows.
    raw.exec("DELETE FROM audit WHERE id = 12").await;
    let v = verified(&s).await;
    assert!(
        v.problems[0].contains("breaks at event #13"),
        "{:?}",
        v.problems
    );

    // The newest events cut off, below the checkpoint: the checkpoint says so, although what
    // is left chains cleanly (an attacker who also recomputed every hash is caught the same).
    raw.exec("DELETE FROM audit WHERE id >= 12").await;
    let v = verified(&s).await;
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert!(
        v.problems[0].contains("covers event #20, but the log ends at #11"),
        "{:?}",
        v.problems
    );

    // A checkpoint written without the key, to cover the cut.
    raw.exec("DELETE FROM audit_checkpoints").await;
    assert!(verified(&s).await.intact());
    raw.exec(
        "INSERT INTO audit_checkpoints (at, kind, last_id, chain, mac) VALUES (3000, 'prune', 3, 'aa', 'bb')",
    )
    .await;
    let v = verified(&s).await;
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("not signed by this server's key")),
        "{:?}",
        v.problems
    );
    // A forged prune checkpoint is no anchor: the log still has to start the chain.
    assert!(
        !v.problems
            .iter()
            .any(|p| p.contains("older than the pruning"))
    );
    raw.exec("DELETE FROM audit_checkpoints").await;

    // The oldest events deleted without a pruning checkpoint: the log no longer starts the
    // chain.
    raw.exec("DELETE FROM audit WHERE id <= 2").await;
    let v = verified(&s).await;
    assert!(
        v.problems[0].contains("first in the log but does not start the chain"),
        "{:?}",
        v.problems
    );
}

/// Newest first, page by page behind the cursor, every event once however many share a time;
/// a user's events are those they did (actor) and those done to them (target), each once.
async fn audit_pages_newest_first_behind_a_cursor_and_a_user_is_actor_or_target(s: Arc<dyn Store>) {
    use sspr_app::ports::{AuditCursor, AuditFilter};
    // 30 events over 10 distinct times (three share each), written out of time order.
    for i in 0..30 {
        let at = 5000 + ((i * 7) % 10);
        let (actor, target) = match i % 3 {
            0 => ("admin", "bob"),
            1 => ("bob", "bob"),
            _ => ("carol", "carol"),
        };
        s.audit(&event(at, Activity::ResetStarted, actor, target))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .audit_query(&AuditFilter {
                before,
                limit: 7,
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        // Oldest first within a page.
        assert!(
            page.windows(2)
                .all(|w| (w[0].at, w[0].id) < (w[1].at, w[1].id))
        );
        before = Some(AuditCursor::of(&page[0]));
        seen.extend(page.into_iter().rev().map(|e| (e.at, e.id)));
    }
    assert_eq!(seen.len(), 30);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, each once"
    );

    let bob = |before| AuditFilter {
        user: Some("bob".into()),
        before,
        limit: 100,
        ..Default::default()
    };
    let all = s.audit_query(&bob(None)).await.unwrap();
    assert_eq!(
        all.len(),
        20,
        "10 as target only, 10 as actor and target, each once"
    );
    assert!(all.iter().all(|e| e.target == "bob" || e.actor == "bob"));
    let admin = s
        .audit_query(&AuditFilter {
            user: Some("admin".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(admin.len(), 10);
    // A user's second page, and a time window, combined with the cursor.
    let first = s
        .audit_query(&AuditFilter {
            limit: 5,
            ..bob(None)
        })
        .await
        .unwrap();
    let second = s
        .audit_query(&AuditFilter {
            limit: 100,
            ..bob(Some(AuditCursor::of(&first[0])))
        })
        .await
        .unwrap();
    assert_eq!(first.len() + second.len(), 20);
    let window = s
        .audit_query(&AuditFilter {
            since: Some(5002),
            until: Some(5004),
            activity: Some(Activity::ResetStarted),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 6);
    assert!(window.iter().all(|e| (5002..5004).contains(&e.at)));
}

/// Forty writers at once (several pools on PostgreSQL would behave the same: the lock is in
/// the database) still make one chain.
async fn concurrent_appends_make_one_unbroken_chain(s: Arc<dyn Store>) {
    append_at_once_and_verify(&[s], 40).await;
}

/// The server and the CLI are two processes on one SQLite file, each with its own writer: their
/// appends still make one chain (an append reads the newest event, then writes after it, and
/// no other writer can come between the two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sqlite_stores_on_one_file_append_one_unbroken_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    append_at_once_and_verify(&[a, b], 60).await;
}

/// `n` appends at once, spread over `stores` in turn; the chain must verify with all of them.
async fn append_at_once_and_verify(stores: &[Arc<dyn Store>], n: i64) {
    let mut set = tokio::task::JoinSet::new();
    for (i, s) in (0..n).zip(stores.iter().cycle()) {
        let s = s.clone();
        set.spawn(async move {
            s.audit(&event(100 + i, Activity::CodeSent, "x", "y"))
                .await
                .unwrap()
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let v = verified(&stores[0]).await;
    assert!(v.intact(), "{:?}", v.problems);
    assert_eq!(i64::try_from(v.events).unwrap(), n);
}

/// Retention deletes events past it in batches, each behind a signed pruning checkpoint and
/// archived first; the newest event stays whatever its age (the next one chains from it); the
/// log still verifies, and an event put back below the cut is noticed.
async fn pruning_keeps_the_newest_archives_first_and_the_chain_still_verifies(s: Arc<dyn Store>) {
    for i in 0..25 {
        s.audit(&event(1000 + i, Activity::CodeSent, "x", "y"))
            .await
            .unwrap();
    }
    let archive = tempfile::tempdir().unwrap();
    // Everything is older than the cut: all but the newest go, four batches of 7 at most.
    let gone =
        sspr_app::audit_chain::prune(s.as_ref(), &key(), 9000, 5000, 7, Some(archive.path()))
            .await
            .unwrap();
    assert_eq!(gone, 24);
    let v = verified(&s).await;
    assert!(v.intact(), "{:?}", v.problems);
    assert_eq!((v.events, v.first_id), (1, Some(25)));
    let mut files: Vec<_> = std::fs::read_dir(archive.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "audit-1-7.jsonl",
            "audit-15-21.jsonl",
            "audit-22-24.jsonl",
            "audit-8-14.jsonl"
        ]
    );
    let lines = std::fs::read_to_string(archive.path().join("audit-8-14.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 7);
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], 8);
    assert!(first["chain"].as_str().unwrap().len() == 64);
    // Nothing more to prune; new events chain on.
    assert_eq!(
        sspr_app::audit_chain::prune(s.as_ref(), &key(), 9000, 5000, 7, None)
            .await
            .unwrap(),
        0
    );
    s.audit(&event(8000, Activity::CodeSent, "x", "y"))
        .await
        .unwrap();
    assert!(verified(&s).await.intact());
    // Only what is older than the cut goes.
    for i in 0..3 {
        s.audit(&event(9500 + i, Activity::CodeSent, "x", "y"))
            .await
            .unwrap();
    }
    let gone = sspr_app::audit_chain::prune(s.as_ref(), &key(), 9999, 9000, 100, None)
        .await
        .unwrap();
    assert_eq!(gone, 2);
    let v = verified(&s).await;
    assert!(v.intact(), "{:?}", v.problems);
    assert_eq!(v.events, 3);
}

/// A token's role is stored with it and read back by its hash and in the copy's listing; a
/// token made before roles existed (the column's default) is an administrator's.
async fn admin_tokens_keep_their_role(s: Arc<dyn Store>) {
    let token = |name: &str, role: &str| AdminToken {
        name: name.into(),
        token_hash: format!("hash-of-{name}"),
        created_at: 10,
        role: role.into(),
    };
    s.insert_admin_token(&token("ops", "admin")).await.unwrap();
    s.insert_admin_token(&token("desk", "helpdesk"))
        .await
        .unwrap();
    assert_eq!(
        s.admin_token("hash-of-desk").await.unwrap(),
        Some(token("desk", "helpdesk"))
    );
    assert_eq!(s.admin_token("hash-of-nobody").await.unwrap(), None);
    let mut all = s.admin_tokens().await.unwrap();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(all, [token("desk", "helpdesk"), token("ops", "admin")]);
}

/// What the metrics show of the outbox: queued and leased messages count, sent and failed ones
/// do not, and the oldest waiting one's queue time.
async fn the_outbox_backlog_counts_what_waits_and_its_oldest(s: Arc<dyn Store>) {
    assert_eq!(s.outbox_backlog().await.unwrap(), (0, None));
    for (to, at) in [("a@x.test", 100), ("b@x.test", 200), ("c@x.test", 300)] {
        s.enqueue(&OutboxMessage::new(Channel::Email, to, "", "", at))
            .await
            .unwrap();
    }
    // The oldest is leased (sending) and still waits; then it is sent.
    let claimed = s.claim_outbox(400, 60, 1, None).await.unwrap();
    assert_eq!(s.outbox_backlog().await.unwrap(), (3, Some(100)));
    s.outbox_sent(claimed[0].id, false).await.unwrap();
    assert_eq!(s.outbox_backlog().await.unwrap(), (2, Some(200)));
}

/// Twenty concurrent sign-ins of one user with three skips allowed: exactly three are counted,
/// as 1, 2 and 3; the rest find none left. Setting 0 forgets the user.
async fn registration_skips_raced_by_many_sign_ins_count_to_the_limit(s: Arc<dyn Store>) {
    assert_eq!(s.registration_skips("u").await.unwrap(), 0);
    assert_eq!(
        s.skip_registration("u", 10, 0).await.unwrap(),
        None,
        "none allowed"
    );
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.skip_registration("u", 20, 3).await.unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        if let Some(n) = t.await.unwrap() {
            got.push(n);
        }
    }
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3]);
    assert_eq!(s.registration_skips("u").await.unwrap(), 3);
    assert_eq!(s.registration_skips("v").await.unwrap(), 0, "per user");
    s.set_registration_skips("u", 0, 30).await.unwrap();
    assert_eq!(s.registration_skips("u").await.unwrap(), 0);
    assert_eq!(s.skip_registration("u", 40, 3).await.unwrap(), Some(1));
}

/// What `sspr store copy` reads and writes: every reminder and every skip count, as written.
async fn reminders_and_skips_read_back_for_a_copy(s: Arc<dyn Store>) {
    use sspr_app::ports::Reminder;
    let r = Reminder {
        user_id: "ann".into(),
        expires_at: 5_000_000,
        days: 7,
        sent_at: 4_400_000,
    };
    s.record_reminder(&r).await.unwrap();
    s.record_reminder(&r).await.unwrap();
    let back = s.reminders().await.unwrap();
    assert_eq!(back.len(), 1, "recorded once");
    assert_eq!(
        (
            back[0].user_id.as_str(),
            back[0].expires_at,
            back[0].days,
            back[0].sent_at
        ),
        ("ann", 5_000_000, 7, 4_400_000)
    );
    assert!(s.reminder_sent("ann", 5_000_000, 7).await.unwrap());
    s.set_registration_skips("ben", 2, 77).await.unwrap();
    s.set_registration_skips("ann", 1, 78).await.unwrap();
    assert_eq!(
        s.all_registration_skips().await.unwrap(),
        vec![("ann".to_string(), 1, 78), ("ben".to_string(), 2, 77)]
    );
}

async fn a_reminder_is_queued_once_however_many_race_for_it(s: Arc<dyn Store>) {
    use sspr_app::ports::Reminder;
    let r = Reminder {
        user_id: "ann".into(),
        expires_at: 5_000_000,
        days: 7,
        sent_at: 100,
    };
    assert!(!s.reminder_sent("ann", 5_000_000, 7).await.unwrap());
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (s, r) = (s.clone(), r.clone());
        set.spawn(async move {
            let m = OutboxMessage::new(Channel::Email, "ann@b.c", "expires", &format!("{i}"), 100);
            let ev = AuditEvent::new(100, Activity::ExpiryReminder, Outcome::Success);
            s.queue_reminder(&r, &[m], &ev).await.unwrap()
        });
    }
    let mut wins = 0;
    while let Some(won) = set.join_next().await {
        wins += won.unwrap() as u32;
    }
    assert_eq!(wins, 1);
    assert!(s.reminder_sent("ann", 5_000_000, 7).await.unwrap());
    // One message and one audit event: the losers queued nothing.
    let queued = s.outbox_list(100).await.unwrap();
    assert_eq!(
        queued.iter().filter(|m| m.recipient == "ann@b.c").count(),
        1
    );
    let filter = sspr_app::ports::AuditFilter {
        activity: Some(Activity::ExpiryReminder),
        limit: 100,
        ..Default::default()
    };
    assert_eq!(s.audit_query(&filter).await.unwrap().len(), 1);
    // Another threshold, or the next password's expiry, is a reminder of its own.
    let next = Reminder {
        days: 3,
        ..r.clone()
    };
    let ev = AuditEvent::new(100, Activity::ExpiryReminder, Outcome::Success);
    assert!(s.queue_reminder(&next, &[], &ev).await.unwrap());
    let renewed = Reminder {
        expires_at: 9_000_000,
        ..r
    };
    assert!(s.queue_reminder(&renewed, &[], &ev).await.unwrap());
    // Gone once its password has expired (a day after, with the other housekeeping).
    s.purge_expired(5_000_000 + 86_401).await.unwrap();
    assert!(!s.reminder_sent("ann", 5_000_000, 7).await.unwrap());
    assert!(s.reminder_sent("ann", 9_000_000, 7).await.unwrap());
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

async fn fifty_concurrent_consumers_of_one_code_one_wins(s: Arc<dyn Store>) {
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

async fn a_new_code_retires_the_old_and_queues_its_message(s: Arc<dyn Store>) {
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

async fn a_sent_code_takes_its_slots_and_records_its_event_or_nothing(s: Arc<dyn Store>) {
    use sspr_app::ports::{AuditFilter, Slot};
    let msg = OutboxMessage::new(Channel::Email, "a@b.c", "s", "b", 0);
    let slots = [
        Slot {
            key: "codes-acct".into(),
            since: 0,
            max: 5,
        },
        Slot {
            key: "codes-dest".into(),
            since: 0,
            max: 1,
        },
    ];
    let c = |mac: &str| CodeRecord {
        created_at: 10,
        ..code("f1", mac, 1000)
    };
    let ev = event(10, Activity::CodeSent, "bob", "bob");
    let sent = s.send_code(&c("m1"), &msg, &slots, &ev).await.unwrap();
    assert_eq!(sent, None);
    let first = s.latest_code("f1", "email").await.unwrap().unwrap();
    assert_eq!(first.code_mac, "m1");
    assert_eq!(s.outbox_list(10).await.unwrap().len(), 1);
    let all = AuditFilter::default();
    assert_eq!(s.audit_query(&all).await.unwrap().len(), 1);
    assert_eq!(s.hits_since("codes-dest", 0).await.unwrap(), 1);

    // The destination's window is full: no new code (the first stays live), no message, no
    // event; the account's slot before it stays taken.
    let refused = s.send_code(&c("m2"), &msg, &slots, &ev).await.unwrap();
    assert_eq!(refused, Some(1));
    let latest = s.latest_code("f1", "email").await.unwrap().unwrap();
    assert_eq!((latest.id, latest.used), (first.id, false));
    assert_eq!(s.outbox_list(10).await.unwrap().len(), 1);
    assert_eq!(s.audit_query(&all).await.unwrap().len(), 1);
    assert_eq!(s.hits_since("codes-acct", 0).await.unwrap(), 2);
}

async fn expiry_boundary_and_attempts(s: Arc<dyn Store>) {
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

async fn slots_are_taken_in_order_up_to_the_first_full_window(s: Arc<dyn Store>) {
    use sspr_app::ports::Slot;
    let slot = |key: &str, max| Slot {
        key: key.into(),
        since: 0,
        max,
    };
    let both = [slot("ip", 3), slot("login", 1)];
    assert_eq!(s.take_slots(&both, 10).await.unwrap(), None);
    // The second window is full: its index comes back, and the first's slot stays taken.
    assert_eq!(s.take_slots(&both, 11).await.unwrap(), Some(1));
    assert_eq!(s.hits_since("ip", 0).await.unwrap(), 2);
    assert_eq!(s.hits_since("login", 0).await.unwrap(), 1);
    assert_eq!(s.take_slots(&both, 12).await.unwrap(), Some(1));
    assert_eq!(s.take_slots(&both, 13).await.unwrap(), Some(0));
    assert_eq!(s.hits_since("ip", 0).await.unwrap(), 3);
    // Hits at or before `since` are out of the window.
    assert_eq!(
        s.take_slots(
            &[Slot {
                since: 12,
                ..slot("ip", 3)
            }],
            14
        )
        .await
        .unwrap(),
        None
    );

    // Fifty at once on one window across the pool: exactly its max get a slot.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let s = s.clone();
        set.spawn(async move {
            s.take_slots(&[slot("race", 7), slot("other", 100)], 20)
                .await
                .unwrap()
        });
    }
    let mut free = 0;
    while let Some(r) = set.join_next().await {
        free += u32::from(r.unwrap().is_none());
    }
    assert_eq!(free, 7);

    // A new flow, its slots and the event of its start are stored together.
    let f = FlowRecord {
        created_at: 30,
        ..flow("f9", "bob", FlowState::Verifying, 900)
    };
    let start = [slot("start-ip", 5), slot("start-bob", 1)];
    let started = s
        .start_flow(&f, &event(30, Activity::ResetStarted, "bob", "bob"), &start)
        .await
        .unwrap();
    assert_eq!(started, None);
    assert!(s.flow("f9").await.unwrap().is_some());
    let all = sspr_app::ports::AuditFilter::default();
    assert_eq!(s.audit_query(&all).await.unwrap().len(), 1);
    assert_eq!(s.hits_since("start-bob", 0).await.unwrap(), 1);
    // A window already full: no flow and no event; the slots before it stay taken.
    let g = FlowRecord {
        created_at: 31,
        ..flow("f10", "bob", FlowState::Verifying, 900)
    };
    let refused = s
        .start_flow(&g, &event(31, Activity::ResetStarted, "bob", "bob"), &start)
        .await
        .unwrap();
    assert_eq!(refused, Some(1));
    assert!(s.flow("f10").await.unwrap().is_none());
    assert_eq!(s.audit_query(&all).await.unwrap().len(), 1);
    assert_eq!(s.hits_since("start-ip", 0).await.unwrap(), 2);
    assert_eq!(s.hits_since("start-bob", 0).await.unwrap(), 1);

    // Fifty concurrent starts against a window of three: three flows, three events.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let s = s.clone();
        set.spawn(async move {
            let f = FlowRecord {
                created_at: 40,
                ..flow(&format!("race-{i}"), "cy", FlowState::Verifying, 900)
            };
            let ev = event(40, Activity::ResetStarted, "cy", "cy");
            s.start_flow(&f, &ev, &[slot("start-cy", 3)]).await.unwrap()
        });
    }
    let mut started = 0;
    while let Some(r) = set.join_next().await {
        started += u32::from(r.unwrap().is_none());
    }
    assert_eq!(started, 3);
    assert_eq!(s.audit_query(&all).await.unwrap().len(), 4);
}

async fn questions_drawn_are_stored_with_their_event(s: Arc<dyn Store>) {
    s.insert_flow(&flow("fq", "bob", FlowState::Verifying, 900))
        .await
        .unwrap();
    let ids = vec!["q3".to_string(), "q7".to_string()];
    let ev = event(20, Activity::QuestionsDrawn, "bob", "bob");
    s.draw_questions("fq", &ids, &ev).await.unwrap();
    assert_eq!(s.flow("fq").await.unwrap().unwrap().questions, ids);
    let all = sspr_app::ports::AuditFilter::default();
    let events = s.audit_query(&all).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].activity, Activity::QuestionsDrawn);
}

async fn throttle_state_reads_blocks_and_windows_in_one_go(s: Arc<dyn Store>) {
    use sspr_app::ports::{Slot, ThrottleState};
    let slot = |key: &str, since| Slot {
        key: key.into(),
        since,
        max: 1,
    };
    let none = s.throttle_state(&[], &[], 100).await.unwrap();
    assert_eq!(none, ThrottleState::default());
    s.hit("w", 50).await.unwrap();
    s.hit("w", 60).await.unwrap();
    s.hit("w", 60).await.unwrap();
    s.block("b-live", 200).await.unwrap();
    s.block("b-over", 90).await.unwrap();
    let st = s
        .throttle_state(
            &["b-live".into(), "b-over".into(), "b-none".into()],
            &[slot("w", 0), slot("w", 50), slot("empty", 0)],
            100,
        )
        .await
        .unwrap();
    assert_eq!(st.blocked_until, vec![Some(200), None, None]);
    assert_eq!(st.hits, vec![3, 2, 0]);
    // Windows alone (no block to read) and blocks alone.
    let st = s.throttle_state(&[], &[slot("w", 55)], 100).await.unwrap();
    assert_eq!((st.blocked_until.len(), st.hits), (0, vec![2]));
    let st = s
        .throttle_state(&["b-live".into()], &[], 100)
        .await
        .unwrap();
    assert_eq!((st.blocked_until, st.hits.len()), (vec![Some(200)], 0));
}

async fn a_verified_step_spends_moves_and_records_together_or_not_at_all(s: Arc<dyn Store>) {
    use sspr_app::ports::{Proof, StepResult, VerifiedStep};
    let mut f = flow("f1", "alice", FlowState::Verifying, 900);
    f.required = 2;
    f.verified = Vec::new();
    s.insert_flow(&f).await.unwrap();
    let msg = OutboxMessage::new(Channel::Email, "a@b.c", "s", "b", 0);
    let id = s.issue_code(&code("f1", "m", 600), &msg).await.unwrap();
    let step = |before: Vec<Method>, proof: Proof| VerifiedStep {
        flow_id: "f1".into(),
        user_id: "alice".into(),
        after: [before.clone(), vec![Method::Email]].concat(),
        before,
        state: FlowState::Verifying,
        proof,
        now: 10,
        event: event(10, Activity::MethodVerified, "alice", "alice"),
    };
    let events = || async {
        s.audit_query(&sspr_app::ports::AuditFilter::default())
            .await
            .unwrap()
            .len()
    };

    // The flow moved on meanwhile (its verified methods are not what the caller read): the
    // code is not spent and no event is stored.
    let moved = step(
        vec![Method::Sms],
        Proof::Code {
            id,
            max_attempts: 3,
        },
    );
    assert_eq!(s.verify_step(&moved).await.unwrap(), StepResult::FlowMoved);
    assert_eq!(events().await, 0);
    let right = step(
        Vec::new(),
        Proof::Code {
            id,
            max_attempts: 3,
        },
    );
    assert_eq!(
        s.verify_step(&right).await.unwrap(),
        StepResult::Verified {
            recovery_left: None
        }
    );
    let stored = s.flow("f1").await.unwrap().unwrap();
    assert_eq!(stored.verified, vec![Method::Email]);
    assert_eq!(events().await, 1);
    // Spent once: the same code again changes nothing.
    let again = step(
        vec![Method::Email],
        Proof::Code {
            id,
            max_attempts: 3,
        },
    );
    assert_eq!(s.verify_step(&again).await.unwrap(), StepResult::ProofSpent);
    assert_eq!(
        s.flow("f1").await.unwrap().unwrap().verified,
        stored.verified
    );
    assert_eq!(events().await, 1);

    // An authenticator step is spent once, and not before a later one.
    let totp = |n| step(vec![Method::Email], Proof::TotpStep { step: n });
    assert!(s.totp_use_step("alice", 100).await.unwrap());
    assert_eq!(
        s.verify_step(&totp(100)).await.unwrap(),
        StepResult::ProofSpent
    );
    let mut t = totp(101);
    t.after = vec![Method::Email, Method::Totp];
    t.state = FlowState::Verified;
    assert!(matches!(
        s.verify_step(&t).await.unwrap(),
        StepResult::Verified { .. }
    ));
    assert!(
        !s.totp_use_step("alice", 101).await.unwrap(),
        "step 101 spent"
    );
    assert_eq!(
        s.flow("f1").await.unwrap().unwrap().state,
        FlowState::Verified
    );
    assert_eq!(events().await, 2);
}

async fn throttle_windows_blocks_and_clearing(s: Arc<dyn Store>) {
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

async fn outbox_lease_expires_and_is_claimed_again(s: Arc<dyn Store>) {
    s.enqueue(&OutboxMessage::new(
        Channel::Sms,
        "+4915112345678",
        "",
        "hello",
        0,
    ))
    .await
    .unwrap();
    let first = s.claim_outbox(0, 60, 10, None).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        s.claim_outbox(30, 60, 10, None).await.unwrap().is_empty(),
        "leased to the first worker"
    );
    let again = s.claim_outbox(61, 60, 10, None).await.unwrap();
    assert_eq!(again.len(), 1, "a dead worker's lease runs out");
    assert_eq!(again[0].attempts, 2);
    s.outbox_sent(again[0].id, false).await.unwrap();
    assert!(s.claim_outbox(1000, 60, 10, None).await.unwrap().is_empty());
    assert_eq!(
        s.outbox_list(1).await.unwrap()[0].body,
        "",
        "a sent body is erased"
    );
}

async fn outbox_claims_one_channel_and_release_gives_messages_back(s: Arc<dyn Store>) {
    let sms = s
        .enqueue(&OutboxMessage::new(
            Channel::Sms,
            "+4915112345678",
            "",
            "s1",
            0,
        ))
        .await
        .unwrap();
    let mail1 = s
        .enqueue(&OutboxMessage::new(Channel::Email, "a@b.c", "s", "e1", 0))
        .await
        .unwrap();
    let mail2 = s
        .enqueue(&OutboxMessage::new(Channel::Email, "a@b.c", "s", "e2", 0))
        .await
        .unwrap();
    // One channel at a time, oldest first, no more than asked for.
    let got = s
        .claim_outbox(10, 60, 1, Some(Channel::Email))
        .await
        .unwrap();
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![mail1]);
    let got = s
        .claim_outbox(10, 60, 10, Some(Channel::Sms))
        .await
        .unwrap();
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![sms]);
    assert_eq!(got[0].attempts, 1);
    // mail2 is still free; everything else is leased.
    let rest = s.claim_outbox(10, 60, 10, None).await.unwrap();
    assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), vec![mail2]);
    assert!(s.claim_outbox(11, 60, 10, None).await.unwrap().is_empty());

    // mail2 is sent; the other two are given back unsent: free at once, attempt returned.
    s.outbox_sent(mail2, false).await.unwrap();
    s.outbox_release(&[mail1, sms, mail2]).await.unwrap();
    s.outbox_release(&[]).await.unwrap();
    let again = s.claim_outbox(12, 60, 10, None).await.unwrap();
    assert_eq!(
        again.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(),
        vec![(sms, 1), (mail1, 1)],
        "released messages are due at once, with the attempt given back"
    );
    let sent = s.outbox_list(10).await.unwrap();
    let m2 = sent.iter().find(|m| m.id == mail2).unwrap();
    assert_eq!(m2.status, "sent", "a sent message is not released");
}

async fn a_channel_claim_takes_the_earliest_due_lapsed_leases_included_within_one_limit(
    s: Arc<dyn Store>,
) {
    let mail = |body: &str, at| OutboxMessage::new(Channel::Email, "a@b.c", "s", body, at);
    // Delivered messages before the queue, as after a long run.
    for _ in 0..20 {
        let id = s.enqueue(&mail("old", 0)).await.unwrap();
        s.claim_outbox(0, 60, 1, Some(Channel::Email))
            .await
            .unwrap();
        s.outbox_sent(id, false).await.unwrap();
    }
    let lapsed = s.enqueue(&mail("lapsed", 0)).await.unwrap();
    let got = s
        .claim_outbox(0, 60, 1, Some(Channel::Email))
        .await
        .unwrap();
    assert_eq!(got[0].id, lapsed);
    let later = s.enqueue(&mail("later", 5)).await.unwrap();
    let retrying = s.enqueue(&mail("retrying", 1)).await.unwrap();
    s.claim_outbox(1, 60, 1, Some(Channel::Email))
        .await
        .unwrap();
    s.outbox_failed(retrying, Some(100), "deferred")
        .await
        .unwrap();
    let sooner = s.enqueue(&mail("sooner", 2)).await.unwrap();
    s.enqueue(&OutboxMessage::new(
        Channel::Sms,
        "+4915112345678",
        "",
        "sms",
        0,
    ))
    .await
    .unwrap();

    // At 70: the lapsed lease (due at 0) first, then the queue by when each is due; never
    // more than the limit in all, never the other channel, never a retry before its time.
    let ids = |v: Vec<OutboxMessage>| v.iter().map(|m| m.id).collect::<Vec<_>>();
    let got = s
        .claim_outbox(70, 60, 2, Some(Channel::Email))
        .await
        .unwrap();
    assert_eq!(ids(got), vec![lapsed, sooner]);
    let got = s
        .claim_outbox(70, 60, 10, Some(Channel::Email))
        .await
        .unwrap();
    assert_eq!(ids(got), vec![later]);
    let got = s
        .claim_outbox(100, 60, 10, Some(Channel::Email))
        .await
        .unwrap();
    assert_eq!(ids(got), vec![retrying]);
}

async fn pending_address_waits_beside_the_active_one(s: Arc<dyn Store>) {
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

fn recovery_set(prefix: &str) -> Vec<String> {
    (0..10).map(|i| format!("{prefix}{i}")).collect()
}

fn has_recovery_method(m: &[MethodRecord]) -> bool {
    m.iter()
        .any(|r| r.method == Method::RecoveryCode && r.status == MethodStatus::Active)
}

async fn recovery_codes_are_spent_once_and_a_new_set_voids_the_old(s: Arc<dyn Store>) {
    s.replace_recovery_codes("u", &recovery_set("a"), 100)
        .await
        .unwrap();
    assert!(has_recovery_method(&s.methods("u").await.unwrap()));
    let spend = |u: &'static str, d: &'static str| {
        let s = s.clone();
        async move { s.use_recovery_code(u, d, 150).await.unwrap() }
    };
    assert_eq!(spend("u", "a3").await, RecoveryUse::Spent { left: 9 });
    assert_eq!(spend("u", "a3").await, RecoveryUse::UsedBefore);
    assert_eq!(
        spend("v", "a4").await,
        RecoveryUse::Unknown,
        "another user's"
    );
    assert_eq!(s.recovery_codes("u").await.unwrap().len(), 9);

    s.replace_recovery_codes("u", &recovery_set("b"), 200)
        .await
        .unwrap();
    assert_eq!(spend("u", "a4").await, RecoveryUse::Unknown, "voided");
    for i in 0..9 {
        assert_eq!(
            s.use_recovery_code("u", &format!("b{i}"), 250)
                .await
                .unwrap(),
            RecoveryUse::Spent { left: 9 - i }
        );
    }
    assert!(has_recovery_method(&s.methods("u").await.unwrap()));
    assert_eq!(spend("u", "b9").await, RecoveryUse::Spent { left: 0 });
    assert!(
        !has_recovery_method(&s.methods("u").await.unwrap()),
        "the last code spent takes the method with it"
    );

    s.replace_recovery_codes("u", &recovery_set("c"), 300)
        .await
        .unwrap();
    assert!(s.delete_method("u", Method::RecoveryCode).await.unwrap());
    assert!(s.recovery_codes("u").await.unwrap().is_empty());
    assert_eq!(spend("u", "c0").await, RecoveryUse::Unknown);
}

async fn one_recovery_code_raced_by_many_is_spent_once(s: Arc<dyn Store>) {
    s.replace_recovery_codes("u", &recovery_set("a"), 100)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.use_recovery_code("u", "a0", 150).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            RecoveryUse::Spent { .. } => won += 1,
            other => assert_eq!(other, RecoveryUse::UsedBefore),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.recovery_codes("u").await.unwrap().len(), 9);
}

async fn totp_steps_are_single_use(s: Arc<dyn Store>) {
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
    assert_eq!(s.schema_version().await.unwrap(), LATEST_SCHEMA);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// PostgreSQL only: several instances (pools) on one database.
mod postgres_instances {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_instances_claim_each_message_exactly_once() {
        let schema = PgSchema::create().await;
        let (a, b) = (schema.instance().await, schema.instance().await);
        let mut queued = HashSet::new();
        for i in 0..100 {
            let m = OutboxMessage::new(Channel::Email, "a@b.c", "s", &format!("m{i}"), 0);
            queued.insert(a.enqueue(&m).await.unwrap());
        }
        let mut set = tokio::task::JoinSet::new();
        for s in [&a, &b, &a, &b, &a, &b, &a, &b] {
            let s = s.clone();
            set.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    // Small batches so the workers interleave.
                    let got = s.claim_outbox(10, 60, 3, None).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    assert!(got.iter().all(|m| m.attempts == 1 && m.status == "sending"));
                    mine.extend(got.into_iter().map(|m| m.id));
                }
            });
        }
        let mut claimed = Vec::new();
        while let Some(r) = set.join_next().await {
            claimed.extend(r.unwrap());
        }
        let unique: HashSet<i64> = claimed.iter().copied().collect();
        assert_eq!(
            claimed.len(),
            100,
            "a message was claimed twice or not at all"
        );
        assert_eq!(unique, queued);
        assert!(b.claim_outbox(10, 60, 100, None).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_consumers_across_two_instances_one_wins() {
        let schema = PgSchema::create().await;
        let (a, b) = (schema.instance().await, schema.instance().await);
        let msg = OutboxMessage::new(Channel::Email, "a@b.c", "s", "b", 0);
        let id = a.issue_code(&code("f1", "m", 1000), &msg).await.unwrap();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..50 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            set.spawn(async move { s.consume_code(id, 10, 3).await.unwrap() });
        }
        let mut wins = 0;
        while let Some(r) = set.join_next().await {
            wins += r.unwrap() as u32;
        }
        assert_eq!(wins, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_codes_for_one_owner_leave_one_live() {
        let schema = PgSchema::create().await;
        let (a, b) = (schema.instance().await, schema.instance().await);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            set.spawn(async move {
                let msg = OutboxMessage::new(Channel::Email, "a@b.c", "s", "b", 0);
                s.issue_code(&code("f1", &format!("m{i}"), 1000), &msg)
                    .await
                    .unwrap()
            });
        }
        let mut ids = Vec::new();
        while let Some(r) = set.join_next().await {
            ids.push(r.unwrap());
        }
        let latest = a.latest_code("f1", "email").await.unwrap().unwrap().id;
        let mut live = Vec::new();
        for id in ids {
            if a.consume_code(id, 10, 3).await.unwrap() {
                live.push(id);
            }
        }
        assert_eq!(live, vec![latest], "only the newest code may be live");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_activations_keep_the_new_address() {
        let schema = PgSchema::create().await;
        let (a, b) = (schema.instance().await, schema.instance().await);
        for round in 0..5 {
            let rec = |status, value: &str| MethodRecord {
                user_id: "u".into(),
                method: Method::Email,
                status,
                value: value.into(),
                created_at: 0,
                verified_at: None,
            };
            let new = format!("new{round}@x.y");
            a.put_method(&rec(MethodStatus::Pending, &new))
                .await
                .unwrap();
            let mut set = tokio::task::JoinSet::new();
            for i in 0..10 {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                set.spawn(async move { s.activate_method("u", Method::Email, 5).await.unwrap() });
            }
            let mut wins = 0;
            while let Some(r) = set.join_next().await {
                wins += r.unwrap() as u32;
            }
            assert_eq!(wins, 1);
            let m = a.methods("u").await.unwrap();
            assert_eq!(m.len(), 1, "round {round}: {m:?}");
            assert_eq!(
                (m[0].status, m[0].value.as_str()),
                (MethodStatus::Active, new.as_str())
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn instances_starting_together_migrate_once() {
        let schema = PgSchema::create().await;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (url, name) = (schema.url.clone(), schema.name.clone());
            set.spawn(async move { PgStore::connect_with_schema(&url, &name).await });
        }
        while let Some(r) = set.join_next().await {
            let s = r.unwrap().unwrap();
            assert_eq!(s.schema_version().await.unwrap(), LATEST_SCHEMA);
        }
        let s = schema.instance().await;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations")
            .fetch_one(s.pool())
            .await
            .unwrap();
        // Counted against the files, not LATEST_SCHEMA: versions need not be contiguous while
        // branches that each add one are merged.
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sql")
            })
            .count();
        assert_eq!(rows, files as i64, "each migration applied once");
    }

    #[tokio::test]
    async fn connect_takes_the_schema_from_the_url() {
        let schema = PgSchema::create().await;
        let sep = if schema.url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{sep}options=-c%20search_path%3D{}",
            schema.url, schema.name
        );
        let s = PgStore::connect(&url).await.unwrap();
        assert_eq!(s.schema_version().await.unwrap(), LATEST_SCHEMA);
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'outbox'",
        )
        .bind(&schema.name)
        .fetch_one(s.pool())
        .await
        .unwrap();
        assert_eq!(n, 1, "tables land in the URL's schema");
    }

    #[tokio::test]
    async fn a_missing_or_unsafe_schema_is_refused() {
        let url = pg_url();
        // Connecting at all must work, or this test would pass for the wrong reason.
        drop(pg_admin(&url).await);
        let e = PgStore::connect_with_schema(&url, "t_no_such_schema_here")
            .await
            .unwrap_err();
        assert!(e.message.contains("does not exist"), "{e}");
        for bad in ["public,evil", "Upper", "x y", ""] {
            assert!(
                PgStore::connect_with_schema(&url, bad).await.is_err(),
                "{bad:?}"
            );
        }
    }
}

async fn concurrent_hits_never_exceed_a_window(s: Arc<dyn Store>) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let s = s.clone();
        set.spawn(async move { s.hit_within("codes:u", 100, 40, 5).await.unwrap() });
    }
    let mut taken = 0;
    while let Some(r) = set.join_next().await {
        taken += r.unwrap() as u32;
    }
    assert_eq!(taken, 5, "exactly the window's 5 slots are taken");
    assert_eq!(
        s.hits_since("codes:u", 40).await.unwrap(),
        5,
        "refused hits are not recorded"
    );
    // Hits at or before `since` have left the window.
    assert!(s.hit_within("codes:u", 200, 100, 5).await.unwrap());
}

fn flow(id: &str, user: &str, state: FlowState, expires_at: i64) -> FlowRecord {
    FlowRecord {
        id: id.into(),
        kind: FlowKind::Reset,
        state,
        user_id: user.into(),
        login: user.into(),
        account: user.into(),
        display_name: String::new(),
        privileged: false,
        required: 1,
        usable: vec![Method::Email],
        verified: vec![Method::Email],
        questions: Vec::new(),
        created_at: 0,
        expires_at,
        client_type: ClientType::Browser,
        client_ip: "192.0.2.1".into(),
        finishing_at: 0,
        dir_stamp: None,
        lang: sspr_app::Lang::Zh,
    }
}

async fn one_writer_passes_the_finish_gate_and_its_completion_is_one_transaction(
    s: Arc<dyn Store>,
) {
    s.insert_flow(&flow("f1", "alice", FlowState::Verified, 900))
        .await
        .unwrap();
    s.insert_flow(&flow("f2", "alice", FlowState::Verifying, 900))
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let s = s.clone();
        set.spawn(async move { s.flow_begin_finish("f1", 100, Some("st")).await.unwrap() });
    }
    let mut wins = 0;
    while let Some(r) = set.join_next().await {
        wins += r.unwrap() as u32;
    }
    assert_eq!(wins, 1, "exactly one writer");
    let f = s.flow("f1").await.unwrap().unwrap();
    assert_eq!(f.state, FlowState::Finishing);
    assert_eq!((f.finishing_at, f.dir_stamp.as_deref()), (100, Some("st")));
    assert_eq!(f.lang, sspr_app::Lang::Zh);
    assert_eq!(s.flows_finishing(101, 10).await.unwrap().len(), 1);
    assert!(s.flows_finishing(100, 10).await.unwrap().is_empty());

    s.hit("acct-fail:alice", 50).await.unwrap();
    let mut ev = AuditEvent::new(120, Activity::ResetPassword, Outcome::Success);
    ev.target = "alice".into();
    let done = Completion {
        flow_id: "f1".into(),
        user_id: "alice".into(),
        event: ev,
        notices: vec![OutboxMessage::new(Channel::Email, "a@b.c", "s", "b", 120)],
        clear: vec!["acct-fail:alice".into()],
        end_sessions: true,
    };
    for (id, user) in [("s-alice", "alice"), ("s-bob", "bob")] {
        s.insert_session(&sspr_app::ports::SessionRecord {
            id: id.into(),
            user_id: user.into(),
            login: user.into(),
            display_name: user.into(),
            groups: vec![],
            expires_at: 10_000,
        })
        .await
        .unwrap();
    }
    s.flow_complete(&done).await.unwrap();
    assert!(
        s.session("s-alice").await.unwrap().is_none(),
        "a reset signs the user out everywhere"
    );
    assert!(s.session("s-bob").await.unwrap().is_some());
    assert_eq!(
        s.flow("f1").await.unwrap().unwrap().state,
        FlowState::Completed
    );
    assert_eq!(
        s.flow("f2").await.unwrap().unwrap().state,
        FlowState::Completed,
        "the user's other open flows end"
    );
    assert_eq!(s.hits_since("acct-fail:alice", 0).await.unwrap(), 0);
    let audit = s
        .audit_query(&sspr_app::ports::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].activity, Activity::ResetPassword);
    assert_eq!(s.outbox_list(10).await.unwrap().len(), 1);
    assert!(s.flows_finishing(1000, 10).await.unwrap().is_empty());
}

async fn a_late_reconciler_never_reopens_a_newer_attempt(s: Arc<dyn Store>) {
    s.insert_flow(&flow("f1", "bob", FlowState::Verified, 900))
        .await
        .unwrap();
    assert!(s.flow_begin_finish("f1", 100, None).await.unwrap());
    assert!(s.flow_abort_finish("f1", 100).await.unwrap());
    assert_eq!(
        s.flow("f1").await.unwrap().unwrap().state,
        FlowState::Verified
    );
    assert!(s.flow_begin_finish("f1", 200, None).await.unwrap());
    assert!(
        !s.flow_abort_finish("f1", 100).await.unwrap(),
        "the attempt that began at 100 is over"
    );
    assert_eq!(
        s.flow("f1").await.unwrap().unwrap().state,
        FlowState::Finishing
    );
}

async fn abandoned_flows_are_reported_once_and_finishing_flows_are_kept(s: Arc<dyn Store>) {
    s.insert_flow(&flow("open", "carol", FlowState::Verifying, 100))
        .await
        .unwrap();
    s.insert_flow(&flow("later", "carol", FlowState::Verified, 500))
        .await
        .unwrap();
    s.insert_flow(&flow("stuck", "dave", FlowState::Verified, 100))
        .await
        .unwrap();
    s.insert_flow(&flow("none", "eve", FlowState::Ineligible, 100))
        .await
        .unwrap();
    assert!(s.flow_begin_finish("stuck", 50, None).await.unwrap());
    let taken = s.take_abandoned_flows(200, 10).await.unwrap();
    assert_eq!(
        taken.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        vec!["open"]
    );
    assert_eq!(taken[0].state, FlowState::Abandoned);
    assert!(s.take_abandoned_flows(200, 10).await.unwrap().is_empty());
    // A day and more later, expired flows go, but not one whose write never settled.
    s.purge_expired(200 + 2 * 86_400).await.unwrap();
    assert!(s.flow("open").await.unwrap().is_none());
    assert!(s.flow("stuck").await.unwrap().is_some());
}

async fn a_code_is_dead_when_the_clock_reads_before_its_creation(s: Arc<dyn Store>) {
    let msg = OutboxMessage::new(Channel::Email, "a@b.c", "s", "b", 0);
    let mut c = code("f1", "m", 10_000);
    c.created_at = 5_000;
    let id = s.issue_code(&c, &msg).await.unwrap();
    assert!(
        !s.consume_code(id, 1_100, 3).await.unwrap(),
        "a clock set back must not keep a code alive"
    );
    assert!(s.consume_code(id, 5_001, 3).await.unwrap());
}

async fn a_kept_body_goes_once_its_code_is_used_or_expired(s: Arc<dyn Store>) {
    let used = s
        .issue_code(
            &code("k1", "m1", 1000),
            &OutboxMessage::new(Channel::Email, "a@b.c", "s", "code 111111", 0),
        )
        .await
        .unwrap();
    s.issue_code(
        &code("k2", "m2", 1000),
        &OutboxMessage::new(Channel::Email, "a@b.c", "s", "code 222222", 0),
    )
    .await
    .unwrap();
    s.enqueue(&OutboxMessage::new(
        Channel::Email,
        "a@b.c",
        "s",
        "a notice",
        0,
    ))
    .await
    .unwrap();
    // The dev outbox keeps bodies after sending, for `sspr outbox`.
    for m in s.claim_outbox(0, 60, 10, None).await.unwrap() {
        s.outbox_sent(m.id, true).await.unwrap();
    }
    assert!(s.consume_code(used, 10, 3).await.unwrap());
    let bodies = |list: Vec<OutboxMessage>| {
        let mut b: Vec<String> = list.into_iter().map(|m| m.body).collect();
        b.sort();
        b
    };
    s.purge_expired(100).await.unwrap();
    assert_eq!(
        bodies(s.outbox_list(10).await.unwrap()),
        ["", "a notice", "code 222222"],
        "a used code's body goes; a live code's and a notice (no secret) stay"
    );
    s.purge_expired(1000).await.unwrap();
    assert_eq!(
        bodies(s.outbox_list(10).await.unwrap()),
        ["", "", "a notice"]
    );
}

/// The dev outbox keeps an invitation's text, link included, only while the link works.
async fn a_kept_invitation_goes_once_it_is_used_voided_or_expired(s: Arc<dyn Store>) {
    let invite = |id: &str, user: &str, expires_at| FlowRecord {
        kind: FlowKind::Invite,
        ..flow(id, user, FlowState::Verified, expires_at)
    };
    for (id, user) in [
        ("i-used", "ann"),
        ("i-old", "ben"),
        ("i-new", "ben"),
        ("i-late", "cy"),
    ] {
        s.insert_flow(&invite(id, user, if id == "i-late" { 500 } else { 1000 }))
            .await
            .unwrap();
        let mut m = OutboxMessage::new(Channel::Email, "a@b.c", "s", &format!("link {id}"), 0);
        m.flow_id = Some(id.into());
        s.enqueue(&m).await.unwrap();
    }
    let mut notice = OutboxMessage::new(Channel::Email, "a@b.c", "s", "a notice", 0);
    notice.flow_id = Some("i-used".into());
    s.enqueue(&notice).await.unwrap();
    for m in s.claim_outbox(0, 60, 10, None).await.unwrap() {
        s.outbox_sent(m.id, true).await.unwrap();
    }
    // Used (the password set), and voided by a newer invitation.
    assert!(
        s.flow_transition("i-used", FlowState::Verified, FlowState::Completed)
            .await
            .unwrap()
    );
    s.close_other_flows("ben", "i-new").await.unwrap();
    let bodies = |list: Vec<OutboxMessage>| {
        let mut b: Vec<String> = list.into_iter().map(|m| m.body).collect();
        b.sort();
        b
    };
    s.purge_expired(100).await.unwrap();
    assert_eq!(
        bodies(s.outbox_list(10).await.unwrap()),
        ["", "", "", "link i-late", "link i-new"],
        "the used and the voided links go, and a notice about the flow with them; live ones stay"
    );
    s.purge_expired(600).await.unwrap();
    assert_eq!(
        bodies(s.outbox_list(10).await.unwrap()),
        ["", "", "", "", "link i-new"],
        "an expired link goes"
    );
}

async fn clearing_by_prefix_takes_exactly_the_keys_under_it(s: Arc<dyn Store>) {
    for k in ["p:a%\nx", "p:a%\ny", "p:a%b", "p:ab\nx"] {
        s.hit(k, 10).await.unwrap();
        s.block(k, 100).await.unwrap();
    }
    s.clear_throttle_prefix("p:a%\n").await.unwrap();
    for (k, kept) in [
        ("p:a%\nx", false),
        ("p:a%\ny", false),
        ("p:a%b", true),
        ("p:ab\nx", true),
    ] {
        assert_eq!(s.hits_since(k, 0).await.unwrap() == 1, kept, "{k:?}");
        assert_eq!(
            s.blocked_until(k, 50).await.unwrap().is_some(),
            kept,
            "{k:?}"
        );
    }
}

/// The built-in directory's lookup, on both stores: it reads the account and its groups in
/// one statement that answers for unknown ids too (so both cost the same), and must still
/// return exactly what was stored.
mod user_lookup {
    use sspr_app::ports::{UserRecord, UserStore};

    use super::*;

    fn record(id: &str, groups: &[&str]) -> UserRecord {
        UserRecord {
            id: id.into(),
            display_name: format!("{id} display"),
            enabled: true,
            locked: false,
            password_hash: format!("$argon2id$hash-of-{id}"),
            password_changed_at: 10,
            email: Some(format!("{id}@example.test")),
            mobile: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    async fn finds_users_with_their_groups_and_nothing_for_unknown_ids(s: &dyn UserStore) {
        // Out of order and with characters a separator-joined list would trip on.
        let groups = ["zeta", "a,b", "quote\"d", "ünïcode", "staff"];
        assert!(s.insert_user(&record("alice", &groups), 10).await.unwrap());
        assert!(s.insert_user(&record("bob", &[]), 10).await.unwrap());
        let mut carol = record("carol", &["staff"]);
        carol.enabled = false;
        carol.locked = true;
        carol.email = None;
        carol.mobile = Some("+15550100".into());
        assert!(s.insert_user(&carol, 10).await.unwrap());

        let mut sorted = record("alice", &groups);
        sorted.groups.sort();
        assert_eq!(s.user("alice").await.unwrap(), Some(sorted));
        assert_eq!(s.user("bob").await.unwrap(), Some(record("bob", &[])));
        assert_eq!(s.user("carol").await.unwrap(), Some(carol));
        for unknown in ["nobody", "", "alice ", "ALICE", "a%"] {
            assert_eq!(s.user(unknown).await.unwrap(), None, "{unknown:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        finds_users_with_their_groups_and_nothing_for_unknown_ids(&s).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let schema = PgSchema::create().await;
        let s = schema.instance().await;
        finds_users_with_their_groups_and_nothing_for_unknown_ids(s.as_ref()).await;
    }
}

/// The SIEM export's cursor: one holder at a time per sink, taken over only once its lease ran
/// out, and a move that names a stale position or a lost lease does not apply (so two instances
/// never both advance it, and a restart resumes where the last acknowledged batch ended).
async fn one_instance_holds_the_export_lease_and_the_cursor_moves_by_compare_and_set(
    s: Arc<dyn Store>,
) {
    assert_eq!(
        s.export_lease("siem", "a", 100, 130).await.unwrap(),
        Some(0)
    );
    assert_eq!(
        s.export_lease("siem", "b", 110, 140).await.unwrap(),
        None,
        "a's lease runs"
    );
    assert_eq!(
        s.export_lease("other", "b", 110, 140).await.unwrap(),
        Some(0),
        "per sink"
    );
    assert!(s.export_advance("siem", "a", 0, 5, 111).await.unwrap());
    assert!(
        !s.export_advance("siem", "a", 0, 7, 112).await.unwrap(),
        "stale position"
    );
    assert!(
        !s.export_advance("siem", "b", 5, 7, 112).await.unwrap(),
        "b holds no lease"
    );
    // a renews, then stops renewing; b takes over after the lease ends, at a's position.
    assert_eq!(
        s.export_lease("siem", "a", 120, 150).await.unwrap(),
        Some(5)
    );
    assert_eq!(
        s.export_lease("siem", "b", 150, 180).await.unwrap(),
        None,
        "not yet over"
    );
    assert_eq!(
        s.export_lease("siem", "b", 151, 181).await.unwrap(),
        Some(5)
    );
    assert!(
        !s.export_advance("siem", "a", 5, 9, 152).await.unwrap(),
        "a lost the lease"
    );
    assert!(s.export_advance("siem", "b", 5, 9, 152).await.unwrap());
    let cursors = s.export_cursors().await.unwrap();
    assert_eq!(
        cursors,
        vec![("other".into(), 0, 110), ("siem".into(), 9, 152)]
    );

    // Many instances racing for a free lease: exactly one wins.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = s.clone();
        set.spawn(async move {
            s.export_lease("race", &format!("i{i}"), 200, 230)
                .await
                .unwrap()
        });
    }
    let mut won = 0;
    while let Some(r) = set.join_next().await {
        won += usize::from(r.unwrap().is_some());
    }
    assert_eq!(won, 1);
}

/// `sspr users import` on both stores: a file goes in whole or not at all, each account with
/// its audit event; imported bcrypt, `{SSHA}` and foreign Argon2 hashes sign in through the
/// built-in directory and are replaced by its own Argon2id on the way.
mod user_import {
    use std::time::Duration;

    use sspr_app::crypto::HashPool;
    use sspr_app::ports::{AuditFilter, DirError, Directory, PasswordCheck, UserRecord, UserStore};
    use sspr_domain::{OsRandom, Rejection, SystemClock};
    use sspr_store::{BuiltinDirectory, NewUser};

    use super::*;

    fn record(id: &str, hash: &str) -> UserRecord {
        UserRecord {
            id: id.into(),
            display_name: format!("{id} display"),
            enabled: true,
            locked: false,
            password_hash: hash.into(),
            password_changed_at: 10,
            email: Some(format!("{id}@example.test")),
            mobile: None,
            groups: vec!["staff".into(), "it".into()],
        }
    }

    fn imported(u: &UserRecord) -> AuditEvent {
        let mut e = AuditEvent::new(10, Activity::AdminUserChanged, Outcome::Success);
        e.target = u.id.clone();
        e.reason = "imported".into();
        e
    }

    async fn audited(s: &dyn Store) -> usize {
        s.audit_query(&AuditFilter {
            activity: Some(Activity::AdminUserChanged),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
    }

    /// 2,500 accounts span three multi-row statements; the last one collides with an existing
    /// account, so the first two statements' rows must go too.
    async fn an_import_is_all_or_nothing_and_audits_each_account(s: &dyn Store, u: &dyn UserStore) {
        assert!(u.insert_user(&record("taken", "x"), 10).await.unwrap());
        let mut batch: Vec<UserRecord> = (0..2_499)
            .map(|i| record(&format!("user{i:04}"), "{SSHA}x"))
            .collect();
        batch.push(record("taken", "{SSHA}x"));
        let ids: Vec<String> = batch.iter().map(|r| r.id.clone()).collect();
        assert_eq!(u.existing_user_ids(&ids).await.unwrap(), vec!["taken"]);
        let seen = std::sync::Mutex::new(Vec::new());
        let failed = u
            .import_users(&batch, &imported, 20, &|n| seen.lock().unwrap().push(n))
            .await;
        assert!(failed.is_err(), "the duplicate fails the import");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![1_000, 2_000],
            "earlier statements ran"
        );
        assert_eq!(
            u.existing_user_ids(&ids).await.unwrap(),
            vec!["taken"],
            "and were rolled back"
        );
        assert_eq!(
            audited(s).await,
            0,
            "no event of a rolled-back import remains"
        );

        batch.pop();
        seen.lock().unwrap().clear();
        u.import_users(&batch, &imported, 20, &|n| seen.lock().unwrap().push(n))
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![1_000, 2_000, 2_499]);
        let mut taken = u.existing_user_ids(&ids).await.unwrap();
        taken.sort();
        assert_eq!(taken.len(), 2_500);
        let mut want = record("user1234", "{SSHA}x");
        want.groups.sort();
        assert_eq!(u.user("user1234").await.unwrap(), Some(want));
        assert_eq!(audited(s).await, 2_499, "one event per account");
        // Written in multi-row statements, still one chain with what came before and after.
        s.audit(&imported(&record("after", "x"))).await.unwrap();
        let v = sspr_app::audit_chain::verify(s, &key()).await.unwrap();
        assert!(v.intact(), "{:?}", v.problems);
        assert_eq!(v.events, 2_500);
    }

    fn directory(u: Arc<dyn UserStore>, history: usize) -> (BuiltinDirectory, HashPool) {
        let pool = HashPool::with_params(2, Duration::from_secs(30), 1_024, 1).unwrap();
        let dir = BuiltinDirectory::new(
            u,
            pool.clone(),
            Arc::new(OsRandom),
            Arc::new(SystemClock::default()),
            history,
        );
        (dir, pool)
    }

    async fn imported_hashes_sign_in_and_are_upgraded_to_argon2id(u: Arc<dyn UserStore>) {
        let (dir, _) = directory(u.clone(), 3);
        let other_argon = HashPool::with_params(1, Duration::from_secs(30), 2_048, 2)
            .unwrap()
            .hash("argon passphrase", &OsRandom)
            .await
            .unwrap();
        let accounts = [
            (
                "bc",
                "bcrypt passphrase",
                bcrypt::hash("bcrypt passphrase", 4).unwrap(),
            ),
            (
                "ss",
                "ssha passphrase",
                sspr_app::foreign_hash::ssha1("ssha passphrase", b"s4lt"),
            ),
            ("ar", "argon passphrase", other_argon),
        ];
        let records: Vec<UserRecord> = accounts
            .iter()
            .map(|(id, _, hash)| {
                let user = NewUser {
                    login: id.to_string(),
                    ..Default::default()
                };
                dir.record(&user, hash.clone()).unwrap()
            })
            .collect();
        dir.import(&records, &imported, &|_| {}).await.unwrap();
        for (id, password, hash) in &accounts {
            let user = dir.find_user(id).await.unwrap().unwrap();
            assert_eq!(
                dir.check_password(&user, "wrong passphrase").await.unwrap(),
                PasswordCheck::Wrong,
                "{id}"
            );
            assert_eq!(
                u.user(id).await.unwrap().unwrap().password_hash,
                *hash,
                "{id}: kept"
            );
            assert_eq!(
                dir.check_password(&user, password).await.unwrap(),
                PasswordCheck::Right,
                "{id}"
            );
            let now = u.user(id).await.unwrap().unwrap();
            assert!(
                now.password_hash
                    .starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
                "{id}: upgraded at sign-in: {}",
                now.password_hash
            );
            let before = records.iter().find(|r| r.id == *id).unwrap();
            assert_eq!(
                now.password_changed_at, before.password_changed_at,
                "{id}: same age"
            );
            assert_eq!(
                dir.check_password(&user, password).await.unwrap(),
                PasswordCheck::Right,
                "{id}: the new hash verifies"
            );
            assert!(
                u.password_history(id, 5).await.unwrap().is_empty(),
                "{id}: same password, no history"
            );
        }

        // The history check reads legacy hashes too: a reset to the imported password, not
        // yet upgraded, is refused as reuse.
        let legacy = dir
            .record(
                &NewUser {
                    login: "old".into(),
                    ..Default::default()
                },
                sspr_app::foreign_hash::ssha1("legacy passphrase", b"salt"),
            )
            .unwrap();
        dir.import(&[legacy], &imported, &|_| {}).await.unwrap();
        let old = dir.find_user("old").await.unwrap().unwrap();
        assert!(matches!(
            dir.reset_password(&old, "legacy passphrase").await,
            Err(DirError::Rejected(r)) if r == vec![Rejection::History]
        ));
        dir.reset_password(&old, "a brand new passphrase")
            .await
            .unwrap();
        assert!(
            matches!(
                dir.reset_password(&old, "legacy passphrase").await,
                Err(DirError::Rejected(r)) if r == vec![Rejection::History]
            ),
            "the legacy hash in the history still counts"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        an_import_is_all_or_nothing_and_audits_each_account(&s, &s).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_all_or_nothing() {
        let schema = PgSchema::create().await;
        let s = schema.instance().await;
        an_import_is_all_or_nothing_and_audits_each_account(s.as_ref(), s.as_ref()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_hashes_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        imported_hashes_sign_in_and_are_upgraded_to_argon2id(Arc::new(s)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_hashes_upgrade() {
        let schema = PgSchema::create().await;
        let s = schema.instance().await;
        imported_hashes_sign_in_and_are_upgraded_to_argon2id(s).await;
    }
}
