//! A workstation joined to the test's OpenLDAP through a real SSSD (LDAP provider), in a
//! private mount namespace: every process of the machine (sssd, pamtester, sshd) runs under
//! `unshare -m` with the machine's own directories bound over /etc/sssd, /var/lib/sss,
//! /var/log, /etc/pam.d and /etc/nsswitch.conf (and /run for the daemons). Nothing on the host
//! changes, nothing needs restoring; a second machine (or the host's own sssd) is not
//! disturbed. Needs root.
//!
//! These tests touch the system (namespaces, mounts, root daemons): they run only with
//! `SSPR_TEST_SYSTEM=1` and otherwise print a skip line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Reaped;
use crate::ldap::Slapd;
use crate::logon::{Pam, artifact};

/// Whether the system tests may run; prints why not otherwise.
pub(crate) fn system_tests(what: &str) -> bool {
    if std::env::var("SSPR_TEST_SYSTEM").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "skipped: {what} runs root daemons in private mount namespaces; set SSPR_TEST_SYSTEM=1 \
         to run it on a disposable Debian machine (see .ci/run)"
    );
    false
}

pub(crate) struct Machine {
    pub(crate) dir: tempfile::TempDir,
    wrap: PathBuf,
    sssd: Option<Reaped>,
    /// The nss-pam-ldapd daemon, on a machine started with [`Machine::start_nslcd`].
    nslcd: Option<Reaped>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.stop_sssd();
    }
}

impl Machine {
    /// SIGTERM, so that sssd ends its responders and back end too (SIGKILL would orphan them).
    pub(crate) fn stop_sssd(&mut self) {
        if let Some(mut s) = self.sssd.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &s.0.id().to_string()])
                .status();
            for _ in 0..100 {
                if s.0.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// A machine whose SSSD domain `sspr` reads `slapd` over LDAPS with the fixture's CA,
    /// `cache_credentials = True`; `domain_extra` goes into the domain section
    /// (`cached_auth_timeout = 3600`). alice becomes a POSIX account in the directory.
    pub(crate) fn start(slapd: &Slapd, domain_extra: &str) -> Machine {
        let mut m = Self::prepare(slapd, domain_extra);
        m.start_sssd();
        m
    }

    /// A machine with nss-pam-ldapd instead of SSSD: `nslcd` reads `slapd` over LDAPS as the
    /// weak service account, and `pam_ldap.so` asks it (binding as the user, with ppolicy's
    /// controls). Its socket directory, /run/nslcd, is the machine's own.
    ///
    /// `pam_authc_search NONE`: by default nslcd checks a user's bind with a search as that
    /// user, which ppolicy refuses while `pwdReset` is set ("Operations are restricted to
    /// bind/unbind/abandon/StartTLS/modify password"), so the login fails as if the password
    /// were wrong and no change is ever asked for. The README tells sites the same.
    pub(crate) fn start_nslcd(slapd: &Slapd) -> Machine {
        use std::os::unix::fs::PermissionsExt;
        let mut m = Self::prepare(slapd, "");
        let d = m.dir.path().to_path_buf();
        let conf = d.join("nslcd.conf");
        std::fs::write(
            &conf,
            format!(
                "uid nslcd\ngid nslcd\nuri ldaps://127.0.0.1:{port}\nbase dc=sspr,dc=test\n\
                 base passwd ou=people,dc=sspr,dc=test\ntls_cacertfile {ca}\ntls_reqcert demand\n\
                 binddn cn=weak,dc=sspr,dc=test\nbindpw weak-secret\n\
                 bind_timelimit 3\ntimelimit 5\npam_authc_search NONE\n",
                port = slapd.ldaps_port,
                ca = slapd.ca().display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
        let sock = d.join("run-nslcd");
        std::fs::create_dir_all(&sock).unwrap();
        let chown = Command::new("chown")
            .args(["nslcd:nslcd", &sock.display().to_string()])
            .status();
        assert!(
            matches!(chown, Ok(s) if s.success()),
            "nslcd must be installed: nslcd libpam-ldapd (see .ci/run)"
        );
        // The mount point on the host: an empty directory, as the package leaves it.
        std::fs::create_dir_all("/run/nslcd").unwrap();
        let log = std::fs::File::create(d.join("nslcd.log")).unwrap();
        let child = m
            .command("nslcd")
            .arg("-d")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nslcd must be installed: nslcd libpam-ldapd (see .ci/run)");
        m.nslcd = Some(Reaped(child));
        let t0 = Instant::now();
        while !sock.join("socket").exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "nslcd did not start within 30 s:\n{}",
                std::fs::read_to_string(d.join("nslcd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    }

    /// nslcd's debug log so far.
    pub(crate) fn nslcd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nslcd.log")).unwrap_or_default()
    }

    /// The stack libpam-ldapd's pam-auth-update profile writes, behind pam_sspr in `auth` and
    /// first in `password` (the README's opt-in for expired passwords).
    pub(crate) fn sspr_ldap_stack_with_change(&self, name: &str, agent_config: &Path) {
        self.pam_service(
            name,
            &format!(
                "auth [success=ok default=ignore] {module} config={config}\n\
                 auth [success=2 default=ignore] pam_unix.so nullok try_first_pass\n\
                 auth [success=1 default=ignore] pam_ldap.so use_first_pass\n\
                 auth requisite pam_deny.so\n\
                 auth required pam_permit.so\n\
                 account [success=ok new_authtok_reqd=done ignore=ignore user_unknown=ignore authinfo_unavail=ignore default=bad] pam_ldap.so\n\
                 account required pam_permit.so\n\
                 password [success=done ignore=ignore default=die] {module} config={config}\n\
                 password [success=1 default=ignore] pam_ldap.so try_first_pass\n\
                 password requisite pam_deny.so\n\
                 password required pam_permit.so\n\
                 session required pam_permit.so\n",
                module = artifact("libpam_sspr.so").display(),
                config = agent_config.display(),
            ),
        );
    }

    /// The machine's directories and the wrapper that enters them; no daemon yet.
    fn prepare(slapd: &Slapd, domain_extra: &str) -> Machine {
        let ns = Command::new("unshare")
            .args(["-m", "--propagation", "private", "true"])
            .status();
        assert!(
            matches!(ns, Ok(s) if s.success()),
            "`unshare -m` failed ({ns:?}): the machine tests need root with CAP_SYS_ADMIN \
             (a privileged container or a VM) and util-linux"
        );
        slapd.modify(
            "dn: uid=alice,ou=people,dc=sspr,dc=test\nchangetype: modify\n\
             add: objectClass\nobjectClass: posixAccount\n-\n\
             add: uidNumber\nuidNumber: 20001\n-\nadd: gidNumber\ngidNumber: 20001\n-\n\
             add: homeDirectory\nhomeDirectory: /tmp\n-\nadd: loginShell\nloginShell: /bin/sh\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "sss/db",
            "sss/mc",
            "sss/pipes/private",
            "sss/pubconf/krb5.include.d",
            "sss/gpo_cache",
            "sss/deskprofile",
            "sss/secrets",
            "etc-sssd/conf.d",
            "pam.d",
            "varlog/sssd",
            "run/sshd",
            "run-nslcd",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        for (sub, mode) in [
            ("sss/db", 0o700),
            ("sss/secrets", 0o700),
            ("sss/pipes/private", 0o700),
            ("etc-sssd", 0o700),
        ] {
            std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let conf = d.join("etc-sssd/sssd.conf");
        std::fs::write(
            &conf,
            format!(
                "[sssd]\nservices = nss, pam\ndomains = sspr\n\n[nss]\n\n[pam]\n\n\
                 [domain/sspr]\nid_provider = ldap\nauth_provider = ldap\nchpass_provider = none\n\
                 access_provider = permit\nldap_uri = ldaps://127.0.0.1:{port}\n\
                 ldap_tls_cacert = {ca}\nldap_tls_reqcert = demand\nldap_schema = rfc2307\n\
                 ldap_search_base = dc=sspr,dc=test\nldap_user_search_base = ou=people,dc=sspr,dc=test\n\
                 ldap_default_bind_dn = cn=weak,dc=sspr,dc=test\nldap_default_authtok = weak-secret\n\
                 ldap_network_timeout = 2\nldap_opt_timeout = 3\n\
                 cache_credentials = True\n{domain_extra}\n",
                port = slapd.ldaps_port,
                ca = slapd.ca().display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The host's own, with sss for users as libnss-sss puts it.
        std::fs::write(
            d.join("nsswitch.conf"),
            "passwd: files sss\ngroup: files sss\nshadow: files sss\nhosts: files dns\n",
        )
        .unwrap();
        std::fs::write(
            d.join("pam.d/other"),
            "auth required pam_deny.so\naccount required pam_deny.so\n\
             password required pam_deny.so\nsession required pam_deny.so\n",
        )
        .unwrap();
        // Logins are recorded in the machine's own utmp, wtmp, btmp and lastlog.
        for f in ["run/utmp", "varlog/wtmp", "varlog/btmp", "varlog/lastlog"] {
            std::fs::write(d.join(f), b"").unwrap();
        }
        // MACHINE_RUN: the daemons (sssd: /run/sssd.pid; sshd: /run/sshd, /run/utmp) get the
        // machine's /run; pamtester and the rest see the host's.
        let wrap = d.join("in-machine");
        // nslcd's config and socket directory are bound where nss-pam-ldapd is installed (an
        // nslcd machine), and left alone where it is not.
        std::fs::write(
            &wrap,
            format!(
                "#!/bin/sh\nexec unshare -m --propagation private sh -c '\
                 mount --bind {d}/sss /var/lib/sss && mount --bind {d}/etc-sssd /etc/sssd && \
                 mount --bind {d}/varlog /var/log && mount --bind {d}/pam.d /etc/pam.d && \
                 mount --bind {d}/nsswitch.conf /etc/nsswitch.conf && \
                 if [ -n \"$MACHINE_RUN\" ]; then mount --bind {d}/run /run; fi && \
                 if [ -f {d}/nslcd.conf ]; then mount --bind {d}/nslcd.conf /etc/nslcd.conf && \
                 mkdir -p /run/nslcd && mount --bind {d}/run-nslcd /run/nslcd; fi && \
                 exec \"$@\"' sh \"$@\"\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        Machine {
            dir,
            wrap,
            sssd: None,
            nslcd: None,
        }
    }

    fn start_sssd(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sssd.log"))
            .unwrap();
        let child = self
            .command("sssd")
            .args(["-i", "-d", "0x3ff0", "--logger=stderr"])
            .env("MACHINE_RUN", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect(
                "sssd must be installed: sssd-ldap sssd-tools libpam-sss libnss-sss (see .ci/run)",
            );
        self.sssd = Some(Reaped(child));
        // Up when alice resolves through NSS.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if self.getent_passwd("alice").is_some() {
                println!("sssd up in {:?}", t0.elapsed());
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "sssd did not resolve alice within 30 s:\n{}",
            self.sssd_log()
        );
    }

    /// `prog` run inside the machine.
    pub(crate) fn command(&self, prog: &str) -> Command {
        let mut c = Command::new(&self.wrap);
        c.arg(prog);
        c
    }

    pub(crate) fn getent_passwd(&self, user: &str) -> Option<String> {
        let o = self
            .command("getent")
            .args(["passwd", user])
            .output()
            .unwrap();
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    pub(crate) fn sssd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sssd.log")).unwrap_or_default()
    }

    /// Writes /etc/pam.d/`name` of the machine.
    pub(crate) fn pam_service(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join("pam.d").join(name), text).unwrap();
    }

    /// The auth stack pam-auth-update writes for pam_sspr (priority 1024), pam_unix and
    /// pam_sss: the agent first, then each password module with the password it hands on.
    pub(crate) fn sspr_sss_stack(&self, name: &str, agent_config: &Path) {
        self.pam_service(
            name,
            &format!(
                "auth [success=ok default=ignore] {module} config={config}\n\
                 auth [success=2 default=ignore] pam_unix.so nullok try_first_pass\n\
                 auth [success=1 default=ignore] pam_sss.so use_first_pass\n\
                 auth requisite pam_deny.so\n\
                 auth required pam_permit.so\n\
                 account [default=bad success=ok user_unknown=ignore] pam_sss.so\n\
                 account required pam_permit.so\n\
                 password required pam_deny.so\n\
                 session required pam_permit.so\n",
                module = artifact("libpam_sspr.so").display(),
                config = agent_config.display(),
            ),
        );
    }

    /// The same, with pam_sspr first in the `password` stack too (the README's opt-in for
    /// expired passwords) and pam_sss after it, as pam-auth-update writes it.
    pub(crate) fn sspr_sss_stack_with_change(&self, name: &str, agent_config: &Path) {
        self.sspr_sss_stack(name, agent_config);
        let path = self.dir.path().join("pam.d").join(name);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "password required pam_deny.so\n",
            &format!(
                "password [success=done ignore=ignore default=die] {module} config={config}\n\
                 password [success=1 default=ignore] pam_sss.so use_authtok\n\
                 password requisite pam_deny.so\n\
                 password required pam_permit.so\n",
                module = artifact("libpam_sspr.so").display(),
                config = agent_config.display(),
            ),
        );
        std::fs::write(path, text).unwrap();
    }

    /// pamtester `authenticate` and `acct_mgmt` for `user` on `service`, inside the machine.
    pub(crate) fn pam(&self, service: &str, user: &str) -> Pam {
        self.pam_ops(service, user, "authenticate acct_mgmt")
    }

    /// pamtester with these operations for `user` on `service`, inside the machine.
    pub(crate) fn pam_ops(&self, service: &str, user: &str, ops: &str) -> Pam {
        let mut c = self.command("sh");
        c.args([
            "-c",
            &format!("exec stdbuf -o0 pamtester -v \"$0\" \"$1\" {ops} 2>&1"),
            service,
            user,
        ])
        .env("LANG", "C.UTF-8");
        Pam::spawn(c)
    }

    /// What pam_sss's responder and the LDAP back end said since `from` bytes of the log.
    pub(crate) fn sssd_log_since(&self, from: usize) -> String {
        self.sssd_log().get(from..).unwrap_or_default().to_string()
    }
}

/// The first prompt of pam_sspr in front of a directory's login module.
pub(crate) const FIRST_PROMPT: &str = "Password (press Enter if you forgot it):";

/// A login with a password the directory says must be changed, as LightDM makes it: the
/// account phase alone first (`false`, and it must say a new token is required), then
/// authentication, the change at pam_sspr's prompts and the session in one handle. Returns
/// whether that login went on, and its transcript.
pub(crate) async fn login_changing_an_expired_password(
    m: &Machine,
    service: &str,
    user: &str,
    old: &str,
    new: &str,
    explain: impl Fn() -> String,
) -> (bool, String) {
    let mut pam = m.pam_ops(service, user, "authenticate acct_mgmt");
    pam.expect(FIRST_PROMPT).await;
    pam.send(old);
    let (ok, out) = pam.finish().await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("Authentication token is no longer valid; new one required"),
        "the account phase asks for a new password:\n{out}\n{}",
        explain()
    );
    let mut pam = m.pam_ops(
        service,
        user,
        "authenticate 'chauthtok(PAM_CHANGE_EXPIRED_AUTHTOK)' open_session",
    );
    pam.expect(FIRST_PROMPT).await;
    pam.send(old);
    pam.expect("Password expired. Choose a new one.").await;
    pam.expect("Current password:").await;
    pam.send(old);
    pam.expect("New password:").await;
    pam.send(new);
    pam.expect("Retype new password:").await;
    pam.send(new);
    pam.expect("Password changed.").await;
    pam.finish().await
}
