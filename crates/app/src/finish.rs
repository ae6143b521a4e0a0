//! The last step of a reset or unlock: the directory write, and a true record of its outcome
//! whatever happens around it.
//!
//! The write is bracketed by the store:
//! 1. before it, the flow moves `Verified → Finishing` together with the directory's
//!    password stamp read just then ([`Directory::password_stamp`]);
//! 2. after it, one transaction completes the flow, stores the audit event and queues the
//!    notices ([`Store::flow_complete`]).
//!
//! A crash between the two, a lost answer or a partial write leaves the flow `Finishing`.
//! Whoever meets it after `finish_lease_secs` (the housekeeping sweep at start-up and every
//! few seconds, or the user's next request) asks the directory whether the write landed
//! (the stamp moved, the lock is gone) and either completes the flow with its audit event and
//! notices, or puts it back to `Verified` so the user can try again. When the directory
//! cannot tell, the outcome is audited as unknown and the user is told so.
//!
//! [`Directory::password_stamp`]: crate::ports::Directory::password_stamp
//! [`Store::flow_complete`]: crate::ports::Store::flow_complete

use std::time::Duration;

use sspr_domain::audit::{Activity, AuditEvent, Outcome};
use sspr_domain::{FlowKind, FlowState};
use sspr_proto::FlowResponse;

use crate::app::{App, RequestCtx, keys};
use crate::error::{AppError, ErrorKind};
use crate::messages::Msg;
use crate::ports::{Completion, DirError, DirUser, FlowRecord};

/// What the directory shows after a write whose answer was not seen.
enum Landed {
    Yes(DirUser),
    No,
    /// Nothing it shows tells (no stamp, or the account is gone), now or later.
    Unknown,
    /// It could not be asked; it may tell later.
    Unreachable,
}

/// What the last step writes.
pub(crate) enum Write<'a> {
    /// A new password with reset semantics (which also unlocks).
    Reset(&'a str),
    /// A password the user knows, changed with their own rights (nothing is unlocked).
    Change {
        current: &'a str,
        new: &'a str,
    },
    Unlock,
}

/// How a stale `Finishing` flow was settled (for the sweep's log and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Completed,
    Reopened,
    Unknown,
    /// The directory could not be asked; left for the next sweep.
    Deferred,
}

impl App {
    fn lease(&self) -> i64 {
        self.settings.limits.finish_lease_secs.max(2)
    }

    /// The in-request write gets half the lease, so a reconciler never settles a write that
    /// is still running here.
    fn write_deadline(&self) -> Duration {
        Duration::from_secs((self.lease() / 2).max(1) as u64)
    }

    pub(crate) async fn finish(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        ev: AuditEvent,
        write: Write<'_>,
    ) -> Result<FlowResponse, AppError> {
        // Read the account and its stamp before the gate: nothing is written yet, so a
        // failure here leaves the flow as it was.
        let user = match self.directory.find_user(&flow.login).await {
            Ok(Some(u)) if u.id == flow.user_id => u,
            Ok(_) => {
                let e = DirError::Other("the account changed or vanished during the flow".into());
                return Err(self.directory_failure(ctx, ev, e).await);
            }
            Err(e) => return Err(self.directory_failure(ctx, ev, e).await),
        };
        // Disabled, expired or locked by an administrator since the flow began: an
        // administrator's decision is never undone by self-service, so nothing is written.
        if !user.enabled {
            let mut ev = ev;
            ev.reason = "disabled".into();
            let err = AppError::new(ErrorKind::Forbidden, ctx.t(Msg::NotEnabledForYou));
            return Err(self.fail(ev, err).await);
        }
        // A change never unlocks: an account locked since the password was checked (by an
        // administrator, or by failures elsewhere) stays locked and unchanged.
        if matches!(write, Write::Change { .. }) && user.locked {
            let mut ev = ev;
            ev.reason = "locked".into();
            let err = AppError::new(ErrorKind::Forbidden, ctx.t(Msg::ChangeLocked));
            return Err(self.fail(ev, err).await);
        }
        let stamp = match write {
            Write::Reset(_) | Write::Change { .. } => {
                match self.directory.password_stamp(&user).await {
                    Ok(s) => s,
                    Err(e) => return Err(self.directory_failure(ctx, ev, e).await),
                }
            }
            Write::Unlock => None,
        };
        let began = self.now();
        // Only one request may write: Verified → Finishing is the gate.
        if !self
            .store
            .flow_begin_finish(&flow.id, began, stamp.as_deref())
            .await?
        {
            let err = AppError::new(ErrorKind::Conflict, ctx.t(Msg::AlreadyFinishing))
                .with_retry_after(self.lease());
            return Err(self.fail(ev, err).await);
        }
        let flow = FlowRecord {
            state: FlowState::Finishing,
            finishing_at: began,
            dir_stamp: stamp,
            ..flow.clone()
        };
        let write = async {
            match write {
                Write::Reset(p) => self.directory.reset_password(&user, p).await,
                Write::Change { current, new } => {
                    self.directory.change_password(&user, current, new).await
                }
                Write::Unlock => self.directory.unlock(&user).await,
            }
        };
        let result = match tokio::time::timeout(self.write_deadline(), write).await {
            Ok(r) => r,
            Err(_) => Err(DirError::Unavailable(format!(
                "no answer from the directory within {:?}",
                self.write_deadline()
            ))),
        };
        match result {
            Ok(()) => {
                // Read back the lock: a reset also unlocks, unless the service account may
                // not; then the user and the audit are told the account is still locked.
                let after = match self.directory.find_user(&flow.login).await {
                    Ok(Some(u)) if u.id == user.id => u,
                    _ => DirUser {
                        locked: false,
                        ..user.clone()
                    },
                };
                self.complete(ctx, &flow, &after, ev, None).await;
                Ok(self.done_response(ctx, &flow, self.done_msg(&flow, &after)))
            }
            Err(DirError::Rejected(r)) => {
                // The directory refused the password itself: nothing was written.
                self.store.flow_abort_finish(&flow.id, began).await?;
                let mut ev = ev;
                // Only a reset's refusal is PasswordRejected, which the insights count as a
                // failed reset; a change's or an invitation's stays their own event.
                if flow.kind == FlowKind::Reset {
                    ev.activity = Activity::PasswordRejected;
                }
                ev.reason = format!(
                    "directory:{}",
                    r.iter().map(|x| x.code()).collect::<Vec<_>>().join(",")
                );
                Err(self.fail(ev, AppError::password(&r, ctx.lang.tag())).await)
            }
            Err(e) => self.after_failed_write(ctx, &flow, ev, e).await,
        }
    }

    /// The write failed. A refusal (rights, a protected account, the directory's own answer
    /// code) means nothing was written: the flow is reopened and the user told so. An
    /// unanswered write (a timeout, a dropped connection) may have landed, or may still land:
    /// the directory is asked before the user is told anything.
    async fn after_failed_write(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        ev: AuditEvent,
        e: DirError,
    ) -> Result<FlowResponse, AppError> {
        if !matches!(e, DirError::Unavailable(_)) {
            self.store
                .flow_abort_finish(&flow.id, flow.finishing_at)
                .await?;
            return Err(self.directory_failure(ctx, ev, e).await);
        }
        match self.landed(flow).await {
            Landed::Yes(user) => {
                self.complete(ctx, flow, &user, ev, Some(&e)).await;
                Ok(self.done_response(ctx, flow, self.done_msg(flow, &user)))
            }
            // Not visible (yet): it may still arrive. The flow stays `Finishing` until the
            // lease runs out, then the sweep asks again.
            Landed::No | Landed::Unknown | Landed::Unreachable => {
                let mut ev = ev;
                ev.activity = Activity::OutcomeUnknown;
                ev.reason = "write_unconfirmed".into();
                ev.merge_details(serde_json::json!({ "kind": flow.kind.as_str() }));
                let err = AppError::new(ErrorKind::Directory, ctx.t(Msg::OutcomeUnknown))
                    .with_retry_after(self.lease())
                    .with_log(e.to_string());
                Err(self.fail(ev, err).await)
            }
        }
    }

    /// "Your password was changed", or, when the directory still shows the account locked
    /// (the service account may set passwords but not clear locks), says so.
    fn done_msg(&self, flow: &FlowRecord, user: &DirUser) -> Msg {
        if matches!(flow.kind, FlowKind::Reset | FlowKind::Invite) && user.locked {
            Msg::ChangedStillLocked
        } else {
            Msg::done(flow.kind)
        }
    }

    /// Whether the write of a `Finishing` flow shows in the directory.
    async fn landed(&self, flow: &FlowRecord) -> Landed {
        let user = match self.directory.find_user(&flow.login).await {
            Ok(Some(u)) if u.id == flow.user_id => u,
            Ok(_) => return Landed::Unknown,
            Err(e) => {
                tracing::warn!(flow = %crate::reset::short_id(&flow.id), error = %e, "cannot read the account back after a write");
                return Landed::Unreachable;
            }
        };
        match flow.kind {
            FlowKind::Unlock => {
                if user.locked {
                    Landed::No
                } else {
                    Landed::Yes(user)
                }
            }
            FlowKind::Reset | FlowKind::Change | FlowKind::Invite => {
                match self.directory.password_stamp(&user).await {
                    Ok(Some(now)) if flow.dir_stamp.as_deref() != Some(now.as_str()) => {
                        Landed::Yes(user)
                    }
                    Ok(Some(_)) => Landed::No,
                    Ok(None) => Landed::Unknown,
                    Err(e) => {
                        tracing::warn!(flow = %crate::reset::short_id(&flow.id), error = %e, "cannot read the password stamp back after a write");
                        Landed::Unreachable
                    }
                }
            }
        }
    }

    /// Records a write that landed: flow completed, other flows closed, counters cleared,
    /// audit event and notices, in one transaction. If the store fails now, the flow stays
    /// `Finishing` and the sweep records it later (the stamp has moved): the user is still
    /// told the truth, that the password changed.
    async fn complete(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        user: &DirUser,
        mut ev: AuditEvent,
        after_error: Option<&DirError>,
    ) {
        ev.activity = match flow.kind {
            FlowKind::Reset => Activity::ResetPassword,
            FlowKind::Unlock => Activity::UnlockAccount,
            FlowKind::Change => Activity::ChangePassword,
            FlowKind::Invite => Activity::InvitationAccepted,
        };
        ev.outcome = Outcome::Success;
        let mut details =
            serde_json::json!({ "verified": flow.verified, "privileged": flow.privileged });
        if let Some(e) = after_error {
            // Written, but the answer was lost.
            ev.reason = "written_despite_error".into();
            details["error"] = serde_json::Value::String(e.to_string());
        }
        if flow.kind == FlowKind::Reset && user.locked {
            details["still_locked"] = serde_json::Value::Bool(true);
        }
        ev.merge_details(details);
        let notices = match self.completion_notices(ctx, flow, user).await {
            Ok(n) => n,
            Err(e) => {
                // The policy or the addresses could not be read: the change is recorded all
                // the same, and the missing notice is logged for the operator.
                tracing::error!(flow = %crate::reset::short_id(&flow.id), error = %e, "cannot prepare the notices of a finished reset");
                Vec::new()
            }
        };
        let done = Completion {
            flow_id: flow.id.clone(),
            user_id: flow.user_id.clone(),
            event: ev,
            notices,
            // A success clears the failure counters and any block (as in Azure AD).
            clear: vec![
                keys::account_failures(&flow.user_id),
                keys::account_codes(&flow.user_id),
                keys::account_block(&flow.user_id),
            ],
            // A changed password ends the user's sessions too: whoever else held one (a thief
            // the user is changing the password to shut out) is signed out with the old one.
            end_sessions: flow.kind != FlowKind::Unlock,
        };
        let queued = !done.notices.is_empty();
        let completed = self.store.flow_complete(&done).await;
        if completed.is_ok() {
            crate::metrics::metrics().event(&done.event);
        }
        match completed {
            Ok(()) if queued => self.wake_outbox(),
            Ok(()) => {}
            Err(e) => {
                tracing::error!(
                    flow = %crate::reset::short_id(&flow.id),
                    target = %flow.account,
                    activity = done.event.activity.as_str(),
                    error = %e,
                    "the directory write landed but could not be recorded yet; the next sweep records it"
                );
            }
        }
    }

    async fn completion_notices(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        user: &DirUser,
    ) -> Result<Vec<crate::ports::OutboxMessage>, AppError> {
        let policy = self.policy().await?;
        let records = self.store.methods(&flow.user_id).await?;
        let reset = flow.kind == FlowKind::Reset;
        let mut out = Vec::new();
        if policy.notify_user {
            let to = self.notice_recipients(Some(user), &records);
            let (en, zh) = match flow.kind {
                FlowKind::Reset => ("Your password was reset", "你的密码已被重置"),
                FlowKind::Change => ("Your password was changed", "你的密码已被更改"),
                FlowKind::Invite => ("Your password was set", "你的密码已设置"),
                FlowKind::Unlock => ("Your account was unlocked", "你的账户已被解锁"),
            };
            out.extend(self.notice_messages(ctx, &to, en, zh, &flow.account));
        }
        if reset
            && flow.privileged
            && policy.notify_admins_on_admin_reset
            && !policy.admin_notify.is_empty()
        {
            let en = format!(
                "The password of administrator {} was reset through self-service",
                flow.account
            );
            let zh = format!("管理员 {} 通过自助服务重置了密码", flow.account);
            let admins: Vec<_> = policy
                .admin_notify
                .iter()
                .map(|a| (crate::ports::Channel::Email, a.clone()))
                .collect();
            out.extend(self.notice_messages(ctx, &admins, &en, &zh, &flow.account));
        }
        Ok(out)
    }

    fn done_response(&self, ctx: &RequestCtx, flow: &FlowRecord, msg: Msg) -> FlowResponse {
        let done = FlowRecord {
            state: FlowState::Completed,
            ..flow.clone()
        };
        let mut r = self.flow_response(ctx, &done, &[]);
        r.message = ctx.t(msg);
        r
    }

    /// A request met a `Finishing` flow. Within the lease the write may still be running
    /// (here or on another instance): the user is asked to wait. After it, the flow is settled
    /// now and the caller reads it again.
    pub(crate) async fn meet_finishing(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
    ) -> Result<(), AppError> {
        let wait = flow.finishing_at + self.lease() - self.now();
        if wait > 0 {
            return Err(
                AppError::new(ErrorKind::Conflict, ctx.t(Msg::AlreadyFinishing))
                    .with_retry_after(wait),
            );
        }
        match self.settle(flow).await {
            Settled::Deferred => Err(AppError::new(
                ErrorKind::Directory,
                ctx.t(Msg::OutcomeUnknown),
            )
            .with_retry_after(self.lease())),
            _ => Ok(()),
        }
    }

    /// Settles one `Finishing` flow whose lease has run out.
    pub async fn settle(&self, flow: &FlowRecord) -> Settled {
        let s = self.settle_inner(flow).await;
        tracing::info!(flow = %crate::reset::short_id(&flow.id), target = %flow.account, kind = flow.kind.as_str(), settled = ?s, "settled an interrupted directory write");
        s
    }

    async fn settle_inner(&self, flow: &FlowRecord) -> Settled {
        let ctx = RequestCtx::new(flow.client_ip.clone(), flow.client_type, flow.lang);
        let activity = match flow.kind {
            FlowKind::Reset => Activity::ResetPassword,
            FlowKind::Unlock => Activity::UnlockAccount,
            FlowKind::Change => Activity::ChangePassword,
            FlowKind::Invite => Activity::InvitationAccepted,
        };
        let mut ev = self.event(&ctx, activity, Outcome::Success);
        ev.actor = flow.account.clone();
        ev.target = flow.account.clone();
        ev.flow_id = Some(crate::reset::short_id(&flow.id));
        match self.landed(flow).await {
            Landed::Yes(user) => {
                let mut ev = ev;
                ev.reason = "recovered".into();
                self.complete(&ctx, flow, &user, ev, None).await;
                // `complete` leaves the flow Finishing only if the store failed: try later.
                match self.store.flow(&flow.id).await {
                    Ok(Some(f)) if f.state == FlowState::Completed => Settled::Completed,
                    _ => Settled::Deferred,
                }
            }
            Landed::No => match self
                .store
                .flow_abort_finish(&flow.id, flow.finishing_at)
                .await
            {
                Ok(true) => {
                    ev.outcome = Outcome::Failure;
                    ev.reason = "interrupted_nothing_written".into();
                    self.record(ev).await;
                    Settled::Reopened
                }
                Ok(false) => Settled::Reopened,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reopen an interrupted flow");
                    Settled::Deferred
                }
            },
            // An unreachable directory may answer later: ask again at the next sweep.
            Landed::Unreachable => Settled::Deferred,
            // A directory that shows no stamp never will: closed as unknown now.
            Landed::Unknown => match self
                .store
                .flow_abort_finish(&flow.id, flow.finishing_at)
                .await
            {
                Ok(true) => {
                    ev.activity = Activity::OutcomeUnknown;
                    ev.outcome = Outcome::Failure;
                    ev.reason = "unverifiable".into();
                    ev.merge_details(serde_json::json!({ "kind": flow.kind.as_str() }));
                    self.record(ev).await;
                    Settled::Unknown
                }
                Ok(false) => Settled::Reopened,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reopen an unverifiable flow");
                    Settled::Deferred
                }
            },
        }
    }

    /// The housekeeping sweep: settles interrupted writes and reports abandoned flows.
    /// Returns how many flows it settled or reported.
    pub async fn sweep_flows(&self) -> Result<usize, AppError> {
        let now = self.now();
        let mut n = 0;
        for flow in self.store.flows_finishing(now - self.lease(), 100).await? {
            if self.settle(&flow).await != Settled::Deferred {
                n += 1;
            }
        }
        for flow in self.store.take_abandoned_flows(now, 500).await? {
            let ctx = RequestCtx::new(flow.client_ip.clone(), flow.client_type, flow.lang);
            let activity = match flow.kind {
                FlowKind::Reset => Activity::ResetAbandoned,
                FlowKind::Unlock => Activity::UnlockAbandoned,
                // A change is one request: its failure was audited then (a refusal, or an
                // interrupted write the sweep settled), and no one can come back to it.
                FlowKind::Change => continue,
                FlowKind::Invite => Activity::FlowExpired,
            };
            let mut ev = self.event(&ctx, activity, Outcome::Failure);
            ev.at = flow.expires_at;
            ev.actor = flow.account.clone();
            ev.target = flow.account.clone();
            ev.flow_id = Some(crate::reset::short_id(&flow.id));
            ev.reason = if flow.kind == FlowKind::Invite {
                "invitation_unused".into()
            } else if flow.verified.len() >= flow.required as usize {
                "verified_never_finished".into()
            } else if flow.verified.is_empty() {
                "never_verified".into()
            } else {
                "partly_verified".into()
            };
            ev.details = serde_json::json!({
                "verified": flow.verified,
                "required": flow.required,
            });
            self.record(ev).await;
            n += 1;
        }
        Ok(n)
    }
}

impl Msg {
    fn done(kind: FlowKind) -> Msg {
        match kind {
            FlowKind::Reset => Msg::PasswordChanged,
            FlowKind::Unlock => Msg::AccountUnlocked,
            FlowKind::Change => Msg::PasswordChangedByUser,
            FlowKind::Invite => Msg::FirstPasswordSet,
        }
    }
}
