//! An expired or must-change password changed from the PAM password stack: `pam_sspr.so`'s
//! `pam_sm_chauthtok`, loaded by real libpam (pamtester through pam_wrapper), against the real
//! server, which writes it to its directory.

use std::path::{Path, PathBuf};

use crate::harness::{PASSWORD, Server};
use crate::logon::{Pam, Syslog, agent_config, artifact};

const NEW: &str = "a changed passphrase at the prompt";

/// `sspr-test`: pam_sspr in `auth` and first in `password`; the password check stands in for
/// pam_unix/pam_sss and, like them, lets an expired password authenticate (the account phase
/// would then ask for the change).
fn services(dir: &Path, server: &Server, config: &Path) -> PathBuf {
    let services = dir.join("pam.d");
    std::fs::create_dir_all(&services).unwrap();
    let check = dir.join("check-password.py");
    std::fs::write(
        &check,
        format!(
            r#"import json, os, ssl, sys, urllib.request, urllib.error
pw = sys.stdin.buffer.read().rstrip(b"\0").decode()
ctx = ssl.create_default_context(cafile="{ca}")
req = urllib.request.Request("{url}/api/v1/session", method="POST",
    data=json.dumps({{"user": os.environ["PAM_USER"], "password": pw}}).encode(),
    headers={{"content-type": "application/json"}})
try:
    urllib.request.urlopen(req, context=ctx, timeout=20)
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code == 403 and b"password_change_required" in e.read() else 1)
except Exception:
    sys.exit(1)
"#,
            ca = server.ca().display(),
            url = server.url
        ),
    )
    .unwrap();
    let module = artifact("libpam_sspr.so");
    std::fs::write(
        services.join("sspr-test"),
        format!(
            "auth [success=ok default=ignore] {module} config={config}\n\
             auth requisite pam_exec.so expose_authtok quiet /usr/bin/python3 {check}\n\
             auth required pam_permit.so\n\
             account required pam_permit.so\n\
             session required pam_permit.so\n\
             password [success=done ignore=ignore default=die] {module} config={config}\n\
             password required pam_deny.so\n",
            module = module.display(),
            config = config.display(),
            check = check.display(),
        ),
    )
    .unwrap();
    services
}

/// The agent's config for `s` and the service above, with the agent's log.
fn stack(s: &Server) -> (Syslog, PathBuf) {
    let dir = s.dir.path();
    let log = Syslog::start(dir);
    let config = agent_config(
        dir,
        "logon.toml",
        &s.url,
        &format!("ca_file = \"{}\"", s.ca().display()),
        &log,
    );
    (log, services(dir, s, &config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chauthtok_changes_the_password_through_sspr_with_its_rules_in_words() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let (log, services) = stack(&s);

    let mut pam = Pam::start_ops(&services, "sspr-test", "alice", "chauthtok");
    pam.expect("Password expired. Choose a new one.").await;
    pam.expect("Current password:").await;
    pam.send(PASSWORD);
    // A password sspr's rules refuse: said in words, and asked again.
    pam.expect("New password:").await;
    pam.send("short");
    pam.expect("Retype new password:").await;
    pam.send("short");
    pam.expect("too short").await;
    pam.expect("New password:").await;
    pam.send(NEW);
    pam.expect("Retype new password:").await;
    pam.send(NEW);
    pam.expect("Password changed.").await;
    let (ok, out) = pam.finish().await;
    assert!(ok, "pam_chauthtok succeeds:\n{out}");
    assert!(s.password_works("alice", NEW).await);
    assert!(!s.password_works("alice", PASSWORD).await);
    let ev = s
        .audit("user=alice&activity=change_password&result=success")
        .await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["client_type"], "logon_screen", "{ev:?}");
    let logged = log.settled().await;
    assert!(logged.contains("result=changed"), "{logged}");
    assert!(
        !logged.contains(NEW) && !logged.contains(PASSWORD),
        "{logged}"
    );

    // A wrong current password: sspr's sign-in answer, then the stack fails the change.
    let mut pam = Pam::start_ops(&services, "sspr-test", "alice", "chauthtok");
    pam.expect("Current password:").await;
    pam.send("not the password at all");
    pam.expect("New password:").await;
    pam.send("yet another long passphrase");
    pam.expect("Retype new password:").await;
    pam.send("yet another long passphrase");
    pam.expect("not correct").await;
    pam.expect("Current password:").await;
    let (ok, out) = pam.finish().await;
    assert!(!ok, "no change without the current password:\n{out}");
    assert!(s.password_works("alice", NEW).await, "unchanged");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_password_at_login_is_changed_and_the_login_goes_on() {
    let s = Server::start_with(|c| c.directory.password_max_age_days = 30).await;
    s.registered_user("bea").await;
    s.clock.advance(31 * 86_400);
    let (log, services) = stack(&s);
    let dir = s.dir.path();
    // What a login does with an expired password: authenticate, then the change the account
    // phase asks for, in the same PAM handle. libpam wipes the typed password when
    // authentication returns, so the change asks for it again (as pam_unix does).
    let mut pam = Pam::start_ops(
        &services,
        "sspr-test",
        "bea",
        "authenticate 'chauthtok(PAM_CHANGE_EXPIRED_AUTHTOK)' open_session",
    );
    pam.expect("Password (press Enter if you forgot it):").await;
    pam.send(PASSWORD);
    pam.expect("Password expired. Choose a new one.").await;
    pam.expect("Current password:").await;
    pam.send(PASSWORD);
    pam.expect("New password:").await;
    pam.send(NEW);
    pam.expect("Retype new password:").await;
    pam.send(NEW);
    pam.expect("Password changed.").await;
    let (ok, out) = pam.finish().await;
    assert!(ok, "the login goes on:\n{out}");
    assert!(out.contains("open_session"), "{out}");
    assert!(s.password_works("bea", NEW).await);

    // Without the server, the change is left to the next module (here pam_deny).
    let dead_dir = dir.join("dead");
    std::fs::create_dir_all(&dead_dir).unwrap();
    let dead = agent_config(
        &dead_dir,
        "logon.toml",
        &format!("https://127.0.0.1:{}", crate::harness::free_port()),
        &format!("ca_file = \"{}\"", s.ca().display()),
        &log,
    );
    let services = self::services(&dead_dir, &s, &dead);
    let mut pam = Pam::start_ops(&services, "sspr-test", "bea", "chauthtok");
    pam.expect("Current password:").await;
    pam.send(NEW);
    pam.expect("New password:").await;
    pam.send("one more long passphrase");
    pam.expect("Retype new password:").await;
    pam.send("one more long passphrase");
    pam.expect("can't be reached").await;
    let (ok, _) = pam.finish().await;
    assert!(!ok, "pam_deny after pam_sspr stepped aside");
    assert!(s.password_works("bea", NEW).await, "unchanged");
    s.stop().await;
}
