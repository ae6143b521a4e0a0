//! The metrics listener: `GET /metrics` in the Prometheus (OpenMetrics) text format, over
//! plain HTTP on an address of its own (`[metrics] listen`), so that Prometheus scrapes it from
//! the monitoring network and the portal's address never serves it. With a token file, a
//! scrape must bring `Authorization: Bearer <token>` (Prometheus: `authorization:
//! credentials_file`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sspr_app::App;
use sspr_app::metrics::{CONTENT_TYPE, encode};
use subtle::ConstantTimeEq;

/// The store's backlog query must not hold a scrape (Prometheus times out at 10 s).
const BACKLOG_DEADLINE: Duration = Duration::from_secs(2);

struct Scrape {
    app: Arc<App>,
    token: Option<String>,
}

/// `GET /metrics`, and 404 for anything else.
pub fn router(app: Arc<App>, token: Option<String>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(Scrape { app, token }))
}

async fn scrape(State(s): State<Arc<Scrape>>, headers: HeaderMap) -> Response {
    if let Some(token) = &s.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required (metrics.token_file)\n",
            )
                .into_response();
        }
    }
    let now = s.app.now();
    let backlog = match tokio::time::timeout(BACKLOG_DEADLINE, s.app.store.outbox_backlog()).await {
        Ok(Ok((waiting, oldest))) => Some((waiting, oldest.map_or(0, |t| now - t))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: cannot read the outbox backlog");
            None
        }
        Err(_) => {
            tracing::warn!("metrics: the outbox backlog query timed out");
            None
        }
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(backlog)).into_response()
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app, token))
        .with_graceful_shutdown(shutdown)
        .await
}
