//! Admin pages (in progress).

use std::sync::Arc;

use axum::Router;
use sspr_server::State;

pub fn routes() -> Router<Arc<State>> {
    Router::new()
}
