//! The logon agent in front of nss-pam-ldapd (`nslcd` and `pam_ldap.so`, the other way Debian
//! and Ubuntu machines log in against LDAP), on the same OpenLDAP the sspr server writes to.
//! The PAM stack is the one libpam-ldapd's pam-auth-update profile writes, with pam_sspr
//! before it in `auth` and first in `password`.
//!
//! Runs only with `SSPR_TEST_SYSTEM=1` (root, mount namespaces, a root nslcd): see machine.rs.

use crate::ldap::{OLD, Slapd, server_on};
use crate::logon::{Syslog, agent_config};
use crate::machine::{FIRST_PROMPT, Machine, login_changing_an_expired_password, system_tests};

/// An administrator's "change at next sign-in" on OpenLDAP (ppolicy `pwdReset`): pam_ldap
/// lets the password in, and its account phase answers `PAM_NEW_AUTHTOK_REQD` (nslcd reads
/// the ppolicy control of the user's bind); the login asks the password stack, pam_sspr
/// changes it through sspr, and the session opens. The next login with the new password goes
/// through pam_ldap; the old one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nslcd_an_expired_password_at_login_is_changed_through_sspr() {
    if !system_tests("nslcd::") {
        return;
    }
    let slapd = Slapd::start();
    let s = server_on(
        &slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
    )
    .await;
    let m = tokio::task::block_in_place(|| Machine::start_nslcd(&slapd));
    let log = Syslog::start(m.dir.path());
    let config = agent_config(
        m.dir.path(),
        "logon.toml",
        &s.url,
        &format!("ca_file = \"{}\"", s.ca().display()),
        &log,
    );
    m.sspr_ldap_stack_with_change("sspr-test", &config);
    let alice = "uid=alice,ou=people,dc=sspr,dc=test";
    slapd.modify(&format!(
        "dn: {alice}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n"
    ));
    let new = "Nslcd-Changed-Passw0rd-Long";

    // The account phase says the password is right and must be changed first; the login
    // then changes it at pam_sspr's prompts and goes on.
    let (ok, out) =
        login_changing_an_expired_password(&m, "sspr-test", "alice", OLD, new, || m.nslcd_log())
            .await;
    assert!(ok, "the login goes on:\n{out}\n{}", log.text());
    assert!(
        slapd.attr(alice, "pwdReset").is_empty(),
        "the change cleared pwdReset"
    );
    let ev = s
        .audit("user=alice&activity=change_password&result=success")
        .await;
    assert_eq!(ev[0]["client_type"], "logon_screen", "{ev:?}");

    // The next login: the new password, through pam_ldap; the old one no more.
    for (password, works) in [(new, true), (OLD, false)] {
        let mut pam = m.pam("sspr-test", "alice");
        pam.expect(FIRST_PROMPT).await;
        pam.send(password);
        let (ok, out) = pam.finish().await;
        assert_eq!(ok, works, "{password}: {out}\n{}", m.nslcd_log());
    }
    s.stop().await;
}
