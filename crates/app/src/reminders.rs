//! Password-expiry reminders: find the passwords that expire soon (the directory reads them
//! in pages), queue each due reminder at most once (by email, and by SMS where configured),
//! ask users who could not reset a forgotten password to register, and report how many
//! passwords expire when.
//!
//! `sspr serve` runs it every `reminders.every_minutes` on one instance at a time (a store
//! window every instance competes for); `sspr reminders run` runs it by hand. Each reminder
//! is recorded with its messages and audit event in one transaction, keyed by the user, the
//! expiry and the threshold: a second run, on this instance or another, queues nothing again.

use serde::Serialize;
use sspr_domain::Method;
use sspr_domain::audit::{Activity, ClientType, Outcome};
use sspr_domain::clock::rfc3339;
use sspr_domain::expiry::{DAY, bucket, days_left, due_reminder};

use crate::app::{App, RequestCtx};
use crate::error::{AppError, ErrorKind};
use crate::messages::{Lang, Reminder as ReminderText, expiry_reminder};
use crate::ports::{Channel, Expiring, MethodStatus, OutboxMessage, Reminder};

#[derive(Debug, Clone, Default)]
pub struct ReminderSettings {
    /// Days before expiry to remind on, largest first; empty: no reminders.
    pub days: Vec<u32>,
    /// Also text a registered phone (needs an SMS gateway).
    pub sms: bool,
    /// The language of the reminders.
    pub lang: Lang,
}

/// What a run found and did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReminderReport {
    pub dry_run: bool,
    /// Passwords by when they expire: `expired`, then within each configured number of days
    /// (`"7"`: within 7 days and more than the next smaller), in scope or not.
    pub expiring: Vec<(String, usize)>,
    /// Users outside the policy's scope (they cannot use sspr, so they get no reminder).
    pub out_of_scope: usize,
    /// Reminders due now (in scope, not expired).
    pub due: usize,
    /// Queued by this run; on a dry run, what would be.
    pub queued: usize,
    /// Due, but queued by an earlier run.
    pub already_sent: usize,
    /// Due, but the user has no email address or phone to send it to.
    pub no_address: usize,
    /// Of those queued, reminders that also ask the user to register security info.
    pub registration_nudges: usize,
}

/// Who runs the reminders, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReminderRunner {
    /// The job inside `sspr serve` (actor `system`).
    Job,
    /// `sspr reminders run` (actor `local-cli`), or the admin page's dry run.
    Cli,
}

impl App {
    /// Whether this instance should run the scheduled job now: one instance in each
    /// `every_secs` window wins, through the store, however many share it.
    pub async fn reminders_turn(&self, every_secs: i64) -> Result<bool, AppError> {
        let now = self.now();
        Ok(self
            .store
            .hit_within("reminders:run", now, now - every_secs.max(60), 1)
            .await?)
    }

    /// Finds the passwords that come due and queues their reminders (none on a dry run).
    /// `by` says who ran it, for the audit log: the job inside `sspr serve`
    /// ([`ReminderRunner::Job`]) or `sspr reminders run`.
    pub async fn run_reminders(
        &self,
        dry_run: bool,
        by: ReminderRunner,
    ) -> Result<ReminderReport, AppError> {
        let days = &self.settings.reminders.days;
        let Some(largest) = days.iter().max() else {
            return Err(AppError::invalid(
                "Reminders are off: list the days before expiry to remind on in reminders.days, e.g. [14, 7, 3, 1].",
            ));
        };
        let now = self.now();
        let before = now + i64::from(*largest) * DAY + 1;
        let expiring = match self.directory.expiring_passwords(before).await {
            Ok(Some(list)) => list,
            Ok(None) => {
                return Err(AppError::invalid(
                    "No password expires in this directory: set a maximum password age (directory.password_max_age_days for the built-in directory, pwdMaxAge in OpenLDAP's ppolicy, the domain's policy in AD).",
                ));
            }
            Err(e) => {
                return Err(AppError::new(
                    ErrorKind::Directory,
                    "the directory could not list expiring passwords",
                )
                .with_log(e.to_string()));
            }
        };
        let policy = self.policy().await?;
        let mut report = ReminderReport {
            dry_run,
            ..ReminderReport::default()
        };
        let mut counts: Vec<(String, usize)> = std::iter::once("expired".to_string())
            .chain(days.iter().rev().map(|d| d.to_string()))
            .map(|b| (b, 0))
            .collect();
        for e in &expiring {
            if let Some(b) = bucket(e.expires_at, now, days)
                && let Some(c) = counts.iter_mut().find(|(k, _)| *k == b)
            {
                c.1 += 1;
            }
            if !policy.in_scope(&e.user.groups) {
                report.out_of_scope += 1;
                continue;
            }
            let Some(threshold) = due_reminder(e.expires_at, now, days) else {
                continue;
            };
            report.due += 1;
            if self
                .store
                .reminder_sent(&e.user.id, e.expires_at, threshold)
                .await?
            {
                report.already_sent += 1;
                continue;
            }
            let Some((messages, nudge)) = self.reminder_messages(e, &policy).await? else {
                report.no_address += 1;
                continue;
            };
            if dry_run {
                report.queued += 1;
                report.registration_nudges += usize::from(nudge);
                continue;
            }
            let (actor, client_type) = match by {
                ReminderRunner::Job => ("system", ClientType::System),
                ReminderRunner::Cli => ("local-cli", ClientType::Cli),
            };
            let ctx = RequestCtx::new("", client_type, self.settings.reminders.lang);
            let mut ev = self.event(&ctx, Activity::ExpiryReminder, Outcome::Success);
            ev.actor = actor.into();
            ev.target = e.user.login.clone();
            ev.details = serde_json::json!({
                "days": threshold,
                "expires": rfc3339(e.expires_at),
                "to": messages.iter().map(|m| m.channel.as_str()).collect::<Vec<_>>(),
                "registration_nudge": nudge,
            });
            let reminder = Reminder {
                user_id: e.user.id.clone(),
                expires_at: e.expires_at,
                days: threshold,
                sent_at: now,
            };
            if self.store.queue_reminder(&reminder, &messages, &ev).await? {
                crate::metrics::metrics().event(&ev);
                report.queued += 1;
                report.registration_nudges += usize::from(nudge);
            } else {
                report.already_sent += 1;
            }
        }
        report.expiring = counts;
        if report.queued > 0 && !dry_run {
            self.wake_outbox();
        }
        tracing::info!(
            dry_run,
            due = report.due,
            queued = report.queued,
            already_sent = report.already_sent,
            no_address = report.no_address,
            "password-expiry reminders"
        );
        Ok(report)
    }

    /// The messages of one reminder, and whether it asks the user to register; `None` when
    /// there is nowhere to send it.
    async fn reminder_messages(
        &self,
        e: &Expiring,
        policy: &sspr_domain::Policy,
    ) -> Result<Option<(Vec<OutboxMessage>, bool)>, AppError> {
        let records = self.store.methods(&e.user.id).await?;
        let nudge = self.could_not_reset(&e.user, policy).await?;
        let s = &self.settings;
        let now = self.now();
        let change_url = s.change_url();
        let register_url = s.register_url();
        let text = ReminderText {
            org: &s.organisation,
            account: &e.user.login,
            days_left: days_left(e.expires_at, now),
            expires: &rfc3339(e.expires_at),
            change_url: &change_url,
            register_url: nudge.then_some(register_url.as_str()),
        };
        let (subject, body, sms) = expiry_reminder(s.reminders.lang, &text);
        let mut out: Vec<OutboxMessage> = self
            .notice_addresses(Some(&e.user), &records)
            .iter()
            .map(|to| OutboxMessage::new(Channel::Email, to, &subject, &body, now))
            .collect();
        if s.reminders.sms && s.sms_enabled {
            let phones = records
                .iter()
                .filter(|r| r.method == Method::Sms && r.status == MethodStatus::Active)
                .map(|r| r.value.clone());
            out.extend(phones.map(|to| OutboxMessage::new(Channel::Sms, &to, "", &sms, now)));
        }
        for m in &mut out {
            m.target = e.user.login.clone();
        }
        Ok((!out.is_empty()).then_some((out, nudge)))
    }
}
