//! Changing a password the user knows, and the screening every new password passes (a reset's
//! and a change's alike).
//!
//! A change is one request: the user ID, the current password and the new one. The current
//! password is checked like any sign-in (the same rate limits, the same answer and work for
//! unknown IDs); the new one is screened by the same rules as at a reset; then the write goes
//! through the same durable bracket as a reset's (see `crate::finish`), so a crash or a lost
//! answer is settled and audited the same way. The passwords are never stored: the flow record
//! that brackets the write is created just before it.

use sspr_domain::audit::{Activity, AuditEvent, Outcome};
use sspr_domain::random::token;
use sspr_domain::{FlowKind, FlowState, PasswordContext, Rejection};
use sspr_proto::FlowResponse;

use crate::app::{App, RequestCtx};
use crate::crypto::token_hash;
use crate::error::{AppError, ErrorKind};
use crate::finish::Write;
use crate::messages::Msg;
use crate::ports::{FlowRecord, PasswordCheck};
use crate::reset::short_id;

impl App {
    /// Checks a new password against the policy and the breached-password list. A refusal is
    /// audited on `ev` (its activity kept: a change's refusal is a failed change) with the
    /// rules' codes as the reason, and returned in words.
    pub(crate) async fn screen_password(
        &self,
        ctx: &RequestCtx,
        ev: &mut AuditEvent,
        login: &str,
        display_name: &str,
        new_password: &str,
    ) -> Result<(), AppError> {
        let rejections = self
            .password_rejections(login, display_name, new_password)
            .await?;
        if rejections.is_empty() {
            return Ok(());
        }
        if ev.activity == Activity::ResetPassword {
            ev.activity = Activity::PasswordRejected;
        }
        ev.reason = rejections
            .iter()
            .map(|r| r.code())
            .collect::<Vec<_>>()
            .join(",");
        Err(self
            .fail(ev.clone(), AppError::password(&rejections, ctx.lang.tag()))
            .await)
    }

    /// What the rules (the policy and the breached-password list) say of a new password: the
    /// one check behind a reset's, a change's and the strength meter's verdict.
    async fn password_rejections(
        &self,
        login: &str,
        display_name: &str,
        new_password: &str,
    ) -> Result<Vec<Rejection>, AppError> {
        let policy = self.policy().await?;
        let words = PasswordContext {
            login,
            display_name,
        };
        let mut rules = policy.password.clone();
        if rules.organisation.is_empty() {
            rules.organisation = self.settings.organisation.clone();
        }
        let mut rejections = rules.check(new_password, &words);
        if let Some(list) = self.settings.breached.clone() {
            let pw = new_password.to_owned();
            match tokio::task::spawn_blocking(move || list.contains(&pw)).await {
                Ok(Ok(true)) => rejections.push(Rejection::Breached),
                Ok(Ok(false)) => {}
                // Fail open: an unreadable list must not stop every reset; the admin is told.
                Ok(Err(e)) => tracing::error!(error = %e, "breached-password file unreadable"),
                Err(e) => tracing::error!(error = %e, "breached-password check failed"),
            }
        }
        Ok(rejections)
    }

    /// The strength meter's question while a user types: would the rules take this password,
    /// and if not, why, in the user's words. The same check a reset or change runs (without
    /// the display name, which would need a directory lookup; and the directory's own rules,
    /// such as its history, still speak only when the password is set). Nothing is stored
    /// or audited.
    pub async fn password_verdict(
        &self,
        lang: crate::Lang,
        login: &str,
        new_password: &str,
    ) -> Result<Vec<String>, AppError> {
        let login = sspr_domain::identity::canonical_login(login).unwrap_or_default();
        Ok(self
            .password_rejections(&login, "", new_password)
            .await?
            .iter()
            .map(|r| r.message(lang.tag()))
            .collect())
    }

    /// Changes the password of `user`, who proves it is them with `current`.
    ///
    /// Wrong IDs and wrong passwords get the sign-in answer (the same words, work and limits
    /// as the registration sign-in), so this page reveals no more than that one. The write
    /// runs with the user's own rights where the directory has them (LDAP, AD): whatever
    /// the directory refuses a user's own change (a minimum age, its history) is refused here,
    /// in words.
    pub async fn change_password(
        &self,
        ctx: &RequestCtx,
        user: &str,
        current: &str,
        new_password: &str,
    ) -> Result<FlowResponse, AppError> {
        let mut ev = self.event(ctx, Activity::ChangePassword, Outcome::Success);
        // A password that has expired or must be changed is what this page is for.
        let (account, check) = self
            .credentials(ctx, &mut ev, user, current, Msg::SignInFailed)
            .await?;
        if check == PasswordCheck::MustChange {
            ev.merge_details(serde_json::json!({ "required": true }));
        }
        ev.actor = account.login.clone();
        ev.target = account.login.clone();
        let policy = self.policy().await?;
        if !policy.in_scope(&account.groups) {
            ev.reason = "out_of_scope".into();
            let err = AppError::new(ErrorKind::Forbidden, ctx.t(Msg::NotEnabledForYou));
            return Err(self.fail(ev, err).await);
        }
        if new_password == current {
            ev.reason = Rejection::SameAsCurrent.code().into();
            let err = AppError::password(&[Rejection::SameAsCurrent], ctx.lang.tag());
            return Err(self.fail(ev, err).await);
        }
        self.screen_password(
            ctx,
            &mut ev,
            &account.login,
            &account.display_name,
            new_password,
        )
        .await?;

        let now = self.now();
        // The flow exists only to bracket the write; its token is never handed out.
        let flow = FlowRecord {
            id: token_hash(&token(self.rng.as_ref())),
            kind: FlowKind::Change,
            state: FlowState::Verified,
            user_id: account.id.clone(),
            login: account.lookup.clone(),
            account: account.login.clone(),
            display_name: account.display_name.clone(),
            privileged: false,
            required: 0,
            usable: Vec::new(),
            verified: Vec::new(),
            questions: Vec::new(),
            created_at: now,
            expires_at: now + self.settings.limits.flow_ttl_secs,
            client_type: ctx.client_type,
            client_ip: ctx.ip.clone(),
            finishing_at: 0,
            dir_stamp: None,
            lang: ctx.lang,
        };
        self.store.insert_flow(&flow).await?;
        ev.flow_id = Some(short_id(&flow.id));
        let write = Write::Change {
            current,
            new: new_password,
        };
        let mut r = self.finish(ctx, &flow, ev, write).await?;
        r.flow_token = None;
        // The registration campaign's nudge: someone who knows their password today, but
        // could not reset it if they forgot, is asked to register now.
        if self.could_not_reset(&account, &policy).await? {
            r.register_url = Some(self.settings.register_url());
        }
        Ok(r)
    }

    /// Whether `user` has too few usable methods to reset a forgotten password.
    pub(crate) async fn could_not_reset(
        &self,
        user: &crate::ports::DirUser,
        policy: &sspr_domain::Policy,
    ) -> Result<bool, AppError> {
        let records = self.store.methods(&user.id).await?;
        let usable = self.usable_methods(user, &records);
        let applicant = sspr_domain::flow::Applicant {
            exists: true,
            enabled: user.enabled,
            groups: &user.groups,
            registered: &usable,
        };
        Ok(matches!(
            sspr_domain::flow::eligibility(policy, FlowKind::Reset, &applicant),
            Err(sspr_domain::flow::Ineligible::NotRegistered)
        ))
    }
}
