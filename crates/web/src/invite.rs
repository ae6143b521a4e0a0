//! An invitation link (`/invite/<token>`, sent by `sspr users invite` or the admin API): a page
//! that asks the user to go on, and the POST that turns the link into a flow at its password
//! step. Opening the link changes nothing, so a mail scanner that fetches it does not use it
//! up; only the button does, and the token then moves into the flow cookie.

use axum::extract::Path;
use axum::response::Response;
use serde_json::json;

use crate::web::{FLOW_COOKIE, Posted, Web, cookie};

/// GET /invite/{token}.
pub async fn page(w: Web, Path(token): Path<String>) -> Response {
    let app = w.state.app.clone();
    match app.invitation(&w.ctx, &token).await {
        Ok(r) => w.page(
            "invite.html",
            json!({ "token": token, "expires_in": r.expires_in }),
        ),
        Err(e) => w.fail(e).await,
    }
}

/// POST /invite: the token from the page's form.
pub async fn accept(p: Posted) -> Response {
    let token = p.get("token").to_string();
    let mut w = p.web;
    let app = w.state.app.clone();
    match app.invitation(&w.ctx, &token).await {
        Ok(r) => {
            w.set
                .push(cookie(FLOW_COOKIE, &token, r.expires_in.max(60) + 60));
            w.redirect("/flow")
        }
        Err(e) => w.fail(e).await,
    }
}
