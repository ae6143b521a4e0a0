//! SMS through an HTTPS gateway: a generic JSON API or Twilio's Messages API.
//!
//! The HTTP client is reqwest over rustls with a configuration built here (explicit ring
//! provider, TLS 1.2/1.3, Mozilla roots plus an optional private CA), HTTPS only unless
//! `allow_insecure`, no redirects (a redirect could carry the bearer token or the code
//! elsewhere) and bounded timeouts.
//!
//! # Deadline
//!
//! Each request, connect and answer included, is bounded by `timeout_secs` (reqwest's request
//! timeout, with the connect bounded by the smaller of it and 10 s, and the whole send wrapped
//! once more in a tokio timeout).
//!
//! # What counts as delivered
//!
//! A 2xx status alone does not: a proxy, a captive portal or a misconfigured URL answers 200
//! too. The answer must be what the configured kind promises:
//! - `json`: `204 No Content`, or a JSON document that does not report an error (no non-null `"error"` member, no
//!   `"success": false`, `"ok": false` or `"status": "error"/"failed"`), and, when
//!   `success_match` is set, a body containing that text;
//! - `twilio`: a JSON object with a message `"sid"` and a `"status"` other than `failed` or
//!   `undelivered`.
//!
//! Anything else is a retryable failure (`unexpected_answer`): the message may or may not have
//! gone out, and the gateway can tell a repeat by its `Idempotency-Key` (`sspr-{id}-{created}`,
//! the same for every copy of an outbox row; Twilio also gets `I-Twilio-Idempotency-Token`).
//! The log and `last_error` carry the answer, clipped, with the recipient masked and any run
//! of five or more digits (a code the gateway may echo) replaced.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use sspr_app::ports::OutboxMessage;
use sspr_domain::mask;

use crate::secret::{read_secret_file, redact};
use crate::{ConfigError, SendError, Sender};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmsKind {
    /// `POST url` with `{"to": "+49…", "message": "…"}` and `Authorization: Bearer <token>`.
    #[default]
    Json,
    /// Twilio: `POST url` with form fields `To`, `From`, `Body`, basic auth
    /// `account_sid:auth_token`. `url` defaults to the account's Messages endpoint.
    Twilio,
}

/// The `[sms]` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    pub kind: SmsKind,
    pub url: String,
    /// Permits a plain `http://` URL (a gateway on this host, or tests).
    pub allow_insecure: bool,
    /// Bearer token (json). Never read from the configuration file: see `token_file`.
    #[serde(skip)]
    pub token: String,
    pub token_file: Option<PathBuf>,
    /// Twilio account SID (the basic-auth user).
    pub account_sid: String,
    /// Twilio auth token. Never read from the configuration file: see `auth_token_file`.
    #[serde(skip)]
    pub auth_token: String,
    pub auth_token_file: Option<PathBuf>,
    /// Twilio sender number (E.164) or messaging service.
    pub from: String,
    /// Deadline for one request, connect and answer included.
    pub timeout_secs: u64,
    /// Most SMS sent at the same time (requests open to the gateway).
    pub concurrency: u32,
    /// Text a 2xx answer must contain to count as delivered, e.g. `"\"status\":\"queued\""`.
    /// Without it, `json` needs a JSON answer that reports no error.
    pub success_match: Option<String>,
    /// PEM file with a private CA, trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// E.164 prefixes codes may be sent to, e.g. `["+49", "+33"]`; empty allows all. A guard
    /// against toll fraud through premium-rate numbers.
    pub allowed_prefixes: Vec<String>,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            kind: SmsKind::Json,
            url: String::new(),
            allow_insecure: false,
            token: String::new(),
            token_file: None,
            account_sid: String::new(),
            auth_token: String::new(),
            auth_token_file: None,
            from: String::new(),
            timeout_secs: 10,
            concurrency: 4,
            success_match: None,
            ca_file: None,
            allowed_prefixes: Vec::new(),
        }
    }
}

impl fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsConfig")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("allow_insecure", &self.allow_insecure)
            .field("token", &redact(&self.token))
            .field("token_file", &self.token_file)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &redact(&self.auth_token))
            .field("auth_token_file", &self.auth_token_file)
            .field("from", &self.from)
            .field("timeout_secs", &self.timeout_secs)
            .field("concurrency", &self.concurrency)
            .field("success_match", &self.success_match)
            .field("ca_file", &self.ca_file)
            .field("allowed_prefixes", &self.allowed_prefixes)
            .finish()
    }
}

impl SmsConfig {
    /// Reads `token` / `auth_token` from their files when set (the CLI may instead fill the
    /// fields itself).
    pub fn load_secrets(&mut self) -> Result<(), ConfigError> {
        if let Some(p) = &self.token_file {
            self.token = read_secret_file(p, "sms.token_file")?;
        }
        if let Some(p) = &self.auth_token_file {
            self.auth_token = read_secret_file(p, "sms.auth_token_file")?;
        }
        Ok(())
    }

    /// The URL to post to: `url`, or for Twilio the account's Messages endpoint.
    pub fn effective_url(&self) -> String {
        if self.url.trim().is_empty() && self.kind == SmsKind::Twilio {
            format!(
                "https://api.twilio.com/2010-04-01/Accounts/{}/Messages.json",
                self.account_sid.trim()
            )
        } else {
            self.url.trim().to_string()
        }
    }

    /// Checks everything that can be checked without a network; returns the parsed URL.
    pub fn validate(&self) -> Result<reqwest::Url, ConfigError> {
        let raw = self.effective_url();
        if raw.is_empty() {
            return Err(ConfigError::new(
                "sms.url is empty: set it to your SMS gateway's HTTPS endpoint",
            ));
        }
        let url = reqwest::Url::parse(&raw)
            .map_err(|e| ConfigError::new(format!("sms.url {raw:?} is not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            "http" => {
                return Err(ConfigError::new(
                    "sms.url uses http://, which exposes codes and credentials: use https://, \
                     or set sms.allow_insecure = true for a gateway on this host",
                ));
            }
            other => {
                return Err(ConfigError::new(format!(
                    "sms.url: unsupported scheme {other:?}, use https://"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::new(
                "sms.url must not hold credentials: use sms.token_file or sms.auth_token_file",
            ));
        }
        if self.timeout_secs == 0 || self.timeout_secs > 40 {
            return Err(ConfigError::new(
                "sms.timeout_secs must be between 1 and 40",
            ));
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err(ConfigError::new("sms.concurrency must be between 1 and 64"));
        }
        if self.success_match.as_deref().is_some_and(|m| m.is_empty()) {
            return Err(ConfigError::new(
                "sms.success_match is empty: remove it, or set the text a successful answer contains",
            ));
        }
        match self.kind {
            SmsKind::Json => {
                if self.token.is_empty() {
                    return Err(ConfigError::new(
                        "sms.kind = \"json\" needs a bearer token: set sms.token_file",
                    ));
                }
            }
            SmsKind::Twilio => {
                if self.account_sid.trim().is_empty() {
                    return Err(ConfigError::new(
                        "sms.kind = \"twilio\" needs sms.account_sid",
                    ));
                }
                if self.auth_token.is_empty() {
                    return Err(ConfigError::new(
                        "sms.kind = \"twilio\" needs sms.auth_token_file",
                    ));
                }
                if self.from.trim().is_empty() {
                    return Err(ConfigError::new(
                        "sms.kind = \"twilio\" needs sms.from (your Twilio number, e.g. \"+4930…\")",
                    ));
                }
            }
        }
        for p in &self.allowed_prefixes {
            let digits = p.strip_prefix('+').unwrap_or("");
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(ConfigError::new(format!(
                    "sms.allowed_prefixes: {p:?} is not a number prefix: use the form \"+49\""
                )));
            }
        }
        Ok(url)
    }
}

/// SMS through an HTTP gateway.
pub struct SmsSender {
    client: reqwest::Client,
    url: reqwest::Url,
    kind: SmsKind,
    token: String,
    account_sid: String,
    auth_token: String,
    from: String,
    allowed_prefixes: Vec<String>,
    timeout: Duration,
    success_match: Option<String>,
}

impl SmsSender {
    pub fn new(cfg: &SmsConfig) -> Result<Self, ConfigError> {
        let url = cfg.validate()?;
        let extra_roots = match &cfg.ca_file {
            Some(p) => crate::tls::load_ca_file(p, "sms.ca_file")?,
            None => Vec::new(),
        };
        let tls = crate::tls::client_config(&extra_roots, "sms")?;
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(!cfg.allow_insecure)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("sspr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::new(format!("sms: cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            url,
            kind: cfg.kind,
            token: cfg.token.clone(),
            account_sid: cfg.account_sid.trim().to_string(),
            auth_token: cfg.auth_token.clone(),
            from: cfg.from.trim().to_string(),
            allowed_prefixes: cfg.allowed_prefixes.clone(),
            timeout,
            success_match: cfg.success_match.clone(),
        })
    }

    /// The deadline for one send (`timeout_secs`).
    pub fn deadline(&self) -> Duration {
        self.timeout
    }

    /// The idempotency key of an outbox row: the same for every copy of it.
    pub fn idempotency_key(msg: &OutboxMessage) -> String {
        format!("sspr-{}-{}", msg.id, msg.created_at)
    }

    async fn request(&self, msg: &OutboxMessage, to: &str) -> Result<(), SendError> {
        let key = Self::idempotency_key(msg);
        let req = self
            .client
            .post(self.url.clone())
            .header("Idempotency-Key", &key);
        let req = match self.kind {
            SmsKind::Json => req.bearer_auth(&self.token).json(&JsonBody {
                to,
                message: &msg.body,
            }),
            SmsKind::Twilio => req
                .basic_auth(&self.account_sid, Some(&self.auth_token))
                .header("I-Twilio-Idempotency-Token", &key)
                .form(&[
                    ("To", to),
                    ("From", self.from.as_str()),
                    ("Body", msg.body.as_str()),
                ]),
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| classify_reqwest(&e.without_url()))?;
        let status = resp.status();
        let mut body = Vec::new();
        if status.is_success() {
            while body.len() < MAX_ANSWER {
                match resp.chunk().await {
                    Ok(Some(c)) => body.extend_from_slice(&c),
                    Ok(None) => break,
                    Err(e) => return Err(classify_reqwest(&e.without_url())),
                }
            }
        }
        // A failing status is judged by the status alone: a gateway may echo the message.
        classify_status(status)?;
        check_answer(self.kind, status, self.success_match.as_deref(), &body)
            .map_err(|why| unexpected_answer(status, why, &body, msg))
    }
}

/// Most of a 2xx answer read to judge it.
const MAX_ANSWER: usize = 16 * 1024;
/// Most of an answer quoted in the log and `last_error`.
const MAX_QUOTE: usize = 160;

/// Whether a 2xx answer is what the configured kind promises; `Err` says why not.
pub(crate) fn check_answer(
    kind: SmsKind,
    status: StatusCode,
    success_match: Option<&str>,
    body: &[u8],
) -> Result<(), &'static str> {
    // `json`: "204 No Content" is an explicit "taken, nothing to say".
    if kind == SmsKind::Json
        && success_match.is_none()
        && status == StatusCode::NO_CONTENT
        && body.is_empty()
    {
        return Ok(());
    }
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not text")?;
    if let Some(m) = success_match {
        return if text.contains(m) {
            Ok(())
        } else {
            Err("the answer lacks sms.success_match")
        };
    }
    if text.trim().is_empty() {
        return Err("the answer is empty");
    }
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| "the answer is not JSON")?;
    let field = |k: &str| v.get(k);
    match kind {
        SmsKind::Json => {
            if field("error").is_some_and(|e| !e.is_null()) {
                return Err("the answer reports an error");
            }
            for k in ["success", "ok"] {
                if field(k) == Some(&serde_json::Value::Bool(false)) {
                    return Err("the answer reports no success");
                }
            }
            if let Some(s) = field("status").and_then(|s| s.as_str())
                && matches!(
                    s.to_ascii_lowercase().as_str(),
                    "error" | "failed" | "failure"
                )
            {
                return Err("the answer reports a failed status");
            }
            Ok(())
        }
        SmsKind::Twilio => {
            if field("sid")
                .and_then(|s| s.as_str())
                .is_none_or(|s| s.is_empty())
            {
                return Err("the answer has no message sid");
            }
            if let Some(s) = field("status").and_then(|s| s.as_str())
                && matches!(s, "failed" | "undelivered")
            {
                return Err("the answer reports a failed status");
            }
            Ok(())
        }
    }
}

/// The failure for a 2xx answer that does not say the message was taken: retried (the
/// idempotency key lets the gateway drop a repeat), with the answer quoted safely.
fn unexpected_answer(status: StatusCode, why: &str, body: &[u8], msg: &OutboxMessage) -> SendError {
    SendError::retryable(
        "unexpected_answer",
        format!(
            "sms gateway answered {status} but {why}: {}",
            quote_answer(body, msg)
        ),
    )
}

/// The start of an answer for the log: one line, recipient masked, the message text and any
/// run of five or more digits (a code) replaced, clipped.
pub(crate) fn quote_answer(body: &[u8], msg: &OutboxMessage) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ANSWER)]);
    let mut text = text.replace(msg.recipient.trim(), &mask::phone(&msg.recipient));
    if !msg.body.trim().is_empty() {
        text = text.replace(msg.body.trim(), "[message]");
    }
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 5 {
            out.push_str("[digits]");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        flush(&mut digits, &mut out);
        out.push(if c.is_control() { ' ' } else { c });
    }
    flush(&mut digits, &mut out);
    let quoted: String = out.chars().take(MAX_QUOTE).collect();
    if out.chars().count() > MAX_QUOTE {
        format!("{quoted:?}…")
    } else {
        format!("{quoted:?}")
    }
}

/// The recipient must be E.164 (`+` and 8 to 15 digits) and, when prefixes are configured,
/// start with one of them.
pub(crate) fn check_number(raw: &str, allowed_prefixes: &[String]) -> Result<String, SendError> {
    let n = raw.trim();
    let digits = n.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SendError::permanent(
            "invalid_recipient",
            format!("{} is not an E.164 number", mask::phone(n)),
        ));
    }
    if !allowed_prefixes.is_empty() && !allowed_prefixes.iter().any(|p| n.starts_with(p.as_str())) {
        return Err(SendError::permanent(
            "destination_not_allowed",
            format!("{} is outside sms.allowed_prefixes", mask::phone(n)),
        ));
    }
    Ok(n.to_string())
}

/// 2xx delivered; 429 and 5xx are worth another try; any other status will not change.
pub(crate) fn classify_status(status: StatusCode) -> Result<(), SendError> {
    if status.is_success() {
        Ok(())
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(SendError::retryable(
            "gateway_unavailable",
            format!("sms gateway answered {status}"),
        ))
    } else {
        // 4xx (our request or credentials are wrong) and 3xx (redirects are not followed).
        Err(SendError::permanent(
            "gateway_rejected",
            format!("sms gateway answered {status}"),
        ))
    }
}

fn classify_reqwest(e: &reqwest::Error) -> SendError {
    // Without the URL: nothing secret is in it, but it is noise in every line of the log.
    let detail = format!("sms gateway: {}", DisplayChain(e));
    if e.is_timeout() {
        SendError::retryable("timeout", detail)
    } else if e.is_builder() {
        SendError::permanent("invalid_message", detail)
    } else if crate::tls::is_tls_error(e) {
        // An unknown issuer or wrong name needs the admin (sms.ca_file), but the message may
        // still go out within its retries once fixed.
        SendError::retryable("tls", detail)
    } else {
        // Connect, TLS, reset mid-request: the gateway may well be back shortly.
        SendError::retryable("connection", detail)
    }
}

/// An error and its causes on one line (reqwest's own message is only "error sending request").
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

#[derive(serde::Serialize)]
struct JsonBody<'a> {
    to: &'a str,
    message: &'a str,
}

#[async_trait]
impl Sender for SmsSender {
    async fn send(&self, msg: &OutboxMessage) -> Result<(), SendError> {
        let to = check_number(&msg.recipient, &self.allowed_prefixes)?;
        match tokio::time::timeout(self.timeout, self.request(msg, &to)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(
                "timeout",
                format!(
                    "sms gateway: no complete answer within {}s (sms.timeout_secs)",
                    self.timeout.as_secs()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> SmsConfig {
        SmsConfig {
            url: "https://sms.example.com/send".into(),
            token: "t".into(),
            ..Default::default()
        }
    }

    #[test]
    fn validation_says_what_to_fix() {
        assert!(json().validate().is_ok());
        for bad in [0, 65] {
            let e = SmsConfig {
                concurrency: bad,
                ..json()
            }
            .validate()
            .unwrap_err();
            assert!(e.0.contains("sms.concurrency"), "{e}");
        }
        let e = SmsConfig {
            url: "http://sms.example.com/send".into(),
            ..json()
        }
        .validate()
        .unwrap_err();
        assert!(e.0.contains("allow_insecure"), "{e}");
        assert!(
            SmsConfig {
                url: "http://127.0.0.1:9/send".into(),
                allow_insecure: true,
                ..json()
            }
            .validate()
            .is_ok()
        );
        assert!(
            SmsConfig {
                url: "ftp://x/".into(),
                ..json()
            }
            .validate()
            .is_err()
        );
        assert!(
            SmsConfig {
                url: "https://u:p@x/".into(),
                ..json()
            }
            .validate()
            .unwrap_err()
            .0
            .contains("credentials")
        );
        assert!(
            SmsConfig {
                token: String::new(),
                ..json()
            }
            .validate()
            .unwrap_err()
            .0
            .contains("token_file")
        );
        assert!(
            SmsConfig {
                url: String::new(),
                ..json()
            }
            .validate()
            .unwrap_err()
            .0
            .contains("sms.url")
        );
        let e = SmsConfig {
            allowed_prefixes: vec!["49".into()],
            ..json()
        }
        .validate()
        .unwrap_err();
        assert!(e.0.contains("+49"), "{e}");

        let tw = SmsConfig {
            kind: SmsKind::Twilio,
            account_sid: "AC123".into(),
            auth_token: "a".into(),
            from: "+4930123456".into(),
            ..Default::default()
        };
        assert_eq!(
            tw.validate().unwrap().as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
        );
        assert!(
            SmsConfig {
                from: String::new(),
                ..tw.clone()
            }
            .validate()
            .unwrap_err()
            .0
            .contains("sms.from")
        );
        assert!(
            SmsConfig {
                auth_token: String::new(),
                ..tw
            }
            .validate()
            .unwrap_err()
            .0
            .contains("auth_token_file")
        );
    }

    #[test]
    fn parses_and_refuses_unknown_fields_and_inline_secrets() {
        let c: SmsConfig = toml::from_str(
            "kind = \"twilio\"\naccount_sid = \"AC1\"\nallowed_prefixes = [\"+49\"]",
        )
        .unwrap();
        assert_eq!(c.kind, SmsKind::Twilio);
        assert_eq!(c.timeout_secs, 10);
        assert_eq!(c.concurrency, 4);
        assert!(toml::from_str::<SmsConfig>("kind = \"carrier-pigeon\"").is_err());
        assert!(toml::from_str::<SmsConfig>("urll = \"x\"").is_err());
        assert!(toml::from_str::<SmsConfig>("token = \"x\"").is_err());
        let s = format!(
            "{:?}",
            SmsConfig {
                token: "sekrit".into(),
                ..json()
            }
        );
        assert!(!s.contains("sekrit"), "{s}");
    }

    #[test]
    fn numbers_and_prefixes() {
        assert_eq!(
            check_number(" +4915112345678 ", &[]).unwrap(),
            "+4915112345678"
        );
        let allow = vec!["+49".to_string(), "+33".to_string()];
        assert!(check_number("+33612345678", &allow).is_ok());
        let e = check_number("+88212345678", &allow).unwrap_err();
        assert!(!e.retryable && e.class == "destination_not_allowed");
        assert!(!e.detail.contains("12345678"), "{}", e.detail);
        for bad in ["4915112345678", "+49 151 1234", "+49abc", "+1", ""] {
            assert!(!check_number(bad, &[]).unwrap_err().retryable, "{bad:?}");
        }
    }

    #[test]
    fn statuses() {
        assert!(classify_status(StatusCode::OK).is_ok());
        assert!(classify_status(StatusCode::CREATED).is_ok());
        for s in [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert!(classify_status(s).unwrap_err().retryable, "{s}");
        }
        for s in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::NOT_FOUND,
            StatusCode::FOUND,
        ] {
            assert!(!classify_status(s).unwrap_err().retryable, "{s}");
        }
    }

    #[test]
    fn answers_must_be_what_the_kind_promises() {
        let ok = StatusCode::OK;
        let json = |b: &str| check_answer(SmsKind::Json, ok, None, b.as_bytes());
        assert!(json(r#"{"id":"1"}"#).is_ok());
        assert!(json(r#"[{"id":"1"}]"#).is_ok());
        assert!(json("").is_err());
        assert!(json("OK").is_err());
        assert!(json(r#"{"error":"x"}"#).is_err());
        assert!(json(r#"{"error":null,"id":"1"}"#).is_ok());
        assert!(json(r#"{"ok":false}"#).is_err());
        assert!(json(r#"{"status":"FAILED"}"#).is_err());
        assert!(check_answer(SmsKind::Json, StatusCode::NO_CONTENT, None, b"").is_ok());
        assert!(check_answer(SmsKind::Json, ok, Some("OK"), b"OK 1 sent").is_ok());
        assert!(check_answer(SmsKind::Json, ok, Some("OK"), b"{}").is_err());
        let tw = |b: &str| check_answer(SmsKind::Twilio, StatusCode::CREATED, None, b.as_bytes());
        assert!(tw(r#"{"sid":"SM1","status":"queued"}"#).is_ok());
        assert!(tw(r#"{"sid":"","status":"queued"}"#).is_err());
        assert!(tw(r#"{"sid":"SM1","status":"failed"}"#).is_err());
        assert!(tw(r#"{"status":"queued"}"#).is_err());
    }

    #[test]
    fn quoted_answers_hide_the_number_the_text_and_codes() {
        let mut m = OutboxMessage::new(
            sspr_app::ports::Channel::Sms,
            "+4915112345678",
            "",
            "Your code is 493817",
            0,
        );
        m.id = 1;
        let q = quote_answer(
            b"sent to +4915112345678: Your code is 493817\r\nref 4938170 id 12",
            &m,
        );
        assert!(!q.contains("4915112345678") && !q.contains("493817"), "{q}");
        assert!(q.contains("[message]") && q.contains("id 12"), "{q}");
        assert!(!q.contains('\n'), "{q}");
        let long = quote_answer("x".repeat(1000).as_bytes(), &m);
        assert!(long.chars().count() < 200, "{long}");
    }

    #[tokio::test]
    async fn https_only_refuses_plain_http_at_request_time_too() {
        // Even if a URL slipped past validation, the client itself refuses http://.
        let s = SmsSender::new(&json()).unwrap();
        let r = s
            .client
            .post("http://127.0.0.1:9/")
            .send()
            .await
            .unwrap_err();
        assert!(r.is_builder() || r.is_request(), "{r:?}");
    }
}
