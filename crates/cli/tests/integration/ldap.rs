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
    let _ = Path::new("/");
}
