//! Onboarding: an administrator, the CLI or the API (an HR script) invites a user to set their
//! first password. The invitation is a one-time link, sent to the email address or mobile
//! number the directory holds for the account, that opens a flow already verified by it: the
//! link is the proof that the person holds that address. The link's token is stored hashed,
//! like every flow token; it expires (`limits.invitation_ttl_secs`), works once (the flow
//! completes), and a newer invitation voids an older one. After the password is set the user
//! is asked to register security info.
//!
//! Privileged accounts (the policy's `privileged_groups`) are not invited: one link to one
//! address would be a weaker proof than their resets need.

use sspr_domain::FlowKind;
use sspr_domain::audit::{Activity, Outcome};
use sspr_domain::clock::rfc3339;
use sspr_domain::identity::canonical_login;
use sspr_domain::random::token;
use sspr_domain::{FlowState, Method};
use sspr_proto::{FlowResponse, InvitationResponse};

use crate::app::{App, RequestCtx};
use crate::crypto::token_hash;
use crate::error::{AppError, ErrorKind};
use crate::messages::{Lang, Msg};
use crate::ports::{Channel, FlowRecord, MethodStatus, OutboxMessage};
use crate::reset::{mask_destination, short_id};

impl App {
    /// Invites `user` by `channel` (email or sms). `actor` is who asked, for the audit log.
    pub async fn invite(
        &self,
        ctx: &RequestCtx,
        actor: &str,
        user: &str,
        channel: Channel,
    ) -> Result<InvitationResponse, AppError> {
        let mut ev = self.event(ctx, Activity::InvitationSent, Outcome::Success);
        ev.actor = actor.to_string();
        let Some(login) = canonical_login(user) else {
            ev.reason = "invalid_user_id".into();
            return Err(self
                .fail(ev, AppError::invalid("Give the user ID to invite."))
                .await);
        };
        ev.target = login.clone();
        let u = match self.directory.find_user(&login).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                ev.reason = "unknown_user".into();
                let err = AppError::invalid(format!(
                    "There is no user {login:?} in the directory: create the account first."
                ));
                return Err(self.fail(ev, err).await);
            }
            Err(e) => return Err(self.directory_failure(ctx, ev, e).await),
        };
        ev.target = u.login.clone();
        let policy = self.policy().await?;
        let refuse = |reason: &'static str, msg: String| (reason, msg);
        let refusal = if !u.enabled {
            Some(refuse(
                "disabled",
                format!(
                    "{} is disabled in the directory: enable the account first.",
                    u.login
                ),
            ))
        } else if !policy.in_scope(&u.groups) {
            Some(refuse(
                "out_of_scope",
                format!(
                    "{} is outside the policy's scope: self-service is not enabled for them.",
                    u.login
                ),
            ))
        } else if policy.is_privileged(&u.groups) {
            Some(refuse(
                "privileged",
                format!(
                    "{} is in a privileged group: privileged accounts are not invited (one link is a weaker proof than their resets need); set their first password by hand.",
                    u.login
                ),
            ))
        } else {
            None
        };
        if let Some((reason, msg)) = refusal {
            ev.reason = reason.into();
            return Err(self
                .fail(ev, AppError::new(ErrorKind::Forbidden, msg))
                .await);
        }
        let records = self.store.methods(&u.id).await?;
        let registered = |m: Method| {
            records
                .iter()
                .find(|r| r.method == m && r.status == MethodStatus::Active)
                .map(|r| r.value.clone())
        };
        let (method, destination) = match channel {
            Channel::Email => (
                Method::Email,
                u.email.clone().or_else(|| registered(Method::Email)),
            ),
            Channel::Sms => (
                Method::Sms,
                u.mobile.clone().or_else(|| registered(Method::Sms)),
            ),
        };
        let Some(destination) = destination else {
            ev.reason = "no_destination".into();
            let err = AppError::invalid(format!(
                "{} has no {} in the directory to send the invitation to.",
                u.login,
                if channel == Channel::Email {
                    "email address"
                } else {
                    "mobile number"
                }
            ));
            return Err(self.fail(ev, err).await);
        };
        if channel == Channel::Sms && !self.settings.sms_enabled {
            ev.reason = "sms_not_configured".into();
            let err = AppError::invalid("SMS is not configured ([delivery.sms]): invite by email.");
            return Err(self.fail(ev, err).await);
        }

        let now = self.now();
        let ttl = self.settings.limits.invitation_ttl_secs;
        let link_token = token(self.rng.as_ref());
        let flow = FlowRecord {
            id: token_hash(&link_token),
            kind: FlowKind::Invite,
            state: FlowState::Verified,
            user_id: u.id.clone(),
            login: u.lookup.clone(),
            account: u.login.clone(),
            display_name: u.display_name.clone(),
            privileged: false,
            required: 1,
            usable: vec![method],
            verified: vec![method],
            questions: Vec::new(),
            created_at: now,
            expires_at: now + ttl,
            client_type: ctx.client_type,
            client_ip: ctx.ip.clone(),
            finishing_at: 0,
            dir_stamp: None,
            lang: ctx.lang,
        };
        self.store.insert_flow(&flow).await?;
        // A newer invitation voids the older ones (and any other open flow of the user).
        self.store.close_other_flows(&u.id, &flow.id).await?;
        let link = format!(
            "{}/invite/{link_token}",
            self.settings.public_url.trim_end_matches('/')
        );
        let org = if self.settings.organisation.is_empty() {
            "sspr"
        } else {
            self.settings.organisation.as_str()
        };
        let until = rfc3339(flow.expires_at);
        let (subject, body) = match ctx.lang {
            Lang::Zh => (
                format!("{org}：请设置你的密码"),
                format!(
                    "已为你创建账户 {}。请通过此链接设置密码（只能使用一次，{until} 前有效）：{link}\n\n然后注册安全信息，以便忘记密码时自助重置。\n\n如果你没有预料到这封邮件，请忽略它并联系技术支持。",
                    u.login
                ),
            ),
            Lang::En => (
                format!("{org}: set your password"),
                format!(
                    "An account {} is ready for you. Set its password with this link (it works once, until {until}): {link}\n\nThen register your security info, so that you can reset the password yourself if you forget it.\n\nIf you did not expect this message, ignore it and tell your helpdesk.",
                    u.login
                ),
            ),
        };
        let (text_subject, text_body) = match channel {
            Channel::Email => (subject, body),
            Channel::Sms => (String::new(), format!("{subject}: {link}")),
        };
        let mut m = OutboxMessage::new(channel, &destination, &text_subject, &text_body, now);
        m.target = u.login.clone();
        m.flow_id = Some(flow.id.clone());
        self.store.enqueue(&m).await?;
        self.wake_outbox();
        let sent_to = mask_destination(method, &destination);
        ev.flow_id = Some(short_id(&flow.id));
        ev.merge_details(
            serde_json::json!({ "channel": channel.as_str(), "to": sent_to, "expires": until }),
        );
        self.record(ev).await;
        Ok(InvitationResponse {
            user: u.login,
            channel: channel.as_str().into(),
            sent_to,
            expires_in: ttl,
        })
    }

    /// The flow an invitation link opens, if it still can: unused, unexpired, not replaced.
    pub async fn invitation(
        &self,
        ctx: &RequestCtx,
        link_token: &str,
    ) -> Result<FlowResponse, AppError> {
        let invalid = || AppError::new(ErrorKind::Unauthorized, ctx.t(Msg::InvitationInvalid));
        let r = self
            .flow_status(ctx, link_token)
            .await
            .map_err(|_| invalid())?;
        if r.kind != FlowKind::Invite.as_str() || r.status != "set_password" {
            return Err(invalid());
        }
        Ok(r)
    }
}
