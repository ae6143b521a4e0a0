//! The web portal's security, route by route: headers on every page, CSRF on every form,
//! cookie flags, no token in a URL, links from the configured public URL, and the browser
//! check (proof of work) spent once. Browser-driven journeys are in `browser.rs`.

use std::collections::HashMap;

use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Method as HttpMethod, StatusCode};

use crate::harness::Server;

/// A tiny cookie jar: the portal's cookies are all `__Host-` and whole-site.
#[derive(Default)]
pub(crate) struct Jar(HashMap<String, String>);

impl Jar {
    fn take(&mut self, h: &HeaderMap) {
        for v in h.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (kv, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if val.is_empty() {
                self.0.remove(k);
            } else {
                self.0.insert(k.to_string(), val.to_string());
            }
        }
    }
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub(crate) struct Browser<'a> {
    s: &'a Server,
    jar: Jar,
}

pub(crate) struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the first hidden input called `name`.
    pub fn field(&self, name: &str) -> String {
        let pat = format!("name=\"{name}\" value=\"");
        let i = self
            .body
            .find(&pat)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body));
        let rest = &self.body[i + pat.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
    pub fn attr(&self, attr: &str) -> String {
        let pat = format!("{attr}=\"");
        let i = self.body.find(&pat).unwrap();
        let rest = &self.body[i + pat.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

impl<'a> Browser<'a> {
    pub fn new(s: &'a Server) -> Self {
        Self {
            s,
            jar: Jar::default(),
        }
    }

    /// A request as the browser makes it: its cookies, HTML wanted, no redirects followed.
    fn request(&self, method: HttpMethod, path: &str) -> reqwest::RequestBuilder {
        crate::harness::client_builder(&self.s.ca())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .request(method, format!("{}{}", self.s.url, path))
            .header("accept", "text/html")
            .header("cookie", self.jar.header())
    }

    /// Sends it, keeps the cookies set, and reads the page.
    async fn read(&mut self, rb: reqwest::RequestBuilder) -> Page {
        let r = rb.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        self.jar.take(&headers);
        Page {
            status,
            headers,
            body: r.text().await.unwrap(),
        }
    }

    pub async fn send(
        &mut self,
        method: HttpMethod,
        path: &str,
        form: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Page {
        let mut rb = self.request(method.clone(), path);
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        if method == HttpMethod::POST {
            rb = rb.form(form);
        }
        self.read(rb).await
    }

    /// A POST with a body as given: what a crafted request, not a browser, sends.
    async fn post_raw(&mut self, path: &str, content_type: &str, body: &[u8]) -> Page {
        let rb = self
            .request(HttpMethod::POST, path)
            .header("content-type", content_type)
            .body(body.to_vec());
        self.read(rb).await
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(HttpMethod::GET, path, &[], &[]).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(HttpMethod::POST, path, form, &[]).await
    }
}

fn check_page_headers(what: &str, p: &Page) {
    let h = |n: &str| {
        p.headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let csp = h("content-security-policy");
    for want in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(want), "{what}: CSP {csp:?} lacks {want}");
    }
    assert!(
        !csp.contains("unsafe"),
        "{what}: CSP allows unsafe code: {csp}"
    );
    assert_eq!(h("cache-control"), "no-store", "{what}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
    assert!(
        h("strict-transport-security").contains("max-age="),
        "{what}"
    );
    for c in p.headers.get_all(SET_COOKIE) {
        let c = c.to_str().unwrap();
        assert!(
            c.starts_with("__Host-"),
            "{what}: cookie without __Host-: {c}"
        );
        for flag in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Strict"] {
            assert!(c.contains(flag), "{what}: cookie {c} lacks {flag}");
        }
        assert!(!c.to_ascii_lowercase().contains("domain="), "{what}: {c}");
    }
    // No inline script or style anywhere in the HTML.
    if h("content-type").starts_with("text/html") {
        assert!(!p.body.contains("<script>"), "{what}: inline script");
        assert!(
            !p.body.contains(" style=\""),
            "{what}: inline style attribute"
        );
        assert!(!p.body.contains("<style"), "{what}: style element");
    }
}

#[tokio::test]
async fn every_page_has_the_security_headers_and_every_form_refuses_a_missing_or_forged_csrf_token()
{
    let s = Server::start().await;
    let mut b = Browser::new(&s);
    // A first page sets the CSRF cookie; its token is what a genuine form would carry.
    let home = b.get("/reset").await;
    assert_eq!(home.status, StatusCode::OK);
    let token = home.field("csrf");
    let cookie_only = b.jar.header();

    let mut posts = 0;
    for (method, path) in sspr_web::ROUTES {
        let what = format!("{method} {path}");
        match *method {
            "GET" => {
                let p = b.get(path).await;
                assert!(
                    p.status.is_success()
                        || p.status.is_redirection()
                        || p.status.is_client_error(),
                    "{what}: {}",
                    p.status
                );
                assert!(
                    p.status != StatusCode::NOT_FOUND && p.status != StatusCode::METHOD_NOT_ALLOWED,
                    "{what} is listed in ROUTES but not served: {}",
                    p.status
                );
                check_page_headers(&what, &p);
            }
            "POST" => {
                posts += 1;
                // No cookie at all (another site's form, or a bot).
                let mut fresh = Browser::new(&s);
                let p = fresh.post(path, &[("csrf", &token)]).await;
                assert_eq!(p.status, StatusCode::FORBIDDEN, "{what} without the cookie");
                check_page_headers(&what, &p);
                assert!(p.body.contains("support-code"), "{what}: no support code");
                // The cookie but no token, and the cookie with a forged token.
                let p = b.post(path, &[("user", "demo")]).await;
                assert_eq!(p.status, StatusCode::FORBIDDEN, "{what} without a token");
                let p = b
                    .post(path, &[("csrf", "0123456789abcdef0123456789abcdef")])
                    .await;
                assert_eq!(
                    p.status,
                    StatusCode::FORBIDDEN,
                    "{what} with a forged token"
                );
                // A genuine token sent from another site.
                let p = b
                    .send(
                        HttpMethod::POST,
                        path,
                        &[("csrf", &token)],
                        &[("sec-fetch-site", "cross-site"), ("cookie", &cookie_only)],
                    )
                    .await;
                assert_eq!(p.status, StatusCode::FORBIDDEN, "{what} cross-site");
            }
            other => panic!("unexpected method {other}"),
        }
    }
    assert!(posts >= 15, "only {posts} forms checked");

    // The refusals are audited with the client type of the portal.
    let events = s
        .audit("activity=request_rejected&client_type=browser")
        .await;
    assert!(events.len() >= posts * 3, "{} events", events.len());

    // Static assets are served with a type and the same headers.
    for (path, ty) in [
        ("/static/app.css", "text/css"),
        ("/static/pow.js", "text/javascript"),
        ("/static/strength.js", "text/javascript"),
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        assert!(p.headers["content-type"].to_str().unwrap().starts_with(ty));
        assert_eq!(p.headers["x-content-type-options"], "nosniff");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_browser_reset_keeps_the_token_out_of_urls_builds_links_from_the_public_url_and_spends_each_browser_check_once()
 {
    let s = Server::start().await;
    s.user("unreg", &["staff"]).await;
    let mut b = Browser::new(&s);
    let page = b.get("/reset").await;
    let csrf = page.field("csrf");
    let pow = page.attr("data-pow");
    let bits: u8 = pow.split('.').nth(2).unwrap().parse().unwrap();
    assert!(bits >= 8, "{pow}");

    // A wrong solution: refused with a support code, the form kept.
    let p = b
        .post(
            "/start",
            &[
                ("csrf", &csrf),
                ("kind", "reset"),
                ("user", "unreg"),
                ("pow", &pow),
                ("pow_solution", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    assert!(p.body.contains("support-code") && p.body.contains("value=\"unreg\""));

    // Solved, with a forged Host header: the register link still comes from public_url.
    let sol = sspr_app::pow::solve(&pow, bits);
    let form = [
        ("csrf", csrf.as_str()),
        ("kind", "reset"),
        ("user", "unreg"),
        ("pow", pow.as_str()),
        ("pow_solution", sol.as_str()),
    ];
    let p = b
        .send(
            HttpMethod::POST,
            "/start",
            &form,
            &[("host", "evil.example")],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("id=\"register-link\""), "{}", p.body);
    let href_at = p.body.find("id=\"register-link\"").unwrap();
    let href = p.body[..href_at].rsplit("href=\"").next().unwrap();
    let href = href[..href.find('"').unwrap()].replace("&#x2f;", "/");
    assert_eq!(href, format!("{}/register", s.url));
    assert!(!p.body.contains("evil.example"));
    // The unregistered user's flow ends there: the cookie is cleared.
    assert!(!b.jar.0.contains_key("__Host-sspr-flow"));

    // A registered user's flow: the token goes into a cookie, the redirect carries none.
    s.registered_user("reg").await;
    let page = b.get("/reset").await;
    let pow = page.attr("data-pow");
    let sol = sspr_app::pow::solve(&pow, bits);
    let p = b
        .post(
            "/start",
            &[
                ("csrf", &csrf),
                ("kind", "reset"),
                ("user", "reg"),
                ("pow", &pow),
                ("pow_solution", &sol),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.headers["location"], "/flow");
    let flow = b.jar.0.get("__Host-sspr-flow").cloned().unwrap();
    let p = b.get("/flow").await;
    assert!(p.body.contains("id=\"method-email\""), "{}", p.body);
    assert!(!p.body.contains(&flow), "the flow token is in the page");

    // The same solved challenge a second time: refused.
    let p = b.post("/start", &form).await;
    assert_eq!(
        p.status,
        StatusCode::BAD_REQUEST,
        "a browser check was accepted twice"
    );
    let ev = s.audit("activity=request_rejected").await;
    assert!(ev.iter().any(|e| e["reason"] == "pow_reused"), "{ev:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_form_with_a_repeated_field_or_text_that_is_not_utf8_is_refused_with_a_clear_page() {
    let s = Server::start().await;
    let mut b = Browser::new(&s);
    let page = b.get("/reset").await;
    let csrf = page.field("csrf");
    let pow = page.attr("data-pow");
    let bits: u8 = pow.split('.').nth(2).unwrap().parse().unwrap();
    let form = "application/x-www-form-urlencoded";
    let cases: [(&[u8], &str); 4] = [
        (b"&kind=reset&user=demo&user=nobody", "more than once"),
        (b"&kind=reset&kind=unlock&user=demo", "more than once"),
        (b"&kind=reset&user=d%E9mo", "UTF-8"),
        (b"&kind=reset&user=d\xe9mo", "UTF-8"),
    ];
    for (tail, says) in cases {
        let body = [format!("csrf={csrf}").as_bytes(), tail].concat();
        let p = b.post_raw("/start", form, &body).await;
        let what = String::from_utf8_lossy(tail);
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{what}");
        assert!(p.body.contains(says), "{what}: {}", p.body);
        assert!(p.body.contains("support-code"), "{what}: no support code");
        check_page_headers(&what, &p);
    }
    // Not a form at all.
    let body = format!("csrf={csrf}&kind=reset&user=demo");
    let p = b.post_raw("/start", "text/plain", body.as_bytes()).await;
    assert_eq!(p.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The same form, each field once and the browser check solved, is read as before.
    let sol = sspr_app::pow::solve(&pow, bits);
    let body = format!("{body}&pow={pow}&pow_solution={sol}");
    let p = b.post_raw("/start", form, body.as_bytes()).await;
    assert!(
        p.status.is_success() || p.status.is_redirection(),
        "{}: {}",
        p.status,
        p.body
    );
}

#[tokio::test]
async fn a_throttled_page_says_when_to_come_back_in_retry_after() {
    let s = Server::start().await;
    s.user("ann", &["staff"]).await;
    let mut b = Browser::new(&s);
    let csrf = b.get("/admin").await.field("csrf");
    let mut throttled = None;
    for _ in 0..12 {
        let p = b
            .post(
                "/admin/sign-in",
                &[
                    ("csrf", &csrf),
                    ("next", "/admin"),
                    ("user", "ann"),
                    ("password", "not the password"),
                ],
            )
            .await;
        if p.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(p);
            break;
        }
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
        assert!(
            p.headers.get("retry-after").is_none(),
            "only on 429 and 503"
        );
    }
    let p = throttled.expect("wrong admin passwords are throttled");
    let secs: i64 = p
        .headers
        .get("retry-after")
        .expect("a 429 page carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The block's real end, not a default: the page says the same in minutes.
    assert!(secs > 60, "{secs}");
    let minutes = (secs + 59) / 60;
    assert!(
        p.body.contains(&format!("{minutes} minutes")),
        "{secs} s; {}",
        p.body
    );
}

/// A page that needs a flow or a session, without one: the start page for a flow, the sign-in
/// form for registration (a page is someone arriving; a form is unauthorised), the admin
/// sign-in form that comes back to the page, and for an admin form a 401 error page.
#[tokio::test]
async fn a_page_without_its_flow_or_session_answers_with_the_page_that_starts_one() {
    let s = Server::start().await;
    let mut b = Browser::new(&s);
    let token = b.get("/reset").await.field("csrf");
    let csrf = [("csrf", token.as_str())];

    for p in [b.get("/flow").await, b.post("/flow/challenge", &csrf).await] {
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.body.contains("id=\"start-form\""), "{}", p.body);
        assert!(p.body.contains("reset session has ended"), "{}", p.body);
    }

    let p = b.get("/register").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("id=\"sign-in-form\""), "{}", p.body);
    let p = b.post("/register/email", &csrf).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("id=\"sign-in-form\""), "{}", p.body);
    // A session cookie that names no session: the form with a word why, the cookie gone.
    b.jar.0.insert("__Host-sspr-session".into(), "0".repeat(32));
    let p = b.get("/register").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("Your session has ended"), "{}", p.body);
    assert!(!b.jar.0.contains_key("__Host-sspr-session"));

    for (path, next) in [
        ("/admin/policy", "/admin/policy"),
        ("/admin/users", "/admin/users"),
        ("/admin/audit/export", "/admin/audit"),
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(p.body.contains("id=\"admin-signin-form\""), "{path}");
        assert_eq!(p.field("next").replace("&#x2f;", "/"), next, "{path}");
    }
    let p = b.post("/admin/policy", &csrf).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(
        p.body.contains("administrator session has ended"),
        "{}",
        p.body
    );
    assert!(p.body.contains("support-code"), "{}", p.body);
    s.stop().await;
}

/// Static files: named by their content's hash in the pages, kept by browsers for a year,
/// gzip-compressed when asked; pages themselves are still never stored nor compressed.
#[tokio::test]
async fn static_files_are_versioned_long_cached_and_compressed_and_pages_are_not() {
    let s = Server::start().await;
    let mut b = Browser::new(&s);
    let page = b.get("/reset").await;
    assert_eq!(page.headers["cache-control"], "no-store");
    let pat = "rel=\"stylesheet\" href=\"";
    let at = page.body.find(pat).unwrap() + pat.len();
    let css = &page.body[at..at + page.body[at..].find('"').unwrap()];
    let css = css.replace("&#x2f;", "/");
    assert!(
        css.starts_with("/static/app.") && css != "/static/app.css",
        "{css}"
    );
    let p = b
        .send(HttpMethod::GET, &css, &[], &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(
        p.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(p.headers["content-encoding"], "gzip");
    assert_eq!(p.headers["content-type"], "text/css; charset=utf-8");
    let plain = b.get("/static/app.css").await;
    assert_eq!(plain.headers["cache-control"], "no-cache");
    assert!(plain.body.contains(":focus-visible"));
    // A page asked for gzip is not compressed (BREACH: a CSRF token beside chosen text).
    let page = b
        .send(
            HttpMethod::GET,
            "/reset",
            &[],
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert!(page.headers.get("content-encoding").is_none());
    assert_eq!(
        b.get("/static/nothing.js").await.status,
        StatusCode::NOT_FOUND
    );
}

/// With JavaScript off there is no browser check to run: the page says so (not "Checking your
/// browser…" for ever), and the form goes through on a small quota per address; the challenge
/// is still required and used once.
#[tokio::test]
async fn a_browser_without_javascript_starts_a_reset_on_a_small_quota() {
    let s = Server::start().await;
    s.registered_user("nojs").await;
    let mut b = Browser::new(&s);
    let page = b.get("/reset").await;
    assert!(page.body.contains("id=\"pow-noscript\""), "{}", page.body);
    assert!(
        page.body.contains("id=\"pow-status\"") && page.body.contains(" hidden>"),
        "the waiting text is only for browsers that run the check"
    );
    let csrf = page.field("csrf");
    let mut codes = Vec::new();
    for i in 0..6 {
        let page = b.get("/reset").await;
        let pow = page.attr("data-pow");
        let p = b
            .post(
                "/start",
                &[
                    ("csrf", &csrf),
                    ("kind", "reset"),
                    ("user", "nojs"),
                    ("pow", &pow),
                ],
            )
            .await;
        codes.push(p.status);
        if i == 0 {
            assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
            // The same challenge again: used.
            let again = b
                .post(
                    "/start",
                    &[
                        ("csrf", &csrf),
                        ("kind", "reset"),
                        ("user", "nojs"),
                        ("pow", &pow),
                    ],
                )
                .await;
            assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
        }
        if p.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(p.headers.contains_key("retry-after"));
            assert!(p.body.contains("without JavaScript"), "{}", p.body);
        }
    }
    assert_eq!(
        codes,
        [
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let ev = s.audit("activity=rate_limited").await;
    assert!(
        ev.iter().any(|e| e["reason"] == "no_script_quota"),
        "{ev:#?}"
    );
}
