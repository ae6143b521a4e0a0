//! The change-password page: user ID, current password, new password twice, with the rules
//! shown before the user types. One form, one request; the passwords are never kept.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use sspr_app::{AppError, ErrorKind};
use sspr_server::respond::retry_minutes;

use crate::web::{Posted, Web};

/// GET /change.
pub async fn page(w: Web) -> Response {
    form(w, StatusCode::OK, None, "").await
}

/// POST /change.
pub async fn submit(p: Posted) -> Response {
    let user = p.get("user").trim().to_string();
    let current = p.get("current_password").to_string();
    let new = p.get("new_password").to_string();
    let again = p.get("confirm_password").to_string();
    let mut w = p.web;
    let app = w.state.app.clone();
    let result = if new != again {
        Err(AppError::invalid(w.tr("password-mismatch")))
    } else {
        app.change_password(&w.ctx, &user, &current, &new).await
    };
    match result {
        Ok(r) => w.page("done.html", json!({ "flow": r })),
        // Refusals the user can act on come back on the form, the user ID kept.
        Err(e)
            if matches!(
                e.kind,
                ErrorKind::PasswordRejected
                    | ErrorKind::Invalid
                    | ErrorKind::Unauthorized
                    | ErrorKind::Forbidden
                    | ErrorKind::TooMany
                    | ErrorKind::Busy
                    | ErrorKind::Directory
                    | ErrorKind::DirectoryRefused
            ) =>
        {
            let e = w.audited(e).await;
            let status = w.status_for(&e);
            form(w, status, Some(e), &user).await
        }
        Err(e) => w.fail(e).await,
    }
}

/// A sign-in whose password is right but must be changed first lands here: the change form,
/// saying why, with the user ID filled in.
/// `POST /password/check`: the strength meter asks whether the rules would take what the user
/// is typing (the same check a reset or change runs) and shows the answer in words, so it
/// never says "Strong" for a password the server then refuses. A page's own form (its CSRF
/// token) is needed; the answer is `{"accepted": bool, "problems": [..]}`, never stored.
pub async fn check(p: Posted) -> Response {
    use axum::response::IntoResponse;
    let login = p.get("user").trim().to_string();
    let new = p.get("new_password").to_string();
    let w = p.web;
    let mut res = match w.state.app.password_verdict(w.ctx.lang, &login, &new).await {
        Ok(problems) => {
            axum::Json(json!({ "accepted": problems.is_empty(), "problems": problems }))
                .into_response()
        }
        // The meter falls back to its own guess; submitting still runs the real check.
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    res
}

pub(crate) async fn required(w: Web, status: StatusCode, e: AppError, user: &str) -> Response {
    form(w, status, Some(e), user).await
}

async fn form(w: Web, status: StatusCode, error: Option<AppError>, user: &str) -> Response {
    // The general rules only: a user's own (an AD fine-grained policy) could reveal their
    // groups to whoever types their ID.
    let policy = w.state.app.password_policy_view(&w.ctx, None).await.ok();
    // The field the error is about, marked invalid: the current password when it was wrong,
    // the new one when it was refused or typed differently twice.
    let invalid = error.as_ref().and_then(|e| match e.kind {
        ErrorKind::Unauthorized => Some("current_password"),
        ErrorKind::PasswordRejected | ErrorKind::Invalid => Some("new_password"),
        _ => None,
    });
    w.page_status(
        status,
        "change.html",
        json!({
            "user": user,
            "policy": policy,
            "error": error.as_ref().map(|e| &e.message),
            "details": error.as_ref().map(|e| &e.details),
            "support_code": error.as_ref().and_then(|e| e.support_code.clone()),
            "retry_minutes": error.as_ref().and_then(retry_minutes),
            "invalid": invalid,
        }),
    )
}
