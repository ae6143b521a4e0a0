//! The reset and unlock flows in the browser: user ID and browser check → methods → each
//! verification → new password (or unlock) → done. The flow token lives in an HttpOnly
//! cookie, never in a URL.

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::json;
use sspr_app::{AppError, ErrorKind};
use sspr_domain::FlowKind;
use sspr_proto::{Answer, FlowResponse, VerifyRequest};

use crate::web::{FLOW_COOKIE, Gate, Gated, Posted, Web, cookie};

pub async fn home(w: Web) -> Response {
    let allow_unlock = w
        .state
        .app
        .policy()
        .await
        .map(|p| p.allow_unlock)
        .unwrap_or(true);
    w.page("home.html", json!({ "allow_unlock": allow_unlock }))
}

pub async fn reset(w: Web) -> Response {
    start_page(w, FlowKind::Reset, None, "")
}

pub async fn unlock(w: Web) -> Response {
    start_page(w, FlowKind::Unlock, None, "")
}

fn start_page(mut w: Web, kind: FlowKind, error: Option<AppError>, user: &str) -> Response {
    let challenge = w.state.app.pow_challenge();
    let status = match &error {
        Some(e) => w.status_for(e),
        None => StatusCode::OK,
    };
    w.page_status(
        status,
        "start.html",
        json!({
            "kind": kind.as_str(),
            "user": user,
            "pow": challenge,
            "error": error.as_ref().map(|e| &e.message),
            "support_code": error.as_ref().and_then(|e| e.support_code.clone()),
        }),
    )
}

/// Step 1: the browser check, then the user ID.
pub async fn start(p: Posted) -> Response {
    let kind = FlowKind::parse(p.get("kind"))
        .filter(|k| matches!(k, FlowKind::Reset | FlowKind::Unlock))
        .unwrap_or(FlowKind::Reset);
    let user = p.get("user").trim().to_string();
    let Posted { web: mut w, form } = p;
    let app = w.state.app.clone();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if let Err(e) = app.pow_check(&w.ctx, get("pow"), get("pow_solution")).await {
        return start_page(w, kind, Some(e), &user);
    }
    match app.start_flow(&w.ctx, &user, kind).await {
        // Unknown, disabled, out-of-scope and unregistered users all land here, alike.
        Ok(r) if r.status == "registration_required" => need_info(w, r),
        Ok(r) => {
            if let Some(t) = &r.flow_token {
                w.set
                    .push(cookie(FLOW_COOKIE, t, r.expires_in.max(60) + 60));
            }
            w.redirect("/flow")
        }
        Err(e) if matches!(e.kind, ErrorKind::Invalid) => start_page(w, kind, Some(e), &user),
        Err(e) => w.fail(e).await,
    }
}

/// The flow token from its cookie. Whether the flow is still alive is the service's to say;
/// without the cookie (expired, or a bookmark) it is back to the start with a word why.
pub struct InFlow(pub String);

impl Gate for InFlow {
    async fn check(w: Web, _form: bool) -> Result<(Web, Self), Response> {
        match w.cookie(FLOW_COOKIE).map(str::to_string) {
            Some(t) => Ok((w, InFlow(t))),
            None => Err(no_flow(w)),
        }
    }
}

fn no_flow(w: Web) -> Response {
    let e = AppError::new(ErrorKind::Unauthorized, w.tr("flow-missing"));
    start_page(w, FlowKind::Reset, Some(e), "")
}

/// Where the flow stands, as a page.
pub async fn flow(Gated(InFlow(t), mut w): Gated<InFlow>) -> Response {
    let app = w.state.app.clone();
    let r = match app.flow_status(&w.ctx, &t).await {
        Ok(r) => r,
        Err(e) if e.kind == ErrorKind::Unauthorized => {
            w.set.push(cookie(FLOW_COOKIE, "", 0));
            return no_flow(w);
        }
        Err(e) => return w.fail(e).await,
    };
    flow_page(w, &t, r).await
}

async fn flow_page(mut w: Web, token: &str, r: FlowResponse) -> Response {
    let app = w.state.app.clone();
    let step = (r.verified.len() + 1).min(r.required.into());
    let common = json!({
        "flow": r,
        "step": step,
        "two_steps": r.required > 1,
    });
    match r.status.as_str() {
        "choose_method" => w.page("methods.html", common),
        "registration_required" => {
            w.set.push(cookie(FLOW_COOKIE, "", 0));
            need_info(w, r)
        }
        "set_password" => {
            let rules = match app.password_policy_view(&w.ctx, Some(token)).await {
                Ok(p) => p,
                Err(e) => return w.fail(e).await,
            };
            w.page(
                "password.html",
                json!({ "flow": r, "policy": rules, "error": null }),
            )
        }
        "ready_to_unlock" => w.page("unlock.html", common),
        // One message, no choices: every method would be refused until the block ends.
        "blocked" => {
            w.set.push(cookie(FLOW_COOKIE, "", 0));
            w.fail(AppError::new(ErrorKind::TooMany, r.message)).await
        }
        _ => {
            w.set.push(cookie(FLOW_COOKIE, "", 0));
            w.page("done.html", common)
        }
    }
}

/// "More security info is needed", with the registration link from the configured public URL.
fn need_info(w: Web, r: FlowResponse) -> Response {
    let register_url = r
        .register_url
        .clone()
        .unwrap_or_else(|| w.state.app.settings.register_url());
    w.page(
        "needinfo.html",
        json!({ "flow": r, "register_url": register_url }),
    )
}

/// Sends a code, draws questions, or asks for the authenticator code.
pub async fn challenge(Gated(InFlow(t), p): Gated<InFlow, Posted>) -> Response {
    let method = p.get("method").to_string();
    let w = p.web;
    match w.state.app.clone().challenge(&w.ctx, &t, &method).await {
        // The passkey's page runs its challenge at once; it has no page to come back to.
        Ok(c) if c.passkey.is_some() => {
            let passkey = c.passkey.as_ref().map(|o| o.to_string());
            w.page(
                "verify.html",
                json!({ "c": c, "passkey_options": passkey, "error": null }),
            )
        }
        // Post/redirect/get: a reload, Back or a language switch then shows the code's page
        // again without sending another code or drawing other questions.
        Ok(c) => w.redirect(&verify_path(&c.method)),
        Err(e) => flow_error(w, &t, e).await,
    }
}

/// Seconds after a code is sent before the page offers a new one.
const RESEND_AFTER_SECS: i64 = 30;

/// The page of the challenge waiting for `method`.
fn verify_path(method: &str) -> String {
    let method: String = method
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("/flow/verify?method={method}")
}

#[derive(serde::Deserialize)]
pub struct MethodQuery {
    #[serde(default)]
    method: String,
}

/// The page of the challenge under way (after the redirect above, a reload, a language
/// switch); the methods when nothing is waiting, e.g. the code expired or was used.
pub async fn verify_page(
    axum::extract::Query(q): axum::extract::Query<MethodQuery>,
    Gated(InFlow(t), mut w): Gated<InFlow>,
) -> Response {
    let app = w.state.app.clone();
    match app.current_challenge(&w.ctx, &t, &q.method).await {
        Ok(Some(c)) => {
            w.path = verify_path(&c.method);
            // A new code is offered once this one has had time to arrive: a user who asks at
            // once spends the hour's codes on mail still on its way.
            let age = c
                .expires_in
                .map(|left| app.settings.limits.code_ttl_secs - left);
            let resend_in = age.map(|a| (RESEND_AFTER_SECS - a).max(0));
            w.page(
                "verify.html",
                json!({ "c": c, "error": null, "resend_in": resend_in }),
            )
        }
        Ok(None) => w.redirect("/flow"),
        Err(e) if e.kind == ErrorKind::Unauthorized => {
            w.set.push(cookie(FLOW_COOKIE, "", 0));
            no_flow(w)
        }
        Err(e) => w.fail(e).await,
    }
}

/// An error inside the flow: the flow page again with the message on top when the flow can
/// go on (a wrong code, a method used up), the error page when it cannot.
async fn flow_error(mut w: Web, token: &str, e: AppError) -> Response {
    let app = w.state.app.clone();
    let e = w.audited(e).await;
    if matches!(e.kind, ErrorKind::Unauthorized) {
        return w.error(e);
    }
    match app.flow_status(&w.ctx, token).await {
        Ok(r) if r.status == "choose_method" => {
            let status = w.status_for(&e);
            let step = (r.verified.len() + 1).min(r.required.into());
            w.page_status(
                status,
                "methods.html",
                json!({
                    "flow": r, "step": step, "two_steps": r.required > 1,
                    "error": e.message, "details": e.details, "support_code": e.support_code,
                }),
            )
        }
        _ => w.error(e),
    }
}

/// Checks a code or the answers.
pub async fn verify(Gated(InFlow(t), p): Gated<InFlow, Posted>) -> Response {
    let method = p.get("method").to_string();
    let answers: Vec<Answer> = {
        let mut ids: Vec<&String> = p.form.keys().filter(|k| k.starts_with("answer-")).collect();
        ids.sort();
        ids.into_iter()
            .map(|k| Answer {
                question_id: k.trim_start_matches("answer-").to_string(),
                answer: p.form.get(k).cloned().unwrap_or_default(),
            })
            .collect()
    };
    let req = VerifyRequest {
        method: method.clone(),
        code: (!p.get("code").is_empty()).then(|| p.get("code").to_string()),
        answers: (!answers.is_empty()).then_some(answers),
        credential: (!p.get("credential").is_empty()).then(|| p.json("credential")),
    };
    // Re-show the same questions (their texts came with the form) if the answers cannot be
    // read; wrong ones go back to the methods (below).
    let questions: Vec<serde_json::Value> = p
        .form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("qtext-")
                .map(|id| json!({ "id": id, "text": v }))
        })
        .collect();
    let sent_to = p.get("sent_to").to_string();
    let w = p.web;
    let app = w.state.app.clone();
    match app.verify(&w.ctx, &t, &req).await {
        Ok(_) => w.redirect("/flow"),
        // A passkey's challenge is spent by the attempt, and wrong answers void the drawn
        // questions: back to the methods, where choosing again brings a new challenge.
        Err(e)
            if method == "passkey"
                || (method == "questions" && e.kind == ErrorKind::VerificationFailed) =>
        {
            flow_error(w, &t, e).await
        }
        Err(e) if e.kind == ErrorKind::VerificationFailed || e.kind == ErrorKind::Invalid => {
            let mut w = w;
            w.path = verify_path(&method);
            let e = w.audited(e).await;
            let mut questions = questions;
            questions.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            w.page_status(
                StatusCode::BAD_REQUEST,
                "verify.html",
                json!({
                    "c": { "method": method, "message": "", "sent_to": sent_to, "questions": questions },
                    "error": e.message, "support_code": e.support_code,
                }),
            )
        }
        Err(e) => flow_error(w, &t, e).await,
    }
}

/// Sets the new password.
pub async fn password(Gated(InFlow(t), p): Gated<InFlow, Posted>) -> Response {
    let pw = p.get("new_password").to_string();
    let again = p.get("confirm_password").to_string();
    let mut w = p.web;
    let app = w.state.app.clone();
    let result = if pw != again {
        Err(AppError::invalid(w.tr("password-mismatch")))
    } else {
        app.set_password(&w.ctx, &t, &pw).await
    };
    match result {
        Ok(r) => {
            w.set.push(cookie(FLOW_COOKIE, "", 0));
            let step = r.required;
            w.page("done.html", json!({ "flow": r, "step": step }))
        }
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::PasswordRejected
                    | ErrorKind::Invalid
                    | ErrorKind::Directory
                    | ErrorKind::DirectoryRefused
            ) =>
        {
            let e = w.audited(e).await;
            let status = w.status_for(&e);
            let flow = app.flow_status(&w.ctx, &t).await.ok();
            let rules = app.password_policy_view(&w.ctx, Some(&t)).await.ok();
            w.page_status(
                status,
                "password.html",
                json!({
                    "flow": flow, "policy": rules,
                    "error": e.message, "details": e.details, "support_code": e.support_code,
                }),
            )
        }
        Err(e) => flow_error(w, &t, e).await,
    }
}

/// Unlocks the account.
pub async fn do_unlock(Gated(InFlow(t), p): Gated<InFlow, Posted>) -> Response {
    let mut w = p.web;
    match w.state.app.clone().unlock(&w.ctx, &t).await {
        Ok(r) => {
            w.set.push(cookie(FLOW_COOKIE, "", 0));
            w.page("done.html", json!({ "flow": r }))
        }
        Err(e) => flow_error(w, &t, e).await,
    }
}

/// Leaves the flow.
pub async fn cancel(p: Posted) -> Response {
    let mut w = p.web;
    w.set.push(cookie(FLOW_COOKIE, "", 0));
    w.redirect("/")
}

/// Whether a request is for a page (outside `/api/`, from something that takes HTML).
fn wants_page(uri: &Uri, headers: &HeaderMap) -> bool {
    !uri.path().starts_with("/api/")
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// Unknown page: a 404 in the portal's look; the API's JSON for API clients.
pub async fn not_found(
    uri: Uri,
    headers: HeaderMap,
    ctx: sspr_server::ctx::Ctx,
    w: Web,
) -> Response {
    if !wants_page(&uri, &headers) {
        return sspr_server::not_found(axum::extract::State(w.state.clone()), ctx).await;
    }
    let e = AppError::invalid(w.tr("error-not-found"));
    let e = w.audited(e).await;
    w.error_status(StatusCode::NOT_FOUND, e)
}

/// A page URL fetched with the wrong method, typically a form's address reloaded or
/// bookmarked: back to the page the form belongs to.
pub async fn method_not_allowed(
    uri: Uri,
    headers: HeaderMap,
    ctx: sspr_server::ctx::Ctx,
    w: Web,
) -> Response {
    if !wants_page(&uri, &headers) {
        return sspr_server::method_not_allowed(axum::extract::State(w.state.clone()), ctx).await;
    }
    let to = w.path.clone();
    w.redirect(&to)
}
