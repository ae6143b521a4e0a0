//! The seams between the application and the outside world. The store, the directory and the
//! outbox worker implement these; the services only ever see the traits.

use async_trait::async_trait;
use sspr_domain::audit::{Activity, AuditEvent, ClientType, Outcome};
use sspr_domain::clock::UnixTime;
use sspr_domain::{FlowKind, FlowState, Method, Policy};

#[derive(Debug, thiserror::Error)]
#[error("store: {message}")]
pub struct StoreError {
    pub message: String,
    /// The store cannot serve at all right now: down, unreachable, timed out, disk full,
    /// read-only, an I/O error. Such a failure says nothing about the request; the same
    /// request may succeed in a minute. Any other error is a bug or bad data.
    pub unavailable: bool,
}

/// An error that is not about availability, built like the tuple struct `StoreError` once was
/// so that `StoreError(format!(…))` reads the same everywhere.
#[allow(non_snake_case)]
pub fn StoreError(message: String) -> StoreError {
    StoreError {
        message,
        unavailable: false,
    }
}

impl StoreError {
    /// The store cannot serve right now (see [`StoreError::unavailable`]).
    pub fn unavailable(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
            unavailable: true,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One reset or unlock flow. `id` is the SHA-256 of the bearer token the client holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    pub id: String,
    pub kind: FlowKind,
    pub state: FlowState,
    /// The directory's stable id of the user; empty for an ineligible flow.
    pub user_id: String,
    /// The canonical login as entered: what the directory's filter matched.
    pub login: String,
    /// The account's own name (uid, sAMAccountName), under which the audit log records the
    /// flow; the login as entered when no account was found.
    pub account: String,
    pub display_name: String,
    pub privileged: bool,
    pub required: u8,
    /// Methods this flow may use (registered ∩ allowed).
    pub usable: Vec<Method>,
    pub verified: Vec<Method>,
    /// Question ids drawn for the current questions challenge.
    pub questions: Vec<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub client_type: ClientType,
    pub client_ip: String,
    /// When the directory write began (state `Finishing`); 0 before.
    pub finishing_at: UnixTime,
    /// The directory's password stamp read just before the write (see
    /// [`Directory::password_stamp`]); compared after a crash to learn whether it landed.
    pub dir_stamp: Option<String>,
    /// The language of the request that started the flow (for notices sent later).
    pub lang: crate::messages::Lang,
}

/// An admin API token as stored: its hash, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminToken {
    pub name: String,
    pub token_hash: String,
    pub created_at: UnixTime,
    /// `admin` or `helpdesk` ([`crate::admin::StaffRole`]).
    pub role: String,
}

/// Everything that records a finished directory write, stored in one transaction so that a
/// changed password never lacks its audit event or its notices.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub flow_id: String,
    pub user_id: String,
    pub event: AuditEvent,
    pub notices: Vec<OutboxMessage>,
    /// Throttle keys a success clears.
    pub clear: Vec<String>,
    /// A reset: the user's signed-in sessions (registration, admin pages) end with it, so
    /// whoever held them (a thief, if the reset recovers a stolen account) is signed out.
    pub end_sessions: bool,
}

/// A one-time code: email or SMS at reset, or confirming a new address at registration.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeRecord {
    pub id: i64,
    /// Flow id, or `reg:<user id>` at registration.
    pub owner: String,
    /// `email` or `sms`.
    pub purpose: String,
    /// HMAC of owner and code under the server key; the code itself is never stored.
    pub code_mac: String,
    pub destination: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub attempts: u32,
    pub used: bool,
    pub delivery_failed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodStatus {
    Pending,
    Active,
}

impl MethodStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
        }
    }
}

/// One registered method. `value` holds the address or number, or the sealed TOTP secret;
/// questions keep their hashed answers in a table of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRecord {
    pub user_id: String,
    pub method: Method,
    pub status: MethodStatus,
    pub value: String,
    pub created_at: UnixTime,
    pub verified_at: Option<UnixTime>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// SHA-256 of the bearer token.
    pub id: String,
    pub user_id: String,
    pub login: String,
    pub display_name: String,
    pub groups: Vec<String>,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            _ => None,
        }
    }
}

/// A message waiting in (or gone from) the durable outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub channel: Channel,
    pub recipient: String,
    pub subject: String,
    /// Cleared once sent (it may hold a code), except in the dev outbox.
    pub body: String,
    pub status: String,
    pub attempts: u32,
    pub created_at: UnixTime,
    pub next_attempt_at: UnixTime,
    pub last_error: String,
    /// The code this message carries, so a failed delivery can retire it.
    pub code_id: Option<i64>,
    pub flow_id: Option<String>,
    /// For the audit event of a failed delivery.
    pub target: String,
}

impl OutboxMessage {
    pub fn new(
        channel: Channel,
        recipient: &str,
        subject: &str,
        body: &str,
        now: UnixTime,
    ) -> Self {
        Self {
            id: 0,
            channel,
            recipient: recipient.into(),
            subject: subject.into(),
            body: body.into(),
            status: "queued".into(),
            attempts: 0,
            created_at: now,
            next_attempt_at: now,
            last_error: String::new(),
            code_id: None,
            flow_id: None,
            target: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
    pub user: Option<String>,
    pub activity: Option<Activity>,
    pub outcome: Option<Outcome>,
    pub client_type: Option<ClientType>,
    pub client_ip: Option<String>,
    pub support_code: Option<String>,
    /// Page forward through the whole log: events with a larger id, oldest first. Without it
    /// the query returns the newest `limit` events.
    pub after_id: Option<i64>,
    /// Page back from a listing newest first: events that come before this one (by time, then
    /// id), the next page's [`AuditCursor`].
    pub before: Option<AuditCursor>,
    pub limit: u32,
}

/// Where a newest-first page of the audit log ended: the last event's time and id. A keyset,
/// not an offset, so every page costs the same however deep it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub at: UnixTime,
    pub id: i64,
}

impl AuditCursor {
    pub fn of(e: &AuditEvent) -> Self {
        Self { at: e.at, id: e.id }
    }

    /// `TIME.ID`, as the API's `before` parameter and the CLI's `--before` take it.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at, self.id)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.trim().split_once('.')?;
        Some(Self {
            at: at.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// One event as the hash chain sees it: the hash stored with it (`None` for events
/// written before the chain existed) and the canonical bytes the hash covers.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedEvent {
    pub chain: Option<String>,
    pub event: AuditEvent,
    /// `details` exactly as stored: the hash covers the stored text, not a re-serialisation.
    pub details_text: String,
}

/// A signed statement "the log reached event `last_id`, whose chain hash was `chain`", made
/// periodically (`periodic`) and before old events are deleted (`prune`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub id: i64,
    pub at: UnixTime,
    pub kind: String,
    pub last_id: i64,
    pub chain: String,
    pub mac: String,
}

/// The audit log: written by every step, read by the CLI, the API and the admin pages, chained
/// for tamper evidence and pruned by retention. SQLite and PostgreSQL share one implementation.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends `event`, chained to the event before it.
    async fn audit(&self, event: &AuditEvent) -> StoreResult<()>;
    async fn audit_query(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>>;
    /// Events with an id above `after_id`, oldest first, as the chain covers them.
    async fn audit_chain_page(&self, after_id: i64, limit: u32) -> StoreResult<Vec<ChainedEvent>>;
    /// The newest event's id and chain hash.
    async fn audit_head(&self) -> StoreResult<Option<(i64, Option<String>)>>;
    /// The last event of the oldest `limit` events written before `before`: where the next
    /// pruning batch would end.
    async fn audit_prune_end(
        &self,
        before: UnixTime,
        limit: u32,
    ) -> StoreResult<Option<(i64, Option<String>)>>;
    /// Deletes every event up to `checkpoint.last_id` and records the (signed) checkpoint, in
    /// one transaction; returns how many events went.
    async fn audit_prune(&self, checkpoint: &AuditCheckpoint) -> StoreResult<u64>;
    async fn insert_audit_checkpoint(&self, checkpoint: &AuditCheckpoint) -> StoreResult<()>;
    async fn audit_checkpoints(&self) -> StoreResult<Vec<AuditCheckpoint>>;
}

/// The durable bracket around a directory write (see `crate::finish`): the gate before it, the
/// one completion transaction after it, and what the sweep needs to settle interrupted writes
/// and report abandoned flows. SQLite and PostgreSQL share one implementation of it.
#[async_trait]
pub trait FinishStore: Send + Sync + 'static {
    /// `Verified → Finishing`, recording when the write began and the directory's stamp read
    /// just before it. Exactly one caller gets `true`: the gate to the directory write.
    async fn flow_begin_finish(
        &self,
        id: &str,
        at: UnixTime,
        stamp: Option<&str>,
    ) -> StoreResult<bool>;
    /// `Finishing → Verified`, only if the write that began at `at` is still the current one
    /// (a later attempt is never undone by a late reconciler).
    async fn flow_abort_finish(&self, id: &str, at: UnixTime) -> StoreResult<bool>;
    /// Records a finished write in one transaction: the flow completed (from any open
    /// state: a writer that landed always records it), the user's other open flows closed,
    /// the counters cleared, the audit event stored, the notices queued.
    async fn flow_complete(&self, done: &Completion) -> StoreResult<()>;
    /// Flows whose write began before `before` and never settled (a crash, a hung directory).
    async fn flows_finishing(&self, before: UnixTime, limit: u32) -> StoreResult<Vec<FlowRecord>>;
    /// Marks open flows that expired before `now` as abandoned and returns them, each once.
    async fn take_abandoned_flows(&self, now: UnixTime, limit: u32)
    -> StoreResult<Vec<FlowRecord>>;
}

/// One password-expiry reminder: the days-before-expiry threshold it is for, for the password
/// that expires at `expires_at` (a new password starts a new series).
#[derive(Debug, Clone, PartialEq)]
pub struct Reminder {
    pub user_id: String,
    pub expires_at: UnixTime,
    pub days: u32,
    pub sent_at: UnixTime,
}

/// Password-expiry reminders, each queued at most once, whichever instance runs the job.
#[async_trait]
pub trait ReminderStore: Send + Sync + 'static {
    /// Records the reminder and, in the same transaction, queues its messages and stores its
    /// audit event. `false`, with nothing queued, when it was recorded before.
    async fn queue_reminder(
        &self,
        reminder: &Reminder,
        messages: &[OutboxMessage],
        event: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Whether the reminder was recorded already (for a dry run).
    async fn reminder_sent(
        &self,
        user_id: &str,
        expires_at: UnixTime,
        days: u32,
    ) -> StoreResult<bool>;
    /// Every reminder recorded (for `sspr store copy`).
    async fn reminders(&self) -> StoreResult<Vec<Reminder>>;
    /// Records a reminder without queueing anything (for `sspr store copy`).
    async fn record_reminder(&self, reminder: &Reminder) -> StoreResult<()>;
}

/// How many times each user went on without registering when asked to at sign-in.
#[async_trait]
pub trait SkipStore: Send + Sync + 'static {
    /// The user's skips so far (0 if none).
    async fn registration_skips(&self, user_id: &str) -> StoreResult<u32>;
    /// Counts one more skip if the user has had fewer than `max`, atomically across
    /// instances: the new count, or `None` when none was left.
    async fn skip_registration(
        &self,
        user_id: &str,
        now: UnixTime,
        max: u32,
    ) -> StoreResult<Option<u32>>;
    /// Sets the count outright; 0 forgets the user (registered, or `sspr store copy`).
    async fn set_registration_skips(
        &self,
        user_id: &str,
        skips: u32,
        at: UnixTime,
    ) -> StoreResult<()>;
    /// Every count, `(user id, skips, last skip at)` (for `sspr store copy`).
    async fn all_registration_skips(&self) -> StoreResult<Vec<(String, u32, UnixTime)>>;
}

/// The SIEM export's durable cursors, one per sink: the id of the last audit event its receiver
/// accepted, and a lease so that of the instances sharing a database exactly one exports a sink
/// at a time (two would send every event twice).
#[async_trait]
pub trait ExportStore: Send + Sync + 'static {
    /// Takes or renews `holder`'s lease on the sink `name` until `until`, creating its cursor
    /// at 0 (the log's beginning) the first time. The cursor if `holder` holds the lease now;
    /// `None` while another holder's lease runs.
    async fn export_lease(
        &self,
        name: &str,
        holder: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> StoreResult<Option<i64>>;
    /// Moves the cursor from `from` to `to` if `holder` still holds the lease and the cursor
    /// still reads `from` (compare and set): whether it moved. Of two instances that both
    /// believe they export, at most one advances.
    async fn export_advance(
        &self,
        name: &str,
        holder: &str,
        from: i64,
        to: i64,
        now: UnixTime,
    ) -> StoreResult<bool>;
    /// Every cursor: `(sink, last id, last moved at)`.
    async fn export_cursors(&self) -> StoreResult<Vec<(String, i64, UnixTime)>>;
}

/// What spending a recovery code found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryUse {
    Spent {
        left: u32,
    },
    /// In the set, but spent already.
    UsedBefore,
    /// Not in the user's current set.
    Unknown,
}

/// Saved recovery codes, kept as MACs under the server key. Each call is one transaction, and
/// atomic per user against concurrent callers on any instance.
#[async_trait]
pub trait RecoveryStore: Send + Sync + 'static {
    /// Replaces the user's set (voiding every earlier code) and marks the method active.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        digests: &[String],
        now: UnixTime,
    ) -> StoreResult<()>;
    /// Spends the code with this digest at `now`. Of any number of concurrent callers with one
    /// code, exactly one gets [`RecoveryUse::Spent`]. Spending the last code removes the method.
    async fn use_recovery_code(
        &self,
        user_id: &str,
        digest: &str,
        now: UnixTime,
    ) -> StoreResult<RecoveryUse>;
    /// The digests of the user's unused codes.
    async fn recovery_codes(&self, user_id: &str) -> StoreResult<Vec<String>>;
}

/// What a verification spends: the proof is used up in the same transaction as the flow's
/// step, so that a failure between them cannot use a code up without counting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A code sent by email or SMS, if unused, unexpired and within its attempts.
    Code { id: i64, max_attempts: u32 },
    /// An authenticator's time step, if later than the last one used (no replay).
    TotpStep { step: i64 },
    /// A saved recovery code, by its MAC.
    RecoveryCode { digest: String },
    /// Security questions and passkeys spend nothing in the store.
    Nothing,
}

/// One method proven on a flow: its proof spent, the flow moved from `before` to `after`
/// verified methods, and the audit event stored, all in one transaction.
#[derive(Debug, Clone)]
pub struct VerifiedStep {
    pub flow_id: String,
    pub user_id: String,
    pub before: Vec<Method>,
    pub after: Vec<Method>,
    pub state: FlowState,
    pub proof: Proof,
    pub now: UnixTime,
    pub event: AuditEvent,
}

/// What [`StepStore::verify_step`] did. Only `Verified` changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepResult {
    /// `recovery_left`: the codes left after spending a recovery code.
    Verified { recovery_left: Option<u32> },
    /// The proof was spent, expired or replayed before.
    ProofSpent,
    /// A recovery code that is not in the user's current set.
    ProofUnknown,
    /// A concurrent request changed the flow first; the proof is not spent.
    FlowMoved,
}

/// One slot to take in a rate-limit window: a hit on `key`, if it has fewer than `max` hits
/// after `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub key: String,
    pub since: UnixTime,
    pub max: u32,
}

/// What a rate-limit check reads, in one statement: for each block key, the end of the block
/// if it is still in force; for each window, the hits it holds after its `since`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThrottleState {
    pub blocked_until: Vec<Option<UnixTime>>,
    pub hits: Vec<u32>,
}

/// A flow step's writes: each call is one transaction.
#[async_trait]
pub trait StepStore: Send + Sync + 'static {
    /// Reads blocks and windows together, in one statement and without writing: the cheap
    /// check a step makes before it does any work, ahead of taking its slots for real.
    async fn throttle_state(
        &self,
        blocks: &[String],
        windows: &[Slot],
        now: UnixTime,
    ) -> StoreResult<ThrottleState>;
    /// Takes a slot in each window, in order, stopping at the first full one, whose index is
    /// returned. Slots taken before it stay taken (counted as tries). Atomic per key against
    /// concurrent callers on any instance.
    async fn take_slots(&self, slots: &[Slot], now: UnixTime) -> StoreResult<Option<usize>>;
    async fn hit(&self, key: &str, now: UnixTime) -> StoreResult<()>;
    async fn hits_since(&self, key: &str, since: UnixTime) -> StoreResult<u32>;
    /// Records a hit only if `key` has fewer than `max` hits after `since`, atomically: of any
    /// number of concurrent callers on any instance, at most `max` get `true` in a window.
    async fn hit_within(
        &self,
        key: &str,
        now: UnixTime,
        since: UnixTime,
        max: u32,
    ) -> StoreResult<bool>;
    async fn insert_flow(&self, flow: &FlowRecord) -> StoreResult<()>;
    /// Takes `slots` as [`StepStore::take_slots`] does (at the flow's `created_at`) and, if
    /// none is full, stores the new flow and the event of its start: one transaction. When a
    /// window is full its index comes back, and neither the flow nor the event is stored.
    async fn start_flow(
        &self,
        flow: &FlowRecord,
        event: &AuditEvent,
        slots: &[Slot],
    ) -> StoreResult<Option<usize>>;
    /// Retires the owner's earlier codes for `purpose`, stores the new one and queues its
    /// message, all in one transaction: a code is never live without its message, nor queued
    /// without its code.
    async fn issue_code(&self, code: &CodeRecord, message: &OutboxMessage) -> StoreResult<i64>;
    /// Takes `slots` (at the code's `created_at`) and, if none is full, issues the code as
    /// [`StepStore::issue_code`] does and stores `event`: one transaction, so a code never
    /// goes out unrecorded. When a window is full its index comes back and no code is made.
    async fn send_code(
        &self,
        code: &CodeRecord,
        message: &OutboxMessage,
        slots: &[Slot],
        event: &AuditEvent,
    ) -> StoreResult<Option<usize>>;
    /// Stores the questions drawn for a flow and the event that records the draw: one
    /// transaction.
    async fn draw_questions(
        &self,
        flow_id: &str,
        questions: &[String],
        event: &AuditEvent,
    ) -> StoreResult<()>;
    /// Marks the code used if it is unused, unexpired and has attempts left. Exactly once.
    async fn consume_code(&self, id: i64, now: UnixTime, max_attempts: u32) -> StoreResult<bool>;
    /// Accepts a TOTP time step only if it is later than the last one used (no replay).
    async fn totp_use_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;
    /// Spends the step's proof, records its method on the flow (if the flow's verified
    /// methods are still `before`) and stores its event; all of it, or nothing. The event of
    /// a spent recovery code gets `codes_left` in its details.
    async fn verify_step(&self, step: &VerifiedStep) -> StoreResult<StepResult>;
}

/// Passkey ceremonies between their two requests.
#[async_trait]
pub trait CeremonyStore: Send + Sync + 'static {
    /// Keeps a ceremony's state under `id` (replacing an earlier one of that id); `owner`, the
    /// user id, is for whoever reads the table.
    async fn put_ceremony(
        &self,
        id: &str,
        owner: &str,
        state: &str,
        expires_at: UnixTime,
    ) -> StoreResult<()>;
    /// Takes the ceremony's state: `Some` once, for one of any number of concurrent callers,
    /// while it has not expired.
    async fn take_ceremony(&self, id: &str, now: UnixTime) -> StoreResult<Option<String>>;
}

/// Everything sspr keeps. SQLite and PostgreSQL implement it and pass the same tests.
///
/// Methods that guard a security property are conditional updates that report whether they
/// applied (`consume_code`, `flow_transition`, `totp_use_step`): exactly one of several
/// concurrent callers gets `true`. Methods that read and then write several rows
/// (`issue_code`, `put_method`, `activate_method`, `delete_method`, `put_answers`) must be
/// atomic per user against concurrent callers on any instance: SQLite gets this from its
/// single writer, PostgreSQL from per-user advisory locks held for the transaction.
///
/// Times are the caller's clock: instances sharing a database must keep their clocks in sync.
#[async_trait]
pub trait Store:
    FinishStore
    + StepStore
    + ReminderStore
    + RecoveryStore
    + CeremonyStore
    + SkipStore
    + AuditStore
    + ExportStore
{
    /// Whether the store can write: a small write in a transaction (the heartbeat row), so a
    /// full disk, a read-only file or a database that went away all fail it. Callers bound it
    /// with a deadline.
    async fn ping(&self) -> StoreResult<()>;

    async fn load_policy(&self) -> StoreResult<Option<Policy>>;
    async fn save_policy(&self, policy: &Policy, now: UnixTime) -> StoreResult<()>;

    async fn flow(&self, id: &str) -> StoreResult<Option<FlowRecord>>;
    async fn flow_questions(&self, id: &str, questions: &[String]) -> StoreResult<()>;
    async fn flow_transition(&self, id: &str, from: FlowState, to: FlowState) -> StoreResult<bool>;
    /// Ends every other open flow of the user (a success revokes the rest).
    async fn close_other_flows(&self, user_id: &str, keep: &str) -> StoreResult<()>;

    /// The newest code of the owner for `purpose`, live or not.
    async fn latest_code(&self, owner: &str, purpose: &str) -> StoreResult<Option<CodeRecord>>;
    async fn code_attempt_failed(&self, id: i64) -> StoreResult<()>;
    async fn code_delivery_failed(&self, id: i64) -> StoreResult<()>;

    async fn block(&self, key: &str, until: UnixTime) -> StoreResult<()>;
    async fn blocked_until(&self, key: &str, now: UnixTime) -> StoreResult<Option<UnixTime>>;
    async fn clear_throttle(&self, keys: &[String]) -> StoreResult<()>;
    /// Clears every counter and block whose key starts with `prefix`.
    async fn clear_throttle_prefix(&self, prefix: &str) -> StoreResult<()>;

    async fn methods(&self, user_id: &str) -> StoreResult<Vec<MethodRecord>>;
    async fn put_method(&self, method: &MethodRecord) -> StoreResult<()>;
    async fn activate_method(
        &self,
        user_id: &str,
        method: Method,
        now: UnixTime,
    ) -> StoreResult<bool>;
    async fn delete_method(&self, user_id: &str, method: Method) -> StoreResult<bool>;
    /// `(question id, Argon2 hash of the normalised answer)`.
    async fn answers(&self, user_id: &str) -> StoreResult<Vec<(String, String)>>;
    /// Replaces the user's answers and marks the questions method active.
    async fn put_answers(
        &self,
        user_id: &str,
        answers: &[(String, String)],
        now: UnixTime,
    ) -> StoreResult<()>;
    async fn confirmed_at(&self, user_id: &str) -> StoreResult<Option<UnixTime>>;
    async fn confirm(&self, user_id: &str, now: UnixTime) -> StoreResult<()>;

    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    async fn delete_session(&self, id: &str) -> StoreResult<()>;

    async fn enqueue(&self, message: &OutboxMessage) -> StoreResult<i64>;
    /// Leases up to `limit` due messages to this worker for `lease` seconds, oldest first,
    /// counting an attempt for each; `channel: Some(..)` only of that channel. A message whose
    /// worker died is leased again once its lease runs out.
    async fn claim_outbox(
        &self,
        now: UnixTime,
        lease: i64,
        limit: u32,
        channel: Option<Channel>,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Gives back leased messages that were not sent (a worker stopping): each is due again at
    /// once, for any worker, and the attempt its claim counted is returned. Messages no longer
    /// leased (sent, failed, rescheduled) are left alone.
    async fn outbox_release(&self, ids: &[i64]) -> StoreResult<()>;
    async fn outbox_sent(&self, id: i64, keep_body: bool) -> StoreResult<()>;
    /// `retry_at: None` gives up for good.
    async fn outbox_failed(
        &self,
        id: i64,
        retry_at: Option<UnixTime>,
        error: &str,
    ) -> StoreResult<()>;
    async fn outbox_list(&self, limit: u32) -> StoreResult<Vec<OutboxMessage>>;
    /// How many messages wait (queued or being sent) and when the oldest of them was queued:
    /// the backlog the metrics show.
    async fn outbox_backlog(&self) -> StoreResult<(u64, Option<UnixTime>)>;

    async fn insert_admin_token(&self, token: &AdminToken) -> StoreResult<()>;
    async fn admin_token(&self, token_hash: &str) -> StoreResult<Option<AdminToken>>;
    /// Every admin token (for `sspr store copy`).
    async fn admin_tokens(&self) -> StoreResult<Vec<AdminToken>>;
    /// Every user id that has registration data (for `sspr store copy`).
    async fn registration_ids(&self) -> StoreResult<Vec<String>>;
    /// The last TOTP time step the user has used (0 if none).
    async fn totp_last_step(&self, user_id: &str) -> StoreResult<i64>;

    /// Deletes expired flows, sessions, codes and old throttle hits. Returns rows removed.
    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64>;
}

/// A user as the directory knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct DirUser {
    /// Stable id: the login for the built-in directory, entryUUID / objectGUID for LDAP / AD.
    pub id: String,
    /// The account's own name (`uid`, `sAMAccountName`, the built-in login).
    pub login: String,
    /// What the directory's user filter matched (the ID as typed: a mail address or a UPN
    /// where the filter says so): what finds this entry again.
    pub lookup: String,
    pub display_name: String,
    pub enabled: bool,
    pub locked: bool,
    pub groups: Vec<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
}

/// What a password check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Wrong,
    Right,
    /// Right, but the directory accepts it for nothing but a change: it has expired, or an
    /// administrator set it to be changed at the next sign-in (AD `pwdLastSet = 0`, ppolicy
    /// `pwdReset`). Only someone who knows the password learns this.
    MustChange,
}

/// A password that expires, and whose it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiring {
    pub user: DirUser,
    pub expires_at: UnixTime,
}

/// What went wrong in the directory. `detail` is for the log; the user sees words chosen by
/// the service.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DirError {
    /// The directory refused the new password under its own policy.
    #[error("directory rejected the password: {0:?}")]
    Rejected(Vec<sspr_domain::Rejection>),
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// sspr's own limit on concurrent work (password checks, hashing) was reached: nothing
    /// was sent to the directory, and trying again shortly may work.
    #[error("too busy: {0}")]
    Busy(String),
    #[error("directory denied the operation: {0}")]
    Permission(String),
    /// The directory shields this account from delegated rights (AD `adminCount=1`).
    #[error("directory protects the account: {0}")]
    Protected(String),
    #[error("directory error: {0}")]
    Other(String),
}

/// Where accounts live: sspr's built-in directory, OpenLDAP or Active Directory.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Exactly one user for the login, or none.
    async fn find_user(&self, login: &str) -> Result<Option<DirUser>, DirError>;
    /// Checks the current password (sign-ins, a change). Never called with an empty one.
    async fn check_password(
        &self,
        user: &DirUser,
        password: &str,
    ) -> Result<PasswordCheck, DirError>;
    /// The work of [`Directory::check_password`] for a login that cannot sign in (no such
    /// user, or a disabled one), without checking anything: the same lookups, the same
    /// connection and bind or hash, the same limits. So the answer, its time, and how it
    /// fails under load are the same whether the account exists or not.
    async fn check_password_of_nobody(&self, login: &str, password: &str) -> Result<(), DirError>;
    /// Sets a new password with reset semantics (no old password) and unlocks the account.
    async fn reset_password(&self, user: &DirUser, new_password: &str) -> Result<(), DirError>;
    async fn unlock(&self, user: &DirUser) -> Result<(), DirError>;
    /// Changes a password the user knows, as the user would change it themselves: the
    /// directory's rules for a user's own change apply (OpenLDAP ppolicy's `pwdMinAge`,
    /// `pwdSafeModify`, `pwdAllowUserChange`; AD's minimum age and history), and nothing is
    /// unlocked. The caller has checked `current` already; a refusal here is the directory's.
    /// The built-in directory's change is its reset: the same history, and its lock flag is
    /// the failure lock, which `current` was already checked against.
    async fn change_password(
        &self,
        user: &DirUser,
        current: &str,
        new_password: &str,
    ) -> Result<(), DirError> {
        let _ = current;
        self.reset_password(user, new_password).await
    }
    /// The directory's own password rules, in words, to show before the user types.
    async fn password_rules(&self) -> Result<Vec<sspr_domain::DirectoryRule>, DirError>;
    /// The rules that apply to this user (AD fine-grained policies, a ppolicy of their own).
    /// Only for a verified user: the answer can reveal group membership.
    async fn password_rules_for(
        &self,
        user: &DirUser,
    ) -> Result<Vec<sspr_domain::DirectoryRule>, DirError> {
        let _ = user;
        self.password_rules().await
    }
    /// A value that changes whenever the user's password is written (OpenLDAP
    /// `pwdChangedTime`, AD `pwdLastSet`, the built-in directory's own hash), read before a
    /// write and again after a crash or a timeout to learn whether the write landed. `None`
    /// when the directory shows nothing that tells: the outcome is then reported as unknown.
    async fn password_stamp(&self, user: &DirUser) -> Result<Option<String>, DirError> {
        let _ = user;
        Ok(None)
    }
    /// Every enabled account whose password expires before `before`, expired ones included,
    /// read in pages (never a request per user). `None` when no password here expires (no
    /// maximum age is set).
    async fn expiring_passwords(
        &self,
        before: UnixTime,
    ) -> Result<Option<Vec<Expiring>>, DirError> {
        let _ = before;
        Ok(None)
    }
    /// Whether the directory is reachable (readiness).
    async fn ping(&self) -> Result<(), DirError>;
}

/// One account of sspr's built-in directory.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    /// The canonical login.
    pub id: String,
    pub display_name: String,
    pub enabled: bool,
    pub locked: bool,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// When the password was last set (its age, for expiry).
    pub password_changed_at: UnixTime,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFlag {
    Enabled,
    Locked,
}

/// Makes the audit event of one imported account (a type of its own so that `async_trait`
/// leaves the reference's lifetime alone).
pub type ImportAudit = dyn Fn(&UserRecord) -> AuditEvent + Sync;

/// Where the built-in directory keeps its accounts: the same database as everything else,
/// so SQLite and PostgreSQL installations both have one.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Creates the account with its groups; `false` when the id is taken.
    async fn insert_user(&self, user: &UserRecord, now: UnixTime) -> StoreResult<bool>;
    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    async fn users(&self) -> StoreResult<Vec<UserRecord>> {
        self.users_changed_before(UnixTime::MAX).await
    }
    /// The users whose password was last set before `before`: what may expire soon, read
    /// without loading every account of a large directory.
    async fn users_changed_before(&self, before: UnixTime) -> StoreResult<Vec<UserRecord>>;
    /// `false` when there is no such user.
    async fn set_user_flag(&self, id: &str, flag: UserFlag, value: bool) -> StoreResult<bool>;
    /// Marks the password as one to change at the next sign-in: its change time becomes 0,
    /// as AD's `pwdLastSet = 0`. Any new password clears it. `false` when there is no such user.
    async fn expire_user_password(&self, id: &str) -> StoreResult<bool>;
    /// Replaces the hash and unlocks, in one transaction that also moves the replaced hash into
    /// the history and trims the history to `keep` entries.
    async fn set_user_password(
        &self,
        id: &str,
        hash: &str,
        now: UnixTime,
        keep: usize,
    ) -> StoreResult<()>;
    /// The `n` most recent earlier hashes, newest first.
    async fn password_history(&self, id: &str, n: usize) -> StoreResult<Vec<String>>;
    /// Which of `ids` are taken, in any order.
    async fn existing_user_ids(&self, ids: &[String]) -> StoreResult<Vec<String>>;
    /// Creates every account with its groups, and the event `audit` makes for each, in one
    /// transaction: all of them or, on any error (an id taken meanwhile included), none.
    /// `progress` is told how many accounts have been written so far.
    async fn import_users(
        &self,
        users: &[UserRecord],
        audit: &ImportAudit,
        now: UnixTime,
        progress: &(dyn Fn(usize) + Sync),
    ) -> StoreResult<()>;
    /// Replaces the hash with an equivalent one (the same password, a stronger scheme) when it
    /// is still `old`; the password's age, lock and history stay as they are. `false` when
    /// the hash changed meanwhile (a reset won the race, and its hash stays).
    async fn upgrade_user_hash(&self, id: &str, old: &str, new: &str) -> StoreResult<bool>;
}
