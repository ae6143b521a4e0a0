//! Which passwords expire when, read in pages (RFC 2696) over every account the user filter
//! matches: one request per page, never one per user.
//!
//! - AD computes each user's expiry itself, fine-grained policies and "password never
//!   expires" included: `msDS-UserPasswordExpiryTimeComputed`.
//! - OpenLDAP: `pwdChangedTime` plus the `pwdMaxAge` of the policy that applies (the user's
//!   `pwdPolicySubentry`, else `policy_dn`); no `pwdMaxAge`, or 0, never expires. Accounts
//!   without `pwdChangedTime` (loaded before ppolicy, or by `slapadd`) are skipped: their age
//!   is unknown.

use std::collections::HashMap;
use std::time::Duration;

use ldap3::adapters::PagedResults;
use ldap3::{Ldap, Scope, SearchEntry};
use sspr_app::ports::{DirError, Expiring};
use sspr_domain::clock::{UnixTime, parse_rfc3339};

use crate::search::first;
use crate::{Flavor, LdapDirectory, unavailable};

const PAGE: i32 = 500;
/// FILETIME of the Unix epoch, in 100 ns units.
const FILETIME_UNIX_EPOCH: i64 = 116_444_736_000_000_000;

/// An LDAP GeneralizedTime (`20261206211500Z`, maybe with a fraction) as Unix time.
pub(crate) fn generalized_time(v: &str) -> Option<UnixTime> {
    let d = v.get(..14)?;
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[..4],
        &d[4..6],
        &d[6..8],
        &d[8..10],
        &d[10..12],
        &d[12..14]
    ))
}

/// AD's computed expiry (FILETIME) as Unix time; `None` for "never" (`0x7FFF…`) and for
/// values that are no time at all. 0 means "must change now" (pwdLastSet = 0): expired.
pub(crate) fn ad_expiry(v: &str) -> Option<UnixTime> {
    let ft: i64 = v.trim().parse().ok()?;
    if ft == i64::MAX || ft < 0 {
        return None;
    }
    if ft == 0 {
        return Some(0);
    }
    Some((ft - FILETIME_UNIX_EPOCH) / 10_000_000)
}

impl LdapDirectory {
    /// Every enabled account whose password expires before `before`.
    pub(crate) async fn expiring_before(
        &self,
        before: UnixTime,
    ) -> Result<Vec<Expiring>, DirError> {
        let mut s = self.service().await?;
        let r = self.scan_expiry(&mut s.ldap, before).await;
        self.give_back(s, &r);
        r
    }

    async fn scan_expiry(
        &self,
        ldap: &mut Ldap,
        before: UnixTime,
    ) -> Result<Vec<Expiring>, DirError> {
        // Every account the user filter would find, whatever its ID.
        let everyone = self.cfg.user_filter.replace("{login}", "*");
        let (filter, expiry_attr) = match self.cfg.flavor {
            Flavor::Ad => (everyone, "msDS-UserPasswordExpiryTimeComputed"),
            Flavor::OpenLdap => (format!("(&{everyone}(pwdChangedTime=*))"), "pwdChangedTime"),
        };
        let mut attrs: Vec<String> = [
            "entryUUID",
            "objectGUID",
            "uid",
            "sAMAccountName",
            "userAccountControl",
            "lockoutTime",
            "accountExpires",
            "memberOf",
            "pwdAccountLockedTime",
            "pwdPolicySubentry",
            expiry_attr,
        ]
        .into_iter()
        .map(String::from)
        .collect();
        attrs.extend([
            self.cfg.display_name_attribute.clone(),
            self.cfg.mail_attribute.clone(),
            self.cfg.mobile_attribute.clone(),
        ]);
        let page_deadline = Duration::from_secs(self.cfg.timeout_secs.max(1) * 2);
        let mut stream = ldap
            .streaming_search_with(
                PagedResults::new(PAGE),
                &self.cfg.base_dn,
                Scope::Subtree,
                &filter,
                attrs,
            )
            .await
            .map_err(unavailable)?;
        let mut found = Vec::new();
        // The pages come in one by one: each gets the deadline, not the whole scan.
        loop {
            let next = tokio::time::timeout(page_deadline, stream.next())
                .await
                .map_err(|_| unavailable(format!("no page within {page_deadline:?}")))?
                .map_err(unavailable)?;
            let Some(entry) = next else { break };
            if entry.is_ref() || entry.is_intermediate() {
                continue;
            }
            found.push(SearchEntry::construct(entry));
        }
        stream.finish().await.success().map_err(unavailable)?;

        let mut max_ages: HashMap<String, i64> = HashMap::new();
        let mut out = Vec::new();
        for e in found {
            let expires_at = match self.cfg.flavor {
                Flavor::Ad => first(&e, expiry_attr).as_deref().and_then(ad_expiry),
                Flavor::OpenLdap => {
                    let policy =
                        first(&e, "pwdPolicySubentry").or_else(|| self.cfg.policy_dn.clone());
                    let max_age = match policy {
                        Some(dn) => self.max_age(ldap, &dn, &mut max_ages).await?,
                        None => 0,
                    };
                    match first(&e, expiry_attr).as_deref().and_then(generalized_time) {
                        Some(changed) if max_age > 0 => Some(changed + max_age),
                        _ => None,
                    }
                }
            };
            let Some(expires_at) = expires_at.filter(|t| *t < before) else {
                continue;
            };
            let login = first(&e, "uid")
                .or_else(|| first(&e, "sAMAccountName"))
                .unwrap_or_default();
            // Group lookups only for the few that expire, and only where groups are entries
            // of their own (memberOf came with the page).
            let groups = self.groups(ldap, &e).await?;
            let user = self.user_from_entry(&e, groups, &login);
            if user.enabled {
                out.push(Expiring { user, expires_at });
            }
        }
        Ok(out)
    }

    /// A ppolicy entry's `pwdMaxAge` in seconds (0: never), read once per run per policy.
    async fn max_age(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        cache: &mut HashMap<String, i64>,
    ) -> Result<i64, DirError> {
        if let Some(v) = cache.get(dn) {
            return Ok(*v);
        }
        let age = match ldap
            .search(dn, Scope::Base, "(objectClass=*)", vec!["pwdMaxAge"])
            .await
            .map_err(unavailable)?
            .success()
        {
            Ok((entries, _)) => entries
                .into_iter()
                .next()
                .map(SearchEntry::construct)
                .and_then(|e| first(&e, "pwdMaxAge"))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(0),
            Err(e) => {
                tracing::warn!(policy = %dn, error = %e, "ldap: cannot read pwdMaxAge; passwords under this policy are taken not to expire");
                0
            }
        };
        cache.insert(dn.to_string(), age);
        Ok(age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_times_read_as_unix_time() {
        assert_eq!(generalized_time("19700101000000Z"), Some(0));
        assert_eq!(generalized_time("20261206211500.123Z"), Some(1_796_591_700));
        assert_eq!(generalized_time("not a time"), None);
        assert_eq!(ad_expiry("9223372036854775807"), None, "never expires");
        assert_eq!(ad_expiry("0"), Some(0), "must change now");
        assert_eq!(ad_expiry("116444736000000000"), Some(0));
        assert_eq!(ad_expiry("133000000000000000"), Some(1_655_526_400));
    }
}
