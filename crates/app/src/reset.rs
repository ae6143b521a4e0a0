//! Reset and unlock: start with a user ID, prove identity with as many different methods as
//! the policy requires, then set a new password or unlock.

use sspr_domain::audit::{Activity, AuditEvent, Outcome};
use sspr_domain::flow::{Applicant, eligibility, remaining_methods};
use sspr_domain::identity::canonical_login;
use sspr_domain::random::{numeric_code, token};
use sspr_domain::{FlowKind, FlowState, Method, mask};
use sspr_proto::{ChallengeResponse, FlowResponse, MethodOption, QuestionText, VerifyRequest};

use crate::app::{App, RequestCtx, keys};
use crate::crypto::token_hash;
use crate::error::{AppError, ErrorKind};
use crate::finish::Write;
use crate::messages::{Lang, Msg, code_message};
use crate::ports::{
    Channel, CodeRecord, DirError, DirUser, FlowRecord, MethodRecord, MethodStatus, OutboxMessage,
    Proof, StepResult, VerifiedStep,
};

/// Why a verification failed; recorded in the audit log as the reason.
pub(crate) enum Miss {
    Wrong,
    Expired,
    NoCode,
}

impl App {
    /// Step 1. Every user ID that cannot reset (unknown, disabled, out of scope, unregistered)
    /// gets the same answer, and the same work is done for it, so the answer and its timing
    /// reveal nothing.
    pub async fn start_flow(
        &self,
        ctx: &RequestCtx,
        user: &str,
        kind: FlowKind,
    ) -> Result<FlowResponse, AppError> {
        let activity = match kind {
            FlowKind::Reset => Activity::ResetStarted,
            FlowKind::Unlock => Activity::UnlockStarted,
            // A change is one request of its own (`App::change_password`), and an invitation
            // comes from an administrator (`App::invite`): neither is a flow to start.
            FlowKind::Change | FlowKind::Invite => {
                return Err(AppError::invalid(
                    "kind must be \"reset\" or \"unlock\"; a password you know is changed with POST /api/v1/password/change.",
                ));
            }
        };
        let mut ev = self.event(ctx, activity, Outcome::Success);
        let Some(login) = canonical_login(user) else {
            ev.reason = "invalid_user_id".into();
            return Err(self
                .fail(ev, AppError::invalid(ctx.t(Msg::EnterUserId)))
                .await);
        };
        ev.target = login.clone();
        ev.actor = login.clone();
        let limits = &self.settings.limits;
        let now = self.now();

        // The block and the windows are read first, so a spent limit stops a request before
        // it costs the directory anything. The slots themselves are taken atomically in the
        // transaction that stores the flow, so concurrent requests on any instance cannot all
        // slip under a limit at once: a start is one transaction.
        let source = ctx.source(&login);
        let mut windows = vec![
            (keys::ip_starts(&source), limits.ip_starts),
            (keys::login_starts(&login), limits.account_starts),
        ];
        if let Some(machine) = ctx.machine_cap() {
            let mut w = limits.ip_starts;
            w.max = w.max.saturating_mul(crate::app::MACHINE_SHARE);
            windows.push((machine, w));
        }
        let slots = crate::app::slots(&windows, now);
        let rate_limited = |mut ev: AuditEvent, wait: i64| {
            ev.activity = Activity::RateLimited;
            ev.reason = "start_rate".into();
            (ev, self.too_many(ctx, Msg::TooManyRequests, wait))
        };
        if let Some(wait) = self
            .first_exceeded(&[keys::ip_block(&source)], &windows)
            .await?
        {
            let (ev, err) = rate_limited(ev, wait);
            return Err(self.fail(ev, err).await);
        }

        let policy = self.policy().await?;
        // Unlock is switched off for everyone (the policy is global), so saying so reveals
        // nothing about this account; sending the user to register could not help them.
        if kind == FlowKind::Unlock && !policy.allow_unlock {
            ev.reason = "unlock_not_allowed".into();
            let err = AppError::new(ErrorKind::Forbidden, ctx.t(Msg::UnlockNotOffered));
            return Err(self.fail(ev, err).await);
        }
        let found = match self.directory.find_user(&login).await {
            Ok(u) => u,
            Err(e) => {
                // A lookup that failed counts against the limits as a start would, so a
                // failing directory cannot be asked past them.
                self.reserve(&windows).await?;
                return Err(self.directory_failure(ctx, ev, e).await);
            }
        };
        // Read registrations whether or not the user exists: the same queries either way.
        let id_for_lookup = found
            .as_ref()
            .map(|u| u.id.clone())
            .unwrap_or_else(|| login.clone());
        let records = self.store.methods(&id_for_lookup).await?;
        let blocked = self.account_blocked_until(&id_for_lookup).await?;

        let empty = Vec::new();
        let (exists, enabled, groups) = match &found {
            Some(u) => (true, u.enabled, &u.groups),
            None => (false, false, &empty),
        };
        let usable = match &found {
            Some(u) => self.usable_methods(u, &records),
            None => Vec::new(),
        };
        let applicant = Applicant {
            exists,
            enabled,
            groups,
            registered: &usable,
        };
        let verdict = eligibility(&policy, kind, &applicant);

        let flow_token = token(self.rng.as_ref());
        let mut flow = FlowRecord {
            id: token_hash(&flow_token),
            kind,
            state: FlowState::Ineligible,
            user_id: String::new(),
            login: login.clone(),
            account: login.clone(),
            display_name: String::new(),
            privileged: false,
            required: policy.methods_required,
            usable: Vec::new(),
            verified: Vec::new(),
            questions: Vec::new(),
            created_at: now,
            expires_at: now + limits.flow_ttl_secs,
            client_type: ctx.client_type,
            client_ip: ctx.ip.clone(),
            finishing_at: 0,
            dir_stamp: None,
            lang: ctx.lang,
        };
        ev.flow_id = Some(short_id(&flow.id));
        if let Some(u) = &found
            && u.login != login
        {
            // Typed as an alias (a mail address, a UPN): the log names the account.
            flow.account = u.login.clone();
            ev.actor = u.login.clone();
            ev.target = u.login.clone();
            ev.merge_details(serde_json::json!({ "typed_as": login }));
        }
        if let (Ok(req), Some(u)) = (&verdict, &found) {
            flow.state = FlowState::Verifying;
            flow.user_id = u.id.clone();
            flow.display_name = u.display_name.clone();
            flow.privileged = req.privileged;
            flow.required = req.required;
            flow.usable = req.methods.clone();
        }
        // The slots, the flow and its event go in one transaction. A window filled since the
        // check above (a concurrent start) leaves no flow and no start event behind.
        let windows = &windows;
        let full = |ev: AuditEvent, i: usize| async move {
            let wait = windows.get(i).map_or(0, |(_, w)| w.secs);
            let (mut ev, err) = rate_limited(ev, wait);
            ev.flow_id = None;
            self.fail(ev, err).await
        };
        match verdict {
            Err(why) => {
                ev.outcome = Outcome::Failure;
                ev.reason = why.reason().into();
                if let Some(i) = self.store.start_flow(&flow, &ev, &slots).await? {
                    return Err(full(ev, i).await);
                }
                crate::metrics::metrics().event(&ev);
                Ok(FlowResponse {
                    flow_token: Some(flow_token),
                    status: "registration_required".into(),
                    kind: kind.as_str().into(),
                    message: ctx.t(Msg::RegistrationRequired),
                    register_url: Some(self.settings.register_url()),
                    methods: Vec::new(),
                    browser_only: Vec::new(),
                    required: policy.methods_required,
                    verified: Vec::new(),
                    expires_in: limits.flow_ttl_secs,
                })
            }
            Ok(_) => {
                if let Some(until) = blocked {
                    self.reserve(windows).await?;
                    self.store.insert_flow(&flow).await?;
                    ev.activity = Activity::BlockedFromReset;
                    ev.reason = "blocked".into();
                    let err = self.too_many(ctx, Msg::Blocked, until - now);
                    return Err(self.fail(ev, err).await);
                }
                ev.merge_details(
                    serde_json::json!({ "methods": flow.usable, "required": flow.required }),
                );
                if let Some(i) = self.store.start_flow(&flow, &ev, &slots).await? {
                    return Err(full(ev, i).await);
                }
                crate::metrics::metrics().event(&ev);
                let mut r = self.flow_response(ctx, &flow, &records);
                r.flow_token = Some(flow_token);
                Ok(r)
            }
        }
    }

    /// The password rules in words, to show before the user types: the policy's, then the
    /// directory's. With the token of a verified reset flow, that user's own directory rules
    /// (an AD fine-grained policy, a per-user ppolicy).
    pub async fn password_policy_view(
        &self,
        ctx: &RequestCtx,
        flow_token: Option<&str>,
    ) -> Result<sspr_proto::PasswordPolicyResponse, AppError> {
        let p = self.policy().await?.password;
        let zh = ctx.lang == crate::Lang::Zh;
        let mut rules = vec![if zh {
            format!(
                "至少 {} 个字符，最多 {} 个；可以使用空格和任何字符。",
                p.min_length, p.max_length
            )
        } else {
            format!(
                "At least {} and at most {} characters; spaces and any characters are allowed.",
                p.min_length, p.max_length
            )
        }];
        if p.reject_common {
            rules.push(if zh {
                "不能是常用或已泄露的密码。".into()
            } else {
                "Not a commonly used or breached password.".into()
            });
        }
        if p.reject_context {
            rules.push(if zh {
                "不能包含你的用户名、姓名或机构名。".into()
            } else {
                "Not containing your user name, your name or the organisation's name.".into()
            });
        }
        if p.min_character_classes > 0 {
            rules.push(
                sspr_domain::Rejection::TooFewClasses {
                    min: p.min_character_classes,
                }
                .message(ctx.lang.tag()),
            );
        }
        let own = match flow_token {
            Some(token) => self.password_rules_for_flow(ctx, token).await,
            None => None,
        };
        match own {
            Some(extra) => rules.extend(extra),
            None => match self.directory.password_rules().await {
                Ok(extra) => rules.extend(extra.iter().map(|r| r.message(ctx.lang.tag()))),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the directory's password rules")
                }
            },
        }
        Ok(sspr_proto::PasswordPolicyResponse {
            min_length: p.min_length,
            max_length: p.max_length,
            rules,
        })
    }

    /// The directory's rules for the user of a verified reset flow (AD fine-grained
    /// policies, a ppolicy of their own). `None` for any other token: before verification the
    /// answer could reveal a user's group membership, so only the general rules are shown.
    pub async fn password_rules_for_flow(
        &self,
        ctx: &RequestCtx,
        flow_token: &str,
    ) -> Option<Vec<String>> {
        let flow = self.open_flow(ctx, flow_token).await.ok()?;
        if !matches!(flow.kind, FlowKind::Reset | FlowKind::Invite)
            || flow.state != FlowState::Verified
        {
            return None;
        }
        let user = self.directory.find_user(&flow.login).await.ok()??;
        match self.directory.password_rules_for(&user).await {
            Ok(rules) => Some(rules.iter().map(|r| r.message(ctx.lang.tag())).collect()),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the user's password rules");
                None
            }
        }
    }

    /// The flow's current state. An account blocked after too many failed verifications is
    /// `blocked`, with no methods: every step would be refused until the block ends, so none
    /// is offered.
    pub async fn flow_status(
        &self,
        ctx: &RequestCtx,
        flow_token: &str,
    ) -> Result<FlowResponse, AppError> {
        let flow = self.open_own_flow(ctx, flow_token).await?;
        let records = self.store.methods(&flow.user_id).await?;
        let mut r = self.flow_response(ctx, &flow, &records);
        if flow.state == FlowState::Verifying
            && self.account_blocked_until(&flow.user_id).await?.is_some()
        {
            r.status = "blocked".into();
            r.message = ctx.t(Msg::Blocked);
            r.methods.clear();
            r.browser_only.clear();
        }
        Ok(r)
    }

    /// Step 2: send a code, draw questions, or ask for the authenticator code.
    pub async fn challenge(
        &self,
        ctx: &RequestCtx,
        flow_token: &str,
        method: &str,
    ) -> Result<ChallengeResponse, AppError> {
        let flow = self.open_flow(ctx, flow_token).await?;
        let mut ev = self.flow_event(ctx, &flow, Activity::CodeSent);
        let method = self.pick_method(ctx, &flow, method, &mut ev).await?;
        self.check_not_blocked(ctx, &flow, ev.clone()).await?;
        ev.merge_details(serde_json::json!({ "method": method }));
        let limits = &self.settings.limits;
        match method {
            Method::Email | Method::Sms => {
                let records = self.store.methods(&flow.user_id).await?;
                let dest = self.destination(&flow, &records, method).await?;
                let windows = [
                    (keys::account_codes(&flow.user_id), limits.account_codes),
                    (keys::destination(&dest), limits.destination_codes),
                ];
                let masked = mask_destination(method, &dest);
                ev.merge_details(serde_json::json!({ "method": method, "destination": masked }));
                // The slots, the code, its message and this event: one transaction.
                let slots = crate::app::slots(&windows, self.now());
                let full = self
                    .send_code(
                        ctx,
                        &flow.id,
                        method,
                        &dest,
                        true,
                        &flow.account,
                        Some(flow.id.clone()),
                        &slots,
                        &ev,
                    )
                    .await?;
                if let Some(i) = full {
                    ev.activity = Activity::RateLimited;
                    ev.reason = "code_rate".into();
                    let wait = windows.get(i).map_or(0, |(_, w)| w.secs);
                    let err = self.too_many(ctx, Msg::TooManyCodes, wait);
                    return Err(self.fail(ev, err).await);
                }
                Ok(ChallengeResponse {
                    method: method.as_str().into(),
                    message: ctx.t(Msg::CodeSent),
                    sent_to: Some(masked),
                    questions: Vec::new(),
                    expires_in: Some(limits.code_ttl_secs),
                    passkey: None,
                })
            }
            Method::Questions => {
                let policy = self.policy().await?;
                // An answer to a custom question the admin has since removed or reworded has
                // no text to show: it is never drawn. Too few left, and the method is unusable.
                let mut ids: Vec<String> = self
                    .store
                    .answers(&flow.user_id)
                    .await?
                    .into_iter()
                    .map(|(q, _)| q)
                    .filter(|q| policy.question_text(q, "en").is_some())
                    .collect();
                if ids.len() < usize::from(policy.questions_to_answer) {
                    ev.activity = Activity::QuestionsDrawn;
                    ev.reason = "questions_orphaned".into();
                    let err = AppError::invalid(ctx.t(Msg::MethodNotOffered));
                    return Err(self.fail(ev, err).await);
                }
                shuffle(&mut ids, self.rng.as_ref());
                ids.truncate(policy.questions_to_answer as usize);
                ev.activity = Activity::QuestionsDrawn;
                self.store.draw_questions(&flow.id, &ids, &ev).await?;
                crate::metrics::metrics().event(&ev);
                let questions = ids
                    .iter()
                    .map(|id| QuestionText {
                        id: id.clone(),
                        text: policy.question_text(id, ctx.lang.tag()).unwrap_or_default(),
                    })
                    .collect();
                Ok(ChallengeResponse {
                    method: method.as_str().into(),
                    message: ctx.t(Msg::AnswerQuestions),
                    sent_to: None,
                    questions,
                    expires_in: None,
                    passkey: None,
                })
            }
            Method::Passkey => {
                let options = self.passkey_challenge(ctx, &flow).await?;
                Ok(ChallengeResponse {
                    method: method.as_str().into(),
                    message: ctx.t(Msg::EnterPasskey),
                    sent_to: None,
                    questions: Vec::new(),
                    expires_in: None,
                    passkey: Some(options),
                })
            }
            Method::Totp | Method::RecoveryCode => Ok(ChallengeResponse {
                method: method.as_str().into(),
                message: ctx.t(if method == Method::Totp {
                    Msg::EnterTotp
                } else {
                    Msg::EnterRecoveryCode
                }),
                sent_to: None,
                questions: Vec::new(),
                expires_in: None,
                passkey: None,
            }),
        }
    }

    /// The challenge waiting for an answer, as its page shows it again after a redirect, a
    /// reload or a language switch. It sends and draws nothing (a reload must not resend a
    /// code); `None` when nothing of `method` is waiting: no code out, no questions drawn.
    pub async fn current_challenge(
        &self,
        ctx: &RequestCtx,
        flow_token: &str,
        method: &str,
    ) -> Result<Option<ChallengeResponse>, AppError> {
        let flow = self.open_flow(ctx, flow_token).await?;
        let Some(method) = Method::parse(method.trim()) else {
            return Ok(None);
        };
        // A blocked account has nothing to answer: the flow's page says why.
        if flow.state != FlowState::Verifying
            || !remaining_methods(&flow.usable, &flow.verified).contains(&method)
            || self.account_blocked_until(&flow.user_id).await?.is_some()
        {
            return Ok(None);
        }
        let waiting = |message: Msg| ChallengeResponse {
            method: method.as_str().into(),
            message: ctx.t(message),
            sent_to: None,
            questions: Vec::new(),
            expires_in: None,
            passkey: None,
        };
        Ok(match method {
            Method::Email | Method::Sms => {
                let now = self.now();
                match self.store.latest_code(&flow.id, method.as_str()).await? {
                    Some(rec)
                        if !rec.used
                            && !rec.delivery_failed
                            && rec.expires_at > now
                            && rec.attempts < self.settings.limits.code_max_attempts =>
                    {
                        Some(ChallengeResponse {
                            sent_to: Some(mask_destination(method, &rec.destination)),
                            expires_in: Some(rec.expires_at - now),
                            ..waiting(Msg::CodeSent)
                        })
                    }
                    _ => None,
                }
            }
            Method::Questions if flow.questions.is_empty() => None,
            Method::Questions => {
                let policy = self.policy().await?;
                Some(ChallengeResponse {
                    questions: flow
                        .questions
                        .iter()
                        .map(|id| QuestionText {
                            id: id.clone(),
                            text: policy.question_text(id, ctx.lang.tag()).unwrap_or_default(),
                        })
                        .collect(),
                    ..waiting(Msg::AnswerQuestions)
                })
            }
            Method::Totp => Some(waiting(Msg::EnterTotp)),
            Method::RecoveryCode => Some(waiting(Msg::EnterRecoveryCode)),
            // A passkey's options belong to the challenge the page ran; a new one is asked for.
            Method::Passkey => None,
        })
    }

    /// Step 3: check a code or the answers. Enough different methods → ready for step 4.
    pub async fn verify(
        &self,
        ctx: &RequestCtx,
        flow_token: &str,
        req: &VerifyRequest,
    ) -> Result<FlowResponse, AppError> {
        let flow = self.open_flow(ctx, flow_token).await?;
        let mut ev = self.flow_event(ctx, &flow, Activity::MethodVerified);
        let method = self.pick_method(ctx, &flow, &req.method, &mut ev).await?;
        self.check_not_blocked(ctx, &flow, ev.clone()).await?;
        ev.merge_details(serde_json::json!({ "method": method }));

        let proof = match method {
            Method::Email | Method::Sms => self
                .match_code(ctx, &flow.id, method, req.code.as_deref())
                .await?
                .map(|id| Proof::Code {
                    id,
                    max_attempts: self.settings.limits.code_max_attempts,
                }),
            Method::Totp => self
                .match_totp(ctx, &flow.user_id, req.code.as_deref())
                .await?
                .map(|step| Proof::TotpStep { step }),
            Method::Passkey => match self
                .check_passkey(ctx, &flow, req.credential.as_ref())
                .await?
            {
                Ok(()) => Ok(Proof::Nothing),
                Err((miss, why)) => {
                    ev.merge_details(serde_json::json!({ "passkey": why }));
                    Err(miss)
                }
            },
            Method::RecoveryCode => Ok(Proof::RecoveryCode {
                digest: self.recovery_digest(ctx, &flow.user_id, req.code.as_deref())?,
            }),
            Method::Questions => {
                let r = self
                    .check_answers(&flow, req.answers.as_deref().unwrap_or_default())
                    .await?;
                // A wrong answer restarts the selection, so nobody can hammer one question.
                if r.is_err() {
                    self.store.flow_questions(&flow.id, &[]).await?;
                }
                r.map(|()| Proof::Nothing)
            }
        };
        let proof = match proof {
            Ok(p) => p,
            Err(miss) => return Err(self.verification_failed(ctx, &flow, method, miss, ev).await),
        };

        let mut verified = flow.verified.clone();
        verified.push(method);
        let state = if verified.len() >= flow.required as usize {
            FlowState::Verified
        } else {
            FlowState::Verifying
        };
        let step = VerifiedStep {
            flow_id: flow.id.clone(),
            user_id: flow.user_id.clone(),
            before: flow.verified.clone(),
            after: verified.clone(),
            state,
            proof,
            now: self.now(),
            event: ev,
        };
        // One transaction spends the proof, moves the flow and stores the event: a store that
        // fails in between can no longer use a code up without the flow counting it.
        let codes_left = match self.store.verify_step(&step).await? {
            StepResult::Verified { recovery_left } => recovery_left,
            StepResult::ProofSpent => {
                return Err(self
                    .verification_failed(ctx, &flow, method, Miss::Expired, step.event)
                    .await);
            }
            StepResult::ProofUnknown => {
                return Err(self
                    .verification_failed(ctx, &flow, method, Miss::Wrong, step.event)
                    .await);
            }
            StepResult::FlowMoved => {
                // A concurrent request changed the flow first; nothing was spent.
                return Err(AppError::new(
                    ErrorKind::Conflict,
                    ctx.t(Msg::AlreadyFinishing),
                ));
            }
        };
        // The stored event also carries `codes_left` (the store adds it); the metrics read
        // only the activity and the method.
        crate::metrics::metrics().event(&step.event);
        let records = self.store.methods(&flow.user_id).await?;
        if let Some(left) = codes_left {
            self.recovery_code_used(ctx, &flow, &records, left).await;
        }
        let updated = FlowRecord {
            verified,
            state,
            questions: Vec::new(),
            ..flow
        };
        Ok(self.flow_response(ctx, &updated, &records))
    }

    /// Step 4 (reset): check the new password against the policy, write it to the directory
    /// (which also unlocks the account), close the flow, tell the user.
    pub async fn set_password(
        &self,
        ctx: &RequestCtx,
        flow_token: &str,
        new_password: &str,
    ) -> Result<FlowResponse, AppError> {
        let flow = self.open_own_flow(ctx, flow_token).await?;
        let mut ev = self.flow_event(ctx, &flow, Activity::ResetPassword);
        let sets_password = matches!(flow.kind, FlowKind::Reset | FlowKind::Invite);
        if flow.state == FlowState::Completed && sets_password {
            // Settled after an interruption: the password chosen then is the one in force.
            return Err(AppError::new(
                ErrorKind::Conflict,
                ctx.t(Msg::AlreadyChanged),
            ));
        }
        if !sets_password || flow.state != FlowState::Verified {
            ev.reason = "not_verified".into();
            return Err(self
                .fail(
                    ev,
                    AppError::new(ErrorKind::Forbidden, ctx.t(Msg::NotSetPasswordStep)),
                )
                .await);
        }
        if flow.kind == FlowKind::Invite {
            ev.activity = Activity::InvitationAccepted;
        }
        self.screen_password(ctx, &mut ev, &flow.login, &flow.display_name, new_password)
            .await?;
        self.finish(ctx, &flow, ev, Write::Reset(new_password))
            .await
    }

    /// Step 4 (unlock): unlock the account and keep the password.
    pub async fn unlock(
        &self,
        ctx: &RequestCtx,
        flow_token: &str,
    ) -> Result<FlowResponse, AppError> {
        let flow = self.open_own_flow(ctx, flow_token).await?;
        let mut ev = self.flow_event(ctx, &flow, Activity::UnlockAccount);
        if flow.state == FlowState::Completed && flow.kind == FlowKind::Unlock {
            // Settled after an interruption: the account is unlocked; unlocking is idempotent.
            return Ok(self.flow_response(ctx, &flow, &[]));
        }
        if flow.kind != FlowKind::Unlock || flow.state != FlowState::Verified {
            ev.reason = "not_verified".into();
            return Err(self
                .fail(
                    ev,
                    AppError::new(ErrorKind::Forbidden, ctx.t(Msg::NotSetPasswordStep)),
                )
                .await);
        }
        self.finish(ctx, &flow, ev, Write::Unlock).await
    }

    // -----------------------------------------------------------------------------------------

    /// Like [`App::open_flow`], but a flow that completed through its own directory write
    /// (possibly settled after an interruption) is returned too, so that its status and a
    /// retried final step are answered truthfully. A flow closed by another flow's success
    /// stays invalid.
    async fn open_own_flow(
        &self,
        ctx: &RequestCtx,
        flow_token: &str,
    ) -> Result<FlowRecord, AppError> {
        match self.open_flow(ctx, flow_token).await {
            Err(e) if e.kind == ErrorKind::Unauthorized && flow_token.len() == 32 => {
                match self.store.flow(&token_hash(flow_token)).await? {
                    Some(f) if f.state == FlowState::Completed && f.finishing_at > 0 => Ok(f),
                    _ => Err(e),
                }
            }
            r => r,
        }
    }

    async fn open_flow(&self, ctx: &RequestCtx, flow_token: &str) -> Result<FlowRecord, AppError> {
        let invalid = || AppError::new(ErrorKind::Unauthorized, ctx.t(Msg::FlowInvalid));
        if flow_token.len() != 32 {
            return Err(invalid());
        }
        let id = token_hash(flow_token);
        let Some(mut flow) = self.store.flow(&id).await? else {
            return Err(invalid());
        };
        if flow.state == FlowState::Finishing {
            // A write that began and never settled (a crash, a lost answer): settled now if
            // its lease has run out, else the user is asked to wait.
            self.meet_finishing(ctx, &flow).await?;
            flow = self.store.flow(&id).await?.ok_or_else(invalid)?;
        }
        if matches!(
            flow.state,
            FlowState::Ineligible | FlowState::Completed | FlowState::Abandoned
        ) {
            return Err(invalid());
        }
        // A clock set back makes `now` earlier than the start: such a flow is treated as
        // expired rather than granted the jump as extra time.
        let now = self.now();
        if now >= flow.expires_at || now < flow.created_at {
            let mut ev = self.flow_event(ctx, &flow, Activity::FlowExpired);
            ev.reason = "expired".into();
            return Err(self.fail(ev, invalid()).await);
        }
        Ok(flow)
    }

    fn flow_event(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        activity: Activity,
    ) -> sspr_domain::AuditEvent {
        let mut ev = self.event(ctx, activity, Outcome::Success);
        ev.actor = flow.account.clone();
        ev.target = flow.account.clone();
        ev.flow_id = Some(short_id(&flow.id));
        ev
    }

    async fn pick_method(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        method: &str,
        ev: &mut sspr_domain::AuditEvent,
    ) -> Result<Method, AppError> {
        let m = Method::parse(method.trim());
        let open = remaining_methods(&flow.usable, &flow.verified);
        match m {
            Some(m) if open.contains(&m) && flow.state == FlowState::Verifying => Ok(m),
            _ => {
                ev.activity = Activity::RequestRejected;
                ev.reason = "method_not_offered".into();
                Err(self
                    .fail(ev.clone(), AppError::invalid(ctx.t(Msg::MethodNotOffered)))
                    .await)
            }
        }
    }

    /// Until when the account is blocked from self-service after failed verifications.
    async fn account_blocked_until(
        &self,
        user_id: &str,
    ) -> Result<Option<sspr_domain::clock::UnixTime>, AppError> {
        Ok(self
            .store
            .blocked_until(&keys::account_block(user_id), self.now())
            .await?)
    }

    async fn check_not_blocked(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        mut ev: sspr_domain::AuditEvent,
    ) -> Result<(), AppError> {
        let now = self.now();
        if let Some(until) = self.account_blocked_until(&flow.user_id).await? {
            ev.activity = Activity::BlockedFromReset;
            ev.reason = "blocked".into();
            let err = self.too_many(ctx, Msg::Blocked, until - now);
            return Err(self.fail(ev, err).await);
        }
        if let Some(until) = self
            .store
            .blocked_until(&keys::ip_block(&ctx.source(&flow.login)), now)
            .await?
        {
            ev.activity = Activity::RateLimited;
            ev.reason = "ip_blocked".into();
            let err = self.too_many(ctx, Msg::TooManyRequests, until - now);
            return Err(self.fail(ev, err).await);
        }
        Ok(())
    }

    async fn verification_failed(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        method: Method,
        miss: Miss,
        mut ev: sspr_domain::AuditEvent,
    ) -> AppError {
        let now = self.now();
        let limits = &self.settings.limits;
        ev.activity = Activity::VerificationFailed;
        ev.reason = match miss {
            Miss::Wrong => "wrong",
            Miss::Expired => "expired_or_used",
            Miss::NoCode => "no_code",
        }
        .into();
        let msg = match (&miss, method) {
            (Miss::NoCode, _) => Msg::NoCodeWaiting,
            (_, Method::Questions) => Msg::WrongAnswers,
            (_, Method::RecoveryCode) => Msg::WrongRecoveryCode,
            (_, Method::Passkey) => Msg::WrongPasskey,
            _ => Msg::WrongCode,
        };
        // Only a wrong guess counts towards a block: a missing, spent or expired code is not
        // evidence of guessing (and racing requests with the one right code must not block).
        if !matches!(miss, Miss::Wrong) {
            return self
                .fail(ev, AppError::new(ErrorKind::VerificationFailed, ctx.t(msg)))
                .await;
        }
        // Whether this miss blocked the account: then it says so now, not "try again" first.
        let counted = async {
            self.store
                .hit(&keys::account_failures(&flow.user_id), now)
                .await?;
            self.ip_failure(&ctx.source(&flow.login)).await?;
            let n = self
                .store
                .hits_since(
                    &keys::account_failures(&flow.user_id),
                    now - limits.account_failures.secs,
                )
                .await?;
            if n >= limits.account_failures.max {
                self.store
                    .block(&keys::account_block(&flow.user_id), now + limits.block_secs)
                    .await?;
                let mut b = ev.clone();
                b.activity = Activity::BlockedFromReset;
                b.reason = format!("{n} failed verifications");
                self.record(b).await;
                return Ok(true);
            }
            Ok::<_, AppError>(false)
        };
        match counted.await {
            Err(e) => e,
            Ok(true) => {
                let err = self.too_many(ctx, Msg::Blocked, limits.block_secs);
                self.fail(ev, err).await
            }
            Ok(false) => {
                self.fail(ev, AppError::new(ErrorKind::VerificationFailed, ctx.t(msg)))
                    .await
            }
        }
    }

    /// Generates a code, keeps only its MAC, and queues its message with `event`, taking
    /// `slots`: one transaction. `Some(i)` when window `i` is full: no code, no event.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_code(
        &self,
        ctx: &RequestCtx,
        owner: &str,
        method: Method,
        dest: &str,
        for_reset: bool,
        target: &str,
        flow_id: Option<String>,
        slots: &[crate::ports::Slot],
        event: &AuditEvent,
    ) -> Result<Option<usize>, AppError> {
        let limits = &self.settings.limits;
        let now = self.now();
        let code = numeric_code(self.rng.as_ref(), limits.code_digits);
        let record = CodeRecord {
            id: 0,
            owner: owner.into(),
            purpose: method.as_str().into(),
            code_mac: self.key.code_mac(owner, &code),
            destination: dest.into(),
            created_at: now,
            expires_at: now + limits.code_ttl_secs,
            attempts: 0,
            used: false,
            delivery_failed: false,
        };
        let (subject, body) = code_message(
            ctx.lang,
            &self.settings.organisation,
            &code,
            limits.code_ttl_secs / 60,
            for_reset,
        );
        let channel = if method == Method::Sms {
            Channel::Sms
        } else {
            Channel::Email
        };
        let mut msg = OutboxMessage::new(channel, dest, &subject, &body, now);
        msg.flow_id = flow_id;
        msg.target = target.into();
        let full = self.store.send_code(&record, &msg, slots, event).await?;
        if full.is_none() {
            crate::metrics::metrics().event(event);
            self.wake_outbox();
        }
        Ok(full)
    }

    /// Checks a code for `owner`; consumes it exactly once.
    pub(crate) async fn check_code(
        &self,
        ctx: &RequestCtx,
        owner: &str,
        method: Method,
        code: Option<&str>,
    ) -> Result<Result<(), Miss>, AppError> {
        let id = match self.match_code(ctx, owner, method, code).await? {
            Ok(id) => id,
            Err(miss) => return Ok(Err(miss)),
        };
        let limits = &self.settings.limits;
        if self
            .store
            .consume_code(id, self.now(), limits.code_max_attempts)
            .await?
        {
            Ok(Ok(()))
        } else {
            Ok(Err(Miss::Expired))
        }
    }

    /// The id of `owner`'s latest code for `method` if `code` is it; spends nothing but the
    /// attempt of a wrong code.
    async fn match_code(
        &self,
        ctx: &RequestCtx,
        owner: &str,
        method: Method,
        code: Option<&str>,
    ) -> Result<Result<i64, Miss>, AppError> {
        let code = code.unwrap_or("").trim();
        let digits = self.settings.limits.code_digits as usize;
        if code.len() != digits || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AppError::invalid(ctx.t(Msg::CodeFormat)));
        }
        let Some(rec) = self.store.latest_code(owner, method.as_str()).await? else {
            return Ok(Err(Miss::NoCode));
        };
        if rec.delivery_failed {
            return Err(AppError::new(
                ErrorKind::VerificationFailed,
                ctx.t(Msg::DeliveryFailed),
            ));
        }
        if !self.key.code_matches(owner, code, &rec.code_mac) {
            self.store.code_attempt_failed(rec.id).await?;
            return Ok(Err(Miss::Wrong));
        }
        Ok(Ok(rec.id))
    }

    /// The time step `code` belongs to, if it is the user's authenticator's; spends nothing.
    async fn match_totp(
        &self,
        ctx: &RequestCtx,
        user_id: &str,
        code: Option<&str>,
    ) -> Result<Result<i64, Miss>, AppError> {
        let code = code.unwrap_or("").trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AppError::invalid(ctx.t(Msg::CodeFormat)));
        }
        let records = self.store.methods(user_id).await?;
        let Some(rec) = records
            .iter()
            .find(|r| r.method == Method::Totp && r.status == MethodStatus::Active)
        else {
            return Ok(Err(Miss::NoCode));
        };
        let secret = self.key.open("totp", &rec.value)?;
        // A code from an already used step is a replay: the spend refuses it.
        Ok(crate::totp::matching_step(&secret, code, self.now()).ok_or(Miss::Wrong))
    }

    async fn check_answers(
        &self,
        flow: &FlowRecord,
        given: &[sspr_proto::Answer],
    ) -> Result<Result<(), Miss>, AppError> {
        if flow.questions.is_empty() {
            return Ok(Err(Miss::NoCode));
        }
        let stored = self.store.answers(&flow.user_id).await?;
        // Every drawn question is checked, even after a miss, so timing does not say which was
        // wrong. A question with no stored answer is checked against the dummy hash.
        let mut all = true;
        let mut pairs = Vec::with_capacity(flow.questions.len());
        for q in &flow.questions {
            let answer = given
                .iter()
                .find(|a| &a.question_id == q)
                .map(|a| a.answer.as_str())
                .unwrap_or("");
            let norm = sspr_domain::questions::normalise_answer(answer);
            match stored.iter().find(|(id, _)| id == q) {
                Some((_, hash)) => pairs.push((norm, hash.clone())),
                None => {
                    all = false;
                    pairs.push((norm, self.hasher.dummy_hash()));
                }
            }
        }
        all &= self
            .hasher
            .verify_all(pairs)
            .await?
            .into_iter()
            .all(|ok| ok);
        Ok(if all { Ok(()) } else { Err(Miss::Wrong) })
    }

    /// Whether this installation can run `method` at all: email and SMS need their delivery
    /// set up, passkeys a `public_url` WebAuthn can serve.
    pub(crate) fn method_available(&self, method: Method) -> bool {
        match method {
            Method::Email => self.settings.email_enabled,
            Method::Sms => self.settings.sms_enabled,
            Method::Passkey => self.webauthn.is_some(),
            Method::Questions | Method::Totp | Method::RecoveryCode => true,
        }
    }

    /// Registered methods in a usable state, plus directory contacts when the admin trusts them.
    pub(crate) fn usable_methods(&self, user: &DirUser, records: &[MethodRecord]) -> Vec<Method> {
        let mut out: Vec<Method> = records
            .iter()
            .filter(|r| r.status == MethodStatus::Active)
            .filter(|r| self.method_available(r.method))
            .map(|r| r.method)
            .collect();
        if self.settings.trust_directory_contacts {
            if user.email.is_some() && self.settings.email_enabled && !out.contains(&Method::Email)
            {
                out.push(Method::Email);
            }
            if user.mobile.is_some() && self.settings.sms_enabled && !out.contains(&Method::Sms) {
                out.push(Method::Sms);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    async fn destination(
        &self,
        flow: &FlowRecord,
        records: &[MethodRecord],
        method: Method,
    ) -> Result<String, AppError> {
        if let Some(r) = records
            .iter()
            .find(|r| r.method == method && r.status == MethodStatus::Active)
        {
            return Ok(r.value.clone());
        }
        if self.settings.trust_directory_contacts
            && let Ok(Some(u)) = self.directory.find_user(&flow.login).await
            && let Some(v) = if method == Method::Email {
                u.email
            } else {
                u.mobile
            }
        {
            return Ok(v);
        }
        Err(AppError::internal(format!(
            "no destination for {method} of {}",
            flow.login
        )))
    }

    /// The user's confirmed email addresses and the directory's.
    pub(crate) fn notice_addresses(
        &self,
        user: Option<&DirUser>,
        records: &[MethodRecord],
    ) -> Vec<String> {
        let mut to: Vec<String> = records
            .iter()
            .filter(|r| r.method == Method::Email && r.status == MethodStatus::Active)
            .map(|r| r.value.clone())
            .collect();
        if let Some(e) = user.and_then(|u| u.email.as_ref())
            && !to.iter().any(|x| x.eq_ignore_ascii_case(e))
        {
            to.push(e.clone());
        }
        to
    }

    /// Every address of record a notice about the account goes to (NIST SP 800-63B-4 §4.6,
    /// "all notification addresses"): the email addresses of [`Self::notice_addresses`], and
    /// while SMS is set up, each confirmed mobile number and the directory's where the admin
    /// trusts it. Not only the address that was used: that one may be the attacker's.
    pub(crate) fn notice_recipients(
        &self,
        user: Option<&DirUser>,
        records: &[MethodRecord],
    ) -> Vec<(Channel, String)> {
        let mut to: Vec<(Channel, String)> = self
            .notice_addresses(user, records)
            .into_iter()
            .map(|a| (Channel::Email, a))
            .collect();
        if self.settings.sms_enabled {
            let mut phones: Vec<String> = records
                .iter()
                .filter(|r| r.method == Method::Sms && r.status == MethodStatus::Active)
                .map(|r| r.value.clone())
                .collect();
            if self.settings.trust_directory_contacts
                && let Some(m) = user.and_then(|u| u.mobile.as_ref())
                && !phones.contains(m)
            {
                phones.push(m.clone());
            }
            to.extend(phones.into_iter().map(|p| (Channel::Sms, p)));
        }
        to
    }

    pub(crate) fn flow_response(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        records: &[MethodRecord],
    ) -> FlowResponse {
        let open = remaining_methods(&flow.usable, &flow.verified);
        let (status, msg) = match (flow.state, flow.kind) {
            (FlowState::Completed, FlowKind::Reset) => ("completed", Msg::PasswordChanged),
            (FlowState::Completed, FlowKind::Unlock) => ("completed", Msg::AccountUnlocked),
            (FlowState::Completed, FlowKind::Change) => ("completed", Msg::PasswordChangedByUser),
            (FlowState::Completed, FlowKind::Invite) => ("completed", Msg::FirstPasswordSet),
            (FlowState::Verified | FlowState::Finishing, FlowKind::Invite) => {
                ("set_password", Msg::SetPassword)
            }
            (FlowState::Verified | FlowState::Finishing, FlowKind::Reset) => {
                ("set_password", Msg::SetPassword)
            }
            (FlowState::Verified | FlowState::Finishing, FlowKind::Unlock) => {
                ("ready_to_unlock", Msg::ReadyToUnlock)
            }
            _ => ("choose_method", Msg::ChooseMethod),
        };
        // A login screen's dialogue cannot run a passkey: it is named apart, so the agent can
        // say where it works instead of offering what would fail.
        let agent = ctx.client_type.is_logon_agent();
        let (methods, browser_only) = if status == "choose_method" {
            let (there, elsewhere): (Vec<Method>, Vec<Method>) =
                open.iter().partition(|m| !(agent && m.browser_only()));
            (
                there
                    .iter()
                    .map(|m| method_option(ctx.lang, *m, records))
                    .collect(),
                elsewhere.iter().map(|m| m.as_str().to_string()).collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        FlowResponse {
            flow_token: None,
            status: status.into(),
            kind: flow.kind.as_str().into(),
            message: ctx.t(msg),
            register_url: None,
            methods,
            browser_only,
            required: flow.required,
            verified: flow
                .verified
                .iter()
                .map(|m| m.as_str().to_string())
                .collect(),
            expires_in: (flow.expires_at - self.now()).max(0),
        }
    }

    pub(crate) async fn directory_failure(
        &self,
        ctx: &RequestCtx,
        mut ev: sspr_domain::AuditEvent,
        e: DirError,
    ) -> AppError {
        ev.activity = Activity::DirectoryError;
        // A refusal is an answer, not an outage: its own code, and no "try again later".
        let (reason, msg, kind) = match &e {
            DirError::Unavailable(_) => (
                "directory_unavailable",
                Msg::DirectoryDown,
                ErrorKind::Directory,
            ),
            DirError::Busy(_) => ("busy", Msg::Busy, ErrorKind::Busy),
            DirError::Permission(_) => (
                "directory_permission",
                Msg::DirectoryDenied,
                ErrorKind::DirectoryRefused,
            ),
            DirError::Protected(_) => (
                "directory_protected_account",
                Msg::DirectoryProtected,
                ErrorKind::DirectoryRefused,
            ),
            DirError::Rejected(_) | DirError::Other(_) => (
                "directory_error",
                Msg::DirectoryDenied,
                ErrorKind::Directory,
            ),
        };
        ev.reason = reason.into();
        // The directory's own words (result code and diagnostic text) for the admin's log.
        let cause = e.to_string();
        match &mut ev.details {
            serde_json::Value::Object(m) => {
                m.insert("directory".into(), cause.clone().into());
            }
            d => *d = serde_json::json!({ "directory": cause }),
        }
        self.fail(ev, AppError::new(kind, ctx.t(msg)).with_log(cause))
            .await
    }
}

fn method_option(lang: Lang, m: Method, records: &[MethodRecord]) -> MethodOption {
    let dest = records
        .iter()
        .find(|r| r.method == m && r.status == MethodStatus::Active && m.sends_code())
        .map(|r| mask_destination(m, &r.value));
    let zh = lang == Lang::Zh;
    let label = match (m, &dest, zh) {
        (Method::Email, Some(d), false) => format!("Email a code to {d}"),
        (Method::Email, Some(d), true) => format!("发送验证码到邮箱 {d}"),
        (Method::Email, None, false) => "Email a code".into(),
        (Method::Email, None, true) => "发送验证码到邮箱".into(),
        (Method::Sms, Some(d), false) => format!("Text a code to {d}"),
        (Method::Sms, Some(d), true) => format!("发送短信验证码到 {d}"),
        (Method::Sms, None, false) => "Text a code to my mobile phone".into(),
        (Method::Sms, None, true) => "发送短信验证码到我的手机".into(),
        (Method::Questions, _, false) => "Answer my security questions".into(),
        (Method::Questions, _, true) => "回答我的安全问题".into(),
        (Method::Totp, _, false) => "Enter a code from my authenticator app".into(),
        (Method::Totp, _, true) => "输入身份验证器应用中的验证码".into(),
        (Method::RecoveryCode, _, false) => "Enter one of my recovery codes".into(),
        (Method::RecoveryCode, _, true) => "输入我的一个恢复码".into(),
        (Method::Passkey, _, false) => "Use my passkey".into(),
        (Method::Passkey, _, true) => "使用我的通行密钥".into(),
    };
    MethodOption {
        method: m.as_str().into(),
        label,
        destination: dest,
    }
}

pub(crate) fn mask_destination(m: Method, v: &str) -> String {
    if m == Method::Sms {
        mask::phone(v)
    } else {
        mask::email(v)
    }
}

/// The first 12 hex characters of a flow's id: enough to find it in the audit log, useless as
/// a token.
pub fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

fn shuffle<T>(v: &mut [T], rng: &dyn sspr_domain::Random) {
    for i in (1..v.len()).rev() {
        let mut b = [0u8; 4];
        rng.fill(&mut b);
        let j = (u32::from_le_bytes(b) as usize) % (i + 1);
        v.swap(i, j);
    }
}
