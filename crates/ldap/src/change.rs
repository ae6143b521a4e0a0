//! A password change as the user: bound with the current password on a connection of its own,
//! the write is the user's, so the directory applies the rules it applies when people change
//! their own passwords (OpenLDAP ppolicy: `pwdMinAge`, `pwdSafeModify`, `pwdAllowUserChange`,
//! the ACL's `by self write`; AD: the minimum age, the history, "User cannot change password")
//! and unlocks nothing. The service account needs no right for it.

use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapError, Mod};
use sspr_app::ports::{DirError, DirUser};

use crate::ad::{ad_error, unicode_pwd};
use crate::connection::UserBind;
use crate::openldap::{ppolicy_request, rejection};
use crate::{Flavor, LdapDirectory, directory_said, unavailable};

impl LdapDirectory {
    pub(crate) async fn change_as_user(
        &self,
        user: &DirUser,
        current: &str,
        new_password: &str,
    ) -> Result<(), DirError> {
        if current.is_empty() {
            return Err(DirError::Other(
                "ldap: a change needs the current password".into(),
            ));
        }
        let dn = self.dn_of(user).await?;
        let mut conn = match self.bound_as(&dn, current).await? {
            UserBind::Bound(conn, _) => conn,
            // Expired, or to be changed at the next logon (AD): the directory lets the user
            // do nothing, a change included, yet has just said the password is right. The
            // service account writes it, as a reset that neither unlocks nor asks for
            // another change.
            UserBind::Refused { must_change: true } => {
                return self.change_on_behalf(user, new_password).await;
            }
            // Checked a moment ago: changed meanwhile, or locked by failures elsewhere.
            UserBind::Refused { must_change: false } => {
                return Err(DirError::Other(format!(
                    "ldap: {dn}: the current password no longer binds"
                )));
            }
        };
        let ldap = &mut conn.ldap;
        let r = self
            .timed(async {
                match self.cfg.flavor {
                    Flavor::OpenLdap => openldap_change(ldap, &dn, current, new_password).await,
                    Flavor::Ad => ad_change(ldap, &dn, current, new_password).await,
                }
            })
            .await;
        let _ = conn.ldap.unbind().await;
        r
    }

    async fn change_on_behalf(&self, user: &DirUser, new_password: &str) -> Result<(), DirError> {
        let (mut s, dn) = self.service_and_entry(user).await?;
        let r = self
            .timed(async {
                match self.cfg.flavor {
                    Flavor::OpenLdap => {
                        let r = s
                            .ldap
                            .with_controls(vec![ppolicy_request()])
                            .extended(PasswordModify {
                                user_id: Some(&dn),
                                old_pass: None,
                                new_pass: Some(new_password),
                            })
                            .await
                            .map_err(unavailable)?
                            .success();
                        match r {
                            Ok(_) => Ok(()),
                            Err(e) => Err(refused(&dn, e)),
                        }
                    }
                    Flavor::Ad => {
                        let hints = self.hint_controls(&mut s.ldap).await?;
                        let mods = vec![Mod::Replace(
                            b"unicodePwd".to_vec(),
                            unicode_pwd(new_password),
                        )];
                        let r = s
                            .ldap
                            .with_controls(hints)
                            .modify(&dn, mods)
                            .await
                            .map_err(unavailable)?;
                        if r.rc == 0 {
                            return Ok(());
                        }
                        tracing::warn!(dn = %dn, rc = r.rc, text = %r.text, "ldap: the change of an expired AD password was refused");
                        Err(ad_error(&dn, r.rc, &r.text, false))
                    }
                }
            })
            .await;
        self.give_back(s, &r);
        r
    }
}

/// A refused OpenLDAP password modify: the policy's words for the user, or the cause.
fn refused(dn: &str, e: LdapError) -> DirError {
    tracing::warn!(dn = %dn, error = %e, "ldap: the password change was refused");
    if let Some(r) = rejection(&e) {
        return DirError::Rejected(r);
    }
    match &e {
        LdapError::LdapResult { result } if result.rc == 50 => DirError::Permission(format!(
            "ldap: the service account may not set the expired password of {dn} (write access to userPassword); directory said {}",
            directory_said(result.rc, &result.text)
        )),
        other => DirError::Other(format!("ldap: password change of {dn}: {other}")),
    }
}

/// RFC 3062 with the old password, as the user, asking for the ppolicy response control.
async fn openldap_change(
    ldap: &mut Ldap,
    dn: &str,
    current: &str,
    new_password: &str,
) -> Result<(), DirError> {
    let r = ldap
        .with_controls(vec![ppolicy_request()])
        .extended(PasswordModify {
            user_id: Some(dn),
            old_pass: Some(current),
            new_pass: Some(new_password),
        })
        .await
        .map_err(unavailable)?
        .success();
    let Err(e) = r else {
        return Ok(());
    };
    tracing::warn!(dn = %dn, error = %e, "ldap: the user's password change was refused");
    if let Some(r) = rejection(&e) {
        return Err(DirError::Rejected(r));
    }
    Err(match &e {
        LdapError::LdapResult { result } if result.rc == 50 => DirError::Permission(format!(
            "ldap: {dn} may not change its own password: the ACL on userPassword needs `by self write`, \
             and the ppolicy must not say pwdAllowUserChange: FALSE; directory said {}",
            directory_said(result.rc, &result.text)
        )),
        other => DirError::Other(format!("ldap: password change of {dn}: {other}")),
    })
}

/// AD's change: one modify that deletes the old `unicodePwd` and adds the new one, which AD
/// accepts from the user over an encrypted connection and checks against the domain's rules.
async fn ad_change(
    ldap: &mut Ldap,
    dn: &str,
    current: &str,
    new_password: &str,
) -> Result<(), DirError> {
    let mods = vec![
        Mod::Delete(b"unicodePwd".to_vec(), unicode_pwd(current)),
        Mod::Add(b"unicodePwd".to_vec(), unicode_pwd(new_password)),
    ];
    let r = ldap.modify(dn, mods).await.map_err(unavailable)?;
    if r.rc == 0 {
        return Ok(());
    }
    tracing::warn!(dn = %dn, rc = r.rc, text = %r.text, "ldap: the user's AD password change was refused");
    Err(match r.rc {
        // insufficientAccessRights, or ERROR_ACCESS_DENIED in a constraint answer: the
        // account may not change its own password.
        50 => DirError::Permission(format!(
            "ldap: {dn} may not change its own password (\"User cannot change password\" is set, or the Change Password right is denied); directory said {}",
            directory_said(r.rc, &r.text)
        )),
        19 | 53 if r.text.starts_with("00000005") => DirError::Permission(format!(
            "ldap: {dn} may not change its own password; directory said {}",
            directory_said(r.rc, &r.text)
        )),
        // ERROR_INVALID_PASSWORD (0x56): the old value did not match.
        19 if r.text.to_lowercase().contains("00000056") => DirError::Other(format!(
            "ldap: {dn}: the current password no longer matches; directory said {}",
            directory_said(r.rc, &r.text)
        )),
        _ => ad_error(dn, r.rc, &r.text, false),
    })
}
