//! sspr's LDAP directory: accounts in OpenLDAP, behind [`Directory`].
//!
//! - Connections are TLS only (`ldaps://`, or `ldap://` with StartTLS) unless `allow_plain`
//!   is set, with certificates checked against the system roots or `ca_file`.
//! - Users are found with the configured filter, every input escaped (RFC 4515); exactly one
//!   entry must match. Group membership comes from `memberOf` or from groups whose `member`
//!   holds the user's DN.
//! - A reset is the RFC 3062 Password Modify extended operation, run as the service account,
//!   so the server hashes the password and its ppolicy overlay applies; an unlock removes
//!   `pwdAccountLockedTime`. A ppolicy refusal reaches the user in words; the raw cause goes
//!   to the log.
//! - The current password is checked with a bind as the user, never with an empty password.

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
    pub timeout_secs: u64,
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
            timeout_secs: 5,
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
        e
    }
}

#[derive(Clone)]
pub struct LdapDirectory {
    cfg: Arc<LdapConfig>,
    tls: Arc<rustls::ClientConfig>,
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
        Ok(Self {
            cfg: Arc::new(cfg),
            tls: Arc::new(tls),
        })
    }

    /// A connection to the first URL that answers, TLS set up, not yet bound.
    async fn connect(&self) -> Result<Ldap, DirError> {
        let mut last = String::from("no URL configured");
        for url in &self.cfg.urls {
            let starttls = url.starts_with("ldap://") && !self.cfg.allow_plain;
            let settings = LdapConnSettings::new()
                .set_config(self.tls.clone())
                .set_starttls(starttls)
                .set_conn_timeout(Duration::from_secs(self.cfg.timeout_secs));
            match LdapConnAsync::with_settings(settings, url).await {
                Ok((conn, mut ldap)) => {
                    ldap3::drive!(conn);
                    ldap.with_timeout(Duration::from_secs(self.cfg.timeout_secs));
                    return Ok(ldap);
                }
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "ldap: cannot connect");
                    last = format!("{url}: {e}");
                }
            }
        }
        Err(unavailable(last))
    }

    async fn service(&self) -> Result<Ldap, DirError> {
        let mut ldap = self.connect().await?;
        let r = ldap
            .simple_bind(&self.cfg.bind_dn, &self.cfg.bind_password)
            .await
            .map_err(unavailable)?;
        if r.rc != 0 {
            return Err(DirError::Permission(format!(
                "ldap: the service account {} cannot bind: rc={} {}",
                self.cfg.bind_dn, r.rc, r.text
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
            dn.split(',')
                .next()
                .and_then(|rdn| rdn.split_once('='))
                .map(|(_, v)| v.to_lowercase())
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

fn first(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs.get(attr).and_then(|v| v.first()).cloned()
}

/// An AD refusal in words. AD explains in the diagnostic text (`0000052D: … the password is
/// too short…`); the user gets the gist, the log the full text.
fn ad_error(dn: &str, rc: u32, text: &str) -> DirError {
    let t = text.to_lowercase();
    match rc {
        19 if t.contains("history") => DirError::Rejected(vec![Rejection::History]),
        19 | 53 if t.contains("052d") || t.contains("password") => {
            DirError::Rejected(vec![Rejection::Directory {
                reason: "it does not meet the domain's length, complexity or history rules".into(),
            }])
        }
        50 => DirError::Permission(format!(
            "ldap: the service account may not reset {dn} (Reset Password right): {text}"
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
        let mut ldap = self.service().await?;
        let Some(e) = self.entry(&mut ldap, login).await? else {
            let _ = ldap.unbind().await;
            return Ok(None);
        };
        let groups = self.groups(&mut ldap, &e).await?;
        let _ = ldap.unbind().await;
        let uac: u32 = first(&e, "userAccountControl")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ad_locked = first(&e, "lockoutTime").is_some_and(|v| v != "0");
        Ok(Some(DirUser {
            id: entry_id(&e),
            login: first(&e, "uid")
                .or_else(|| first(&e, "sAMAccountName"))
                .unwrap_or_else(|| login.to_string())
                .to_lowercase(),
            display_name: first(&e, &self.cfg.display_name_attribute).unwrap_or_default(),
            // AD: ACCOUNTDISABLE (0x2) in userAccountControl.
            enabled: uac & 0x2 == 0,
            locked: e.attrs.contains_key("pwdAccountLockedTime") || ad_locked,
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
        let mut ldap = self.connect().await?;
        let r = ldap.simple_bind(&dn, password).await.map_err(unavailable)?;
        let _ = ldap.unbind().await;
        Ok(r.rc == 0)
    }

    async fn reset_password(&self, user: &DirUser, new_password: &str) -> Result<(), DirError> {
        let dn = self.dn_of(user).await?;
        let mut ldap = self.service().await?;
        if self.cfg.flavor == Flavor::Ad {
            let r = self.ad_reset(&mut ldap, &dn, new_password).await;
            let _ = ldap.unbind().await;
            return r;
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
                user_id: Some(&dn),
                old_pass: None,
                new_pass: Some(new_password),
            })
            .await
            .map_err(unavailable)?
            .success();
        if let Err(e) = r {
            let _ = ldap.unbind().await;
            tracing::warn!(dn = %dn, error = %e, "ldap: password modify refused");
            return Err(match rejection(&e) {
                Some(r) => DirError::Rejected(r),
                None => match &e {
                    LdapError::LdapResult { result } if result.rc == 50 => {
                        DirError::Permission(format!(
                            "ldap: the service account may not reset {dn}: {}",
                            result.text
                        ))
                    }
                    other => DirError::Other(format!("ldap: password modify on {dn}: {other}")),
                },
            });
        }
        // A reset also unlocks, as in Azure AD and every peer.
        let unlocked = self.remove_lock(&mut ldap, &dn).await;
        let _ = ldap.unbind().await;
        unlocked
    }

    async fn unlock(&self, user: &DirUser) -> Result<(), DirError> {
        let dn = self.dn_of(user).await?;
        let mut ldap = self.service().await?;
        let r = self.remove_lock(&mut ldap, &dn).await;
        let _ = ldap.unbind().await;
        r
    }

    /// The directory's own rules in words: OpenLDAP's ppolicy entry, or the AD domain's
    /// password policy (fine-grained policies are not read yet).
    async fn password_rules(&self) -> Result<Vec<String>, DirError> {
        let (base, attrs) = match self.cfg.flavor {
            Flavor::OpenLdap => match &self.cfg.policy_dn {
                Some(dn) => (
                    dn.clone(),
                    vec!["pwdMinLength", "pwdInHistory", "pwdMinAge"],
                ),
                None => return Ok(Vec::new()),
            },
            Flavor::Ad => {
                let domain: Vec<&str> = self
                    .cfg
                    .base_dn
                    .split(',')
                    .map(str::trim)
                    .filter(|rdn| rdn.to_ascii_lowercase().starts_with("dc="))
                    .collect();
                (
                    domain.join(","),
                    vec!["minPwdLength", "pwdHistoryLength", "pwdProperties"],
                )
            }
        };
        let mut ldap = self.service().await?;
        let found = ldap
            .search(&base, Scope::Base, "(objectClass=*)", attrs)
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        let _ = ldap.unbind().await;
        let Some(e) = found.0.into_iter().next().map(SearchEntry::construct) else {
            return Ok(Vec::new());
        };
        let num = |a: &str| {
            first(&e, a)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let mut rules = Vec::new();
        let (min, history) = match self.cfg.flavor {
            Flavor::OpenLdap => (num("pwdMinLength"), num("pwdInHistory")),
            Flavor::Ad => (num("minPwdLength"), num("pwdHistoryLength")),
        };
        if min > 0 {
            rules.push(format!("The directory requires at least {min} characters."));
        }
        if history > 0 {
            rules.push(format!(
                "The directory refuses your last {history} passwords."
            ));
        }
        // DOMAIN_PASSWORD_COMPLEX (bit 0 of pwdProperties).
        if self.cfg.flavor == Flavor::Ad && num("pwdProperties") & 1 == 1 {
            rules.push(
                "The domain requires three of: uppercase letters, lowercase letters, digits, symbols; and not your account name."
                    .into(),
            );
        }
        Ok(rules)
    }

    async fn ping(&self) -> Result<(), DirError> {
        let mut ldap = self.service().await?;
        let _ = ldap.unbind().await;
        Ok(())
    }
}

impl LdapDirectory {
    async fn dn_of(&self, user: &DirUser) -> Result<String, DirError> {
        let mut ldap = self.service().await?;
        let e = self.entry(&mut ldap, &user.login).await?;
        let _ = ldap.unbind().await;
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
        // LDAP_SERVER_POLICY_HINTS_OID, value SEQUENCE { INTEGER 1 }.
        let hints = ldap3::controls::RawControl {
            ctype: "1.2.840.113556.1.4.2239".into(),
            crit: false,
            val: Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        };
        let r = ldap
            .with_controls(vec![hints])
            .modify(dn, vec![Mod::Replace(b"unicodePwd".to_vec(), value)])
            .await
            .map_err(unavailable)?;
        if r.rc != 0 {
            tracing::warn!(dn = %dn, rc = r.rc, text = %r.text, "ldap: AD password reset refused");
            return Err(ad_error(dn, r.rc, &r.text));
        }
        self.remove_lock(ldap, dn).await
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
            50 => Err(DirError::Permission(format!(
                "ldap: the service account may not unlock {dn}: {}",
                r.text
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
    /// without changing anything where the server allows it).
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
        let mut ldap = match self.connect().await {
            Ok(l) => {
                out.push(Check::pass(
                    "tls",
                    "TLS handshake and certificate check passed",
                ));
                l
            }
            Err(e) => {
                let text = e.to_string();
                let fix = if text.contains("certificate")
                    || text.contains("UnknownIssuer")
                    || text.contains("InvalidCertificate")
                {
                    "the directory's certificate is not trusted: set directory.ldap.ca_file to the CA that signed it, and make sure the certificate names the host in the URL"
                } else {
                    "check that the directory speaks LDAPS on this port (or StartTLS for ldap://)"
                };
                out.push(Check::fail("tls", text, fix));
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
        out.extend(self.probe_rights(&mut ldap, &entry.dn).await);
        let _ = ldap.unbind().await;
        out
    }

    /// Deletes a value that cannot be there: a server that allows the write answers
    /// "no such attribute", one that does not answers "insufficient access". Nothing changes.
    async fn probe_rights(&self, ldap: &mut Ldap, dn: &str) -> Vec<Check> {
        let probe = |attr: &'static str| {
            // A value of the attribute's syntax that no account ever holds.
            let value = match attr {
                "pwdAccountLockedTime" => "19700101000001Z",
                "lockoutTime" => "1",
                _ => "sspr-doctor-probe-value-that-is-never-set",
            };
            let mut v = std::collections::HashSet::new();
            v.insert(value);
            Mod::Delete(attr, v)
        };
        let mut out = Vec::new();
        let targets: &[(&str, &'static str, &str)] = match self.cfg.flavor {
            Flavor::OpenLdap => &[
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
            Flavor::Ad => &[(
                "unlock right",
                "lockoutTime",
                "delegate Write lockoutTime on the users' OU to the service account",
            )],
        };
        for (name, attr, fix) in targets {
            match ldap.modify(dn, vec![probe(attr)]).await {
                Ok(r) if r.rc == 16 || r.rc == 0 || r.rc == 20 => {
                    out.push(Check::pass(name, format!("may write {attr} on {dn}")))
                }
                Ok(r) if r.rc == 50 => out.push(Check::fail(
                    name,
                    format!("may not write {attr} on {dn}: {}", r.text),
                    *fix,
                )),
                Ok(r) => out.push(Check::pass(
                    name,
                    format!(
                        "{attr}: inconclusive (rc={} {}); checked at the first real use",
                        r.rc, r.text
                    ),
                )),
                Err(e) => out.push(Check::fail(name, e.to_string(), *fix)),
            }
        }
        if self.cfg.flavor == Flavor::Ad {
            out.push(Check::pass(
                "reset right",
                "the Reset Password right cannot be probed without resetting; a missing right shows as directory_permission in the audit log",
            ));
        }
        out
    }
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
