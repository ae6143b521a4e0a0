//! One user's account and registration; the registered users.

use super::*;

#[derive(Deserialize)]
pub struct UserParams {
    q: Option<String>,
}

pub async fn users_page(
    Gated(SignedInAdmin(s), mut w): Gated<SignedInAdmin>,
    q: Result<Query<UserParams>, QueryRejection>,
) -> Response {
    let q = q
        .ok()
        .and_then(|Query(p)| p.q)
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty());
    // What an invitation or an unblock just did (they redirect here).
    let extra = match w.take_notice() {
        Some((tag, text)) if tag == "invited" || tag == "unblocked" => json!({ tag: text }),
        _ => json!({}),
    };
    match q {
        Some(q) => user_lookup(w, &s, q, extra).await,
        None => registered_list(w, &s).await,
    }
}

/// The user's page, where a change made on it redirects (post/redirect/get: a reload must not
/// send a second invitation).
fn user_page_path(login: &str) -> String {
    let q = percent_encoding::utf8_percent_encode(login, percent_encoding::NON_ALPHANUMERIC);
    format!("/admin/users?q={q}")
}

/// `POST /admin/users/invite`: an invitation to set the first password, sent from the user's
/// page; the page again, saying where it went or why not.
pub async fn invite_post(Gated(SignedInAdmin(s), p): Gated<SignedInAdmin, Posted>) -> Response {
    let login = p.get("login").trim().to_string();
    let channel = sspr_app::ports::Channel::parse(p.get("channel"))
        .unwrap_or(sspr_app::ports::Channel::Email);
    let w = p.web;
    let app = w.state.app.clone();
    let actor = actor(&w, &s);
    let extra = match app.invite(&w.ctx, &actor, &login, channel).await {
        Ok(r) => {
            let sent = CATALOG.tr(
                w.lang(),
                "admin-invite-sent",
                &[
                    ("to", r.sent_to),
                    ("hours", (r.expires_in / 3600).to_string()),
                ],
            );
            return w.redirect_with_notice(&user_page_path(&login), "invited", &sent);
        }
        Err(e) => {
            let e = w.audited(e).await;
            json!({ "invite_error": e.message, "support_code": e.support_code })
        }
    };
    user_lookup(w, &s, login, extra).await
}

/// `POST /admin/users/unblock`: lifts sspr's self-service block and sign-in lockout on the
/// user; the page again, saying so.
pub async fn unblock_post(Gated(SignedInAdmin(s), p): Gated<SignedInAdmin, Posted>) -> Response {
    let login = p.get("login").trim().to_string();
    let w = p.web;
    let app = w.state.app.clone();
    let actor = actor(&w, &s);
    let found = match sspr_domain::identity::canonical_login(&login) {
        Some(l) => app.directory.find_user(&l).await.ok().flatten(),
        None => None,
    };
    let extra = match found {
        Some(u) => match app.unblock(&w.ctx, &actor, &u.id, &u.login).await {
            Ok(()) => {
                let done = w.tr("admin-unblocked");
                return w.redirect_with_notice(&user_page_path(&login), "unblocked", &done);
            }
            Err(e) => {
                let e = w.audited(e).await;
                json!({ "unblock_error": e.message, "support_code": e.support_code })
            }
        },
        None => json!({}),
    };
    user_lookup(w, &s, login, extra).await
}

pub(super) async fn user_lookup(
    mut w: Web,
    s: &SessionRecord,
    q: String,
    extra: Value,
) -> Response {
    let app = w.state.app.clone();
    let lang = w.lang();
    let not_found = |w: Web| {
        let msg = CATALOG.tr(lang, "admin-user-not-found", &[("q", q.clone())]);
        admin_page(
            w,
            s,
            StatusCode::NOT_FOUND,
            "users",
            json!({ "q": q, "not_found": msg }),
        )
    };
    let Some(login) = sspr_domain::identity::canonical_login(&q) else {
        return not_found(w);
    };
    let u = match app.directory.find_user(&login).await {
        Ok(Some(u)) => u,
        Ok(None) => return not_found(w),
        Err(e) => {
            tracing::error!(error = %e, login, "admin user look-up: directory failed");
            let e = AppError::new(ErrorKind::Directory, w.tr("admin-directory-error"))
                .with_log(e.to_string());
            let e = w.audited(e).await;
            let status = w.status_for(&e);
            return admin_page(
                w,
                s,
                status,
                "users",
                json!({ "q": q, "error": e.message, "support_code": e.support_code }),
            );
        }
    };
    let (registered, methods) = match app.registration_of(&u.id, &u.groups).await {
        Ok(r) => r,
        Err(e) => return w.fail(e).await,
    };
    let policy = match app.policy().await {
        Ok(p) => p,
        Err(e) => return w.fail(e).await,
    };
    let blocked_until = match app.self_service_blocked_until(&u.id).await {
        Ok(t) => t.map(sspr_domain::clock::rfc3339),
        Err(e) => return w.fail(e).await,
    };
    let methods: Vec<String> = methods
        .iter()
        .map(|m| method_label(lang, m.as_str()))
        .collect();
    let summary = json!({
        "blocked_until": blocked_until,
        "login": u.login,
        "display_name": u.display_name,
        "enabled": u.enabled,
        "locked": u.locked,
        "groups": u.groups,
        "in_scope": policy.in_scope(&u.groups),
        "privileged": policy.is_privileged(&u.groups),
        "registered": registered,
        "methods": methods,
    });
    admin_page(
        w,
        s,
        StatusCode::OK,
        "users",
        merge(json!({ "q": q, "user": summary }), extra),
    )
}

pub(super) async fn registered_list(w: Web, s: &SessionRecord) -> Response {
    let lang = w.lang();
    let ids = match w.state.app.store.registration_ids().await {
        Ok(ids) => ids,
        Err(e) => return w.fail(e.into()).await,
    };
    let total = ids.len();
    let mut rows = Vec::new();
    for id in ids.into_iter().take(LISTED_USERS) {
        let methods = match active_methods(&w, &id).await {
            Ok(m) => m,
            Err(e) => return w.fail(e).await,
        };
        let labels: Vec<String> = methods
            .iter()
            .map(|m| method_label(lang, m.as_str()))
            .collect();
        rows.push(json!({ "id": id, "methods": labels }));
    }
    admin_page(
        w,
        s,
        StatusCode::OK,
        "users",
        json!({ "q": "", "rows": rows, "total": total, "cap": LISTED_USERS }),
    )
}
