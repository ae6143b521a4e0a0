//! What every handler needs to know about the request: the client's IP (trusted proxies
//! only), the client type it declares, and its language.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::Response;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use sspr_app::{AppError, ErrorKind, Lang, RequestCtx};
use sspr_domain::ClientType;

use crate::State;

/// The client's address: the socket peer, or, when the peer is a configured trusted proxy,
/// the right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: Option<IpAddr>, xff: Option<&str>, trusted: &[IpNet]) -> String {
    let Some(peer) = peer else {
        return "unknown".into();
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer.to_string();
    }
    let mut chosen = peer;
    if let Some(h) = xff {
        for hop in h.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    chosen = ip;
                    if !is_trusted(&ip) {
                        break;
                    }
                }
                // Garbage in the header: stop at the last address we could trust.
                Err(_) => break,
            }
        }
    }
    chosen.to_string()
}

pub struct Ctx(pub RequestCtx);

impl FromRequestParts<Arc<State>> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Ctx(ctx_from_parts(parts, state)))
    }
}

pub fn ctx_from_parts(parts: &Parts, state: &State) -> RequestCtx {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    let ip = client_ip(peer, header("x-forwarded-for"), &state.trusted_proxies);
    // A request may say what kind of client sent it, but never that it is sspr itself.
    let client_type = header(sspr_proto::CLIENT_TYPE_HEADER)
        .and_then(ClientType::parse)
        .filter(|c| *c != ClientType::System)
        .unwrap_or(ClientType::Api);
    let query_lang = parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang=")))
        .map(Lang::negotiate);
    let lang =
        query_lang.unwrap_or_else(|| Lang::negotiate(header("accept-language").unwrap_or("")));
    let mut ctx = RequestCtx::new(ip, client_type, lang);
    // Only the logon agent speaks for logins on a machine; a bounded, printable value or none.
    if client_type.is_logon_agent() {
        ctx.remote_host = header(sspr_proto::REMOTE_HOST_HEADER)
            .map(str::trim)
            .filter(|h| !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string);
    }
    ctx
}

/// The bearer token of `Authorization: Bearer …`, if any.
pub fn bearer_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string())
}

/// The bearer token, where one is optional; [`crate::auth`] has the extractors for where one
/// is required.
pub struct Bearer(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Bearer(bearer_token(parts)))
    }
}

/// A JSON body whose every rejection (wrong content type, bad syntax, wrong types, too large)
/// becomes an API error that says what to fix, with a support code in the audit log.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<Arc<State>> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<State>) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let ctx = ctx_from_parts(&parts, state);
        let req = Request::from_parts(parts, body);
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rej) => {
                use axum::extract::rejection::JsonRejection as J;
                let (kind, status, msg) = match &rej {
                    J::MissingJsonContentType(_) => (
                        ErrorKind::Invalid,
                        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "Send the body as JSON with the header Content-Type: application/json."
                            .to_string(),
                    ),
                    J::JsonSyntaxError(e) => (
                        ErrorKind::Invalid,
                        axum::http::StatusCode::BAD_REQUEST,
                        format!("The body is not valid JSON: {}", inner(&e.body_text())),
                    ),
                    J::JsonDataError(e) => (
                        ErrorKind::Invalid,
                        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "The JSON does not have the expected fields and types: {}",
                            inner(&e.body_text())
                        ),
                    ),
                    J::BytesRejection(_) => (
                        ErrorKind::Invalid,
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "The request body is too large; the limit is {} bytes.",
                            crate::BODY_LIMIT
                        ),
                    ),
                    _ => (
                        ErrorKind::Invalid,
                        axum::http::StatusCode::BAD_REQUEST,
                        rej.body_text(),
                    ),
                };
                let err = AppError::new(kind, msg);
                Err(crate::respond::error_with_status(state, &ctx, err, Some(status)).await)
            }
        }
    }
}

/// serde's message without axum's prefix.
fn inner(s: &str) -> String {
    s.split_once(": ")
        .map(|(_, r)| r.to_string())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
        let peer = Some("203.0.113.9".parse().unwrap());
        assert_eq!(
            client_ip(peer, Some("1.2.3.4"), &nets(&["10.0.0.0/8"])),
            "203.0.113.9"
        );
    }

    #[test]
    fn trusted_proxy_yields_the_rightmost_untrusted_hop() {
        let peer = Some("10.0.0.2".parse().unwrap());
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(peer, Some("6.6.6.6, 198.51.100.7, 10.0.0.5"), &t),
            "198.51.100.7"
        );
        assert_eq!(client_ip(peer, None, &t), "10.0.0.2");
        assert_eq!(client_ip(peer, Some("junk"), &t), "10.0.0.2");
    }
}
