//! A reset over SSH, end to end: a real OpenSSH server (its own config, host key and port,
//! `UsePAM yes`, keyboard-interactive only) in the test machine of machine.rs, whose PAM
//! service `sshd` is pam_sspr.so then pam_sss.so `use_first_pass` on a real SSSD, and a real
//! `ssh` client under a pseudo-terminal (`script`), typed at like a person.
//!
//! sshd names its PAM service after its own program name (`sshd`): the machine's private
//! /etc/pam.d holds that file, so the host's own is never touched.
//!
//! Runs only with `SSPR_TEST_SYSTEM=1`:
//! `SSPR_TEST_SYSTEM=1 cargo test -p sspr --test integration ssh:: -- --nocapture`

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Reaped, free_port};
use crate::ldap::OLD;
use crate::logon::Pam;
use crate::machine::system_tests;
use crate::sssd::{Site, site};

/// sshd's LoginGraceTime here, and the agent's `ssh_login_grace_secs`: they must agree.
const GRACE: u64 = 120;

/// `command` "" is an interactive login (`-tt`: a shell on a terminal), as a person makes it.
fn ssh_client(port: u16, user: &str, command: &str) -> Pam {
    let tty = if command.is_empty() { "-tt " } else { "" };
    let ssh = format!(
        "ssh {tty}-F /dev/null -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o PreferredAuthentications=keyboard-interactive -o PubkeyAuthentication=no \
         -o LogLevel=ERROR {user}@127.0.0.1 {command}"
    );
    // `script` gives ssh the terminal it reads passwords from; our pipe is its keyboard.
    let mut c = Command::new("script");
    c.args(["-qfec", &ssh, "/dev/null"]).env("LANG", "C.UTF-8");
    Pam::spawn(c)
}

/// sshd of its own in the site's machine: port, host key, config with `LoginGraceTime
/// grace`; its PAM service `sshd` is the machine's pam_sspr + pam_sss stack.
async fn sshd(site: &Site, grace: u64) -> (u16, Reaped, PathBuf) {
    let d = site.m.dir.path();
    site.m.sspr_sss_stack("sshd", &site.config);
    let port = free_port();
    let key = d.join("ssh_host_ed25519_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("openssh-client (ssh-keygen) must be installed");
    assert!(st.success());
    let conf = d.join("sshd_config");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nPidFile {pid}\n\
             UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n\
             PubkeyAuthentication no\nPermitRootLogin no\nLoginGraceTime {grace}\n\
             StrictModes no\nPrintMotd no\n",
            key = key.display(),
            pid = d.join("sshd.pid").display(),
        ),
    )
    .unwrap();
    let sshd_log = d.join("sshd.log");
    let sshd = site
        .m
        .command("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&conf)
        // The machine's /run: its privilege separation directory /run/sshd, its utmp.
        .env("MACHINE_RUN", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&sshd_log).unwrap())
        .spawn()
        .expect("openssh-server must be installed (see .ci/run)");
    let sshd = Reaped(sshd);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (port, sshd, sshd_log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_a_reset_over_keyboard_interactive_is_audited_as_ssh_from_the_remote_host() {
    if !system_tests("ssh::") {
        return;
    }
    let site = site(
        "continue",
        "cached_auth_timeout = 3600",
        &format!("ssh_login_grace_secs = {GRACE}"),
    )
    .await;
    let (port, _sshd, sshd_log) = sshd(&site, GRACE).await;

    // A normal SSH login: the current password, checked by SSSD; the agent contacts no one.
    let mut ssh = ssh_client(port, "alice", "'echo ok-$(id -u)'");
    ssh.expect("Password (press Enter if you forgot it):").await;
    ssh.send(OLD);
    ssh.expect("ok-20001").await;
    let (ok, out) = ssh.finish().await;
    assert!(
        ok,
        "{out}\nsshd:\n{}",
        std::fs::read_to_string(&sshd_log).unwrap()
    );
    assert!(site.s.audit("client_type=ssh").await.is_empty());
    assert_eq!(
        site.log.settled().await,
        "",
        "a normal SSH login logs nothing"
    );

    // The reset over SSH, logging in interactively: menu, time left, code from the mail, new
    // password twice, the outcome with a last "Press Enter to sign in" (sshd shows a message
    // only with a prompt, or in an interactive login's banner: `ssh host command` would
    // otherwise say nothing about the outcome), a shell.
    let new = "granite window over the bay";
    let t0 = std::time::Instant::now();
    let mut ssh = ssh_client(port, "alice", "");
    ssh.expect("Password (press Enter if you forgot it):").await;
    ssh.send("");
    ssh.expect("Choose 1 or 2:").await;
    ssh.send("1");
    ssh.expect("This SSH login closes in about 1").await;
    ssh.expect("Choose 1-2, or press Enter to cancel:").await;
    let before = site.s.mail_count("alice@contoso.test");
    ssh.send("1");
    ssh.expect("Code (press Enter to choose another way):")
        .await;
    let code = site.s.wait_mail_code("alice@contoso.test", before).await;
    ssh.send(&code);
    ssh.expect("New password:").await;
    ssh.send(new);
    ssh.expect("Retype new password:").await;
    ssh.send(new);
    ssh.expect("Your password has been reset").await;
    ssh.expect("Press Enter to sign in:").await;
    ssh.send("");
    // The client discards what is typed while it reads a prompt: wait for the shell.
    ssh.expect("$ ").await;
    ssh.send("echo ok-$(id -u)");
    ssh.expect("ok-20001").await;
    ssh.send("exit");
    let (ok, out) = ssh.finish().await;
    println!(
        "the SSH session took {:?}; what the user saw:\n{out}",
        t0.elapsed()
    );
    assert!(
        ok,
        "{out}\nsshd:\n{}",
        std::fs::read_to_string(&sshd_log).unwrap()
    );
    assert!(site.slapd.binds("alice", new));

    // The old password is refused over SSH now, the new one works.
    let mut ssh = ssh_client(port, "alice", "echo again-ok");
    ssh.expect("Password (press Enter if you forgot it):").await;
    ssh.send(OLD);
    // sshd asks again after a failure; a second prompt is the refusal.
    ssh.expect("Password (press Enter if you forgot it):").await;
    ssh.send(new);
    ssh.expect("again-ok").await;
    let (ok, out) = ssh.finish().await;
    assert!(ok, "{out}");

    // The server's audit: every event of the flow is SSH, from the client's address.
    let events = site.s.audit("user=alice&limit=500").await;
    let reset = events
        .iter()
        .find(|e| e["activity"] == "reset_password" && e["result"] == "success")
        .unwrap_or_else(|| panic!("no reset_password event: {events:#?}"));
    let flow: Vec<_> = events
        .iter()
        .filter(|e| e["flow_id"] == reset["flow_id"])
        .collect();
    assert!(flow.len() >= 3, "{flow:#?}");
    for e in &flow {
        assert_eq!(e["client_type"], "ssh", "{e:#}");
        assert_eq!(e["details"]["remote_host"], "127.0.0.1", "{e:#}");
    }
    println!(
        "audit of the flow: {:?}",
        flow.iter()
            .map(|e| format!(
                "{} {} client_type={} remote_host={}",
                e["activity"], e["result"], e["client_type"], e["details"]["remote_host"]
            ))
            .collect::<Vec<_>>()
    );
    let sshd_said = std::fs::read_to_string(&sshd_log).unwrap();
    assert!(
        sshd_said.contains("Accepted keyboard-interactive/pam for alice from 127.0.0.1"),
        "{sshd_said}"
    );
    let syslog = site
        .log
        .until(|t| t.contains("result=password_changed"))
        .await;
    assert!(syslog.contains("result=password_changed"), "{syslog}");
    assert!(!syslog.contains(new) && !syslog.contains(OLD), "{syslog}");
}

/// sshd's LoginGraceTime too short for a reset: the user is told at once, and the login goes
/// on with the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_with_too_little_login_grace_time_no_reset_starts_and_the_login_goes_on() {
    if !system_tests("ssh::") {
        return;
    }
    let site = site("continue", "", "ssh_login_grace_secs = 30").await;
    let (port, _sshd, _) = sshd(&site, 30).await;
    let mut ssh = ssh_client(port, "alice", "'echo ok-$(id -u)'");
    ssh.expect("Password (press Enter if you forgot it):").await;
    ssh.send("");
    ssh.expect("Choose 1 or 2:").await;
    ssh.send("1");
    ssh.expect("Password:").await;
    ssh.send(OLD);
    ssh.expect("ok-20001").await;
    let (ok, out) = ssh.finish().await;
    println!("what the user saw:\n{out}");
    assert!(ok, "{out}");
    assert!(
        site.s.audit("client_type=ssh").await.is_empty(),
        "no reset was started"
    );
}
