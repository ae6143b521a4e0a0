//! `/etc/sspr/logon.toml`: where the server is, how to trust it, how the agent behaves.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::screen::{Screen, ScreenSetting};
use crate::text::Lang;

/// Where the packaged config lives.
pub const DEFAULT_PATH: &str = "/etc/sspr/logon.toml";

/// What happens after a successful reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterReset {
    /// The new password goes on to the rest of the login stack: no retyping.
    Continue,
    /// The user types the new password at the normal prompt.
    Prompt,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    server_url: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    pin_sha256: Vec<String>,
    #[serde(default)]
    proxy: Option<String>,
    #[serde(default = "default_connect")]
    connect_timeout_secs: u64,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    #[serde(default)]
    gesture: String,
    #[serde(default = "yes")]
    offer_unlock: bool,
    #[serde(default = "default_after")]
    after_reset: AfterReset,
    #[serde(default = "default_locale")]
    locale: String,
    #[serde(default)]
    enable_logging: u8,
    #[serde(default = "default_syslog")]
    syslog_socket: PathBuf,
    #[serde(default = "default_services")]
    services: Vec<String>,
    #[serde(default = "default_screen")]
    screen: String,
    #[serde(default = "default_grace")]
    ssh_login_grace_secs: u64,
}

fn default_connect() -> u64 {
    5
}
fn default_timeout() -> u64 {
    10
}
fn yes() -> bool {
    true
}
fn default_after() -> AfterReset {
    AfterReset::Continue
}
fn default_locale() -> String {
    "auto".into()
}
fn default_syslog() -> PathBuf {
    PathBuf::from("/dev/log")
}
/// The login screens. Elsewhere (sudo, su, polkit, mail and FTP daemons) the module asks a
/// plain "Password: ": sudo replaces exactly that prompt with its own (`-p`, which Ansible
/// and expect scripts wait for), and a daemon cannot hold a dialogue anyway.
pub const DEFAULT_SERVICES: &[&str] =
    &["login", "gdm-password", "lightdm", "sddm", "greetd", "sshd"];
fn default_screen() -> String {
    "auto".into()
}
/// sshd's own default `LoginGraceTime`.
fn default_grace() -> u64 {
    120
}
fn default_services() -> Vec<String> {
    DEFAULT_SERVICES.iter().map(|s| s.to_string()).collect()
}

/// How the agent reaches the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// `https_proxy` / `all_proxy` from the environment, unless `no_proxy` lists the server.
    FromEnvironment,
    /// Straight to the server, whatever the environment says (`proxy = ""`).
    None,
    /// This proxy (`http://host:port`).
    Url(String),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `https://host[:port]`, no path.
    pub server_url: String,
    pub ca_file: Option<PathBuf>,
    /// SHA-256 hashes of acceptable server public keys (SubjectPublicKeyInfo), base64.
    pub pins: Vec<[u8; 32]>,
    pub proxy: Proxy,
    pub connect_timeout: Duration,
    /// Bound on each request to the server, connect included.
    pub timeout: Duration,
    /// What typed at the password prompt asks for a reset; empty means an empty password.
    pub gesture: String,
    pub offer_unlock: bool,
    pub after_reset: AfterReset,
    /// `None` means: from the environment's locale.
    pub locale: Option<Lang>,
    pub verbose: bool,
    pub syslog_socket: PathBuf,
    /// PAM services that offer the reset; `["*"]` for all.
    pub services: Vec<String>,
    /// How the login screen renders the dialogue (`auto`: from the PAM service).
    pub screen: ScreenSetting,
    /// sshd's `LoginGraceTime` on this machine; 0 when it is unlimited.
    pub ssh_login_grace: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl AgentConfig {
    /// `Ok(None)` when the file sets no `server_url`: the package is installed but not yet
    /// configured, and the agent stays out of the way without complaint.
    pub fn load(path: &Path) -> Result<Option<AgentConfig>, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn parse(text: &str) -> Result<Option<AgentConfig>, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError(e.message().to_string()))?;
        let Some(given) = raw.server_url.as_deref() else {
            return Ok(None);
        };
        let server_url = given.trim().trim_end_matches('/').to_string();
        let rest = server_url.strip_prefix("https://").ok_or_else(|| {
            ConfigError(format!(
                "server_url must start with https:// (got {given:?}); the agent speaks HTTPS only"
            ))
        })?;
        if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
            return Err(ConfigError(format!(
                "server_url must be https://host or https://host:port, without a path (got {given:?})"
            )));
        }
        let pins = raw
            .pin_sha256
            .iter()
            .map(|p| parse_pin(p))
            .collect::<Result<Vec<_>, _>>()?;
        let proxy = match raw.proxy.as_deref().map(str::trim) {
            None => Proxy::FromEnvironment,
            Some("") => Proxy::None,
            Some(p) if p.starts_with("http://") => Proxy::Url(p.to_string()),
            Some(_) => {
                return Err(ConfigError(
                    "proxy must be an http:// URL such as http://proxy.example.com:3128".into(),
                ));
            }
        };
        if !(1..=60).contains(&raw.connect_timeout_secs) || !(1..=120).contains(&raw.timeout_secs) {
            return Err(ConfigError(
                "connect_timeout_secs must be 1-60 and timeout_secs 1-120".into(),
            ));
        }
        if raw.gesture.chars().any(char::is_whitespace) || raw.gesture.chars().count() > 32 {
            return Err(ConfigError(
                "gesture must be empty (an empty password) or one word of at most 32 characters"
                    .into(),
            ));
        }
        let locale = match raw.locale.trim() {
            "auto" | "" => None,
            "en" => Some(Lang::En),
            "zh" | "zh-CN" | "zh_CN" => Some(Lang::Zh),
            other => {
                return Err(ConfigError(format!(
                    "locale must be auto, en or zh (got {other:?})"
                )));
            }
        };
        let verbose = match raw.enable_logging {
            0 => false,
            1 => true,
            n => {
                return Err(ConfigError(format!(
                    "enable_logging must be 0 or 1 (got {n})"
                )));
            }
        };
        let screen = match raw.screen.trim() {
            "auto" | "" => ScreenSetting::Auto,
            "terminal" => ScreenSetting::Fixed(Screen::Terminal),
            "greeter" => ScreenSetting::Fixed(Screen::Greeter),
            "gdm" => ScreenSetting::Fixed(Screen::Gdm),
            other => {
                return Err(ConfigError(format!(
                    "screen must be auto, terminal, greeter or gdm (got {other:?})"
                )));
            }
        };
        Ok(Some(AgentConfig {
            server_url,
            ca_file: raw.ca_file,
            pins,
            proxy,
            connect_timeout: Duration::from_secs(raw.connect_timeout_secs),
            timeout: Duration::from_secs(raw.timeout_secs),
            gesture: raw.gesture,
            offer_unlock: raw.offer_unlock,
            after_reset: raw.after_reset,
            locale,
            verbose,
            syslog_socket: raw.syslog_socket,
            services: raw.services,
            screen,
            ssh_login_grace: (raw.ssh_login_grace_secs > 0)
                .then(|| Duration::from_secs(raw.ssh_login_grace_secs)),
        }))
    }

    /// Whether the reset is offered to this PAM service.
    pub fn offers_reset_to(&self, service: &str) -> bool {
        self.services.iter().any(|s| s == "*" || s == service)
    }

    /// The server's host name (or address), without the port.
    pub fn host(&self) -> &str {
        let rest = self.server_url.trim_start_matches("https://");
        match rest.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => rest,
        }
    }

    /// The language to speak: the configured one, else the environment's.
    pub fn lang(&self, env: impl Fn(&str) -> Option<String>) -> Lang {
        self.locale.unwrap_or_else(|| Lang::from_env(env))
    }
}

/// The proxy the environment asks for to reach `host`, as curl reads it for an https URL:
/// `https_proxy`, then `all_proxy` (either case), unless `no_proxy` lists the host (`*`, the
/// name, or a domain it ends in, with or without a leading dot).
pub fn proxy_from_env(host: &str, get: impl Fn(&str) -> Option<String>) -> Option<String> {
    let var = |name: &str| {
        get(&name.to_ascii_lowercase())
            .or_else(|| get(&name.to_ascii_uppercase()))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if let Some(list) = var("no_proxy") {
        let excluded = list.split(',').map(str::trim).any(|entry| {
            let entry = entry.to_ascii_lowercase();
            let entry = entry.rsplit_once(':').map_or(entry.as_str(), |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    entry.as_str()
                }
            });
            let domain = entry.trim_start_matches('.');
            entry == "*"
                || (!domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}"))))
        });
        if excluded {
            return None;
        }
    }
    var("https_proxy").or_else(|| var("all_proxy"))
}

/// `sha256//BASE64` (curl's form) or plain base64 of the 32-byte hash.
fn parse_pin(pin: &str) -> Result<[u8; 32], ConfigError> {
    use base64::Engine;
    let b64 = pin.trim().trim_start_matches("sha256//");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| {
            ConfigError(format!(
                "pin_sha256 entry {pin:?} is not the base64 of a SHA-256 hash; compute it with \
                 `sspr-logon pin --server https://…` or openssl (see the README)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_config_takes_the_defaults() {
        let c = AgentConfig::parse("server_url = \"https://sspr.example.com/\"")
            .unwrap()
            .unwrap();
        assert_eq!(c.server_url, "https://sspr.example.com");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.gesture, "");
        assert_eq!(c.after_reset, AfterReset::Continue);
        assert_eq!(c.proxy, Proxy::FromEnvironment);
        assert!(!c.verbose && c.offer_unlock && c.locale.is_none());
    }

    #[test]
    fn every_option_parses() {
        let c = AgentConfig::parse(
            r#"
            server_url = "https://sspr.example.com:8443"
            ca_file = "/etc/sspr/ca.pem"
            pin_sha256 = ["sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="]
            proxy = "http://proxy.example.com:3128"
            connect_timeout_secs = 3
            timeout_secs = 8
            gesture = "?"
            offer_unlock = false
            after_reset = "prompt"
            locale = "zh"
            enable_logging = 1
            "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.pins.len(), 1);
        assert_eq!(c.proxy, Proxy::Url("http://proxy.example.com:3128".into()));
        assert_eq!(c.after_reset, AfterReset::Prompt);
        assert_eq!(c.locale, Some(Lang::Zh));
        assert!(c.verbose && !c.offer_unlock);
    }

    #[test]
    fn mistakes_are_explained() {
        let cases = [
            ("server_url = \"http://x\"", "https://"),
            ("server_url = \"https://x/reset\"", "without a path"),
            (
                "server_url = \"https://x\"\nproxy = \"socks5://p\"",
                "http:// URL",
            ),
            (
                "server_url = \"https://x\"\npin_sha256 = [\"abc\"]",
                "SHA-256",
            ),
            ("server_url = \"https://x\"\nenable_logging = 2", "0 or 1"),
            (
                "server_url = \"https://x\"\ntimeout_secs = 0",
                "timeout_secs",
            ),
            ("server_url = \"https://x\"\ngesture = \"a b\"", "one word"),
            (
                "server_url = \"https://x\"\nlocale = \"fr\"",
                "auto, en or zh",
            ),
            (
                "server_url = \"https://x\"\nscreen = \"kde\"",
                "auto, terminal, greeter or gdm",
            ),
            ("server_url = \"https://x\"\nservr = 1", "unknown field"),
        ];
        for (text, want) in cases {
            let e = AgentConfig::parse(text).unwrap_err();
            assert!(e.0.contains(want), "{text:?} gave {e}");
        }
    }

    #[test]
    fn the_environment_proxy_is_read_as_curl_reads_it() {
        let p = "http://proxy:3128";
        let with = |vars: &[(&str, &str)], host: &str| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            proxy_from_env(host, |k| {
                vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            })
        };
        assert_eq!(with(&[("HTTPS_PROXY", p)], "sspr.corp").as_deref(), Some(p));
        assert_eq!(with(&[("all_proxy", p)], "sspr.corp").as_deref(), Some(p));
        assert_eq!(with(&[("HTTP_PROXY", p)], "sspr.corp"), None, "http only");
        for no in ["sspr.corp", ".corp", "corp", "*", "other, sspr.corp:443"] {
            assert_eq!(
                with(&[("https_proxy", p), ("NO_PROXY", no)], "sspr.corp"),
                None,
                "{no}"
            );
        }
        let far = [("https_proxy", p), ("no_proxy", "xsspr.corp,orp")];
        assert_eq!(with(&far, "sspr.corp").as_deref(), Some(p));
    }

    #[test]
    fn the_reset_is_offered_at_login_screens_only_unless_configured() {
        let c = AgentConfig::parse("server_url = \"https://x\"")
            .unwrap()
            .unwrap();
        assert!(c.offers_reset_to("gdm-password") && c.offers_reset_to("sshd"));
        assert!(!c.offers_reset_to("sudo") && !c.offers_reset_to("dovecot"));
        let c = AgentConfig::parse("server_url = \"https://x\"\nservices = [\"*\"]")
            .unwrap()
            .unwrap();
        assert!(c.offers_reset_to("sudo"));
    }

    #[test]
    fn the_host_is_the_url_without_scheme_and_port() {
        let c = AgentConfig::parse("server_url = \"https://sspr.corp:8443\"")
            .unwrap()
            .unwrap();
        assert_eq!(c.host(), "sspr.corp");
    }

    #[test]
    fn without_server_url_the_agent_is_not_configured() {
        assert!(
            AgentConfig::parse("# server_url = \"https://x\"")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_empty_proxy_means_none() {
        let c = AgentConfig::parse("server_url = \"https://x\"\nproxy = \"\"")
            .unwrap()
            .unwrap();
        assert_eq!(c.proxy, Proxy::None);
    }
}
