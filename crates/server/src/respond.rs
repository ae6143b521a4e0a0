//! Turning service results into HTTP responses. Every error carries a support code that finds
//! its audit event; errors the services did not audit themselves are audited here.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sspr_app::{AppError, ErrorKind, RequestCtx};
use sspr_domain::audit::{Activity, Outcome};
use sspr_proto::ApiError;

use crate::State;

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid | ErrorKind::VerificationFailed => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden | ErrorKind::PasswordChangeRequired => StatusCode::FORBIDDEN,
        ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::PasswordRejected => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::DirectoryRefused => StatusCode::BAD_GATEWAY,
        ErrorKind::Directory | ErrorKind::Busy | ErrorKind::StoreUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub async fn reply<T: Serialize>(
    state: &State,
    ctx: &RequestCtx,
    r: Result<T, AppError>,
) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(state, ctx, e).await,
    }
}

pub async fn error(state: &State, ctx: &RequestCtx, e: AppError) -> Response {
    error_with_status(state, ctx, e, None).await
}

/// The error with a support code: one the service audited keeps its own; any other is
/// audited here as a refused request.
pub async fn audited(state: &State, ctx: &RequestCtx, e: AppError) -> AppError {
    let e = e.localized(ctx.lang);
    if e.support_code.is_some() {
        return e;
    }
    let mut ev = state
        .app
        .event(ctx, Activity::RequestRejected, Outcome::Failure);
    ev.reason = e.kind.code().into();
    if e.kind == ErrorKind::Internal {
        tracing::error!(cause = %e.log, "internal error");
    }
    state.app.fail(ev, e).await
}

/// `Retry-After` of a 429 or 503 whose failure does not know its own time (a busy or briefly
/// unreachable dependency). RFC 9110 §10.2.3: a client told "not now" should learn when. The
/// router's layer adds it; handlers set the failure's own time where it has one.
pub const DEFAULT_RETRY_SECS: i64 = 5;

/// Seconds to wait, as whole minutes for people (at least one).
pub fn retry_minutes(e: &AppError) -> Option<i64> {
    e.retry_after.map(|s| ((s + 59) / 60).max(1))
}

pub async fn error_with_status(
    state: &State,
    ctx: &RequestCtx,
    e: AppError,
    status: Option<StatusCode>,
) -> Response {
    let e = audited(state, ctx, e).await;
    let status = status.unwrap_or_else(|| status_of(e.kind));
    let body = ApiError {
        error: e.kind.code().into(),
        message: e.message.clone(),
        support_code: e.support_code.clone().unwrap_or_default(),
        details: e.details.clone(),
    };
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    resp
}
