//! The admin pages: sign-in with a directory account that is a member of one of
//! `web.admin_groups`, usage and insights, the policy editor (with a preview of what users
//! will see), user look-up and the audit log with its CSV / JSON export.
//!
//! Every page reads the admin session from its cookie on every request. Without one, a GET
//! page shows the sign-in form (which brings the admin back to the page after signing in)
//! and a form POST gets a 401 error page. Forms take [`Posted`], so every one is
//! CSRF-checked; the filter forms (insights period, user search, audit filters) are GETs that
//! change nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sspr_app::admin::{AdminSignIn, StaffRole};
use sspr_app::insights::{self, Insights};
use sspr_app::ports::{AuditFilter, SessionRecord};
use sspr_app::{AppError, ErrorKind, Lang};
use sspr_domain::audit::{Activity, ClientType};
use sspr_domain::clock::UnixTime;
use sspr_domain::policy::CustomQuestion;
use sspr_domain::{Method, PasswordRules, Policy, Rejection, Scope};
use sspr_server::State;
use sspr_server::routes::{AuditParams, audit_filter, event_dto, events_csv};

use crate::charts;
use crate::i18n::CATALOG;
use crate::web::{ADMIN_COOKIE, Gate, Gated, Posted, SESSION_COOKIE, Web, cookie};

mod audit;
mod expiry;
mod insights_page;
mod policy;
mod users;

use audit::*;
use expiry::*;
use insights_page::*;
use policy::*;
use users::*;

/// How long the admin cookie lives; the service ends the session after an hour at most.
const SESSION_SECS: i64 = sspr_app::admin::ADMIN_SESSION_SECS;
/// Events read for the insights page; more than this and the figures say they are partial.
const INSIGHT_EVENTS: u32 = 100_000;
/// Registered users read for the insights page.
const INSIGHT_USERS: usize = 10_000;
/// Users listed on the users page without a search.
const LISTED_USERS: usize = 200;
/// Events shown on the audit page.
const AUDIT_ROWS: u32 = 200;
/// Events in an export.
const EXPORT_ROWS: u32 = 100_000;
/// The periods the insights page offers, in days.
const PERIODS: [u32; 3] = [7, 30, 90];
const DEFAULT_PERIOD: u32 = 30;
const DAY: i64 = 86_400;

/// The pages an admin may be sent back to after signing in.
const PAGES: [&str; 5] = [
    "/admin/insights",
    "/admin/policy",
    "/admin/users",
    "/admin/audit",
    "/admin/expiry",
];

pub fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/sign-in", post(sign_in))
        .route("/admin/sign-out", post(sign_out))
        .route("/admin/insights", get(insights_page))
        .route("/admin/policy", get(policy_page).post(policy_post))
        .route("/admin/users", get(users_page))
        .route("/admin/users/invite", post(invite_post))
        .route("/admin/users/unblock", post(unblock_post))
        .route("/admin/audit", get(audit_page))
        .route("/admin/expiry", get(expiry_page))
        .route("/admin/audit/export", get(audit_export))
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// The admin behind the session cookie, if any. A cookie that names no live session is
/// deleted.
async fn session_of(w: &mut Web) -> Result<Option<SessionRecord>, AppError> {
    let Some(token) = w.cookie(ADMIN_COOKIE).map(str::to_string) else {
        return Ok(None);
    };
    let s = w.state.app.admin_session(&token).await?;
    if s.is_none() {
        w.set.push(cookie(ADMIN_COOKIE, "", 0));
    }
    Ok(s)
}

/// The signed-in admin. Without a live session a page answers with the sign-in form (401)
/// that comes back to it, and a form with a 401 error page.
pub struct SignedInAdmin(pub SessionRecord);

impl Gate for SignedInAdmin {
    async fn check(mut w: Web, form: bool) -> Result<(Web, Self), Response> {
        match session_of(&mut w).await {
            Ok(Some(s)) => Ok((w, SignedInAdmin(s))),
            Ok(None) if form => {
                let e = AppError::new(ErrorKind::Unauthorized, w.tr("admin-session-ended"));
                Err(w.fail(e).await)
            }
            Ok(None) => {
                // The export is a download, not a page: signing in comes back to its filters.
                let here = match w.path.as_str() {
                    "/admin/audit/export" => "/admin/audit".to_string(),
                    p => p.to_string(),
                };
                Err(signin_page(w, StatusCode::UNAUTHORIZED, &here, None, ""))
            }
            Err(e) => Err(w.fail(e).await),
        }
    }
}

/// A member of `web.admin_groups`, for what only administrators do (the policy). A member of
/// the helpdesk gets 403, and the attempt is audited under their name.
pub struct AdminOnly(pub SessionRecord);

impl Gate for AdminOnly {
    async fn check(w: Web, form: bool) -> Result<(Web, Self), Response> {
        let (w, SignedInAdmin(s)) = SignedInAdmin::check(w, form).await?;
        let role = w
            .state
            .app
            .staff_role(&s.groups)
            .unwrap_or(StaffRole::Helpdesk);
        let app = w.state.app.clone();
        match app.admin_only(&w.ctx, &actor(&w, &s), role, &w.path).await {
            Ok(()) => Ok((w, AdminOnly(s))),
            Err(e) => Err(w.error(e)),
        }
    }
}

/// The audit log's actor for what `s` does: `admin:LOGIN` or `helpdesk:LOGIN`.
fn actor(w: &Web, s: &SessionRecord) -> String {
    w.state
        .app
        .staff_role(&s.groups)
        .unwrap_or(StaffRole::Helpdesk)
        .actor(&s.login)
}

/// One of [`PAGES`]; anything else (an absolute URL, another site) becomes the first.
fn next_page(asked: &str) -> &'static str {
    PAGES
        .iter()
        .find(|p| **p == asked)
        .copied()
        .unwrap_or(PAGES[0])
}

fn signin_page(
    w: Web,
    status: StatusCode,
    next: &str,
    error: Option<AppError>,
    user: &str,
) -> Response {
    let retry = error.as_ref().and_then(sspr_server::respond::retry_minutes);
    w.page_status(
        status,
        "admin_signin.html",
        json!({
            "next": next_page(next),
            "user": user,
            "error": error.as_ref().map(|e| &e.message),
            "support_code": error.as_ref().and_then(|e| e.support_code.clone()),
            "retry_minutes": retry,
        }),
    )
}

/// What every signed-in page gets besides its own data: the nav's active item and who is
/// signed in.
#[derive(Serialize)]
struct AdminPage<T: Serialize> {
    active: &'static str,
    admin: String,
    /// The helpdesk's pages: no policy link.
    helpdesk: bool,
    #[serde(flatten)]
    data: T,
}

fn admin_page(
    w: Web,
    s: &SessionRecord,
    status: StatusCode,
    active: &'static str,
    data: impl Serialize,
) -> Response {
    let admin = if s.display_name.trim().is_empty() {
        s.login.clone()
    } else {
        format!("{} ({})", s.display_name, s.login)
    };
    let helpdesk = w.state.app.staff_role(&s.groups) != Some(StaffRole::Admin);
    w.page_status(
        status,
        &format!("admin_{active}.html"),
        AdminPage {
            active,
            admin,
            helpdesk,
            data,
        },
    )
}

/// `GET /admin`: to the insights when signed in, else the sign-in form.
pub async fn index(mut w: Web) -> Response {
    match session_of(&mut w).await {
        Ok(Some(_)) => w.redirect(PAGES[0]),
        Ok(None) => signin_page(w, StatusCode::OK, PAGES[0], None, ""),
        Err(e) => w.fail(e).await,
    }
}

pub async fn sign_in(p: Posted) -> Response {
    let user = p.get("user").trim().to_string();
    let password = p.get("password").to_string();
    let next = next_page(p.get("next"));
    let mut w = p.web;
    let app = w.state.app.clone();
    let register_secs = app.settings.limits.session_ttl_secs.max(60);
    match app.admin_sign_in(&w.ctx, &user, &password).await {
        Ok(AdminSignIn::Admin(token)) => {
            w.set.push(cookie(ADMIN_COOKIE, &token, SESSION_SECS));
            w.redirect(next)
        }
        // Asked to register first: "Register now" is a link to the registration page, on the
        // session opened beside the admin one; "Not now" a link to where they were going.
        Ok(AdminSignIn::AskedToRegister {
            admin,
            register,
            left,
        }) => {
            w.set.push(cookie(ADMIN_COOKIE, &admin, SESSION_SECS));
            w.set.push(cookie(SESSION_COOKIE, &register, register_secs));
            w.page(
                "admin_register.html",
                json!({ "next": next, "left": left, "required": false }),
            )
        }
        Ok(AdminSignIn::MustRegister { register }) => {
            w.set.push(cookie(SESSION_COOKIE, &register, register_secs));
            w.page_status(
                StatusCode::FORBIDDEN,
                "admin_register.html",
                json!({ "next": next, "left": 0, "required": true }),
            )
        }
        Err(e) => {
            let e = w.audited(e).await;
            let status = w.status_for(&e);
            if e.kind == sspr_app::ErrorKind::PasswordChangeRequired {
                return crate::change::required(w, status, e, &user).await;
            }
            signin_page(w, status, next, Some(e), &user)
        }
    }
}

pub async fn sign_out(p: Posted) -> Response {
    let mut w = p.web;
    if let Some(token) = w.cookie(ADMIN_COOKIE).map(str::to_string)
        && let Err(e) = w.state.app.admin_sign_out(&token).await
    {
        tracing::warn!(error = %e.log, "could not end an admin session");
    }
    w.set.push(cookie(ADMIN_COOKIE, "", 0));
    w.redirect("/")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::render::render;

    use sspr_domain::AuditEvent;
    use sspr_domain::audit::Outcome;

    /// 2024-03-10T12:00:00Z.
    const TODAY_NOON: i64 = 1_710_072_000;

    fn form(p: &Policy) -> HashMap<String, String> {
        policy_form(p)
    }

    #[test]
    fn the_form_of_a_policy_reads_back_as_the_same_policy() {
        let p = Policy {
            scope: Scope::Groups,
            groups: vec!["staff".into(), "students".into()],
            methods: vec![Method::Totp, Method::Email],
            methods_required: 2,
            custom_questions: vec![
                CustomQuestion {
                    id: "c1".into(),
                    text: "First street?".into(),
                },
                CustomQuestion {
                    id: "c3".into(),
                    text: "First car?".into(),
                },
            ],
            admin_notify: vec!["it@example.com".into()],
            allow_unlock: false,
            password: PasswordRules {
                banned_words: vec!["acme".into(), "winter".into()],
                min_character_classes: 2,
                organisation: "Acme".into(),
                ..PasswordRules::default()
            },
            ..Policy::default()
        };
        assert_eq!(parse_policy(&form(&p), &p, Lang::En), Ok(p.clone()));
        let d = Policy::default();
        assert_eq!(parse_policy(&form(&d), &d, Lang::En), Ok(d));
    }

    #[test]
    fn bad_numbers_name_their_field() {
        let p = Policy::default();
        let mut f = form(&p);
        f.insert("questions_to_register".into(), "three".into());
        f.insert("reconfirm_days".into(), "99999999".into());
        f.insert("pw_min_length".into(), "".into());
        f.insert("methods_required".into(), "-1".into());
        let e = parse_policy(&f, &p, Lang::En).unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
        let label = CATALOG.tr(Lang::En, "admin-pol-q-register", &[]);
        assert!(
            e.iter()
                .any(|m| m.field == "questions_to_register" && m.text.contains(&label)),
            "{e:?}"
        );
        let label = CATALOG.tr(Lang::En, "admin-pol-reconfirm", &[]);
        assert!(
            e.iter().any(|m| m.field == "reconfirm_days"
                && m.text.contains(&label)
                && m.text.contains("too large")),
            "{e:?}"
        );
        let e = parse_policy(&f, &p, Lang::Zh).unwrap_err();
        assert!(e.iter().all(|m| !m.text.contains("whole number")), "{e:?}");
        f.insert("scope".into(), "everyone".into());
        f.insert("pw_max_length".into(), "1e9".into());
        assert_eq!(parse_policy(&f, &p, Lang::En).unwrap_err().len(), 6);
    }

    #[test]
    fn methods_keep_their_saved_order() {
        let saved = Policy {
            methods: vec![Method::Email, Method::Sms, Method::Totp, Method::Questions],
            ..Policy::default()
        };
        let mut f = form(&saved);
        f.remove("m_sms");
        let p = parse_policy(&f, &saved, Lang::En).unwrap();
        assert_eq!(p.methods, [Method::Email, Method::Totp, Method::Questions]);
        let mut f = form(&p);
        f.insert("m_sms".into(), "on".into());
        f.insert("m_passkey".into(), "on".into());
        let p = parse_policy(&f, &p, Lang::En).unwrap();
        assert_eq!(
            p.methods,
            [
                Method::Email,
                Method::Totp,
                Method::Questions,
                Method::Sms,
                Method::Passkey
            ]
        );
    }

    #[test]
    fn custom_questions_keep_their_ids() {
        let saved = custom_questions("A?\nB?\nC?\n", &[]);
        let ids: Vec<_> = saved.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2", "c3"]);
        // Removing B and adding D: C stays c3, D gets a new id, B's c2 is not reused.
        let next = custom_questions("A?\r\n  \nC?\nD?", &saved);
        let got: Vec<_> = next
            .iter()
            .map(|q| (q.id.as_str(), q.text.as_str()))
            .collect();
        assert_eq!(got, [("c1", "A?"), ("c3", "C?"), ("c4", "D?")]);
        // The same text twice gets two ids.
        let twice = custom_questions("A?\nA?", &saved);
        assert_eq!(twice[0].id, "c1");
        assert_eq!(twice[1].id, "c4");
    }

    #[test]
    fn preview_says_what_privileged_users_get() {
        let p = Policy {
            methods: vec![Method::Email, Method::Questions],
            questions_alone: true,
            ..Policy::default()
        };
        let v = preview(&p, Lang::En, vec!["From the directory.".into()]);
        assert_eq!(v["standard"]["required"], 1);
        assert_eq!(v["standard"]["questions"], true);
        let not_alone = Policy {
            questions_alone: false,
            ..p.clone()
        };
        let w = preview(&not_alone, Lang::En, Vec::new());
        assert_eq!(w["standard"]["questions"], false, "not offered alone");
        assert_eq!(v["privileged"]["required"], 2);
        assert_eq!(v["privileged"]["questions"], false);
        assert_eq!(v["privileged"]["stuck"], true);
        assert_eq!(v["privileged_group"], "admins");
        let rules = v["rules"].as_array().unwrap();
        assert!(rules[0].as_str().unwrap().contains("15"), "{rules:?}");
        assert_eq!(rules.last().unwrap(), "From the directory.");
        let none = Policy {
            privileged_groups: vec![],
            ..Policy::default()
        };
        assert!(preview(&none, Lang::Zh, vec![])["privileged"].is_null());
    }

    #[test]
    fn helpers() {
        assert_eq!(next_page("/admin/audit"), "/admin/audit");
        assert_eq!(next_page("https://evil.example/"), "/admin/insights");
        assert_eq!(next_page("//evil.example/admin/audit"), "/admin/insights");
        assert_eq!(period(Some("7")), 7);
        assert_eq!(period(Some("8")), 30);
        assert_eq!(period(None), 30);
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(percent_encode("a b&c=ü"), "a%20b%26c%3D%C3%BC");
        let mut p: AuditParams =
            serde_json::from_value(json!({ "since": " ", "user": " ann ", "format": "csv" }))
                .unwrap();
        normalise(&mut p);
        assert_eq!(p.since, None);
        assert_eq!(p.user.as_deref(), Some("ann"));
        assert_eq!(query_string(&filter_fields(&p)), "user=ann");
    }

    fn page(name: &str, data: Value) -> String {
        let base = json!({
            "lang": "en", "csrf": "CSRFTOKEN", "org": "Acme", "path": "/admin/x",
            "active": name.trim_start_matches("admin_").trim_end_matches(".html"),
            "admin": "Ann (ann)",
        });
        let resp = render(
            StatusCode::OK,
            name,
            minijinja::Value::from_serialize(merge(base, data)),
        );
        assert_eq!(resp.status(), StatusCode::OK, "{name} failed to render");
        let body = resp.into_body();
        let bytes = futures_body(body);
        let html = String::from_utf8(bytes).unwrap();
        assert!(!html.contains("style="), "{name}: inline style");
        assert!(!html.contains("<script>"), "{name}: inline script");
        html
    }

    fn futures_body(body: axum::body::Body) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap()
                .to_vec()
        })
    }

    fn assert_ids(html: &str, ids: &[&str]) {
        for id in ids {
            assert!(html.contains(&format!("id=\"{id}\"")), "missing #{id}");
        }
    }

    const NAV: [&str; 5] = [
        "nav-insights",
        "nav-policy",
        "nav-users",
        "nav-audit",
        "admin-sign-out",
    ];

    #[test]
    fn pages_render_with_their_ids() {
        let html = page(
            "admin_signin.html",
            json!({ "next": "/admin/insights", "user": "", "error": "Wrong", "support_code": "AB12", "admin": null }),
        );
        assert_ids(
            &html,
            &["admin-user", "admin-password", "admin-sign-in", "error"],
        );
        assert!(html.contains("value=\"CSRFTOKEN\""));
        assert!(!html.contains("nav-insights"));

        let t = TODAY_NOON - 3600;
        let mut blocked = AuditEvent::new(t, Activity::BlockedFromReset, Outcome::Failure);
        blocked.target = "<bob>".into();
        blocked.reason = "blocked".into();
        let mut reset = AuditEvent::new(t, Activity::ResetPassword, Outcome::Success);
        reset.flow_id = Some("f".into());
        let regs = [("ann".to_string(), vec![Method::Email, Method::Totp])];
        let ins = insights::compute(&[blocked, reset], &regs, TODAY_NOON, 7);
        let mut data = insights_view(Lang::Zh, &ins, 7);
        data["events_capped"] = json!(true);
        let html = page("admin_insights.html", data);
        assert_ids(&html, &NAV);
        assert_ids(&html, &["chart-days", "blocked-table"]);
        assert!(html.contains("&lt;bob&gt;"), "escaped");
        assert!(html.contains("2024-03-10 11:00:00 UTC"), "{html}");
        assert!(html.contains("lang=\"en\""), "the test page is English");
        assert!(
            html.contains("身份验证器应用"),
            "chart labels in the view's language"
        );
        assert!(html.contains("<svg "), "svg not escaped");
        assert!(html.contains("aria-current=\"page\""));

        let view = policy_view(policy_form(&Policy::default()));
        let mut data = serde_json::to_value(view).unwrap();
        data["preview"] = preview(&Policy::default(), Lang::En, vec![]);
        data["saved"] = json!(true);
        let html = page("admin_policy.html", data);
        assert_ids(&html, &NAV);
        assert_ids(
            &html,
            &[
                "policy-form",
                "preview",
                "save",
                "preview-result",
                "policy-saved",
            ],
        );
        assert!(html.contains("name=\"csrf\" value=\"CSRFTOKEN\""));

        let html = page(
            "admin_users.html",
            json!({ "q": "ann", "user": { "login": "ann", "display_name": "Ann", "enabled": true,
                "locked": false, "groups": ["staff"], "in_scope": true, "privileged": false,
                "registered": true, "methods": ["email"] } }),
        );
        assert_ids(&html, &NAV);
        assert_ids(&html, &["user-q", "user-search", "user-summary"]);
        let html = page(
            "admin_users.html",
            json!({ "q": "", "rows": [{ "id": "ann", "methods": ["email"] }], "total": 1, "cap": 200 }),
        );
        assert!(html.contains(">ann<"));

        let html = page(
            "admin_audit.html",
            json!({ "f": { "user": "ann" }, "qs": "user=ann", "activities": ["reset_started"],
                "clients": ["browser"], "cap": 200, "events": [{ "id": 1, "time": "2024-01-01T00:00:00Z",
                "activity": "reset_started", "actor": "ann", "target": "ann", "client_ip": "::1",
                "client_type": "browser", "result": "success", "reason": "", "details": null }] }),
        );
        assert_ids(&html, &NAV);
        assert_ids(&html, &["audit-table", "export-csv", "export-json"]);
        assert!(html.contains("/admin/audit/export?format=csv&amp;user=ann"));
    }

    #[test]
    fn dynamic_keys_exist() {
        let en = crate::i18n::keys(crate::i18n::EN);
        let mut want: Vec<String> = Vec::new();
        want.extend(
            ClientType::ALL
                .iter()
                .map(|c| format!("admin-client-{}", c.as_str())),
        );
        want.extend(["success", "failure"].map(|r| format!("admin-result-{r}")));
        want.extend(["all", "groups", "none"].map(|s| format!("admin-pol-scope-{s}")));
        want.extend(["1", "2"].map(|n| format!("admin-pol-methods-required-{n}")));
        want.extend(NUMBER_FIELDS.iter().map(|(_, k)| k.to_string()));
        for k in want {
            assert!(en.contains(&k), "missing {k}");
        }
    }
}
