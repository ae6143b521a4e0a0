//! The server's configuration: a TOML file, then `SSPR_…` environment variables over it
//! (`SSPR_LISTEN`, `SSPR_DELIVERY__SMTP__HOST`, …), secrets read from files. With no file at
//! all every value has a default that runs a complete demo on this machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sspr_delivery::{SmsConfig, SmtpConfig};
use sspr_domain::Limits;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database, the generated TLS files and the secret key live.
    pub data_dir: PathBuf,
    /// Address to listen on. 8443 so that the demo needs no root; production uses 443.
    pub listen: SocketAddr,
    /// The HTTPS URL users reach sspr at; every link sspr sends is built from it.
    pub public_url: String,
    /// Shown in messages and in authenticator apps.
    pub organisation: String,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs). Empty: the socket peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `text` or `json`.
    pub log_format: String,
    /// tracing filter, e.g. `info` or `sspr=debug,info`.
    pub log_level: String,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub directory: DirectoryConfig,
    /// File holding the 64-hex-character server key (HMAC of codes, sealing TOTP secrets).
    /// Empty: `<data_dir>/secret.key`, generated on first start. Several instances must share it.
    pub secret_key_file: Option<PathBuf>,
    pub limits: Limits,
    /// Have I Been Pwned's "SHA-1, ordered by hash" file: new passwords found in it are
    /// refused, checked offline by binary search. Optional; the bundled common-password list
    /// applies either way.
    pub breached_passwords_file: Option<PathBuf>,
    pub delivery: DeliveryConfig,
    pub web: WebConfig,
    pub connections: ConnectionsConfig,
    pub reminders: RemindersConfig,
    pub metrics: MetricsConfig,
    pub audit: AuditConfig,
    /// SIEM export: `[[siem]]` sinks, each streaming the audit log as ECS documents over
    /// syslog (RFC 5424, TCP or TLS) or as JSON lines on stdout (docs/siem.md).
    pub siem: Vec<sspr_server::siem::SiemConfig>,
    /// The zero-config quick start's demo accounts (created on first start when the built-in
    /// directory is empty; their passwords are in the README). On only without a config file,
    /// with the dev outbox and the built-in directory: [`Config::load`] turns it off otherwise
    /// and refuses `demo = true` in a file.
    pub demo: bool,
    /// The file this was read from (none in the quick start), for the startup message.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. Empty: a development CA and certificate are generated in
    /// `<data_dir>/tls` (clients trust `<data_dir>/tls/ca.pem`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Names for the generated certificate.
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Empty: SQLite at `<data_dir>/sspr.db`. `sqlite:///path/to/sspr.db`, or
    /// `postgres://user@host:5432/db` for PostgreSQL (several instances share one database).
    /// A password belongs in `password_file`, not in the URL.
    pub url: String,
    /// PostgreSQL: keep sspr's tables in this schema (it must exist) instead of `public`.
    pub schema: Option<String>,
    /// PostgreSQL: file holding the password, added to the URL at start.
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `builtin` (accounts in sspr's database) or `ldap` (OpenLDAP, see `[directory.ldap]`).
    pub kind: String,
    pub ldap: Option<sspr_ldap::LdapConfig>,
    /// Earlier passwords the built-in directory refuses at reset.
    pub password_history: usize,
    /// Days a built-in directory password lasts before it expires (0: for ever). LDAP and AD
    /// keep their own (ppolicy's `pwdMaxAge`, the domain's policy).
    pub password_max_age_days: u32,
    /// Let the directory's email and mobile attributes count as registered methods.
    pub trust_contacts: bool,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            kind: "builtin".into(),
            ldap: None,
            password_history: 3,
            password_max_age_days: 0,
            trust_contacts: false,
        }
    }
}

/// Password-expiry reminders (`sspr reminders run`, and the job in `sspr serve`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemindersConfig {
    /// Run the reminder job inside `sspr serve`. Off until a site turns it on: reminders
    /// reach every user whose password expires soon.
    pub enabled: bool,
    /// Days before expiry to remind on; each reminder goes out once per password.
    pub days: Vec<u32>,
    /// How often the job looks, in minutes (one instance at a time, however many run).
    pub every_minutes: u32,
    /// Also text a registered phone (needs `[delivery.sms]` in live mode).
    pub sms: bool,
    /// The reminders' language: `en` or `zh`.
    pub language: String,
}

impl Default for RemindersConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            days: vec![14, 7, 3, 1],
            every_minutes: 60,
            sms: false,
            language: "en".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// `dev`: nothing leaves the machine; messages are kept and shown by `sspr outbox`.
    /// `live`: email through `[delivery.smtp]`, SMS through `[delivery.sms]` if configured.
    pub mode: String,
    #[serde(skip_serializing)]
    pub smtp: Option<SmtpConfig>,
    #[serde(skip_serializing)]
    pub sms: Option<SmsConfig>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            mode: "dev".into(),
            smtp: None,
            sms: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Directory groups whose members may sign in to the admin pages (`/admin`).
    pub admin_groups: Vec<String>,
    /// Directory groups whose members may use the helpdesk's part of the admin pages: users'
    /// registration and audit, unblocking, invitations; not the policy.
    pub helpdesk_groups: Vec<String>,
    /// Work the browser must do before a reset starts: leading zero bits of a SHA-256
    /// proof of work (0 turns the check off; 16 takes well under a second in a browser).
    pub pow_bits: u8,
}

/// The audit log's retention and its signed checkpoints (crates/app/src/audit_chain.rs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Events older than this many days are deleted (hourly, in small batches). 0 keeps them
    /// for ever.
    pub retention_days: u32,
    /// Before deleting, write the events to JSON lines files here (`audit-FIRST-LAST.jsonl`),
    /// synced to disk first. Empty: deleted events are not kept.
    pub archive_dir: Option<PathBuf>,
    /// How often a signed checkpoint of the chain is stored and logged; 0: never (then only
    /// `sspr audit checkpoint` makes one).
    pub checkpoint_minutes: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 0,
            archive_dir: None,
            checkpoint_minutes: 60,
        }
    }
}

/// Prometheus metrics (`GET /metrics`), on a listener of their own.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Plain HTTP address to serve `/metrics` on, e.g. `127.0.0.1:9464`. Empty: no metrics
    /// listener. Never the portal's address: the numbers are for the monitoring network.
    pub listen: Option<SocketAddr>,
    /// File holding a token that scrapes must send as `Authorization: Bearer <token>`
    /// (Prometheus: `authorization: { credentials_file: ... }`). Empty: no token asked.
    pub token_file: Option<PathBuf>,
}

impl MetricsConfig {
    /// The scrape token from `token_file`, if one is set.
    pub fn token(&self) -> Result<Option<String>, String> {
        let Some(p) = &self.token_file else {
            return Ok(None);
        };
        let t = std::fs::read_to_string(p)
            .map_err(|e| format!("metrics.token_file {}: {e}", p.display()))?;
        let t = t.trim();
        if t.len() < 16 {
            return Err(format!(
                "metrics.token_file {} holds {} characters; use a random token of at least 16 (e.g. sspr key > {})",
                p.display(),
                t.len(),
                p.display()
            ));
        }
        Ok(Some(t.to_owned()))
    }
}

/// How many connections the server holds, and how long a handshake may take.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Connections held at once (lowered to what the open-file limit allows).
    pub max: usize,
    /// Connections held at once from one client address (trusted proxies are exempt).
    pub per_ip: usize,
    /// Seconds for a TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds the kernel keeps a silent new connection from the server (Linux's
    /// TCP_DEFER_ACCEPT); 0 hands every connection over at once.
    pub defer_accept_secs: u64,
    /// Requests handled at once; more get 503 `busy` with `Retry-After` at once, rather
    /// than queueing until every answer is late (`/healthz` and `/readyz` are exempt).
    pub max_requests: usize,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max: 20_000,
            per_ip: 256,
            handshake_timeout_secs: 5,
            defer_accept_secs: 30,
            max_requests: 1024,
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            admin_groups: vec!["sspr-admins".into()],
            helpdesk_groups: vec!["sspr-helpdesk".into()],
            pow_bits: 16,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("sspr-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: "https://localhost:8443".into(),
            organisation: "sspr demo".into(),
            trusted_proxies: Vec::new(),
            log_format: "text".into(),
            log_level: "info".into(),
            tls: TlsConfig::default(),
            database: DatabaseConfig::default(),
            directory: DirectoryConfig::default(),
            secret_key_file: None,
            limits: Limits::default(),
            breached_passwords_file: None,
            delivery: DeliveryConfig::default(),
            web: WebConfig::default(),
            connections: ConnectionsConfig::default(),
            reminders: RemindersConfig::default(),
            metrics: MetricsConfig::default(),
            audit: AuditConfig::default(),
            siem: Vec::new(),
            demo: true,
            source: None,
        }
    }
}

/// Where the server's Debian package puts the configuration.
pub const INSTALLED_CONFIG: &str = "/etc/sspr/sspr.toml";

/// The configuration the CLI reads when neither `--config` nor `SSPR_CONFIG` names one: the
/// installed one, so that `sudo -u sspr sspr users list` on a server finds the service's
/// database rather than starting a demo in the current directory.
pub fn installed_config() -> Option<PathBuf> {
    let p = PathBuf::from(INSTALLED_CONFIG);
    // Present but unreadable still counts: loading it then says why it cannot be read.
    std::fs::symlink_metadata(&p).is_ok().then_some(p)
}

impl Config {
    /// Defaults, then the file (if any), then `SSPR_*` variables. Errors name the key.
    pub fn load(file: Option<&Path>) -> Result<Config, String> {
        // What the file and the environment set, apart from the defaults.
        let mut given = Figment::new();
        if let Some(p) = file {
            if !p.exists() {
                return Err(format!("the config file {} does not exist", p.display()));
            }
            // figment reads it too, but its message would not say what to do.
            if let Err(e) = std::fs::File::open(p) {
                return Err(format!(
                    "cannot read the config file {}: {e}{}",
                    p.display(),
                    if e.kind() == std::io::ErrorKind::PermissionDenied {
                        " (the package's is readable by root and the sspr group: run the \
                         command as the service's user, e.g. sudo -u sspr sspr …)"
                    } else {
                        ""
                    }
                ));
            }
            given = given.merge(Toml::file(p));
        }
        // SSPR_TEST_* belong to the test suite, SSPR_CONFIG names the file itself.
        given = given.merge(
            Env::prefixed("SSPR_")
                .split("__")
                .ignore(&["config"])
                .filter(|k| !k.as_str().to_ascii_lowercase().starts_with("test_")),
        );
        let mut cfg =
            extract(Figment::from(Serialized::defaults(Config::default())).merge(given.clone()))
                .map_err(|first| every_problem(&given).unwrap_or(first))?;
        if file.is_some() && given.contains("demo") && cfg.demo {
            return Err("demo = true: the demo accounts, whose passwords the README publishes, exist only in the zero-config quick start (no config file). Remove `demo` from the file, and create the first administrator with `sspr users add --admin LOGIN`.".into());
        }
        // A file, live delivery or a directory server is a real installation, however the
        // rest is set: no account with a published password is ever created there.
        cfg.source = file.map(Path::to_path_buf);
        cfg.demo &= file.is_none() && cfg.delivery.mode == "dev" && cfg.directory.kind == "builtin";
        // Links and the startup message follow the port actually listened on, unless the
        // public address is set (a proxy in front).
        if !given.contains("public_url") && cfg.listen.port() != 8443 {
            cfg.public_url = format!("https://localhost:{}", cfg.listen.port());
        }
        if let Some(l) = cfg.directory.ldap.as_mut() {
            l.load_secrets()?;
        }
        if let Some(s) = cfg.delivery.smtp.as_mut() {
            s.load_secrets().map_err(|e| e.0)?;
        }
        if let Some(p) = cfg.database.password_file.clone() {
            let pw = std::fs::read_to_string(&p)
                .map_err(|e| format!("database.password_file {}: {e}", p.display()))?;
            cfg.database.url = with_password(&cfg.database.url, pw.trim())?;
        }
        if let Some(s) = cfg.delivery.sms.as_mut() {
            s.load_secrets().map_err(|e| e.0)?;
        }
        Ok(cfg)
    }

    /// The defaults with `toml` over them, as [`Config::load`] reads a file but without the
    /// environment and without opening the secret files it names: the pure part, which the
    /// `config` fuzz target drives (both go through [`extract`]).
    pub fn parse(toml: &str) -> Result<Config, String> {
        extract(Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(toml)))
    }

    /// Every problem, each saying what to change. Empty when the configuration is usable.
    pub fn check(&self) -> Vec<String> {
        let mut e: Vec<String> = self.limits.validate();
        if !self.public_url.starts_with("https://") {
            e.push(format!("public_url must start with https:// (it is {:?}); links are never sent over plain HTTP", self.public_url));
        }
        match (self.directory.kind.as_str(), &self.directory.ldap) {
            ("builtin", _) => {}
            ("ldap", Some(l)) => {
                e.extend(l.validate());
                // A write takes a few directory round trips; the lease must outlast them, or
                // a slow but healthy write would be settled (as unknown) while still running.
                let need = 4 * l.timeout_secs as i64 + 2;
                if self.limits.finish_lease_secs < need {
                    e.push(format!(
                        "limits.finish_lease_secs ({}) must be at least 4 × directory.ldap.timeout_secs + 2 = {need}",
                        self.limits.finish_lease_secs
                    ));
                }
            }
            ("ldap", None) => {
                e.push("directory.kind is \"ldap\" but [directory.ldap] is missing".into())
            }
            (other, _) => e.push(format!(
                "directory.kind {other:?} is not supported: use \"builtin\" or \"ldap\""
            )),
        }
        if self.directory.password_history > 24 {
            e.push("directory.password_history must be between 0 and 24".into());
        }
        if self.directory.password_max_age_days > 3650 {
            e.push(
                "directory.password_max_age_days must be between 0 (never expires) and 3650".into(),
            );
        }
        if let Err(m) = sspr_domain::expiry::check_days(&self.reminders.days) {
            e.push(m);
        }
        if self.audit.checkpoint_minutes > 10_080 {
            e.push(format!(
                "audit.checkpoint_minutes ({}) must be at most 10080 (a week); 0 turns periodic checkpoints off",
                self.audit.checkpoint_minutes
            ));
        }
        if self.audit.retention_days > 36_500 {
            e.push(format!(
                "audit.retention_days ({}) must be at most 36500; 0 keeps events for ever",
                self.audit.retention_days
            ));
        }
        if !(5..=1440).contains(&self.reminders.every_minutes) {
            e.push(format!(
                "reminders.every_minutes ({}) must be between 5 and 1440",
                self.reminders.every_minutes
            ));
        }
        if !matches!(self.reminders.language.as_str(), "en" | "zh") {
            e.push(format!(
                "reminders.language {:?} is not supported: use \"en\" or \"zh\"",
                self.reminders.language
            ));
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(c), Some(k)) => {
                if let Err(m) = sspr_server::tls::server_config(c, k) {
                    e.push(format!("tls: {m}"));
                }
            }
            (None, None) => {}
            _ => e.push("tls.cert_file and tls.key_file go together: set both, or neither for a generated development certificate".into()),
        }
        let url = &self.database.url;
        if !url.is_empty() && !url.starts_with("sqlite://") && self.postgres_url().is_none() {
            e.push(format!(
                "database.url {url:?} is not supported: use sqlite:///path/to/sspr.db or postgres://user@host:5432/db"
            ));
        }
        if self.database.schema.is_some() && self.postgres_url().is_none() {
            e.push("database.schema applies to PostgreSQL only".into());
        }
        match self.delivery.mode.as_str() {
            "dev" => {}
            "live" => match &self.delivery.smtp {
                None => e.push("delivery.mode is \"live\" but [delivery.smtp] is missing".into()),
                Some(s) => {
                    if let Err(m) = s.validate() {
                        e.push(format!("delivery.smtp: {}", m.0));
                    }
                }
            },
            other => e.push(format!(
                "delivery.mode must be \"dev\" or \"live\", not {other:?}"
            )),
        }
        if let Some(s) = &self.delivery.sms
            && let Err(m) = s.validate()
        {
            e.push(format!("delivery.sms: {}", m.0));
        }
        if let Some(p) = &self.secret_key_file {
            match std::fs::read_to_string(p) {
                Ok(s) => {
                    if let Err(m) = sspr_app::crypto::ServerKey::from_hex(&s) {
                        e.push(format!("secret_key_file {}: {m}", p.display()));
                    }
                    e.extend(permission_problem(p));
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => e.push(format!(
                    "secret_key_file {} does not exist; create it with: sspr key > {} (then chmod 600)",
                    p.display(),
                    p.display()
                )),
                Err(err) => e.push(format!(
                    "secret_key_file {} cannot be read: {err}",
                    p.display()
                )),
            }
        }
        if self
            .metrics
            .listen
            .is_some_and(|m| m.port() == self.listen.port())
        {
            e.push(format!(
                "metrics.listen ({}) must use another port than listen ({}): the metrics are plain HTTP for the monitoring network",
                self.metrics.listen.map(|m| m.to_string()).unwrap_or_default(),
                self.listen
            ));
        }
        if let Some(p) = &self.metrics.token_file {
            match self.metrics.token() {
                Ok(_) => e.extend(permission_problem(p)),
                Err(m) => e.push(m),
            }
        }
        for (i, sink) in self.siem.iter().enumerate() {
            e.extend(sink.check());
            if self.siem[..i].iter().any(|s| s.name == sink.name) {
                e.push(format!(
                    "siem: two sinks are named {:?}; each needs its own name (it names its cursor)",
                    sink.name
                ));
            }
        }
        if let Some(p) = &self.breached_passwords_file
            && let Err(m) = sspr_app::breached::BreachedFile::open(p)
        {
            e.push(format!("breached_passwords_file: {m}"));
        }
        if self.web.pow_bits > 24 {
            e.push(format!(
                "web.pow_bits is {}: use 0 (off) to 24; above 20 slow phones wait many seconds",
                self.web.pow_bits
            ));
        }
        if self.web.admin_groups.iter().all(|g| g.trim().is_empty()) {
            e.push("web.admin_groups is empty: name at least one directory group whose members may use the admin pages".into());
        }
        let c = &self.connections;
        if c.max == 0 || c.per_ip == 0 || c.per_ip > c.max {
            e.push(format!(
                "connections.max ({}) and connections.per_ip ({}) must be at least 1, per_ip no more than max",
                c.max, c.per_ip
            ));
        }
        if !(1..=60).contains(&c.handshake_timeout_secs) {
            e.push(format!(
                "connections.handshake_timeout_secs is {}: use 1 to 60",
                c.handshake_timeout_secs
            ));
        }
        if c.defer_accept_secs > 600 {
            e.push(format!(
                "connections.defer_accept_secs is {}: use 0 (off) to 600",
                c.defer_accept_secs
            ));
        }
        if !["text", "json"].contains(&self.log_format.as_str()) {
            e.push("log_format must be \"text\" or \"json\"".into());
        }
        e
    }

    /// The PostgreSQL URL, when the database is PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        let u = self.database.url.as_str();
        (u.starts_with("postgres://") || u.starts_with("postgresql://")).then_some(u)
    }

    pub fn db_path(&self) -> PathBuf {
        match self.database.url.strip_prefix("sqlite://") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => self.data_dir.join("sspr.db"),
        }
    }

    pub fn tls_names(&self) -> Vec<String> {
        if !self.tls.names.is_empty() {
            return self.tls.names.clone();
        }
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let host = self
            .public_url
            .trim_start_matches("https://")
            .split(['/', ':'])
            .next()
            .unwrap_or("")
            .to_string();
        if !host.is_empty() && !names.contains(&host) {
            names.push(host);
        }
        names
    }
}

/// The configuration out of `f`, every error naming its key.
/// Every problem of a configuration that does not parse, not only the first: each key that
/// fails is reported and taken out, and the rest is parsed again, until it parses; then what
/// is left is checked as [`Config::check`] checks it. `None` if that cannot be worked out
/// (the caller then reports the first problem alone).
fn every_problem(given: &Figment) -> Option<String> {
    use figment::Provider;
    use figment::value::Dict;
    let mut data: Dict = given.data().ok()?.remove(&figment::Profile::Default)?;
    let mut problems = Vec::new();
    // Each round removes at least one key, so the file's size bounds it; the cap is a guard.
    for _ in 0..256 {
        let attempt = Figment::from(Serialized::defaults(Config::default()))
            .merge(Serialized::defaults(data.clone()));
        let errors = match attempt.extract::<Config>() {
            Ok(rest) => {
                problems.extend(rest.check());
                break;
            }
            Err(e) => e,
        };
        let mut removed = false;
        for e in errors {
            let key = e.path.join(".");
            let source = given
                .find_metadata(&key)
                .map(|m| match &m.source {
                    Some(s) => format!(" (in {s})"),
                    None => format!(" (in {})", m.name),
                })
                .unwrap_or_default();
            problems.push(if key.is_empty() {
                e.kind.to_string()
            } else {
                format!("{key}: {}{source}", e.kind)
            });
            removed |= remove_key(&mut data, &e.path);
        }
        if !removed {
            break;
        }
    }
    problems.dedup();
    match problems.len() {
        0 => None,
        1 => problems.pop(),
        n => Some(format!("{n} problems:\n  - {}", problems.join("\n  - "))),
    }
}

/// Takes the value at `path` out of `table`; where the path leads into something that is not
/// a table (an array's element), the outermost part of it that is goes instead.
fn remove_key(table: &mut figment::value::Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(last).is_some(),
        [first, rest @ ..] => {
            let inner = match table.get_mut(first) {
                Some(figment::value::Value::Dict(_, d)) => remove_key(d, rest),
                _ => false,
            };
            inner || table.remove(first).is_some()
        }
    }
}

fn extract(f: Figment) -> Result<Config, String> {
    f.extract().map_err(|e| {
        e.into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// `postgres://user@host/db` + `pw` → `postgres://user:pw@host/db` (percent-encoded).
fn with_password(url: &str, pw: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("database.password_file needs a postgres:// database.url")?;
    let (user, host) = rest
        .split_once('@')
        .ok_or("database.url needs a user (postgres://user@host/db) to go with password_file")?;
    let enc: String = pw
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!(
        "{scheme}://{}:{enc}@{host}",
        user.split(':').next().unwrap_or(user)
    ))
}

/// A secret readable by group or others is refused: say how to fix it.
pub fn permission_problem(p: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(p)
            && m.permissions().mode() & 0o077 != 0
        {
            return Some(format!(
                "{} is readable by other users (mode {:o}); run: chmod 600 {}",
                p.display(),
                m.permissions().mode() & 0o777,
                p.display()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_clean() {
        assert_eq!(Config::default().check(), Vec::<String>::new());
    }

    #[test]
    fn file_and_environment_layer_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sspr.toml");
        std::fs::write(&p, "listen = \"0.0.0.0:9443\"\n[limits]\ncode_digits = 8\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.listen.port(), 9443);
        assert_eq!(c.limits.code_digits, 8);
        std::fs::write(&p, "listen = 5\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err();
        assert!(e.contains("listen"), "{e}");
        std::fs::write(&p, "lisen = \"x\"\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err();
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn check_says_what_to_fix() {
        let c = Config {
            public_url: "http://x".into(),
            limits: Limits {
                code_ttl_secs: 3600,
                ..Limits::default()
            },
            ..Config::default()
        };
        let e = c.check();
        assert!(e.iter().any(|m| m.contains("https://")), "{e:?}");
        assert!(e.iter().any(|m| m.contains("code_ttl_secs")), "{e:?}");
    }

    #[test]
    fn siem_sinks_are_checked_each_and_named_once() {
        let c = Config::parse(
            "[[siem]]\nname = \"soc\"\ntarget = \"tcp://127.0.0.1:514\"\n\
             [[siem]]\nname = \"soc\"\ntarget = \"udp://127.0.0.1:514\"\n",
        )
        .unwrap();
        let e = c.check().join("\n");
        assert!(e.contains("two sinks are named \"soc\""), "{e}");
        assert!(
            e.contains("tcp://host:port, tls://host:port or stdout"),
            "{e}"
        );
        let e = Config::parse("[[siem]]\nname = \"x\"\ntarget = \"stdout\"\nfacilty = \"auth\"\n")
            .unwrap_err();
        assert!(e.contains("facilty"), "{e}");
    }
}
