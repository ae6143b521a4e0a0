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

use crate::search::{first, first_rdn_value};

/// A DN compared loosely: servers write `uid=a, ou=x` and `UID=a,OU=x` for the same entry.
fn dn_key(dn: &str) -> String {
    dn.split(',')
        .map(|p| p.trim().to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}
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

/// `pwdChangedTime` plus the policy's `pwdMaxAge`; `None` when the policy sets no maximum
/// age or the entry shows no change time.
fn ppolicy_expiry(e: &SearchEntry, max_age: i64) -> Option<UnixTime> {
    let changed = first(e, "pwdChangedTime")
        .as_deref()
        .and_then(generalized_time)?;
    (max_age > 0).then_some(changed + max_age)
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
        let attrs: Vec<String> = self
            .user_attrs()
            .into_iter()
            .chain(["pwdPolicySubentry", expiry_attr])
            .map(String::from)
            .collect();
        // Groups that are entries of their own come in one paged read of the groups, not a
        // search per user.
        let members = if self.cfg.group_base_dn.is_empty() {
            HashMap::new()
        } else {
            self.group_index(ldap).await?
        };
        let mut max_ages: HashMap<String, i64> = HashMap::new();
        if let (Flavor::OpenLdap, Some(dn)) = (self.cfg.flavor, &self.cfg.policy_dn) {
            self.max_age(ldap, dn, &mut max_ages).await?;
        }
        // Entries are judged as the pages arrive and only the expiring ones kept, so a run
        // over a million accounts holds a few, not a million. An entry under a policy not
        // read yet waits for the end of the scan (the connection is busy until then).
        let mut out = Vec::new();
        let mut later = Vec::new();
        self.each_paged(ldap, &self.cfg.base_dn, &filter, attrs, |e| {
            let expires_at = match self.cfg.flavor {
                Flavor::Ad => first(&e, expiry_attr).as_deref().and_then(ad_expiry),
                Flavor::OpenLdap => {
                    let policy =
                        first(&e, "pwdPolicySubentry").or_else(|| self.cfg.policy_dn.clone());
                    match policy.as_ref().map(|p| max_ages.get(p)) {
                        Some(Some(age)) => ppolicy_expiry(&e, *age),
                        Some(None) => {
                            later.push(e);
                            return;
                        }
                        None => None,
                    }
                }
            };
            if let Some(t) = expires_at.filter(|t| *t < before)
                && let Some(x) = self.expiring(&e, t, &members)
            {
                out.push(x);
            }
        })
        .await?;
        for e in later {
            let Some(policy) = first(&e, "pwdPolicySubentry") else {
                continue;
            };
            let age = self.max_age(ldap, &policy, &mut max_ages).await?;
            if let Some(t) = ppolicy_expiry(&e, age).filter(|t| *t < before)
                && let Some(x) = self.expiring(&e, t, &members)
            {
                out.push(x);
            }
        }
        Ok(out)
    }

    /// The account an entry describes, if it is enabled.
    fn expiring(
        &self,
        e: &SearchEntry,
        expires_at: UnixTime,
        members: &HashMap<String, Vec<String>>,
    ) -> Option<Expiring> {
        let login = first(e, "uid")
            .or_else(|| first(e, "sAMAccountName"))
            .unwrap_or_default();
        let mut groups: Vec<String> = e
            .attrs
            .get("memberOf")
            .into_iter()
            .flatten()
            .chain(members.get(&dn_key(&e.dn)).into_iter().flatten())
            .filter_map(|d| first_rdn_value(d))
            .map(|g| g.to_lowercase())
            .collect();
        groups.sort();
        groups.dedup();
        let user = self.user_from_entry(e, groups, &login);
        user.enabled.then_some(Expiring { user, expires_at })
    }

    /// Hands every entry under `base` that `filter` matches to `f`, one page (RFC 2696) at a
    /// time, each page within its own deadline.
    async fn each_paged(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
        mut f: impl FnMut(SearchEntry),
    ) -> Result<(), DirError> {
        let page_deadline = Duration::from_secs(self.cfg.timeout_secs.max(1) * 2);
        let mut stream = ldap
            .streaming_search_with(PagedResults::new(PAGE), base, Scope::Subtree, filter, attrs)
            .await
            .map_err(unavailable)?;
        let mut seen = 0usize;
        loop {
            let next = tokio::time::timeout(page_deadline, stream.next())
                .await
                .map_err(|_| unavailable(format!("no page within {page_deadline:?}")))?
                .map_err(|e| self.scan_error(base, seen, e))?;
            let Some(entry) = next else { break };
            if entry.is_ref() || entry.is_intermediate() {
                continue;
            }
            seen += 1;
            f(SearchEntry::construct(entry));
        }
        stream
            .finish()
            .await
            .success()
            .map_err(|e| self.scan_error(base, seen, e))?;
        Ok(())
    }

    /// A scan cut short. A size limit is the usual cause, and the fix is the directory's: a
    /// run that reminded only the first few hundred users would look like it worked.
    fn scan_error(&self, base: &str, seen: usize, e: ldap3::LdapError) -> DirError {
        match &e {
            ldap3::LdapError::LdapResult { result } if result.rc == 4 => DirError::Other(format!(
                "ldap: the directory's size limit stopped the search under {base} after {seen} entries, so no reminder was sent: \
                 let the service account read past it (OpenLDAP: `limits dn.exact=\"{}\" size.prtotal=unlimited` in its database; \
                 AD limits only the page size, which sspr keeps at {PAGE})",
                self.cfg.bind_dn
            )),
            _ => unavailable(e),
        }
    }

    /// Member DN → the DNs of the groups under `group_base_dn` that list it.
    async fn group_index(&self, ldap: &mut Ldap) -> Result<HashMap<String, Vec<String>>, DirError> {
        let mut index: HashMap<String, Vec<String>> = HashMap::new();
        self.each_paged(
            ldap,
            &self.cfg.group_base_dn,
            "(|(member=*)(uniqueMember=*))",
            vec!["member".into(), "uniqueMember".into()],
            |g| {
                for m in ["member", "uniqueMember"]
                    .iter()
                    .filter_map(|a| g.attrs.get(*a))
                    .flatten()
                {
                    index.entry(dn_key(m)).or_default().push(g.dn.clone());
                }
            },
        )
        .await?;
        Ok(index)
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
