//! Password policy in words: OpenLDAP's ppolicy entries, the AD domain's policy and its
//! fine-grained policies (PSOs), and which rules a reset is held to.

use ldap3::{Ldap, LdapError, Scope, SearchEntry};
use sspr_app::ports::DirError;
#[cfg(doc)]
use sspr_app::ports::Directory;
use sspr_domain::DirectoryRule;

use crate::connection::pooled_read;
use crate::search::first;
use crate::{Flavor, LdapDirectory, unavailable};

/// Which attributes of a policy entry say what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PolicyKind {
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

/// A policy entry's rules in words. Where a reset by sspr is not held to the history and
/// minimum-age rules (`resets_keep_history` false: AD without the policy-hints control),
/// those rules are not claimed; the user is told the history is not checked here instead.
pub(crate) fn policy_rules(
    e: &SearchEntry,
    kind: PolicyKind,
    resets_keep_history: bool,
) -> Vec<DirectoryRule> {
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
        rules.push(DirectoryRule::MinLength { min });
    }
    if history > 0 && resets_keep_history {
        rules.push(DirectoryRule::History { count: history });
    }
    if complex {
        rules.push(DirectoryRule::Complexity);
    }
    if min_age_secs > 0 && resets_keep_history {
        rules.push(DirectoryRule::MinAge { secs: min_age_secs });
    }
    if history > 0 && !resets_keep_history {
        rules.push(DirectoryRule::HistoryNotChecked);
    }
    rules
}

impl LdapDirectory {
    /// `DC=…` of the base DN: the AD domain object.
    pub(crate) fn domain_dn(&self) -> String {
        self.cfg
            .base_dn
            .split(',')
            .map(str::trim)
            .filter(|rdn| rdn.to_ascii_lowercase().starts_with("dc="))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether a reset by sspr is held to the history and minimum-age rules: OpenLDAP's
    /// ppolicy applies them to the password modify; AD only with the policy-hints control.
    pub(crate) async fn resets_keep_history(&self, ldap: &mut Ldap) -> Result<bool, DirError> {
        match self.cfg.flavor {
            Flavor::OpenLdap => Ok(true),
            Flavor::Ad => Ok(self.policy_hints(ldap).await?.is_some()),
        }
    }

    /// The policy entry at `dn`, read with the attributes `kind` needs; `None` if it cannot
    /// be read (absent, or hidden from the service account).
    pub(crate) async fn policy_entry(
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
    pub(crate) async fn default_rules(
        &self,
        ldap: &mut Ldap,
    ) -> Result<Vec<DirectoryRule>, DirError> {
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
    pub(crate) async fn user_policy_dn(
        &self,
        ldap: &mut Ldap,
        login: &str,
    ) -> Result<Option<String>, DirError> {
        let attr = match self.cfg.flavor {
            Flavor::Ad => "msDS-ResultantPSO",
            Flavor::OpenLdap => "pwdPolicySubentry",
        };
        let filter = crate::filter::user_filter(&self.cfg.user_filter, login);
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
    pub async fn rules_for_login(&self, login: &str) -> Result<Vec<DirectoryRule>, DirError> {
        pooled_read!(self, |l| self.rules_for(l, login))
    }

    async fn rules_for(
        &self,
        ldap: &mut Ldap,
        login: &str,
    ) -> Result<Vec<DirectoryRule>, DirError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ad::supported_hints;

    fn words(rules: Vec<DirectoryRule>) -> Vec<String> {
        rules.iter().map(|r| r.message("en")).collect()
    }

    #[test]
    fn policy_durations_read_as_words() {
        use sspr_domain::password::duration_words;
        assert_eq!(duration_words(86_400, false), "1 day");
        assert_eq!(duration_words(2 * 86_400, false), "2 days");
        assert_eq!(duration_words(7_200, false), "2 hours");
        assert_eq!(duration_words(90, false), "2 minutes");
        assert_eq!(duration_words(1, false), "1 second");
        assert_eq!(duration_words(7_200, true), "2 小时");
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
        let rules = words(policy_rules(&pso, PolicyKind::AdPso, true));
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
        let held = words(policy_rules(&domain, PolicyKind::AdDomain, true)).join(" ");
        assert!(held.contains("refuses your last 24 passwords"), "{held}");
        assert!(held.contains("for 1 day"), "{held}");
        let not_held = words(policy_rules(&domain, PolicyKind::AdDomain, false)).join(" ");
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
}
