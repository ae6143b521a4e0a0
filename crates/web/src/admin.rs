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
use crate::web::{ADMIN_COOKIE, Gate, Gated, Posted, Web, cookie};

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
const PAGES: [&str; 4] = [
    "/admin/insights",
    "/admin/policy",
    "/admin/users",
    "/admin/audit",
];

pub fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/sign-in", post(sign_in))
        .route("/admin/sign-out", post(sign_out))
        .route("/admin/insights", get(insights_page))
        .route("/admin/policy", get(policy_page).post(policy_post))
        .route("/admin/users", get(users_page))
        .route("/admin/audit", get(audit_page))
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
    w.page_status(
        status,
        &format!("admin_{active}.html"),
        AdminPage {
            active,
            admin,
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
    match app.admin_sign_in(&w.ctx, &user, &password).await {
        Ok(token) => {
            w.set.push(cookie(ADMIN_COOKIE, &token, SESSION_SECS));
            w.redirect(next)
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

// ---------------------------------------------------------------------------------------------
// Insights

#[derive(Deserialize)]
pub struct InsightsParams {
    days: Option<String>,
}

fn period(asked: Option<&str>) -> u32 {
    asked
        .and_then(|d| d.trim().parse().ok())
        .filter(|d| PERIODS.contains(d))
        .unwrap_or(DEFAULT_PERIOD)
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(t: UnixTime) -> String {
    let s = sspr_domain::clock::rfc3339(t);
    format!("{} UTC", s.trim_end_matches('Z').replacen('T', " ", 1))
}

/// A method's name in the page's language; names the portal does not know stay as logged.
fn method_label(lang: Lang, name: &str) -> String {
    match Method::parse(name) {
        Some(m) => CATALOG.tr(lang, &format!("method-{}", m.as_str()), &[]),
        None => name.to_string(),
    }
}

/// Each registered user with their active methods (at most [`INSIGHT_USERS`]), and whether
/// there were more.
async fn registrations(w: &Web) -> Result<(Vec<(String, Vec<Method>)>, bool), AppError> {
    let store = &w.state.app.store;
    let ids = store.registration_ids().await?;
    let capped = ids.len() > INSIGHT_USERS;
    let mut out = Vec::with_capacity(ids.len().min(INSIGHT_USERS));
    for id in ids.into_iter().take(INSIGHT_USERS) {
        let methods = active_methods(w, &id).await?;
        out.push((id, methods));
    }
    Ok((out, capped))
}

async fn active_methods(w: &Web, user_id: &str) -> Result<Vec<Method>, AppError> {
    w.state.app.active_methods(user_id).await
}

pub async fn insights_page(
    Gated(SignedInAdmin(s), w): Gated<SignedInAdmin>,
    q: Result<Query<InsightsParams>, QueryRejection>,
) -> Response {
    let days = period(q.ok().and_then(|Query(q)| q.days).as_deref());
    let app = w.state.app.clone();
    let now = app.now();
    // A day before the window too, so a flow that began the evening before is known as a
    // reset or an unlock.
    let since = (now.div_euclid(DAY) - i64::from(days)) * DAY;
    let filter = AuditFilter {
        since: Some(since),
        limit: INSIGHT_EVENTS,
        ..AuditFilter::default()
    };
    let events = match app.audit_events(&filter).await {
        Ok(e) => e,
        Err(e) => return w.fail(e).await,
    };
    let (regs, users_capped) = match registrations(&w).await {
        Ok(r) => r,
        Err(e) => return w.fail(e).await,
    };
    let ins = insights::compute(&events, &regs, now, days);
    let data = merge(
        insights_view(w.lang(), &ins, days),
        json!({
            "events_capped": events.len() >= INSIGHT_EVENTS as usize,
            "users_capped": users_capped,
        }),
    );
    admin_page(w, &s, StatusCode::OK, "insights", data)
}

fn insights_view(lang: Lang, ins: &Insights, days: u32) -> Value {
    let labels: Vec<String> = ins.days.iter().map(|d| d.day.clone()).collect();
    let ok = CATALOG.tr(lang, "admin-succeeded", &[]);
    let failed = CATALOG.tr(lang, "admin-failed", &[]);
    let per_day = |f: fn(&insights::DayRow) -> u32| ins.days.iter().map(f).collect::<Vec<u32>>();
    let resets = charts::stacked_bars(
        &CATALOG.tr(lang, "admin-chart-resets", &[]),
        &labels,
        &[
            (&ok, "s-ok", per_day(|d| d.resets_ok)),
            (&failed, "s-bad", per_day(|d| d.resets_failed)),
        ],
    );
    let unlocks = charts::stacked_bars(
        &CATALOG.tr(lang, "admin-chart-unlocks", &[]),
        &labels,
        &[
            (&ok, "s-ok", per_day(|d| d.unlocks_ok)),
            (&failed, "s-bad", per_day(|d| d.unlocks_failed)),
        ],
    );
    let reg_rows: Vec<(String, u32)> = ins
        .registrations_by_method
        .iter()
        .map(|(m, n)| (method_label(lang, m), *n))
        .collect();
    let registrations = charts::hbars(
        &CATALOG.tr(lang, "admin-chart-registrations", &[]),
        &reg_rows,
    );
    let mut verif_rows = Vec::new();
    for (m, passed, failed) in &ins.by_method {
        let method = method_label(lang, m);
        verif_rows.push((
            CATALOG.tr(lang, "admin-verif-ok-row", &[("method", method.clone())]),
            *passed,
        ));
        verif_rows.push((
            CATALOG.tr(lang, "admin-verif-failed-row", &[("method", method)]),
            *failed,
        ));
    }
    let verifications = charts::hbars(
        &CATALOG.tr(lang, "admin-chart-verifications", &[]),
        &verif_rows,
    );
    let blocked: Vec<Value> = ins
        .blocked
        .iter()
        .map(|b| {
            json!({
                "target": b.target,
                "count": b.count,
                "last": utc(b.last_at),
                "activity": b.last_activity.as_str(),
                "reason": b.last_reason,
            })
        })
        .collect();
    let by_client: Vec<Value> = ins
        .by_client
        .iter()
        .map(|(c, n)| json!({ "client": c, "count": n }))
        .collect();
    json!({
        "days": days,
        "periods": PERIODS,
        "from_day": insights::day_label(ins.from),
        "until_day": insights::day_label(ins.until - 1),
        "totals": ins.totals,
        "registered_users": ins.registered_users,
        "resets_svg": resets,
        "unlocks_svg": unlocks,
        "registrations_svg": registrations,
        "verifications_svg": verifications,
        "by_method": ins.by_method.iter().map(|(m, p, f)| json!({
            "method": method_label(lang, m), "passed": p, "failed": f,
        })).collect::<Vec<_>>(),
        "by_client": by_client,
        "blocked": blocked,
        "event_cap": INSIGHT_EVENTS,
        "user_cap": INSIGHT_USERS,
    })
}

// ---------------------------------------------------------------------------------------------
// Policy

/// Number fields of the policy form: (field name, label key).
const NUMBER_FIELDS: [(&str, &str); 7] = [
    ("methods_required", "admin-pol-methods-required"),
    ("questions_to_register", "admin-pol-q-register"),
    ("questions_to_answer", "admin-pol-q-answer"),
    ("reconfirm_days", "admin-pol-reconfirm"),
    ("pw_min_length", "admin-pol-min-length"),
    ("pw_max_length", "admin-pol-max-length"),
    ("pw_min_character_classes", "admin-pol-classes"),
];

fn scope_str(s: Scope) -> &'static str {
    match s {
        Scope::All => "all",
        Scope::Groups => "groups",
        Scope::None => "none",
    }
}

/// The form's fields for a policy, as the form names them (a checked box is `on`).
fn policy_form(p: &Policy) -> HashMap<String, String> {
    let mut f: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: String| {
        f.insert(k.to_string(), v);
    };
    let flag = |b: bool| if b { "on".to_string() } else { String::new() };
    put("scope", scope_str(p.scope).into());
    put("groups", p.groups.join(", "));
    for m in Method::ALL {
        put(&format!("m_{}", m.as_str()), flag(p.methods.contains(&m)));
    }
    put("methods_required", p.methods_required.to_string());
    put("questions_to_register", p.questions_to_register.to_string());
    put("questions_to_answer", p.questions_to_answer.to_string());
    put(
        "custom_questions",
        p.custom_questions
            .iter()
            .map(|q| q.text.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    );
    put("require_registration", flag(p.require_registration));
    put("reconfirm_days", p.reconfirm_days.to_string());
    put("notify_user", flag(p.notify_user));
    put(
        "notify_admins_on_admin_reset",
        flag(p.notify_admins_on_admin_reset),
    );
    put("admin_notify", p.admin_notify.join(", "));
    put("allow_unlock", flag(p.allow_unlock));
    put("privileged_groups", p.privileged_groups.join(", "));
    let r = &p.password;
    put("pw_min_length", r.min_length.to_string());
    put("pw_max_length", r.max_length.to_string());
    put("pw_reject_common", flag(r.reject_common));
    put("pw_reject_context", flag(r.reject_context));
    put("pw_organisation", r.organisation.clone());
    put("pw_banned_words", r.banned_words.join(", "));
    put(
        "pw_min_character_classes",
        r.min_character_classes.to_string(),
    );
    f
}

/// Reads the policy form, collecting a sentence for every field that cannot be read.
struct FormReader<'a> {
    form: &'a HashMap<String, String>,
    lang: Lang,
    problems: Vec<String>,
}

impl FormReader<'_> {
    fn text(&self, k: &str) -> &str {
        self.form.get(k).map(String::as_str).unwrap_or("").trim()
    }

    fn flag(&self, k: &str) -> bool {
        !self.text(k).is_empty()
    }

    /// Entries separated by commas or new lines.
    fn list(&self, k: &str) -> Vec<String> {
        self.text(k)
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn number<T: TryFrom<u64> + Default>(&mut self, k: &str) -> T {
        let raw = self.text(k).to_string();
        let label_key = NUMBER_FIELDS
            .iter()
            .find(|(f, _)| *f == k)
            .map(|(_, l)| *l)
            .unwrap_or(k);
        let lang = self.lang;
        let field = CATALOG.tr(lang, label_key, &[]);
        let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
        match raw.parse::<u64>().ok().map(T::try_from) {
            Some(Ok(v)) => return v,
            Some(Err(_)) => {
                self.problems
                    .push(CATALOG.tr(lang, "admin-too-large", &[("field", field)]));
            }
            None if digits => {
                self.problems
                    .push(CATALOG.tr(lang, "admin-too-large", &[("field", field)]));
            }
            None => {
                self.problems
                    .push(CATALOG.tr(lang, "admin-bad-number", &[("field", field)]));
            }
        }
        T::default()
    }
}

/// The custom questions, one per line. A question whose text is already in the saved policy
/// keeps its id (users' answers refer to it); a new one gets the next id after every id
/// in use, so that removing a question never hands its id, and its answers, to another.
fn custom_questions(text: &str, saved: &[CustomQuestion]) -> Vec<CustomQuestion> {
    let mut next = saved
        .iter()
        .filter_map(|q| q.id.strip_prefix('c')?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let mut taken: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let id = match saved
            .iter()
            .find(|q| q.text.trim() == line && !taken.contains(&q.id))
        {
            Some(q) => q.id.clone(),
            None => {
                let id = format!("c{next}");
                next += 1;
                id
            }
        };
        taken.insert(id.clone());
        out.push(CustomQuestion {
            id,
            text: line.to_string(),
        });
    }
    out
}

/// The policy a posted form describes, or what is wrong with the form. Whether the policy
/// makes sense is [`Policy::validate`]'s business; this only reads it.
fn parse_policy(
    form: &HashMap<String, String>,
    saved: &Policy,
    lang: Lang,
) -> Result<Policy, Vec<String>> {
    let mut r = FormReader {
        form,
        lang,
        problems: Vec::new(),
    };
    let scope = match r.text("scope") {
        "all" => Scope::All,
        "groups" => Scope::Groups,
        "none" => Scope::None,
        _ => {
            r.problems.push(CATALOG.tr(lang, "admin-bad-scope", &[]));
            saved.scope
        }
    };
    // Keep the saved order of the methods still enabled; add new ones in the usual order.
    let checked: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| r.flag(&format!("m_{}", m.as_str())))
        .collect();
    let mut methods: Vec<Method> = saved
        .methods
        .iter()
        .copied()
        .filter(|m| checked.contains(m))
        .collect();
    for m in checked {
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    let policy = Policy {
        scope,
        groups: r.list("groups"),
        methods,
        methods_required: r.number("methods_required"),
        questions_to_register: r.number("questions_to_register"),
        questions_to_answer: r.number("questions_to_answer"),
        custom_questions: custom_questions(r.text("custom_questions"), &saved.custom_questions),
        require_registration: r.flag("require_registration"),
        reconfirm_days: r.number("reconfirm_days"),
        notify_user: r.flag("notify_user"),
        notify_admins_on_admin_reset: r.flag("notify_admins_on_admin_reset"),
        admin_notify: r.list("admin_notify"),
        allow_unlock: r.flag("allow_unlock"),
        privileged_groups: r.list("privileged_groups"),
        password: PasswordRules {
            min_length: r.number("pw_min_length"),
            max_length: r.number("pw_max_length"),
            reject_common: r.flag("pw_reject_common"),
            reject_context: r.flag("pw_reject_context"),
            organisation: r.text("pw_organisation").to_string(),
            banned_words: r.list("pw_banned_words"),
            min_character_classes: r.number("pw_min_character_classes"),
        },
    };
    if r.problems.is_empty() {
        Ok(policy)
    } else {
        Err(r.problems)
    }
}

/// The password rules in words, as the reset page words them.
fn rule_words(p: &PasswordRules, lang: Lang) -> Vec<String> {
    let mut rules = vec![CATALOG.tr(
        lang,
        "admin-rule-length",
        &[
            ("min", p.min_length.to_string()),
            ("max", p.max_length.to_string()),
        ],
    )];
    if p.reject_common {
        rules.push(CATALOG.tr(lang, "admin-rule-common", &[]));
    }
    if p.reject_context {
        rules.push(CATALOG.tr(lang, "admin-rule-context", &[]));
    }
    if !p.banned_words.is_empty() {
        rules.push(CATALOG.tr(lang, "admin-rule-banned", &[]));
    }
    if p.min_character_classes > 0 {
        rules.push(
            Rejection::TooFewClasses {
                min: p.min_character_classes,
            }
            .message(lang.tag()),
        );
    }
    rules
}

fn join(lang: Lang, items: &[String]) -> String {
    items.join(if lang == Lang::Zh { "、" } else { ", " })
}

/// What one kind of user is asked for under `p`.
fn audience(p: &Policy, groups: &[String], lang: Lang) -> Value {
    let r = p.requirement_for(groups);
    let mut offered = r.methods.clone();
    offered.sort();
    offered.dedup();
    let labels: Vec<String> = r
        .methods
        .iter()
        .map(|m| CATALOG.tr(lang, &format!("method-{}", m.as_str()), &[]))
        .collect();
    json!({
        "privileged": r.privileged,
        "methods": if labels.is_empty() { CATALOG.tr(lang, "admin-none", &[]) } else { join(lang, &labels) },
        "required": r.required,
        "offered": offered.len(),
        "stuck": offered.len() < usize::from(r.required),
        "questions": r.methods.contains(&Method::Questions),
    })
}

/// "What users will see" under `p`.
fn preview(p: &Policy, lang: Lang, directory_rules: Vec<String>) -> Value {
    let privileged_group = p
        .privileged_groups
        .iter()
        .find(|g| !g.trim().is_empty())
        .cloned();
    let mut rules = rule_words(&p.password, lang);
    rules.extend(directory_rules);
    json!({
        "scope": scope_str(p.scope),
        "groups": join(lang, &p.groups),
        "standard": audience(p, &[], lang),
        "privileged_group": privileged_group,
        "privileged": privileged_group.as_ref().map(|g| audience(p, std::slice::from_ref(g), lang)),
        "q_register": p.questions_to_register,
        "q_answer": p.questions_to_answer,
        "unlock": p.allow_unlock,
        "rules": rules,
        "custom": p.custom_questions,
        "require_registration": p.require_registration,
        "reconfirm_days": p.reconfirm_days,
        "notify_user": p.notify_user,
        "problems": p.validate(),
    })
}

#[derive(Serialize, Default)]
struct PolicyView {
    f: HashMap<String, String>,
    methods_all: Vec<&'static str>,
    /// The form could not be read.
    problems: Vec<String>,
    error: Option<String>,
    details: Vec<String>,
    support_code: Option<String>,
    preview: Option<Value>,
    saved: bool,
}

fn policy_view(f: HashMap<String, String>) -> PolicyView {
    PolicyView {
        f,
        methods_all: Method::ALL.iter().map(|m| m.as_str()).collect(),
        ..PolicyView::default()
    }
}

pub async fn policy_page(Gated(SignedInAdmin(s), w): Gated<SignedInAdmin>) -> Response {
    match w.state.app.policy().await {
        Ok(p) => admin_page(
            w,
            &s,
            StatusCode::OK,
            "policy",
            policy_view(policy_form(&p)),
        ),
        Err(e) => w.fail(e).await,
    }
}

/// `action=preview` shows what users would see; `action=save` stores the policy.
pub async fn policy_post(Gated(SignedInAdmin(s), p): Gated<SignedInAdmin, Posted>) -> Response {
    let (mut w, mut form) = (p.web, p.form);
    let app = w.state.app.clone();
    let lang = w.lang();
    let save = form.get("action").map(String::as_str) == Some("save");
    form.remove("csrf");
    form.remove("action");
    let saved = match app.policy().await {
        Ok(p) => p,
        Err(e) => return w.fail(e).await,
    };
    let policy = match parse_policy(&form, &saved, lang) {
        Ok(p) => p,
        Err(problems) => {
            let view = PolicyView {
                problems,
                ..policy_view(form)
            };
            return admin_page(w, &s, StatusCode::BAD_REQUEST, "policy", view);
        }
    };
    if !save {
        let directory_rules = match app.directory.password_rules().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the directory's password rules");
                Vec::new()
            }
        };
        let view = PolicyView {
            preview: Some(preview(&policy, lang, directory_rules)),
            ..policy_view(form)
        };
        return admin_page(w, &s, StatusCode::OK, "policy", view);
    }
    let actor = format!("admin:{}", s.login);
    match app.set_policy(&w.ctx, &actor, policy).await {
        Ok(stored) => {
            let view = PolicyView {
                saved: true,
                ..policy_view(policy_form(&stored))
            };
            admin_page(w, &s, StatusCode::OK, "policy", view)
        }
        Err(e) => {
            let e = w.audited(e).await;
            // A policy the service refuses comes with its problems, one sentence each.
            let error = if e.details.is_empty() {
                e.message.clone()
            } else {
                CATALOG.tr(lang, "admin-invalid-policy", &[])
            };
            let view = PolicyView {
                error: Some(error),
                details: e.details.clone(),
                support_code: e.support_code.clone(),
                ..policy_view(form)
            };
            let status = w.status_for(&e);
            admin_page(w, &s, status, "policy", view)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Users

#[derive(Deserialize)]
pub struct UserParams {
    q: Option<String>,
}

pub async fn users_page(
    Gated(SignedInAdmin(s), w): Gated<SignedInAdmin>,
    q: Result<Query<UserParams>, QueryRejection>,
) -> Response {
    let q = q
        .ok()
        .and_then(|Query(p)| p.q)
        .map(|q| q.trim().to_string())
        .filter(|q| !q.is_empty());
    match q {
        Some(q) => user_lookup(w, &s, q).await,
        None => registered_list(w, &s).await,
    }
}

async fn user_lookup(mut w: Web, s: &SessionRecord, q: String) -> Response {
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
        json!({ "q": q, "user": summary }),
    )
}

async fn registered_list(w: Web, s: &SessionRecord) -> Response {
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

// ---------------------------------------------------------------------------------------------
// Audit log

/// Empty form fields mean "any".
fn normalise(p: &mut AuditParams) {
    for v in [
        &mut p.since,
        &mut p.until,
        &mut p.user,
        &mut p.activity,
        &mut p.result,
        &mut p.client_type,
        &mut p.ip,
        &mut p.support_code,
        &mut p.format,
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        } else if let Some(s) = v {
            *s = s.trim().to_string();
        }
    }
}

/// The filter fields, as `(name, value)`.
fn filter_fields(p: &AuditParams) -> Vec<(&'static str, String)> {
    [
        ("since", &p.since),
        ("until", &p.until),
        ("user", &p.user),
        ("activity", &p.activity),
        ("result", &p.result),
        ("client_type", &p.client_type),
        ("support_code", &p.support_code),
        ("ip", &p.ip),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_string(fields: &[(&'static str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The parameters and the filter they make, or why they make none.
fn read_filter(
    lang: Lang,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> (Option<AuditParams>, Result<AuditFilter, String>) {
    match q {
        Ok(Query(mut p)) => {
            normalise(&mut p);
            let f = audit_filter(&p)
                .map_err(|why| CATALOG.tr(lang, "admin-audit-bad-filter", &[("why", why)]));
            (Some(p), f)
        }
        Err(rej) => {
            let why = rej.body_text();
            (
                None,
                Err(CATALOG.tr(lang, "admin-audit-bad-filter", &[("why", why)])),
            )
        }
    }
}

pub async fn audit_page(
    Gated(SignedInAdmin(s), w): Gated<SignedInAdmin>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Response {
    let lang = w.lang();
    let (params, filter) = read_filter(lang, q);
    let fields = params.as_ref().map(filter_fields).unwrap_or_default();
    let f: HashMap<&str, String> = fields.iter().cloned().collect();
    let common = json!({
        "f": f,
        "qs": query_string(&fields),
        "activities": Activity::ALL.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "clients": ClientType::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "cap": AUDIT_ROWS,
    });
    let mut filter = match filter {
        Ok(f) => f,
        Err(why) => {
            let data = merge(common, json!({ "error": why, "events": [] }));
            return admin_page(w, &s, StatusCode::BAD_REQUEST, "audit", data);
        }
    };
    filter.limit = AUDIT_ROWS;
    let events = match w.state.app.audit_events(&filter).await {
        Ok(e) => e,
        Err(e) => return w.fail(e).await,
    };
    // The store gives the newest events oldest first; the page shows the newest on top.
    let events: Vec<_> = events.into_iter().rev().map(event_dto).collect();
    let data = merge(common, json!({ "events": events }));
    admin_page(w, &s, StatusCode::OK, "audit", data)
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

/// `GET /admin/audit/export?format=csv|json&<filters>`: a download of up to
/// [`EXPORT_ROWS`] events, oldest first.
pub async fn audit_export(
    Gated(SignedInAdmin(s), w): Gated<SignedInAdmin>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Response {
    let lang = w.lang();
    let (params, filter) = read_filter(lang, q);
    let query = params
        .as_ref()
        .map(|p| format!("{p:?}"))
        .unwrap_or_default();
    let format = params
        .and_then(|p| p.format)
        .unwrap_or_else(|| "csv".into());
    let mut filter = match filter {
        Ok(f) if format == "csv" || format == "json" => f,
        Ok(_) => {
            let e = AppError::invalid(w.tr("admin-export-format"));
            return w.fail(e).await;
        }
        Err(why) => return w.fail(AppError::invalid(why)).await,
    };
    filter.limit = EXPORT_ROWS;
    let events: Vec<_> = match w.state.app.audit_events(&filter).await {
        Ok(e) => e.into_iter().map(event_dto).collect(),
        Err(e) => return w.fail(e).await,
    };
    let app = &w.state.app;
    let mut ev = app.event(
        &w.ctx,
        sspr_domain::audit::Activity::AuditExported,
        sspr_domain::audit::Outcome::Success,
    );
    ev.actor = format!("admin:{}", s.login);
    ev.target = "audit".into();
    ev.details = json!({ "format": format, "rows": events.len(), "filter": query });
    app.record(ev).await;
    let (body, kind, name) = if format == "json" {
        match serde_json::to_string_pretty(&events) {
            Ok(b) => (b, "application/json", "sspr-audit.json"),
            Err(e) => return w.fail(AppError::internal(e.to_string())).await,
        }
    } else {
        (
            events_csv(&events),
            "text/csv; charset=utf-8",
            "sspr-audit.csv",
        )
    };
    let resp = (
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response();
    w.finish(resp)
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
        assert!(e.iter().any(|m| m.contains(&label)), "{e:?}");
        let label = CATALOG.tr(Lang::En, "admin-pol-reconfirm", &[]);
        assert!(
            e.iter()
                .any(|m| m.contains(&label) && m.contains("too large")),
            "{e:?}"
        );
        let e = parse_policy(&f, &p, Lang::Zh).unwrap_err();
        assert!(e.iter().all(|m| !m.contains("whole number")), "{e:?}");
        f.insert("scope".into(), "everyone".into());
        f.insert("pw_max_length".into(), "1e9".into());
        assert_eq!(parse_policy(&f, &p, Lang::En).unwrap_err().len(), 6);
    }

    #[test]
    fn methods_keep_their_saved_order() {
        let saved = Policy::default(); // email, sms, totp, questions
        let mut f = form(&saved);
        f.remove("m_sms");
        let p = parse_policy(&f, &saved, Lang::En).unwrap();
        assert_eq!(p.methods, [Method::Email, Method::Totp, Method::Questions]);
        let mut f = form(&p);
        f.insert("m_sms".into(), "on".into());
        let p = parse_policy(&f, &p, Lang::En).unwrap();
        assert_eq!(
            p.methods,
            [Method::Email, Method::Totp, Method::Questions, Method::Sms]
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
            ..Policy::default()
        };
        let v = preview(&p, Lang::En, vec!["From the directory.".into()]);
        assert_eq!(v["standard"]["required"], 1);
        assert_eq!(v["standard"]["questions"], true);
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
