//! The outbox worker: claims due messages, sends them, records what happened.
//!
//! # Guarantee: at least once, duplicates rare and recognisable
//!
//! A message is leased by the store (`claim_outbox`) and is invisible to other workers until
//! the lease runs out or the message is recorded. It is recorded as sent the moment the relay
//! or gateway has accepted it (for SMTP: the 250 reply to the end of DATA, before the
//! connection is reused or closed), so a copy can only be sent twice if the process dies in
//! that short window, or if a send is cut short by its deadline or by shutdown after the
//! remote had already taken it. Such a copy carries the same idempotency key (SMTP
//! `Message-ID`, SMS `Idempotency-Key`), derived from the outbox row alone.
//!
//! # Dispatch
//!
//! Each channel (email, SMS) has its own loop and its own concurrency limit. A loop claims
//! only as many messages as it has free slots, so nothing sits leased waiting for a slot, and
//! a slot that frees up claims the next due message of its channel at once: a hanging relay
//! holds only its own slots, never the other channel nor the rest of its own.
//!
//! # Deadlines
//!
//! Each send is bounded by its channel's deadline (the sender's own, plus a margin), and the
//! lease is always longer than that deadline, so a message is finished or given back before
//! another worker may claim it.
//!
//! # Shutdown
//!
//! The loops stop claiming, give sends under way `shutdown_grace` to finish, then cut the
//! rest short and release them in the store (`outbox_release`): due at once for any other
//! instance, with the attempt given back.
//!
//! Retry accounting: the store counts an attempt when it leases a message (`claim_outbox`),
//! so a message whose worker died mid-send still uses up an attempt and cannot be retried
//! without end. The message in hand is therefore attempt number `attempts`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sspr_app::metrics::metrics;
use sspr_app::ports::{Channel, OutboxMessage, Store};
use sspr_app::reset::short_id;
use sspr_domain::audit::{Activity, AuditEvent, Outcome};
use sspr_domain::{Clock, mask};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::{SendError, Sender};

/// Longest `last_error` / log detail kept.
const MAX_DETAIL: usize = 300;

/// Added to a sender's own deadline for the worker's: the sender should always fail first,
/// with its own, more precise reason.
pub const SEND_MARGIN: Duration = Duration::from_secs(2);

/// The lease outlasts the longest send deadline by at least this much (recording the outcome).
const LEASE_MARGIN_SECS: i64 = 15;

/// After the grace, how long cut-short sends get to return before their tasks are aborted.
const CUT_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Keep the body after sending (the dev outbox only; bodies hold codes).
    pub keep_bodies: bool,
    /// Attempts per message, the first included, before it is given up.
    pub max_attempts: u32,
    /// Wait after the first failure; each later one waits `backoff_factor` times longer
    /// (5 s, 15 s, 45 s, 135 s by default).
    pub backoff_base_secs: i64,
    pub backoff_factor: i64,
    /// How long a claimed message is reserved for this worker. Raised, if needed, to the
    /// longest send deadline plus 15 s.
    pub lease_secs: i64,
    /// Emails sent at the same time.
    pub email_concurrency: usize,
    /// SMS sent at the same time.
    pub sms_concurrency: usize,
    /// Pause between looks at the outbox when it is idle (a notification cuts it short).
    pub idle: Duration,
    /// Longest a single email send may take, all of it: the SMTP deadline plus [`SEND_MARGIN`].
    pub email_timeout: Duration,
    /// Longest a single SMS send may take: the gateway deadline plus [`SEND_MARGIN`].
    pub sms_timeout: Duration,
    /// On shutdown, how long sends under way may take to finish before they are cut short
    /// and given back. Never longer than the longest send deadline.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            keep_bodies: false,
            max_attempts: 5,
            backoff_base_secs: 5,
            backoff_factor: 3,
            lease_secs: 60,
            email_concurrency: 8,
            sms_concurrency: 4,
            idle: Duration::from_millis(500),
            email_timeout: Duration::from_secs(15) + SEND_MARGIN,
            sms_timeout: Duration::from_secs(10) + SEND_MARGIN,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl WorkerConfig {
    /// Seconds to wait after the `failures`-th failed attempt (1-based), capped at six hours.
    pub fn backoff_secs(&self, failures: u32) -> i64 {
        let mut wait = self.backoff_base_secs.max(1);
        for _ in 1..failures {
            wait = wait.saturating_mul(self.backoff_factor.max(1));
        }
        wait.min(6 * 3600)
    }

    /// The worker's deadlines from the senders' own (`[delivery.smtp] timeout_secs`,
    /// `[delivery.sms] timeout_secs`), each plus [`SEND_MARGIN`].
    pub fn with_deadlines(mut self, email: Duration, sms: Duration) -> Self {
        self.email_timeout = email + SEND_MARGIN;
        self.sms_timeout = sms + SEND_MARGIN;
        self
    }

    fn timeout(&self, channel: Channel) -> Duration {
        match channel {
            Channel::Email => self.email_timeout,
            Channel::Sms => self.sms_timeout,
        }
    }

    fn concurrency(&self, channel: Channel) -> usize {
        match channel {
            Channel::Email => self.email_concurrency,
            Channel::Sms => self.sms_concurrency,
        }
        .max(1)
    }

    /// The lease actually taken: never shorter than a send may last plus time to record it.
    pub fn effective_lease_secs(&self) -> i64 {
        let longest = self.email_timeout.max(self.sms_timeout);
        let needed = i64::try_from(longest.as_secs())
            .unwrap_or(i64::MAX / 2)
            .saturating_add(LEASE_MARGIN_SECS);
        self.lease_secs.max(needed)
    }

    fn grace(&self) -> Duration {
        self.shutdown_grace
            .min(self.email_timeout.max(self.sms_timeout))
    }
}

pub struct OutboxWorker {
    inner: Arc<Inner>,
    notify: Arc<Notify>,
}

struct Inner {
    store: Arc<dyn Store>,
    email: Arc<dyn Sender>,
    sms: Option<Arc<dyn Sender>>,
    clock: Arc<dyn Clock>,
    cfg: WorkerConfig,
    /// Ids being sent right now by this worker.
    in_flight: Mutex<HashSet<i64>>,
}

/// Removes an id from the in-flight set when its task ends, however it ends.
struct InFlight {
    inner: Arc<Inner>,
    id: i64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.inner.in_flight().remove(&self.id);
    }
}

/// How one delivery task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Sent, rescheduled or given up, and recorded.
    Recorded,
    /// Cut short by shutdown before an outcome: to be released.
    Cut(i64),
}

/// What stops a channel loop.
enum Until {
    /// `run_once`: when nothing is due and nothing is under way.
    Drained,
    /// `run`: when the shutdown signal turns true (or its sender is dropped).
    Shutdown(watch::Receiver<bool>),
}

impl OutboxWorker {
    /// `sms: None` when no gateway is configured: SMS messages then fail permanently.
    pub fn new(
        store: Arc<dyn Store>,
        email: Arc<dyn Sender>,
        sms: Option<Arc<dyn Sender>>,
        clock: Arc<dyn Clock>,
        cfg: WorkerConfig,
    ) -> Self {
        let inner = Inner {
            store,
            email,
            sms,
            clock,
            cfg,
            in_flight: Mutex::new(HashSet::new()),
        };
        Self {
            inner: Arc::new(inner),
            notify: Arc::new(Notify::new()),
        }
    }

    /// Uses `notify` as the wake-up handle (e.g. the one the application already holds)
    /// instead of a new one.
    pub fn with_notifier(mut self, notify: Arc<Notify>) -> Self {
        self.notify = notify;
        self
    }

    /// Wakes the worker at once. Call `notify_one()` after enqueueing: a wake-up sent while
    /// the worker is busy is kept and ends its next pause.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Sends everything due now, each channel up to its concurrency at a time, and returns
    /// once nothing is due and nothing is under way. Returns how many were handled (sent,
    /// rescheduled or given up). For tests and one-off runs; `run` is the service loop.
    pub async fn run_once(&self) -> usize {
        let (a, b) = tokio::join!(
            dispatch(
                self.inner.clone(),
                Channel::Email,
                Arc::new(Notify::new()),
                Until::Drained
            ),
            dispatch(
                self.inner.clone(),
                Channel::Sms,
                Arc::new(Notify::new()),
                Until::Drained
            ),
        );
        a + b
    }

    /// Sends until `shutdown` turns true (or its sender is dropped), then stops claiming,
    /// lets sends under way finish within the grace and releases the rest.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        tracing::info!(
            email_concurrency = self.inner.cfg.concurrency(Channel::Email),
            sms_concurrency = self.inner.cfg.concurrency(Channel::Sms),
            lease_secs = self.inner.cfg.effective_lease_secs(),
            "outbox worker started"
        );
        let wake_email = Arc::new(Notify::new());
        let wake_sms = Arc::new(Notify::new());
        // One wake-up reaches both loops; each keeps it until its next pause.
        let fan_out = {
            let (notify, e, s) = (self.notify.clone(), wake_email.clone(), wake_sms.clone());
            tokio::spawn(async move {
                loop {
                    notify.notified().await;
                    e.notify_one();
                    s.notify_one();
                }
            })
        };
        tokio::join!(
            dispatch(
                self.inner.clone(),
                Channel::Email,
                wake_email,
                Until::Shutdown(shutdown.clone())
            ),
            dispatch(
                self.inner.clone(),
                Channel::Sms,
                wake_sms,
                Until::Shutdown(shutdown)
            ),
        );
        fan_out.abort();
        tracing::info!("outbox worker stopped");
    }
}

fn stop_requested(until: &mut Until) -> bool {
    match until {
        Until::Drained => false,
        Until::Shutdown(rx) => *rx.borrow_and_update(),
    }
}

/// Waits until the shutdown signal changes (or its sender is dropped); never returns for
/// `Drained`.
async fn stop_changed(until: &mut Until) {
    match until {
        Until::Drained => std::future::pending::<()>().await,
        Until::Shutdown(rx) => {
            let _ = rx.changed().await;
        }
    }
}

fn sender_gone(until: &Until) -> bool {
    match until {
        Until::Drained => false,
        Until::Shutdown(rx) => rx.has_changed().is_err(),
    }
}

/// One channel's loop: claims a message per free slot, starts it, and claims again as soon as
/// a slot frees up. Returns how many messages it handled.
async fn dispatch(
    inner: Arc<Inner>,
    channel: Channel,
    wake: Arc<Notify>,
    mut until: Until,
) -> usize {
    let limit = inner.cfg.concurrency(channel);
    let drain = matches!(until, Until::Drained);
    let (cut_tx, cut_rx) = watch::channel(false);
    let mut tasks: JoinSet<Ended> = JoinSet::new();
    // Task → message, to release what is still under way if a task has to be aborted.
    let mut running: HashMap<tokio::task::Id, i64> = HashMap::new();
    let mut handled = 0;
    loop {
        if stop_requested(&mut until) || sender_gone(&until) {
            break;
        }
        let mut more_due = false;
        if tasks.len() < limit {
            let free = limit - tasks.len();
            let now = inner.clock.now();
            let lease = inner.cfg.effective_lease_secs();
            match inner
                .store
                .claim_outbox(
                    now,
                    lease,
                    u32::try_from(free).unwrap_or(u32::MAX),
                    Some(channel),
                )
                .await
            {
                Ok(batch) => {
                    let claimed = batch.len();
                    let mut started = 0;
                    for msg in batch {
                        if let Some((task, id)) = start(&inner, &mut tasks, msg, cut_rx.clone()) {
                            running.insert(task, id);
                            started += 1;
                        }
                    }
                    more_due = claimed == free && started == claimed;
                }
                Err(e) => {
                    tracing::error!(channel = channel.as_str(), error = %e, "outbox: cannot claim messages");
                }
            }
        }
        if drain && tasks.is_empty() && !more_due {
            break;
        }
        tokio::select! {
            joined = tasks.join_next_with_id(), if !tasks.is_empty() => {
                if let Some(j) = joined {
                    handled += finished(&mut running, j);
                }
            }
            _ = wake.notified(), if !drain => {}
            _ = tokio::time::sleep(inner.cfg.idle), if !drain => {}
            _ = stop_changed(&mut until), if !drain => {}
        }
    }
    // Stopping: no more claims. Sends under way get the grace to finish.
    let grace_end = tokio::time::Instant::now() + inner.cfg.grace();
    while !tasks.is_empty() {
        match tokio::time::timeout_at(grace_end, tasks.join_next_with_id()).await {
            Ok(Some(j)) => handled += finished(&mut running, j),
            Ok(None) | Err(_) => break,
        }
    }
    let mut release: Vec<i64> = Vec::new();
    if !tasks.is_empty() {
        tracing::warn!(
            channel = channel.as_str(),
            sends = tasks.len(),
            "outbox: shutdown grace over; cutting sends short and giving their messages back"
        );
        let _ = cut_tx.send(true);
        let cut_end = tokio::time::Instant::now() + CUT_WAIT;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(cut_end, tasks.join_next_with_id()).await {
                Ok(Some(Ok((task, Ended::Cut(id))))) => {
                    running.remove(&task);
                    release.push(id);
                }
                Ok(Some(j)) => handled += finished(&mut running, j),
                Ok(None) => break,
                Err(_) => {
                    // Stuck even in recording (the database?): abort, and give back what was
                    // not recorded; the release leaves recorded messages alone.
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    release.extend(running.drain().map(|(_, id)| id));
                    break;
                }
            }
        }
    }
    if !release.is_empty() {
        release.sort_unstable();
        match inner.store.outbox_release(&release).await {
            Ok(()) => {
                tracing::info!(channel = channel.as_str(), ids = ?release, "outbox: unsent messages given back for another worker")
            }
            Err(e) => {
                tracing::error!(channel = channel.as_str(), ids = ?release, error = %e, "outbox: could not give messages back; they are sent once their lease runs out")
            }
        }
    }
    handled
}

/// Starts one delivery unless the message is already being sent here (its lease ran out
/// while a slow send was still going, and the store handed it out again).
fn start(
    inner: &Arc<Inner>,
    tasks: &mut JoinSet<Ended>,
    msg: OutboxMessage,
    cut: watch::Receiver<bool>,
) -> Option<(tokio::task::Id, i64)> {
    let id = msg.id;
    if !inner.in_flight().insert(id) {
        tracing::warn!(
            id,
            "outbox: message is still being sent here; not sending it twice"
        );
        return None;
    }
    let guard = InFlight {
        inner: inner.clone(),
        id,
    };
    let handle = tasks.spawn(async move {
        let ended = guard.inner.deliver(msg, cut).await;
        drop(guard);
        ended
    });
    Some((handle.id(), id))
}

/// Books a finished task; returns 1 if it handled its message.
fn finished(
    running: &mut HashMap<tokio::task::Id, i64>,
    joined: Result<(tokio::task::Id, Ended), tokio::task::JoinError>,
) -> usize {
    match joined {
        Ok((task, ended)) => {
            running.remove(&task);
            usize::from(ended == Ended::Recorded)
        }
        Err(e) => {
            // The message stays leased and is tried again when the lease runs out.
            running.remove(&e.id());
            tracing::error!(error = %e, "outbox: delivery task failed");
            0
        }
    }
}

impl Inner {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // The set stays consistent even if a holder panicked: inserts and removes are atomic.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn deliver(&self, msg: OutboxMessage, mut cut: watch::Receiver<bool>) -> Ended {
        let channel = msg.channel.as_str();
        let to = masked(&msg);
        let sender = match msg.channel {
            Channel::Email => Some(&self.email),
            Channel::Sms => self.sms.as_ref(),
        };
        let deadline = self.cfg.timeout(msg.channel);
        let result = match sender {
            None => Err(SendError::permanent(
                "no_gateway",
                "no SMS gateway is configured",
            )),
            Some(s) => {
                tokio::select! {
                    r = tokio::time::timeout(deadline, s.send(&msg)) => match r {
                        Ok(r) => r,
                        Err(_) => Err(SendError::retryable(
                            "timeout",
                            format!("no answer within {}s", deadline.as_secs()),
                        )),
                    },
                    _ = cut.wait_for(|c| *c) => {
                        tracing::warn!(id = msg.id, channel, to = %to, "outbox: send cut short by shutdown; the message is given back");
                        return Ended::Cut(msg.id);
                    }
                }
            }
        };
        // From here on the outcome is recorded, whatever the shutdown signal says.
        let err = match result {
            Ok(()) => {
                if let Err(e) = self.store.outbox_sent(msg.id, self.cfg.keep_bodies).await {
                    // It will be sent again when the lease runs out: at least once, not lost.
                    tracing::error!(id = msg.id, error = %e, "outbox: delivered but could not record it");
                }
                tracing::info!(id = msg.id, channel, to = %to, attempt = msg.attempts.max(1), outcome = "sent", "outbox: delivered");
                metrics().message(channel, "sent");
                return Ended::Recorded;
            }
            Err(e) => e,
        };
        let detail = clip(&err.detail.replace(msg.recipient.trim(), &to));
        let attempt = msg.attempts.max(1);
        let now = self.clock.now();
        if err.retryable && attempt < self.cfg.max_attempts {
            let retry_at = now + self.cfg.backoff_secs(attempt);
            tracing::warn!(id = msg.id, channel, to = %to, attempt, reason = err.class, detail = %detail, retry_at, outcome = "retry", "outbox: delivery failed, will retry");
            metrics().message(channel, "retry");
            if let Err(e) = self
                .store
                .outbox_failed(msg.id, Some(retry_at), &detail)
                .await
            {
                tracing::error!(id = msg.id, error = %e, "outbox: could not reschedule");
            }
            return Ended::Recorded;
        }
        tracing::warn!(id = msg.id, channel, to = %to, attempt, reason = err.class, detail = %detail, outcome = "failed", "outbox: delivery failed for good");
        metrics().message(channel, "failed");
        if let Err(e) = self.store.outbox_failed(msg.id, None, &detail).await {
            tracing::error!(id = msg.id, error = %e, "outbox: could not record the failure");
        }
        // The user is waiting for a code that will never come: retire it, so the flow can
        // tell them instead of letting them type digits that cannot match.
        if let Some(code_id) = msg.code_id {
            let retired = self.store.code_delivery_failed(code_id).await;
            if let Err(e) = retired {
                tracing::error!(id = msg.id, code_id, error = %e, "outbox: could not mark the code undeliverable");
            }
        }
        let mut ev = AuditEvent::new(now, Activity::DeliveryFailed, Outcome::Failure);
        ev.actor = "system".into();
        ev.target = msg.target.clone();
        ev.flow_id = msg.flow_id.as_deref().map(short_id);
        ev.reason = err.class.into();
        ev.details =
            serde_json::json!({ "channel": channel, "destination": to, "attempts": attempt });
        metrics().event(&ev);
        if let Err(e) = self.store.audit(&ev).await {
            tracing::error!(id = msg.id, error = %e, "audit write failed");
        }
        Ended::Recorded
    }
}

fn masked(msg: &OutboxMessage) -> String {
    match msg.channel {
        Channel::Email => mask::email(&msg.recipient),
        Channel::Sms => mask::phone(&msg.recipient),
    }
}

pub(crate) fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_DETAIL {
        s.to_string()
    } else {
        s.chars().take(MAX_DETAIL).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_is_5_15_45_135() {
        let c = WorkerConfig::default();
        assert_eq!(
            (1..=4).map(|n| c.backoff_secs(n)).collect::<Vec<_>>(),
            vec![5, 15, 45, 135]
        );
        assert_eq!(c.backoff_secs(100), 6 * 3600);
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        let s = "é".repeat(400);
        assert_eq!(clip(&s).chars().count(), MAX_DETAIL + 1);
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn deadlines_come_from_the_senders_and_the_lease_outlasts_them() {
        let c =
            WorkerConfig::default().with_deadlines(Duration::from_secs(40), Duration::from_secs(3));
        assert_eq!(c.email_timeout, Duration::from_secs(42));
        assert_eq!(c.sms_timeout, Duration::from_secs(5));
        assert_eq!(c.effective_lease_secs(), 60);
        let c = WorkerConfig {
            lease_secs: 10,
            ..c
        };
        assert_eq!(c.effective_lease_secs(), 42 + LEASE_MARGIN_SECS);
        let short =
            WorkerConfig::default().with_deadlines(Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(
            short.grace(),
            Duration::from_secs(3),
            "grace ≤ the longest deadline"
        );
    }
}
