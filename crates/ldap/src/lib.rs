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
//! - A change of a known password is written by the user on such a connection (`change.rs`),
//!   so the directory's rules for a user's own change apply and nothing is unlocked.

mod ad;
mod change;
mod connection;
mod doctor;
mod expiry;
pub mod filter;
mod openldap;
mod policy;
mod search;
pub mod security_descriptor;

use std::sync::Arc;

use async_trait::async_trait;
use ldap3::Scope;
use serde::{Deserialize, Serialize};
use sspr_app::ports::{DirError, DirUser, Directory, PasswordCheck};

use crate::ad::{ad_account_expired, filetime_now};
use crate::connection::{Pool, UserBind, pooled_read};
use crate::openldap::is_ppolicy_admin_lock;
use crate::search::{entry_id, first};

pub use crate::doctor::Check;
pub use crate::search::first_rdn_value;

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
    /// At most this many password checks (a bind as the user, each on a connection of its
    /// own) run at once; more wait up to `timeout_secs`, then get a "busy" answer. Unknown
    /// user IDs take a turn too, so how sign-ins fail under load does not reveal accounts.
    pub password_checks: usize,
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
            password_checks: 16,
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
        if self.password_checks == 0 {
            e.push("directory.ldap.password_checks must be at least 1".into());
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

fn unavailable(e: impl std::fmt::Display) -> DirError {
    DirError::Unavailable(format!("ldap: {e}"))
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

impl LdapDirectory {
    /// The user an entry describes; `lookup` is what found it (the ID as typed).
    pub(crate) fn user_from_entry(
        &self,
        e: &ldap3::SearchEntry,
        groups: Vec<String>,
        lookup: &str,
    ) -> DirUser {
        let uac: u32 = first(e, "userAccountControl")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let ad_locked = first(e, "lockoutTime").is_some_and(|v| v != "0");
        let ppolicy_lock = first(e, "pwdAccountLockedTime");
        // ppolicy's permanent lock (000001010000Z) is an administrator's: self-service must
        // never lift it, so the account counts as disabled, like AD's ACCOUNTDISABLE.
        let admin_locked = ppolicy_lock.as_deref().is_some_and(is_ppolicy_admin_lock);
        let expired = first(e, "accountExpires")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|v| ad_account_expired(v, filetime_now()));
        DirUser {
            id: entry_id(e),
            login: first(e, "uid")
                .or_else(|| first(e, "sAMAccountName"))
                .unwrap_or_else(|| lookup.to_string())
                .to_lowercase(),
            lookup: lookup.to_string(),
            display_name: first(e, &self.cfg.display_name_attribute).unwrap_or_default(),
            // AD: ACCOUNTDISABLE (0x2) in userAccountControl, or accountExpires passed.
            enabled: uac & 0x2 == 0 && !admin_locked && !expired,
            locked: ppolicy_lock.is_some() || ad_locked,
            groups,
            email: first(e, &self.cfg.mail_attribute),
            mobile: first(e, &self.cfg.mobile_attribute),
        }
    }
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn find_user(&self, login: &str) -> Result<Option<DirUser>, DirError> {
        let found = pooled_read!(self, |l| self.entry_and_groups(l, login))?;
        let Some((e, groups)) = found else {
            return Ok(None);
        };
        Ok(Some(self.user_from_entry(&e, groups, login)))
    }

    async fn check_password(
        &self,
        user: &DirUser,
        password: &str,
    ) -> Result<PasswordCheck, DirError> {
        // An empty password would be an unauthenticated bind that "succeeds" (RFC 4513 §5.1.2).
        if password.is_empty() {
            return Ok(PasswordCheck::Wrong);
        }
        let dn = self.dn_of(user).await?;
        Ok(match self.bound_as(&dn, password).await? {
            UserBind::Bound(mut conn, must_change) => {
                let _ = conn.ldap.unbind().await;
                if must_change {
                    PasswordCheck::MustChange
                } else {
                    PasswordCheck::Right
                }
            }
            UserBind::Refused { must_change: true } => PasswordCheck::MustChange,
            UserBind::Refused { must_change: false } => PasswordCheck::Wrong,
        })
    }

    async fn check_password_of_nobody(&self, login: &str, password: &str) -> Result<(), DirError> {
        if password.is_empty() {
            return Ok(());
        }
        // dn_of's search, then a bind to a name no entry has: the directory answers
        // invalidCredentials, as it does to a wrong password, after the same round trips.
        pooled_read!(self, |l| self.entry(l, login))?;
        let nobody = format!("cn=sspr-no-such-account,{}", self.cfg.base_dn);
        self.bind_as(&nobody, password).await?;
        Ok(())
    }

    async fn reset_password(&self, user: &DirUser, new_password: &str) -> Result<(), DirError> {
        let (mut s, dn) = self.service_and_entry(user).await?;
        let r = self
            .timed(self.reset_on(&mut s.ldap, &dn, new_password))
            .await;
        self.give_back(s, &r);
        r
    }

    async fn change_password(
        &self,
        user: &DirUser,
        current: &str,
        new_password: &str,
    ) -> Result<(), DirError> {
        self.change_as_user(user, current, new_password).await
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
    async fn password_rules(&self) -> Result<Vec<sspr_domain::DirectoryRule>, DirError> {
        pooled_read!(self, |l| self.default_rules(l))
    }

    async fn password_rules_for(
        &self,
        user: &DirUser,
    ) -> Result<Vec<sspr_domain::DirectoryRule>, DirError> {
        self.rules_for_login(&user.lookup).await
    }

    async fn password_stamp(&self, user: &DirUser) -> Result<Option<String>, DirError> {
        pooled_read!(self, |l| self.stamp_on(l, user))
    }

    async fn expiring_passwords(
        &self,
        before: sspr_domain::clock::UnixTime,
    ) -> Result<Option<Vec<sspr_app::ports::Expiring>>, DirError> {
        self.expiring_before(before).await.map(Some)
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
