//! sspr's LDAP directory: accounts in OpenLDAP or Active Directory, behind [`Directory`].
//!
//! - Connections are TLS only (`ldaps://`, or `ldap://` with StartTLS) unless `allow_plain`
//!   is set, with certificates checked against the system roots or `ca_file`.
//! - Service-account work (searches, resets, unlocks, rules) goes over a small pool of bound
//!   connections (`pool_size`), reused while they stay healthy; one that fails or that the
//!   server closed is dropped and replaced. The URLs are tried in order for each new one.
//! - Users are found with the configured filter, every input escaped (RFC 4515); exactly one
//!   entry must match. Group membership comes from `memberOf` or from groups whose `member`
//!   holds the user's DN.
//! - A reset is the RFC 3062 Password Modify extended operation, run as the service account,
//!   so the server hashes the password and its ppolicy overlay applies; an unlock removes
//!   `pwdAccountLockedTime`. A ppolicy refusal reaches the user in words; the raw cause goes
//!   to the log. AD: `unicodePwd`, then `lockoutTime`; a refusal on an account AD protects
//!   (`adminCount=1`, AdminSDHolder) says so in the log, with the fix.
//! - With `must_change_after_reset`, the user must choose another password at the next
//!   sign-in (AD `pwdLastSet: 0`, OpenLDAP `pwdReset: TRUE`).
//! - The rules shown before the user types are the directory's default policy; for a known
//!   user, [`LdapDirectory::rules_for_login`] reads the policy that applies to them (AD's
//!   fine-grained `msDS-ResultantPSO`, OpenLDAP's `pwdPolicySubentry`).
//! - The current password is checked with a bind as the user on a connection of its own,
//!   never a pooled one, and never with an empty password.

pub mod security_descriptor;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::exop::PasswordModify;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod, Scope, SearchEntry, ldap_escape,
};
use serde::{Deserialize, Serialize};
use sspr_app::ports::{DirError, DirUser, Directory};
use sspr_domain::Rejection;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// `openldap` (RFC 3062 password modify, ppolicy) or `ad` (Active Directory: `unicodePwd`,
    /// `lockoutTime`, `userAccountControl`).
    pub flavor: Flavor,
    /// `ldaps://host:636` or `ldap://host:389` (StartTLS). Several for failover, tried in order.
    pub urls: Vec<String>,
    /// Allow `ldap://` without StartTLS. Never in production: passwords would cross in clear.
    pub allow_plain: bool,
    /// PEM file of the CA that signed the server's certificate (default: system roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// The service account sspr binds as to search, reset and unlock.
    pub bind_dn: String,
    pub bind_password_file: Option<std::path::PathBuf>,
    #[serde(skip)]
    pub bind_password: String,
    /// Where users live.
    pub base_dn: String,
    /// `{login}` is replaced by the escaped user ID.
    pub user_filter: String,
    pub display_name_attribute: String,
    pub mail_attribute: String,
    pub mobile_attribute: String,
    /// Where groups live, for `groupOfNames` membership (empty: use `memberOf` only).
    pub group_base_dn: String,
    /// OpenLDAP: the DN of the ppolicy entry that applies (`ppolicy_default`), read to show
    /// its rules before the user types. AD reads the domain's policy by itself.
    pub policy_dn: Option<String>,
    /// After a reset, make the user choose another password at their next sign-in. AD: sets
    /// `pwdLastSet` to 0 in the same modify as `unicodePwd` (the service account needs Write
    /// `pwdLastSet`). OpenLDAP: sets `pwdReset: TRUE` after the password modify (the service
    /// account needs write access to `pwdReset`; ppolicy enforces it only where the policy has
    /// `pwdMustChange: TRUE`).
    pub must_change_after_reset: bool,
    /// At most this many bound service connections are open at once; idle ones are reused.
    /// Checking a user's password always uses a connection of its own, never one of these.
    pub pool_size: usize,
    pub timeout_secs: u64,
    /// After a URL fails to connect, the next URLs are tried first for this many seconds, so
    /// a server that is down costs one timeout, not one per sign-in. It is still tried when
    /// every URL has failed. 0: always try the URLs in order.
    pub failed_url_rest_secs: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            flavor: Flavor::OpenLdap,
            urls: Vec::new(),
            allow_plain: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password_file: None,
            bind_password: String::new(),
            base_dn: String::new(),
            user_filter: "(&(objectClass=inetOrgPerson)(uid={login}))".into(),
            display_name_attribute: "cn".into(),
            mail_attribute: "mail".into(),
            mobile_attribute: "mobile".into(),
            group_base_dn: String::new(),
            policy_dn: None,
            must_change_after_reset: false,
            pool_size: 4,
            timeout_secs: 5,
            failed_url_rest_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Flavor {
    #[default]
    #[serde(rename = "openldap")]
    OpenLdap,
    #[serde(rename = "ad")]
    Ad,
}

impl LdapConfig {
    /// Active Directory defaults: `sAMAccountName` logins, `displayName`, `memberOf`.
    pub fn active_directory() -> Self {
        Self {
            flavor: Flavor::Ad,
            user_filter: "(&(objectCategory=person)(objectClass=user)(sAMAccountName={login}))"
                .into(),
            display_name_attribute: "displayName".into(),
            ..Self::default()
        }
    }

    pub fn load_secrets(&mut self) -> Result<(), String> {
        if let Some(p) = &self.bind_password_file {
            let pw = std::fs::read_to_string(p)
                .map_err(|e| format!("directory.ldap.bind_password_file {}: {e}", p.display()))?;
            self.bind_password = pw.trim_end_matches(['\n', '\r']).to_string();
        }
        Ok(())
    }

    /// Every problem, each saying what to change.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.urls.is_empty() {
            e.push("directory.ldap.urls is empty: add ldaps://host:636 (or ldap://host:389 for StartTLS)".into());
        }
        for u in &self.urls {
            if !(u.starts_with("ldaps://") || u.starts_with("ldap://")) {
                e.push(format!(
                    "directory.ldap.urls: {u:?} must start with ldaps:// or ldap://"
                ));
            }
        }
        if self.bind_dn.is_empty() {
            e.push("directory.ldap.bind_dn is empty: sspr needs a service account".into());
        }
        if self.bind_password.is_empty() && self.bind_password_file.is_none() {
            e.push("directory.ldap.bind_password_file is missing: the service account never binds without a password".into());
        }
        if self.base_dn.is_empty() {
            e.push("directory.ldap.base_dn is empty".into());
        }
        if !self.user_filter.contains("{login}") {
            e.push("directory.ldap.user_filter must contain {login}".into());
        }
        if self.pool_size == 0 {
            e.push("directory.ldap.pool_size must be at least 1".into());
        }
        e
    }
}

#[derive(Clone)]
pub struct LdapDirectory {
    cfg: Arc<LdapConfig>,
    tls: Arc<rustls::ClientConfig>,
    pool: Arc<Pool>,
    /// The root DSE's `supportedControl`, read once (AD: whether a reset can be made to
    /// honour the password history).
    controls: Arc<tokio::sync::OnceCell<Vec<String>>>,
    /// URLs that failed to connect, with the time until which the others go first.
    resting: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

/// LDAP_SERVER_POLICY_HINTS_OID (Windows Server 2012 and later), then the older
/// LDAP_SERVER_POLICY_HINTS_DEPRECATED_OID (2008 R2): with either, AD applies the password
/// history and minimum age to a reset as to a change. Sent non-critical, so a server that
/// does not know it (Samba 4.17) ignores it silently: it is sent only where it is listed.
const POLICY_HINTS_OIDS: [&str; 2] = ["1.2.840.113556.1.4.2239", "1.2.840.113556.1.4.2066"];

/// Bound service connections: at most `pool_size` exist at once (one slot each), idle ones
/// wait in `idle` for the next operation. A connection that failed at the transport level, or
/// that the server closed, is dropped rather than put back. User binds never come from here.
struct Pool {
    idle: std::sync::Mutex<Vec<Ldap>>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Pool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Ldap>> {
        // Nothing panics while holding it; a poisoned list of connections is still a list.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A service connection checked out of the pool, with its slot.
struct Service {
    ldap: Ldap,
    slot: tokio::sync::OwnedSemaphorePermit,
    /// Taken from the idle list (it may have died while idle), rather than just opened.
    reused: bool,
}

/// Runs `$body`, an async expression that only reads through `$l: &mut Ldap`, on a pooled
/// service connection. When a reused connection fails at the transport level (the server
/// restarted or dropped it while it sat idle), the other idle ones are discarded too and
/// `$body` runs once more on a freshly bound connection; reads are safe to repeat.
macro_rules! pooled_read {
    ($dir:expr, |$l:ident| $body:expr) => {
        async {
            let mut s = $dir.service().await?;
            let r = {
                let $l = &mut s.ldap;
                $dir.timed($body).await
            };
            let (s, r) = match r {
                Err(DirError::Unavailable(why)) if s.reused => {
                    let mut s = $dir.replace(s, &why).await?;
                    let r = {
                        let $l = &mut s.ldap;
                        $dir.timed($body).await
                    };
                    (s, r)
                }
                r => (s, r),
            };
            $dir.give_back(s, &r);
            r
        }
        .await
    };
}

fn unavailable(e: impl std::fmt::Display) -> DirError {
    DirError::Unavailable(format!("ldap: {e}"))
}

impl LdapDirectory {
    pub fn new(cfg: LdapConfig) -> Result<Self, String> {
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let mut roots = rustls::RootCertStore::empty();
        if let Some(p) = &cfg.ca_file {
            let pem = std::fs::read(p)
                .map_err(|e| format!("directory.ldap.ca_file {}: {e}", p.display()))?;
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                let c = c.map_err(|e| format!("directory.ldap.ca_file {}: {e}", p.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("directory.ldap.ca_file {}: {e}", p.display()))?;
            }
        } else {
            let native = rustls_native_roots();
            for c in native {
                let _ = roots.add(c);
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let pool = Pool {
            idle: std::sync::Mutex::new(Vec::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(cfg.pool_size)),
        };
        Ok(Self {
            cfg: Arc::new(cfg),
            tls: Arc::new(tls),
            pool: Arc::new(pool),
            controls: Arc::new(tokio::sync::OnceCell::new()),
            resting: Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())),
        })
    }

    fn resting(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::time::Instant>> {
        // Nothing panics while holding it; a poisoned map of times is still a map.
        self.resting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The URLs in the order to try them: those that have not failed lately, in the
    /// configured order, then those resting after a failure (a last resort, not skipped).
    fn connect_order(&self) -> Vec<String> {
        let now = std::time::Instant::now();
        let mut resting = self.resting();
        resting.retain(|_, until| *until > now);
        let (fresh, rest): (Vec<&String>, Vec<&String>) = self
            .cfg
            .urls
            .iter()
            .partition(|u| !resting.contains_key(u.as_str()));
        fresh.into_iter().chain(rest).cloned().collect()
    }

    /// Whether `url` failed to connect lately and is tried only after the others.
    pub fn is_resting(&self, url: &str) -> bool {
        self.resting()
            .get(url)
            .is_some_and(|until| *until > std::time::Instant::now())
    }

    /// A connection to the first URL that answers, TLS set up, not yet bound. A URL that
    /// fails rests for `failed_url_rest_secs`: the others go first meanwhile.
    async fn connect(&self) -> Result<Ldap, DirError> {
        let mut last = String::from("no URL configured");
        for url in &self.connect_order() {
            let starttls = url.starts_with("ldap://") && !self.cfg.allow_plain;
            match self.connect_to(url, starttls).await {
                Ok(ldap) => {
                    self.resting().remove(url);
                    return Ok(ldap);
                }
                Err(e) => {
                    let rest = self.cfg.failed_url_rest_secs;
                    tracing::warn!(url = %url, error = %e, rest_secs = rest, "ldap: cannot connect; the other URLs go first for a while");
                    if rest > 0 {
                        self.resting().insert(
                            url.clone(),
                            std::time::Instant::now() + Duration::from_secs(rest),
                        );
                    }
                    last = format!("{url}: {e}");
                }
            }
        }
        Err(unavailable(last))
    }

    /// A connection to `url`, with StartTLS on an `ldap://` URL when `starttls` is set.
    async fn connect_to(&self, url: &str, starttls: bool) -> Result<Ldap, LdapError> {
        let settings = LdapConnSettings::new()
            .set_config(self.tls.clone())
            .set_starttls(starttls)
            .set_conn_timeout(Duration::from_secs(self.cfg.timeout_secs));
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url).await?;
        ldap3::drive!(conn);
        ldap.with_timeout(Duration::from_secs(self.cfg.timeout_secs));
        Ok(ldap)
    }

    /// A pooled service connection: an idle one that is still open, else a new one, once a
    /// slot is free (waiting at most `timeout_secs`).
    async fn service(&self) -> Result<Service, DirError> {
        let wait = Duration::from_secs(self.cfg.timeout_secs);
        let slot = match tokio::time::timeout(wait, self.pool.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => {
                return Err(unavailable(format!(
                    "all {} service connections stayed busy for {} s (directory.ldap.pool_size)",
                    self.cfg.pool_size, self.cfg.timeout_secs
                )));
            }
        };
        loop {
            let Some(mut ldap) = self.pool.idle().pop() else {
                break;
            };
            // The server closed it (a restart, an idle timeout): drop it and look further.
            if !ldap.is_closed() {
                return Ok(Service {
                    ldap,
                    slot,
                    reused: true,
                });
            }
        }
        Ok(Service {
            ldap: self.bind_service().await?,
            slot,
            reused: false,
        })
    }

    /// Puts a connection back for reuse, unless the operation on it failed at the transport
    /// level (or timed out) or the server has closed it; either way its slot is freed.
    fn give_back<T>(&self, s: Service, result: &Result<T, DirError>) {
        let Service { mut ldap, slot, .. } = s;
        if !matches!(result, Err(DirError::Unavailable(_))) && !ldap.is_closed() {
            self.pool.idle().push(ldap);
        }
        drop(slot);
    }

    /// A fresh connection in the slot of one that just failed. The idle ones date from the
    /// same time and most likely failed too (a server restart): they go as well.
    async fn replace(&self, s: Service, why: &str) -> Result<Service, DirError> {
        tracing::info!(cause = %why, "ldap: a pooled connection failed; opening a new one");
        let Service { slot, .. } = s;
        self.pool.idle().clear();
        Ok(Service {
            ldap: self.bind_service().await?,
            slot,
            reused: false,
        })
    }

    /// At most `timeout_secs` for one pooled operation (ldap3's own timeout covers a single
    /// request, and only when set before it).
    async fn timed<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, DirError>>,
    ) -> Result<T, DirError> {
        let secs = self.cfg.timeout_secs;
        match tokio::time::timeout(Duration::from_secs(secs), op).await {
            Ok(r) => r,
            Err(_) => Err(unavailable(format!("no answer within {secs} s"))),
        }
    }

    /// A pooled connection with the user's entry looked up on it, replacing a dead pooled
    /// connection once, so that a write that follows goes over a connection that has just
    /// answered (a write is never repeated: a reset sent twice would hit the history rule).
    async fn service_and_entry(&self, user: &DirUser) -> Result<(Service, String), DirError> {
        let mut s = self.service().await?;
        let mut found = self.timed(self.entry(&mut s.ldap, &user.lookup)).await;
        let retry = match &found {
            Err(DirError::Unavailable(why)) if s.reused => Some(why.clone()),
            _ => None,
        };
        if let Some(why) = retry {
            s = self.replace(s, &why).await?;
            found = self.timed(self.entry(&mut s.ldap, &user.lookup)).await;
        }
        match found {
            Ok(Some(e)) if entry_id(&e) == user.id => {
                let dn = e.dn;
                Ok((s, dn))
            }
            Ok(_) => {
                self.give_back(s, &Ok::<(), DirError>(()));
                Err(DirError::Other(format!(
                    "ldap: {} is no longer the same entry",
                    user.login
                )))
            }
            Err(e) => {
                self.give_back(s, &Err::<(), DirError>(e.clone()));
                Err(e)
            }
        }
    }

    /// A new connection bound as the service account, outside the pool.
    async fn bind_service(&self) -> Result<Ldap, DirError> {
        let mut ldap = self.connect().await?;
        let r = ldap
            .simple_bind(&self.cfg.bind_dn, &self.cfg.bind_password)
            .await
            .map_err(unavailable)?;
        if r.rc != 0 {
            return Err(DirError::Permission(format!(
                "ldap: the service account {} cannot bind; directory said {}",
                self.cfg.bind_dn,
                directory_said(r.rc, &r.text)
            )));
        }
        Ok(ldap)
    }

    async fn entry(&self, ldap: &mut Ldap, login: &str) -> Result<Option<SearchEntry>, DirError> {
        let filter = self.cfg.user_filter.replace("{login}", &ldap_escape(login));
        let attrs = vec![
            "entryUUID",
            "objectGUID",
            "uid",
            "sAMAccountName",
            "userAccountControl",
            "lockoutTime",
            "accountExpires",
            "memberOf",
            "pwdAccountLockedTime",
            self.cfg.display_name_attribute.as_str(),
            self.cfg.mail_attribute.as_str(),
            self.cfg.mobile_attribute.as_str(),
        ];
        let (entries, _) = ldap
            .search(&self.cfg.base_dn, Scope::Subtree, &filter, attrs)
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        // Exactly one must match: zero is unknown, several is ambiguous and never guessed at.
        if entries.len() > 1 {
            tracing::warn!(
                login,
                matches = entries.len(),
                "ldap: the user filter matches several entries"
            );
            return Ok(None);
        }
        Ok(entries.into_iter().next().map(SearchEntry::construct))
    }

    async fn groups(&self, ldap: &mut Ldap, e: &SearchEntry) -> Result<Vec<String>, DirError> {
        let cn_of = |dn: &str| {
            first_rdn_value(dn)
                .map(|v| v.to_lowercase())
                .unwrap_or_default()
        };
        let mut groups: Vec<String> = e
            .attrs
            .get("memberOf")
            .into_iter()
            .flatten()
            .map(|d| cn_of(d))
            .collect();
        if !self.cfg.group_base_dn.is_empty() {
            let filter = format!("(|(member={0})(uniqueMember={0}))", ldap_escape(&e.dn));
            let (entries, _) = ldap
                .search(&self.cfg.group_base_dn, Scope::Subtree, &filter, vec!["cn"])
                .await
                .map_err(unavailable)?
                .success()
                .map_err(unavailable)?;
            groups.extend(
                entries
                    .into_iter()
                    .map(|g| cn_of(&SearchEntry::construct(g).dn)),
            );
        }
        groups.sort();
        groups.dedup();
        Ok(groups)
    }
}

/// The value of a DN's first RDN, unescaped as RFC 4514 says: `CN=sales\, emea,OU=x` gives
/// `sales, emea`, and `CN=sales\2C emea,OU=x` (AD and OpenLDAP may write either) the same; hex
/// pairs are UTF-8 bytes (`\C3\A9` is `é`). An unescaped `,`, `;` or `+` ends the value (of
/// a multi-valued RDN, the first value is taken); unescaped spaces around it are dropped.
/// `None` for a DN without `=`.
fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, value) = dn.split_once('=')?;
    let b = value.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    // Bytes up to here are kept even if they are spaces: they were escaped or inside.
    let mut keep = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => {
                match (hex(b[i + 1]), b.get(i + 2).and_then(|&c| hex(c))) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                    }
                    _ => {
                        out.push(b[i + 1]);
                        i += 2;
                    }
                }
                keep = out.len();
            }
            b',' | b';' | b'+' => break,
            b' ' if out.is_empty() => i += 1,
            c => {
                out.push(c);
                if c != b' ' {
                    keep = out.len();
                }
                i += 1;
            }
        }
    }
    out.truncate(keep);
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn rustls_native_roots() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    // The system bundle Debian ships; enough without another dependency.
    std::fs::read("/etc/ssl/certs/ca-certificates.crt")
        .map(|pem| {
            rustls_pemfile::certs(&mut pem.as_slice())
                .flatten()
                .collect()
        })
        .unwrap_or_default()
}

/// A stable id: OpenLDAP's entryUUID, AD's objectGUID (binary, as hex), else the DN.
fn entry_id(e: &SearchEntry) -> String {
    if let Some(g) = e.bin_attrs.get("objectGUID").and_then(|v| v.first()) {
        return g.iter().map(|b| format!("{b:02x}")).collect();
    }
    first(e, "entryUUID").unwrap_or_else(|| e.dn.clone())
}

/// ppolicy writes `000001010000Z` for a lock that only an administrator lifts (no
/// `pwdLockoutDuration` ends it); a failure lockout carries the time it began.
fn is_ppolicy_admin_lock(v: &str) -> bool {
    v.trim().starts_with("000001010000")
}

/// AD `accountExpires`: 100 ns intervals since 1601-01-01; 0 and `i64::MAX` mean never.
fn ad_account_expired(value: i64, now: i64) -> bool {
    value != 0 && value != i64::MAX && value <= now
}

/// Now, as an AD FILETIME.
fn filetime_now() -> i64 {
    const EPOCH_DIFF_SECS: i64 = 11_644_473_600;
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (unix + EPOCH_DIFF_SECS) * 10_000_000
}

fn first(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs.get(attr).and_then(|v| v.first()).cloned()
}

/// Whether an AD refusal is about the service account's rights rather than the password:
/// insufficientAccessRights (50), or a constraint/unwilling answer carrying
/// ERROR_ACCESS_DENIED (`00000005`) or an access problem, as `unicodePwd` writes can give.
fn ad_access_refused(rc: u32, text: &str) -> bool {
    let t = text.to_lowercase();
    rc == 50
        || (matches!(rc, 19 | 53)
            && !t.contains("052d")
            && (t.starts_with("00000005") || t.contains("insuff") || t.contains("access")))
}

/// An LDAP result code with its name and the directory's diagnostic text, for the log and the
/// audit details; an empty text is said to be empty rather than left blank.
fn directory_said(rc: u32, text: &str) -> String {
    let name = match rc {
        16 => " (noSuchAttribute)",
        19 => " (constraintViolation)",
        32 => " (noSuchObject)",
        49 => " (invalidCredentials)",
        50 => " (insufficientAccessRights)",
        53 => " (unwillingToPerform)",
        _ => "",
    };
    let text = text.trim();
    if text.is_empty() {
        format!("rc={rc}{name}, no diagnostic text")
    } else {
        format!("rc={rc}{name}: {text}")
    }
}

/// The log and audit cause for a refusal on an account AD protects: members of Domain Admins
/// and the other protected groups get `adminCount=1` and, from SDProp, the ACL of
/// AdminSDHolder with inheritance turned off, so rights delegated on the users' OU never reach
/// them.
fn protected_account(dn: &str, what: &str, rc: u32, text: &str) -> DirError {
    DirError::Protected(format!(
        "ldap: {what} of {dn} refused: protected account (adminCount=1): AdminSDHolder blocks the service account's rights. \
         Fix: delegate the rights on CN=AdminSDHolder,CN=System in the domain (SDProp copies them to protected accounts within the hour), \
         or keep such accounts out of sspr's scope (base_dn, or (!(adminCount=1)) in user_filter). Directory said {}",
        directory_said(rc, text)
    ))
}

/// An AD refusal in words. AD explains in the diagnostic text (`0000052D: … the password is
/// too short…`); the user gets the gist, the log the full text.
fn ad_error(dn: &str, rc: u32, text: &str, must_change: bool) -> DirError {
    let t = text.to_lowercase();
    match rc {
        19 if t.contains("history") => DirError::Rejected(vec![Rejection::History]),
        19 | 53 if t.contains("052d") || t.contains("password") => {
            DirError::Rejected(vec![Rejection::Directory {
                reason: "it does not meet the domain's length, complexity or history rules".into(),
            }])
        }
        50 => DirError::Permission(format!(
            "ldap: the service account may not reset {dn} (Reset Password right{}); directory said {}",
            if must_change {
                ", and Write pwdLastSet for must_change_after_reset"
            } else {
                ""
            },
            directory_said(rc, text)
        )),
        _ => DirError::Other(format!("ldap: reset of {dn}: rc={rc} {text}")),
    }
}

/// The password policy control (draft-behera-ldap-password-policy).
const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";

/// The ppolicy error code in a response control: `SEQUENCE { … [1] ENUMERATED error }`.
fn ppolicy_error(result: &ldap3::LdapResult) -> Option<u8> {
    let c = result.ctrls.iter().find(|c| c.1.ctype == PPOLICY_OID)?;
    let v = c.1.val.as_deref()?;
    // Skip the SEQUENCE header, then walk the elements for the context-specific [1].
    let mut i = 2;
    while i + 2 <= v.len() {
        let (tag, len) = (v[i], v[i + 1] as usize);
        if tag == 0x81 && len == 1 {
            return v.get(i + 2).copied();
        }
        i += 2 + len;
    }
    None
}

/// A ppolicy or server refusal in words for the user; the raw text goes to the log.
fn rejection(err: &LdapError) -> Option<Vec<Rejection>> {
    let LdapError::LdapResult { result } = err else {
        return None;
    };
    let text = result.text.to_lowercase();
    let code = ppolicy_error(result);
    let words = if code == Some(8) || text.contains("history") {
        Rejection::History
    } else if code == Some(7) || text.contains("too young") {
        Rejection::Directory {
            reason: "the password was changed too recently; try again later or ask your helpdesk"
                .into(),
        }
    } else if matches!(code, Some(5 | 6)) || text.contains("quality") || text.contains("too short")
    {
        Rejection::Directory {
            reason: "it does not meet the directory's length or quality rules".into(),
        }
    } else if result.rc == 19 {
        Rejection::Directory {
            reason: "it breaks the directory's password policy".into(),
        }
    } else {
        return None;
    };
    Some(vec![words])
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn find_user(&self, login: &str) -> Result<Option<DirUser>, DirError> {
        let found = pooled_read!(self, |l| self.entry_and_groups(l, login))?;
        let Some((e, groups)) = found else {
            return Ok(None);
        };
        let uac: u32 = first(&e, "userAccountControl")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ad_locked = first(&e, "lockoutTime").is_some_and(|v| v != "0");
        let ppolicy_lock = first(&e, "pwdAccountLockedTime");
        // ppolicy's permanent lock (000001010000Z) is an administrator's: self-service must
        // never lift it, so the account counts as disabled, like AD's ACCOUNTDISABLE.
        let admin_locked = ppolicy_lock.as_deref().is_some_and(is_ppolicy_admin_lock);
        let expired = first(&e, "accountExpires")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|v| ad_account_expired(v, filetime_now()));
        Ok(Some(DirUser {
            id: entry_id(&e),
            login: first(&e, "uid")
                .or_else(|| first(&e, "sAMAccountName"))
                .unwrap_or_else(|| login.to_string())
                .to_lowercase(),
            lookup: login.to_string(),
            display_name: first(&e, &self.cfg.display_name_attribute).unwrap_or_default(),
            // AD: ACCOUNTDISABLE (0x2) in userAccountControl, or accountExpires passed.
            enabled: uac & 0x2 == 0 && !admin_locked && !expired,
            locked: ppolicy_lock.is_some() || ad_locked,
            groups,
            email: first(&e, &self.cfg.mail_attribute),
            mobile: first(&e, &self.cfg.mobile_attribute),
        }))
    }

    async fn check_password(&self, user: &DirUser, password: &str) -> Result<bool, DirError> {
        // An empty password would be an unauthenticated bind that "succeeds" (RFC 4513 §5.1.2).
        if password.is_empty() {
            return Ok(false);
        }
        let dn = self.dn_of(user).await?;
        // A connection of its own, closed after: a pooled one must stay bound as the service.
        let mut ldap = self.connect().await?;
        let r = ldap.simple_bind(&dn, password).await.map_err(unavailable)?;
        let _ = ldap.unbind().await;
        Ok(r.rc == 0)
    }

    async fn reset_password(&self, user: &DirUser, new_password: &str) -> Result<(), DirError> {
        let (mut s, dn) = self.service_and_entry(user).await?;
        let r = self
            .timed(self.reset_on(&mut s.ldap, &dn, new_password))
            .await;
        self.give_back(s, &r);
        r
    }

    async fn unlock(&self, user: &DirUser) -> Result<(), DirError> {
        let (mut s, dn) = self.service_and_entry(user).await?;
        let r = self.timed(self.remove_lock(&mut s.ldap, &dn)).await;
        self.give_back(s, &r);
        r
    }

    /// The directory's own rules in words: OpenLDAP's ppolicy entry, or the AD domain's
    /// password policy. Rules that depend on the user (AD fine-grained policies, OpenLDAP's
    /// `pwdPolicySubentry`) come from [`LdapDirectory::rules_for_login`].
    async fn password_rules(&self) -> Result<Vec<String>, DirError> {
        pooled_read!(self, |l| self.default_rules(l))
    }

    async fn password_rules_for(&self, user: &DirUser) -> Result<Vec<String>, DirError> {
        self.rules_for_login(&user.lookup).await
    }

    async fn password_stamp(&self, user: &DirUser) -> Result<Option<String>, DirError> {
        pooled_read!(self, |l| self.stamp_on(l, user))
    }

    /// Reads the root DSE over a pooled connection.
    async fn ping(&self) -> Result<(), DirError> {
        pooled_read!(self, |l| async {
            l.search("", Scope::Base, "(objectClass=*)", vec!["1.1"])
                .await
                .map_err(unavailable)?
                .success()
                .map_err(unavailable)?;
            Ok(())
        })
    }
}

/// Which attributes of a policy entry say what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolicyKind {
    /// An OpenLDAP `pwdPolicy` entry.
    Ppolicy,
    /// The AD domain object's policy.
    AdDomain,
    /// An AD fine-grained password policy (`msDS-PasswordSettings`).
    AdPso,
}

impl PolicyKind {
    fn attrs(self) -> Vec<&'static str> {
        match self {
            // The first of each list is mandatory: an entry without it was not readable.
            Self::Ppolicy => vec!["pwdAttribute", "pwdMinLength", "pwdInHistory", "pwdMinAge"],
            Self::AdDomain => vec![
                "minPwdLength",
                "pwdHistoryLength",
                "pwdProperties",
                "minPwdAge",
            ],
            Self::AdPso => vec![
                "msDS-PasswordSettingsPrecedence",
                "cn",
                "msDS-MinimumPasswordLength",
                "msDS-PasswordHistoryLength",
                "msDS-PasswordComplexityEnabled",
                "msDS-MinimumPasswordAge",
            ],
        }
    }
}

/// A span of seconds in words: "2 days", "1 hour", "30 minutes".
fn duration_words(secs: i64) -> String {
    let (n, unit) = if secs >= 86_400 && secs % 86_400 == 0 {
        (secs / 86_400, "day")
    } else if secs >= 3_600 && secs % 3_600 == 0 {
        (secs / 3_600, "hour")
    } else if secs >= 60 {
        ((secs + 59) / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The first policy-hints control in `listed` (a root DSE's `supportedControl`).
fn supported_hints(listed: &[String]) -> Option<&'static str> {
    POLICY_HINTS_OIDS
        .iter()
        .copied()
        .find(|oid| listed.iter().any(|c| c.trim() == *oid))
}

/// A policy entry's rules in words. Where a reset by sspr is not held to the history and
/// minimum-age rules (`resets_keep_history` false: AD without the policy-hints control),
/// those rules are not claimed; the user is told the history is not checked here instead.
fn policy_rules(e: &SearchEntry, kind: PolicyKind, resets_keep_history: bool) -> Vec<String> {
    let num = |a: &str| {
        first(e, a)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    // AD keeps ages as negative 100 ns intervals; OpenLDAP as seconds.
    let (min, history, complex, min_age_secs) = match kind {
        PolicyKind::Ppolicy => (
            num("pwdMinLength"),
            num("pwdInHistory"),
            false,
            num("pwdMinAge"),
        ),
        // DOMAIN_PASSWORD_COMPLEX is bit 0 of pwdProperties.
        PolicyKind::AdDomain => (
            num("minPwdLength"),
            num("pwdHistoryLength"),
            num("pwdProperties") & 1 == 1,
            num("minPwdAge").saturating_abs() / 10_000_000,
        ),
        PolicyKind::AdPso => (
            num("msDS-MinimumPasswordLength"),
            num("msDS-PasswordHistoryLength"),
            first(e, "msDS-PasswordComplexityEnabled")
                .is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
            num("msDS-MinimumPasswordAge").saturating_abs() / 10_000_000,
        ),
    };
    let mut rules = Vec::new();
    if min > 0 {
        rules.push(format!("The directory requires at least {min} characters."));
    }
    if history > 0 && resets_keep_history {
        rules.push(format!(
            "The directory refuses your last {history} passwords."
        ));
    }
    if complex {
        rules.push(
            "The domain requires three of: uppercase letters, lowercase letters, digits, symbols; and not your account name."
                .into(),
        );
    }
    if min_age_secs > 0 && resets_keep_history {
        rules.push(format!(
            "Once set, the password cannot be changed again for {}.",
            duration_words(min_age_secs)
        ));
    }
    if history > 0 && !resets_keep_history {
        rules.push(
            "A reset here is not checked against your earlier passwords: choose one you have not used before."
                .into(),
        );
    }
    rules
}

impl LdapDirectory {
    /// `DC=…` of the base DN: the AD domain object.
    fn domain_dn(&self) -> String {
        self.cfg
            .base_dn
            .split(',')
            .map(str::trim)
            .filter(|rdn| rdn.to_ascii_lowercase().starts_with("dc="))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The controls the server lists in its root DSE's `supportedControl`, read once.
    async fn supported_controls(&self, ldap: &mut Ldap) -> Result<&[String], DirError> {
        let listed = self
            .controls
            .get_or_try_init(|| async move {
                let (entries, _) = ldap
                    .search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"])
                    .await
                    .map_err(unavailable)?
                    .success()
                    .map_err(unavailable)?;
                Ok::<_, DirError>(
                    entries
                        .into_iter()
                        .next()
                        .map(SearchEntry::construct)
                        .and_then(|e| {
                            e.attrs
                                .into_iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case("supportedControl"))
                                .map(|(_, v)| v)
                        })
                        .unwrap_or_default(),
                )
            })
            .await?;
        Ok(listed.as_slice())
    }

    /// AD: the policy-hints control the server lists, if any. Without one, a reset is not
    /// checked against the password history or the minimum age.
    async fn policy_hints(&self, ldap: &mut Ldap) -> Result<Option<&'static str>, DirError> {
        let listed = self.supported_controls(ldap).await?;
        Ok(supported_hints(listed))
    }

    /// Whether a reset by sspr is held to the history and minimum-age rules: OpenLDAP's
    /// ppolicy applies them to the password modify; AD only with the policy-hints control.
    async fn resets_keep_history(&self, ldap: &mut Ldap) -> Result<bool, DirError> {
        match self.cfg.flavor {
            Flavor::OpenLdap => Ok(true),
            Flavor::Ad => Ok(self.policy_hints(ldap).await?.is_some()),
        }
    }

    /// The policy entry at `dn`, read with the attributes `kind` needs; `None` if it cannot
    /// be read (absent, or hidden from the service account).
    async fn policy_entry(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        kind: PolicyKind,
    ) -> Result<Option<SearchEntry>, DirError> {
        match ldap
            .search(dn, Scope::Base, "(objectClass=*)", kind.attrs())
            .await
            .map_err(unavailable)?
            .success()
        {
            // AD may show the entry but none of its attributes to an account without read
            // access: that is no more readable than an entry it hides.
            Ok((entries, _)) => Ok(entries
                .into_iter()
                .next()
                .map(SearchEntry::construct)
                .filter(|e| kind == PolicyKind::AdDomain || first(e, kind.attrs()[0]).is_some())),
            // noSuchObject, insufficientAccess: the entry is not visible to the service account.
            Err(LdapError::LdapResult { result }) if matches!(result.rc, 32 | 50) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The rules that apply when nothing about the user is known.
    async fn default_rules(&self, ldap: &mut Ldap) -> Result<Vec<String>, DirError> {
        let (dn, kind) = match self.cfg.flavor {
            Flavor::OpenLdap => match &self.cfg.policy_dn {
                Some(dn) => (dn.clone(), PolicyKind::Ppolicy),
                None => return Ok(Vec::new()),
            },
            Flavor::Ad => (self.domain_dn(), PolicyKind::AdDomain),
        };
        let enforced = self.resets_keep_history(ldap).await?;
        Ok(self
            .policy_entry(ldap, &dn, kind)
            .await?
            .map(|e| policy_rules(&e, kind, enforced))
            .unwrap_or_default())
    }

    /// The DN of the policy that applies to the user in particular, if any: AD's
    /// `msDS-ResultantPSO` (constructed: the winning fine-grained policy), or OpenLDAP's
    /// `pwdPolicySubentry`. `None` for an unknown user or one under the default policy.
    async fn user_policy_dn(
        &self,
        ldap: &mut Ldap,
        login: &str,
    ) -> Result<Option<String>, DirError> {
        let attr = match self.cfg.flavor {
            Flavor::Ad => "msDS-ResultantPSO",
            Flavor::OpenLdap => "pwdPolicySubentry",
        };
        let filter = self.cfg.user_filter.replace("{login}", &ldap_escape(login));
        let (entries, _) = ldap
            .search(&self.cfg.base_dn, Scope::Subtree, &filter, vec![attr])
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        if entries.len() != 1 {
            return Ok(None);
        }
        Ok(entries
            .into_iter()
            .next()
            .map(SearchEntry::construct)
            .and_then(|e| first(&e, attr)))
    }

    /// The rules for one user, in words: on AD the fine-grained password policy that wins for
    /// the user (`msDS-ResultantPSO`), which replaces the domain's policy for them; on OpenLDAP
    /// the policy named by the user's `pwdPolicySubentry`. Otherwise, or when that policy
    /// cannot be read (AD lets only administrators read PSOs unless delegated), the same
    /// rules as [`Directory::password_rules`].
    pub async fn rules_for_login(&self, login: &str) -> Result<Vec<String>, DirError> {
        pooled_read!(self, |l| self.rules_for(l, login))
    }

    async fn rules_for(&self, ldap: &mut Ldap, login: &str) -> Result<Vec<String>, DirError> {
        if let Some(dn) = self.user_policy_dn(ldap, login).await? {
            let kind = match self.cfg.flavor {
                Flavor::Ad => PolicyKind::AdPso,
                Flavor::OpenLdap => PolicyKind::Ppolicy,
            };
            let enforced = self.resets_keep_history(ldap).await?;
            match self.policy_entry(ldap, &dn, kind).await? {
                Some(e) => return Ok(policy_rules(&e, kind, enforced)),
                None => tracing::warn!(
                    login,
                    policy = %dn,
                    "ldap: the user's password policy cannot be read, showing the default rules instead: give the service account read access to it"
                ),
            }
        }
        self.default_rules(ldap).await
    }

    async fn entry_and_groups(
        &self,
        ldap: &mut Ldap,
        login: &str,
    ) -> Result<Option<(SearchEntry, Vec<String>)>, DirError> {
        let Some(e) = self.entry(ldap, login).await? else {
            return Ok(None);
        };
        let groups = self.groups(ldap, &e).await?;
        Ok(Some((e, groups)))
    }

    /// The reset itself, on a service connection: AD's `unicodePwd`, or OpenLDAP's password
    /// modify; then the must-change flag and the unlock.
    async fn reset_on(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        new_password: &str,
    ) -> Result<(), DirError> {
        if self.cfg.flavor == Flavor::Ad {
            return self.ad_reset(ldap, dn, new_password).await;
        }
        // Ask for the ppolicy response control: OpenLDAP says why in it, not in the text.
        let ppolicy = ldap3::controls::RawControl {
            ctype: PPOLICY_OID.into(),
            crit: false,
            val: None,
        };
        let r = ldap
            .with_controls(vec![ppolicy])
            .extended(PasswordModify {
                user_id: Some(dn),
                old_pass: None,
                new_pass: Some(new_password),
            })
            .await
            .map_err(unavailable)?
            .success();
        if let Err(e) = r {
            tracing::warn!(dn = %dn, error = %e, "ldap: password modify refused");
            return Err(match rejection(&e) {
                Some(r) => DirError::Rejected(r),
                None => match &e {
                    LdapError::LdapResult { result } if result.rc == 50 => {
                        DirError::Permission(format!(
                            "ldap: the service account may not reset {dn} (write access to userPassword); directory said {}",
                            directory_said(result.rc, &result.text)
                        ))
                    }
                    other => DirError::Other(format!("ldap: password modify on {dn}: {other}")),
                },
            });
        }
        if self.cfg.must_change_after_reset {
            // After the password modify: ppolicy clears pwdReset when anyone but the rootdn
            // changes a password, so it cannot come first.
            self.set_pwd_reset(ldap, dn).await;
        }
        // A reset also unlocks, as in Azure AD and every peer.
        self.unlock_after_reset(ldap, dn).await;
        Ok(())
    }

    /// The password is set by now: a lock the service account may not clear does not undo
    /// that. The caller reads the lock state back and tells the user the account is still
    /// locked; the fix goes to the log.
    async fn unlock_after_reset(&self, ldap: &mut Ldap, dn: &str) {
        if let Err(e) = self.remove_lock(ldap, dn).await {
            tracing::error!(dn = %dn, error = %e, "ldap: the password was reset but the account could not be unlocked: give the service account write access to the lock attribute (pwdAccountLockedTime / lockoutTime)");
        }
    }

    /// What changes when the password is written: AD's `pwdLastSet` (100 ns resolution);
    /// OpenLDAP's `pwdChangedTime` (ppolicy) and, where the service account may read it, a
    /// digest of `userPassword`. With must-change-after-reset AD sets `pwdLastSet` to 0,
    /// which it may already be, so `uSNChanged` joins the stamp there.
    async fn stamp_on(&self, ldap: &mut Ldap, user: &DirUser) -> Result<Option<String>, DirError> {
        let filter = self
            .cfg
            .user_filter
            .replace("{login}", &ldap_escape(&user.lookup));
        let attrs = vec![
            "entryUUID",
            "objectGUID",
            "pwdChangedTime",
            "userPassword",
            "pwdLastSet",
            "uSNChanged",
        ];
        let (entries, _) = ldap
            .search(&self.cfg.base_dn, Scope::Subtree, &filter, attrs)
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        let Some(e) = entries.into_iter().next().map(SearchEntry::construct) else {
            return Err(DirError::Other(format!("ldap: {} vanished", user.login)));
        };
        if entry_id(&e) != user.id {
            return Err(DirError::Other(format!(
                "ldap: {} is no longer the same entry",
                user.login
            )));
        }
        let mut parts = Vec::new();
        match self.cfg.flavor {
            Flavor::Ad => {
                if let Some(v) = first(&e, "pwdLastSet") {
                    parts.push(format!("pwdLastSet={v}"));
                    if self.cfg.must_change_after_reset
                        && let Some(usn) = first(&e, "uSNChanged")
                    {
                        parts.push(format!("uSNChanged={usn}"));
                    }
                }
            }
            Flavor::OpenLdap => {
                if let Some(v) = first(&e, "pwdChangedTime") {
                    parts.push(format!("pwdChangedTime={v}"));
                }
                let mut pw = binary_values(&e, "userPassword");
                if !pw.is_empty() {
                    pw.sort();
                    let joined: String = pw.iter().flatten().map(|b| format!("{b:02x}")).collect();
                    parts.push(format!(
                        "userPassword={}",
                        sspr_app::crypto::token_hash(&joined)
                    ));
                }
            }
        }
        // Nothing readable that tells: the caller reports an unknown outcome instead of a guess.
        if parts.is_empty() {
            return Ok(None);
        }
        // A stamp is stored until the flow settles: only a digest, never a password hash.
        Ok(Some(sspr_app::crypto::token_hash(&parts.join(";"))))
    }

    async fn dn_of(&self, user: &DirUser) -> Result<String, DirError> {
        let e = pooled_read!(self, |l| self.entry(l, &user.lookup))?;
        match e {
            Some(e) if entry_id(&e) == user.id => Ok(e.dn),
            _ => Err(DirError::Other(format!(
                "ldap: {} is no longer the same entry",
                user.login
            ))),
        }
    }

    /// AD reset: replace `unicodePwd` with the quoted password in UTF-16LE (only allowed over
    /// an encrypted connection), with the policy-hints control so the domain's history rule
    /// applies as to a change; then clear `lockoutTime`.
    async fn ad_reset(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        new_password: &str,
    ) -> Result<(), DirError> {
        let quoted: Vec<u8> = format!("\"{new_password}\"")
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut value = std::collections::HashSet::new();
        value.insert(quoted);
        // The policy-hints control the server lists, value SEQUENCE { INTEGER 1 }; none where
        // it lists neither (the rules shown then do not claim the history).
        let hints: Vec<_> = self
            .policy_hints(ldap)
            .await?
            .map(|oid| ldap3::controls::RawControl {
                ctype: oid.into(),
                crit: false,
                val: Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            })
            .into_iter()
            .collect();
        let mut mods = vec![Mod::Replace(b"unicodePwd".to_vec(), value)];
        if self.cfg.must_change_after_reset {
            // In the same modify, so the reset and the flag apply together or not at all.
            let mut zero = std::collections::HashSet::new();
            zero.insert(b"0".to_vec());
            mods.push(Mod::Replace(b"pwdLastSet".to_vec(), zero));
        }
        let r = ldap
            .with_controls(hints)
            .modify(dn, mods)
            .await
            .map_err(unavailable)?;
        if r.rc != 0 {
            tracing::warn!(dn = %dn, rc = r.rc, text = %r.text, "ldap: AD password reset refused");
            if ad_access_refused(r.rc, &r.text) && self.ad_protected(ldap, dn).await {
                return Err(protected_account(dn, "password reset", r.rc, &r.text));
            }
            return Err(ad_error(
                dn,
                r.rc,
                &r.text,
                self.cfg.must_change_after_reset,
            ));
        }
        self.unlock_after_reset(ldap, dn).await;
        Ok(())
    }

    /// OpenLDAP: `pwdReset: TRUE`, so ppolicy (with `pwdMustChange: TRUE`) restricts the next
    /// session to changing the password. The password is already set by now: a refusal is
    /// logged with its fix and does not undo the reset, which the user has to know about.
    async fn set_pwd_reset(&self, ldap: &mut Ldap, dn: &str) {
        let mut t = std::collections::HashSet::new();
        t.insert("TRUE");
        match ldap.modify(dn, vec![Mod::Replace("pwdReset", t)]).await {
            Ok(r) if r.rc == 0 => {}
            Ok(r) => tracing::error!(
                dn = %dn,
                rc = r.rc,
                text = %r.text,
                "ldap: the password was reset but pwdReset could not be set, so the user will not be asked to change it: give the service account write access to pwdReset (or turn off directory.ldap.must_change_after_reset)"
            ),
            Err(e) => tracing::error!(
                dn = %dn,
                error = %e,
                "ldap: the password was reset but pwdReset could not be set"
            ),
        }
    }

    /// Whether the entry carries `adminCount=1` (AD's mark of an AdminSDHolder-protected
    /// account). Asked only after a refusal; unreadable counts as not protected.
    async fn ad_protected(&self, ldap: &mut Ldap, dn: &str) -> bool {
        match ldap
            .search(dn, Scope::Base, "(objectClass=*)", vec!["adminCount"])
            .await
            .and_then(|r| r.success())
        {
            Ok((entries, _)) => entries
                .into_iter()
                .next()
                .map(SearchEntry::construct)
                .and_then(|e| first(&e, "adminCount"))
                .is_some_and(|v| v.trim() == "1"),
            Err(e) => {
                tracing::warn!(dn = %dn, error = %e, "ldap: cannot read adminCount");
                false
            }
        }
    }

    async fn remove_lock(&self, ldap: &mut Ldap, dn: &str) -> Result<(), DirError> {
        let r = match self.cfg.flavor {
            Flavor::Ad => {
                let mut zero = std::collections::HashSet::new();
                zero.insert("0");
                ldap.modify(dn, vec![Mod::Replace("lockoutTime", zero)])
                    .await
            }
            Flavor::OpenLdap => {
                ldap.modify(
                    dn,
                    vec![Mod::Delete(
                        "pwdAccountLockedTime",
                        std::collections::HashSet::new(),
                    )],
                )
                .await
            }
        }
        .map_err(unavailable)?;
        match r.rc {
            // 16: noSuchAttribute, the account was not locked.
            0 | 16 => Ok(()),
            50 if self.cfg.flavor == Flavor::Ad && self.ad_protected(ldap, dn).await => {
                Err(protected_account(dn, "unlock", r.rc, &r.text))
            }
            50 => Err(DirError::Permission(format!(
                "ldap: the service account may not unlock {dn}; directory said {}",
                directory_said(r.rc, &r.text)
            ))),
            rc => Err(DirError::Other(format!(
                "ldap: unlock {dn}: rc={rc} {}",
                r.text
            ))),
        }
    }
}

/// One line of `sspr doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do about a failure.
    pub fix: String,
}

impl Check {
    fn pass(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: String::new(),
        }
    }
    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

impl LdapDirectory {
    /// Checks the path from sspr to the directory step by step, each failure with its fix:
    /// name resolution and TCP, TLS and the certificate, the service bind, the search for a
    /// sample user, group resolution, and the rights a reset and an unlock need (probed
    /// without changing anything: on AD the Reset Password right is read from the user's
    /// DACL and the service account's `tokenGroups`).
    pub async fn diagnose(&self, sample_user: Option<&str>) -> Vec<Check> {
        let mut out = Vec::new();
        for url in &self.cfg.urls {
            let hostport = url
                .split("://")
                .nth(1)
                .unwrap_or("")
                .trim_end_matches('/')
                .to_string();
            let hostport = if hostport.contains(':') {
                hostport
            } else {
                format!(
                    "{hostport}:{}",
                    if url.starts_with("ldaps://") {
                        636
                    } else {
                        389
                    }
                )
            };
            match tokio::time::timeout(Duration::from_secs(self.cfg.timeout_secs), tokio::net::TcpStream::connect(&hostport)).await {
                Ok(Ok(_)) => out.push(Check::pass("network", format!("{hostport} accepts connections"))),
                Ok(Err(e)) => out.push(Check::fail(
                    "network",
                    format!("{hostport}: {e}"),
                    "check the host name and port in directory.ldap.urls, DNS, and that a firewall lets sspr reach the directory",
                )),
                Err(_) => out.push(Check::fail(
                    "network",
                    format!("{hostport}: no answer within {} s", self.cfg.timeout_secs),
                    "a firewall is probably dropping the connection; allow sspr to reach the directory's LDAPS port",
                )),
            }
        }
        if out.iter().all(|c| !c.ok) {
            return out;
        }
        let reachable: Vec<String> = self
            .cfg
            .urls
            .iter()
            .zip(&out)
            .filter(|(_, c)| c.ok)
            .map(|(u, _)| u.clone())
            .collect();
        for url in &reachable {
            out.push(self.tls_check(url).await);
        }
        let mut ldap = match self.connect().await {
            Ok(l) => l,
            Err(e) => {
                out.push(Check::fail(
                    "connect",
                    e.to_string(),
                    "no URL gives a usable connection: see the tls lines above",
                ));
                return out;
            }
        };
        match ldap
            .simple_bind(&self.cfg.bind_dn, &self.cfg.bind_password)
            .await
        {
            Ok(r) if r.rc == 0 => out.push(Check::pass(
                "bind",
                format!("bound as {}", self.cfg.bind_dn),
            )),
            Ok(r) => {
                out.push(Check::fail(
                    "bind",
                    format!("the service account {} cannot bind: rc={} {}", self.cfg.bind_dn, r.rc, r.text),
                    "check directory.ldap.bind_dn and the password in bind_password_file (rc=49: wrong DN or password; locked or expired service accounts also fail)",
                ));
                return out;
            }
            Err(e) => {
                out.push(Check::fail(
                    "bind",
                    e.to_string(),
                    "the directory dropped the connection during the bind",
                ));
                return out;
            }
        }
        if self.cfg.flavor == Flavor::Ad {
            out.push(self.history_check(&mut ldap).await);
            out.push(self.list_psos(&mut ldap).await);
        }
        let Some(user) = sample_user else {
            out.push(Check::pass("user search", "skipped: give --user LOGIN to check the search, groups and rights on a real account"));
            let _ = ldap.unbind().await;
            return out;
        };
        let entry = match self.entry(&mut ldap, user).await {
            Ok(Some(e)) => {
                out.push(Check::pass("user search", format!("{user} is {}", e.dn)));
                e
            }
            Ok(None) => {
                out.push(Check::fail(
                    "user search",
                    format!("no single entry under {} matches {} for {user:?}", self.cfg.base_dn, self.cfg.user_filter),
                    "check directory.ldap.base_dn and user_filter, and that the service account may read the users",
                ));
                let _ = ldap.unbind().await;
                return out;
            }
            Err(e) => {
                out.push(Check::fail(
                    "user search",
                    e.to_string(),
                    "check directory.ldap.base_dn",
                ));
                let _ = ldap.unbind().await;
                return out;
            }
        };
        match self.groups(&mut ldap, &entry).await {
            Ok(g) if g.is_empty() => out.push(Check::pass(
                "groups",
                format!("{user} is in no group sspr can see (policy scopes by group need memberOf or directory.ldap.group_base_dn)"),
            )),
            Ok(g) => out.push(Check::pass("groups", format!("{user} is in {}", g.join(", ")))),
            Err(e) => out.push(Check::fail("groups", e.to_string(), "check directory.ldap.group_base_dn")),
        }
        out.push(self.user_policy_check(&mut ldap, user).await);
        out.extend(self.probe_rights(&mut ldap, &entry.dn).await);
        let _ = ldap.unbind().await;
        out
    }

    /// AD: whether a reset by sspr is held to the password history and minimum age, which
    /// takes the policy-hints control listed in the root DSE. Not an error where it is not
    /// (Samba): the rules shown to users then say the history is not checked.
    async fn history_check(&self, ldap: &mut Ldap) -> Check {
        let name = "history";
        match self.policy_hints(ldap).await {
            Ok(Some(oid)) => Check::pass(
                name,
                format!(
                    "enforced on resets: the directory supports the policy-hints control {oid}"
                ),
            ),
            Ok(None) => Check::pass(
                name,
                "NOT enforced on resets: the directory lists no policy-hints control (1.2.840.113556.1.4.2239 or .2066) in supportedControl, so a reset may reuse an earlier password and ignores the minimum age; the rules shown to users say so instead of claiming them",
            ),
            Err(e) => Check::fail(
                name,
                format!("cannot read the root DSE: {e}"),
                "the directory dropped the search",
            ),
        }
    }

    /// TLS on one URL, said plainly: `ldaps://` must complete the handshake with a trusted
    /// certificate, `ldap://` must do StartTLS; an `ldap://` URL used without it
    /// (`allow_plain`) fails as unencrypted, saying whether the server offers StartTLS.
    async fn tls_check(&self, url: &str) -> Check {
        let name = "tls";
        let ldaps = url.starts_with("ldaps://");
        let how = if ldaps { "TLS (ldaps)" } else { "StartTLS" };
        let tried = self.connect_to(url, !ldaps).await;
        let untrusted = |text: &str| {
            text.contains("certificate")
                || text.contains("UnknownIssuer")
                || text.contains("InvalidCertificate")
        };
        match (tried, ldaps || !self.cfg.allow_plain) {
            (Ok(mut l), true) => {
                let _ = l.unbind().await;
                Check::pass(
                    name,
                    format!("{url}: {how} handshake and certificate check passed; encrypted"),
                )
            }
            (Ok(mut l), false) => {
                let _ = l.unbind().await;
                Check::fail(
                    name,
                    format!(
                        "{url} is UNENCRYPTED: directory.ldap.allow_plain is set, so passwords cross the network in clear (the server does offer StartTLS with a trusted certificate)"
                    ),
                    "turn off directory.ldap.allow_plain: sspr then uses StartTLS on this URL",
                )
            }
            (Err(e), true) => {
                let text = e.to_string();
                let fix = if untrusted(&text) {
                    "the directory's certificate is not trusted: set directory.ldap.ca_file to the CA that signed it, and make sure the certificate names the host in the URL"
                } else if ldaps {
                    "check that the directory speaks LDAPS on this port"
                } else {
                    "check that the directory offers StartTLS on this port (or use ldaps://)"
                };
                Check::fail(name, format!("{url}: {how} failed: {text}"), fix)
            }
            (Err(e), false) => Check::fail(
                name,
                format!(
                    "{url} is UNENCRYPTED: directory.ldap.allow_plain is set, so passwords cross the network in clear; StartTLS on it failed: {e}"
                ),
                if untrusted(&e.to_string()) {
                    "set directory.ldap.ca_file to the CA that signed the directory's certificate, then turn off directory.ldap.allow_plain"
                } else {
                    "give the directory a certificate and use ldaps:// (or StartTLS), then turn off directory.ldap.allow_plain"
                },
            ),
        }
    }

    /// The AD domain's fine-grained password policies (PSOs) the service account can see.
    async fn list_psos(&self, ldap: &mut Ldap) -> Check {
        let name = "fine-grained";
        let container = format!(
            "CN=Password Settings Container,CN=System,{}",
            self.domain_dn()
        );
        let attrs = vec![
            "cn",
            "msDS-PasswordSettingsPrecedence",
            "msDS-MinimumPasswordLength",
            "msDS-PSOAppliesTo",
        ];
        let found = ldap
            .search(
                &container,
                Scope::OneLevel,
                "(objectClass=msDS-PasswordSettings)",
                attrs,
            )
            .await
            .and_then(|r| r.success());
        let mut psos: Vec<SearchEntry> = match found {
            Ok((entries, _)) => entries.into_iter().map(SearchEntry::construct).collect(),
            Err(LdapError::LdapResult { result }) if matches!(result.rc, 32 | 50) => Vec::new(),
            Err(e) => return Check::fail(name, e.to_string(), "the directory dropped the search"),
        };
        if psos.is_empty() {
            return Check::pass(
                name,
                format!(
                    "no fine-grained password policy visible in {container} (none exist, or the service account may not read them: then users under one are shown the domain's rules)"
                ),
            );
        }
        let precedence = |e: &SearchEntry| {
            first(e, "msDS-PasswordSettingsPrecedence")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(i64::MAX)
        };
        psos.sort_by_key(precedence);
        let cn_of = |dn: &str| first_rdn_value(dn).unwrap_or_default();
        let list: Vec<String> = psos
            .iter()
            .map(|e| {
                let applies: Vec<String> = e
                    .attrs
                    .get("msDS-PSOAppliesTo")
                    .into_iter()
                    .flatten()
                    .map(|d| cn_of(d))
                    .collect();
                format!(
                    "{} (precedence {}, at least {} characters, applies to {})",
                    first(e, "cn").unwrap_or_else(|| cn_of(&e.dn)),
                    precedence(e),
                    first(e, "msDS-MinimumPasswordLength").unwrap_or_else(|| "?".into()),
                    if applies.is_empty() {
                        "nobody".to_string()
                    } else {
                        applies.join(", ")
                    }
                )
            })
            .collect();
        Check::pass(name, list.join("; "))
    }

    /// Which policy applies to the sample user, and whether sspr can read it.
    async fn user_policy_check(&self, ldap: &mut Ldap, user: &str) -> Check {
        let name = "user policy";
        let dn = match self.user_policy_dn(ldap, user).await {
            Ok(Some(dn)) => dn,
            Ok(None) => {
                return Check::pass(
                    name,
                    match self.cfg.flavor {
                        Flavor::Ad => format!("{user} is under the domain's password policy"),
                        Flavor::OpenLdap => format!(
                            "{user} is under the default policy ({})",
                            self.cfg
                                .policy_dn
                                .as_deref()
                                .unwrap_or("directory.ldap.policy_dn not set")
                        ),
                    },
                );
            }
            Err(e) => return Check::fail(name, e.to_string(), "check directory.ldap.base_dn"),
        };
        let kind = match self.cfg.flavor {
            Flavor::Ad => PolicyKind::AdPso,
            Flavor::OpenLdap => PolicyKind::Ppolicy,
        };
        let enforced = self.resets_keep_history(ldap).await.unwrap_or(false);
        match self.policy_entry(ldap, &dn, kind).await {
            Ok(Some(e)) => {
                let rules = policy_rules(&e, kind, enforced);
                Check::pass(
                    name,
                    format!(
                        "{user} is under {dn}: {}",
                        if rules.is_empty() {
                            "no length or history rule".to_string()
                        } else {
                            rules.join(" ")
                        }
                    ),
                )
            }
            Ok(None) => Check::fail(
                name,
                format!(
                    "{user} is under {dn}, which the service account cannot read: sspr shows the default rules instead"
                ),
                match self.cfg.flavor {
                    Flavor::Ad => {
                        "grant the service account Read on CN=Password Settings Container,CN=System in the domain (or on that policy)"
                    }
                    Flavor::OpenLdap => "give the service account read access to the policy entry",
                },
            ),
            Err(e) => Check::fail(name, e.to_string(), "the directory dropped the search"),
        }
    }

    /// ppolicy only enforces `pwdReset` where the policy has `pwdMustChange: TRUE`.
    async fn check_must_change(&self, ldap: &mut Ldap, policy: &str) -> Check {
        let name = "ppolicy";
        let found = ldap
            .search(
                policy,
                Scope::Base,
                "(objectClass=*)",
                vec!["pwdMustChange"],
            )
            .await
            .and_then(|r| r.success());
        match found {
            Ok((entries, _)) => {
                let must = entries
                    .into_iter()
                    .next()
                    .map(SearchEntry::construct)
                    .and_then(|e| first(&e, "pwdMustChange"))
                    .is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
                if must {
                    Check::pass(name, format!("{policy} has pwdMustChange: TRUE"))
                } else {
                    Check::fail(
                        name,
                        format!(
                            "{policy} does not have pwdMustChange: TRUE, so ppolicy ignores pwdReset"
                        ),
                        "set pwdMustChange: TRUE in the password policy (or turn off directory.ldap.must_change_after_reset)",
                    )
                }
            }
            Err(e) => Check::fail(
                name,
                format!("cannot read {policy}: {e}"),
                "check directory.ldap.policy_dn and that the service account may read it",
            ),
        }
    }

    /// Deletes a value that cannot be there: a server that allows the write answers
    /// "no such attribute", one that does not answers "insufficient access". Nothing changes.
    async fn probe_rights(&self, ldap: &mut Ldap, dn: &str) -> Vec<Check> {
        let probe = |attr: &'static str| {
            // A value of the attribute's syntax that no account ever holds.
            let value = match attr {
                "pwdAccountLockedTime" => "19700101000001Z",
                "lockoutTime" | "pwdLastSet" => "1",
                "pwdReset" => "FALSE",
                _ => "sspr-doctor-probe-value-that-is-never-set",
            };
            let mut v = std::collections::HashSet::new();
            v.insert(value);
            Mod::Delete(attr, v)
        };
        let mut out = Vec::new();
        let mut targets: Vec<(&str, &'static str, &str)> = match self.cfg.flavor {
            Flavor::OpenLdap => vec![
                (
                    "reset right",
                    "userPassword",
                    "give the service account write access to userPassword on the users",
                ),
                (
                    "unlock right",
                    "pwdAccountLockedTime",
                    "give the service account manage access to pwdAccountLockedTime on the users",
                ),
            ],
            Flavor::Ad => vec![(
                "unlock right",
                "lockoutTime",
                "delegate Write lockoutTime on the users' OU to the service account",
            )],
        };
        if self.cfg.must_change_after_reset {
            targets.push(match self.cfg.flavor {
                Flavor::OpenLdap => (
                    "must change",
                    "pwdReset",
                    "give the service account write access to pwdReset on the users (or turn off directory.ldap.must_change_after_reset)",
                ),
                Flavor::Ad => (
                    "must change",
                    "pwdLastSet",
                    "delegate Write pwdLastSet on the users' OU to the service account (or turn off directory.ldap.must_change_after_reset)",
                ),
            });
        }
        for &(name, attr, fix) in &targets {
            match ldap.modify(dn, vec![probe(attr)]).await {
                Ok(r) if r.rc == 16 || r.rc == 0 || r.rc == 20 => {
                    out.push(Check::pass(name, format!("may write {attr} on {dn}")))
                }
                Ok(r) if r.rc == 50 => {
                    let protected =
                        self.cfg.flavor == Flavor::Ad && self.ad_protected(ldap, dn).await;
                    out.push(Check::fail(
                        name,
                        format!("may not write {attr} on {dn}: {}", r.text),
                        if protected {
                            "this is a protected account (adminCount=1): AdminSDHolder blocks the rights delegated on the OU; delegate them on CN=AdminSDHolder,CN=System too, or keep such accounts out of sspr's scope"
                        } else {
                            fix
                        },
                    ))
                }
                Ok(r) => out.push(Check::pass(
                    name,
                    format!(
                        "{attr}: inconclusive (rc={} {}); checked at the first real use",
                        r.rc, r.text
                    ),
                )),
                Err(e) => out.push(Check::fail(name, e.to_string(), fix)),
            }
        }
        if let (true, Flavor::OpenLdap, Some(policy)) = (
            self.cfg.must_change_after_reset,
            self.cfg.flavor,
            &self.cfg.policy_dn,
        ) {
            out.push(self.check_must_change(ldap, policy).await);
        }
        if self.cfg.flavor == Flavor::Ad {
            out.insert(0, self.probe_reset_right(ldap, dn).await);
        }
        out
    }

    /// AD: whether the service account holds the Reset Password right on `dn`, read from the
    /// entry's DACL and the SIDs the account acts with (its own, its `tokenGroups`, Everyone
    /// and Authenticated Users), without resetting anything. Where either cannot be read the
    /// check says so and passes: the right then shows at the first reset.
    async fn probe_reset_right(&self, ldap: &mut Ldap, dn: &str) -> Check {
        use security_descriptor::{Decision, RESET_PASSWORD, control_access};
        let name = "reset right";
        let unsure = |why: String| {
            Check::pass(
                name,
                format!(
                    "could not check: {why}; a missing Reset Password right will show at the first reset as directory_permission in the audit log"
                ),
            )
        };
        // LDAP_SERVER_SD_FLAGS_OID, value SEQUENCE { INTEGER 4 }: the DACL only, which the
        // service account may read without owning the entry or holding SeSecurityPrivilege.
        let sd_flags = ldap3::controls::RawControl {
            ctype: "1.2.840.113556.1.4.801".into(),
            crit: false,
            val: Some(vec![0x30, 0x03, 0x02, 0x01, 0x04]),
        };
        let sd = match ldap
            .with_controls(vec![sd_flags])
            .search(
                dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["nTSecurityDescriptor"],
            )
            .await
            .and_then(|r| r.success())
        {
            Ok((entries, _)) => entries
                .into_iter()
                .next()
                .map(SearchEntry::construct)
                .and_then(|e| binary_values(&e, "nTSecurityDescriptor").into_iter().next()),
            Err(e) => return unsure(format!("cannot read the security descriptor of {dn}: {e}")),
        };
        let Some(sd) = sd else {
            return unsure(format!(
                "the service account may not read the security descriptor of {dn}"
            ));
        };
        let sids = match self.own_sids(ldap).await {
            Ok(sids) => sids,
            Err(why) => return unsure(why),
        };
        let refused = |detail: String| async move {
            let fix = if self.ad_protected(ldap, dn).await {
                "this is a protected account (adminCount=1): AdminSDHolder blocks the rights delegated on the OU; delegate Reset Password on CN=AdminSDHolder,CN=System too, or keep such accounts out of sspr's scope"
            } else {
                "delegate Reset Password on the users' OU to the service account: Delegate Control… → Reset user passwords and force password change at next logon"
            };
            Check::fail(name, detail, fix)
        };
        match control_access(&sd, &sids, &RESET_PASSWORD) {
            Ok(Decision::Allowed { sid }) => Check::pass(
                name,
                format!("may reset the password of {dn} (Reset Password allowed to {sid})"),
            ),
            Ok(Decision::NoDacl) => Check::pass(
                name,
                format!("may reset the password of {dn} (its security descriptor has no DACL)"),
            ),
            Ok(Decision::Denied { sid }) => {
                refused(format!(
                    "may not reset the password of {dn}: Reset Password is denied to {sid}"
                ))
                .await
            }
            Ok(Decision::NotGranted) => {
                refused(format!(
                    "may not reset the password of {dn}: no entry of its DACL gives the service account the Reset Password right"
                ))
                .await
            }
            Err(e) => unsure(format!("{dn}: {e}")),
        }
    }

    /// The SIDs the service account acts with: its `objectSid`, its `tokenGroups` (computed by
    /// the server, nested and primary groups included), Everyone and Authenticated Users.
    async fn own_sids(&self, ldap: &mut Ldap) -> Result<Vec<String>, String> {
        let me = &self.cfg.bind_dn;
        // A DN is read directly; a UPN (user@domain) or DOMAIN\user is looked up first.
        let dn = if me.contains('=') {
            me.clone()
        } else {
            let filter = match me.split_once('\\') {
                Some((_, sam)) => format!("(sAMAccountName={})", ldap_escape(sam)),
                None => format!("(userPrincipalName={})", ldap_escape(me)),
            };
            match ldap
                .search(&self.domain_dn(), Scope::Subtree, &filter, vec!["1.1"])
                .await
                .and_then(|r| r.success())
            {
                Ok((entries, _)) if entries.len() == 1 => entries
                    .into_iter()
                    .next()
                    .map(|e| SearchEntry::construct(e).dn)
                    .unwrap_or_default(),
                Ok(_) => return Err(format!("cannot find the service account {me}")),
                Err(e) => return Err(format!("cannot find the service account {me}: {e}")),
            }
        };
        // tokenGroups is constructed: only a base-scope search returns it.
        let entry = ldap
            .search(
                &dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["objectSid", "tokenGroups"],
            )
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("cannot read the service account's groups: {e}"))?
            .0
            .into_iter()
            .next()
            .map(SearchEntry::construct)
            .ok_or_else(|| format!("cannot read the service account {dn}"))?;
        let groups = binary_values(&entry, "tokenGroups");
        let own = binary_values(&entry, "objectSid");
        if own.is_empty() || groups.is_empty() {
            return Err(format!(
                "the service account may not read its own objectSid and tokenGroups on {dn}"
            ));
        }
        let mut sids = own
            .iter()
            .chain(&groups)
            .map(|b| security_descriptor::sid_to_string(b))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the service account's SIDs: {e}"))?;
        sids.extend(
            security_descriptor::WELL_KNOWN_SIDS
                .iter()
                .map(|s| s.to_string()),
        );
        Ok(sids)
    }
}

/// The values of a binary attribute, wherever ldap3 put them: a value that happens to be
/// valid UTF-8 (a short SID can be) lands in `attrs`. Attribute names compare without case.
fn binary_values(e: &SearchEntry, attr: &str) -> Vec<Vec<u8>> {
    let bin = e
        .bin_attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
        .flat_map(|(_, v)| v.iter().cloned());
    let text = e
        .attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
        .flat_map(|(_, v)| v.iter().map(|s| s.as_bytes().to_vec()));
    bin.chain(text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result_with(ctrl: Option<Vec<u8>>, rc: u32, text: &str) -> LdapError {
        let ctrls = ctrl
            .map(|v| {
                vec![ldap3::controls::Control(
                    None,
                    ldap3::controls::RawControl {
                        ctype: PPOLICY_OID.into(),
                        crit: false,
                        val: Some(v),
                    },
                )]
            })
            .unwrap_or_default();
        LdapError::LdapResult {
            result: ldap3::LdapResult {
                rc,
                matched: String::new(),
                text: text.into(),
                refs: vec![],
                ctrls,
            },
        }
    }

    #[test]
    fn admin_locks_and_expired_accounts_are_told_apart() {
        assert!(is_ppolicy_admin_lock("000001010000Z"));
        assert!(!is_ppolicy_admin_lock("20261206010203Z"));
        let now = filetime_now();
        assert!(ad_account_expired(now - 10_000_000, now));
        assert!(!ad_account_expired(now + 864_000_000_000, now));
        assert!(!ad_account_expired(0, now), "0 is never");
        assert!(!ad_account_expired(i64::MAX, now), "max is never");
        // 2026-12-06 is 134 093 664 000 000 000 in FILETIME.
        assert!((now - 134_093_664_000_000_000).abs() < 100 * 365 * 86_400 * 10_000_000);
    }

    #[test]
    fn policy_durations_read_as_words() {
        assert_eq!(duration_words(86_400), "1 day");
        assert_eq!(duration_words(2 * 86_400), "2 days");
        assert_eq!(duration_words(7_200), "2 hours");
        assert_eq!(duration_words(90), "2 minutes");
        assert_eq!(duration_words(1), "1 second");
        // AD: msDS-MinimumPasswordAge of one day, in negative 100 ns intervals.
        let pso = SearchEntry {
            dn: "CN=p".into(),
            attrs: [
                ("msDS-PasswordSettingsPrecedence", "1"),
                ("msDS-MinimumPasswordLength", "14"),
                ("msDS-PasswordComplexityEnabled", "TRUE"),
                ("msDS-MinimumPasswordAge", "-864000000000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect(),
            bin_attrs: Default::default(),
        };
        let rules = policy_rules(&pso, PolicyKind::AdPso, true);
        assert_eq!(rules.len(), 3, "{rules:?}");
        assert!(rules[0].contains("at least 14 characters"));
        assert!(rules[1].contains("three of"));
        assert!(rules[2].contains("for 1 day"));
    }

    #[test]
    fn history_is_claimed_only_where_resets_enforce_it() {
        let domain = SearchEntry {
            dn: "DC=x".into(),
            attrs: [
                ("minPwdLength", "7"),
                ("pwdHistoryLength", "24"),
                ("pwdProperties", "1"),
                ("minPwdAge", "-864000000000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect(),
            bin_attrs: Default::default(),
        };
        let held = policy_rules(&domain, PolicyKind::AdDomain, true).join(" ");
        assert!(held.contains("refuses your last 24 passwords"), "{held}");
        assert!(held.contains("for 1 day"), "{held}");
        let not_held = policy_rules(&domain, PolicyKind::AdDomain, false).join(" ");
        assert!(!not_held.contains("refuses your last"), "{not_held}");
        assert!(!not_held.contains("cannot be changed again"), "{not_held}");
        assert!(
            not_held.contains("at least 7 characters")
                && not_held.contains("three of")
                && not_held.contains("not checked against your earlier passwords"),
            "{not_held}"
        );
        let listed = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(supported_hints(&listed(&["1.2.840.113556.1.4.319"])), None);
        assert_eq!(
            supported_hints(&listed(&["1.2.840.113556.1.4.2066"])),
            Some("1.2.840.113556.1.4.2066")
        );
        assert_eq!(
            supported_hints(&listed(&[
                "1.2.840.113556.1.4.2066",
                "1.2.840.113556.1.4.2239"
            ])),
            Some("1.2.840.113556.1.4.2239")
        );
    }

    /// A listener that counts the connections it accepts and keeps them open.
    async fn counting_listener(l: tokio::net::TcpListener) -> Arc<std::sync::atomic::AtomicUsize> {
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = n.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(sock);
            }
        });
        n
    }

    /// The count once the listener has caught up with the connections already made.
    async fn seen(n: &std::sync::atomic::AtomicUsize) -> usize {
        tokio::time::sleep(Duration::from_millis(100)).await;
        n.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_url_that_failed_rests_while_the_next_one_is_used() {
        // A port nothing listens on (yet), then a live one.
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_url = format!("ldap://{}", live.local_addr().unwrap());
        let live_hits = counting_listener(live).await;
        let dead_url = format!("ldap://{dead_addr}");
        let dir = LdapDirectory::new(LdapConfig {
            urls: vec![dead_url.clone(), live_url],
            allow_plain: true,
            bind_dn: "cn=svc".into(),
            bind_password: "x".into(),
            base_dn: "dc=x".into(),
            timeout_secs: 2,
            failed_url_rest_secs: 1,
            ..LdapConfig::default()
        })
        .unwrap();
        assert!(dir.connect().await.is_ok(), "the second URL answers");
        assert_eq!(seen(&live_hits).await, 1);
        assert!(dir.is_resting(&dead_url));
        // The first URL comes back, but rests: the next connection goes to the second.
        let back = tokio::net::TcpListener::bind(dead_addr).await.unwrap();
        let back_hits = counting_listener(back).await;
        assert!(dir.connect().await.is_ok());
        assert_eq!((seen(&back_hits).await, seen(&live_hits).await), (0, 2));
        // After the rest it is first again.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert!(!dir.is_resting(&dead_url));
        assert!(dir.connect().await.is_ok());
        assert_eq!((seen(&back_hits).await, seen(&live_hits).await), (1, 2));
    }

    #[tokio::test]
    async fn a_resting_url_is_still_tried_when_it_is_the_only_one() {
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let url = format!("ldap://{addr}");
        let dir = LdapDirectory::new(LdapConfig {
            urls: vec![url.clone()],
            allow_plain: true,
            bind_dn: "cn=svc".into(),
            bind_password: "x".into(),
            base_dn: "dc=x".into(),
            ..LdapConfig::default()
        })
        .unwrap();
        assert!(dir.connect().await.is_err());
        assert!(dir.is_resting(&url));
        let back = tokio::net::TcpListener::bind(addr).await.unwrap();
        let hits = counting_listener(back).await;
        assert!(dir.connect().await.is_ok(), "a last resort, not skipped");
        assert_eq!(seen(&hits).await, 1);
        assert!(!dir.is_resting(&url));
    }

    #[test]
    fn group_names_are_read_from_escaped_dns() {
        let v = |dn: &str| first_rdn_value(dn);
        assert_eq!(v("cn=staff,ou=groups,dc=x").as_deref(), Some("staff"));
        assert_eq!(
            v("CN=sales\\, emea,OU=Groups,DC=x").as_deref(),
            Some("sales, emea")
        );
        assert_eq!(
            v("CN=sales\\2C emea,OU=Groups,DC=x").as_deref(),
            Some("sales, emea")
        );
        assert_eq!(v("cn=sales\\2c emea,dc=x").as_deref(), Some("sales, emea"));
        assert_eq!(v("cn=caf\\C3\\A9,dc=x").as_deref(), Some("café"));
        assert_eq!(
            v("cn=a\\+b\\;c\\\\d\\\"e,dc=x").as_deref(),
            Some("a+b;c\\d\"e")
        );
        assert_eq!(v("cn=admins+uid=7,dc=x").as_deref(), Some("admins"));
        assert_eq!(v("cn= padded ,dc=x").as_deref(), Some("padded"));
        assert_eq!(
            v("cn=\\ lead and trail\\ ,dc=x").as_deref(),
            Some(" lead and trail ")
        );
        assert_eq!(v("cn=\\#hash,dc=x").as_deref(), Some("#hash"));
        assert_eq!(v("cn=only").as_deref(), Some("only"));
        assert_eq!(v("cn=trailing\\").as_deref(), Some("trailing\\"));
        assert_eq!(v("no equals sign"), None);
    }

    #[test]
    fn the_directorys_words_are_never_left_blank() {
        assert_eq!(
            directory_said(50, ""),
            "rc=50 (insufficientAccessRights), no diagnostic text"
        );
        assert_eq!(
            directory_said(50, "00002098: no write access "),
            "rc=50 (insufficientAccessRights): 00002098: no write access"
        );
        let e = ad_error("CN=a", 50, "", false).to_string();
        assert!(
            e.ends_with("directory said rc=50 (insufficientAccessRights), no diagnostic text"),
            "{e}"
        );
    }

    #[test]
    fn ad_access_refusals_are_told_apart_from_policy_refusals() {
        assert!(ad_access_refused(
            50,
            "00002098: Object CN=x has no write property access"
        ));
        assert!(ad_access_refused(
            19,
            "00000005: SecErr: DSID-031A11E3, problem 4003 (INSUFF_ACCESS_RIGHTS)"
        ));
        assert!(!ad_access_refused(
            19,
            "0000052D: Constraint violation - check_password_restrictions: the password is too short"
        ));
        assert!(!ad_access_refused(53, "0000052D: password history"));
    }

    #[test]
    fn ppolicy_errors_become_words() {
        // SEQUENCE { [1] ENUMERATED 8 } = passwordInHistory
        assert_eq!(
            rejection(&result_with(
                Some(vec![0x30, 0x03, 0x81, 0x01, 0x08]),
                19,
                ""
            )),
            Some(vec![Rejection::History])
        );
        // A warning [0] before the error [1] 6 (passwordTooShort).
        let r = rejection(&result_with(
            Some(vec![0x30, 0x07, 0xa0, 0x02, 0x80, 0x00, 0x81, 0x01, 0x06]),
            19,
            "",
        ));
        assert!(
            matches!(r.as_deref(), Some([Rejection::Directory { .. }])),
            "{r:?}"
        );
        assert!(rejection(&result_with(None, 19, "")).is_some());
        assert_eq!(
            rejection(&result_with(None, 50, "insufficient access")),
            None
        );
    }
}
