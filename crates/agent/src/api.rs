//! The server's flow API as the agent uses it, and its HTTPS implementation.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sspr_proto::{
    ApiError, ChallengeRequest, ChallengeResponse, FlowResponse, NewPasswordRequest,
    PasswordPolicyResponse, StartRequest, VerifyRequest,
};

use crate::config::{AgentConfig, ConfigError, Proxy};
use crate::journal::Journal;

/// Why a call did not give an answer the dialogue can use.
#[derive(Debug, Clone)]
pub enum ApiFailure {
    /// The server answered with an error meant for the user (wrong code, limit, rule…).
    Refused { status: u16, error: ApiError },
    /// No answer in time: DNS, connection refused, proxy, timeout.
    Unreachable(String),
    /// The server could not be verified: certificate, pin or TLS version.
    Untrusted(String),
    /// An answer that is not the API's (a captive portal, a wrong URL).
    Protocol(String),
}

impl ApiFailure {
    /// The cause for the machine's log.
    pub fn cause(&self) -> String {
        match self {
            ApiFailure::Refused { status, error } => {
                format!("HTTP {status} {}: {}", error.error, error.message)
            }
            ApiFailure::Unreachable(c) => format!("unreachable: {c}"),
            ApiFailure::Untrusted(c) => format!("untrusted: {c}"),
            ApiFailure::Protocol(c) => format!("protocol: {c}"),
        }
    }
}

/// The flow calls. The flow token comes back from `start` and goes into every later call.
pub trait ResetApi {
    fn start(&mut self, user: &str, kind: &str) -> Result<FlowResponse, ApiFailure>;
    fn challenge(&mut self, flow: &str, method: &str) -> Result<ChallengeResponse, ApiFailure>;
    fn verify(&mut self, flow: &str, req: &VerifyRequest) -> Result<FlowResponse, ApiFailure>;
    /// The rules, for this verified flow's user where the directory has per-user policies.
    fn password_policy(&mut self, flow: &str) -> Result<PasswordPolicyResponse, ApiFailure>;
    fn set_password(&mut self, flow: &str, new_password: &str) -> Result<FlowResponse, ApiFailure>;
    fn unlock(&mut self, flow: &str) -> Result<FlowResponse, ApiFailure>;
    /// Changes a password the user knows (`POST /api/v1/password/change`).
    fn change_password(
        &mut self,
        user: &str,
        current: &str,
        new_password: &str,
    ) -> Result<FlowResponse, ApiFailure> {
        let _ = (user, current, new_password);
        Err(ApiFailure::Protocol(
            "this client cannot change passwords".into(),
        ))
    }
}

/// `ResetApi` over HTTPS, blocking, every request bounded by the configured timeout.
pub struct HttpApi {
    agent: ureq::Agent,
    base: String,
    lang: &'static str,
    journal: Arc<dyn Journal>,
    verbose: bool,
    origin: Origin,
}

/// Who is asking, as the server's audit log and limits see it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// SSH rather than a local login screen.
    pub ssh: bool,
    /// PAM_RHOST: the remote host an SSH login comes from.
    pub remote_host: Option<String>,
}

impl Origin {
    fn client_type(&self) -> &'static str {
        if self.ssh { "ssh" } else { "logon_screen" }
    }

    /// A header value: printable ASCII, bounded, or nothing.
    fn remote_host(&self) -> Option<&str> {
        self.remote_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()))
    }
}

impl HttpApi {
    pub fn new(
        cfg: &AgentConfig,
        lang: crate::Lang,
        journal: Arc<dyn Journal>,
    ) -> Result<HttpApi, ConfigError> {
        let tls = crate::tls::client_config(cfg)?;
        let mut b = ureq::AgentBuilder::new()
            .tls_config(tls)
            .https_only(true)
            .redirects(0)
            .timeout_connect(cfg.connect_timeout)
            .resolver(BoundedResolver(cfg.connect_timeout))
            .timeout(cfg.timeout)
            .user_agent(concat!("sspr-logon/", env!("CARGO_PKG_VERSION")));
        let proxy = match &cfg.proxy {
            Proxy::FromEnvironment => {
                crate::config::proxy_from_env(cfg.host(), |k| std::env::var(k).ok())
            }
            Proxy::None => None,
            Proxy::Url(u) => Some(u.clone()),
        };
        if let Some(u) = proxy {
            let shown = without_userinfo(&u);
            if cfg.verbose {
                journal.detail(&format!("using proxy {shown}"));
            }
            let p =
                ureq::Proxy::new(&u).map_err(|e| ConfigError(format!("proxy {shown:?}: {e}")))?;
            b = b.proxy(p);
        }
        Ok(HttpApi {
            agent: b.build(),
            base: cfg.server_url.clone(),
            lang: lang.tag(),
            journal,
            verbose: cfg.verbose,
            origin: Origin::default(),
        })
    }

    /// Says where the login comes from (SSH, its remote host) on every request.
    pub fn with_origin(mut self, origin: Origin) -> HttpApi {
        self.origin = origin;
        self
    }

    fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        flow: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<R, ApiFailure> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .agent
            .request(method, &url)
            .set(sspr_proto::CLIENT_TYPE_HEADER, self.origin.client_type())
            .set("accept-language", self.lang)
            .set("accept", "application/json");
        if let Some(host) = self.origin.remote_host() {
            req = req.set(sspr_proto::REMOTE_HOST_HEADER, host);
        }
        if let Some(token) = flow {
            req = req.set("authorization", &format!("Bearer {token}"));
        }
        let started = Instant::now();
        let result = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let ms = started.elapsed().as_millis();
        match result {
            Ok(resp) => {
                if self.verbose {
                    self.journal
                        .detail(&format!("{method} {path} -> {} in {ms} ms", resp.status()));
                }
                resp.into_json::<R>()
                    .map_err(|e| ApiFailure::Protocol(format!("{method} {path}: {e}")))
            }
            Err(ureq::Error::Status(status, resp)) => {
                if self.verbose {
                    self.journal
                        .detail(&format!("{method} {path} -> {status} in {ms} ms"));
                }
                match resp.into_json::<ApiError>() {
                    Ok(error) => Err(ApiFailure::Refused { status, error }),
                    // sspr's /readyz, or a load balancer with no healthy backend.
                    Err(_) if status == 503 => Err(ApiFailure::Unreachable(format!(
                        "{method} {path}: the server answers but is not ready (its database or \
                         directory is unreachable, or no instance is up; see the server's log)"
                    ))),
                    Err(_) => Err(ApiFailure::Protocol(format!(
                        "{method} {path}: HTTP {status} without an API error body"
                    ))),
                }
            }
            Err(ureq::Error::Transport(t)) => {
                let failure = classify(&t);
                if self.verbose {
                    self.journal.detail(&format!(
                        "{method} {path} failed after {ms} ms: {}",
                        failure.cause()
                    ));
                }
                Err(failure)
            }
        }
    }
}

/// A proxy URL fit for a log: `http://user:secret@host` loses its `user:secret@`.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Name resolution bounded like the connection: the C library's lookup has no timeout of its
/// own, and a dead DNS server must not hold a login screen for its retries (30 s and more).
struct BoundedResolver(std::time::Duration);

impl ureq::Resolver for BoundedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
        use std::net::ToSocketAddrs;
        let (tx, rx) = std::sync::mpsc::channel();
        let name = netloc.to_string();
        // A lookup that never ends leaves this thread behind; the login goes on without it.
        std::thread::spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(Iterator::collect));
        });
        rx.recv_timeout(self.0).unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("looking up {netloc} took longer than {:?}", self.0),
            ))
        })
    }
}

/// Tells an untrusted server (certificate, pin, protocol version) from an unreachable one.
fn classify(t: &ureq::Transport) -> ApiFailure {
    let mut text = t.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(e) = source {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return ApiFailure::Untrusted(tls_words(tls));
        }
        text = format!("{text}: {e}");
        source = e.source();
    }
    ApiFailure::Unreachable(text)
}

fn tls_words(e: &rustls::Error) -> String {
    use rustls::{AlertDescription, CertificateError, Error};
    match e {
        Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure) => {
            "the server's public key matches no pin_sha256 entry".into()
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not signed by a trusted CA (set ca_file?)".into()
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the server's certificate does not name the host in server_url".into()
        }
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            "the server's certificate has expired (or this computer's clock is wrong)".into()
        }
        Error::AlertReceived(AlertDescription::ProtocolVersion) | Error::PeerIncompatible(_) => {
            "the server does not speak TLS 1.2 or 1.3".into()
        }
        other => format!("TLS: {other}"),
    }
}

impl HttpApi {
    /// `GET /readyz`: reachable, trusted, and its database and directory answer.
    pub fn ready(&self) -> Result<(), ApiFailure> {
        self.call::<sspr_proto::Message>("GET", "/readyz", None, None::<&()>)
            .map(|_| ())
    }
}

impl ResetApi for HttpApi {
    fn start(&mut self, user: &str, kind: &str) -> Result<FlowResponse, ApiFailure> {
        let body = StartRequest {
            user: user.into(),
            kind: Some(kind.into()),
        };
        self.call("POST", "/api/v1/flow/start", None, Some(&body))
    }

    fn challenge(&mut self, flow: &str, method: &str) -> Result<ChallengeResponse, ApiFailure> {
        let body = ChallengeRequest {
            method: method.into(),
        };
        self.call("POST", "/api/v1/flow/challenge", Some(flow), Some(&body))
    }

    fn verify(&mut self, flow: &str, req: &VerifyRequest) -> Result<FlowResponse, ApiFailure> {
        self.call("POST", "/api/v1/flow/verify", Some(flow), Some(req))
    }

    fn password_policy(&mut self, flow: &str) -> Result<PasswordPolicyResponse, ApiFailure> {
        self.call("GET", "/api/v1/password-policy", Some(flow), None::<&()>)
    }

    fn set_password(&mut self, flow: &str, new_password: &str) -> Result<FlowResponse, ApiFailure> {
        let body = NewPasswordRequest {
            new_password: new_password.into(),
        };
        self.call("POST", "/api/v1/flow/password", Some(flow), Some(&body))
    }

    fn unlock(&mut self, flow: &str) -> Result<FlowResponse, ApiFailure> {
        self.call("POST", "/api/v1/flow/unlock", Some(flow), None::<&()>)
    }

    fn change_password(
        &mut self,
        user: &str,
        current: &str,
        new_password: &str,
    ) -> Result<FlowResponse, ApiFailure> {
        let body = sspr_proto::ChangePasswordRequest {
            user: user.into(),
            current_password: current.into(),
            new_password: new_password.into(),
        };
        self.call("POST", "/api/v1/password/change", None, Some(&body))
    }
}
