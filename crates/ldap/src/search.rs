//! Finding users: the search with the configured filter (every input escaped, RFC 4515),
//! group membership, DN parsing (RFC 4514), attribute reading and the password stamp.

use ldap3::{Ldap, Scope, SearchEntry};
use sspr_app::ports::{DirError, DirUser};

use crate::connection::pooled_read;
use crate::filter::{member_filter, user_filter};
use crate::{Flavor, LdapDirectory, unavailable};

/// What [`LdapDirectory::user_from_entry`] reads, besides the configured name, mail and
/// mobile attributes.
pub(crate) const USER_ATTRS: [&str; 9] = [
    "entryUUID",
    "objectGUID",
    "uid",
    "sAMAccountName",
    "userAccountControl",
    "lockoutTime",
    "accountExpires",
    "memberOf",
    "pwdAccountLockedTime",
];

impl LdapDirectory {
    /// [`USER_ATTRS`] and the configured ones.
    pub(crate) fn user_attrs(&self) -> Vec<&str> {
        let mut attrs = USER_ATTRS.to_vec();
        attrs.extend([
            self.cfg.display_name_attribute.as_str(),
            self.cfg.mail_attribute.as_str(),
            self.cfg.mobile_attribute.as_str(),
        ]);
        attrs
    }

    pub(crate) async fn entry(
        &self,
        ldap: &mut Ldap,
        login: &str,
    ) -> Result<Option<SearchEntry>, DirError> {
        self.entry_with(ldap, login, self.user_attrs()).await
    }

    /// The one entry the user filter matches for `login`, with `attrs`.
    async fn entry_with(
        &self,
        ldap: &mut Ldap,
        login: &str,
        attrs: Vec<&str>,
    ) -> Result<Option<SearchEntry>, DirError> {
        let filter = user_filter(&self.cfg.user_filter, login);
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

    pub(crate) async fn groups(
        &self,
        ldap: &mut Ldap,
        e: &SearchEntry,
    ) -> Result<Vec<String>, DirError> {
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
            let filter = member_filter(&e.dn);
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

    pub(crate) async fn entry_and_groups(
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

    /// What changes when the password is written: AD's `pwdLastSet` (100 ns resolution);
    /// OpenLDAP's `pwdChangedTime` (ppolicy) and, where the service account may read it, a
    /// digest of `userPassword`. With must-change-after-reset AD sets `pwdLastSet` to 0,
    /// which it may already be, so `uSNChanged` joins the stamp there.
    pub(crate) async fn stamp_on(
        &self,
        ldap: &mut Ldap,
        user: &DirUser,
    ) -> Result<Option<String>, DirError> {
        let attrs = vec![
            "entryUUID",
            "objectGUID",
            "pwdChangedTime",
            "userPassword",
            "pwdLastSet",
            "uSNChanged",
        ];
        let Some(e) = self.entry_with(ldap, &user.lookup, attrs).await? else {
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

    pub(crate) async fn dn_of(&self, user: &DirUser) -> Result<String, DirError> {
        let e = pooled_read!(self, |l| self.entry(l, &user.lookup))?;
        match e {
            Some(e) if entry_id(&e) == user.id => Ok(e.dn),
            _ => Err(DirError::Other(format!(
                "ldap: {} is no longer the same entry",
                user.login
            ))),
        }
    }
}

/// The value of a DN's first RDN, unescaped as RFC 4514 says: `CN=sales\, emea,OU=x` gives
/// `sales, emea`, and `CN=sales\2C emea,OU=x` (AD and OpenLDAP may write either) the same; hex
/// pairs are UTF-8 bytes (`\C3\A9` is `é`). An unescaped `,`, `;` or `+` ends the value (of
/// a multi-valued RDN, the first value is taken); unescaped spaces around it are dropped.
/// `None` for a DN without `=`.
pub fn first_rdn_value(dn: &str) -> Option<String> {
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

/// A stable id: OpenLDAP's entryUUID, AD's objectGUID (binary, as hex), else the DN.
pub(crate) fn entry_id(e: &SearchEntry) -> String {
    if let Some(g) = e.bin_attrs.get("objectGUID").and_then(|v| v.first()) {
        return g.iter().map(|b| format!("{b:02x}")).collect();
    }
    first(e, "entryUUID").unwrap_or_else(|| e.dn.clone())
}

pub(crate) fn first(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs.get(attr).and_then(|v| v.first()).cloned()
}

/// The values of a binary attribute, wherever ldap3 put them: a value that happens to be
/// valid UTF-8 (a short SID can be) lands in `attrs`. Attribute names compare without case.
pub(crate) fn binary_values(e: &SearchEntry, attr: &str) -> Vec<Vec<u8>> {
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
}
