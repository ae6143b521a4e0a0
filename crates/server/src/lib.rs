//! sspr's HTTPS server: the JSON API under `/api/v1`, health endpoints and the OpenAPI
//! document, on rustls with TLS 1.2 and 1.3 only.
//!
//! Every response carries strict security headers (HSTS, no-store, nosniff, no framing, no
//! referrer); every request body is capped; shutdown drains in-flight requests.

pub mod auth;
pub mod conn;
pub mod ctx;
pub mod metrics;
pub mod respond;
pub mod routes;
pub mod siem;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::routing::{delete, get, post, put};
use ipnet::IpNet;
use sspr_app::App;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;

/// Largest accepted request body. The biggest legitimate one (a policy) is a few KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct State {
    pub app: Arc<App>,
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "sspr API", description = "Self-service password reset: reset and unlock flows, registration of security info, administration."),
    paths(
        routes::healthz, routes::readyz, routes::password_policy, routes::questions,
        routes::flow_start, routes::flow_status, routes::flow_challenge, routes::flow_verify, routes::flow_password, routes::flow_unlock,
        routes::change_password,
        routes::sign_in, routes::sign_out, routes::me, routes::add_email, routes::verify_email, routes::add_phone, routes::verify_phone,
        routes::set_questions, routes::enrol_totp, routes::verify_totp, routes::recovery_codes, routes::start_passkey, routes::finish_passkey, routes::remove_method, routes::reconfirm,
        routes::get_policy, routes::put_policy, routes::audit, routes::admin_user, routes::invite,
    ),
    modifiers(&BearerSchemes)
)]
pub struct ApiDoc;

struct BearerSchemes;

impl utoipa::Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let c = openapi.components.get_or_insert_with(Default::default);
        for name in ["flow", "session", "admin"] {
            c.add_security_scheme(
                name,
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}

/// The API alone.
pub fn router(state: Arc<State>) -> Router {
    router_with(state, Router::new(), Fallbacks::default())
}

/// What answers a request no route matches: by default the API's JSON errors. The web portal
/// puts its own pages here for paths outside `/api/` (and calls [`not_found`] and
/// [`method_not_allowed`] for the rest).
#[derive(Clone)]
pub struct Fallbacks {
    pub not_found: axum::routing::MethodRouter<Arc<State>>,
    pub method_not_allowed: axum::routing::MethodRouter<Arc<State>>,
}

impl Default for Fallbacks {
    fn default() -> Self {
        Self {
            not_found: axum::routing::any(not_found),
            method_not_allowed: axum::routing::any(method_not_allowed),
        }
    }
}

/// The API with `pages` (the web portal) beside it, under the same security headers, body
/// limit and timeout. Pages may set a `Content-Security-Policy` of their own; everything
/// else gets the API's `default-src 'none'`.
pub fn router_with(state: Arc<State>, pages: Router<Arc<State>>, fallbacks: Fallbacks) -> Router {
    let api = Router::new()
        .route("/password-policy", get(routes::password_policy))
        .route("/questions", get(routes::questions))
        .route("/flow/start", post(routes::flow_start))
        .route("/flow", get(routes::flow_status))
        .route("/flow/challenge", post(routes::flow_challenge))
        .route("/flow/verify", post(routes::flow_verify))
        .route("/flow/password", post(routes::flow_password))
        .route("/flow/unlock", post(routes::flow_unlock))
        .route("/password/change", post(routes::change_password))
        .route("/session", post(routes::sign_in).delete(routes::sign_out))
        .route("/me", get(routes::me))
        .route("/me/email", post(routes::add_email))
        .route("/me/email/verify", post(routes::verify_email))
        .route("/me/phone", post(routes::add_phone))
        .route("/me/phone/verify", post(routes::verify_phone))
        .route("/me/questions", put(routes::set_questions))
        .route("/me/totp", post(routes::enrol_totp))
        .route("/me/recovery-codes", post(routes::recovery_codes))
        .route("/me/passkeys", post(routes::start_passkey))
        .route("/me/passkeys/verify", post(routes::finish_passkey))
        .route("/me/totp/verify", post(routes::verify_totp))
        .route("/me/methods/{method}", delete(routes::remove_method))
        .route("/me/confirm", post(routes::reconfirm))
        .route(
            "/admin/policy",
            get(routes::get_policy).put(routes::put_policy),
        )
        .route("/admin/audit", get(routes::audit))
        .route("/admin/users/{login}", get(routes::admin_user))
        .route("/admin/invitations", post(routes::invite))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi_json()) }),
        );

    let h = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .nest("/api/v1", api)
        .merge(pages)
        .fallback_service(fallbacks.not_found.with_state(state.clone()))
        .method_not_allowed_fallback(fallbacks.method_not_allowed.with_state(state.clone()))
        .layer(axum::middleware::from_fn(measured))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(h(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ))
        // Everything but the versioned static files (which set their own) is never stored.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(h(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(h(header::X_FRAME_OPTIONS, "DENY"))
        .layer(h(header::REFERRER_POLICY, "no-referrer"))
        // Every 429 and 503 says when to come back, whichever path produced it; the handlers
        // set the real time where they know it.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::RETRY_AFTER,
            |r: &axum::response::Response| {
                matches!(
                    r.status(),
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                )
                .then(|| HeaderValue::from(respond::DEFAULT_RETRY_SECS))
            },
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        ))
        .layer(h(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ))
        .layer(h(
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

/// Times each request into `sspr_http_request_duration_seconds`, under its route's template
/// (so `/admin/users/alice` is `/api/v1/admin/users/{login}`: no series per user).
async fn measured(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    sspr_app::metrics::metrics().http(route, method, res.status().as_u16(), started.elapsed());
    res
}

pub async fn not_found(
    axum::extract::State(s): axum::extract::State<Arc<State>>,
    ctx::Ctx(ctx): ctx::Ctx,
) -> axum::response::Response {
    let e = sspr_app::AppError::new(
        sspr_app::ErrorKind::Invalid,
        "No such endpoint. The API lives under /api/v1; see /api/v1/openapi.json.",
    );
    respond::error_with_status(&s, &ctx, e, Some(axum::http::StatusCode::NOT_FOUND)).await
}

pub async fn method_not_allowed(
    axum::extract::State(s): axum::extract::State<Arc<State>>,
    ctx::Ctx(ctx): ctx::Ctx,
) -> axum::response::Response {
    let e = sspr_app::AppError::new(
        sspr_app::ErrorKind::Invalid,
        "This endpoint does not accept that HTTP method; see /api/v1/openapi.json.",
    );
    respond::error_with_status(
        &s,
        &ctx,
        e,
        Some(axum::http::StatusCode::METHOD_NOT_ALLOWED),
    )
    .await
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then drains in-flight
/// requests for up to 10 seconds.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: conn::ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    conn::defer_accept(&listener, limits.defer_accept);
    let handshake = limits.handshake;
    let router = conn::shedding(router, limits.requests);
    let gate = conn::Gate::new(limits.fitted_to_the_fd_limit());
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    let mut server = axum_server::tls_rustls::from_tcp_rustls(listener, config)?
        .handle(handle)
        .map(|tls| conn::Capped {
            // Without TCP_NODELAY a response written in two parts waits for the client's
            // delayed ACK (~40 ms) before its second part leaves.
            inner: tls
                .handshake_timeout(handshake)
                .acceptor(axum_server::accept::NoDelayAcceptor::new()),
            gate,
        })
        // After the handshake, the first request must arrive whole within this time...
        .first_request_timeout(Duration::from_secs(10));
    // ...and so must every later one's headers, idle keep-alive included.
    server
        .http_builder()
        .http1()
        .header_read_timeout(Duration::from_secs(10));
    server
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
