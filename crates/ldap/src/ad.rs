//! Active Directory: the `unicodePwd` reset with the policy-hints control, AD's refusals in
//! words, protected (AdminSDHolder) accounts, `accountExpires`.

use ldap3::{Ldap, Mod, Scope, SearchEntry};
use sspr_app::ports::DirError;
use sspr_domain::Rejection;

use crate::search::first;
use crate::{LdapDirectory, directory_said, unavailable};

/// LDAP_SERVER_POLICY_HINTS_OID (Windows Server 2012 and later), then the older
/// LDAP_SERVER_POLICY_HINTS_DEPRECATED_OID (2008 R2): with either, AD applies the password
/// history and minimum age to a reset as to a change. Sent non-critical, so a server that
/// does not know it (Samba 4.17) ignores it silently: it is sent only where it is listed.
const POLICY_HINTS_OIDS: [&str; 2] = ["1.2.840.113556.1.4.2239", "1.2.840.113556.1.4.2066"];

/// The first policy-hints control in `listed` (a root DSE's `supportedControl`).
pub(crate) fn supported_hints(listed: &[String]) -> Option<&'static str> {
    POLICY_HINTS_OIDS
        .iter()
        .copied()
        .find(|oid| listed.iter().any(|c| c.trim() == *oid))
}

/// AD `accountExpires`: 100 ns intervals since 1601-01-01; 0 and `i64::MAX` mean never.
pub(crate) fn ad_account_expired(value: i64, now: i64) -> bool {
    value != 0 && value != i64::MAX && value <= now
}

/// Now, as an AD FILETIME.
pub(crate) fn filetime_now() -> i64 {
    const EPOCH_DIFF_SECS: i64 = 11_644_473_600;
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    (unix + EPOCH_DIFF_SECS) * 10_000_000
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

/// The log and audit cause for a refusal on an account AD protects: members of Domain Admins
/// and the other protected groups get `adminCount=1` and, from SDProp, the ACL of
/// AdminSDHolder with inheritance turned off, so rights delegated on the users' OU never reach
/// them.
pub(crate) fn protected_account(dn: &str, what: &str, rc: u32, text: &str) -> DirError {
    DirError::Protected(format!(
        "ldap: {what} of {dn} refused: protected account (adminCount=1): AdminSDHolder blocks the service account's rights. \
         Fix: delegate the rights on CN=AdminSDHolder,CN=System in the domain (SDProp copies them to protected accounts within the hour), \
         or keep such accounts out of sspr's scope (base_dn, or (!(adminCount=1)) in user_filter). Directory said {}",
        directory_said(rc, text)
    ))
}

/// An AD refusal in words. AD explains in the diagnostic text (`0000052D: … the password is
/// too short…`); the user gets the gist, the log the full text.
pub(crate) fn ad_error(dn: &str, rc: u32, text: &str, must_change: bool) -> DirError {
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

/// A `unicodePwd` value: the password in double quotes, UTF-16LE.
pub(crate) fn unicode_pwd(password: &str) -> std::collections::HashSet<Vec<u8>> {
    let quoted: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    std::collections::HashSet::from([quoted])
}

impl LdapDirectory {
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
    pub(crate) async fn policy_hints(
        &self,
        ldap: &mut Ldap,
    ) -> Result<Option<&'static str>, DirError> {
        let listed = self.supported_controls(ldap).await?;
        Ok(supported_hints(listed))
    }

    /// The policy-hints control the server lists, value SEQUENCE { INTEGER 1 }, which makes AD
    /// apply the history and minimum age to a write by the service account as to the user's
    /// own change; none where it lists neither (the rules shown then do not claim the history).
    pub(crate) async fn hint_controls(
        &self,
        ldap: &mut Ldap,
    ) -> Result<Vec<ldap3::controls::RawControl>, DirError> {
        Ok(self
            .policy_hints(ldap)
            .await?
            .map(|oid| ldap3::controls::RawControl {
                ctype: oid.into(),
                crit: false,
                val: Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            })
            .into_iter()
            .collect())
    }

    /// AD reset: replace `unicodePwd` with the quoted password in UTF-16LE (only allowed over
    /// an encrypted connection), with the policy-hints control so the domain's history rule
    /// applies as to a change; then clear `lockoutTime`.
    pub(crate) async fn ad_reset(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        new_password: &str,
    ) -> Result<(), DirError> {
        let value = unicode_pwd(new_password);
        let hints = self.hint_controls(ldap).await?;
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

    /// Whether the entry carries `adminCount=1` (AD's mark of an AdminSDHolder-protected
    /// account). Asked only after a refusal; unreadable counts as not protected.
    pub(crate) async fn ad_protected(&self, ldap: &mut Ldap, dn: &str) -> bool {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openldap::is_ppolicy_admin_lock;

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
}
