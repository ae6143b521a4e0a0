//! Who is asking, checked before a handler runs: each extractor here is one of the API's
//! `security` schemes (`flow`, `session`, `admin`), so a handler's signature says what it
//! requires and its body is only its own work.
//!
//! A rejection is an API error like any other: 401 with the JSON body and a support code that
//! finds its audit event. Extractors run before the body is read, so a request without its
//! token is unauthorised whatever its body.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use sspr_app::ports::SessionRecord;
use sspr_app::{AppError, ErrorKind};

use crate::State;
use crate::ctx::{bearer_token, ctx_from_parts};
use crate::respond::error;

/// The reset or unlock flow's bearer token. Only its presence is checked here: each flow
/// service looks the flow up itself, as part of its step.
pub struct FlowToken(pub String);

/// The registration session behind the bearer token: present, live and not expired.
pub struct SignedIn(pub SessionRecord);

/// A valid admin API token: its actor name for the audit log (`admin:<token name>` or
/// `helpdesk:<token name>`) and its role. (The admin pages' sessions are the portal's, in a
/// cookie.)
pub struct Admin(pub String, pub sspr_app::admin::StaffRole);

fn missing(what: &str) -> AppError {
    AppError::new(
        ErrorKind::Unauthorized,
        format!("Send the {what} as Authorization: Bearer <token>."),
    )
}

impl FromRequestParts<Arc<State>> for FlowToken {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Arc<State>) -> Result<Self, Response> {
        match bearer_token(parts) {
            Some(t) => Ok(FlowToken(t)),
            None => Err(error(s, &ctx_from_parts(parts, s), missing("flow token")).await),
        }
    }
}

impl FromRequestParts<Arc<State>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Arc<State>) -> Result<Self, Response> {
        let ctx = ctx_from_parts(parts, s);
        let session = match bearer_token(parts) {
            Some(t) => s.app.session(&ctx, &t).await,
            None => Err(missing("session token")),
        };
        match session {
            Ok(session) => Ok(SignedIn(session)),
            Err(e) => Err(error(s, &ctx, e).await),
        }
    }
}

impl FromRequestParts<Arc<State>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Arc<State>) -> Result<Self, Response> {
        let ctx = ctx_from_parts(parts, s);
        // The service audits a refused admin token itself (`admin_auth_failed`).
        match s.app.admin(&ctx, bearer_token(parts).as_deref()).await {
            Ok((actor, role)) => Ok(Admin(actor, role)),
            Err(e) => Err(error(s, &ctx, e).await),
        }
    }
}
