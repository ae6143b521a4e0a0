//! What every page handler gets: the request's context, its cookies and its CSRF token; and
//! what every page response carries: new cookies, the page CSP.
//!
//! CSRF: a random `__Host-sspr-csrf` cookie, and in every form the cookie's MAC under the
//! server key. A POST without both, or from another site (`Sec-Fetch-Site`), is refused
//! before its handler runs: handlers take [`Posted`], which does that check, so no form can
//! forget it.
//!
//! Pages that need a flow or a session take [`Gated`], for the same reason: the check runs
//! before the handler, which then only does its own work.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::Value;
use serde::Serialize;
use sspr_app::{AppError, ErrorKind, Lang, RequestCtx};
use sspr_domain::ClientType;
use sspr_server::State;

use crate::form;
use crate::i18n::CATALOG;
use crate::render::render;

pub const CSRF_COOKIE: &str = "__Host-sspr-csrf";
pub const LANG_COOKIE: &str = "__Host-sspr-lang";
pub const FLOW_COOKIE: &str = "__Host-sspr-flow";
pub const SESSION_COOKIE: &str = "__Host-sspr-session";
pub const ADMIN_COOKIE: &str = "__Host-sspr-admin";
/// What a form did, carried from its POST to the page the browser is sent to (see
/// [`Web::redirect_with_notice`]).
pub const NOTICE_COOKIE: &str = "__Host-sspr-notice";

/// The strict policy of every page: scripts and styles from this origin only, no inline
/// code, forms post only here, never framed.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn cookies(parts: &Parts) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for v in parts.headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                out.entry(k.trim().to_string())
                    .or_insert_with(|| v.trim().to_string());
            }
        }
    }
    out
}

/// A `__Host-` cookie: Secure, whole-site path, no Domain, HttpOnly, SameSite=Strict.
/// `max_age` 0 deletes it.
pub fn cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

/// The request as a page sees it.
pub struct Web {
    pub ctx: RequestCtx,
    pub state: Arc<State>,
    pub cookies: HashMap<String, String>,
    csrf_cookie: String,
    /// Cookies to set on the response.
    pub set: Vec<String>,
    pub path: String,
    method: axum::http::Method,
    /// When the failure shown on this page may be retried, for `Retry-After` (see `status_for`).
    retry_after: Option<i64>,
}

impl FromRequestParts<Arc<State>> for Web {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> Result<Self, Self::Rejection> {
        Ok(web_from_parts(parts, state))
    }
}

fn web_from_parts(parts: &Parts, state: &Arc<State>) -> Web {
    let mut ctx = sspr_server::ctx::ctx_from_parts(parts, state);
    ctx.client_type = ClientType::Browser;
    let cookies = cookies(parts);
    let mut set = Vec::new();
    let query_lang = parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang=")))
        .map(Lang::negotiate);
    ctx.lang = match (query_lang, cookies.get(LANG_COOKIE)) {
        (Some(l), _) => {
            // The switcher's choice sticks for a year.
            set.push(cookie(LANG_COOKIE, l.tag(), 365 * 86400));
            l
        }
        (None, Some(c)) => Lang::negotiate(c),
        (None, None) => ctx.lang,
    };
    let csrf_cookie = match cookies.get(CSRF_COOKIE) {
        Some(c) if c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()) => c.clone(),
        _ => {
            let mut b = [0u8; 16];
            state.app.rng.fill(&mut b);
            let v = sspr_domain::random::hex(&b);
            set.push(cookie(CSRF_COOKIE, &v, 12 * 3600));
            v
        }
    };
    Web {
        ctx,
        state: state.clone(),
        cookies,
        csrf_cookie,
        set,
        path: here(parts.method.as_str(), parts.uri.path()),
        method: parts.method.clone(),
        retry_after: None,
    }
}

/// The page a language switch reloads: this one for a GET; for a POST (whose URL cannot be
/// fetched) the page at the same address when there is one, else the page its form is on.
/// Handlers that know better (a challenge's page) set [`Web::path`] themselves.
fn here(method: &str, path: &str) -> String {
    if crate::ROUTES.contains(&("GET", path)) {
        return path.to_string();
    }
    // An invitation's page: the link itself (the token is in it already).
    if method == "GET" && path.starts_with("/invite/") {
        return path.to_string();
    }
    // A finished flow's page: its flow is gone, so the start page.
    if path == "/flow/password" || path == "/flow/unlock" {
        return "/".to_string();
    }
    for (prefix, page) in [
        ("/flow", "/flow"),
        ("/start", "/reset"),
        ("/register", "/register"),
        ("/admin", "/admin"),
    ] {
        if path.starts_with(prefix) {
            return page.to_string();
        }
    }
    "/".to_string()
}

fn csrf_token(state: &State, cookie: &str) -> String {
    let mac = state.app.key.code_mac("csrf", cookie);
    mac.get(..32).unwrap_or_default().to_string()
}

impl Web {
    pub fn is_get(&self) -> bool {
        self.method == axum::http::Method::GET
    }

    pub fn lang(&self) -> Lang {
        self.ctx.lang
    }

    pub fn tr(&self, key: &str) -> String {
        CATALOG.tr(self.ctx.lang, key, &[])
    }

    pub fn tr_args(&self, key: &str, args: &[(&str, String)]) -> String {
        CATALOG.tr(self.ctx.lang, key, args)
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// What every template can use.
    fn base(&self) -> serde_json::Value {
        serde_json::json!({
            "lang": self.ctx.lang.tag(),
            "csrf": csrf_token(&self.state, &self.csrf_cookie),
            "org": self.state.app.settings.organisation,
            "path": self.path,
        })
    }

    /// Renders a page with `data` merged over the base context.
    pub fn page(self, name: &str, data: impl Serialize) -> Response {
        self.page_status(StatusCode::OK, name, data)
    }

    pub fn page_status(self, status: StatusCode, name: &str, data: impl Serialize) -> Response {
        let mut ctx = self.base();
        if let (Some(base), Ok(serde_json::Value::Object(extra))) =
            (ctx.as_object_mut(), serde_json::to_value(data))
        {
            base.extend(extra);
        }
        let resp = render(status, name, Value::from_serialize(&ctx));
        self.finish(resp)
    }

    /// A 303 to a path of this site (never built from the Host header).
    pub fn redirect(self, to: &str) -> Response {
        self.finish(Redirect::to(to).into_response())
    }

    /// Post/redirect/get for a form that changed something: a 303 to `to`, whose page shows
    /// `notice` once (see [`Web::take_notice`]), so that a reload or Back does not send the
    /// form again. `tag` says what happened in a word the page can act on (`[a-z-]`).
    pub fn redirect_with_notice(mut self, to: &str, tag: &str, notice: &str) -> Response {
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        let notice =
            percent_encoding::utf8_percent_encode(notice, percent_encoding::NON_ALPHANUMERIC);
        self.set
            .push(cookie(NOTICE_COOKIE, &format!("{tag}.{notice}"), 120));
        self.redirect(to)
    }

    /// The notice a redirect carried here, `(tag, text)`; read once.
    pub fn take_notice(&mut self) -> Option<(String, String)> {
        let raw = self.cookie(NOTICE_COOKIE)?.to_string();
        self.set.push(cookie(NOTICE_COOKIE, "", 0));
        let (tag, text) = raw.split_once('.')?;
        let text = percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .ok()?
            .into_owned();
        Some((tag.to_string(), text))
    }

    /// The error page: what happened in the user's language, and the support code that
    /// finds the audit event.
    pub fn error(self, e: AppError) -> Response {
        let status = sspr_server::respond::status_of(e.kind);
        self.error_status(status, e)
    }

    pub fn error_status(mut self, status: StatusCode, e: AppError) -> Response {
        let e = e.localized(self.ctx.lang);
        self.retry_after = e.retry_after;
        let retry = sspr_server::respond::retry_minutes(&e);
        self.page_status(
            status,
            "error.html",
            serde_json::json!({
                "message": e.message,
                "details": e.details,
                "support_code": e.support_code,
                "retry_minutes": retry,
            }),
        )
    }

    /// The status of a page that shows `e`; a 429 or 503 then says when to try again.
    pub fn status_for(&mut self, e: &AppError) -> StatusCode {
        self.retry_after = e.retry_after;
        sspr_server::respond::status_of(e.kind)
    }

    pub fn finish(self, mut resp: Response) -> Response {
        // The failure's own time; the router's layer gives any other 429 or 503 the default.
        if let Some(v) = self
            .retry_after
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        // Here rather than only as a layer, so that the fallback pages get it too.
        resp.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        for c in &self.set {
            if let Ok(v) = HeaderValue::from_str(c) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        resp
    }

    /// Audits a failure the services did not, so that it has a support code.
    pub async fn audited(&self, e: AppError) -> AppError {
        sspr_server::respond::audited(&self.state, &self.ctx, e).await
    }

    /// `audited` then the error page.
    pub async fn fail(self, e: AppError) -> Response {
        let e = self.audited(e).await;
        self.error(e)
    }
}

/// A form POST whose CSRF token checked out, with its fields.
pub struct Posted {
    pub web: Web,
    pub form: HashMap<String, String>,
}

impl Posted {
    pub fn get(&self, k: &str) -> &str {
        self.form.get(k).map(String::as_str).unwrap_or("")
    }

    /// A field holding JSON (a passkey's answer, put there by the page's script). Text that
    /// is not JSON is passed on as a string, for the service to refuse in words.
    pub fn json(&self, k: &str) -> serde_json::Value {
        let raw = self.get(k);
        serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.into()))
    }
}

impl FromRequest<Arc<State>> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<State>) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let web = web_from_parts(&parts, state);
        let cross_site = parts
            .headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "cross-site" || v == "same-site");
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let req = Request::from_parts(parts, body);
        let read = match axum::body::Bytes::from_request(req, state).await {
            Ok(_) if !is_form => Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "error-bad-form",
                "not application/x-www-form-urlencoded".to_string(),
            )),
            Ok(bytes) => form::parse(&bytes).map_err(|e| match e {
                form::FormError::NotUtf8 => (
                    StatusCode::BAD_REQUEST,
                    "error-form-not-utf8",
                    "a field is not UTF-8".to_string(),
                ),
                form::FormError::Repeated(name) => (
                    StatusCode::BAD_REQUEST,
                    "error-form-repeated",
                    format!("field {name:?} sent more than once"),
                ),
            }),
            Err(rej) => Err((rej.status(), "error-bad-form", rej.body_text())),
        };
        let form = match read {
            Ok(f) => f,
            Err((status, key, log)) => {
                let e = AppError::invalid(web.tr(key)).with_log(log);
                let e = web.audited(e).await;
                return Err(web.error_status(status, e));
            }
        };
        let sent = form.get("csrf").map(String::as_str).unwrap_or("");
        let had_cookie = !web.set.iter().any(|c| c.starts_with(CSRF_COOKIE));
        let want = csrf_token(state, &web.csrf_cookie);
        let ok = had_cookie
            && !cross_site
            && !sent.is_empty()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                sent.as_bytes(),
                want.as_bytes(),
            ));
        if !ok {
            let e = AppError::new(ErrorKind::Forbidden, web.tr("error-csrf")).with_log(format!(
                "CSRF check failed: cookie={had_cookie} token={} cross_site={cross_site}",
                !sent.is_empty()
            ));
            let e = web.audited(e).await;
            return Err(web.error_status(StatusCode::FORBIDDEN, e));
        }
        Ok(Posted { web, form })
    }
}

/// What a page needs before its handler runs (a flow, a session), read from the request; or
/// the response that stands in for the handler's when it is missing (the start page, the
/// sign-in form, an error page).
pub trait Gate: Sized + Send {
    /// `form` says whether the request is a form POST (already CSRF-checked) rather than a
    /// page, for gates that answer the two differently.
    fn check(w: Web, form: bool) -> impl Future<Output = Result<(Web, Self), Response>> + Send;
}

/// A request that passed gate `G`: `Gated<G>` for a page, `Gated<G, Posted>` for a form,
/// whose CSRF check comes first (a forged form is refused as forged, whatever its session).
pub struct Gated<G, T = Web>(pub G, pub T);

impl<G: Gate> FromRequestParts<Arc<State>> for Gated<G> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> Result<Self, Self::Rejection> {
        let (w, g) = G::check(web_from_parts(parts, state), false).await?;
        Ok(Gated(g, w))
    }
}

impl<G: Gate> FromRequest<Arc<State>> for Gated<G, Posted> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<State>) -> Result<Self, Self::Rejection> {
        let Posted { web, form } = Posted::from_request(req, state).await?;
        let (web, g) = G::check(web, true).await?;
        Ok(Gated(g, Posted { web, form }))
    }
}
