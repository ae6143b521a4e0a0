//! SIEM export: the audit log streamed to a SIEM, each event as an ECS document, as RFC 5424
//! syslog over TCP or TLS (octet-counted, RFC 6587 §3.4.1) or as JSON lines on stdout (the
//! journal, under systemd).
//!
//! At least once: each sink has a durable cursor in the store (the id of the last event its
//! receiver took) that moves only after a batch was written and flushed, by compare and set
//! under a lease, so a crash between the two re-sends that batch and a restart (on any
//! instance sharing the database) resumes after the last acknowledged one. Ids only grow, so
//! "after the cursor" is exactly what is left. See docs/siem.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sspr_app::App;
use sspr_app::ports::AuditFilter;
use sspr_domain::audit::{Activity, AuditEvent, Outcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";
/// The SD-ID of the structured data: `sspr` at IANA's example enterprise number (RFC 5612),
/// which RFC 5424 allows for private SD-IDs until a project registers its own.
pub const SD_ID: &str = "sspr@32473";

/// One `[[siem]]` sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiemConfig {
    /// Names the sink's cursor in the database: renaming a sink starts it at the log's
    /// beginning again.
    pub name: String,
    /// `tcp://host:port`, `tls://host:port` or `stdout`.
    pub target: String,
    /// `rfc5424` (syslog, the default for tcp/tls) or `jsonl` (the default for stdout).
    pub format: String,
    /// The field names: `ecs` (the only one for now).
    pub schema: String,
    /// PEM CA(s) the TLS receiver's certificate must chain to; empty: the public web roots.
    pub ca_file: Option<PathBuf>,
    /// RFC 5424 APP-NAME.
    pub app_name: String,
    /// Syslog facility: `auth`, `authpriv`, `local0` … `local7`.
    pub facility: String,
    /// RFC 5424 HOSTNAME; empty: this machine's name.
    pub hostname: Option<String>,
    /// Events read and sent at a time.
    pub batch: u32,
    /// Deadline of each connect, TLS handshake and batch write.
    pub timeout_secs: u64,
    /// Longest wait between retries after a failure (they start at 1 s and double).
    pub retry_max_secs: u64,
}

impl Default for SiemConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            target: String::new(),
            format: String::new(),
            schema: "ecs".into(),
            ca_file: None,
            app_name: "sspr".into(),
            facility: "authpriv".into(),
            hostname: None,
            batch: 500,
            timeout_secs: 10,
            retry_max_secs: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Tcp(String),
    Tls { host: String, addr: String },
    Stdout,
}

impl SiemConfig {
    fn target(&self) -> Result<Target, String> {
        let t = self.target.trim();
        if t == "stdout" {
            return Ok(Target::Stdout);
        }
        let (tls, rest) = if let Some(r) = t.strip_prefix("tcp://") {
            (false, r)
        } else if let Some(r) = t.strip_prefix("tls://") {
            (true, r)
        } else {
            return Err(format!(
                "siem {:?}: target {t:?} is not supported: use tcp://host:port, tls://host:port or stdout",
                self.name
            ));
        };
        let rest = rest.trim_end_matches('/');
        let host = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
                h.trim_start_matches('[').trim_end_matches(']').to_string()
            }
            _ => {
                return Err(format!(
                    "siem {:?}: target {t:?} needs a host and a port, e.g. tls://siem.example.org:6514",
                    self.name
                ));
            }
        };
        Ok(if tls {
            Target::Tls {
                host,
                addr: rest.into(),
            }
        } else {
            Target::Tcp(rest.into())
        })
    }

    fn jsonl(&self) -> bool {
        match self.format.as_str() {
            "jsonl" => true,
            "rfc5424" => false,
            _ => self.target.trim() == "stdout",
        }
    }

    fn facility_code(&self) -> Option<u8> {
        Some(match self.facility.as_str() {
            "auth" => 4,
            "authpriv" => 10,
            "local0" => 16,
            "local1" => 17,
            "local2" => 18,
            "local3" => 19,
            "local4" => 20,
            "local5" => 21,
            "local6" => 22,
            "local7" => 23,
            _ => return None,
        })
    }

    /// Every problem, each saying what to change.
    pub fn check(&self) -> Vec<String> {
        let mut e = Vec::new();
        let n = &self.name;
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            e.push(format!(
                "siem: each [[siem]] needs a name of letters, digits, '-', '_' or '.' (it names the sink's cursor); got {n:?}"
            ));
        }
        let target = self.target();
        if let Err(m) = &target {
            e.push(m.clone());
        }
        match self.format.as_str() {
            "" | "jsonl" => {}
            "rfc5424" if !matches!(target, Ok(Target::Stdout)) => {}
            "rfc5424" => e.push(format!(
                "siem {n:?}: format \"rfc5424\" goes over tcp:// or tls://; stdout takes \"jsonl\""
            )),
            f => e.push(format!(
                "siem {n:?}: format {f:?} is not supported: use \"rfc5424\" or \"jsonl\""
            )),
        }
        if self.schema != "ecs" {
            e.push(format!(
                "siem {n:?}: schema {:?} is not supported: use \"ecs\"",
                self.schema
            ));
        }
        if self.facility_code().is_none() {
            e.push(format!(
                "siem {n:?}: facility {:?} is not supported: use auth, authpriv or local0 … local7",
                self.facility
            ));
        }
        let app_ok =
            |s: &str| !s.is_empty() && s.len() <= 48 && s.bytes().all(|b| (33..=126).contains(&b));
        if !app_ok(&self.app_name) {
            e.push(format!(
                "siem {n:?}: app_name must be 1 to 48 printable ASCII characters without spaces"
            ));
        }
        if let Some(h) = &self.hostname
            && (h.len() > 255 || !app_ok(h))
        {
            e.push(format!(
                "siem {n:?}: hostname must be 1 to 255 printable ASCII characters without spaces"
            ));
        }
        if !(1..=5000).contains(&self.batch) {
            e.push(format!("siem {n:?}: batch must be between 1 and 5000"));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            e.push(format!(
                "siem {n:?}: timeout_secs must be between 1 and 300"
            ));
        }
        if !(1..=3600).contains(&self.retry_max_secs) {
            e.push(format!(
                "siem {n:?}: retry_max_secs must be between 1 and 3600"
            ));
        }
        match (&self.ca_file, &target) {
            (Some(_), Ok(Target::Tls { .. })) => {
                if let Err(m) = self.tls_config() {
                    e.push(m);
                }
            }
            (Some(_), _) => e.push(format!(
                "siem {n:?}: ca_file applies to tls:// targets only"
            )),
            _ => {}
        }
        e
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let n = &self.name;
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    format!("siem {n:?}: cannot read ca_file {}: {e}", path.display())
                })?;
                let certs = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        format!(
                            "siem {n:?}: ca_file {} is not valid PEM: {e}",
                            path.display()
                        )
                    })?;
                if certs.is_empty() {
                    return Err(format!(
                        "siem {n:?}: ca_file {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
                        path.display()
                    ));
                }
                for c in certs {
                    roots.add(c).map_err(|e| {
                        format!("siem {n:?}: a certificate in ca_file is unusable: {e}")
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        // An explicit provider: several rustls providers may be linked into the process.
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("siem {n:?}: TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
    }
}

/// The ECS category and type of an activity.
fn ecs_kind(a: Activity) -> (&'static str, &'static str) {
    use Activity::*;
    match a {
        MethodVerified | VerificationFailed | RegistrationSignIn | AdminSignIn
        | AdminAuthFailed | CodeSent | QuestionsDrawn => ("authentication", "info"),
        BlockedFromReset | RateLimited | RequestRejected => ("authentication", "denied"),
        ResetStarted | UnlockStarted => ("iam", "start"),
        FlowExpired | ResetAbandoned | UnlockAbandoned => ("iam", "end"),
        ResetPassword
        | UnlockAccount
        | ChangePassword
        | PasswordRejected
        | InvitationAccepted
        | AdminUserChanged
        | SecurityInfoVerified
        | SecurityInfoReviewed
        | RegisteredAllRequired => ("iam", "change"),
        SecurityInfoAdded | InvitationSent | AdminTokenCreated => ("iam", "creation"),
        SecurityInfoDeleted => ("iam", "deletion"),
        OutcomeUnknown | DeliveryFailed | DirectoryError | ExpiryReminder => ("iam", "info"),
        PolicyChanged => ("configuration", "change"),
        AuditExported => ("iam", "access"),
    }
}

/// The event as an ECS document (the mapping table is in docs/siem.md).
pub fn ecs(e: &AuditEvent) -> Value {
    let (category, kind) = ecs_kind(e.activity);
    let outcome = match (e.activity, e.outcome) {
        // The directory write's result is not known: neither success nor failure.
        (Activity::OutcomeUnknown, _) => "unknown",
        (_, Outcome::Success) => "success",
        (_, Outcome::Failure) => "failure",
    };
    let mut event = json!({
        "id": e.id.to_string(),
        "sequence": e.id,
        "kind": "event",
        "module": "sspr",
        "dataset": "sspr.audit",
        "action": e.activity.as_str(),
        "outcome": outcome,
        "category": [category],
        "type": [kind],
    });
    if !e.reason.is_empty() {
        event["reason"] = json!(e.reason);
    }
    let mut user = json!({});
    if !e.actor.is_empty() {
        user["name"] = json!(e.actor);
    }
    if !e.target.is_empty() {
        user["target"] = json!({ "name": e.target });
    }
    let mut sspr = json!({ "client_type": e.client_type.as_str() });
    if let Some(f) = &e.flow_id {
        sspr["flow_id"] = json!(f);
    }
    if let Some(c) = &e.support_code {
        sspr["support_code"] = json!(c);
    }
    if !e.details.is_null() {
        sspr["details"] = e.details.clone();
    }
    let mut doc = json!({
        "@timestamp": sspr_domain::clock::rfc3339(e.at),
        "ecs": { "version": ECS_VERSION },
        "event": event,
        "user": user,
        "observer": { "vendor": "sspr", "product": "sspr", "type": "iam" },
        "sspr": sspr,
    });
    // Only an address goes in source.ip (a typed field in every ECS index template).
    if let Ok(ip) = e.client_ip.parse::<std::net::IpAddr>() {
        doc["source"] = json!({ "ip": ip.to_string() });
    }
    if let Some(c) = &e.flow_id {
        doc["transaction"] = json!({ "id": c });
    }
    doc
}

/// SD-PARAM values escape `"`, `\` and `]` (RFC 5424 §6.3.3).
fn sd_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// One RFC 5424 message, octet-counted (RFC 6587 §3.4.1): MSGID is the activity, the
/// structured data `[sspr@32473 …]` carries the key fields and MSG the ECS document as JSON.
pub fn rfc5424_frame(e: &AuditEvent, facility: u8, hostname: &str, app: &str, pid: u32) -> Vec<u8> {
    let severity = match (e.activity, e.outcome) {
        (Activity::OutcomeUnknown, _) => 4,
        (_, Outcome::Failure) => 5,
        (_, Outcome::Success) => 6,
    };
    let pri = u16::from(facility) * 8 + severity;
    let mut msgid: String = e.activity.as_str().chars().take(32).collect();
    if msgid.is_empty() {
        msgid.push('-');
    }
    let mut sd = format!(
        "[{SD_ID} eventId=\"{}\" outcome=\"{}\" clientType=\"{}\"",
        e.id,
        e.outcome.as_str(),
        e.client_type.as_str()
    );
    for (k, v) in [
        ("actor", e.actor.as_str()),
        ("target", e.target.as_str()),
        ("reason", e.reason.as_str()),
        ("clientIp", e.client_ip.as_str()),
        ("supportCode", e.support_code.as_deref().unwrap_or("")),
    ] {
        if !v.is_empty() {
            sd.push_str(&format!(" {k}=\"{}\"", sd_escape(v)));
        }
    }
    sd.push(']');
    let msg = format!(
        "<{pri}>1 {} {hostname} {app} {pid} {msgid} {sd} {}",
        sspr_domain::clock::rfc3339(e.at),
        ecs(e)
    );
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

fn this_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| (33..=126).contains(&b)))
        .unwrap_or_else(|| "-".into())
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Conn for T {}

/// Whether the receiver closed or broke the connection. A syslog receiver never writes, so a
/// read that is not pending at once means it went away (or sent a TLS alert); writing on
/// would "succeed" into the kernel's buffer and the batch be lost, so the batch waits for a
/// new connection instead.
async fn gone(c: &mut Box<dyn Conn>) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::ZERO, c.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
    }
}

/// The exporter of one sink: its loop runs until `stop` turns true.
pub struct Exporter {
    cfg: SiemConfig,
    target: Target,
    tls: Option<tokio_rustls::TlsConnector>,
    facility: u8,
    hostname: String,
    holder: String,
    app: Arc<App>,
    conn: Option<Box<dyn Conn>>,
}

/// How long an instance's claim on a sink lasts without renewal: another instance takes over
/// a sink this long after its exporter stopped (a crash, a network split). At least three
/// deadlines, so that a batch still being written (connect, handshake, write) is not taken
/// over and sent twice by another instance.
fn lease_secs(timeout_secs: u64) -> i64 {
    i64::try_from(timeout_secs.saturating_mul(3))
        .unwrap_or(i64::MAX)
        .max(30)
}
/// How often an idle exporter looks for new events.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug)]
enum Step {
    /// Sent this many events.
    Sent(usize),
    Idle,
    /// Another instance holds the lease.
    NotMine,
}

impl Exporter {
    /// `holder` names this instance in the lease: stable across its restarts (host and listen
    /// address), so a restarted instance resumes at once instead of waiting for its own lease.
    pub fn new(cfg: SiemConfig, app: Arc<App>, holder: String) -> Result<Self, String> {
        let errors = cfg.check();
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let target = cfg.target()?;
        let tls = match target {
            Target::Tls { .. } => Some(tokio_rustls::TlsConnector::from(Arc::new(
                cfg.tls_config()?,
            ))),
            _ => None,
        };
        let facility = cfg.facility_code().unwrap_or(10);
        let hostname = cfg.hostname.clone().unwrap_or_else(this_hostname);
        Ok(Self {
            cfg,
            target,
            tls,
            facility,
            hostname,
            holder,
            app,
            conn: None,
        })
    }

    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Duration::from_secs(1);
        let max = Duration::from_secs(self.cfg.retry_max_secs);
        let name = self.cfg.name.clone();
        tracing::info!(sink = %name, target = %self.cfg.target, "SIEM export started");
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.step().await {
                Ok(Step::Sent(n)) => {
                    backoff = Duration::from_secs(1);
                    tracing::debug!(sink = %name, events = n, "exported audit events");
                    continue;
                }
                Ok(Step::Idle) => POLL,
                Ok(Step::NotMine) => Duration::from_secs(5),
                Err(e) => {
                    self.conn = None;
                    tracing::warn!(sink = %name, target = %self.cfg.target, error = %e, retry_in_secs = backoff.as_secs(), "SIEM export failed; retrying from the cursor");
                    let w = backoff;
                    backoff = (backoff * 2).min(max);
                    w
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn step(&mut self) -> Result<Step, String> {
        let store = &self.app.store;
        let name = &self.cfg.name;
        let now = self.app.now();
        let Some(cursor) = store
            .export_lease(
                name,
                &self.holder,
                now,
                now + lease_secs(self.cfg.timeout_secs),
            )
            .await
            .map_err(|e| format!("cannot read the export cursor: {e}"))?
        else {
            self.conn = None;
            return Ok(Step::NotMine);
        };
        let events = store
            .audit_query(&AuditFilter {
                after_id: Some(cursor),
                limit: self.cfg.batch,
                ..AuditFilter::default()
            })
            .await
            .map_err(|e| format!("cannot read the audit log: {e}"))?;
        let Some(last) = events.last().map(|e| e.id) else {
            sspr_app::metrics::metrics().siem_caught_up(name, now);
            return Ok(Step::Idle);
        };
        let deadline = Duration::from_secs(self.cfg.timeout_secs);
        if self.target == Target::Stdout {
            let mut out = Vec::new();
            for e in &events {
                out.extend_from_slice(ecs(e).to_string().as_bytes());
                out.push(b'\n');
            }
            let mut stdout = tokio::io::stdout();
            tokio::time::timeout(deadline, async {
                stdout.write_all(&out).await?;
                stdout.flush().await
            })
            .await
            .map_err(|_| format!("writing to stdout took longer than {}s", deadline.as_secs()))?
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
        } else {
            let mut out = Vec::new();
            let jsonl = self.cfg.jsonl();
            for e in &events {
                if jsonl {
                    out.extend_from_slice(ecs(e).to_string().as_bytes());
                    out.push(b'\n');
                } else {
                    out.extend_from_slice(&rfc5424_frame(
                        e,
                        self.facility,
                        &self.hostname,
                        &self.cfg.app_name,
                        std::process::id(),
                    ));
                }
            }
            if let Some(c) = self.conn.as_mut()
                && gone(c).await
            {
                self.conn = None;
            }
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => self.connect(deadline).await?,
            };
            tokio::time::timeout(deadline, async {
                conn.write_all(&out).await?;
                conn.flush().await
            })
            .await
            .map_err(|_| {
                format!(
                    "sending to {} took longer than {}s (timeout_secs)",
                    self.cfg.target,
                    deadline.as_secs()
                )
            })?
            .map_err(|e| format!("cannot send to {}: {e}", self.cfg.target))?;
            if gone(&mut conn).await {
                return Err(format!(
                    "{} closed the connection while the batch was sent",
                    self.cfg.target
                ));
            }
            self.conn = Some(conn);
        }
        let moved = store
            .export_advance(name, &self.holder, cursor, last, self.app.now())
            .await
            .map_err(|e| format!("sent events up to id {last} but cannot record it (they will be sent again): {e}"))?;
        if !moved {
            // Another instance took the sink over meanwhile (this one stalled past its lease):
            // it sends from the cursor too, so the batch may arrive twice, never not at all.
            tracing::warn!(sink = %name, "lost the SIEM export lease to another instance");
            return Ok(Step::NotMine);
        }
        let m = sspr_app::metrics::metrics();
        m.siem_exported(name, events.len() as u64);
        // A full batch may have more behind it: the newest id says how much (ids can skip
        // after a rolled-back insert, so it is an upper bound). Only asked then, so an export
        // that keeps up costs no extra query.
        if events.len() as u64 >= u64::from(self.cfg.batch) {
            let newest = store
                .audit_query(&AuditFilter {
                    limit: 1,
                    ..AuditFilter::default()
                })
                .await
                .ok()
                .and_then(|v| v.first().map(|e| e.id));
            if let Some(newest) = newest {
                m.siem_lag(name, (newest - last).max(0));
            }
        } else {
            m.siem_lag(name, 0);
        }
        Ok(Step::Sent(events.len()))
    }

    async fn connect(&self, deadline: Duration) -> Result<Box<dyn Conn>, String> {
        let t = &self.cfg.target;
        let addr = match &self.target {
            Target::Tcp(a) | Target::Tls { addr: a, .. } => a.clone(),
            Target::Stdout => return Err("stdout is not a network target".into()),
        };
        let tcp = tokio::time::timeout(deadline, TcpStream::connect(&addr))
            .await
            .map_err(|_| format!("connecting to {t} took longer than {}s", deadline.as_secs()))?
            .map_err(|e| format!("cannot connect to {t}: {e} (is the receiver listening?)"))?;
        let _ = tcp.set_nodelay(true);
        match (&self.target, &self.tls) {
            (Target::Tls { host, .. }, Some(connector)) => {
                let server_name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("{t}: {host:?} is not a valid TLS server name: {e}"))?;
                let tls = tokio::time::timeout(deadline, connector.connect(server_name, tcp))
                    .await
                    .map_err(|_| {
                        format!("the TLS handshake with {t} took longer than {}s", deadline.as_secs())
                    })?
                    .map_err(|e| {
                        format!("TLS handshake with {t} failed: {e} (does its certificate chain to ca_file and name {host}?)")
                    })?;
                Ok(Box::new(tls))
            }
            _ => Ok(Box::new(tcp)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use sspr_domain::audit::ClientType;

    fn event() -> AuditEvent {
        let mut e = AuditEvent::new(1_700_000_000, Activity::ResetPassword, Outcome::Success);
        e.id = 42;
        e.actor = "alice".into();
        e.target = "alice".into();
        e.client_ip = "192.0.2.7".into();
        e.client_type = ClientType::Browser;
        e.reason = "a \"quoted\" ] reason".into();
        e
    }

    #[test]
    fn ecs_fields() {
        let d = ecs(&event());
        assert_eq!(d["@timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(d["event"]["action"], "reset_password");
        assert_eq!(d["event"]["outcome"], "success");
        assert_eq!(d["event"]["category"], json!(["iam"]));
        assert_eq!(d["event"]["id"], "42");
        assert_eq!(d["user"]["name"], "alice");
        assert_eq!(d["user"]["target"]["name"], "alice");
        assert_eq!(d["source"]["ip"], "192.0.2.7");
        assert_eq!(d["sspr"]["client_type"], "browser");
    }

    #[test]
    fn rfc5424_is_octet_counted_with_escaped_structured_data() {
        let f = String::from_utf8(rfc5424_frame(&event(), 10, "host", "sspr", 7)).unwrap();
        let (len, msg) = f.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(
            msg.starts_with(
                "<86>1 2023-11-14T22:13:20Z host sspr 7 reset_password [sspr@32473 eventId=\"42\""
            ),
            "{msg}"
        );
        assert!(msg.contains(r#"reason="a \"quoted\" \] reason""#), "{msg}");
    }

    #[test]
    fn check_says_what_to_fix() {
        let c = SiemConfig {
            name: "x".into(),
            target: "udp://h:1".into(),
            facility: "kern".into(),
            ..SiemConfig::default()
        };
        let e = c.check().join("\n");
        assert!(
            e.contains("tcp://host:port") && e.contains("facility"),
            "{e}"
        );
        let ok = SiemConfig {
            name: "siem".into(),
            target: "tcp://127.0.0.1:514".into(),
            ..SiemConfig::default()
        };
        assert!(ok.check().is_empty());
    }
}
