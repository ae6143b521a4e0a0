//! The outbox worker: claims due messages, sends them, records what happened.
//!
//! Exactly-once across instances comes from the store's lease (`claim_outbox`): a claimed
//! message is invisible to other workers until its lease runs out. Within one worker, a
//! message id that is still being sent is never started a second time, even if a slow send
//! outlived its lease and the store hands the message out again.
//!
//! Retry accounting: the store counts an attempt when it leases a message (`claim_outbox`),
//! so a message whose worker died mid-send still uses up an attempt and cannot be retried
//! without end. The message in hand is therefore attempt number `attempts`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sspr_app::ports::{Channel, OutboxMessage, Store};
use sspr_app::reset::short_id;
use sspr_domain::audit::{Activity, AuditEvent, Outcome};
use sspr_domain::{Clock, mask};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::{SendError, Sender};

/// Longest `last_error` / log detail kept.
const MAX_DETAIL: usize = 300;

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
    /// How long a claimed message is reserved for this worker.
    pub lease_secs: i64,
    /// Messages claimed per round.
    pub batch: u32,
    /// Messages sent at the same time.
    pub concurrency: usize,
    /// Pause between rounds when the outbox is idle (a notification cuts it short).
    pub idle: Duration,
    /// Longest a single send may take. Shorter than the lease, so a message is finished (or
    /// given back) before another worker may claim it.
    pub send_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            keep_bodies: false,
            max_attempts: 5,
            backoff_base_secs: 5,
            backoff_factor: 3,
            lease_secs: 60,
            batch: 32,
            concurrency: 8,
            idle: Duration::from_millis(500),
            send_timeout: Duration::from_secs(45),
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

    /// Wakes the worker at once. Call `notify_one()` after enqueueing: a wake-up sent while
    /// the worker is busy is kept and ends its next pause.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// One round: claims due messages and sends them, a few at a time. Returns how many were
    /// handled (sent, rescheduled or given up).
    pub async fn run_once(&self) -> usize {
        let inner = &self.inner;
        let now = inner.clock.now();
        let batch = match inner
            .store
            .claim_outbox(now, inner.cfg.lease_secs, inner.cfg.batch)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot claim messages");
                return 0;
            }
        };
        let mut queue = batch.into_iter();
        let mut tasks = JoinSet::new();
        let mut handled = 0;
        loop {
            while tasks.len() < inner.cfg.concurrency.max(1) {
                let Some(msg) = queue.next() else { break };
                if !inner.in_flight().insert(msg.id) {
                    tracing::warn!(
                        id = msg.id,
                        "outbox: message is still being sent here; not sending it twice"
                    );
                    continue;
                }
                let guard = InFlight {
                    inner: inner.clone(),
                    id: msg.id,
                };
                tasks.spawn(async move {
                    guard.inner.deliver(msg).await;
                    drop(guard);
                });
            }
            match tasks.join_next().await {
                Some(Ok(())) => handled += 1,
                // The message stays leased and is tried again when the lease runs out.
                Some(Err(e)) => tracing::error!(error = %e, "outbox: delivery task failed"),
                None => break,
            }
        }
        handled
    }

    /// Runs rounds until `shutdown` turns true (or its sender is dropped). Between rounds it
    /// pauses for `idle`, unless a full batch suggests more is due or it is notified.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!("outbox worker started");
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let handled = self.run_once().await;
            if handled >= self.inner.cfg.batch as usize {
                continue;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(self.inner.cfg.idle) => {}
            }
        }
        tracing::info!("outbox worker stopped");
    }
}

impl Inner {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // The set stays consistent even if a holder panicked: inserts and removes are atomic.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn deliver(&self, msg: OutboxMessage) {
        let channel = msg.channel.as_str();
        let to = masked(&msg);
        let sender = match msg.channel {
            Channel::Email => Some(&self.email),
            Channel::Sms => self.sms.as_ref(),
        };
        let result = match sender {
            None => Err(SendError::permanent(
                "no_gateway",
                "no SMS gateway is configured",
            )),
            Some(s) => match tokio::time::timeout(self.cfg.send_timeout, s.send(&msg)).await {
                Ok(r) => r,
                Err(_) => Err(SendError::retryable(
                    "timeout",
                    format!("no answer within {:?}", self.cfg.send_timeout),
                )),
            },
        };
        let err = match result {
            Ok(()) => {
                tracing::info!(id = msg.id, channel, to = %to, outcome = "sent", "outbox: delivered");
                if let Err(e) = self.store.outbox_sent(msg.id, self.cfg.keep_bodies).await {
                    // It will be sent again when the lease runs out: at least once, not lost.
                    tracing::error!(id = msg.id, error = %e, "outbox: delivered but could not record it");
                }
                return;
            }
            Err(e) => e,
        };
        let detail = clip(&err.detail.replace(msg.recipient.trim(), &to));
        let attempt = msg.attempts.max(1);
        let now = self.clock.now();
        if err.retryable && attempt < self.cfg.max_attempts {
            let retry_at = now + self.cfg.backoff_secs(attempt);
            tracing::warn!(id = msg.id, channel, to = %to, attempt, reason = err.class, detail = %detail, retry_at, outcome = "retry", "outbox: delivery failed, will retry");
            if let Err(e) = self
                .store
                .outbox_failed(msg.id, Some(retry_at), &detail)
                .await
            {
                tracing::error!(id = msg.id, error = %e, "outbox: could not reschedule");
            }
            return;
        }
        tracing::warn!(id = msg.id, channel, to = %to, attempt, reason = err.class, detail = %detail, outcome = "failed", "outbox: delivery failed for good");
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
        if let Err(e) = self.store.audit(&ev).await {
            tracing::error!(id = msg.id, error = %e, "audit write failed");
        }
    }
}

fn masked(msg: &OutboxMessage) -> String {
    match msg.channel {
        Channel::Email => mask::email(&msg.recipient),
        Channel::Sms => mask::phone(&msg.recipient),
    }
}

fn clip(s: &str) -> String {
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
}
