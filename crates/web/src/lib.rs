//! sspr's web portal: server-rendered pages for users (reset, unlock, registration of
//! security info) and administrators (policy, users, audit, insights).
//!
//! The pages call the same services as the JSON API, in the same process. They work without
//! JavaScript except for the browser check before a reset (a proof of work) and the password
//! strength meter; both scripts are files under `/static`, since the CSP forbids inline code.

pub mod admin;
pub mod assets;
pub mod change;
pub mod charts;
pub mod form;
pub mod i18n;
pub mod invite;
pub mod pages;
pub mod register;
pub mod render;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use sspr_server::State;
use tower_http::set_header::SetResponseHeaderLayer;

/// Every page route, for the security-header and CSRF test: (method, path).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/reset"),
    ("GET", "/unlock"),
    ("POST", "/start"),
    ("GET", "/flow"),
    ("POST", "/flow/challenge"),
    ("GET", "/flow/verify"),
    ("POST", "/flow/verify"),
    ("POST", "/flow/password"),
    ("POST", "/flow/unlock"),
    ("POST", "/flow/cancel"),
    ("GET", "/change"),
    ("POST", "/change"),
    ("GET", "/invite/not-an-invitation"),
    ("POST", "/invite"),
    ("GET", "/register"),
    ("POST", "/register/sign-in"),
    ("POST", "/register/sign-out"),
    ("POST", "/register/email"),
    ("POST", "/register/email/verify"),
    ("POST", "/register/phone"),
    ("POST", "/register/phone/verify"),
    ("GET", "/register/questions"),
    ("POST", "/register/questions"),
    ("POST", "/register/totp"),
    ("POST", "/register/totp/verify"),
    ("POST", "/register/recovery-codes"),
    ("POST", "/register/passkey"),
    ("POST", "/register/passkey/verify"),
    ("POST", "/register/remove"),
    ("POST", "/register/confirm"),
    ("GET", "/admin"),
    ("POST", "/admin/sign-in"),
    ("POST", "/admin/sign-out"),
    ("GET", "/admin/insights"),
    ("GET", "/admin/policy"),
    ("POST", "/admin/policy"),
    ("GET", "/admin/users"),
    ("POST", "/admin/users/invite"),
    ("POST", "/admin/users/unblock"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/audit/export"),
    ("GET", "/admin/expiry"),
];

/// The portal's answers to unknown paths and wrong methods (JSON still for `/api/`).
pub fn fallbacks() -> sspr_server::Fallbacks {
    sspr_server::Fallbacks {
        not_found: axum::routing::any(pages::not_found),
        method_not_allowed: axum::routing::any(pages::method_not_allowed),
    }
}

/// The portal's routes, to be merged beside the API by [`sspr_server::router_with`].
pub fn routes() -> Router<Arc<State>> {
    let pages = Router::new()
        .route("/", get(pages::home))
        .route("/reset", get(pages::reset))
        .route("/unlock", get(pages::unlock))
        .route("/start", post(pages::start))
        .route("/flow", get(pages::flow))
        .route("/flow/challenge", post(pages::challenge))
        .route("/flow/verify", get(pages::verify_page).post(pages::verify))
        .route("/flow/password", post(pages::password))
        .route("/flow/unlock", post(pages::do_unlock))
        .route("/flow/cancel", post(pages::cancel))
        .route("/change", get(change::page).post(change::submit))
        .route("/password/check", post(change::check))
        .route("/invite/{token}", get(invite::page))
        .route("/invite", post(invite::accept))
        .merge(register::routes())
        .merge(admin::routes())
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(web::PAGE_CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-robots-tag"),
            HeaderValue::from_static("noindex"),
        ));
    // Only the static files are compressed: a page holds a CSRF token beside text the request
    // chose, and compressing both together would leak the token to BREACH.
    let assets = Router::new()
        .route("/static/{file}", get(assets::serve))
        .layer(tower_http::compression::CompressionLayer::new());
    Router::new().merge(assets).merge(pages)
}
