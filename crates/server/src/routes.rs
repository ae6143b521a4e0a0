//! The HTTP API, `/api/v1`. Handlers only translate: HTTP in, a service call, HTTP out. Who
//! may call what is in their signatures ([`FlowToken`], [`SignedIn`], [`Admin`]: see `auth`).

use std::sync::Arc;

use axum::extract::{Path, Query, RawQuery, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sspr_app::AppError;
use sspr_app::ports::{AuditCursor, AuditFilter};
use sspr_domain::audit::{Activity, ClientType, Outcome};
use sspr_domain::clock::{parse_rfc3339, rfc3339};
use sspr_domain::{FlowKind, Method, Policy};
use sspr_proto::*;

use crate::State;
use crate::auth::{Admin, FlowToken, SignedIn};
use crate::ctx::{Bearer, Body, Ctx};
use crate::respond::{error, reply};

type S = AxState<Arc<State>>;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Message)))]
pub async fn healthz() -> axum::Json<Message> {
    axum::Json(Message {
        message: "ok".into(),
    })
}

/// How long `/readyz` may take, whatever hangs: a load balancer's health check must get an
/// answer, not a timeout.
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// Readiness: the database can write (a heartbeat row, in a transaction) and the directory
/// answers, both checked at once within one second. The body says in words what is not ready.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Message), (status = 503, body = Message)))]
pub async fn readyz(AxState(s): S) -> Response {
    let (db, dir) = tokio::join!(
        tokio::time::timeout(READY_DEADLINE, s.app.store.ping()),
        tokio::time::timeout(READY_DEADLINE, s.app.directory.ping()),
    );
    let db = match db {
        Ok(Ok(())) => None,
        Ok(Err(e)) if e.unavailable => Some(("the database cannot save changes", e.to_string())),
        Ok(Err(e)) => Some(("the database fails", e.to_string())),
        Err(_) => Some((
            "the database did not answer within 1 second",
            "timed out".to_string(),
        )),
    };
    let dir = match dir {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(("the directory does not answer", e.to_string())),
        Err(_) => Some((
            "the directory did not answer within 1 second",
            "timed out".to_string(),
        )),
    };
    if db.is_none() && dir.is_none() {
        return axum::Json(Message {
            message: "ready".into(),
        })
        .into_response();
    }
    // The causes go to the log only: driver errors may name hosts and users.
    tracing::warn!(
        database = db.as_ref().map(|d| d.1.as_str()).unwrap_or("ok"),
        directory = dir.as_ref().map(|d| d.1.as_str()).unwrap_or("ok"),
        "not ready"
    );
    let parts: Vec<&str> = [db, dir].iter().flatten().map(|p| p.0).collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(Message {
            message: format!("not ready: {}", parts.join("; ")),
        }),
    )
        .into_response()
}

/// The password rules, to show before the user types.
#[utoipa::path(get, path = "/api/v1/password-policy", security((), ("flow" = [])), responses((status = 200, body = PasswordPolicyResponse)))]
pub async fn password_policy(AxState(s): S, Ctx(ctx): Ctx, b: Bearer) -> Response {
    let r = s.app.password_policy_view(&ctx, b.0.as_deref()).await;
    reply(&s, &ctx, r).await
}

/// Security questions to choose from at registration.
#[utoipa::path(get, path = "/api/v1/questions", responses((status = 200, body = QuestionList)))]
pub async fn questions(AxState(s): S, Ctx(ctx): Ctx) -> Response {
    let r = s.app.question_list(&ctx).await;
    reply(&s, &ctx, r).await
}

/// Starts a reset or unlock flow. Unknown, disabled, out-of-scope and unregistered users all
/// get the same `registration_required` answer.
#[utoipa::path(post, path = "/api/v1/flow/start", request_body = StartRequest,
    responses((status = 200, body = FlowResponse), (status = 400, body = ApiError), (status = 429, body = ApiError)))]
pub async fn flow_start(AxState(s): S, Ctx(ctx): Ctx, Body(req): Body<StartRequest>) -> Response {
    let kind = match req.kind.as_deref().map(str::trim) {
        None | Some("") => Some(FlowKind::Reset),
        Some(k) => FlowKind::parse(k),
    };
    let r = match kind {
        Some(kind) => s.app.start_flow(&ctx, &req.user, kind).await,
        None => Err(AppError::invalid("kind must be \"reset\" or \"unlock\".")),
    };
    reply(&s, &ctx, r).await
}

/// Where the flow stands.
#[utoipa::path(get, path = "/api/v1/flow", security(("flow" = [])), responses((status = 200, body = FlowResponse), (status = 401, body = ApiError)))]
pub async fn flow_status(AxState(s): S, Ctx(ctx): Ctx, FlowToken(t): FlowToken) -> Response {
    let r = s.app.flow_status(&ctx, &t).await;
    reply(&s, &ctx, r).await
}

/// Sends a code (email, sms), draws questions, or asks for the authenticator code.
#[utoipa::path(post, path = "/api/v1/flow/challenge", request_body = ChallengeRequest, security(("flow" = [])),
    responses((status = 200, body = ChallengeResponse), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 429, body = ApiError)))]
pub async fn flow_challenge(
    AxState(s): S,
    Ctx(ctx): Ctx,
    FlowToken(t): FlowToken,
    Body(req): Body<ChallengeRequest>,
) -> Response {
    let r = s.app.challenge(&ctx, &t, &req.method).await;
    reply(&s, &ctx, r).await
}

/// Checks a code or the answers.
#[utoipa::path(post, path = "/api/v1/flow/verify", request_body = VerifyRequest, security(("flow" = [])),
    responses((status = 200, body = FlowResponse), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 429, body = ApiError)))]
pub async fn flow_verify(
    AxState(s): S,
    Ctx(ctx): Ctx,
    FlowToken(t): FlowToken,
    Body(req): Body<VerifyRequest>,
) -> Response {
    let r = s.app.verify(&ctx, &t, &req).await;
    reply(&s, &ctx, r).await
}

/// Sets the new password once enough methods are verified.
#[utoipa::path(post, path = "/api/v1/flow/password", request_body = NewPasswordRequest, security(("flow" = [])),
    responses((status = 200, body = FlowResponse), (status = 403, body = ApiError), (status = 422, body = ApiError), (status = 503, body = ApiError)))]
pub async fn flow_password(
    AxState(s): S,
    Ctx(ctx): Ctx,
    FlowToken(t): FlowToken,
    Body(req): Body<NewPasswordRequest>,
) -> Response {
    let r = s.app.set_password(&ctx, &t, &req.new_password).await;
    reply(&s, &ctx, r).await
}

/// Unlocks the account (unlock flows) once enough methods are verified.
#[utoipa::path(post, path = "/api/v1/flow/unlock", security(("flow" = [])),
    responses((status = 200, body = FlowResponse), (status = 403, body = ApiError), (status = 503, body = ApiError)))]
pub async fn flow_unlock(AxState(s): S, Ctx(ctx): Ctx, FlowToken(t): FlowToken) -> Response {
    let r = s.app.unlock(&ctx, &t).await;
    reply(&s, &ctx, r).await
}

/// Changes a password the user knows. Wrong IDs and wrong passwords get the sign-in answer
/// (401); the new password meets the same rules as at a reset (422). The write is the user's
/// own where the directory has users' rights (LDAP, AD), and nothing is unlocked.
#[utoipa::path(post, path = "/api/v1/password/change", request_body = ChangePasswordRequest,
    responses((status = 200, body = FlowResponse), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 422, body = ApiError), (status = 429, body = ApiError), (status = 503, body = ApiError)))]
pub async fn change_password(
    AxState(s): S,
    Ctx(ctx): Ctx,
    Body(req): Body<ChangePasswordRequest>,
) -> Response {
    let r = s
        .app
        .change_password(&ctx, &req.user, &req.current_password, &req.new_password)
        .await;
    reply(&s, &ctx, r).await
}

/// Signs in to manage security info, with the current password.
#[utoipa::path(post, path = "/api/v1/session", request_body = SignInRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ApiError), (status = 429, body = ApiError)))]
pub async fn sign_in(AxState(s): S, Ctx(ctx): Ctx, Body(req): Body<SignInRequest>) -> Response {
    let r = s.app.sign_in(&ctx, &req.user, &req.password).await;
    reply(&s, &ctx, r).await
}

/// Signs out.
#[utoipa::path(delete, path = "/api/v1/session", security(("session" = [])), responses((status = 200, body = Message)))]
pub async fn sign_out(AxState(s): S, Ctx(ctx): Ctx, SignedIn(sess): SignedIn) -> Response {
    let r = s.app.sign_out(&sess).await.map(|_| Message {
        message: "signed out".into(),
    });
    reply(&s, &ctx, r).await
}

/// The signed-in user's registration.
#[utoipa::path(get, path = "/api/v1/me", security(("session" = [])), responses((status = 200, body = RegistrationStatus), (status = 401, body = ApiError)))]
pub async fn me(AxState(s): S, Ctx(ctx): Ctx, SignedIn(sess): SignedIn) -> Response {
    let r = s.app.my_status(&ctx, &sess).await;
    reply(&s, &ctx, r).await
}

/// Adds an email address; a code is sent there to confirm it.
#[utoipa::path(post, path = "/api/v1/me/email", request_body = ContactRequest, security(("session" = [])),
    responses((status = 200, body = RegistrationStatus), (status = 400, body = ApiError)))]
pub async fn add_email(
    AxState(s): S,
    Ctx(ctx): Ctx,
    SignedIn(sess): SignedIn,
    Body(req): Body<ContactRequest>,
) -> Response {
    let r = s
        .app
        .add_contact(&ctx, &sess, Method::Email, &req.value)
        .await;
    reply(&s, &ctx, r).await
}

/// Confirms the email address with the code sent to it.
#[utoipa::path(post, path = "/api/v1/me/email/verify", request_body = CodeRequest, security(("session" = [])),
    responses((status = 200, body = RegistrationStatus), (status = 400, body = ApiError)))]
pub async fn verify_email(
    AxState(s): S,
    Ctx(ctx): Ctx,
    SignedIn(sess): SignedIn,
    Body(req): Body<CodeRequest>,
) -> Response {
    let r = s
        .app
        .confirm_contact(&ctx, &sess, Method::Email, &req.code)
        .await;
    reply(&s, &ctx, r).await
}

/// Adds a mobile number; a code is texted there to confirm it.
#[utoipa::path(post, path = "/api/v1/me/phone", request_body = ContactRequest, security(("session" = [])),
    responses((status = 200, body = RegistrationStatus), (status = 400, body = ApiError)))]
pub async fn add_phone(
    AxState(s): S,
    Ctx(ctx): Ctx,
    SignedIn(sess): SignedIn,
    Body(req): Body<ContactRequest>,
) -> Response {
    let r = s
        .app
        .add_contact(&ctx, &sess, Method::Sms, &req.value)
        .await;
    reply(&s, &ctx, r).await
}

/// Confirms the mobile number with the code texted to it.
#[utoipa::path(post, path = "/api/v1/me/phone/verify", request_body = CodeRequest, security(("session" = [])),
    responses((status = 200, body = RegistrationStatus), (status = 400, body = ApiError)))]
pub async fn verify_phone(
    AxState(s): S,
    Ctx(ctx): Ctx,
    SignedIn(sess): SignedIn,
    Body(req): Body<CodeRequest>,
) -> Response {
    let r = s
        .app
        .confirm_contact(&ctx, &sess, Method::Sms, &req.code)
        .await;
    reply(&s, &ctx, r).await
}

/// Sets the security questions and answers (replacing earlier ones).
#[utoipa::path(put, path = "/api/v1/me/questions", request_body = QuestionsRequest, security(("session" = [])),
    responses((status = 200, body = RegistrationStatus), (status = 400, body = ApiError)))]
pub async fn set_questions(
    AxState(s): S,
    Ctx(ctx): Ctx,
    SignedIn(sess): SignedIn,
    Body(req): Body<QuestionsRequest>,
) -> Response {
    let r = s.app.set_questions(&ctx, &sess, &req.answers).await;
    reply(&s, &ctx, r).await
}

/// Starts authenticator-app enrolment: returns the otpauth URI and its QR code.
#[utoipa::path(post, path = "/api/v1/me/totp", security(("session" = [])), responses((status = 200, body = TotpEnrolment)))]
pub async fn enrol_totp(AxState(s): S, Ctx(ctx): Ctx, SignedIn(sess): SignedIn) -> Response {
    let r = s.app.enrol_totp(&ctx, &sess).await;
    reply(&s, &ctx, r).await
}

/// Confirms the authenticator app with a code it shows.
#[utoipa::path(post, path = "/api/v1/me/totp/verify", request_body = CodeRequest, security(("session" = [])),
    responses((status = 200, body = RegistrationStatus), (status = 400, body = ApiError)))]
pub async fn verify_totp(
    AxState(s): S,
    Ctx(ctx): Ctx,
    SignedIn(sess): SignedIn,
    Body(req): Body<CodeRequest>,
) -> Response {
    let r = s.app.confirm_totp(&ctx, &sess, &req.code).await;
    reply(&s, &ctx, r).await
}

/// Makes a new set of recovery codes, voiding any earlier set. The codes are in this answer
/// only: show them to the user once.
#[utoipa::path(post, path = "/api/v1/me/recovery-codes", security(("session" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 403, body = ApiError)))]
pub async fn recovery_codes(AxState(s): S, Ctx(ctx): Ctx, SignedIn(sess): SignedIn) -> Response {
    let r = s.app.generate_recovery_codes(&ctx, &sess).await;
    reply(&s, &ctx, r).await
}

/// Starts adding a passkey: options for `navigator.credentials.create`.
#[utoipa::path(post, path = "/api/v1/me/passkeys", security(("session" = [])),
    responses((status = 200, body = PasskeyOptions), (status = 403, body = ApiError)))]
pub async fn start_passkey(AxState(s): S, Ctx(ctx): Ctx, SignedIn(sess): SignedIn) -> Response {
    let r = s.app.start_passkey_registration(&ctx, &sess).await;
    reply(&s, &ctx, r).await
}

/// Adds the passkey the browser created for those options.
#[utoipa::path(post, path = "/api/v1/me/passkeys/verify", request_body = PasskeyRequest, security(("session" = [])),
    responses((status = 200, body = RegistrationStatus), (status = 400, body = ApiError)))]
pub async fn finish_passkey(
    AxState(s): S,
    Ctx(ctx): Ctx,
    SignedIn(sess): SignedIn,
    Body(req): Body<PasskeyRequest>,
) -> Response {
    let r = s
        .app
        .finish_passkey_registration(&ctx, &sess, &req.credential)
        .await;
    reply(&s, &ctx, r).await
}

/// Removes a method (`email`, `sms`, `questions`, `totp`, `recovery_code`, `passkey`).
#[utoipa::path(delete, path = "/api/v1/me/methods/{method}", params(("method" = String, Path, example = "questions")), security(("session" = [])),
    responses((status = 200, body = RegistrationStatus), (status = 400, body = ApiError)))]
pub async fn remove_method(
    AxState(s): S,
    Ctx(ctx): Ctx,
    SignedIn(sess): SignedIn,
    Path(method): Path<String>,
) -> Response {
    let r = match Method::parse(&method) {
        Some(m) => s.app.remove_method(&ctx, &sess, m).await,
        None => Err(AppError::invalid(
            "method must be one of email, sms, questions, totp, recovery_code, passkey",
        )),
    };
    reply(&s, &ctx, r).await
}

/// Confirms the registered methods are still current (reconfirmation).
#[utoipa::path(post, path = "/api/v1/me/confirm", security(("session" = [])), responses((status = 200, body = RegistrationStatus)))]
pub async fn reconfirm(AxState(s): S, Ctx(ctx): Ctx, SignedIn(sess): SignedIn) -> Response {
    let r = s.app.reconfirm(&ctx, &sess).await;
    reply(&s, &ctx, r).await
}

// ---------------------------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------------------------

/// The self-service policy.
#[utoipa::path(get, path = "/api/v1/admin/policy", security(("admin" = [])), responses((status = 200, body = Object), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn get_policy(AxState(s): S, Ctx(ctx): Ctx, Admin(actor, role): Admin) -> Response {
    let r = match s.app.admin_only(&ctx, &actor, role, "policy").await {
        Ok(()) => s.app.policy().await,
        Err(e) => Err(e),
    };
    reply(&s, &ctx, r).await
}

/// Replaces the policy after validating it; the change is audited with old and new values.
#[utoipa::path(put, path = "/api/v1/admin/policy", request_body = Object, security(("admin" = [])),
    responses((status = 200, body = Object), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn put_policy(
    AxState(s): S,
    Ctx(ctx): Ctx,
    Admin(actor, role): Admin,
    Body(p): Body<Policy>,
) -> Response {
    let r = match s.app.admin_only(&ctx, &actor, role, "policy").await {
        Ok(()) => s.app.set_policy(&ctx, &actor, p).await,
        Err(e) => Err(e),
    };
    reply(&s, &ctx, r).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// From this time (RFC 3339 or YYYY-MM-DD, UTC).
    pub since: Option<String>,
    /// Before this time.
    pub until: Option<String>,
    /// The next (older) page: the cursor from a full page's `Link: <…>; rel="next"` header.
    pub before: Option<String>,
    pub user: Option<String>,
    pub activity: Option<String>,
    /// `success` or `failure`.
    pub result: Option<String>,
    pub client_type: Option<String>,
    pub ip: Option<String>,
    pub support_code: Option<String>,
    pub limit: Option<u32>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    pub lang: Option<String>,
}

/// Parses audit query parameters into a filter, saying which value is wrong.
pub fn audit_filter(p: &AuditParams) -> Result<AuditFilter, String> {
    let time = |v: &Option<String>, name: &str| -> Result<Option<i64>, String> {
        v.as_deref()
            .map(|s| {
                parse_rfc3339(s).ok_or(format!(
                    "{name} must be a UTC time like 2026-11-24 or 2026-11-24T09:30:00Z"
                ))
            })
            .transpose()
    };
    Ok(AuditFilter {
        since: time(&p.since, "since")?,
        until: time(&p.until, "until")?,
        user: p
            .user
            .as_deref()
            .and_then(sspr_domain::identity::canonical_login),
        activity: p
            .activity
            .as_deref()
            .map(|a| Activity::parse(a).ok_or(format!("unknown activity {a:?}")))
            .transpose()?,
        outcome: p
            .result
            .as_deref()
            .map(|a| Outcome::parse(a).ok_or("result must be success or failure".to_string()))
            .transpose()?,
        client_type: p
            .client_type
            .as_deref()
            .map(|a| {
                ClientType::parse(a).ok_or(
                    "client_type must be logon_screen, ssh, browser, cli, api or system"
                        .to_string(),
                )
            })
            .transpose()?,
        client_ip: p.ip.clone(),
        support_code: p.support_code.clone(),
        after_id: None,
        before: p
            .before
            .as_deref()
            .map(|c| {
                AuditCursor::parse(c).ok_or(format!(
                    "before {c:?} is not a page cursor: pass the value of the previous page's Link header (TIME.ID)"
                ))
            })
            .transpose()?,
        limit: p.limit.unwrap_or(1000),
    })
}

pub fn event_dto(e: sspr_domain::AuditEvent) -> AuditEventDto {
    AuditEventDto {
        id: e.id,
        time: rfc3339(e.at),
        activity: e.activity.as_str().into(),
        actor: e.actor,
        target: e.target,
        client_ip: e.client_ip,
        client_type: e.client_type.as_str().into(),
        result: e.outcome.as_str().into(),
        reason: e.reason,
        flow_id: e.flow_id,
        support_code: e.support_code,
        details: e.details,
    }
}

/// CSV with a header row; fields quoted when needed, and formula-looking cells defused.
pub fn events_csv(events: &[AuditEventDto]) -> String {
    fn cell(s: &str) -> String {
        let s = if s.starts_with(['=', '+', '-', '@']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    }
    let mut out = String::from(
        "id,time,activity,actor,target,client_ip,client_type,result,reason,flow_id,support_code,details\n",
    );
    for e in events {
        let row = [
            e.id.to_string(),
            e.time.clone(),
            e.activity.clone(),
            e.actor.clone(),
            e.target.clone(),
            e.client_ip.clone(),
            e.client_type.clone(),
            e.result.clone(),
            e.reason.clone(),
            e.flow_id.clone().unwrap_or_default(),
            e.support_code.clone().unwrap_or_default(),
            if e.details.is_null() {
                String::new()
            } else {
                e.details.to_string()
            },
        ];
        out.push_str(&row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// The audit log, filtered, a page of the newest events (oldest first within the page); JSON
/// or CSV. A full page carries `Link: <…&before=CURSOR>; rel="next"` to the older events.
#[utoipa::path(get, path = "/api/v1/admin/audit", params(AuditParams), security(("admin" = [])),
    responses((status = 200, body = [AuditEventDto], headers(("link" = String, description = "rel=\"next\": the next, older page"))), (status = 400, body = ApiError), (status = 401, body = ApiError)))]
pub async fn audit(
    AxState(s): S,
    Ctx(ctx): Ctx,
    _: Admin,
    RawQuery(raw): RawQuery,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let Query(p) = q.map_err(|e| AppError::invalid(e.body_text()))?;
        let f = audit_filter(&p).map_err(AppError::invalid)?;
        let events = s.app.audit_events(&f).await?;
        let next = (f.limit > 0 && events.len() >= f.limit as usize)
            .then(|| events.first().map(AuditCursor::of))
            .flatten()
            .map(|c| next_link(raw.as_deref().unwrap_or(""), &c));
        let events: Vec<AuditEventDto> = events.into_iter().map(event_dto).collect();
        Ok((p.format.unwrap_or_default(), events, next))
    }
    .await;
    let (fmt, events, next) = match r {
        Ok(v) => v,
        Err(e) => return error(&s, &ctx, e).await,
    };
    let mut res = if fmt == "csv" {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            events_csv(&events),
        )
            .into_response()
    } else {
        axum::Json(events).into_response()
    };
    if let Some(v) = next.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
        res.headers_mut().insert(header::LINK, v);
    }
    res
}

/// The same query with `before` set to `cursor`: the next page keeps every filter.
fn next_link(query: &str, cursor: &AuditCursor) -> String {
    let mut parts: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("before="))
        .collect();
    let before = format!("before={}", cursor.encode());
    parts.push(&before);
    format!("</api/v1/admin/audit?{}>; rel=\"next\"", parts.join("&"))
}

/// Invites a user to set their first password: a one-time link to the email address (or
/// mobile number) the directory holds for them, valid for `limits.invitation_ttl_secs`.
#[utoipa::path(post, path = "/api/v1/admin/invitations", request_body = InvitationRequest, security(("admin" = [])),
    responses((status = 200, body = InvitationResponse), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn invite(
    AxState(s): S,
    Ctx(ctx): Ctx,
    Admin(admin, _): Admin,
    Body(req): Body<InvitationRequest>,
) -> Response {
    let channel = match req.channel.as_deref().map(str::trim) {
        None | Some("") => Some(sspr_app::ports::Channel::Email),
        Some(c) => sspr_app::ports::Channel::parse(c),
    };
    let r = match channel {
        Some(channel) => s.app.invite(&ctx, &admin, &req.user, channel).await,
        None => Err(AppError::invalid("channel must be \"email\" or \"sms\".")),
    };
    reply(&s, &ctx, r).await
}

/// One user's registration, for the helpdesk.
#[utoipa::path(get, path = "/api/v1/admin/users/{login}", params(("login" = String, Path, example = "demo")), security(("admin" = [])),
    responses((status = 200, body = UserSummary), (status = 404, body = ApiError)))]
pub async fn admin_user(
    AxState(s): S,
    Ctx(ctx): Ctx,
    _: Admin,
    Path(login): Path<String>,
) -> Response {
    let r = s.app.user_summary(&login).await;
    reply(&s, &ctx, r).await
}
