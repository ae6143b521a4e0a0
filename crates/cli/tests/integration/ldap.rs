//! OpenLDAP writeback against a real slapd (ppolicy overlay, TLS) started in a temp dir.

use sspr_app::ports::PasswordCheck;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Server, free_port};

pub(crate) const NEW: &str = "quiet violet harbour lamps";
pub(crate) const OLD: &str = "alice initial password";

pub struct Slapd {
    pub dir: tempfile::TempDir,
    child: Child,
    pub ldap_port: u16,
    pub ldaps_port: u16,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Slapd {
    pub fn start() -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let tls = sspr_server::tls::ensure_self_signed(
            &d.join("tls"),
            &["127.0.0.1".into(), "localhost".into()],
        )
        .unwrap();
        std::fs::create_dir_all(d.join("db")).unwrap();
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {d}/slapd.pid
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
suffix "dc=sspr,dc=test"
rootdn "cn=admin,dc=sspr,dc=test"
rootpw admin-secret
directory {d}/db
limits dn.exact="cn=sspr,dc=sspr,dc=test" size.prtotal=unlimited
overlay ppolicy
ppolicy_default "cn=default,ou=policies,dc=sspr,dc=test"
access to attrs=userPassword
  by dn.exact="cn=sspr,dc=sspr,dc=test" write
  by dn.exact="cn=pwonly,dc=sspr,dc=test" write
  by self write
  by anonymous auth
  by * none
access to attrs=pwdAccountLockedTime,pwdReset
  by dn.exact="cn=sspr,dc=sspr,dc=test" write
  by * read
access to *
  by dn.exact="cn=sspr,dc=sspr,dc=test" read
  by dn.exact="cn=weak,dc=sspr,dc=test" read
  by dn.exact="cn=pwonly,dc=sspr,dc=test" read
  by self read
  by * none
"#,
            d = d.display(),
            ca = tls.ca.display(),
            cert = tls.cert.display(),
            key = tls.key.display(),
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let ldif = format!(
            "dn: dc=sspr,dc=test\nobjectClass: dcObject\nobjectClass: organization\no: sspr\ndc: sspr\n\n\
             dn: ou=people,dc=sspr,dc=test\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,dc=sspr,dc=test\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: ou=policies,dc=sspr,dc=test\nobjectClass: organizationalUnit\nou: policies\n\n\
             dn: cn=default,ou=policies,dc=sspr,dc=test\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\ncn: default\n\
             pwdAttribute: userPassword\npwdMinLength: 12\npwdCheckQuality: 1\npwdInHistory: 3\npwdLockout: TRUE\npwdMaxFailure: 3\n\
             pwdMustChange: TRUE\n\n\
             dn: cn=sspr,dc=sspr,dc=test\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: sspr\nuserPassword: service-secret\n\n\
             dn: cn=weak,dc=sspr,dc=test\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: weak\nuserPassword: weak-secret\n\n\
             dn: cn=pwonly,dc=sspr,dc=test\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: pwonly\nuserPassword: pwonly-secret\n\n\
             dn: uid=alice,ou=people,dc=sspr,dc=test\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice Liddell\nsn: Liddell\n\
             mail: alice@contoso.test\nmobile: +4915112345678\nuserPassword: {OLD}\n\n\
             dn: uid=mallory,ou=people,dc=sspr,dc=test\nobjectClass: inetOrgPerson\nuid: mallory\ncn: Mallory\nsn: M\n\
             mail: mallory@contoso.test\nuserPassword: {OLD}\n\n\
             dn: cn=staff,ou=groups,dc=sspr,dc=test\nobjectClass: groupOfNames\ncn: staff\nmember: uid=alice,ou=people,dc=sspr,dc=test\n\
             member: uid=mallory,ou=people,dc=sspr,dc=test\n"
        );
        std::fs::write(d.join("base.ldif"), ldif).unwrap();
        let out = Command::new("slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("base.ldif"))
            .output()
            .expect("slapd must be installed: apt-get install slapd ldap-utils");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (ldap_port, ldaps_port) = (free_port(), free_port());
        let child = Self::spawn(d, ldap_port, ldaps_port);
        Slapd {
            dir,
            child,
            ldap_port,
            ldaps_port,
        }
    }

    fn spawn(d: &Path, ldap_port: u16, ldaps_port: u16) -> Child {
        // Debug level 256 (stats): one line per operation in slapd.log, for tests that count
        // what sspr asks.
        let child = Command::new("slapd")
            .arg("-d")
            .arg("256")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
            ))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(d.join("slapd.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", ldaps_port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Kills slapd: the directory is down until `restart`.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills slapd (as a crash would: every connection to it drops) and starts it again on
    /// the same ports and database.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.dir.path(), self.ldap_port, self.ldaps_port);
    }

    /// Established TCP connections to slapd's LDAPS port, counted from the client side.
    pub fn connections(&self) -> usize {
        let o = Command::new("ss")
            .args(["-Htn", "state", "established"])
            .arg(format!("( dport = :{} )", self.ldaps_port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    }

    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// Search operations slapd has logged so far.
    pub fn searches(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("slapd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" SRCH base="))
            .count()
    }

    /// Runs an LDIF change as the directory's root.
    pub fn modify(&self, ldif: &str) {
        let mut c = Command::new("ldapmodify")
            .args([
                "-x",
                "-H",
                &format!("ldap://127.0.0.1:{}", self.ldap_port),
                "-D",
                "cn=admin,dc=sspr,dc=test",
                "-w",
                "admin-secret",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), ldif.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// The values of `attr` on `dn`, read as the directory's root.
    pub fn attr(&self, dn: &str, attr: &str) -> Vec<String> {
        let o = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-H",
                &format!("ldap://127.0.0.1:{}", self.ldap_port),
                "-D",
                "cn=admin,dc=sspr,dc=test",
                "-w",
                "admin-secret",
                "-s",
                "base",
                "-b",
                dn,
                attr,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "ldapsearch {dn} {attr}: {o:?}");
        attr_values(&String::from_utf8_lossy(&o.stdout), attr)
    }

    /// Whether `uid` may search its own entry after binding with `pw` (ppolicy restricts a
    /// session whose password must be changed to the password change itself).
    pub fn may_search(&self, uid: &str, pw: &str) -> bool {
        let dn = format!("uid={uid},ou=people,dc=sspr,dc=test");
        Command::new("ldapsearch")
            .args([
                "-x",
                "-H",
                &format!("ldaps://127.0.0.1:{}", self.ldaps_port),
                "-D",
                &dn,
                "-w",
                pw,
                "-s",
                "base",
                "-b",
                &dn,
                "cn",
            ])
            .env("LDAPTLS_CACERT", self.ca())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Whether a simple bind as `uid` with `pw` succeeds (ldapwhoami over LDAPS).
    pub fn binds(&self, uid: &str, pw: &str) -> bool {
        Command::new("ldapwhoami")
            .args([
                "-x",
                "-H",
                &format!("ldaps://127.0.0.1:{}", self.ldaps_port),
                "-D",
                &format!("uid={uid},ou=people,dc=sspr,dc=test"),
                "-w",
                pw,
            ])
            .env("LDAPTLS_CACERT", self.ca())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

/// The values of `attr` in ldapsearch's LDIF output (unwrapped, plain values only).
fn attr_values(ldif: &str, attr: &str) -> Vec<String> {
    let prefix = format!("{}: ", attr.to_lowercase());
    ldif.lines()
        .filter(|l| l.to_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].to_string())
        .collect()
}

pub(crate) fn ldap_config(
    slapd: &Slapd,
    url: String,
    bind_dn: &str,
    pw: &str,
) -> sspr_ldap::LdapConfig {
    sspr_ldap::LdapConfig {
        urls: vec![url],
        ca_file: Some(slapd.ca()),
        bind_dn: bind_dn.into(),
        bind_password: pw.into(),
        base_dn: "ou=people,dc=sspr,dc=test".into(),
        group_base_dn: "ou=groups,dc=sspr,dc=test".into(),
        policy_dn: Some("cn=default,ou=policies,dc=sspr,dc=test".into()),
        ..sspr_ldap::LdapConfig::default()
    }
}

pub(crate) async fn server_on(
    slapd: &Slapd,
    url: String,
    bind_dn: &'static str,
    pw: &'static str,
) -> Server {
    let cfg = ldap_config(slapd, url, bind_dn, pw);
    Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
        // The directory's mail and mobile count as registered, as Azure AD allows.
        c.directory.trust_contacts = true;
    })
    .await
}

/// A server on `slapd` over LDAPS as the service account `cn=sspr` (write rights on passwords
/// and locks, no size limit on its searches), as a site sets one up.
pub(crate) async fn server_with_service_account(slapd: &Slapd) -> Server {
    server_on(
        slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
    )
    .await
}

#[tokio::test]
async fn reset_and_unlock_write_to_openldap() {
    let slapd = Slapd::start();
    assert!(slapd.binds("alice", OLD));
    let s = server_on(
        &slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
    )
    .await;

    // Reset: the password is changed in OpenLDAP; the new one binds, the old one does not.
    let t = s.flow("Alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(slapd.binds("alice", NEW), "the new password binds");
    assert!(!slapd.binds("alice", OLD), "the old password does not");
    assert!(s.password_works("alice", NEW).await);

    // The directory's own rules are shown before the user types.
    let (_, rules) = s
        .call(reqwest::Method::GET, "/api/v1/password-policy", None, None)
        .await;
    let rules = rules["rules"].to_string();
    assert!(
        rules.contains("at least 12 characters") && rules.contains("last 3 passwords"),
        "{rules}"
    );

    // The directory's own policy (ppolicy history) reaches the user in words.
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    s.verify(&t, "email", &code).await;
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("used this password recently"),
        "{v}"
    );
    // The flow stays usable: another password goes through.
    let (st, v) = s.set_password(&t, "amber kettle under moonlight").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(slapd.binds("alice", "amber kettle under moonlight"));

    // An administrator's permanent lock (000001010000Z) is never lifted by self-service: the
    // user gets the answer every ineligible user gets, nothing is written, the audit says why.
    slapd.modify("dn: uid=mallory,ou=people,dc=sspr,dc=test\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n");
    for kind in ["unlock", "reset"] {
        let (st, v) = s.start_flow("mallory", kind).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "registration_required", "{v}");
    }
    assert!(!slapd.binds("mallory", OLD), "still locked");
    let ev = s.audit("user=mallory&activity=unlock_started").await;
    assert_eq!(ev.last().unwrap()["reason"], "disabled", "{ev:?}");
    slapd.modify("dn: uid=mallory,ou=people,dc=sspr,dc=test\nchangetype: modify\ndelete: pwdAccountLockedTime\n");

    // Unlock: a lockout from failed binds (ppolicy: 3 failures) is removed, the password kept.
    for _ in 0..3 {
        assert!(!slapd.binds("mallory", "not the password at all"));
    }
    assert!(
        !slapd.binds("mallory", OLD),
        "a locked account does not bind"
    );
    let (st, v) = s.start_flow("mallory", "unlock").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t = v["flow_token"].as_str().unwrap().to_string();
    let code = s.email_code(&t, "mallory@contoso.test").await;
    s.verify(&t, "email", &code).await;
    let (st, v) = s.post("/api/v1/flow/unlock", Some(&t), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        slapd.binds("mallory", OLD),
        "unlocked with the same password"
    );

    // A crash around the write is settled from pwdChangedTime / userPassword.
    crate::recovery::crash_recovery_on(
        &s,
        "alice",
        "alice@contoso.test",
        "copper lantern beside the sea",
        "silent meadow after the rain",
    )
    .await;
    assert!(slapd.binds("alice", "silent meadow after the rain"));
    s.stop().await;
}

/// A TCP proxy in front of slapd that, once it sees a Password Modify request go by (plain
/// LDAP, so its OID is visible), holds the server's answer on that connection for `hold`.
async fn answer_holding_proxy(upstream: u16, hold: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PASSWORD_MODIFY_OID: &[u8] = b"1.3.6.1.4.1.4203.1.11.1";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let seen2 = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    if buf[..n]
                        .windows(PASSWORD_MODIFY_OID.len())
                        .any(|w| w == PASSWORD_MODIFY_OID)
                    {
                        seen2.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if seen.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        tokio::time::sleep(hold).await;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_write_whose_answer_comes_after_the_timeout_is_read_back_and_reported_as_done() {
    let slapd = Slapd::start();
    let proxy = answer_holding_proxy(slapd.ldap_port, Duration::from_secs(4)).await;
    let mut cfg = ldap_config(
        &slapd,
        format!("ldap://127.0.0.1:{proxy}"),
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
    );
    // Plain LDAP so the proxy can see which request is the password write.
    cfg.allow_plain = true;
    cfg.timeout_secs = 2;
    let s = Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
        c.directory.trust_contacts = true;
    })
    .await;
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // slapd applies the write at once; its answer reaches sspr only after sspr gave up.
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK, "read back, the write had landed: {v}");
    assert_eq!(v["status"], "completed", "{v}");
    assert!(slapd.binds("alice", NEW));
    let ev = s.audit("user=alice&activity=reset_password").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["result"], "success");
    assert_eq!(ev[0]["reason"], "written_despite_error", "{ev:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_service_account_that_may_set_passwords_but_not_clear_locks_is_told_the_truth() {
    let slapd = Slapd::start();
    let s = server_on(
        &slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=pwonly,dc=sspr,dc=test",
        "pwonly-secret",
    )
    .await;
    // Locked out by failed binds (ppolicy: 3 failures).
    for _ in 0..3 {
        assert!(!slapd.binds("alice", "not the password at all"));
    }
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The password is written; clearing the lock is refused to this account. The password
    // changed, so the user hears that (not "Nothing was changed"), and a notice is queued.
    let mails = s.mail_count("alice@contoso.test");
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let locked = !slapd
        .attr(
            "uid=alice,ou=people,dc=sspr,dc=test",
            "pwdAccountLockedTime",
        )
        .is_empty();
    if locked {
        assert!(
            v["message"].as_str().unwrap().contains("still locked"),
            "{v}"
        );
    } else {
        // ppolicy itself drops the lock on a password change.
        assert!(slapd.binds("alice", NEW));
    }
    let ev = s.audit("user=alice&activity=reset_password").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["result"], "success", "{ev:?}");
    for _ in 0..100 {
        if s.mail_count("alice@contoso.test") > mails {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        s.mail_count("alice@contoso.test") > mails,
        "the reset notice"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_user_filter_on_mail_finds_the_account_again_at_the_password_step() {
    let slapd = Slapd::start();
    let mut cfg = ldap_config(
        &slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
    );
    cfg.user_filter = "(&(objectClass=inetOrgPerson)(mail={login}))".into();
    let s = Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
        c.directory.trust_contacts = true;
    })
    .await;
    let t = s.flow("alice@contoso.test").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "the entry is found by what the filter matched: {v}"
    );
    assert!(slapd.binds("alice", NEW));
    s.stop().await;
}

#[tokio::test]
async fn a_group_with_an_escaped_comma_in_its_name_is_read_whole() {
    use sspr_app::ports::Directory;
    let slapd = Slapd::start();
    slapd.modify(
        "dn: cn=sales\\, emea,ou=groups,dc=sspr,dc=test\nchangetype: add\nobjectClass: groupOfNames\n\
         cn: sales, emea\nmember: uid=alice,ou=people,dc=sspr,dc=test\n",
    );
    let dir = sspr_ldap::LdapDirectory::new(ldap_config(
        &slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=admin,dc=sspr,dc=test",
        "admin-secret",
    ))
    .unwrap();
    let alice = dir.find_user("alice").await.unwrap().unwrap();
    assert!(
        alice.groups.contains(&"sales, emea".to_string()),
        "{:?}",
        alice.groups
    );
    assert!(
        alice.groups.contains(&"staff".to_string()),
        "{:?}",
        alice.groups
    );
}

#[tokio::test]
async fn starttls_works_and_a_service_account_without_rights_fails_in_words() {
    let slapd = Slapd::start();
    let s = server_on(
        &slapd,
        format!("ldap://127.0.0.1:{}", slapd.ldap_port),
        "cn=weak,dc=sspr,dc=test",
        "weak-secret",
    )
    .await;
    // StartTLS on ldap://: the user is found and the flow starts.
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    s.verify(&t, "email", &code).await;
    // The weak account may read but not reset: a refusal, not an outage (502
    // directory_refused, not 503 directory_unavailable); the user is told nothing changed and
    // to see the helpdesk, the admin's log gets the directory's result code.
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"], "directory_refused");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("Nothing was changed")
            && message.contains("helpdesk")
            && message.contains("support code")
            && !message.contains("Try again"),
        "{v}"
    );
    assert!(slapd.binds("alice", OLD), "the password is unchanged");
    let ev = s.audit("user=alice&activity=directory_error").await;
    let last = ev.last().unwrap();
    assert_eq!(last["reason"], "directory_permission", "{ev:?}");
    assert_eq!(last["support_code"], v["support_code"], "{ev:?}");
    let said = last["details"]["directory"].as_str().unwrap_or_default();
    assert!(
        said.contains("may not reset uid=alice")
            && said.contains("rc=50 (insufficientAccessRights)"),
        "{ev:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn must_change_after_reset_sets_pwd_reset_in_openldap() {
    use sspr_app::ports::Directory;
    let slapd = Slapd::start();
    let alice_dn = "uid=alice,ou=people,dc=sspr,dc=test";
    let url = format!("ldaps://127.0.0.1:{}", slapd.ldaps_port);
    let cfg = ldap_config(
        &slapd,
        url.clone(),
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
    );
    assert!(!cfg.must_change_after_reset, "off by default");

    // Off: the reset leaves pwdReset unset and the new password is good for everything.
    let dir = sspr_ldap::LdapDirectory::new(cfg.clone()).unwrap();
    let alice = dir.find_user("alice").await.unwrap().unwrap();
    dir.reset_password(&alice, NEW).await.unwrap();
    assert!(slapd.binds("alice", NEW));
    assert_eq!(slapd.attr(alice_dn, "pwdReset"), Vec::<String>::new());
    assert!(slapd.may_search("alice", NEW), "not restricted");

    // On: pwdReset is TRUE after the reset; ppolicy (pwdMustChange: TRUE in the policy) lets
    // alice bind but restricts her session to changing the password.
    let dir = sspr_ldap::LdapDirectory::new(sspr_ldap::LdapConfig {
        must_change_after_reset: true,
        ..cfg
    })
    .unwrap();
    let pw = "amber kettle under moonlight";
    dir.reset_password(&alice, pw).await.unwrap();
    assert_eq!(slapd.attr(alice_dn, "pwdReset"), vec!["TRUE".to_string()]);
    assert!(slapd.binds("alice", pw), "the new password binds");
    assert!(!slapd.may_search("alice", pw), "but only to change it");
    // Once alice changes it herself, ppolicy clears the flag.
    let st = Command::new("ldappasswd")
        .args([
            "-x",
            "-H",
            &format!("ldap://127.0.0.1:{}", slapd.ldap_port),
            "-D",
            alice_dn,
            "-w",
            pw,
            "-a",
            pw,
            "-s",
            "her own choice of words",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(slapd.attr(alice_dn, "pwdReset"), Vec::<String>::new());
    assert!(slapd.may_search("alice", "her own choice of words"));

    // sspr doctor checks the right to write pwdReset and that the policy enforces it.
    let extra =
        "must_change_after_reset = true\npolicy_dn = \"cn=default,ou=policies,dc=sspr,dc=test\"\n";
    let base = "ou=people,dc=sspr,dc=test";
    let (sspr_dn, weak_dn) = ("cn=sspr,dc=sspr,dc=test", "cn=weak,dc=sspr,dc=test");
    let (code, out) = doctor_with(
        &url,
        base,
        extra,
        sspr_dn,
        "service-secret",
        &slapd.ca(),
        "alice",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   must change") && out.contains("ok   ppolicy"),
        "{out}"
    );
    let (code, out) = doctor_with(
        &url,
        base,
        extra,
        weak_dn,
        "weak-secret",
        &slapd.ca(),
        "alice",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL must change") && out.contains("write access to pwdReset"),
        "{out}"
    );
    slapd.modify("dn: cn=default,ou=policies,dc=sspr,dc=test\nchangetype: modify\nreplace: pwdMustChange\npwdMustChange: FALSE\n");
    let (code, out) = doctor_with(
        &url,
        base,
        extra,
        sspr_dn,
        "service-secret",
        &slapd.ca(),
        "alice",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL ppolicy") && out.contains("set pwdMustChange: TRUE"),
        "{out}"
    );
}

#[tokio::test]
async fn a_users_own_ppolicy_is_read_per_user() {
    let slapd = Slapd::start();
    slapd.modify(
        "dn: cn=strict,ou=policies,dc=sspr,dc=test\nchangetype: add\nobjectClass: organizationalRole\n\
         objectClass: pwdPolicy\ncn: strict\npwdAttribute: userPassword\npwdMinLength: 20\npwdInHistory: 6\npwdMinAge: 3600\n\n\
         dn: uid=alice,ou=people,dc=sspr,dc=test\nchangetype: modify\nreplace: pwdPolicySubentry\n\
         pwdPolicySubentry: cn=strict,ou=policies,dc=sspr,dc=test\n",
    );
    let url = format!("ldaps://127.0.0.1:{}", slapd.ldaps_port);
    let cfg = ldap_config(&slapd, url, "cn=sspr,dc=sspr,dc=test", "service-secret");
    let dir = sspr_ldap::LdapDirectory::new(cfg).unwrap();
    assert_eq!(
        words(dir.rules_for_login("alice").await.unwrap()),
        vec![
            "The directory requires at least 20 characters.".to_string(),
            "The directory refuses your last 6 passwords.".to_string(),
            "Once set, the password cannot be changed again for 1 hour.".to_string(),
        ]
    );
    assert_eq!(
        words(dir.rules_for_login("mallory").await.unwrap()),
        vec![
            "The directory requires at least 12 characters.".to_string(),
            "The directory refuses your last 3 passwords.".to_string(),
        ]
    );

    // Through the API: anyone gets the general rules; the holder of a verified reset flow gets
    // the user's own; an unverified flow's token reveals nothing more than anyone gets.
    let s = server_on(
        &slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
    )
    .await;
    let rules = |v: serde_json::Value| v["rules"].to_string();
    let (_, anyone) = s
        .call(reqwest::Method::GET, "/api/v1/password-policy", None, None)
        .await;
    assert!(
        rules(anyone.clone()).contains("at least 12 characters"),
        "{anyone}"
    );
    let t = s.flow("alice").await;
    let (_, early) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/password-policy",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        rules(early),
        rules(anyone.clone()),
        "nothing before verification"
    );
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, own) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/password-policy",
            Some(&t),
            None,
        )
        .await;
    let own = rules(own);
    assert!(
        own.contains("at least 20 characters") && own.contains("last 6 passwords"),
        "{own}"
    );
    s.stop().await;
}

/// The most connections seen to slapd's LDAPS port while `work` runs, sampled every 5 ms.
async fn max_connections_during<T>(
    slapd: &Slapd,
    work: impl std::future::Future<Output = T>,
) -> (T, usize) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = slapd.ldaps_port;
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let o = Command::new("ss")
                    .args(["-Htn", "state", "established"])
                    .arg(format!("( dport = :{port} )"))
                    .output()
                    .unwrap();
                let n = String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .count();
                max = max.max(n);
                std::thread::sleep(Duration::from_millis(5));
            }
            max
        })
    };
    let out = work.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, sampler.join().unwrap())
}

/// `n` lookups of `login` at once; how many found the user.
async fn concurrent_lookups(dir: &sspr_ldap::LdapDirectory, login: &str, n: usize) -> usize {
    use sspr_app::ports::Directory;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let dir = dir.clone();
            let login = login.to_string();
            tokio::spawn(async move { dir.find_user(&login).await })
        })
        .collect();
    let mut found = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Some(_)) => found += 1,
            other => panic!("lookup failed: {other:?}"),
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn service_connections_are_pooled_and_survive_a_restart() {
    use sspr_app::ports::Directory;
    let mut slapd = Slapd::start();
    let url = format!("ldaps://127.0.0.1:{}", slapd.ldaps_port);
    let cfg = ldap_config(&slapd, url, "cn=sspr,dc=sspr,dc=test", "service-secret");
    assert_eq!(cfg.pool_size, 4, "the default");
    let dir = sspr_ldap::LdapDirectory::new(cfg).unwrap();
    assert_eq!(slapd.connections(), 0);

    // Many lookups at once share at most four connections, kept open for the next ones.
    for _ in 0..3 {
        let (found, max) =
            max_connections_during(&slapd, concurrent_lookups(&dir, "alice", 50)).await;
        assert_eq!(found, 50);
        assert!((1..=4).contains(&max), "{max} connections");
    }
    let idle = slapd.connections();
    assert!((1..=4).contains(&idle), "{idle} idle connections");

    // Checking a user's password binds on a connection of its own: the pooled ones stay
    // bound as the service account. alice may not read mallory's entry; the service may.
    // The wrong passwords go to mallory: ppolicy locks an account after 3 failures, and a
    // locked alice would fail her right password too.
    let alice = dir.find_user("alice").await.unwrap().unwrap();
    let mallory = dir.find_user("mallory").await.unwrap().unwrap();
    let checks: Vec<_> = (0..8)
        .map(|i| {
            let dir = dir.clone();
            let (who, pw) = if i % 2 == 0 {
                (alice.clone(), OLD)
            } else {
                (mallory.clone(), "wrong password")
            };
            tokio::spawn(async move {
                (dir.check_password(&who, pw).await.unwrap() == PasswordCheck::Right)
                    == (i % 2 == 0)
            })
        })
        .collect();
    let found = concurrent_lookups(&dir, "mallory", 20).await;
    for c in checks {
        assert!(c.await.unwrap(), "a password check gave the wrong answer");
    }
    assert_eq!(found, 20, "every lookup ran as the service account");

    // slapd dies and comes back: the dead pooled connections are replaced, no caller sees it.
    slapd.restart();
    let (found, max) = max_connections_during(&slapd, concurrent_lookups(&dir, "alice", 50)).await;
    assert_eq!(found, 50);
    assert!((1..=4).contains(&max), "{max} connections");
    // A write goes over a connection that has just answered.
    slapd.restart();
    dir.reset_password(&alice, NEW).await.unwrap();
    assert!(slapd.binds("alice", NEW));
    assert!(dir.ping().await.is_ok());
    slapd.restart();
    assert!(dir.ping().await.is_ok(), "readiness survives a restart too");
    assert!(dir.password_rules().await.unwrap().len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_checks_open_a_bounded_number_of_connections() {
    use sspr_app::ports::Directory;
    let slapd = Slapd::start();
    let url = format!("ldaps://127.0.0.1:{}", slapd.ldaps_port);
    let mut cfg = ldap_config(&slapd, url, "cn=sspr,dc=sspr,dc=test", "service-secret");
    cfg.password_checks = 2;
    let dir = sspr_ldap::LdapDirectory::new(cfg).unwrap();
    let alice = dir.find_user("alice").await.unwrap().unwrap();
    // A burst of sign-ins, real and unknown users: at most 4 pooled connections for the
    // searches plus 2 for binds, where each check used to open a connection of its own.
    let burst = async {
        let tasks: Vec<_> = (0..24)
            .map(|i| {
                let (dir, alice) = (dir.clone(), alice.clone());
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        dir.check_password(&alice, OLD)
                            .await
                            .map(|c| c == PasswordCheck::Right)
                    } else {
                        dir.check_password_of_nobody("nosuchuser", "some password")
                            .await
                            .map(|()| true)
                    }
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                ok += 1;
            }
        }
        ok
    };
    let (ok, max) = max_connections_during(&slapd, burst).await;
    assert_eq!(ok, 24, "every check answered (alice's password is right)");
    assert!(max <= 6, "{max} connections at once");
}

#[test]
fn ldap_configuration_is_checked() {
    let bad = sspr_ldap::LdapConfig {
        urls: vec!["http://x".into()],
        ..sspr_ldap::LdapConfig::default()
    };
    let e = bad.validate();
    assert!(
        e.iter().any(|m| m.contains("must start with ldaps://")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("bind_dn")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("base_dn")), "{e:?}");
    let none = sspr_ldap::LdapConfig {
        pool_size: 0,
        ..sspr_ldap::LdapConfig::default()
    };
    assert!(
        none.validate().iter().any(|m| m.contains("pool_size")),
        "{:?}",
        none.validate()
    );
}

pub(crate) const AD_ADMIN_PW: &str = "Adm1n-Passw0rd!";
pub(crate) const AD_OLD: &str = "Initial-Passw0rd!";

/// A Samba AD domain controller provisioned in a temp dir, LDAPS on 127.0.0.1:636 with our
/// own CA (Samba's generated certificate has no SAN, which rustls refuses).
pub(crate) struct SambaAd {
    dir: tempfile::TempDir,
    child: Child,
    /// One domain controller at a time: they all need the standard ports. Dropped last.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static SAMBA_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Drop for SambaAd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // samba forks workers; make sure none keeps the standard ports.
        let _ = Command::new("pkill")
            .args(["-f", &self.dir.path().display().to_string()])
            .status();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", 636)).is_err()
                && std::net::TcpStream::connect(("127.0.0.1", 389)).is_err()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl SambaAd {
    pub(crate) fn start() -> SambaAd {
        let one_at_a_time = SAMBA_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let tls = sspr_server::tls::ensure_self_signed(
            &d.join("tls"),
            &["127.0.0.1".into(), "localhost".into()],
        )
        .unwrap();
        let out = Command::new("samba-tool")
            .args([
                "domain",
                "provision",
                "--use-rfc2307",
                "--realm=SSPR.TEST",
                "--domain=SSPR",
                "--server-role=dc",
                "--dns-backend=NONE",
            ])
            .arg(format!("--targetdir={}", d.join("ad").display()))
            .arg(format!("--adminpass={AD_ADMIN_PW}"))
            .args([
                "--option=interfaces=lo",
                "--option=bind interfaces only=yes",
                "--host-ip=127.0.0.1",
            ])
            .output()
            .expect("Samba AD must be installed: apt-get install samba samba-ad-dc winbind");
        assert!(
            out.status.success(),
            "provision: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = d.join("ad/etc/smb.conf");
        let text = std::fs::read_to_string(&conf).unwrap().replacen(
            "[global]",
            &format!(
                // The old password stays valid for an hour after a change unless told otherwise.
                // The pid file and sockets go to the temp dir too: in /run/samba, another
                // samba (the system's, or a test's in another network namespace) would make
                // this one refuse to start.
                "[global]\n\told password allowed period = 0\n\ttls enabled = yes\n\ttls keyfile = {}\n\ttls certfile = {}\n\ttls cafile = {}\n\
                 \tpid directory = {run}\n\tncalrpc dir = {run}/ncalrpc\n\twinbindd socket directory = {run}/winbindd\n",
                tls.key.display(),
                tls.cert.display(),
                tls.ca.display(),
                run = d.join("run").display(),
            ),
            1,
        );
        std::fs::write(&conf, text).unwrap();
        // The previous domain controller's workers may still hold the ports: an open port
        // is not yet this one's (a CI run met "connection refused" right after such a wait).
        let open = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        for _ in 0..240 {
            if !open(389) && !open(636) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let mut child = Command::new("samba")
            .arg("-s")
            .arg(&conf)
            .args(["-i", "-d1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("samba.log")).unwrap())
            .spawn()
            .unwrap();
        // Ready when this samba answers an LDAP search on 389 (samba-tool's way in) and
        // accepts on 636 (sspr's); up to 90 s, as a loaded machine has taken far longer than
        // the usual 3 s.
        let answers = || {
            Command::new("ldapsearch")
                .args([
                    "-x",
                    "-H",
                    "ldap://127.0.0.1",
                    "-s",
                    "base",
                    "-b",
                    "",
                    "-o",
                    "nettimeout=5",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let t0 = std::time::Instant::now();
        while !(open(636) && answers()) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "samba exited ({status}):\n{}",
                    std::fs::read_to_string(d.join("samba.log")).unwrap_or_default()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "samba did not answer within 90 s:\n{}",
                std::fs::read_to_string(d.join("samba.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        let ad = SambaAd {
            dir,
            child,
            _one_at_a_time: one_at_a_time,
        };
        ad.tool(&[
            "domain",
            "passwordsettings",
            "set",
            "--min-pwd-age=0",
            "--account-lockout-threshold=3",
            "--account-lockout-duration=30",
            "--reset-account-lockout-after=30",
        ]);
        ad.tool(&[
            "user",
            "create",
            "alice",
            AD_OLD,
            "--mail-address=alice@contoso.test",
        ]);
        ad.tool(&["user", "create", "weak", "Weak-Passw0rd!"]);
        ad
    }

    pub(crate) fn tool(&self, args: &[&str]) {
        let out = Command::new("samba-tool")
            .args(args)
            .args([
                "-H",
                "ldap://127.0.0.1",
                "-U",
                &format!("SSPR\\Administrator%{AD_ADMIN_PW}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "samba-tool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The values of `attr` on the user `cn`, read over LDAPS as Administrator.
    fn attr(&self, cn: &str, attr: &str) -> Vec<String> {
        let o = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-H",
                "ldaps://127.0.0.1",
                "-D",
                "Administrator@sspr.test",
                "-w",
                AD_ADMIN_PW,
                "-s",
                "base",
                "-b",
                &format!("CN={cn},CN=Users,DC=sspr,DC=test"),
                attr,
            ])
            .env("LDAPTLS_CACERT", self.dir.path().join("tls/ca.pem"))
            .output()
            .unwrap();
        assert!(o.status.success(), "ldapsearch {cn} {attr}: {o:?}");
        attr_values(&String::from_utf8_lossy(&o.stdout), attr)
    }

    /// What a simple bind as `user` with `pw` answers (empty when it succeeds).
    fn bind_error(&self, user: &str, pw: &str) -> String {
        let o = Command::new("ldapsearch")
            .args([
                "-x",
                "-H",
                "ldaps://127.0.0.1",
                "-D",
                &format!("{user}@sspr.test"),
                "-w",
                pw,
                "-s",
                "base",
                "-b",
                "",
            ])
            .env("LDAPTLS_CACERT", self.dir.path().join("tls/ca.pem"))
            .output()
            .unwrap();
        if o.status.success() {
            String::new()
        } else {
            String::from_utf8_lossy(&o.stderr).to_string()
        }
    }

    /// Runs [`SDPROP`] with Debian's python3 (the one with Samba's bindings).
    fn sdprop(&self, mode: &str, name: &str) {
        let script = self.dir.path().join("sdprop.py");
        std::fs::write(&script, SDPROP).unwrap();
        let o = Command::new("/usr/bin/python3")
            .arg(&script)
            .args([AD_ADMIN_PW, mode, name])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sdprop {mode} {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    pub(crate) fn binds(&self, user: &str, pw: &str) -> bool {
        Command::new("ldapsearch")
            .args([
                "-x",
                "-H",
                "ldaps://127.0.0.1",
                "-D",
                &format!("{user}@sspr.test"),
                "-w",
                pw,
                "-s",
                "base",
                "-b",
                "",
            ])
            .env("LDAPTLS_CACERT", self.dir.path().join("tls/ca.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    pub(crate) fn config(&self, bind_user: &str, pw: &str) -> sspr_ldap::LdapConfig {
        sspr_ldap::LdapConfig {
            urls: vec!["ldaps://127.0.0.1:636".into()],
            ca_file: Some(self.dir.path().join("tls/ca.pem")),
            bind_dn: format!("CN={bind_user},CN=Users,DC=sspr,DC=test"),
            bind_password: pw.into(),
            base_dn: "CN=Users,DC=sspr,DC=test".into(),
            // These tests are about what AD answers, not how fast: on a loaded CI machine
            // Samba can take seconds per operation. 14 s is the most the default finish lease
            // (60 s ≥ 4 × timeout + 2) allows.
            timeout_secs: 14,
            ..sspr_ldap::LdapConfig::active_directory()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_upn_logins_disabled_and_expired_accounts_are_handled_truthfully() {
    let ad = SambaAd::start();
    let mut cfg = ad.config("Administrator", AD_ADMIN_PW);
    cfg.user_filter = "(&(objectClass=user)(userPrincipalName={login}))".into();
    let s = Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
        c.directory.trust_contacts = true;
    })
    .await;
    let verified = || async {
        let t = s.flow("alice@sspr.test").await;
        let code = s.email_code(&t, "alice@contoso.test").await;
        let (st, v) = s.verify(&t, "email", &code).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        t
    };

    // A filter on userPrincipalName: the entry is found again at the password step.
    let first = "Quiet-Violet-Harbour-7";
    let t = verified().await;
    let (st, v) = s.set_password(&t, first).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(ad.binds("alice", first));

    // Disabled by an administrator after the user verified: nothing is written.
    let t = verified().await;
    ad.tool(&["user", "disable", "alice"]);
    let (st, v) = s.set_password(&t, "Amber-Kettle-Moon-8").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // Signing in as a disabled or unknown user binds to a name no entry has: Samba answers
    // invalidCredentials, as to a wrong password, not an error.
    for user in ["alice@sspr.test", "nosuchuser@sspr.test"] {
        let (st, v) = s
            .post(
                "/api/v1/session",
                None,
                json!({ "user": user, "password": first }),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{user}: {v}");
    }
    ad.tool(&["user", "enable", "alice"]);
    assert!(ad.binds("alice", first), "the password was not changed");
    let ev = s.audit("user=alice&activity=reset_password").await;
    assert_eq!(ev.last().unwrap()["reason"], "disabled", "{ev:?}");

    // An account whose accountExpires has passed is treated as disabled from the start.
    ad.tool(&["user", "setexpiry", "alice", "--days=0"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (st, v) = s.start_flow("alice@sspr.test", "reset").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "registration_required", "{v}");
    let ev = s.audit("user=alice&activity=reset_started").await;
    assert_eq!(ev.last().unwrap()["reason"], "disabled", "{ev:?}");
    // Audited under the account, with what was typed.
    assert_eq!(
        ev.last().unwrap()["details"]["typed_as"],
        "alice@sspr.test",
        "{ev:?}"
    );
    assert_eq!(
        ev.last().unwrap()["details"]["typed_as"],
        "alice@sspr.test",
        "{ev:?}"
    );
    ad.tool(&["user", "setexpiry", "alice", "--noexpiry"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_and_unlock_write_to_active_directory() {
    let ad = SambaAd::start();
    assert!(ad.binds("alice", AD_OLD));
    let cfg = ad.config("Administrator", AD_ADMIN_PW);
    let s = Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
        c.directory.trust_contacts = true;
    })
    .await;

    let (_, rules) = s
        .call(reqwest::Method::GET, "/api/v1/password-policy", None, None)
        .await;
    let rules = rules["rules"].to_string();
    assert!(
        rules.contains("at least 7 characters") && rules.contains("three of"),
        "{rules}"
    );

    // sspr's policy accepts this passphrase; the domain's complexity rule does not, in words.
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("domain's length, complexity or history rules"),
        "{v}"
    );
    // The same flow then succeeds with a password the domain accepts (unicodePwd over LDAPS).
    let strong = "Quiet-Violet-Harbour-7";
    let (st, v) = s.set_password(&t, strong).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(ad.binds("alice", strong), "the new password binds");
    assert!(!ad.binds("alice", AD_OLD), "the old password does not");

    // Unlock: three bad binds lock the account (lockoutTime); an unlock flow clears it.
    for _ in 0..3 {
        assert!(!ad.binds("alice", "wrong-Passw0rd!"));
    }
    assert!(!ad.binds("alice", strong), "the account is locked out");
    let (st, v) = s.start_flow("alice", "unlock").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t = v["flow_token"].as_str().unwrap().to_string();
    let code = s.email_code(&t, "alice@contoso.test").await;
    s.verify(&t, "email", &code).await;
    let (st, v) = s.post("/api/v1/flow/unlock", Some(&t), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        ad.binds("alice", strong),
        "unlocked, with the same password"
    );

    // A crash around the write is settled from pwdLastSet.
    crate::recovery::crash_recovery_on(
        &s,
        "alice",
        "alice@contoso.test",
        "Copper-Lantern-Sea-31",
        "Silent-Meadow-Rain-52",
    )
    .await;
    assert!(ad.binds("alice", "Silent-Meadow-Rain-52"));
    let strong = "Silent-Meadow-Rain-52";
    s.stop().await;

    // A service account without the Reset Password right: nothing changes, the user is told.
    let cfg = ad.config("weak", "Weak-Passw0rd!");
    let s = Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
        c.directory.trust_contacts = true;
    })
    .await;
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    s.verify(&t, "email", &code).await;
    let (st, v) = s.set_password(&t, "Another-Strong-Passw0rd-9").await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{v}");
    assert_eq!(v["error"], "directory_refused");
    assert!(ad.binds("alice", strong), "unchanged");
    let ev = s.audit("user=alice&activity=directory_error").await;
    let last = ev.last().unwrap();
    assert_eq!(last["reason"], "directory_permission", "{ev:?}");
    let said = last["details"]["directory"].as_str().unwrap_or_default();
    assert!(said.contains("directory said rc="), "{ev:?}");
    s.stop().await;

    // sspr doctor: the administrator passes; the weak account is told which right it lacks.
    let ca = ad.dir.path().join("tls/ca.pem");
    let (url, base) = ("ldaps://127.0.0.1:636", "CN=Users,DC=sspr,DC=test");
    let flavor =
        "flavor = \"ad\"\nuser_filter = \"(&(objectClass=user)(sAMAccountName={login}))\"\n";
    let admin_dn = "CN=Administrator,CN=Users,DC=sspr,DC=test";
    let (code, out) = doctor_with(url, base, flavor, admin_dn, AD_ADMIN_PW, &ca, "alice");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   user search    alice is CN=alice,CN=Users,DC=sspr,DC=test"),
        "{out}"
    );
    // The Reset Password right is read from alice's DACL: Domain Admins (RID 512, one of the
    // administrator's tokenGroups) hold it.
    assert!(
        out.contains("ok   reset right    may reset the password of CN=alice,CN=Users,DC=sspr,DC=test (Reset Password allowed to S-1-5-21-")
            && out.contains("-512)"),
        "{out}"
    );
    // The unlock right is read from what AD says the account may write, not guessed from a
    // probe write (which Samba answers with a constraint: "inconclusive").
    assert!(
        out.contains("ok   unlock right   may write lockoutTime on CN=alice,CN=Users,DC=sspr,DC=test (allowedAttributesEffective)"),
        "{out}"
    );
    let weak_dn = "CN=weak,CN=Users,DC=sspr,DC=test";
    let (code, out) = doctor_with(url, base, flavor, weak_dn, "Weak-Passw0rd!", &ca, "alice");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL unlock right") && out.contains("lockoutTime"),
        "{out}"
    );
    assert!(
        out.contains("FAIL reset right    may not reset the password of CN=alice")
            && out.contains("fix: delegate Reset Password on the users' OU to the service account: Delegate Control… → Reset user passwords and force password change at next logon"),
        "{out}"
    );
    assert!(ad.binds("alice", strong), "doctor changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_change_after_reset_sets_pwd_last_set_in_active_directory() {
    use sspr_app::ports::Directory;
    let ad = SambaAd::start();
    let cfg = ad.config("Administrator", AD_ADMIN_PW);
    assert!(!cfg.must_change_after_reset, "off by default");

    // Off: pwdLastSet is the time of the reset, and the new password signs in.
    let dir = sspr_ldap::LdapDirectory::new(cfg.clone()).unwrap();
    let alice = dir.find_user("alice").await.unwrap().unwrap();
    let pw = "Quiet-Violet-Harbour-7";
    dir.reset_password(&alice, pw).await.unwrap();
    let last_set = ad.attr("alice", "pwdLastSet");
    assert!(last_set.len() == 1 && last_set[0] != "0", "{last_set:?}");
    assert_eq!(ad.bind_error("alice", pw), "");

    // On: pwdLastSet is 0 (user must change password at next logon), so the domain refuses a
    // plain sign-in with the new password until it is changed.
    let dir = sspr_ldap::LdapDirectory::new(sspr_ldap::LdapConfig {
        must_change_after_reset: true,
        ..cfg
    })
    .unwrap();
    let pw = "Amber-Kettle-Moonlight-8";
    dir.reset_password(&alice, pw).await.unwrap();
    assert_eq!(ad.attr("alice", "pwdLastSet"), vec!["0".to_string()]);
    let refused = ad.bind_error("alice", pw);
    // AD's "data 773": ERROR_PASSWORD_MUST_CHANGE.
    assert!(
        refused.contains("Invalid credentials") && refused.contains("data 773"),
        "{refused}"
    );
    assert!(
        !ad.binds("alice", "Quiet-Violet-Harbour-7"),
        "the old one is gone"
    );

    // sspr doctor probes the right to write pwdLastSet without changing it.
    let ca = ad.dir.path().join("tls/ca.pem");
    let (url, base) = ("ldaps://127.0.0.1:636", "CN=Users,DC=sspr,DC=test");
    let extra = "flavor = \"ad\"\nuser_filter = \"(&(objectClass=user)(sAMAccountName={login}))\"\nmust_change_after_reset = true\n";
    let admin_dn = "CN=Administrator,CN=Users,DC=sspr,DC=test";
    let (code, out) = doctor_with(url, base, extra, admin_dn, AD_ADMIN_PW, &ca, "alice");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   must change    may write pwdLastSet on CN=alice,CN=Users,DC=sspr,DC=test (allowedAttributesEffective)"),
        "{out}"
    );
    let weak_dn = "CN=weak,CN=Users,DC=sspr,DC=test";
    let (code, out) = doctor_with(url, base, extra, weak_dn, "Weak-Passw0rd!", &ca, "alice");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL must change") && out.contains("Write pwdLastSet"),
        "{out}"
    );
    assert_eq!(
        ad.attr("alice", "pwdLastSet"),
        vec!["0".to_string()],
        "unchanged"
    );
}

/// Samba lists no policy-hints control, so a reset is not held to the password history: the
/// rules shown must not claim it, and doctor says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_rules_claim_the_history_only_where_resets_enforce_it() {
    use sspr_app::ports::Directory;
    let ad = SambaAd::start();
    let cfg = ad.config("Administrator", AD_ADMIN_PW);
    let dir = sspr_ldap::LdapDirectory::new(cfg).unwrap();
    let alice = dir.find_user("alice").await.unwrap().unwrap();
    // The domain keeps 24 passwords, yet a reset to the password just set is accepted.
    let pw = "Quiet-Violet-Harbour-7";
    dir.reset_password(&alice, pw).await.unwrap();
    dir.reset_password(&alice, pw).await.unwrap();
    assert!(ad.binds("alice", pw));
    for rules in [
        words(dir.password_rules().await.unwrap()),
        words(dir.password_rules_for(&alice).await.unwrap()),
    ] {
        let rules = rules.join(" ");
        assert!(
            rules.contains("at least 7 characters") && rules.contains("three of"),
            "{rules}"
        );
        assert!(!rules.contains("refuses your last"), "{rules}");
        assert!(
            rules.contains("not checked against your earlier passwords"),
            "{rules}"
        );
    }
    let ca = ad.dir.path().join("tls/ca.pem");
    let extra =
        "flavor = \"ad\"\nuser_filter = \"(&(objectClass=user)(sAMAccountName={login}))\"\n";
    let (code, out) = doctor_with(
        "ldaps://127.0.0.1:636",
        "CN=Users,DC=sspr,DC=test",
        extra,
        "CN=Administrator,CN=Users,DC=sspr,DC=test",
        AD_ADMIN_PW,
        &ca,
        "alice",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("history") && out.contains("NOT enforced on resets"),
        "{out}"
    );
}

/// What SDProp does, done by hand (Samba has no SDProp): `protect CN` gives the user
/// AdminSDHolder's ACL with inheritance off and `adminCount=1`, as Windows does within the hour
/// for every member of Domain Admins. `delegate HELPER` gives HELPER, on user objects under
/// CN=Users, what a helpdesk delegation gives: Reset Password, and read/write `lockoutTime` and
/// `pwdLastSet`, as inheritable ACEs (which a protected account does not inherit).
const SDPROP: &str = r#"
import sys
import ldb
from samba.credentials import Credentials
from samba.dcerpc import security
from samba.ndr import ndr_pack, ndr_unpack
from samba.param import LoadParm
from samba.samdb import SamDB

pw, mode, name = sys.argv[1:4]
lp = LoadParm()
creds = Credentials()
creds.guess(lp)
creds.set_username("Administrator")
creds.set_password(pw)
creds.set_domain("SSPR")
db = SamDB(url="ldap://127.0.0.1", credentials=creds, lp=lp)
base = str(db.domain_dn())

def sd_of(dn):
    r = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"], controls=["sd_flags:1:4"])
    return ndr_unpack(security.descriptor, r[0]["nTSecurityDescriptor"][0])

def replace(dn, attr, value, controls=None):
    m = ldb.Message()
    m.dn = ldb.Dn(db, dn)
    m[attr] = ldb.MessageElement(value, ldb.FLAG_MOD_REPLACE, attr)
    db.modify(m, controls=controls or [])

if mode == "delegate":
    r = db.search(base=f"CN={name},CN=Users,{base}", scope=ldb.SCOPE_BASE, attrs=["objectSid"])
    sid = str(ndr_unpack(security.dom_sid, r[0]["objectSid"][0]))
    user_class = "bf967aba-0de6-11d0-a285-00aa003049e2"
    rights = [
        ("CR", "00299570-246d-11d0-a768-00aa006e0529"),  # Reset Password
        ("RPWP", "28630ebf-41d5-11d1-a9c1-0000f80367c1"),  # lockoutTime
        ("RPWP", "bf967a0a-0de6-11d0-a285-00aa003049e2"),  # pwdLastSet
    ]
    aces = "".join(f"(OA;CIIO;{r};{g};{user_class};{sid})" for r, g in rights)
    dn = f"CN=Users,{base}"
    sd = sd_of(dn)
    for ace in security.descriptor.from_sddl("D:" + aces, security.dom_sid(db.get_domain_sid())).dacl.aces:
        sd.dacl_add(ace)
    replace(dn, "nTSecurityDescriptor", ndr_pack(sd), ["sd_flags:1:4"])
elif mode == "protect":
    dn = f"CN={name},CN=Users,{base}"
    sd = sd_of(f"CN=AdminSDHolder,CN=System,{base}")
    sd.type |= security.SEC_DESC_DACL_PROTECTED
    replace(dn, "nTSecurityDescriptor", ndr_pack(sd), ["sd_flags:1:4"])
    replace(dn, "adminCount", "1")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_account_is_explained_in_the_log() {
    use sspr_app::ports::{DirError, Directory};
    let ad = SambaAd::start();
    ad.tool(&["user", "create", "helpdesk", "Help-Passw0rd-1"]);
    ad.tool(&[
        "user",
        "create",
        "boss",
        "Boss-Passw0rd-1",
        "--mail-address=boss@contoso.test",
    ]);
    ad.tool(&["group", "addmembers", "Domain Admins", "boss"]);
    ad.sdprop("delegate", "helpdesk");
    ad.sdprop("protect", "boss");
    assert_eq!(ad.attr("boss", "adminCount"), vec!["1".to_string()]);
    assert_eq!(ad.attr("alice", "adminCount"), Vec::<String>::new());

    let dir = sspr_ldap::LdapDirectory::new(ad.config("helpdesk", "Help-Passw0rd-1")).unwrap();
    // The delegation works for an ordinary user: reset and unlock.
    let alice = dir.find_user("alice").await.unwrap().unwrap();
    dir.reset_password(&alice, "Quiet-Violet-Harbour-7")
        .await
        .unwrap();
    assert!(ad.binds("alice", "Quiet-Violet-Harbour-7"));
    dir.unlock(&alice).await.unwrap();

    // It does not reach the protected account: both are refused, and the cause says why and
    // what to do about it.
    let boss = dir.find_user("boss").await.unwrap().unwrap();
    let cause =
        "protected account (adminCount=1): AdminSDHolder blocks the service account's rights";
    for result in [
        dir.reset_password(&boss, "Amber-Kettle-Moonlight-8").await,
        dir.unlock(&boss).await,
    ] {
        match result {
            Err(DirError::Protected(text)) => {
                assert!(text.contains(cause), "{text}");
                assert!(text.contains("CN=AdminSDHolder,CN=System"), "{text}");
                assert!(text.contains("(!(adminCount=1))"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(ad.binds("boss", "Boss-Passw0rd-1"), "unchanged");

    // A refusal on an account without adminCount stays the plain missing-right message.
    let weak = sspr_ldap::LdapDirectory::new(ad.config("weak", "Weak-Passw0rd!")).unwrap();
    match weak
        .reset_password(&alice, "Another-Strong-Passw0rd-9")
        .await
    {
        Err(DirError::Permission(text)) => {
            assert!(!text.contains("adminCount"), "{text}");
            assert!(text.contains("Reset Password right"), "{text}");
        }
        other => panic!("{other:?}"),
    }

    // sspr doctor names the protection as the cause for this user.
    let ca = ad.dir.path().join("tls/ca.pem");
    let (url, base) = ("ldaps://127.0.0.1:636", "CN=Users,DC=sspr,DC=test");
    let extra =
        "flavor = \"ad\"\nuser_filter = \"(&(objectClass=user)(sAMAccountName={login}))\"\n";
    let dn = "CN=helpdesk,CN=Users,DC=sspr,DC=test";
    let (code, out) = doctor_with(url, base, extra, dn, "Help-Passw0rd-1", &ca, "boss");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL unlock right") && out.contains("protected account (adminCount=1)"),
        "{out}"
    );
    assert!(
        out.contains("FAIL reset right    may not reset the password of CN=boss")
            && out.contains("delegate Reset Password on CN=AdminSDHolder,CN=System too"),
        "{out}"
    );
    // The delegation reaches alice through the inherited ACE for helpdesk's own SID.
    let (code, out) = doctor_with(url, base, extra, dn, "Help-Passw0rd-1", &ca, "alice");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   reset right    may reset the password of CN=alice,CN=Users,DC=sspr,DC=test (Reset Password allowed to S-1-5-21-"),
        "{out}"
    );
    // The weak account holds no such right on alice.
    let weak_dn = "CN=weak,CN=Users,DC=sspr,DC=test";
    let (code, out) = doctor_with(url, base, extra, weak_dn, "Weak-Passw0rd!", &ca, "alice");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL reset right    may not reset the password of CN=alice")
            && out.contains("Reset user passwords and force password change at next logon"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_grained_password_policies_are_read_per_user() {
    use sspr_app::ports::{DirError, Directory};
    let ad = SambaAd::start();
    ad.tool(&["user", "create", "bob", AD_OLD]);
    ad.tool(&["group", "add", "strict"]);
    ad.tool(&["group", "addmembers", "strict", "alice"]);
    ad.tool(&[
        "domain",
        "passwordsettings",
        "pso",
        "create",
        "strict-pso",
        "10",
        "--min-pwd-length=14",
        "--history-length=5",
        "--complexity=off",
        "--min-pwd-age=2",
    ]);
    ad.tool(&[
        "domain",
        "passwordsettings",
        "pso",
        "apply",
        "strict-pso",
        "strict",
    ]);
    assert_eq!(
        ad.attr("alice", "msDS-ResultantPSO"),
        vec!["CN=strict-pso,CN=Password Settings Container,CN=System,DC=sspr,DC=test".to_string()]
    );

    let dir = sspr_ldap::LdapDirectory::new(ad.config("Administrator", AD_ADMIN_PW)).unwrap();
    // Without a user: the domain's policy, as before. Samba lists no policy-hints control, so
    // the history and minimum age, which a reset here is not held to, are not claimed.
    let domain = words(dir.password_rules().await.unwrap());
    let not_checked = "A reset here is not checked against your earlier passwords: choose one you have not used before.";
    assert_eq!(
        domain,
        vec![
            "The directory requires at least 7 characters.".to_string(),
            "The domain requires three of: uppercase letters, lowercase letters, digits, symbols; and not your account name.".to_string(),
            not_checked.to_string(),
        ]
    );
    // alice is in the group the PSO applies to: its rules replace the domain's for her.
    assert_eq!(
        words(dir.rules_for_login("alice").await.unwrap()),
        vec![
            "The directory requires at least 14 characters.".to_string(),
            not_checked.to_string(),
        ]
    );
    // bob is not: the domain's rules.
    assert_eq!(words(dir.rules_for_login("bob").await.unwrap()), domain);
    // The words match what the domain enforces: 12 characters pass for bob, not for alice.
    let twelve = "Harbour-Lamp";
    let bob = dir.find_user("bob").await.unwrap().unwrap();
    dir.reset_password(&bob, twelve).await.unwrap();
    let alice = dir.find_user("alice").await.unwrap().unwrap();
    let r = dir.reset_password(&alice, twelve).await;
    assert!(matches!(r, Err(DirError::Rejected(_))), "{r:?}");
    dir.reset_password(&alice, "quiet violet harbour lamps")
        .await
        .unwrap();
    assert!(ad.binds("alice", "quiet violet harbour lamps"));

    // A service account that may not read PSOs (AD's default for non-administrators) sees
    // alice's msDS-ResultantPSO but not its settings: it shows the domain's rules.
    let weak = sspr_ldap::LdapDirectory::new(ad.config("weak", "Weak-Passw0rd!")).unwrap();
    assert_eq!(words(weak.rules_for_login("alice").await.unwrap()), domain);

    // sspr doctor lists the PSOs and the one that applies to the sample user.
    let ca = ad.dir.path().join("tls/ca.pem");
    let (url, base) = ("ldaps://127.0.0.1:636", "CN=Users,DC=sspr,DC=test");
    let extra =
        "flavor = \"ad\"\nuser_filter = \"(&(objectClass=user)(sAMAccountName={login}))\"\n";
    let admin_dn = "CN=Administrator,CN=Users,DC=sspr,DC=test";
    let (code, out) = doctor_with(url, base, extra, admin_dn, AD_ADMIN_PW, &ca, "alice");
    assert_eq!(code, 0, "{out}");
    for line in [
        "ok   fine-grained   strict-pso (precedence 10, at least 14 characters, applies to strict)",
        "ok   user policy    alice is under CN=strict-pso,CN=Password Settings Container,CN=System,DC=sspr,DC=test: The directory requires at least 14 characters.",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    // The account that cannot read it is told so, with the right to grant.
    let weak_dn = "CN=weak,CN=Users,DC=sspr,DC=test";
    let (code, out) = doctor_with(url, base, extra, weak_dn, "Weak-Passw0rd!", &ca, "alice");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL user policy") && out.contains("Read on CN=Password Settings Container"),
        "{out}"
    );
}

/// `sspr doctor` with a config for this slapd, bound as `bind_dn` / `pw`, trusting `ca`.
fn doctor(slapd: &Slapd, bind_dn: &str, pw: &str, ca: &Path) -> (i32, String) {
    let url = format!("ldaps://127.0.0.1:{}", slapd.ldaps_port);
    let extra = "group_base_dn = \"ou=groups,dc=sspr,dc=test\"\n";
    doctor_with(
        &url,
        "ou=people,dc=sspr,dc=test",
        extra,
        bind_dn,
        pw,
        ca,
        "alice",
    )
}

/// `sspr doctor --user USER` against any LDAP server.
fn doctor_with(
    url: &str,
    base: &str,
    extra: &str,
    bind_dn: &str,
    pw: &str,
    ca: &Path,
    user: &str,
) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("ldap.password");
    sspr_server::tls::write_private(&pw_file, pw.as_bytes()).unwrap();
    let cfg = dir.path().join("sspr.toml");
    let text = format!(
        "data_dir = \"{}\"\ndemo = false\n[directory]\nkind = \"ldap\"\n[directory.ldap]\nurls = [\"{url}\"]\n\
         ca_file = \"{}\"\nbind_dn = \"{bind_dn}\"\nbind_password_file = \"{}\"\nbase_dn = \"{base}\"\ntimeout_secs = 14\n{extra}",
        dir.path().join("data").display(),
        ca.display(),
        pw_file.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["doctor", "--user", user, "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Every URL's TLS is checked, and one used without encryption is called so.
#[test]
fn doctor_says_which_urls_are_unencrypted() {
    let slapd = Slapd::start();
    let ldaps = format!("ldaps://127.0.0.1:{}", slapd.ldaps_port);
    let plain = format!("ldap://127.0.0.1:{}", slapd.ldap_port);
    // Two URLs in the list (doctor_with writes `urls = ["…"]` around the text).
    let both = format!("{ldaps}\", \"{plain}");
    let extra = "group_base_dn = \"ou=groups,dc=sspr,dc=test\"\n";
    let run = |urls: &str, extra: &str| {
        doctor_with(
            urls,
            "ou=people,dc=sspr,dc=test",
            extra,
            "cn=sspr,dc=sspr,dc=test",
            "service-secret",
            &slapd.ca(),
            "alice",
        )
    };
    // Without allow_plain, ldap:// means StartTLS: both encrypted, both checked.
    let (code, out) = run(&both, extra);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{ldaps}: TLS (ldaps) handshake and certificate check passed; encrypted"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{plain}: StartTLS handshake and certificate check passed; encrypted"
        )),
        "{out}"
    );
    // With allow_plain, the ldap:// URL is used in clear: said plainly, and a failure.
    let (code, out) = run(&both, &format!("{extra}allow_plain = true\n"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{ldaps}: TLS (ldaps) handshake")),
        "{out}"
    );
    assert!(
        out.contains("FAIL tls") && out.contains(&format!("{plain} is UNENCRYPTED")),
        "{out}"
    );
    assert!(out.contains("turn off directory.ldap.allow_plain"), "{out}");
    assert!(!out.contains("ok   tls            TLS handshake"), "{out}");
}

#[test]
fn doctor_explains_each_directory_problem_with_its_fix() {
    let slapd = Slapd::start();
    let (code, out) = doctor(
        &slapd,
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
        &slapd.ca(),
    );
    assert_eq!(code, 0, "{out}");
    for line in [
        "ok   network",
        "ok   tls",
        "ok   bind",
        "ok   user search",
        "ok   groups         alice is in staff",
        "ok   reset right",
        "ok   unlock right",
        "ok   write check    a password write can be read back",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    // A service account without write rights: the probe changes nothing and says what to grant.
    let (code, out) = doctor(
        &slapd,
        "cn=weak,dc=sspr,dc=test",
        "weak-secret",
        &slapd.ca(),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL reset right") && out.contains("write access to userPassword"),
        "{out}"
    );
    assert!(
        out.contains("FAIL unlock right") && out.contains("pwdAccountLockedTime"),
        "{out}"
    );
    // It cannot read userPassword and alice has no pwdChangedTime yet: a crash during a write
    // could not be settled, and doctor says so with the fix.
    assert!(
        out.contains("FAIL write check")
            && out.contains("read access to pwdChangedTime or userPassword"),
        "{out}"
    );
    assert!(slapd.binds("alice", OLD), "the probe changed nothing");
    // A wrong password and an untrusted certificate.
    let (code, out) = doctor(&slapd, "cn=sspr,dc=sspr,dc=test", "wrong", &slapd.ca());
    assert_eq!(code, 1);
    assert!(out.contains("FAIL bind") && out.contains("rc=49"), "{out}");
    let other_ca = tempfile::tempdir().unwrap();
    let other =
        sspr_server::tls::ensure_self_signed(other_ca.path(), &["127.0.0.1".into()]).unwrap();
    let (code, out) = doctor(
        &slapd,
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
        &other.ca,
    );
    assert_eq!(code, 1);
    assert!(out.contains("FAIL tls") && out.contains("ca_file"), "{out}");
}

/// The directory's rules as an English-speaking user reads them.
fn words(rules: Vec<sspr_domain::DirectoryRule>) -> Vec<String> {
    rules.iter().map(|r| r.message("en")).collect()
}
