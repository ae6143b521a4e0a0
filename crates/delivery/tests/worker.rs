//! The outbox worker against an in-memory store that behaves like the real one for the
//! outbox, the audit log and codes (leases, retries, bodies cleared once sent).

// Test helpers live outside `#[test]` functions, where clippy.toml's allow-*-in-tests does
// not reach; failing loudly is what a test should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sspr_app::ports::*;
use sspr_delivery::{OutboxWorker, SendError, Sender, WorkerConfig};
use sspr_domain::audit::{Activity, AuditEvent};
use sspr_domain::clock::UnixTime;
use sspr_domain::{Clock, FlowState, ManualClock, Method, Policy};

const T0: UnixTime = 1_700_000_000;

#[derive(Clone)]
struct Row {
    msg: OutboxMessage,
    lease_until: UnixTime,
}

#[derive(Default)]
struct FakeStore {
    outbox: Mutex<Vec<Row>>,
    audit: Mutex<Vec<AuditEvent>>,
    undeliverable_codes: Mutex<Vec<i64>>,
    /// Ids handed to `outbox_release`.
    released: Mutex<Vec<i64>>,
    /// Messages handed out by `claim_outbox`, all calls together.
    claims: AtomicUsize,
    /// Simulates leases that have run out: claim hands out queued messages even if leased.
    ignore_leases: bool,
}

impl FakeStore {
    fn row(&self, id: i64) -> OutboxMessage {
        self.outbox
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.msg.id == id)
            .unwrap()
            .msg
            .clone()
    }
    fn push(&self, mut m: OutboxMessage) -> i64 {
        let mut o = self.outbox.lock().unwrap();
        m.id = o.len() as i64 + 1;
        let id = m.id;
        o.push(Row {
            msg: m,
            lease_until: 0,
        });
        id
    }
}

#[async_trait]
impl StepStore for FakeStore {
    async fn take_slots(&self, _: &[Slot], _: UnixTime) -> StoreResult<Option<usize>> {
        Ok(None)
    }
    async fn hit(&self, _: &str, _: UnixTime) -> StoreResult<()> {
        Ok(())
    }
    async fn hits_since(&self, _: &str, _: UnixTime) -> StoreResult<u32> {
        Ok(0)
    }
    async fn hit_within(&self, _: &str, _: UnixTime, _: UnixTime, _: u32) -> StoreResult<bool> {
        Ok(true)
    }
    async fn insert_flow(&self, _: &FlowRecord) -> StoreResult<()> {
        Ok(())
    }
    async fn throttle_state(
        &self,
        _: &[String],
        _: &[Slot],
        _: UnixTime,
    ) -> StoreResult<ThrottleState> {
        Ok(ThrottleState::default())
    }
    async fn start_flow(
        &self,
        _: &FlowRecord,
        _: &AuditEvent,
        _: &[Slot],
    ) -> StoreResult<Option<usize>> {
        Ok(None)
    }
    async fn issue_code(&self, _: &CodeRecord, m: &OutboxMessage) -> StoreResult<i64> {
        Ok(self.push(m.clone()))
    }
    async fn send_code(
        &self,
        _: &CodeRecord,
        m: &OutboxMessage,
        _: &[Slot],
        _: &AuditEvent,
    ) -> StoreResult<Option<usize>> {
        self.push(m.clone());
        Ok(None)
    }
    async fn draw_questions(&self, _: &str, _: &[String], _: &AuditEvent) -> StoreResult<()> {
        Ok(())
    }
    async fn consume_code(&self, _: i64, _: UnixTime, _: u32) -> StoreResult<bool> {
        Ok(false)
    }
    async fn totp_use_step(&self, _: &str, _: i64) -> StoreResult<bool> {
        Ok(false)
    }
    async fn verify_step(&self, _: &VerifiedStep) -> StoreResult<StepResult> {
        Ok(StepResult::FlowMoved)
    }
}

#[async_trait]
impl FinishStore for FakeStore {
    async fn flow_begin_finish(&self, _: &str, _: i64, _: Option<&str>) -> StoreResult<bool> {
        Ok(false)
    }
    async fn flow_abort_finish(&self, _: &str, _: i64) -> StoreResult<bool> {
        Ok(false)
    }
    async fn flow_complete(&self, _: &sspr_app::ports::Completion) -> StoreResult<()> {
        Ok(())
    }
    async fn flows_finishing(&self, _: i64, _: u32) -> StoreResult<Vec<FlowRecord>> {
        Ok(Vec::new())
    }
    async fn take_abandoned_flows(&self, _: i64, _: u32) -> StoreResult<Vec<FlowRecord>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl ReminderStore for FakeStore {
    async fn queue_reminder(
        &self,
        _: &Reminder,
        _: &[OutboxMessage],
        _: &AuditEvent,
    ) -> StoreResult<bool> {
        Ok(false)
    }
    async fn reminder_sent(&self, _: &str, _: UnixTime, _: u32) -> StoreResult<bool> {
        Ok(false)
    }
    async fn reminders(&self) -> StoreResult<Vec<Reminder>> {
        Ok(Vec::new())
    }
    async fn record_reminder(&self, _: &Reminder) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl SkipStore for FakeStore {
    async fn registration_skips(&self, _: &str) -> StoreResult<u32> {
        Ok(0)
    }
    async fn skip_registration(&self, _: &str, _: UnixTime, _: u32) -> StoreResult<Option<u32>> {
        Ok(None)
    }
    async fn set_registration_skips(&self, _: &str, _: u32, _: UnixTime) -> StoreResult<()> {
        Ok(())
    }
    async fn all_registration_skips(&self) -> StoreResult<Vec<(String, u32, UnixTime)>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl ExportStore for FakeStore {
    async fn export_lease(
        &self,
        _: &str,
        _: &str,
        _: UnixTime,
        _: UnixTime,
    ) -> StoreResult<Option<i64>> {
        Ok(None)
    }
    async fn export_advance(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
        _: UnixTime,
    ) -> StoreResult<bool> {
        Ok(false)
    }
    async fn export_cursors(&self) -> StoreResult<Vec<(String, i64, UnixTime)>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl CeremonyStore for FakeStore {
    async fn put_ceremony(&self, _: &str, _: &str, _: &str, _: UnixTime) -> StoreResult<()> {
        Ok(())
    }
    async fn take_ceremony(&self, _: &str, _: UnixTime) -> StoreResult<Option<String>> {
        Ok(None)
    }
}

#[async_trait]
impl RecoveryStore for FakeStore {
    async fn replace_recovery_codes(&self, _: &str, _: &[String], _: UnixTime) -> StoreResult<()> {
        Ok(())
    }
    async fn use_recovery_code(&self, _: &str, _: &str, _: UnixTime) -> StoreResult<RecoveryUse> {
        Ok(RecoveryUse::Unknown)
    }
    async fn recovery_codes(&self, _: &str) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl AuditStore for FakeStore {
    async fn audit(&self, e: &AuditEvent) -> StoreResult<()> {
        self.audit.lock().unwrap().push(e.clone());
        Ok(())
    }
    async fn audit_query(&self, _: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
        Ok(vec![])
    }
    async fn audit_chain_page(&self, _: i64, _: u32) -> StoreResult<Vec<ChainedEvent>> {
        Ok(vec![])
    }
    async fn audit_head(&self) -> StoreResult<Option<(i64, Option<String>)>> {
        Ok(None)
    }
    async fn audit_prune_end(
        &self,
        _: UnixTime,
        _: u32,
    ) -> StoreResult<Option<(i64, Option<String>)>> {
        Ok(None)
    }
    async fn audit_prune(&self, _: &AuditCheckpoint) -> StoreResult<u64> {
        Ok(0)
    }
    async fn insert_audit_checkpoint(&self, _: &AuditCheckpoint) -> StoreResult<()> {
        Ok(())
    }
    async fn audit_checkpoints(&self) -> StoreResult<Vec<AuditCheckpoint>> {
        Ok(vec![])
    }
}

#[async_trait]
impl Store for FakeStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
    async fn load_policy(&self) -> StoreResult<Option<Policy>> {
        Ok(None)
    }
    async fn save_policy(&self, _: &Policy, _: UnixTime) -> StoreResult<()> {
        Ok(())
    }
    async fn flow(&self, _: &str) -> StoreResult<Option<FlowRecord>> {
        Ok(None)
    }
    async fn flow_questions(&self, _: &str, _: &[String]) -> StoreResult<()> {
        Ok(())
    }
    async fn flow_transition(&self, _: &str, _: FlowState, _: FlowState) -> StoreResult<bool> {
        Ok(false)
    }
    async fn close_other_flows(&self, _: &str, _: &str) -> StoreResult<()> {
        Ok(())
    }
    async fn latest_code(&self, _: &str, _: &str) -> StoreResult<Option<CodeRecord>> {
        Ok(None)
    }
    async fn code_attempt_failed(&self, _: i64) -> StoreResult<()> {
        Ok(())
    }
    async fn code_delivery_failed(&self, id: i64) -> StoreResult<()> {
        self.undeliverable_codes.lock().unwrap().push(id);
        Ok(())
    }
    async fn block(&self, _: &str, _: UnixTime) -> StoreResult<()> {
        Ok(())
    }
    async fn blocked_until(&self, _: &str, _: UnixTime) -> StoreResult<Option<UnixTime>> {
        Ok(None)
    }
    async fn clear_throttle(&self, _: &[String]) -> StoreResult<()> {
        Ok(())
    }
    async fn clear_throttle_prefix(&self, _: &str) -> StoreResult<()> {
        Ok(())
    }
    async fn methods(&self, _: &str) -> StoreResult<Vec<MethodRecord>> {
        Ok(vec![])
    }
    async fn put_method(&self, _: &MethodRecord) -> StoreResult<()> {
        Ok(())
    }
    async fn activate_method(&self, _: &str, _: Method, _: UnixTime) -> StoreResult<bool> {
        Ok(false)
    }
    async fn delete_method(&self, _: &str, _: Method) -> StoreResult<bool> {
        Ok(false)
    }
    async fn answers(&self, _: &str) -> StoreResult<Vec<(String, String)>> {
        Ok(vec![])
    }
    async fn put_answers(&self, _: &str, _: &[(String, String)], _: UnixTime) -> StoreResult<()> {
        Ok(())
    }
    async fn confirmed_at(&self, _: &str) -> StoreResult<Option<UnixTime>> {
        Ok(None)
    }
    async fn confirm(&self, _: &str, _: UnixTime) -> StoreResult<()> {
        Ok(())
    }
    async fn insert_session(&self, _: &SessionRecord) -> StoreResult<()> {
        Ok(())
    }
    async fn session(&self, _: &str) -> StoreResult<Option<SessionRecord>> {
        Ok(None)
    }
    async fn delete_session(&self, _: &str) -> StoreResult<()> {
        Ok(())
    }
    async fn enqueue(&self, m: &OutboxMessage) -> StoreResult<i64> {
        Ok(self.push(m.clone()))
    }
    async fn claim_outbox(
        &self,
        now: UnixTime,
        lease: i64,
        limit: u32,
        channel: Option<Channel>,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let mut o = self.outbox.lock().unwrap();
        let mut out = Vec::new();
        for r in o.iter_mut() {
            let free = self.ignore_leases || r.lease_until <= now;
            if r.msg.status == "queued"
                && r.msg.next_attempt_at <= now
                && free
                && channel.is_none_or(|c| c == r.msg.channel)
                && out.len() < limit as usize
            {
                self.claims.fetch_add(1, Ordering::SeqCst);
                r.lease_until = now + lease;
                r.msg.attempts += 1;
                out.push(r.msg.clone());
            }
        }
        Ok(out)
    }
    async fn outbox_release(&self, ids: &[i64]) -> StoreResult<()> {
        let mut o = self.outbox.lock().unwrap();
        for r in o.iter_mut() {
            if ids.contains(&r.msg.id) && r.msg.status == "queued" && r.lease_until > 0 {
                r.lease_until = 0;
                r.msg.attempts = r.msg.attempts.saturating_sub(1);
            }
        }
        self.released.lock().unwrap().extend_from_slice(ids);
        Ok(())
    }
    async fn outbox_sent(&self, id: i64, keep_body: bool) -> StoreResult<()> {
        let mut o = self.outbox.lock().unwrap();
        let r = o.iter_mut().find(|r| r.msg.id == id).unwrap();
        r.msg.status = "sent".into();
        r.lease_until = 0;
        if !keep_body {
            r.msg.body.clear();
        }
        Ok(())
    }
    async fn outbox_failed(
        &self,
        id: i64,
        retry_at: Option<UnixTime>,
        error: &str,
    ) -> StoreResult<()> {
        let mut o = self.outbox.lock().unwrap();
        let r = o.iter_mut().find(|r| r.msg.id == id).unwrap();
        r.msg.last_error = error.into();
        r.lease_until = 0;
        match retry_at {
            Some(t) => r.msg.next_attempt_at = t,
            None => {
                r.msg.status = "failed".into();
                r.msg.body.clear();
            }
        }
        Ok(())
    }
    async fn outbox_list(&self, _: u32) -> StoreResult<Vec<OutboxMessage>> {
        Ok(self
            .outbox
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.msg.clone())
            .collect())
    }
    async fn outbox_backlog(&self) -> StoreResult<(u64, Option<UnixTime>)> {
        Ok((0, None))
    }
    async fn insert_admin_token(&self, _: &AdminToken) -> StoreResult<()> {
        Ok(())
    }
    async fn admin_token(&self, _: &str) -> StoreResult<Option<AdminToken>> {
        Ok(None)
    }
    async fn admin_tokens(&self) -> StoreResult<Vec<AdminToken>> {
        Ok(Vec::new())
    }
    async fn registration_ids(&self) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }
    async fn totp_last_step(&self, _: &str) -> StoreResult<i64> {
        Ok(0)
    }
    async fn purge_expired(&self, _: UnixTime) -> StoreResult<u64> {
        Ok(0)
    }
}

/// A sender that answers from a script keyed by recipient, counts sends per message and the
/// most sends in progress at once.
#[derive(Default)]
struct ScriptSender {
    fail: HashMap<String, SendError>,
    delay: Duration,
    sends: Mutex<HashMap<i64, usize>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

#[async_trait]
impl Sender for ScriptSender {
    async fn send(&self, msg: &OutboxMessage) -> Result<(), SendError> {
        *self.sends.lock().unwrap().entry(msg.id).or_default() += 1;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        match self.fail.get(&msg.recipient) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl ScriptSender {
    fn count(&self, id: i64) -> usize {
        self.sends.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
}

fn email(to: &str) -> OutboxMessage {
    OutboxMessage::new(Channel::Email, to, "Your code", "Your code is 493817", T0)
}

fn worker(
    store: &Arc<FakeStore>,
    email: &Arc<ScriptSender>,
    sms: Option<Arc<ScriptSender>>,
    clock: &ManualClock,
    cfg: WorkerConfig,
) -> OutboxWorker {
    OutboxWorker::new(
        store.clone(),
        email.clone(),
        sms.map(|s| s as Arc<dyn Sender>),
        Arc::new(clock.clone()),
        cfg,
    )
}

#[tokio::test]
async fn sends_and_clears_the_body() {
    let store = Arc::new(FakeStore::default());
    let sender = Arc::new(ScriptSender::default());
    let clock = ManualClock::new(T0);
    let id = store.push(email("alice@example.com"));
    let w = worker(&store, &sender, None, &clock, WorkerConfig::default());
    assert_eq!(w.run_once().await, 1);
    let m = store.row(id);
    assert_eq!(m.status, "sent");
    assert!(
        m.body.is_empty(),
        "the body (with its code) is cleared once sent"
    );
    assert_eq!(sender.count(id), 1);
    // Nothing left to do.
    assert_eq!(w.run_once().await, 0);
    assert_eq!(sender.count(id), 1);
    assert!(store.audit.lock().unwrap().is_empty());
}

#[tokio::test]
async fn keep_bodies_for_the_dev_outbox() {
    let store = Arc::new(FakeStore::default());
    let clock = ManualClock::new(T0);
    let id = store.push(email("alice@example.com"));
    let w = OutboxWorker::new(
        store.clone(),
        Arc::new(sspr_delivery::DevSender),
        Some(Arc::new(sspr_delivery::DevSender)),
        Arc::new(clock.clone()),
        WorkerConfig {
            keep_bodies: true,
            ..Default::default()
        },
    );
    assert_eq!(w.run_once().await, 1);
    let m = store.row(id);
    assert_eq!(
        (m.status.as_str(), m.body.as_str()),
        ("sent", "Your code is 493817")
    );
}

#[tokio::test]
async fn retries_with_backoff_then_gives_up_and_retires_the_code() {
    let store = Arc::new(FakeStore::default());
    let sender = Arc::new(ScriptSender {
        fail: HashMap::from([(
            "bob@example.com".to_string(),
            SendError::retryable("connection", "smtp: connection refused for bob@example.com"),
        )]),
        ..Default::default()
    });
    let clock = ManualClock::new(T0);
    let mut m = email("bob@example.com");
    m.code_id = Some(77);
    m.flow_id = Some("0123456789abcdef0123456789abcdef".into());
    m.target = "bob".into();
    let id = store.push(m);
    let w = worker(&store, &sender, None, &clock, WorkerConfig::default());

    for (attempt, wait) in [(1, 5), (2, 15), (3, 45), (4, 135)] {
        assert_eq!(w.run_once().await, 1);
        let m = store.row(id);
        assert_eq!((m.status.as_str(), m.attempts), ("queued", attempt));
        assert_eq!(m.next_attempt_at, clock.now() + wait, "attempt {attempt}");
        assert!(
            m.last_error.contains("b•b@e••••••.com") && !m.last_error.contains("bob@example.com"),
            "{}",
            m.last_error
        );
        // Not due a second before the backoff ends.
        clock.advance(wait - 1);
        assert_eq!(w.run_once().await, 0);
        clock.advance(1);
    }
    assert!(store.undeliverable_codes.lock().unwrap().is_empty());
    assert_eq!(w.run_once().await, 1);
    let m = store.row(id);
    assert_eq!((m.status.as_str(), m.attempts), ("failed", 5));
    assert_eq!(sender.count(id), 5);
    assert_eq!(*store.undeliverable_codes.lock().unwrap(), vec![77]);

    let audit = store.audit.lock().unwrap();
    assert_eq!(audit.len(), 1);
    let ev = &audit[0];
    assert_eq!(ev.activity, Activity::DeliveryFailed);
    assert_eq!(
        (ev.actor.as_str(), ev.target.as_str(), ev.reason.as_str()),
        ("system", "bob", "connection")
    );
    assert_eq!(ev.flow_id.as_deref(), Some("0123456789ab"));
    assert_eq!(ev.details["channel"], "email");
    let json = serde_json::to_string(ev).unwrap();
    assert!(
        !json.contains("bob@example.com") && !json.contains("493817"),
        "{json}"
    );
}

#[tokio::test]
async fn permanent_failure_gives_up_at_once() {
    let store = Arc::new(FakeStore::default());
    let sender = Arc::new(ScriptSender {
        fail: HashMap::from([(
            "carol@example.com".to_string(),
            SendError::permanent("rejected", "smtp: permanent error (550): no such user"),
        )]),
        ..Default::default()
    });
    let clock = ManualClock::new(T0);
    let mut m = email("carol@example.com");
    m.code_id = Some(5);
    let id = store.push(m);
    let ok = store.push(email("dave@example.com"));
    let w = worker(&store, &sender, None, &clock, WorkerConfig::default());
    assert_eq!(w.run_once().await, 2);
    assert_eq!(store.row(id).status, "failed");
    assert_eq!(store.row(id).attempts, 1);
    assert_eq!(store.row(ok).status, "sent");
    assert_eq!(*store.undeliverable_codes.lock().unwrap(), vec![5]);
    assert_eq!(store.audit.lock().unwrap()[0].reason, "rejected");
}

#[tokio::test]
async fn sms_without_a_gateway_fails_permanently_and_sms_goes_to_the_sms_sender() {
    let store = Arc::new(FakeStore::default());
    let mail = Arc::new(ScriptSender::default());
    let clock = ManualClock::new(T0);
    let sms_msg = OutboxMessage::new(Channel::Sms, "+4915112345678", "", "Code 493817", T0);
    let id = store.push(sms_msg.clone());
    let w = worker(&store, &mail, None, &clock, WorkerConfig::default());
    assert_eq!(w.run_once().await, 1);
    assert_eq!(store.row(id).status, "failed");
    assert_eq!(mail.count(id), 0, "an SMS never goes out as email");
    let ev = store.audit.lock().unwrap()[0].clone();
    assert_eq!(
        (ev.reason.as_str(), ev.details["channel"].as_str()),
        ("no_gateway", Some("sms"))
    );
    assert_eq!(ev.details["destination"], "+•••••••••••78");

    let sms = Arc::new(ScriptSender::default());
    let id2 = store.push(sms_msg);
    let w = worker(
        &store,
        &mail,
        Some(sms.clone()),
        &clock,
        WorkerConfig::default(),
    );
    assert_eq!(w.run_once().await, 1);
    assert_eq!((sms.count(id2), mail.count(id2)), (1, 0));
    assert_eq!(store.row(id2).status, "sent");
}

#[tokio::test]
async fn sends_concurrently_but_bounded_and_each_once() {
    let store = Arc::new(FakeStore::default());
    let sender = Arc::new(ScriptSender {
        delay: Duration::from_millis(40),
        ..Default::default()
    });
    let clock = ManualClock::new(T0);
    let ids: Vec<i64> = (0..20)
        .map(|i| store.push(email(&format!("u{i}@example.com"))))
        .collect();
    let w = worker(
        &store,
        &sender,
        None,
        &clock,
        WorkerConfig {
            email_concurrency: 4,
            ..Default::default()
        },
    );
    assert_eq!(w.run_once().await, 20);
    let max = sender.max_running.load(Ordering::SeqCst);
    assert!((2..=4).contains(&max), "max concurrent sends {max}");
    for id in ids {
        assert_eq!(sender.count(id), 1);
        assert_eq!(store.row(id).status, "sent");
    }
}

#[tokio::test]
async fn a_message_still_in_flight_is_not_sent_twice() {
    // The store hands out the same message to two overlapping rounds (as if its lease ran
    // out while the first send was slow); the worker must still send it once.
    let store = Arc::new(FakeStore {
        ignore_leases: true,
        ..Default::default()
    });
    let sender = Arc::new(ScriptSender {
        delay: Duration::from_millis(200),
        ..Default::default()
    });
    let clock = ManualClock::new(T0);
    let id = store.push(email("erin@example.com"));
    let w = worker(&store, &sender, None, &clock, WorkerConfig::default());
    let (a, b) = tokio::join!(w.run_once(), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        w.run_once().await
    });
    assert_eq!(a + b, 1);
    assert_eq!(sender.count(id), 1);
}

#[tokio::test]
async fn a_hanging_send_times_out_and_is_retried() {
    let store = Arc::new(FakeStore::default());
    let sender = Arc::new(ScriptSender {
        delay: Duration::from_secs(30),
        ..Default::default()
    });
    let clock = ManualClock::new(T0);
    let id = store.push(email("frank@example.com"));
    let w = worker(
        &store,
        &sender,
        None,
        &clock,
        WorkerConfig {
            email_timeout: Duration::from_millis(100),
            ..Default::default()
        },
    );
    assert_eq!(w.run_once().await, 1);
    let m = store.row(id);
    assert_eq!(
        (m.status.as_str(), m.attempts, m.next_attempt_at),
        ("queued", 1, T0 + 5)
    );
}

#[tokio::test]
async fn run_wakes_on_notify_and_stops_on_shutdown() {
    let store = Arc::new(FakeStore::default());
    let sender = Arc::new(ScriptSender::default());
    let clock = ManualClock::new(T0);
    // A long idle pause: only the notification can make the second message go out quickly.
    let w = worker(
        &store,
        &sender,
        None,
        &clock,
        WorkerConfig {
            idle: Duration::from_secs(3600),
            ..Default::default()
        },
    );
    let notify = w.notifier();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(w.run(rx));

    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = store.push(email("gina@example.com"));
    notify.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.row(id).status != "sent" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not woken by notify"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("worker did not stop")
        .unwrap();
    assert_eq!(clock.now(), T0);
}

// ---- Continuous dispatch, deadlines and shutdown, with real senders where they matter ----

type Events = Arc<Mutex<Vec<String>>>;

fn event(ev: &Events, what: impl Into<String>) {
    ev.lock().unwrap().push(what.into());
}

/// An SMTP relay that accepts connections and never says a word; logs `smtp accepted` and
/// `smtp closed` (when the client hangs up).
async fn silent_relay(ev: Events) -> u16 {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            event(&ev, "smtp accepted");
            let ev = ev.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
                event(&ev, "smtp closed");
            });
        }
    });
    port
}

/// An SMS gateway on 127.0.0.1: logs `sms received` and answers with `answer`.
async fn gateway(ev: Events, status: u16, answer: &'static str) -> String {
    let app = axum::Router::new().fallback(move || {
        let ev = ev.clone();
        async move {
            event(&ev, "sms received");
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                answer.to_string(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/send")
}

fn real_smtp(port: u16, timeout_secs: u64) -> Arc<dyn Sender> {
    Arc::new(
        sspr_delivery::SmtpSender::new(&sspr_delivery::SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: sspr_delivery::SmtpTls::None,
            allow_insecure: true,
            from: "sspr@example.com".into(),
            timeout_secs,
            ..Default::default()
        })
        .unwrap(),
    )
}

fn real_sms(url: String, timeout_secs: u64) -> Arc<dyn Sender> {
    Arc::new(
        sspr_delivery::SmsSender::new(&sspr_delivery::SmsConfig {
            url,
            allow_insecure: true,
            token: "tok".into(),
            timeout_secs,
            ..Default::default()
        })
        .unwrap(),
    )
}

fn sms(to: &str) -> OutboxMessage {
    OutboxMessage::new(Channel::Sms, to, "", "Your code is 493817", T0)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 30 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_relay_holds_back_neither_sms_nor_the_rest_of_email() {
    let ev: Events = Arc::default();
    let smtp_port = silent_relay(ev.clone()).await;
    let url = gateway(ev.clone(), 200, r#"{"status":"queued"}"#).await;
    let store = Arc::new(FakeStore::default());
    let clock = ManualClock::new(T0);
    let w = OutboxWorker::new(
        store.clone(),
        real_smtp(smtp_port, 5),
        Some(real_sms(url, 5)),
        Arc::new(clock.clone()),
        WorkerConfig {
            // Only a wake-up can start anything quickly.
            idle: Duration::from_secs(60),
            ..Default::default()
        }
        .with_deadlines(Duration::from_secs(5), Duration::from_secs(5)),
    );
    let notify = w.notifier();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(w.run(rx));

    let hanging = store.push(email("alice@example.com"));
    notify.notify_one();
    wait_for("the relay's connection", || {
        ev.lock().unwrap().contains(&"smtp accepted".to_string())
    })
    .await;
    // Queued while the relay hangs: goes out at once.
    let code = store.push(sms("+4915112345678"));
    notify.notify_one();
    wait_for("the SMS", || store.row(code).status == "sent").await;
    assert_eq!(
        ev.lock().unwrap().clone(),
        vec!["smtp accepted", "sms received"],
        "the SMS was sent while the SMTP attempt was still hanging"
    );
    // The hanging email ends at its own deadline, as a retryable failure.
    wait_for("the email's deadline", || {
        store.row(hanging).last_error.contains("timeout_secs")
    })
    .await;
    let m = store.row(hanging);
    assert_eq!((m.status.as_str(), m.attempts), ("queued", 1));
    // The relay's reader sees the hang-up on its own task, possibly after the failure is
    // recorded: wait for it rather than expect it already logged.
    wait_for("the relay to see the hang-up", || {
        ev.lock().unwrap().contains(&"smtp closed".to_string())
    })
    .await;
    assert_eq!(
        ev.lock().unwrap().clone(),
        vec!["smtp accepted", "sms received", "smtp closed"]
    );
    tx.send(true).unwrap();
    run.await.unwrap();
}

/// Hangs for recipients starting with `hang`, until released; logs starts and ends.
#[derive(Default)]
struct GateSender {
    ev: Events,
    open: tokio::sync::Notify,
}

#[async_trait]
impl Sender for GateSender {
    async fn send(&self, msg: &OutboxMessage) -> Result<(), SendError> {
        event(&self.ev, format!("start {}", msg.recipient));
        if msg.recipient.starts_with("hang") {
            self.open.notified().await;
        }
        event(&self.ev, format!("end {}", msg.recipient));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_email_holds_only_its_own_slot_and_nothing_is_leased_waiting() {
    let store = Arc::new(FakeStore::default());
    let gate = Arc::new(GateSender::default());
    let clock = ManualClock::new(T0);
    let w = OutboxWorker::new(
        store.clone(),
        gate.clone(),
        None,
        Arc::new(clock.clone()),
        WorkerConfig {
            email_concurrency: 2,
            idle: Duration::from_secs(60),
            ..Default::default()
        },
    );
    let notify = w.notifier();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(w.run(rx));
    let slow = store.push(email("hang1@example.com"));
    let later: Vec<i64> = (0..5)
        .map(|i| store.push(email(&format!("u{i}@example.com"))))
        .collect();
    notify.notify_one();
    wait_for("the other five", || {
        later.iter().all(|id| store.row(*id).status == "sent")
    })
    .await;
    assert_eq!(store.row(slow).status, "queued", "still hanging");
    assert_eq!(
        store.claims.load(Ordering::SeqCst),
        6,
        "each message claimed once, when a slot was free"
    );
    gate.open.notify_one();
    wait_for("the slow one", || store.row(slow).status == "sent").await;
    tx.send(true).unwrap();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_what_is_still_being_sent_and_claims_nothing_more() {
    let store = Arc::new(FakeStore::default());
    let gate = Arc::new(GateSender::default());
    let clock = ManualClock::new(T0);
    let w = OutboxWorker::new(
        store.clone(),
        gate.clone(),
        None,
        Arc::new(clock.clone()),
        WorkerConfig {
            email_concurrency: 2,
            idle: Duration::from_secs(60),
            shutdown_grace: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let ids: Vec<i64> = (0..3)
        .map(|i| store.push(email(&format!("hang{i}@example.com"))))
        .collect();
    let run = tokio::spawn(w.run(rx));
    wait_for("two sends under way", || gate.ev.lock().unwrap().len() == 2).await;
    assert_eq!(store.claims.load(Ordering::SeqCst), 2);
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run returns after the grace")
        .unwrap();
    let mut released = store.released.lock().unwrap().clone();
    released.sort();
    assert_eq!(
        released,
        ids[..2].to_vec(),
        "the two under way are given back"
    );
    // Another worker gets all three at once, not after the lease, with attempts intact.
    let got = store.claim_outbox(T0, 60, 10, None).await.unwrap();
    assert_eq!(
        got.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(),
        ids.iter().map(|id| (*id, 1)).collect::<Vec<_>>()
    );
    assert!(
        !gate.ev.lock().unwrap().iter().any(|e| e.starts_with("end")),
        "cut short, not finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_send_under_way_finish_within_the_grace() {
    let store = Arc::new(FakeStore::default());
    let gate = Arc::new(GateSender::default());
    let clock = ManualClock::new(T0);
    let w = OutboxWorker::new(
        store.clone(),
        gate.clone(),
        None,
        Arc::new(clock.clone()),
        WorkerConfig {
            shutdown_grace: Duration::from_secs(20),
            ..Default::default()
        },
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let id = store.push(email("hang@example.com"));
    let run = tokio::spawn(w.run(rx));
    wait_for("the send", || gate.ev.lock().unwrap().len() == 1).await;
    tx.send(true).unwrap();
    // Stopping, but the send under way may still finish.
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.open.notify_one();
    run.await.unwrap();
    assert_eq!(store.row(id).status, "sent");
    assert!(store.released.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_while_idle_goes_out_on_the_apps_wake_up() {
    let store = Arc::new(FakeStore::default());
    let sender = Arc::new(ScriptSender::default());
    let clock = ManualClock::new(T0);
    // The handle the App holds (`App::outbox_wake`) and rings after queueing.
    let wake = Arc::new(tokio::sync::Notify::new());
    let w = worker(
        &store,
        &sender,
        Some(Arc::new(ScriptSender::default())),
        &clock,
        WorkerConfig {
            idle: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .with_notifier(wake.clone());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(w.run(rx));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mail = store.push(email("gina@example.com"));
    let text = store.push(sms("+4915112345678"));
    wake.notify_one();
    wait_for("both channels", || {
        store.row(mail).status == "sent" && store.row(text).status == "sent"
    })
    .await;
    tx.send(true).unwrap();
    run.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_answering_garbage_is_not_delivered_and_the_answer_is_kept() {
    let ev: Events = Arc::default();
    let url = gateway(ev.clone(), 200, "<html>Welcome to the hotel wifi</html>").await;
    let store = Arc::new(FakeStore::default());
    let clock = ManualClock::new(T0);
    let mut m = sms("+4915112345678");
    m.code_id = Some(9);
    let id = store.push(m);
    let w = OutboxWorker::new(
        store.clone(),
        Arc::new(ScriptSender::default()),
        Some(real_sms(url, 5)),
        Arc::new(clock.clone()),
        WorkerConfig::default(),
    );
    assert_eq!(w.run_once().await, 1);
    let m = store.row(id);
    assert_eq!(
        (m.status.as_str(), m.attempts, m.next_attempt_at),
        ("queued", 1, T0 + 5),
        "not delivered: tried again later"
    );
    assert!(
        m.last_error
            .contains("<html>Welcome to the hotel wifi</html>"),
        "{}",
        m.last_error
    );
    assert!(!m.last_error.contains("493817"), "{}", m.last_error);
    // After the last attempt it is given up, and the code retired.
    for _ in 1..5 {
        clock.advance(6 * 3600);
        assert_eq!(w.run_once().await, 1);
    }
    assert_eq!(store.row(id).status, "failed");
    assert_eq!(*store.undeliverable_codes.lock().unwrap(), vec![9]);
    assert_eq!(store.audit.lock().unwrap()[0].reason, "unexpected_answer");
    assert_eq!(ev.lock().unwrap().len(), 5);
}
