//! Administration: the policy (every change audited with old and new values), the audit log,
//! admin tokens.

use sspr_domain::audit::{Activity, AuditEvent, Outcome};
use sspr_domain::random::token;
use sspr_domain::{Method, Policy};

use crate::app::{App, RequestCtx};
use crate::crypto::token_hash;
use crate::error::{AppError, ErrorKind};
use crate::messages::Msg;
use crate::ports::{AdminToken, AuditFilter, MethodStatus, SessionRecord};

/// What a signed-in member of staff may do on the admin pages. The helpdesk sees users'
/// registration and the audit log, unblocks, and sends invitations; only an administrator
/// changes the policy. Audited as the actor `admin:LOGIN` or `helpdesk:LOGIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffRole {
    Admin,
    Helpdesk,
}

impl StaffRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Helpdesk => "helpdesk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Admin, Self::Helpdesk]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// The audit log's actor for `login` acting in this role.
    pub fn actor(self, login: &str) -> String {
        format!("{}:{login}", self.as_str())
    }
}

/// What an administrator's sign-in to the admin pages opened.
#[derive(Debug)]
pub enum AdminSignIn {
    /// An admin session (its token).
    Admin(String),
    /// An admin session, and a registration session for the "Register now" the administrator
    /// is asked to do first: they may go on without it `left` more times after this one.
    AskedToRegister {
        admin: String,
        register: String,
        left: u32,
    },
    /// No admin session: the skips are used up. A registration session only.
    MustRegister { register: String },
}

impl App {
    /// The holder of an admin API token, as the audit log's actor (`admin:NAME` or
    /// `helpdesk:NAME`) with the token's role; or 401 (audited).
    pub async fn admin(
        &self,
        ctx: &RequestCtx,
        bearer: Option<&str>,
    ) -> Result<(String, StaffRole), AppError> {
        let found = match bearer {
            Some(t) if t.len() >= 32 => self.store.admin_token(&token_hash(t)).await?,
            _ => None,
        };
        match found {
            Some(t) => {
                let role = StaffRole::parse(&t.role).unwrap_or(StaffRole::Helpdesk);
                Ok((role.actor(&t.name), role))
            }
            None => {
                let mut ev = self.event(ctx, Activity::AdminAuthFailed, Outcome::Failure);
                ev.reason = if bearer.is_some() {
                    "bad_token"
                } else {
                    "no_token"
                }
                .into();
                let err = AppError::new(
                    ErrorKind::Unauthorized,
                    "An admin token is required: send Authorization: Bearer <token> (create one with `sspr admin token create`).",
                );
                Err(self.fail(ev, err).await)
            }
        }
    }

    /// Signs an administrator in to the admin pages with their directory password. Only
    /// members of `admin_groups` get a session; everyone else gets the same answer as a wrong
    /// password, so the page does not tell who is an admin.
    ///
    /// With the policy's `require_registration`, an administrator who could not reset their
    /// own password (too few methods registered) is asked to register, and may go on without
    /// it `registration_skips` times; each such sign-in counts one. After that, signing in
    /// opens a registration session only. Counting at sign-in rather than at a "skip" button
    /// means the request cannot be passed by typing an admin page's address.
    pub async fn admin_sign_in(
        &self,
        ctx: &RequestCtx,
        user: &str,
        password: &str,
    ) -> Result<AdminSignIn, AppError> {
        let mut ev = self.event(ctx, Activity::AdminSignIn, Outcome::Success);
        let u = self
            .check_credentials(ctx, &mut ev, user, password, Msg::NotAnAdmin)
            .await?;
        let Some(role) = self.staff_role(&u.groups) else {
            ev.activity = Activity::AdminAuthFailed;
            ev.reason = "not_admin".into();
            let err = AppError::new(ErrorKind::Unauthorized, ctx.t(Msg::NotAnAdmin));
            return Err(self.fail(ev, err).await);
        };
        ev.details = serde_json::json!({ "role": role.as_str() });
        let now = self.now();
        let policy = self.policy().await?;
        let ask = policy.require_registration && self.could_not_reset(&u, &policy).await?;
        let mut skips_left = None;
        if ask {
            let max = u32::from(policy.registration_skips);
            match self.store.skip_registration(&u.id, now, max).await? {
                Some(used) => {
                    let left = max.saturating_sub(used);
                    ev.merge_details(
                        serde_json::json!({ "registration": "asked", "skips_left": left }),
                    );
                    skips_left = Some(left);
                }
                None => {
                    let (register, _) = self.open_registration_session(&u, now).await?;
                    ev.outcome = Outcome::Failure;
                    ev.reason = "registration_required".into();
                    ev.merge_details(serde_json::json!({ "registration": "required" }));
                    self.record(ev).await;
                    return Ok(AdminSignIn::MustRegister { register });
                }
            }
        }
        let t = token(self.rng.as_ref());
        let session = SessionRecord {
            id: admin_session_id(&t),
            user_id: u.id.clone(),
            login: u.login.clone(),
            display_name: u.display_name.clone(),
            groups: u.groups.clone(),
            expires_at: now + ADMIN_SESSION_SECS,
        };
        self.store.insert_session(&session).await?;
        self.record(ev).await;
        Ok(match skips_left {
            None => AdminSignIn::Admin(t),
            Some(left) => {
                let (register, _) = self.open_registration_session(&u, now).await?;
                AdminSignIn::AskedToRegister {
                    admin: t,
                    register,
                    left,
                }
            }
        })
    }

    /// The admin behind an admin-page session token. Group membership is the one read at
    /// sign-in; a removed admin loses access when the session ends (one hour at most).
    pub async fn admin_session(&self, token: &str) -> Result<Option<SessionRecord>, AppError> {
        if token.len() != 32 {
            return Ok(None);
        }
        Ok(match self.store.session(&admin_session_id(token)).await? {
            Some(s) if s.expires_at > self.now() && self.staff_role(&s.groups).is_some() => Some(s),
            _ => None,
        })
    }

    pub async fn admin_sign_out(&self, token: &str) -> Result<(), AppError> {
        Ok(self.store.delete_session(&admin_session_id(token)).await?)
    }

    /// Lets an administrator through, and refuses the helpdesk with 403, audited under the
    /// operator's name (`admin_auth_failed`, reason `not_admin`): what only administrators do
    /// (the policy), from the admin pages and the admin API alike.
    pub async fn admin_only(
        &self,
        ctx: &RequestCtx,
        actor: &str,
        role: StaffRole,
        target: &str,
    ) -> Result<(), AppError> {
        if role == StaffRole::Admin {
            return Ok(());
        }
        let mut ev = self.event(ctx, Activity::AdminAuthFailed, Outcome::Failure);
        ev.actor = actor.into();
        ev.target = target.into();
        ev.reason = "not_admin".into();
        let err = AppError::new(ErrorKind::Forbidden, ctx.t(Msg::AdminOnly));
        Err(self.fail(ev, err).await)
    }

    pub fn is_admin(&self, groups: &[String]) -> bool {
        self.staff_role(groups) == Some(StaffRole::Admin)
    }

    /// What the admin pages let a member of `groups` do: everything (an `admin_groups`
    /// member), the helpdesk's part (`helpdesk_groups`), or nothing. Read from the groups at
    /// each request, so the role follows the session's groups and needs no column of its own.
    pub fn staff_role(&self, groups: &[String]) -> Option<StaffRole> {
        let member = |of: &[String]| {
            groups
                .iter()
                .any(|g| of.iter().any(|a| a.eq_ignore_ascii_case(g)))
        };
        if member(&self.settings.admin_groups) {
            Some(StaffRole::Admin)
        } else if member(&self.settings.helpdesk_groups) {
            Some(StaffRole::Helpdesk)
        } else {
            None
        }
    }

    /// Validates and stores a policy; the audit event carries the old and new values.
    pub async fn set_policy(
        &self,
        ctx: &RequestCtx,
        actor: &str,
        new: Policy,
    ) -> Result<Policy, AppError> {
        let mut ev = self.event(ctx, Activity::PolicyChanged, Outcome::Success);
        ev.actor = actor.into();
        ev.target = "policy".into();
        let problems = new.validate();
        if !problems.is_empty() {
            ev.reason = "invalid_policy".into();
            ev.details = serde_json::json!({ "problems": problems });
            let err =
                AppError::invalid(format!("The policy is not valid: {}", problems.join("; ")))
                    .with_details(problems);
            return Err(self.fail(ev, err).await);
        }
        let old = self.policy().await?;
        self.store.save_policy(&new, self.now()).await?;
        ev.details = serde_json::json!({ "changes": policy_diff(&old, &new) });
        self.record(ev).await;
        Ok(new)
    }

    pub async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, AppError> {
        Ok(self.store.audit_query(filter).await?)
    }

    /// Creates an admin API token; only its hash is kept. Returns the token, shown once.
    pub async fn create_admin_token(
        &self,
        ctx: &RequestCtx,
        name: &str,
        role: StaffRole,
    ) -> Result<String, AppError> {
        let name = name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_.@".contains(c))
        {
            return Err(AppError::invalid(
                "The token name must be 1–64 letters, digits, '-', '_', '.' or '@'.",
            ));
        }
        let t = format!("{}{}", token(self.rng.as_ref()), token(self.rng.as_ref()));
        self.store
            .insert_admin_token(&AdminToken {
                name: name.into(),
                token_hash: token_hash(&t),
                created_at: self.now(),
                role: role.as_str().into(),
            })
            .await?;
        let mut ev = self.event(ctx, Activity::AdminTokenCreated, Outcome::Success);
        ev.actor = "local-cli".into();
        ev.target = name.into();
        ev.details = serde_json::json!({ "role": role.as_str() });
        self.record(ev).await;
        Ok(t)
    }

    /// Until when a user is blocked from self-service (too many failed verifications), if so.
    pub async fn self_service_blocked_until(
        &self,
        user_id: &str,
    ) -> Result<Option<sspr_domain::clock::UnixTime>, AppError> {
        Ok(self
            .store
            .blocked_until(&crate::app::keys::account_block(user_id), self.now())
            .await?)
    }

    /// An administrator lifts sspr's own blocks on a user: the self-service block after
    /// failed verifications (with its count) and the sign-in lockout. The directory's lock on
    /// the account is not sspr's to lift here, and stays. Audited with the administrator.
    pub async fn unblock(
        &self,
        ctx: &RequestCtx,
        actor: &str,
        user_id: &str,
        login: &str,
    ) -> Result<(), AppError> {
        use crate::app::keys;
        self.store
            .clear_throttle(&[
                keys::account_block(user_id),
                keys::account_failures(user_id),
            ])
            .await?;
        self.clear_sign_in_lockout(login).await?;
        let mut ev = self.event(ctx, Activity::AdminUserChanged, Outcome::Success);
        ev.actor = actor.into();
        ev.target = login.into();
        ev.reason = "unblocked".into();
        self.record(ev).await;
        Ok(())
    }

    /// The methods a user has confirmed (pending ones do not count).
    pub async fn active_methods(&self, user_id: &str) -> Result<Vec<Method>, AppError> {
        Ok(self
            .store
            .methods(user_id)
            .await?
            .into_iter()
            .filter(|r| r.status == MethodStatus::Active)
            .map(|r| r.method)
            .collect())
    }

    /// A user's usable methods and whether they are registered, for admin listings.
    pub async fn registration_of(
        &self,
        user_id: &str,
        groups: &[String],
    ) -> Result<(bool, Vec<Method>), AppError> {
        let policy = self.policy().await?;
        let methods = self.active_methods(user_id).await?;
        Ok((
            sspr_domain::flow::is_registered(&policy, groups, &methods),
            methods,
        ))
    }

    /// One user's registration, for the helpdesk.
    pub async fn user_summary(&self, login: &str) -> Result<sspr_proto::UserSummary, AppError> {
        let u = self
            .directory
            .find_user(login)
            .await
            .map_err(|e| {
                AppError::new(ErrorKind::Directory, "The directory could not be reached.")
                    .with_log(e.to_string())
            })?
            .ok_or_else(|| AppError::invalid(format!("no user {login:?} in the directory")))?;
        let (registered, methods) = self.registration_of(&u.id, &u.groups).await?;
        Ok(sspr_proto::UserSummary {
            login: u.login,
            display_name: u.display_name,
            enabled: u.enabled,
            locked: u.locked,
            groups: u.groups,
            registered,
            methods: methods.iter().map(|m| m.as_str().to_string()).collect(),
        })
    }
}

/// An admin-page session lasts this long from sign-in (the cookie's `Max-Age` too).
pub const ADMIN_SESSION_SECS: i64 = 3600;

/// Admin sessions are stored under a hash of their own domain, so a registration session's
/// token can never be used as an admin session's or the other way round.
fn admin_session_id(token: &str) -> String {
    token_hash(&format!("admin-session:{token}"))
}

/// `{field: {old, new}}` for every top-level field that changed.
pub fn policy_diff(old: &Policy, new: &Policy) -> serde_json::Value {
    let (Ok(serde_json::Value::Object(o)), Ok(serde_json::Value::Object(n))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return serde_json::Value::Null;
    };
    let mut out = serde_json::Map::new();
    for (k, nv) in &n {
        let ov = o.get(k).cloned().unwrap_or(serde_json::Value::Null);
        if &ov != nv {
            out.insert(k.clone(), serde_json::json!({ "old": ov, "new": nv }));
        }
    }
    serde_json::Value::Object(out)
}
