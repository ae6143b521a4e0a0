//! Templates (minijinja, compiled into the binary, HTML auto-escaped) and the `t()` function
//! they use for their text.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use sspr_app::Lang;

use crate::i18n::CATALOG;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

/// Every template, by name.
pub static TEMPLATES: &[(&str, &str)] = templates![
    "base.html",
    "macros.html",
    "home.html",
    "error.html",
    "start.html",
    "needinfo.html",
    "methods.html",
    "verify.html",
    "password.html",
    "unlock.html",
    "done.html",
    "change.html",
    "invite.html",
    "register_signin.html",
    "register_home.html",
    "register_questions.html",
    "register_totp.html",
    "register_recovery.html",
    "register_passkey.html",
    "register_remove.html",
    "admin_signin.html",
    "admin_register.html",
    "admin_insights.html",
    "admin_policy.html",
    "admin_users.html",
    "admin_audit.html",
    "admin_expiry.html",
];

/// Rust sources that call `tr(…)`, for the test that every key exists.
pub static SOURCES: &[(&str, &str)] = &[
    ("pages.rs", include_str!("pages.rs")),
    ("register.rs", include_str!("register.rs")),
    ("change.rs", include_str!("change.rs")),
    ("invite.rs", include_str!("invite.rs")),
    ("admin/mod.rs", include_str!("admin/mod.rs")),
    ("admin/audit.rs", include_str!("admin/audit.rs")),
    ("admin/expiry.rs", include_str!("admin/expiry.rs")),
    (
        "admin/insights_page.rs",
        include_str!("admin/insights_page.rs"),
    ),
    ("admin/policy.rs", include_str!("admin/policy.rs")),
    ("admin/users.rs", include_str!("admin/users.rs")),
    ("web.rs", include_str!("web.rs")),
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, src) in TEMPLATES {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!(template = name, error = %e, "template does not compile");
        }
    }
    env.add_function("t", t);
    env.add_function("asset", |name: &str| crate::assets::path(name));
    env
});

fn lang_of(state: &State) -> Lang {
    match state.lookup("lang").as_ref().and_then(Value::as_str) {
        Some("zh") => Lang::Zh,
        _ => Lang::En,
    }
}

/// `{{ t("key", name=value) }}`: the page text in the page's language.
fn t(state: &State, key: &str, kwargs: Kwargs) -> Result<String, Error> {
    let mut args = Vec::new();
    for k in kwargs.args() {
        let v: Value = kwargs.get(k)?;
        args.push((k, v.to_string()));
    }
    if key.is_empty() {
        return Err(Error::new(ErrorKind::InvalidOperation, "t() needs a key"));
    }
    Ok(CATALOG.tr(lang_of(state), key, &args))
}

/// Renders `name` with `ctx`. A template error is a bug: it is logged and the user gets a
/// plain page that still says what to do.
pub fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    match ENV.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %format!("{e:#}"), "template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>Something went wrong on this page. Go back and try again; if it happens again, tell your helpdesk.</p>".to_string()),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn every_template_compiles() {
        for (name, _) in TEMPLATES {
            if let Err(e) = ENV.get_template(name) {
                panic!("{name}: {e:#}");
            }
        }
    }
}
