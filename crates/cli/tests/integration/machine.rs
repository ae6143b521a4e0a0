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
        std::fs::write(
            &wrap,
            format!(
                "#!/bin/sh\nexec unshare -m --propagation private sh -c '\
                 mount --bind {d}/sss /var/lib/sss && mount --bind {d}/etc-sssd /etc/sssd && \
                 mount --bind {d}/varlog /var/log && mount --bind {d}/pam.d /etc/pam.d && \
                 mount --bind {d}/nsswitch.conf /etc/nsswitch.conf && \
                 if [ -n \"$MACHINE_RUN\" ]; then mount --bind {d}/run /run; fi && \
                 exec \"$@\"' sh \"$@\"\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrap, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut m = Machine {
            dir,
            wrap,
            sssd: None,
        };
        m.start_sssd();
        m
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
