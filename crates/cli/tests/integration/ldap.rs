//! OpenLDAP writeback against a real slapd (ppolicy overlay, TLS) started in a temp dir.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Server, free_port};

const NEW: &str = "quiet violet harbour lamps";
const OLD: &str = "alice initial password";

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
overlay ppolicy
ppolicy_default "cn=default,ou=policies,dc=sspr,dc=test"
access to attrs=userPassword
  by dn.exact="cn=sspr,dc=sspr,dc=test" write
  by self write
  by anonymous auth
  by * none
access to attrs=pwdAccountLockedTime
  by dn.exact="cn=sspr,dc=sspr,dc=test" manage
  by * read
access to *
  by dn.exact="cn=sspr,dc=sspr,dc=test" read
  by dn.exact="cn=weak,dc=sspr,dc=test" read
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
             pwdAttribute: userPassword\npwdMinLength: 12\npwdCheckQuality: 1\npwdInHistory: 3\npwdLockout: TRUE\npwdMaxFailure: 3\n\n\
             dn: cn=sspr,dc=sspr,dc=test\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: sspr\nuserPassword: service-secret\n\n\
             dn: cn=weak,dc=sspr,dc=test\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: weak\nuserPassword: weak-secret\n\n\
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
        let child = Command::new("slapd")
            .arg("-d")
            .arg("0")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("slapd.log")).unwrap())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", ldaps_port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Slapd {
            dir,
            child,
            ldap_port,
            ldaps_port,
        }
    }

    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("tls/ca.pem")
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

fn ldap_config(slapd: &Slapd, url: String, bind_dn: &str, pw: &str) -> sspr_ldap::LdapConfig {
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

async fn server_on(slapd: &Slapd, url: String, bind_dn: &'static str, pw: &'static str) -> Server {
    let cfg = ldap_config(slapd, url, bind_dn, pw);
    Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
        // The directory's mail and mobile count as registered, as Azure AD allows.
        c.directory.trust_contacts = true;
    })
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

    // Unlock: a ppolicy lock is removed and the password kept.
    slapd.modify("dn: uid=mallory,ou=people,dc=sspr,dc=test\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n");
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
    s.stop().await;
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
    // The weak account may read but not reset: the user is told nothing changed.
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"], "directory_unavailable");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("Nothing was changed"),
        "{v}"
    );
    assert!(slapd.binds("alice", OLD), "the password is unchanged");
    let ev = s.audit("user=alice&activity=directory_error").await;
    assert_eq!(
        ev.last().unwrap()["reason"],
        "directory_permission",
        "{ev:?}"
    );
    s.stop().await;
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
}

const AD_ADMIN_PW: &str = "Adm1n-Passw0rd!";
const AD_OLD: &str = "Initial-Passw0rd!";

/// A Samba AD domain controller provisioned in a temp dir, LDAPS on 127.0.0.1:636 with our
/// own CA (Samba's generated certificate has no SAN, which rustls refuses).
struct SambaAd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for SambaAd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // samba forks workers; make sure none keeps the standard ports.
        let _ = Command::new("pkill")
            .args(["-f", &self.dir.path().display().to_string()])
            .status();
    }
}

impl SambaAd {
    fn start() -> SambaAd {
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
                "[global]\n\told password allowed period = 0\n\ttls enabled = yes\n\ttls keyfile = {}\n\ttls certfile = {}\n\ttls cafile = {}\n",
                tls.key.display(),
                tls.cert.display(),
                tls.ca.display()
            ),
            1,
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("samba")
            .arg("-s")
            .arg(&conf)
            .args(["-i", "-d1"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("samba.log")).unwrap())
            .spawn()
            .unwrap();
        for _ in 0..120 {
            if std::net::TcpStream::connect(("127.0.0.1", 636)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let ad = SambaAd { dir, child };
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

    fn tool(&self, args: &[&str]) {
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

    fn binds(&self, user: &str, pw: &str) -> bool {
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

    fn config(&self, bind_user: &str, pw: &str) -> sspr_ldap::LdapConfig {
        sspr_ldap::LdapConfig {
            urls: vec!["ldaps://127.0.0.1:636".into()],
            ca_file: Some(self.dir.path().join("tls/ca.pem")),
            bind_dn: format!("CN={bind_user},CN=Users,DC=sspr,DC=test"),
            bind_password: pw.into(),
            base_dn: "CN=Users,DC=sspr,DC=test".into(),
            ..sspr_ldap::LdapConfig::active_directory()
        }
    }
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
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(ad.binds("alice", strong), "unchanged");
    let ev = s.audit("user=alice&activity=directory_error").await;
    assert_eq!(
        ev.last().unwrap()["reason"],
        "directory_permission",
        "{ev:?}"
    );
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
    let weak_dn = "CN=weak,CN=Users,DC=sspr,DC=test";
    let (code, out) = doctor_with(url, base, flavor, weak_dn, "Weak-Passw0rd!", &ca, "alice");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL unlock right") && out.contains("lockoutTime"),
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
         ca_file = \"{}\"\nbind_dn = \"{bind_dn}\"\nbind_password_file = \"{}\"\nbase_dn = \"{base}\"\n{extra}",
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
