//! Registration of security info in the browser: sign in with the current password, then add,
//! confirm, replace or remove the methods a later reset can use (email, mobile number,
//! security questions, authenticator app), and say they are still current when the policy
//! asks. The session token lives in an HttpOnly `__Host-` cookie, never in a URL.
//!
//! Every change answers with the registration page itself, its result on top (a success is
//! always shown; an error with its support code, in place of the page's usual status).

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};
use sspr_app::ports::SessionRecord;
use sspr_app::{AppError, ErrorKind};
use sspr_domain::Method;
use sspr_domain::questions::{ANSWER_MAX, ANSWER_MIN};
use sspr_proto::{Answer, RegistrationStatus};
use sspr_server::State;

use sspr_server::respond::retry_minutes;

use crate::web::{Gate, Gated, Posted, SESSION_COOKIE, Web, cookie};

pub fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/register", get(home))
        .route("/register/sign-in", post(sign_in))
        .route("/register/sign-out", post(sign_out))
        .route("/register/email", post(add_email))
        .route("/register/email/verify", post(verify_email))
        .route("/register/phone", post(add_phone))
        .route("/register/phone/verify", post(verify_phone))
        .route("/register/questions", get(questions).post(save_questions))
        .route("/register/totp", post(enrol_totp))
        .route("/register/totp/verify", post(verify_totp))
        .route("/register/recovery-codes", post(make_recovery_codes))
        .route("/register/passkey", post(start_passkey))
        .route("/register/passkey/verify", post(finish_passkey))
        .route("/register/remove", post(remove))
        .route("/register/confirm", post(confirm))
}

// ---------------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------------

/// The signed-in user, or the sign-in form: plain without a session cookie, with a word why
/// (and the cookie cleared) when the session has expired or was signed out.
pub struct SignedIn(pub SessionRecord);

impl Gate for SignedIn {
    async fn check(mut w: Web, _form: bool) -> Result<(Web, Self), Response> {
        let Some(token) = w.cookie(SESSION_COOKIE).map(str::to_string) else {
            // A GET is someone arriving; a form posted without a session is unauthorised.
            let status = if w.is_get() {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            return Err(signin_page(w, status, None, ""));
        };
        let app = w.state.app.clone();
        match app.session(&w.ctx, &token).await {
            Ok(s) => Ok((w, SignedIn(s))),
            Err(e) if e.kind == ErrorKind::Unauthorized => {
                w.set.push(cookie(SESSION_COOKIE, "", 0));
                let e = AppError::new(ErrorKind::Unauthorized, w.tr("register-session-ended"));
                Err(signin_page(w, StatusCode::UNAUTHORIZED, Some(e), ""))
            }
            Err(e) => Err(w.fail(e).await),
        }
    }
}

fn signin_page(w: Web, status: StatusCode, error: Option<AppError>, user: &str) -> Response {
    w.page_status(
        status,
        "register_signin.html",
        json!({
            "user": user,
            "error": error.as_ref().map(|e| &e.message),
            "details": error.as_ref().map(|e| &e.details),
            "support_code": error.as_ref().and_then(|e| e.support_code.clone()),
            "retry_minutes": error.as_ref().and_then(retry_minutes),
        }),
    )
}

/// GET /register: the registration page, or the sign-in form. After a change it shows what
/// the change did, once (see [`after_change`]).
pub async fn home(Gated(SignedIn(s), mut w): Gated<SignedIn>) -> Response {
    let app = w.state.app.clone();
    let mut v = View::default();
    if let Some((focus, notice)) = w.take_notice() {
        v.focus = FOCUSABLE.iter().copied().find(|f| *f == focus);
        v.notice = Some(notice);
    }
    match app.my_status(&w.ctx, &s).await {
        Ok(st) => home_page(w, &s, st, v),
        Err(e) => w.fail(e).await,
    }
}

/// The fields a change may leave focused (a code field after a code was sent): the notice's
/// tag.
const FOCUSABLE: [&str; 2] = ["email-code", "phone-code"];

/// Signs in with the user ID and current password; the session goes into a cookie.
pub async fn sign_in(p: Posted) -> Response {
    let user = p.get("user").to_string();
    let password = p.get("password").to_string();
    let mut w = p.web;
    let app = w.state.app.clone();
    match app.sign_in(&w.ctx, &user, &password).await {
        Ok(r) => {
            // A session this browser held before is over now.
            if let Some(old) = w.cookie(SESSION_COOKIE).map(str::to_string)
                && let Ok(old) = app.session(&w.ctx, &old).await
                && let Err(e) = app.sign_out(&old).await
            {
                tracing::warn!(error = %e.log, "could not end the previous session");
            }
            w.set.push(cookie(
                SESSION_COOKIE,
                &r.session_token,
                r.expires_in.max(60),
            ));
            w.redirect("/register")
        }
        Err(e) => {
            let e = w.audited(e).await;
            let status = w.status_for(&e);
            if e.kind == ErrorKind::PasswordChangeRequired {
                return crate::change::required(w, status, e, user.trim()).await;
            }
            signin_page(w, status, Some(e), user.trim())
        }
    }
}

/// Signs out (if still signed in) and forgets the cookie either way.
pub async fn sign_out(p: Posted) -> Response {
    let mut w = p.web;
    let app = w.state.app.clone();
    let token = w.cookie(SESSION_COOKIE).map(str::to_string);
    w.set.push(cookie(SESSION_COOKIE, "", 0));
    if let Some(token) = token
        && let Ok(s) = app.session(&w.ctx, &token).await
        && let Err(e) = app.sign_out(&s).await
    {
        return w.fail(e).await;
    }
    w.redirect("/")
}

// ---------------------------------------------------------------------------------------------
// The registration page
// ---------------------------------------------------------------------------------------------

/// What a change adds to the registration page.
#[derive(Default)]
struct View {
    /// What the change did (the service's message).
    notice: Option<String>,
    error: Option<AppError>,
    /// The id of the field to focus (and, with an error, to mark invalid).
    focus: Option<&'static str>,
    /// What the user typed into the email or phone field, given back after an error.
    email: String,
    phone: String,
}

/// One method as the page shows it.
#[derive(Serialize)]
struct Section {
    method: &'static str,
    /// The policy offers it to this user (else it can only be removed).
    available: bool,
    active: bool,
    active_to: Option<String>,
    pending: bool,
    pending_to: Option<String>,
    /// Recovery codes still unused.
    remaining: Option<u32>,
}

fn sections(st: &RegistrationStatus) -> Vec<Section> {
    Method::ALL
        .into_iter()
        .filter_map(|m| {
            let name = m.as_str();
            let available = st.available_methods.iter().any(|a| a == name);
            let find = |status: &str| {
                st.methods
                    .iter()
                    .find(|r| r.method == name && r.status == status)
            };
            let active = find("active");
            let pending = find("pending");
            (available || active.is_some() || pending.is_some()).then(|| Section {
                method: name,
                available,
                active: active.is_some(),
                active_to: active.and_then(|r| r.destination.clone()),
                pending: pending.is_some(),
                pending_to: pending.and_then(|r| r.destination.clone()),
                remaining: active.and_then(|r| r.remaining),
            })
        })
        .collect()
}

fn home_page(mut w: Web, s: &SessionRecord, st: RegistrationStatus, v: View) -> Response {
    let status = match &v.error {
        Some(e) => w.status_for(e),
        None => StatusCode::OK,
    };
    let e = v.error.as_ref();
    let display_name = if s.display_name.trim().is_empty() {
        s.login.clone()
    } else {
        format!("{} ({})", s.display_name, s.login)
    };
    w.page_status(
        status,
        "register_home.html",
        json!({
            "who": display_name,
            "sections": sections(&st),
            "status": st,
            "notice": v.notice,
            "error": e.map(|e| &e.message),
            "details": e.map(|e| &e.details),
            "support_code": e.and_then(|e| e.support_code.clone()),
            "retry_minutes": e.and_then(retry_minutes),
            "focus": v.focus,
            "invalid": if v.error.is_some() { v.focus } else { None },
            "email_value": v.email,
            "phone_value": v.phone,
        }),
    )
}

/// The registration page after a change. On success: post/redirect/get, so that a reload or
/// Back does not send the form again (another code, another removal); the page then shows
/// the service's message and the status read again. On failure: the error and the current
/// status, with what the user typed.
async fn after_change(
    w: Web,
    s: &SessionRecord,
    r: Result<RegistrationStatus, AppError>,
    mut v: View,
    focus_ok: Option<&'static str>,
    focus_err: Option<&'static str>,
) -> Response {
    let app = w.state.app.clone();
    match r {
        Ok(st) => w.redirect_with_notice("/register", focus_ok.unwrap_or(""), &st.message),
        Err(e) => {
            let e = w.audited(e).await;
            match app.my_status(&w.ctx, s).await {
                Ok(st) => {
                    v.error = Some(e);
                    v.focus = focus_err;
                    home_page(w, s, st, v)
                }
                Err(_) => w.error(e),
            }
        }
    }
}

/// A change form from a signed-in user.
type Change = Gated<SignedIn, Posted>;

async fn add_contact(Gated(SignedIn(s), p): Change, method: Method) -> Response {
    let value = p.get("value").trim().to_string();
    let w = p.web;
    let app = w.state.app.clone();
    let r = app.add_contact(&w.ctx, &s, method, &value).await;
    let (v, ok, err) = match method {
        Method::Sms => (
            View {
                phone: value,
                ..View::default()
            },
            "phone-code",
            "phone",
        ),
        _ => (
            View {
                email: value,
                ..View::default()
            },
            "email-code",
            "email",
        ),
    };
    after_change(w, &s, r, v, Some(ok), Some(err)).await
}

async fn confirm_contact(Gated(SignedIn(s), p): Change, method: Method) -> Response {
    let code = p.get("code").to_string();
    let w = p.web;
    let app = w.state.app.clone();
    let r = app.confirm_contact(&w.ctx, &s, method, &code).await;
    let field = match method {
        Method::Sms => "phone-code",
        _ => "email-code",
    };
    after_change(w, &s, r, View::default(), None, Some(field)).await
}

/// Adds (or replaces) the email address; a code goes there.
pub async fn add_email(p: Change) -> Response {
    add_contact(p, Method::Email).await
}

pub async fn verify_email(p: Change) -> Response {
    confirm_contact(p, Method::Email).await
}

/// Adds (or replaces) the mobile number; a code is texted there.
pub async fn add_phone(p: Change) -> Response {
    add_contact(p, Method::Sms).await
}

pub async fn verify_phone(p: Change) -> Response {
    confirm_contact(p, Method::Sms).await
}

/// Removes one method.
pub async fn remove(Gated(SignedIn(s), p): Change) -> Response {
    let method = Method::parse(p.get("method"));
    // Nothing is removed on the first press: a page says what goes and asks again.
    if let Some(m) = method
        && p.get("confirm") != "yes"
    {
        return p
            .web
            .page("register_remove.html", json!({ "method": m.as_str() }));
    }
    let w = p.web;
    let app = w.state.app.clone();
    let r = match method {
        Some(m) => app.remove_method(&w.ctx, &s, m).await,
        None => Err(AppError::invalid(w.tr("register-bad-method"))),
    };
    after_change(w, &s, r, View::default(), None, None).await
}

/// The user says the registered methods are still current.
pub async fn confirm(Gated(SignedIn(s), p): Change) -> Response {
    let w = p.web;
    let app = w.state.app.clone();
    let r = app.reconfirm(&w.ctx, &s).await;
    after_change(w, &s, r, View::default(), None, None).await
}

// ---------------------------------------------------------------------------------------------
// Security questions
// ---------------------------------------------------------------------------------------------

/// At most this many rows are read from a posted form (the policy allows 3 to 5).
const MAX_ROWS: usize = 10;

pub async fn questions(Gated(SignedIn(s), w): Gated<SignedIn>) -> Response {
    questions_page(w, &s, &[], None).await
}

async fn questions_page(
    mut w: Web,
    s: &SessionRecord,
    chosen: &[String],
    error: Option<AppError>,
) -> Response {
    let app = w.state.app.clone();
    let list = match app.question_list(&w.ctx).await {
        Ok(l) => l,
        Err(e) => return w.fail(e).await,
    };
    // Whether answers exist already: saving replaces them.
    let replacing = app.my_status(&w.ctx, s).await.is_ok_and(|st| {
        st.methods
            .iter()
            .any(|m| m.method == Method::Questions.as_str() && m.status == "active")
    });
    let rows: Vec<Value> = (1..=usize::from(list.to_register))
        .map(|n| {
            json!({
                "n": n,
                "selected": chosen.get(n - 1).map(String::as_str).unwrap_or(""),
            })
        })
        .collect();
    let status = match &error {
        Some(e) => w.status_for(e),
        None => StatusCode::OK,
    };
    let e = error.as_ref();
    w.page_status(
        status,
        "register_questions.html",
        json!({
            "rows": rows,
            "questions": list.questions,
            "to_register": list.to_register,
            "replacing": replacing,
            "answer_min": ANSWER_MIN,
            "answer_max": ANSWER_MAX,
            "error": e.map(|e| &e.message),
            "details": e.map(|e| &e.details),
            "support_code": e.and_then(|e| e.support_code.clone()),
            "retry_minutes": e.and_then(retry_minutes),
        }),
    )
}

/// Saves the questions and answers: fields `q1`…`qN` (question ids) and `a1`…`aN`.
pub async fn save_questions(Gated(SignedIn(s), p): Change) -> Response {
    let mut answers = Vec::new();
    for n in 1..=MAX_ROWS {
        let Some(q) = p.form.get(&format!("q{n}")) else {
            break;
        };
        answers.push(Answer {
            question_id: q.trim().to_string(),
            answer: p.get(&format!("a{n}")).to_string(),
        });
    }
    let w = p.web;
    let chosen: Vec<String> = answers.iter().map(|a| a.question_id.clone()).collect();
    let app = w.state.app.clone();
    let r = if answers.is_empty() || answers.iter().any(|a| a.question_id.is_empty()) {
        Err(AppError::invalid(w.tr("register-questions-missing")))
    } else {
        app.set_questions(&w.ctx, &s, &answers).await
    };
    match r {
        Ok(st) => after_change(w, &s, Ok(st), View::default(), None, None).await,
        Err(e) => {
            let e = w.audited(e).await;
            // The choices come back; the answers are typed again.
            questions_page(w, &s, &chosen, Some(e)).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Authenticator app
// ---------------------------------------------------------------------------------------------

/// Starts (or restarts) authenticator enrolment: the QR code, the key to type, a code field.
pub async fn enrol_totp(Gated(SignedIn(s), p): Change) -> Response {
    let w = p.web;
    let app = w.state.app.clone();
    match app.enrol_totp(&w.ctx, &s).await {
        Ok(en) => {
            let qr = inline_svg(&en.qr_svg);
            if qr.is_none() {
                tracing::error!("the authenticator QR code is not safe to inline; not shown");
            }
            w.page(
                "register_totp.html",
                json!({
                    "enrol": true,
                    "message": en.message,
                    "qr": qr,
                    "secret": en.secret,
                    "otpauth_uri": en.otpauth_uri,
                    "error": null,
                }),
            )
        }
        Err(e) => after_change(w, &s, Err(e), View::default(), None, None).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery codes
// ---------------------------------------------------------------------------------------------

/// A new set of recovery codes, shown this once, with the same list as a text file to save.
/// The page is the only place the codes ever appear (it is `no-store`, like every page).
pub async fn make_recovery_codes(Gated(SignedIn(s), p): Change) -> Response {
    let w = p.web;
    let app = w.state.app.clone();
    match app.generate_recovery_codes(&w.ctx, &s).await {
        Ok(rc) => {
            let when = sspr_domain::clock::rfc3339(app.now());
            let mut file = w.tr_args("register-recovery-file-title", &[("user", s.login.clone())]);
            file.push_str("\n\n");
            for (i, c) in rc.codes.iter().enumerate() {
                file.push_str(&format!("{:>2}. {c}\n", i + 1));
            }
            file.push('\n');
            file.push_str(&w.tr_args("register-recovery-file-note", &[("when", when)]));
            file.push('\n');
            w.page(
                "register_recovery.html",
                json!({
                    "message": rc.message,
                    "codes": rc.codes,
                    "download": percent_encoding::utf8_percent_encode(&file, percent_encoding::NON_ALPHANUMERIC).to_string(),
                    "filename": format!("recovery-codes-{}.txt", file_safe(&s.login)),
                }),
            )
        }
        Err(e) => after_change(w, &s, Err(e), View::default(), None, None).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Passkeys
// ---------------------------------------------------------------------------------------------

/// The page whose script asks the browser to create a passkey for the options in it.
pub async fn start_passkey(Gated(SignedIn(s), p): Change) -> Response {
    let w = p.web;
    let app = w.state.app.clone();
    match app.start_passkey_registration(&w.ctx, &s).await {
        Ok(o) => w.page(
            "register_passkey.html",
            json!({ "options": o.options.to_string(), "message": o.message, "error": null }),
        ),
        Err(e) => after_change(w, &s, Err(e), View::default(), None, None).await,
    }
}

/// The browser's answer: the passkey is added, or the page says why not.
pub async fn finish_passkey(Gated(SignedIn(s), p): Change) -> Response {
    let credential = p.json("credential");
    let w = p.web;
    let app = w.state.app.clone();
    let r = app
        .finish_passkey_registration(&w.ctx, &s, &credential)
        .await;
    after_change(w, &s, r, View::default(), None, None).await
}

/// A login as part of a file name: letters, digits, `-`, `_` and `.` kept, the rest `_`.
fn file_safe(login: &str) -> String {
    login
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Confirms the authenticator app with a code it shows.
pub async fn verify_totp(Gated(SignedIn(s), p): Change) -> Response {
    let code = p.get("code").to_string();
    let mut w = p.web;
    let app = w.state.app.clone();
    match app.confirm_totp(&w.ctx, &s, &code).await {
        Ok(st) => after_change(w, &s, Ok(st), View::default(), None, None).await,
        // A wrong code: the code field again (the QR code is not shown twice; starting over
        // makes a new one).
        Err(e) if e.kind == ErrorKind::VerificationFailed => {
            let e = w.audited(e).await;
            let status = w.status_for(&e);
            w.page_status(
                status,
                "register_totp.html",
                json!({
                    "enrol": false,
                    "error": e.message,
                    "details": e.details,
                    "support_code": e.support_code,
                    "retry_minutes": retry_minutes(&e),
                }),
            )
        }
        Err(e) => after_change(w, &s, Err(e), View::default(), None, Some("totp-code")).await,
    }
}

/// The QR code as markup to put inside the page: the qrcode crate's SVG without its XML
/// declaration (not allowed inside HTML). It is our own output, but it is rendered unescaped,
/// so anything that could run or that the page CSP would block (inline style) means it is not
/// shown at all: no script, no event handler, no style, no link, no foreign content.
fn inline_svg(svg: &str) -> Option<String> {
    let start = svg.find("<svg")?;
    let body = svg.get(start..)?.trim_end();
    let lower = body.to_ascii_lowercase();
    let bad = [
        "<script",
        "style",
        "href",
        "javascript:",
        "<foreignobject",
        "<!",
    ]
    .iter()
    .any(|p| lower.contains(p))
        || has_event_handler(&lower);
    (body.ends_with("</svg>") && !bad).then(|| body.to_string())
}

/// Whether markup has an `on…=` attribute.
fn has_event_handler(lower: &str) -> bool {
    let b = lower.as_bytes();
    b.windows(3).enumerate().any(|(i, w)| {
        w[0].is_ascii_whitespace() && w[1] == b'o' && w[2] == b'n' && {
            let rest = &b[i + 3..];
            let name = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
            name > 0
                && rest[name..]
                    .iter()
                    .find(|c| !c.is_ascii_whitespace())
                    .is_some_and(|c| *c == b'=')
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_inlines_without_style_or_script() {
        let svg = sspr_app::totp::qr_svg("otpauth://totp/sspr:demo?secret=JBSWY3DPEHPK3PXP");
        let out = inline_svg(&svg);
        assert!(out.is_some(), "{svg}");
        let out = out.unwrap_or_default();
        assert!(out.starts_with("<svg") && out.ends_with("</svg>"));
        assert!(!out.contains("<?xml") && !out.contains("style"));
    }

    #[test]
    fn unsafe_svg_is_refused() {
        for bad in [
            "<svg><script>alert(1)</script></svg>",
            "<svg style=\"fill:red\"></svg>",
            "<svg><style>*{}</style></svg>",
            "<svg onload=\"x()\"></svg>",
            "<svg><a href=\"javascript:x()\"></a></svg>",
            "<svg><rect ONCLICK = 'x'/></svg>",
            "<p>no svg</p>",
        ] {
            assert_eq!(inline_svg(bad), None, "{bad}");
        }
        assert!(inline_svg("<svg version=\"1.0\" d=\"M0 0h1\"></svg>").is_some());
    }
}
