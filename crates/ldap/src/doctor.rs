//! `sspr doctor`: the path from sspr to the directory checked step by step, each failure
//! with its fix.

use std::time::Duration;

use ldap3::{Ldap, LdapError, Mod, Scope, SearchEntry};

use crate::policy::{PolicyKind, policy_rules};
use crate::search::{binary_values, first, first_rdn_value};
use crate::{Flavor, LdapDirectory, security_descriptor};

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
        out.push(self.stamp_check(user).await);
        out.extend(self.probe_rights(&mut ldap, &entry.dn).await);
        let _ = ldap.unbind().await;
        out
    }

    /// Whether sspr can tell, after a crash or a lost answer, that a password write landed:
    /// it reads the same stamp a reset reads, through the same code path.
    async fn stamp_check(&self, user: &str) -> Check {
        let name = "write check";
        let found = match sspr_app::ports::Directory::find_user(self, user).await {
            Ok(Some(u)) => u,
            Ok(None) => return Check::fail(name, format!("{user} not found"), "see user search"),
            Err(e) => return Check::fail(name, e.to_string(), "see user search"),
        };
        match sspr_app::ports::Directory::password_stamp(self, &found).await {
            Ok(Some(_)) => Check::pass(
                name,
                "a password write can be read back (pwdLastSet / pwdChangedTime / userPassword): after a crash or a lost answer sspr records what happened",
            ),
            Ok(None) => Check::fail(
                name,
                "nothing readable changes when a password is written, so after a crash or a lost answer the outcome is recorded as unknown",
                match self.cfg.flavor {
                    Flavor::Ad => "give the service account read access to pwdLastSet on the users",
                    Flavor::OpenLdap => {
                        "load the ppolicy overlay (pwdChangedTime) or give the service account read access to pwdChangedTime or userPassword"
                    }
                },
            ),
            Err(e) => Check::fail(
                name,
                e.to_string(),
                "check that the service account may read the users",
            ),
        }
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
                let rules: Vec<String> = policy_rules(&e, kind, enforced)
                    .iter()
                    .map(|r| r.message("en"))
                    .collect();
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

    /// AD's `allowedAttributesEffective` on `dn`: the attributes the bound account may write
    /// there. `None` when it cannot be read or is empty (then the probe decides).
    async fn allowed_attributes_effective(&self, ldap: &mut Ldap, dn: &str) -> Option<Vec<String>> {
        let (entries, _) = ldap
            .search(
                dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["allowedAttributesEffective"],
            )
            .await
            .ok()?
            .success()
            .ok()?;
        let e = SearchEntry::construct(entries.into_iter().next()?);
        let values: Vec<String> = e
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("allowedAttributesEffective"))
            .flat_map(|(_, v)| v.iter().cloned())
            .collect();
        (!values.is_empty()).then_some(values)
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
        // AD says outright which attributes the bound account may write on an entry; a probe
        // write there often answers neither "allowed" nor "denied" (a constraint instead).
        let effective = match self.cfg.flavor {
            Flavor::Ad => self.allowed_attributes_effective(ldap, dn).await,
            Flavor::OpenLdap => None,
        };
        for &(name, attr, fix) in &targets {
            if let Some(allowed) = &effective
                && allowed.iter().any(|a| a.eq_ignore_ascii_case(attr))
            {
                out.push(Check::pass(
                    name,
                    format!("may write {attr} on {dn} (allowedAttributesEffective)"),
                ));
                continue;
            }
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
                Some((_, sam)) => crate::filter::equality_filter("sAMAccountName", sam),
                None => crate::filter::equality_filter("userPrincipalName", me),
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
