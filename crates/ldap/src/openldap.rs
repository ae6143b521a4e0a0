//! OpenLDAP: the RFC 3062 password modify with the ppolicy control and its errors in words,
//! `pwdReset`, the admin lock; and the reset and unlock of either flavor, which hand over to
//! `ad.rs` for Active Directory.

use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapError, Mod};
use sspr_app::ports::DirError;
use sspr_domain::Rejection;

use crate::ad::protected_account;
use crate::{Flavor, LdapDirectory, directory_said, unavailable};

/// ppolicy writes `000001010000Z` for a lock that only an administrator lifts (no
/// `pwdLockoutDuration` ends it); a failure lockout carries the time it began.
pub(crate) fn is_ppolicy_admin_lock(v: &str) -> bool {
    v.trim().starts_with("000001010000")
}

/// The password policy control (draft-behera-ldap-password-policy).
pub(crate) const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";

/// The ppolicy error code in a response control: `SEQUENCE { … [1] ENUMERATED error }`.
pub(crate) fn ppolicy_error(result: &ldap3::LdapResult) -> Option<u8> {
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

/// The password policy request control, which asks the server to say why in its answer.
pub(crate) fn ppolicy_request() -> ldap3::controls::RawControl {
    ldap3::controls::RawControl {
        ctype: PPOLICY_OID.into(),
        crit: false,
        val: None,
    }
}

/// A ppolicy or server refusal in words for the user; the raw text goes to the log.
pub(crate) fn rejection(err: &LdapError) -> Option<Vec<Rejection>> {
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

impl LdapDirectory {
    /// The reset itself, on a service connection: AD's `unicodePwd`, or OpenLDAP's password
    /// modify; then the must-change flag and the unlock.
    pub(crate) async fn reset_on(
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
    pub(crate) async fn unlock_after_reset(&self, ldap: &mut Ldap, dn: &str) {
        if let Err(e) = self.remove_lock(ldap, dn).await {
            tracing::error!(dn = %dn, error = %e, "ldap: the password was reset but the account could not be unlocked: give the service account write access to the lock attribute (pwdAccountLockedTime / lockoutTime)");
        }
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

    pub(crate) async fn remove_lock(&self, ldap: &mut Ldap, dn: &str) -> Result<(), DirError> {
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
