//! The portal's static files (one stylesheet, five scripts), compiled into the binary and
//! served under a name that carries a hash of their content: a page names the version it was
//! rendered with, so browsers may keep each file for a year, and a new release is fetched at
//! once. The plain names still answer, revalidated each time, for anything linked from outside.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    /// As templates name it: `app.css`.
    name: &'static str,
    /// As it is served: `app.3f2a9c1e.css`.
    versioned: String,
    kind: &'static str,
    body: &'static str,
}

const FILES: [(&str, &str, &str); 6] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../static/app.css"),
    ),
    (
        "pow.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/pow.js"),
    ),
    (
        "strength.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/strength.js"),
    ),
    (
        "passkey.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/passkey.js"),
    ),
    (
        "keep.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/keep.js"),
    ),
    (
        "resend.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/resend.js"),
    ),
];

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, kind, body)| {
            let hash = Sha256::digest(body.as_bytes());
            let tag: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
            let versioned = match name.rsplit_once('.') {
                Some((stem, ext)) => format!("{stem}.{tag}.{ext}"),
                None => format!("{name}.{tag}"),
            };
            Asset {
                name,
                versioned,
                kind,
                body,
            }
        })
        .collect()
});

/// The path a page links to for `name` (`/static/app.3f2a9c1e.css`).
pub fn path(name: &str) -> String {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => format!("/static/{}", a.versioned),
        None => format!("/static/{name}"),
    }
}

/// `GET /static/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let found = ASSETS.iter().find_map(|a| {
        if a.versioned == file {
            Some((a, "public, max-age=31536000, immutable"))
        } else if a.name == file {
            Some((a, "no-cache"))
        } else {
            None
        }
    });
    match found {
        Some((a, cache)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(a.kind)),
                (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            ],
            a.body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_has_a_versioned_path_that_changes_with_its_content() {
        for (name, _, _) in FILES {
            let p = path(name);
            assert!(
                p.starts_with("/static/") && p != format!("/static/{name}"),
                "{p}"
            );
        }
        assert_ne!(path("pow.js"), path("strength.js"));
        assert_eq!(path("nothing.js"), "/static/nothing.js");
    }
}
