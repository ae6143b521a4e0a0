//! The application: the services wired to their ports. One `App` serves every client.

use std::sync::Arc;

use sspr_domain::audit::{Activity, AuditEvent, ClientType, Outcome};
use sspr_domain::clock::UnixTime;
use sspr_domain::random::support_code;
use sspr_domain::{Clock, Limits, Policy, Random};

use crate::crypto::{HashPool, ServerKey};
use crate::error::{AppError, ErrorKind};
use crate::messages::{Lang, Msg, t};
use crate::ports::{Channel, Directory, OutboxMessage, Store};

/// How long a failure's audit write may take when the store already failed the request.
/// How many sources' worth of flows one logon agent's machine may start in all (see
/// [`RequestCtx::source`]).
pub const MACHINE_SHARE: u32 = 10;

const AUDIT_WHEN_UNAVAILABLE: std::time::Duration = std::time::Duration::from_millis(300);

/// An audit event the store could not take, in the server's log instead, whole but for its
/// free-form details: `sspr audit --support-code X` finding nothing leads to
/// `grep support_code=X` in the log. No secrets: the event holds none (the flow id is a hash).
pub fn log_unstored(event: &AuditEvent, error: &str) {
    tracing::error!(
        support_code = %event.support_code.as_deref().unwrap_or("-"),
        activity = event.activity.as_str(),
        outcome = event.outcome.as_str(),
        reason = %event.reason,
        at = event.at,
        actor = %event.actor,
        target = %event.target,
        client_ip = %event.client_ip,
        client_type = event.client_type.as_str(),
        flow_id = %event.flow_id.as_deref().unwrap_or("-"),
        error = %error,
        "audit event not stored; this log line is its only record"
    );
}

/// Who is asking: taken from the connection by the HTTP layer, or set by the CLI.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub ip: String,
    pub client_type: ClientType,
    pub lang: Lang,
    /// For the logon agent: the remote host of the login (an SSH client), as the agent says.
    pub remote_host: Option<String>,
}

impl RequestCtx {
    pub fn new(ip: impl Into<String>, client_type: ClientType, lang: Lang) -> Self {
        Self {
            ip: ip.into(),
            client_type,
            lang,
            remote_host: None,
        }
    }

    /// Whom the per-client limits count. A browser or API client: its address. The logon
    /// agent speaks for a machine that many people sign in to, locally and over SSH: one
    /// address there is one remote host (PAM_RHOST) or, at the machine itself, one user, so
    /// that an SSH client hammering the machine, or one user, cannot use up the self-service
    /// of everyone else on it. [`RequestCtx::machine_cap`] still bounds the machine as a whole.
    pub fn source(&self, login: &str) -> String {
        if !self.client_type.is_logon_agent() {
            return self.ip.clone();
        }
        match &self.remote_host {
            Some(host) => format!("{}>host:{host}", self.ip),
            None => format!("{}>user:{login}", self.ip),
        }
    }

    /// Everything from one logon agent's machine together, over all its users and remote
    /// hosts: [`MACHINE_SHARE`] times what one source may start.
    pub fn machine_cap(&self) -> Option<String> {
        self.client_type
            .is_logon_agent()
            .then(|| keys::machine_starts(&self.ip))
    }
    pub fn t(&self, m: Msg) -> String {
        t(self.lang, m).to_string()
    }
}

/// Settings that come from the server's configuration rather than the admin's policy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The public HTTPS base URL; every link sspr sends is built from it, never from a request.
    pub public_url: String,
    pub organisation: String,
    pub limits: Limits,
    /// Which channels can deliver (SMS needs a gateway).
    pub email_enabled: bool,
    pub sms_enabled: bool,
    /// Count the directory's `mail` / `mobile` as registered methods (as Azure AD allows).
    pub trust_directory_contacts: bool,
    /// The offline Pwned Passwords file, when configured.
    pub breached: Option<crate::breached::BreachedFile>,
    /// Directory groups allowed into the admin pages.
    pub admin_groups: Vec<String>,
    /// Directory groups whose members get the helpdesk's part of the admin pages.
    pub helpdesk_groups: Vec<String>,
    /// Proof-of-work difficulty before a browser may start a flow (0 = off).
    pub pow_bits: u8,
    pub reminders: crate::reminders::ReminderSettings,
}

impl Settings {
    pub fn register_url(&self) -> String {
        format!("{}/register", self.public_url.trim_end_matches('/'))
    }

    pub fn change_url(&self) -> String {
        format!("{}/change", self.public_url.trim_end_matches('/'))
    }
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub directory: Arc<dyn Directory>,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Random>,
    pub hasher: HashPool,
    pub key: ServerKey,
    pub settings: Settings,
    /// The passkey relying party for `public_url`; `None` turns passkeys off (a `public_url`
    /// WebAuthn cannot serve, logged at start).
    pub webauthn: Option<Arc<webauthn_rs::Webauthn>>,
    /// Rung after a message is queued, so the outbox worker sends it now rather than at its
    /// next idle look (the worker is built with the same handle).
    pub outbox_wake: Arc<tokio::sync::Notify>,
}

impl App {
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Tells the outbox worker a message is waiting. A wake-up while it is busy is kept.
    pub fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
    }

    /// The admin's policy, or the default until one is saved.
    pub async fn policy(&self) -> Result<Policy, AppError> {
        Ok(self.store.load_policy().await?.unwrap_or_default())
    }

    pub fn event(&self, ctx: &RequestCtx, activity: Activity, outcome: Outcome) -> AuditEvent {
        let mut e = AuditEvent::new(self.now(), activity, outcome);
        e.client_ip = ctx.ip.clone();
        e.client_type = ctx.client_type;
        e.actor = "anonymous".into();
        if let Some(host) = &ctx.remote_host {
            e.details = serde_json::json!({ "remote_host": host });
        }
        e
    }

    /// Writes the event. An audit write that fails is logged loudly, the whole event with
    /// it (see [`log_unstored`]), but does not turn a user's finished reset into an error.
    pub async fn record(&self, event: AuditEvent) {
        crate::metrics::metrics().event(&event);
        if let Err(e) = self.store.audit(&event).await {
            log_unstored(&event, &e.to_string());
        }
    }

    /// Records a failure and returns the error the user sees, carrying the event's support code.
    /// The code always leads somewhere: to the audit log, or, when the store cannot take the
    /// event, to the server's log (`support_code=CODE`).
    pub async fn fail(&self, mut event: AuditEvent, err: AppError) -> AppError {
        let code = support_code(self.rng.as_ref());
        event.outcome = Outcome::Failure;
        event.support_code = Some(code.clone());
        crate::metrics::metrics().event(&event);
        if !err.log.is_empty() {
            tracing::warn!(activity = event.activity.as_str(), support_code = %code, cause = %err.log, "request failed");
        }
        if err.kind == ErrorKind::StoreUnavailable {
            // The store just failed this request: try once, briefly, so the answer does not
            // wait for a second timeout.
            match tokio::time::timeout(AUDIT_WHEN_UNAVAILABLE, self.store.audit(&event)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log_unstored(&event, &e.to_string()),
                Err(_) => log_unstored(&event, "store: timed out"),
            }
        } else {
            self.record(event).await;
        }
        err.with_support_code(code)
    }

    pub fn new_support_code(&self) -> String {
        support_code(self.rng.as_ref())
    }

    /// The first of `checks` that is exhausted, as the seconds to wait before trying again:
    /// a block's remaining time, or the full window of a spent limit (waiting that long is
    /// always enough). `None` when every check passes. Reads only, in one statement.
    pub async fn first_exceeded(
        &self,
        blocks: &[String],
        windows: &[(String, sspr_domain::Window)],
    ) -> Result<Option<i64>, AppError> {
        let now = self.now();
        let state = self
            .store
            .throttle_state(blocks, &slots(windows, now), now)
            .await?;
        if let Some(until) = state.blocked_until.iter().flatten().next() {
            return Ok(Some(until - now));
        }
        Ok(windows
            .iter()
            .zip(&state.hits)
            .find(|((_, w), hits)| **hits >= w.max)
            .map(|((_, w), _)| w.secs))
    }

    /// Takes one slot in each window, atomically per window; the first full window's length
    /// is returned as the wait. Slots taken before a full window stay taken (counted as tries).
    pub async fn reserve(
        &self,
        windows: &[(String, sspr_domain::Window)],
    ) -> Result<Option<i64>, AppError> {
        let now = self.now();
        let full = self.store.take_slots(&slots(windows, now), now).await?;
        Ok(full.and_then(|i| windows.get(i)).map(|(_, w)| w.secs))
    }

    /// Counts a failure from the client's IP and blocks the IP once it has too many.
    pub async fn ip_failure(&self, ip: &str) -> Result<(), AppError> {
        let now = self.now();
        let w = self.settings.limits.ip_failures;
        self.store.hit(&keys::ip_failures(ip), now).await?;
        if self
            .store
            .hits_since(&keys::ip_failures(ip), now - w.secs)
            .await?
            >= w.max
        {
            self.store.block(&keys::ip_block(ip), now + w.secs).await?;
        }
        Ok(())
    }

    /// Too-many error in the user's language with a retry hint.
    pub fn too_many(&self, ctx: &RequestCtx, m: Msg, retry_after: i64) -> AppError {
        AppError::new(ErrorKind::TooMany, ctx.t(m)).with_retry_after(retry_after)
    }

    /// Queues a notice about an account change to each `(channel, address)`.
    pub async fn notify(
        &self,
        ctx: &RequestCtx,
        recipients: &[(Channel, String)],
        what_en: &str,
        what_zh: &str,
        target: &str,
    ) {
        for m in self.notice_messages(ctx, recipients, what_en, what_zh, target) {
            if let Err(e) = self.store.enqueue(&m).await {
                tracing::error!(error = %e, "could not queue a notification");
            }
        }
        self.wake_outbox();
    }

    /// The notices [`App::notify`] queues, for callers that store them in a transaction of
    /// their own.
    pub fn notice_messages(
        &self,
        ctx: &RequestCtx,
        recipients: &[(Channel, String)],
        what_en: &str,
        what_zh: &str,
        target: &str,
    ) -> Vec<OutboxMessage> {
        let now = self.now();
        let when = sspr_domain::clock::rfc3339(now);
        let what = if ctx.lang == Lang::Zh {
            what_zh
        } else {
            what_en
        };
        let org = &self.settings.organisation;
        recipients
            .iter()
            .map(|(channel, to)| {
                let mut m = match channel {
                    Channel::Email => {
                        let (subject, body) =
                            crate::messages::notice(ctx.lang, org, what, &when, &ctx.ip);
                        OutboxMessage::new(Channel::Email, to, &subject, &body, now)
                    }
                    Channel::Sms => {
                        let text = crate::messages::notice_sms(ctx.lang, org, what, &when);
                        OutboxMessage::new(Channel::Sms, to, "", &text, now)
                    }
                };
                m.target = target.into();
                m
            })
            .collect()
    }
}

/// Keys of the durable throttle counters. One place, so that clearing them on success
/// cannot miss one.
pub mod keys {
    pub fn ip_starts(ip: &str) -> String {
        format!("ip-start:{ip}")
    }
    /// Everything a logon agent's machine starts, over all its users and remote hosts.
    pub fn machine_starts(ip: &str) -> String {
        format!("machine-start:{ip}")
    }
    pub fn ip_failures(ip: &str) -> String {
        format!("ip-fail:{ip}")
    }
    pub fn ip_block(ip: &str) -> String {
        format!("ip-block:{ip}")
    }
    /// Keyed by the login as entered, whether or not it exists, so limits reveal nothing.
    pub fn login_starts(login: &str) -> String {
        format!("login-start:{login}")
    }
    /// Failed sign-ins to `login` from everywhere.
    pub fn login_failures(login: &str) -> String {
        format!("login-fail:{login}")
    }
    /// Failed sign-ins to `login` from one address. A login holds no control character, so
    /// the line break cannot be forged from either side.
    pub fn login_ip_failures(login: &str, ip: &str) -> String {
        format!("{}{ip}", login_ip_prefix(login))
    }
    /// What every `login_ip_failures` key of `login` starts with.
    pub fn login_ip_prefix(login: &str) -> String {
        format!("login-ip-fail:{login}\n")
    }
    pub fn account_failures(user_id: &str) -> String {
        format!("acct-fail:{user_id}")
    }
    pub fn account_codes(user_id: &str) -> String {
        format!("acct-code:{user_id}")
    }
    pub fn account_block(user_id: &str) -> String {
        format!("acct-block:{user_id}")
    }
    pub fn destination(dest: &str) -> String {
        format!("dest:{}", dest.to_lowercase())
    }
}

/// Rate-limit windows as the store's slots, each reaching back its length from `now`.
pub(crate) fn slots(
    windows: &[(String, sspr_domain::Window)],
    now: sspr_domain::clock::UnixTime,
) -> Vec<crate::ports::Slot> {
    windows
        .iter()
        .map(|(key, w)| crate::ports::Slot {
            key: key.clone(),
            since: now - w.secs,
            max: w.max,
        })
        .collect()
}
