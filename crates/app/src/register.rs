//! Registration: a user signs in with the current password and manages the methods they will
//! later reset with. New addresses count only once the code sent there is entered.

use sspr_domain::audit::{Activity, Outcome};
use sspr_domain::clock::UnixTime;
use sspr_domain::flow::is_registered;
use sspr_domain::identity::canonical_login;
use sspr_domain::questions::check_answer;
use sspr_domain::random::token;
use sspr_domain::{Method, Policy};
use sspr_proto::{
    Answer, QuestionList, QuestionText, RegisteredMethod, RegistrationStatus, SessionResponse,
    TotpEnrolment,
};

use crate::app::{App, RequestCtx, keys};
use crate::crypto::token_hash;
use crate::error::{AppError, ErrorKind};
use crate::messages::Msg;
use crate::ports::{Channel, MethodRecord, MethodStatus, PasswordCheck, SessionRecord};
use crate::reset::mask_destination;

/// Addresses whose failed sign-ins, each up to `account_failures`, stop an account's sign-in
/// from everywhere (admin pages and registration).
pub const SIGN_IN_SOURCES: u32 = 10;

impl App {
    /// Signs in with the current password. Unknown users, disabled users and wrong passwords
    /// get one answer, after the same Argon2 work.
    pub async fn sign_in(
        &self,
        ctx: &RequestCtx,
        user: &str,
        password: &str,
    ) -> Result<SessionResponse, AppError> {
        let mut ev = self.event(ctx, Activity::RegistrationSignIn, Outcome::Success);
        let user = self
            .check_credentials(ctx, &mut ev, user, password, Msg::SignInFailed)
            .await?;
        let limits = &self.settings.limits;
        let now = self.now();
        let policy = self.policy().await?;
        if !policy.in_scope(&user.groups) {
            ev.reason = "out_of_scope".into();
            return Err(self
                .fail(
                    ev,
                    AppError::new(ErrorKind::Forbidden, ctx.t(Msg::NotEnabledForYou)),
                )
                .await);
        }
        let (session_token, session) = self.open_registration_session(&user, now).await?;
        self.record(ev).await;
        let registration = self.registration_status(ctx, &session, &policy).await?;
        Ok(SessionResponse {
            session_token,
            expires_in: limits.session_ttl_secs,
            registration,
        })
    }

    /// A registration session for a user whose password was just checked: its token and
    /// record.
    pub(crate) async fn open_registration_session(
        &self,
        user: &crate::ports::DirUser,
        now: UnixTime,
    ) -> Result<(String, SessionRecord), AppError> {
        let session_token = token(self.rng.as_ref());
        let session = SessionRecord {
            id: token_hash(&session_token),
            user_id: user.id.clone(),
            login: user.login.clone(),
            display_name: user.display_name.clone(),
            groups: user.groups.clone(),
            expires_at: now + self.settings.limits.session_ttl_secs,
        };
        self.store.insert_session(&session).await?;
        Ok((session_token, session))
    }

    /// The rate limits, the directory lookup and the password check shared by every
    /// sign-in. Failures are counted and audited on `ev`; every failure reads `failed`.
    /// Clears the sign-in lockout of `login`, from every address (`sspr users unlock`).
    pub async fn clear_sign_in_lockout(&self, login: &str) -> Result<(), AppError> {
        let Some(login) = canonical_login(login) else {
            return Ok(());
        };
        self.store
            .clear_throttle(&[keys::login_failures(&login)])
            .await?;
        self.store
            .clear_throttle_prefix(&keys::login_ip_prefix(&login))
            .await?;
        Ok(())
    }

    pub(crate) async fn check_credentials(
        &self,
        ctx: &RequestCtx,
        ev: &mut sspr_domain::AuditEvent,
        user: &str,
        password: &str,
        failed: Msg,
    ) -> Result<crate::ports::DirUser, AppError> {
        let (u, check) = self.credentials(ctx, ev, user, password, failed).await?;
        if check == PasswordCheck::MustChange {
            // The right password, which the directory accepts for a change only: sent to the
            // change instead of being told it is wrong. Not a failure to count.
            ev.reason = "password_change_required".into();
            let err = AppError::new(
                ErrorKind::PasswordChangeRequired,
                ctx.t(Msg::MustChangePassword),
            );
            return Err(self.fail(ev.clone(), err).await);
        }
        Ok(u)
    }

    /// [`App::check_credentials`] that lets a password that must be changed through, saying
    /// so: for the change itself.
    pub(crate) async fn credentials(
        &self,
        ctx: &RequestCtx,
        ev: &mut sspr_domain::AuditEvent,
        user: &str,
        password: &str,
        failed: Msg,
    ) -> Result<(crate::ports::DirUser, PasswordCheck), AppError> {
        let Some(login) = canonical_login(user) else {
            ev.reason = "invalid_user_id".into();
            return Err(self
                .fail(ev.clone(), AppError::invalid(ctx.t(Msg::EnterUserId)))
                .await);
        };
        ev.actor = login.clone();
        ev.target = login.clone();
        // Never pass an empty password on: to LDAP it would be an unauthenticated bind.
        if password.trim().is_empty() || password.len() > sspr_domain::password::HARD_MAX_LEN * 4 {
            ev.reason = if password.trim().is_empty() {
                "empty_password"
            } else {
                "password_too_long"
            }
            .into();
            return Err(self
                .fail(ev.clone(), AppError::invalid(ctx.t(Msg::EnterPassword)))
                .await);
        }
        let limits = &self.settings.limits;
        let now = self.now();
        // Failures count per (account, address) and per account. One address is stopped at
        // its own budget (`account_failures`), so it adds at most that much to the account's
        // count, and the account as a whole is stopped only when SIGN_IN_SOURCES addresses
        // have each used theirs: one address cannot lock everyone else out of an account.
        let everywhere = sspr_domain::Window {
            max: limits.account_failures.max.saturating_mul(SIGN_IN_SOURCES),
            secs: limits.account_failures.secs,
        };
        let mut wait = self
            .first_exceeded(
                &[keys::ip_block(&ctx.ip)],
                &[
                    (
                        keys::login_ip_failures(&login, &ctx.ip),
                        limits.account_failures,
                    ),
                    (keys::login_failures(&login), everywhere),
                ],
            )
            .await?;
        if wait.is_none() {
            wait = self
                .reserve(&[(keys::ip_starts(&ctx.ip), limits.ip_starts)])
                .await?;
        }
        if let Some(wait) = wait {
            let mut rl = ev.clone();
            rl.activity = Activity::RateLimited;
            rl.reason = "sign_in_rate".into();
            let err = self.too_many(ctx, Msg::TooManyRequests, wait);
            return Err(self.fail(rl, err).await);
        }

        let found = match self.directory.find_user(&login).await {
            Ok(u) => u,
            Err(e) => return Err(self.directory_failure(ctx, ev.clone(), e).await),
        };
        // Accounts that cannot sign in cost the directory the same work as those that can,
        // so neither the time nor a failure under load (a 503 instead of a 401) tells them
        // apart.
        let checked = match &found {
            Some(u) if u.enabled => self.directory.check_password(u, password).await,
            _ => self
                .directory
                .check_password_of_nobody(&login, password)
                .await
                .map(|()| PasswordCheck::Wrong),
        };
        let ok = match checked {
            Ok(ok) => ok,
            Err(e) => return Err(self.directory_failure(ctx, ev.clone(), e).await),
        };
        match (ok, found) {
            (PasswordCheck::Right | PasswordCheck::MustChange, Some(u)) => Ok((u, ok)),
            (_, found) => {
                self.store
                    .hit(&keys::login_ip_failures(&login, &ctx.ip), now)
                    .await?;
                self.store.hit(&keys::login_failures(&login), now).await?;
                self.ip_failure(&ctx.ip).await?;
                ev.reason = match found {
                    None => "unknown_user",
                    Some(u) if !u.enabled => "disabled",
                    Some(_) => "wrong_password",
                }
                .into();
                Err(self
                    .fail(
                        ev.clone(),
                        AppError::new(ErrorKind::Unauthorized, ctx.t(failed)),
                    )
                    .await)
            }
        }
    }

    pub async fn session(
        &self,
        ctx: &RequestCtx,
        session_token: &str,
    ) -> Result<SessionRecord, AppError> {
        let invalid = || AppError::new(ErrorKind::Unauthorized, ctx.t(Msg::SessionInvalid));
        if session_token.len() != 32 {
            return Err(invalid());
        }
        match self.store.session(&token_hash(session_token)).await? {
            Some(s) if s.expires_at > self.now() => Ok(s),
            _ => Err(invalid()),
        }
    }

    pub async fn sign_out(&self, session: &SessionRecord) -> Result<(), AppError> {
        Ok(self.store.delete_session(&session.id).await?)
    }

    pub async fn my_status(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
    ) -> Result<RegistrationStatus, AppError> {
        let policy = self.policy().await?;
        self.registration_status(ctx, s, &policy).await
    }

    pub async fn question_list(&self, ctx: &RequestCtx) -> Result<QuestionList, AppError> {
        let policy = self.policy().await?;
        let questions = policy
            .question_ids()
            .into_iter()
            .map(|id| QuestionText {
                text: policy
                    .question_text(&id, ctx.lang.tag())
                    .unwrap_or_default(),
                id,
            })
            .collect();
        Ok(QuestionList {
            questions,
            to_register: policy.questions_to_register,
        })
    }

    /// Adds (or replaces) an email address or mobile number, pending until its code is entered.
    pub async fn add_contact(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        method: Method,
        value: &str,
    ) -> Result<RegistrationStatus, AppError> {
        let mut ev = self.session_event(ctx, s, Activity::SecurityInfoAdded);
        ev.details = serde_json::json!({ "method": method });
        let policy = self.policy().await?;
        self.require_method_allowed(ctx, s, &policy, method, &mut ev)
            .await?;
        let value = match method {
            Method::Email => {
                normalise_email(value).ok_or_else(|| AppError::invalid(ctx.t(Msg::BadEmail)))
            }
            Method::Sms => {
                normalise_phone(value).ok_or_else(|| AppError::invalid(ctx.t(Msg::BadPhone)))
            }
            _ => Err(AppError::invalid(ctx.t(Msg::MethodDisabled))),
        };
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                ev.reason = "invalid_value".into();
                return Err(self.fail(ev, e).await);
            }
        };
        let now = self.now();
        // A new address waits beside the active one (its own pending row) and replaces it only
        // once confirmed, so a typo never costs the user a working method.
        let existing = self.store.methods(&s.user_id).await?;
        if existing
            .iter()
            .any(|r| r.method == method && r.status == MethodStatus::Active && r.value == value)
        {
            return self.my_status(ctx, s).await;
        }
        let limits = &self.settings.limits;
        let windows = [
            (keys::account_codes(&s.user_id), limits.account_codes),
            (keys::destination(&value), limits.destination_codes),
        ];
        if let Some(wait) = self.reserve(&windows).await? {
            ev.activity = Activity::RateLimited;
            ev.reason = "code_rate".into();
            let err = self.too_many(ctx, Msg::TooManyCodes, wait);
            return Err(self.fail(ev, err).await);
        }
        self.store
            .put_method(&MethodRecord {
                user_id: s.user_id.clone(),
                method,
                status: MethodStatus::Pending,
                value: value.clone(),
                created_at: now,
                verified_at: None,
            })
            .await?;
        // The slots were taken above, before the pending address was stored; the code, its
        // message and this event go in one transaction.
        ev.details = serde_json::json!({ "method": method, "destination": mask_destination(method, &value) });
        self.send_code(
            ctx,
            &reg_owner(&s.user_id),
            method,
            &value,
            false,
            &s.login,
            None,
            &[],
            &ev,
        )
        .await?;
        let mut st = self.my_status(ctx, s).await?;
        st.message = ctx.t(Msg::AddedPending);
        Ok(st)
    }

    /// Confirms a pending email or phone with the code sent to it.
    pub async fn confirm_contact(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        method: Method,
        code: &str,
    ) -> Result<RegistrationStatus, AppError> {
        let mut ev = self.session_event(ctx, s, Activity::SecurityInfoVerified);
        ev.details = serde_json::json!({ "method": method });
        match self
            .check_code(ctx, &reg_owner(&s.user_id), method, Some(code))
            .await?
        {
            Ok(()) => {}
            Err(_) => {
                self.store
                    .hit(&keys::account_failures(&s.user_id), self.now())
                    .await?;
                ev.reason = "wrong_code".into();
                return Err(self
                    .fail(
                        ev,
                        AppError::new(ErrorKind::VerificationFailed, ctx.t(Msg::WrongCode)),
                    )
                    .await);
            }
        }
        let former = self.active_contact(&s.user_id, method).await?;
        // The code is right, but the address it confirmed may have been withdrawn since.
        if !self
            .store
            .activate_method(&s.user_id, method, self.now())
            .await?
        {
            ev.reason = "no_pending".into();
            return Err(self
                .fail(ev, AppError::invalid(ctx.t(Msg::NoCodeWaiting)))
                .await);
        }
        self.changed_from(
            ctx,
            s,
            ev,
            (
                "Security info was added to your account",
                "你的账户添加了安全信息",
            ),
            Msg::Verified,
            former,
        )
        .await
    }

    /// The active email address or mobile number of `method`, as a notice recipient.
    async fn active_contact(
        &self,
        user_id: &str,
        method: Method,
    ) -> Result<Option<(Channel, String)>, AppError> {
        let channel = match method {
            Method::Email => Channel::Email,
            Method::Sms if self.settings.sms_enabled => Channel::Sms,
            _ => return Ok(None),
        };
        Ok(self
            .store
            .methods(user_id)
            .await?
            .into_iter()
            .find(|r| r.method == method && r.status == MethodStatus::Active)
            .map(|r| (channel, r.value)))
    }

    pub async fn set_questions(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        answers: &[Answer],
    ) -> Result<RegistrationStatus, AppError> {
        let mut ev = self.session_event(ctx, s, Activity::SecurityInfoAdded);
        ev.details = serde_json::json!({ "method": Method::Questions });
        let policy = self.policy().await?;
        self.require_method_allowed(ctx, s, &policy, Method::Questions, &mut ev)
            .await?;
        let zh = ctx.lang == crate::messages::Lang::Zh;
        let problem =
            |en: String, zh_text: String| AppError::invalid(if zh { zh_text } else { en });
        let want = policy.questions_to_register as usize;
        let checked: Result<Vec<(String, String)>, AppError> = (|| {
            if answers.len() != want {
                return Err(problem(
                    format!("Answer exactly {want} different questions."),
                    format!("请回答 {want} 个不同的问题。"),
                ));
            }
            let ids = policy.question_ids();
            let mut out: Vec<(String, String)> = Vec::new();
            for a in answers {
                if !ids.contains(&a.question_id) {
                    return Err(problem(
                        format!(
                            "Unknown question {:?}; pick from GET /api/v1/questions.",
                            a.question_id
                        ),
                        format!(
                            "没有问题 {:?}；请从 GET /api/v1/questions 中选择。",
                            a.question_id
                        ),
                    ));
                }
                let norm = check_answer(&a.answer).map_err(|m| {
                    problem(
                        format!("{}: {m}", a.question_id),
                        format!(
                            "{}：每个答案需要 {}–{} 个字符。",
                            a.question_id,
                            sspr_domain::questions::ANSWER_MIN,
                            sspr_domain::questions::ANSWER_MAX
                        ),
                    )
                })?;
                if out.iter().any(|(q, _)| q == &a.question_id) {
                    return Err(problem(
                        "Each question can be chosen only once.".into(),
                        "每个问题只能选择一次。".into(),
                    ));
                }
                if out.iter().any(|(_, n)| n == &norm) {
                    return Err(problem(
                        "Each answer must be different.".into(),
                        "每个答案必须不同。".into(),
                    ));
                }
                out.push((a.question_id.clone(), norm));
            }
            Ok(out)
        })();
        let checked = match checked {
            Ok(c) => c,
            Err(e) => {
                ev.reason = "invalid_answers".into();
                return Err(self.fail(ev, e).await);
            }
        };
        let mut hashed = Vec::with_capacity(checked.len());
        for (q, norm) in checked {
            hashed.push((q, self.hasher.hash(&norm, self.rng.as_ref()).await?));
        }
        self.store
            .put_answers(&s.user_id, &hashed, self.now())
            .await?;
        self.changed(
            ctx,
            s,
            ev,
            ("Your security questions were changed", "你的安全问题已更改"),
            Msg::QuestionsSaved,
        )
        .await
    }

    /// Starts authenticator enrolment: a new secret, pending until a code from it is entered.
    pub async fn enrol_totp(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
    ) -> Result<TotpEnrolment, AppError> {
        let mut ev = self.session_event(ctx, s, Activity::SecurityInfoAdded);
        ev.details = serde_json::json!({ "method": Method::Totp });
        let policy = self.policy().await?;
        self.require_method_allowed(ctx, s, &policy, Method::Totp, &mut ev)
            .await?;
        let mut secret = [0u8; 20];
        self.rng.fill(&mut secret);
        let sealed = self.key.seal("totp", &secret, self.rng.as_ref())?;
        self.store
            .put_method(&MethodRecord {
                user_id: s.user_id.clone(),
                method: Method::Totp,
                status: MethodStatus::Pending,
                value: sealed,
                created_at: self.now(),
                verified_at: None,
            })
            .await?;
        let issuer = if self.settings.organisation.is_empty() {
            "sspr"
        } else {
            &self.settings.organisation
        };
        let uri = crate::totp::otpauth_uri(&secret, issuer, &s.login);
        self.record(ev).await;
        Ok(TotpEnrolment {
            secret: crate::totp::base32(&secret),
            qr_svg: crate::totp::qr_svg(&uri),
            otpauth_uri: uri,
            message: ctx.t(Msg::TotpScan),
        })
    }

    pub async fn confirm_totp(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        code: &str,
    ) -> Result<RegistrationStatus, AppError> {
        let mut ev = self.session_event(ctx, s, Activity::SecurityInfoVerified);
        ev.details = serde_json::json!({ "method": Method::Totp });
        let records = self.store.methods(&s.user_id).await?;
        let Some(rec) = records.iter().find(|r| r.method == Method::Totp) else {
            ev.reason = "no_enrolment".into();
            return Err(self
                .fail(ev, AppError::invalid(ctx.t(Msg::NoCodeWaiting)))
                .await);
        };
        let secret = self.key.open("totp", &rec.value)?;
        let step = crate::totp::matching_step(&secret, code.trim(), self.now());
        let accepted = match step {
            Some(st) => self.store.totp_use_step(&s.user_id, st).await?,
            None => false,
        };
        if !accepted {
            self.store
                .hit(&keys::account_failures(&s.user_id), self.now())
                .await?;
            ev.reason = "wrong_code".into();
            return Err(self
                .fail(
                    ev,
                    AppError::new(ErrorKind::VerificationFailed, ctx.t(Msg::WrongCode)),
                )
                .await);
        }
        self.store
            .activate_method(&s.user_id, Method::Totp, self.now())
            .await?;
        self.changed(
            ctx,
            s,
            ev,
            (
                "An authenticator app was added to your account",
                "你的账户添加了身份验证器应用",
            ),
            Msg::Verified,
        )
        .await
    }

    pub async fn remove_method(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        method: Method,
    ) -> Result<RegistrationStatus, AppError> {
        let mut ev = self.session_event(ctx, s, Activity::SecurityInfoDeleted);
        ev.details = serde_json::json!({ "method": method });
        let former = self.active_contact(&s.user_id, method).await?;
        if !self.store.delete_method(&s.user_id, method).await? {
            ev.reason = "not_registered".into();
            return Err(self
                .fail(
                    ev,
                    AppError::invalid(if ctx.lang == crate::messages::Lang::Zh {
                        format!("尚未注册 {method}。")
                    } else {
                        format!("{method} is not registered.")
                    }),
                )
                .await);
        }
        self.changed_from(
            ctx,
            s,
            ev,
            (
                "Security info was removed from your account",
                "你的账户删除了安全信息",
            ),
            Msg::MethodRemoved,
            former,
        )
        .await
    }

    /// The user looked over their methods and says they are current (reconfirmation).
    pub async fn reconfirm(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
    ) -> Result<RegistrationStatus, AppError> {
        self.store.confirm(&s.user_id, self.now()).await?;
        self.record(self.session_event(ctx, s, Activity::SecurityInfoReviewed))
            .await;
        let mut st = self.my_status(ctx, s).await?;
        st.message = ctx.t(Msg::Reviewed);
        Ok(st)
    }

    // -----------------------------------------------------------------------------------------

    pub(crate) fn session_event(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        a: Activity,
    ) -> sspr_domain::AuditEvent {
        let mut ev = self.event(ctx, a, Outcome::Success);
        ev.actor = s.login.clone();
        ev.target = s.login.clone();
        ev
    }

    pub(crate) async fn require_method_allowed(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        policy: &Policy,
        method: Method,
        ev: &mut sspr_domain::AuditEvent,
    ) -> Result<(), AppError> {
        let req = policy.requirement_for(&s.groups);
        let channel_ok = self.method_available(method);
        if req.methods.contains(&method) && channel_ok {
            return Ok(());
        }
        ev.reason = "method_disabled".into();
        Err(self
            .fail(
                ev.clone(),
                AppError::new(ErrorKind::Forbidden, ctx.t(Msg::MethodDisabled)),
            )
            .await)
    }

    /// Records the change's event, runs [`Self::after_change`] with the notice in both
    /// languages, and answers with the new status and `done` as its message.
    pub(crate) async fn changed(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        ev: sspr_domain::AuditEvent,
        notice: (&str, &str),
        done: Msg,
    ) -> Result<RegistrationStatus, AppError> {
        self.changed_from(ctx, s, ev, notice, done, None).await
    }

    /// [`Self::changed`] for a change that took an address away (removed, or replaced by a new
    /// one): that address hears of it too, since it may be the user's and the change not.
    async fn changed_from(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        ev: sspr_domain::AuditEvent,
        notice: (&str, &str),
        done: Msg,
        former: Option<(Channel, String)>,
    ) -> Result<RegistrationStatus, AppError> {
        self.record(ev).await;
        self.after_change(ctx, s, notice.0, notice.1, former)
            .await?;
        let mut st = self.my_status(ctx, s).await?;
        st.message = ctx.t(done);
        Ok(st)
    }

    /// After any change: confirm the registration date, audit "registered all required" when
    /// this change completed it, and tell every address of record.
    async fn after_change(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        en: &str,
        zh: &str,
        former: Option<(Channel, String)>,
    ) -> Result<(), AppError> {
        self.store.confirm(&s.user_id, self.now()).await?;
        let policy = self.policy().await?;
        let records = self.store.methods(&s.user_id).await?;
        let usable: Vec<Method> = records
            .iter()
            .filter(|r| r.status == MethodStatus::Active)
            .map(|r| r.method)
            .collect();
        if is_registered(&policy, &s.groups, &usable) {
            let mut ev = self.session_event(ctx, s, Activity::RegisteredAllRequired);
            ev.details = serde_json::json!({ "methods": usable });
            self.record(ev).await;
            // A later lapse (a method removed) starts with every skip again.
            self.store
                .set_registration_skips(&s.user_id, 0, self.now())
                .await?;
        }
        if policy.notify_user {
            // The directory's own address is an address of record too; if the directory
            // cannot be read now, the registered ones still hear of the change.
            let user = match self.directory.find_user(&s.login).await {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(error = %e, "security info changed: the directory's addresses are not notified");
                    None
                }
            };
            let mut to = self.notice_recipients(user.as_ref(), &records);
            if let Some(f) = former
                && !to.contains(&f)
            {
                to.push(f);
            }
            self.notify(ctx, &to, en, zh, &s.login).await;
        }
        Ok(())
    }

    async fn registration_status(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        policy: &Policy,
    ) -> Result<RegistrationStatus, AppError> {
        let records = self.store.methods(&s.user_id).await?;
        let req = policy.requirement_for(&s.groups);
        let usable: Vec<Method> = records
            .iter()
            .filter(|r| r.status == MethodStatus::Active)
            .map(|r| r.method)
            .collect();
        let registered = is_registered(policy, &s.groups, &usable);
        let confirmed = self.store.confirmed_at(&s.user_id).await?;
        let reconfirm_due = policy.reconfirm_days > 0
            && registered
            && confirmed
                .is_none_or(|c| self.now() >= c + i64::from(policy.reconfirm_days) * 86_400);
        let mut methods = Vec::with_capacity(records.len());
        for r in &records {
            let remaining = if r.method == Method::RecoveryCode {
                Some(self.recovery_codes_left(&s.user_id).await?)
            } else {
                None
            };
            methods.push(RegisteredMethod {
                method: r.method.as_str().into(),
                status: r.status.as_str().into(),
                destination: r
                    .method
                    .sends_code()
                    .then(|| mask_destination(r.method, &r.value)),
                remaining,
            });
        }
        let available = req
            .methods
            .iter()
            .filter(|m| self.method_available(**m))
            .map(|m| m.as_str().to_string())
            .collect();
        Ok(RegistrationStatus {
            user: s.login.clone(),
            registered,
            required: req.required,
            available_methods: available,
            questions_to_register: policy.questions_to_register,
            methods,
            reconfirm_due,
            message: ctx.t(if registered {
                Msg::Registered
            } else {
                Msg::NotYetRegistered
            }),
        })
    }
}

fn reg_owner(user_id: &str) -> String {
    format!("reg:{user_id}")
}

/// A single, plain address: no list, no display name, no header tricks.
pub fn normalise_email(raw: &str) -> Option<String> {
    let s = raw.trim();
    let (local, domain) = s.split_once('@')?;
    let ok = !local.is_empty()
        && local.len() <= 64
        && s.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;:\"()[]\\".contains(c))
        && !domain.contains('@');
    ok.then(|| format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// International form: `+`, country code and number, 8–15 digits (E.164). Spaces, dots,
/// dashes and brackets are dropped.
pub fn normalise_phone(raw: &str) -> Option<String> {
    let s = raw.trim();
    let rest = s.strip_prefix('+')?;
    if !rest
        .chars()
        .all(|c| c.is_ascii_digit() || " .-()".contains(c))
    {
        return None;
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    ((8..=15).contains(&digits.len()) && !digits.starts_with('0')).then(|| format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalise_email(" Alice@Example.COM "),
            Some("Alice@example.com".into())
        );
        for bad in [
            "a@b",
            "a b@c.d",
            "a@b.c\r\nBcc: x@y.z",
            "a@b.c,d@e.f",
            "<a@b.c>",
            "@b.c",
            "a@@b.c",
        ] {
            assert_eq!(normalise_email(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn phones() {
        assert_eq!(
            normalise_phone("+49 151 1234-5678"),
            Some("+4915112345678".into())
        );
        assert_eq!(normalise_phone("0151 12345678"), None);
        assert_eq!(normalise_phone("+1"), None);
        assert_eq!(normalise_phone("+49 151 CALLME"), None);
    }
}
