//! The logon agent against the real server: `pam_sspr.so` loaded by real libpam (pamtester
//! through pam_wrapper, with a service file in a temp dir), and the `sspr-logon` binary for
//! the transport checks: untrusted certificates, pins, TLS 1.1, a real HTTP proxy (tinyproxy),
//! a server that is down or never answers.
//!
//! The module and the binary must be built first (`scripts/test` does it):
//! `cargo build -p pam-sspr -p sspr-logon`.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{PASSWORD, Reaped, Server, free_port};

const NEW: &str = "a brand new logon-screen passphrase";

/// Where `cargo build` put the agent: next to this test binary's `deps/` directory.
pub(crate) fn artifact(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p pam-sspr -p sspr-logon` first (scripts/test does)",
        path.display()
    );
    path
}

/// A syslog socket in the test's directory: everything the agent logs lands here.
pub(crate) struct Syslog {
    pub(crate) path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Syslog {
    pub(crate) fn start(dir: &Path) -> Syslog {
        let path = dir.join("log.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Syslog { path, lines }
    }

    pub(crate) fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The log once `done` holds for it (datagrams may arrive after the sender has exited),
    /// or as it is after 5 s.
    /// Everything logged before now: a marker sent to the same socket arrives after it.
    pub(crate) async fn settled(&self) -> String {
        let marker = format!("marker {}", std::process::id());
        UnixDatagram::unbound()
            .unwrap()
            .send_to(marker.as_bytes(), &self.path)
            .unwrap();
        let all = self.until(|t| t.contains(&marker)).await;
        self.lines.lock().unwrap().retain(|l| *l != marker);
        all.replace(&marker, "").trim().to_string()
    }

    pub(crate) async fn until(&self, done: impl Fn(&str) -> bool) -> String {
        for _ in 0..250 {
            let t = self.text();
            if done(&t) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.text()
    }
}

/// An agent config for `server_url`.
pub(crate) fn agent_config(
    dir: &Path,
    name: &str,
    server_url: &str,
    extra: &str,
    log: &Syslog,
) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "server_url = \"{server_url}\"\nservices = [\"sspr-test\", \"sshd\"]\nenable_logging = 1\nsyslog_socket = \"{}\"\ntimeout_secs = 3\nconnect_timeout_secs = 2\n{extra}\n",
            log.path.display()
        ),
    )
    .unwrap();
    path
}

/// A PAM service `sspr-test`: pam_sspr first, then a password check that asks the sspr
/// server's own directory (through the registration sign-in) — the stand-in for pam_unix or
/// pam_sss. pam_exec hands it PAM_AUTHTOK, or asks "Password:" itself when none is set.
fn pam_service(dir: &Path, server: &Server, agent_config: &Path) -> PathBuf {
    let services = dir.join("pam.d");
    std::fs::create_dir_all(&services).unwrap();
    let check = dir.join("check-password.py");
    std::fs::write(
        &check,
        format!(
            r#"import json, os, ssl, sys, urllib.request
pw = sys.stdin.buffer.read().rstrip(b"\0").decode()
ctx = ssl.create_default_context(cafile="{ca}")
req = urllib.request.Request("{url}/api/v1/session", method="POST",
    data=json.dumps({{"user": os.environ["PAM_USER"], "password": pw}}).encode(),
    headers={{"content-type": "application/json"}})
try:
    urllib.request.urlopen(req, context=ctx, timeout=20)
except Exception:
    sys.exit(1)
"#,
            ca = server.ca().display(),
            url = server.url
        ),
    )
    .unwrap();
    std::fs::write(
        services.join("sspr-test"),
        format!(
            "auth [success=ok default=ignore] {module} config={config}\n\
             auth requisite pam_exec.so expose_authtok quiet /usr/bin/python3 {check}\n\
             auth required pam_permit.so\n\
             account required pam_permit.so\n",
            module = artifact("libpam_sspr.so").display(),
            config = agent_config.display(),
            check = check.display(),
        ),
    )
    .unwrap();
    services
}

/// pamtester driven like a person at the prompt: wait for a text, type a line.
/// Whether one of pam_wrapper's directories (`/tmp/pam.X`) is that of process `pid`.
fn wrapper_dir_holds(pid: &str) -> bool {
    let Ok(dirs) = std::fs::read_dir("/tmp") else {
        return false;
    };
    dirs.flatten().any(|d| {
        let name = d.file_name();
        let name = name.to_string_lossy();
        name.len() == 5
            && name.starts_with("pam.")
            && std::fs::read_to_string(d.path().join("pid")).is_ok_and(|p| p.trim() == pid)
    })
}

pub(crate) struct Pam {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
    seen: usize,
}

impl Pam {
    fn start(services: &Path, user: &str) -> Pam {
        Pam::start_service(services, "sspr-test", user)
    }

    fn start_service(services: &Path, service: &str, user: &str) -> Pam {
        Pam::start_with(services, service, user, "", "C.UTF-8")
    }

    /// `item`: a PAM item for pamtester's `-I` (`rhost=203.0.113.9`), or "".
    fn start_with(services: &Path, service: &str, user: &str, item: &str, lang: &str) -> Pam {
        // stdbuf: pamtester prints PAM_TEXT_INFO with stdio, which a pipe would hold back.
        // One pipe for stdout and stderr keeps prompts (stderr) and texts (stdout) in order.
        let script = if item.is_empty() {
            "exec stdbuf -o0 pamtester -v \"$0\" \"$1\" authenticate 2>&1"
        } else {
            "exec stdbuf -o0 pamtester -v -I \"$2\" \"$0\" \"$1\" authenticate 2>&1"
        };
        let mut command = Command::new("sh");
        command
            .args(["-c", script])
            .arg(service)
            .arg(user)
            .arg(item)
            .env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", services)
            .env("LANG", lang);
        Pam::spawn_wrapped(command)
    }

    /// pamtester running `ops` (`chauthtok`, `authenticate chauthtok(PAM_CHANGE_EXPIRED_AUTHTOK)`)
    /// on `service`.
    pub(crate) fn start_ops(services: &Path, service: &str, user: &str, ops: &str) -> Pam {
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                &format!("exec stdbuf -o0 pamtester -v \"$0\" \"$1\" {ops} 2>&1"),
            ])
            .arg(service)
            .arg(user)
            .env("LD_PRELOAD", "libpam_wrapper.so")
            .env("PAM_WRAPPER", "1")
            .env("PAM_WRAPPER_SERVICE_DIR", services)
            .env("LANG", "C.UTF-8");
        Pam::spawn_wrapped(command)
    }

    /// Spawns a program under pam_wrapper, one at a time. pam_wrapper picks its directory
    /// (`/tmp/pam.X`, one character) by seeing that the name is free and then creating it, so
    /// two programs starting together can pick the same one, and one of them then runs with
    /// the other's PAM configuration (a flaky "wrong module" failure). Each start holds a file
    /// lock (parallel test processes wait too) until its directory holds its pid, or it has
    /// ended, or 10 s have passed.
    fn spawn_wrapped(command: Command) -> Pam {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/sspr-tests-pam-wrapper.lock")
            .unwrap();
        lock.lock().unwrap();
        let mut pam = Pam::spawn(command);
        let pid = pam.child.id().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && !wrapper_dir_holds(&pid)
            && matches!(pam.child.try_wait(), Ok(None))
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(lock);
        pam
    }

    /// Drives any program this way (pamtester in a test machine, an ssh client under a pty):
    /// stdout and stderr are read together.
    pub(crate) fn spawn(mut command: Command) -> Pam {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("pamtester and libpam-wrapper must be installed (see .ci/run)");
        let out = Arc::new(Mutex::new(String::new()));
        let mut stream = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        Pam {
            child,
            stdin,
            out,
            seen: 0,
        }
    }

    /// Waits until `text` appears after what was already seen.
    pub(crate) async fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let out = self.out.lock().unwrap();
                if let Some(i) = out[self.seen..].find(text) {
                    self.seen += i + text.len();
                    return;
                }
                if Instant::now() > deadline {
                    panic!("waited for {text:?}; the transcript so far:\n{out}");
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn send_bytes(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for pamtester to end; returns whether authentication succeeded, and everything
    /// the user saw.
    pub(crate) async fn finish(mut self) -> (bool, String) {
        drop(self.stdin.take());
        for _ in 0..1500 {
            if let Some(status) = self.child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return (status.success(), self.out.lock().unwrap().clone());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        panic!("pamtester did not end:\n{}", self.out.lock().unwrap());
    }
}

/// A normal login through the stack: the password at the module's prompt.
async fn login(services: &Path, user: &str, password: &str) -> (bool, String) {
    let mut pam = Pam::start(services, user);
    pam.expect("Password (press Enter if you forgot it):").await;
    pam.send(password);
    pam.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgot_password_at_the_pam_prompt_resets_and_logs_in() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let dir = s.dir.path();
    let log = Syslog::start(dir);
    let config = agent_config(
        dir,
        "logon.toml",
        &s.url,
        &format!("ca_file = \"{}\"", s.ca().display()),
        &log,
    );
    let services = pam_service(dir, &s, &config);

    // The stack works, and a normal login needs no server at all (nothing is logged).
    let (ok, out) = login(&services, "alice", PASSWORD).await;
    assert!(ok, "the current password logs in:\n{out}");
    let (ok, _) = login(&services, "alice", "not the password").await;
    assert!(!ok, "a wrong password does not");
    assert_eq!(log.settled().await, "", "a normal login logs nothing");
    let contacts = s.audit("client_type=logon_screen").await;
    assert!(contacts.is_empty(), "and contacts no one: {contacts:#?}");

    // "Forgot password?" through the PAM conversation alone.
    let mut pam = Pam::start(&services, "alice");
    pam.expect("Password (press Enter if you forgot it):").await;
    pam.send("");
    pam.expect("1  Reset my password").await;
    pam.expect("Choose 1 or 2:").await;
    pam.send("1");
    pam.expect("Email a code to a").await;
    pam.expect("Choose 1-2, or press Enter to cancel:").await;
    let before = s.mail_count("alice@contoso.test");
    pam.send("1");
    pam.expect("Sent to a").await;
    pam.expect("Code (press Enter to choose another way):")
        .await;
    let code = s.wait_mail_code("alice@contoso.test", before).await;
    pam.send(&crate::harness::wrong(&code));
    pam.expect("That code is not right").await;
    pam.expect("Code (press Enter to choose another way):")
        .await;
    pam.send(&code);
    pam.expect("Your new password must follow these rules:")
        .await;
    pam.expect("New password:").await;
    pam.send("short");
    pam.expect("Retype new password:").await;
    pam.send("short");
    pam.expect("The password is too short").await;
    pam.expect("New password:").await;
    pam.send(NEW);
    pam.expect("Retype new password:").await;
    pam.send(NEW);
    pam.expect("Signing you in with your new password").await;
    let (ok, out) = pam.finish().await;
    assert!(
        ok,
        "the stack authenticates with the new password, no retyping:\n{out}"
    );
    assert!(!out.contains("\nPassword:"), "no second prompt:\n{out}");

    // The directory holds the new password; the old one is gone.
    assert!(s.password_works("alice", NEW).await);
    let (ok, _) = login(&services, "alice", PASSWORD).await;
    assert!(!ok, "the old password no longer logs in");
    let (ok, out) = login(&services, "alice", NEW).await;
    assert!(ok, "the new password logs in:\n{out}");

    // The server's audit shows the logon screen and the machine's address.
    let events = s.audit("user=alice&limit=500").await;
    let reset = events
        .iter()
        .find(|e| e["activity"] == "reset_password" && e["result"] == "success")
        .unwrap_or_else(|| panic!("no reset_password event: {events:#?}"));
    assert_eq!(reset["client_type"], "logon_screen");
    assert!(
        !s.audit("client_type=logon_screen").await.is_empty(),
        "the filter used above for \"contacts no one\" does find contacts"
    );
    assert_eq!(reset["client_ip"], "127.0.0.1");
    assert!(
        events
            .iter()
            .filter(|e| e["flow_id"] == reset["flow_id"])
            .all(|e| e["client_type"] == "logon_screen")
    );

    // The machine's log has the agent's events, and no secret.
    let syslog = log.until(|t| t.contains("result=password_changed")).await;
    for want in [
        "pam_sspr[",
        "event=reset_offered user=\"alice\"",
        &format!(
            "event=flow_started user=\"alice\" kind=reset server={}",
            s.url
        ),
        "event=method_chosen user=\"alice\" method=\"email\"",
        "event=finished user=\"alice\" result=password_changed",
        "POST /api/v1/flow/verify -> 400",
        "<86>",
    ] {
        assert!(
            syslog.contains(want),
            "{want:?} missing from the log:\n{syslog}"
        );
    }
    for secret in [NEW, PASSWORD, code.as_str(), "short"] {
        assert!(
            !syslog.contains(secret),
            "{secret:?} leaked into the log:\n{syslog}"
        );
    }
    s.stop().await;
}

/// An SSH login (the PAM service `sshd`, PAM_RHOST set as sshd sets it) from a console in a
/// Latin-1 locale: the time sshd leaves is said, a new password typed in Latin-1 is refused
/// before anything changes, and the server audits the reset as SSH from that remote host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_reset_from_a_latin1_console_is_audited_as_ssh_and_refuses_unreadable_input() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let dir = s.dir.path();
    let log = Syslog::start(dir);
    let config = agent_config(
        dir,
        "logon.toml",
        &s.url,
        &format!("ca_file = \"{}\"", s.ca().display()),
        &log,
    );
    let services = pam_service(dir, &s, &config);
    std::fs::copy(services.join("sspr-test"), services.join("sshd")).unwrap();

    let mut pam = Pam::start_with(
        &services,
        "sshd",
        "alice",
        "rhost=203.0.113.9",
        "de_DE.ISO-8859-1",
    );
    pam.expect("Password (press Enter if you forgot it):").await;
    pam.send("");
    pam.expect("Choose 1 or 2:").await;
    pam.send("1");
    pam.expect("This SSH login closes in about 1").await;
    pam.expect("Choose 1-2, or press Enter to cancel:").await;
    let before = s.mail_count("alice@contoso.test");
    pam.send("1");
    pam.expect("Code (press Enter to choose another way):")
        .await;
    let code = s.wait_mail_code("alice@contoso.test", before).await;
    pam.send(&code);
    pam.expect("New password:").await;
    // "Grüße aus München 2026" as a Latin-1 console sends it: ü and ß are one byte each.
    let latin1: &[u8] = b"Gr\xfc\xdfe aus M\xfcnchen 2026";
    pam.send_bytes(latin1);
    pam.expect("did not arrive as UTF-8").await;
    assert!(
        s.password_works("alice", PASSWORD).await,
        "nothing changed: the old password still works"
    );
    pam.expect("New password:").await;
    pam.send(NEW);
    pam.expect("Retype new password:").await;
    pam.send(NEW);
    // Over SSH the outcome comes with a last prompt (sshd shows messages only with prompts).
    pam.expect("Your password has been reset").await;
    pam.expect("Press Enter to sign in:").await;
    pam.send("");
    let (ok, out) = pam.finish().await;
    assert!(ok, "the stack authenticates with the new password:\n{out}");
    assert!(s.password_works("alice", NEW).await);

    let events = s.audit("user=alice&limit=500").await;
    let reset = events
        .iter()
        .find(|e| e["activity"] == "reset_password" && e["result"] == "success")
        .unwrap_or_else(|| panic!("no reset_password event: {events:#?}"));
    assert_eq!(reset["client_type"], "ssh", "{reset:#}");
    let started = events
        .iter()
        .find(|e| e["activity"] == "reset_started")
        .unwrap_or_else(|| panic!("no reset_started event: {events:#?}"));
    assert_eq!(
        started["details"]["remote_host"], "203.0.113.9",
        "{started:#}"
    );
    assert!(!s.audit("client_type=ssh").await.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_silent_server_is_reported_in_bounded_time_and_login_still_works() {
    let s = Server::start().await;
    s.registered_user("bob").await;
    let dir = s.dir.path();
    let log = Syslog::start(dir);

    // Nothing listens on one port; the other accepts and never says a word.
    let dead = free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept() {
            conns.push(c);
        }
    });

    for (name, port) in [("dead.toml", dead), ("silent.toml", silent_port)] {
        let config = agent_config(
            dir,
            name,
            &format!("https://localhost:{port}"),
            &format!("ca_file = \"{}\"", s.ca().display()),
            &log,
        );
        let services = pam_service(dir, &s, &config);
        let mut pam = Pam::start(&services, "bob");
        pam.expect("Password (press Enter if you forgot it):").await;
        pam.send("");
        pam.expect("Choose 1 or 2:").await;
        let asked = Instant::now();
        pam.send("1");
        pam.expect("can't be reached right now").await;
        let waited = asked.elapsed();
        // timeout_secs = 3 in this config; the default is 10.
        assert!(
            waited < Duration::from_secs(8),
            "{name}: the user waited {waited:?}"
        );
        // The normal login carries on: the password is asked for once more.
        pam.expect("Password:").await;
        pam.send(PASSWORD);
        let (ok, out) = pam.finish().await;
        assert!(
            ok,
            "{name}: login with the current password still works:\n{out}"
        );
    }
    let syslog = log
        .until(|t| t.matches("event=server_error user=\"bob\"").count() >= 2)
        .await;
    assert_eq!(
        syslog.matches("event=server_error user=\"bob\"").count(),
        2,
        "{syslog}"
    );
    assert!(syslog.contains("unreachable"), "{syslog}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_user_at_the_pam_prompt_is_told_where_to_register() {
    let s = Server::start().await;
    s.user("carol", &["staff"]).await;
    let dir = s.dir.path();
    let log = Syslog::start(dir);
    let config = agent_config(
        dir,
        "logon.toml",
        &s.url,
        &format!("ca_file = \"{}\"\nlocale = \"zh\"", s.ca().display()),
        &log,
    );
    let services = pam_service(dir, &s, &config);
    let mut pam = Pam::start(&services, "carol");
    pam.expect("密码（忘记密码请直接按回车）：").await;
    pam.send("");
    pam.expect("请选择 1 或 2：").await;
    pam.send("1");
    pam.expect("需要更多安全信息").await;
    pam.expect(&format!("请在此注册安全信息：{}", s.url)).await;
    // The module asks for the password itself, in the user's language, and hands it on.
    pam.expect("密码：").await;
    pam.send(PASSWORD);
    let (ok, out) = pam.finish().await;
    assert!(ok, "{out}");
    let syslog = log
        .until(|t| t.contains("result=registration_required"))
        .await;
    assert!(syslog.contains("result=registration_required"), "{syslog}");
    s.stop().await;
}

/// A saved recovery code works at the login screen, where there is no phone and no mail: the
/// code is typed as printed, and spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_code_resets_at_the_pam_prompt() {
    let s = Server::start().await;
    s.user("rex", &["staff"]).await;
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            serde_json::json!({ "user": "rex", "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    let session = v["session_token"].as_str().unwrap().to_string();
    let (st, v) = s
        .post(
            "/api/v1/me/recovery-codes",
            Some(&session),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    let code = v["codes"][0].as_str().unwrap().to_string();

    let dir = s.dir.path();
    let log = Syslog::start(dir);
    let config = agent_config(
        dir,
        "logon.toml",
        &s.url,
        &format!("ca_file = \"{}\"", s.ca().display()),
        &log,
    );
    let services = pam_service(dir, &s, &config);
    let mut pam = Pam::start(&services, "rex");
    pam.expect("Password (press Enter if you forgot it):").await;
    pam.send("");
    pam.expect("Choose 1 or 2:").await;
    pam.send("1");
    pam.expect("1  Enter one of my recovery codes").await;
    pam.expect("Type 1, or press Enter to cancel:").await;
    pam.send("1");
    pam.expect("Enter one of the recovery codes you saved")
        .await;
    pam.expect("Code (press Enter to choose another way):")
        .await;
    pam.send(&code.to_lowercase());
    pam.expect("New password:").await;
    pam.send(NEW);
    pam.expect("Retype new password:").await;
    pam.send(NEW);
    pam.expect("Signing you in with your new password").await;
    let (ok, out) = pam.finish().await;
    assert!(ok, "{out}");
    assert!(s.password_works("rex", NEW).await);
    assert_eq!(s.rt.store.recovery_codes("rex").await.unwrap().len(), 9);
    let syslog = log.until(|t| t.contains("result=password_changed")).await;
    assert!(syslog.contains("method=\"recovery_code\""), "{syslog}");
    assert!(
        !syslog.contains(&code),
        "the code leaked into the log:\n{syslog}"
    );
    s.stop().await;
}

/// Runs `sspr-logon` for a user the server does not know: exit 3 means the server was reached,
/// trusted, and answered.
fn logon(config: &Path, envs: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(artifact("sspr-logon"));
    cmd.args(["--config"])
        .arg(config)
        .args(["--user", "nobody-here"])
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn openssl_pin(cert: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            cert.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    format!("sha256//{}", String::from_utf8_lossy(&out.stdout).trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_trusts_only_what_it_is_told_to() {
    let s = Server::start().await;
    let dir = s.dir.path();
    let log = Syslog::start(dir);
    let cfg = |name: &str, extra: String| agent_config(dir, name, &s.url, &extra, &log);

    // The configured CA: trusted, and the server's audit shows the logon screen.
    let (code, out) = tokio::task::spawn_blocking({
        let c = cfg("ca.toml", format!("ca_file = \"{}\"", s.ca().display()));
        move || logon(&c, &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 3, "{out}");
    let events = s.audit("activity=reset_started").await;
    assert!(
        events
            .iter()
            .any(|e| e["client_type"] == "logon_screen" && e["client_ip"] == "127.0.0.1"),
        "{events:#?}"
    );

    // System roots only: the development CA is not among them.
    let (code, out) = tokio::task::spawn_blocking({
        let c = cfg("system.toml", String::new());
        move || logon(&c, &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("could not be verified as genuine"), "{out}");
    let syslog = log
        .until(|t| t.contains("not signed by a trusted CA"))
        .await;
    assert!(syslog.contains("not signed by a trusted CA"), "{syslog}");

    // A pin: `sspr-logon pin` and openssl agree, the right pin is trusted, a wrong one is not.
    let cert = s.rt.config.data_dir.join("tls/server.pem");
    let pin = openssl_pin(&cert);
    let url = s.url.clone();
    let printed = tokio::task::spawn_blocking(move || {
        Command::new(artifact("sspr-logon"))
            .args(["pin", "--server", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), pin);
    let (code, out) = tokio::task::spawn_blocking({
        let c = cfg("pin.toml", format!("pin_sha256 = [\"{pin}\"]"));
        move || logon(&c, &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 3, "the pinned key is trusted without any CA: {out}");
    let (code, out) = tokio::task::spawn_blocking({
        let c = cfg(
            "badpin.toml",
            "pin_sha256 = [\"sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"]".into(),
        );
        move || logon(&c, &[])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}");
    let syslog = log.until(|t| t.contains("matches no pin_sha256")).await;
    assert!(syslog.contains("matches no pin_sha256"), "{syslog}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_a_server_limited_to_tls_1_1() {
    let s = Server::start().await;
    let dir = s.dir.path().to_path_buf();
    let log = Syslog::start(&dir);
    let tls = s.rt.config.data_dir.join("tls");
    let port = free_port();
    let old = Command::new("openssl")
        .args(["s_server", "-accept", &port.to_string(), "-www", "-tls1_1"])
        .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
        .arg("-cert")
        .arg(tls.join("server.pem"))
        .arg("-key")
        .arg(tls.join("server.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let old = Reaped(old);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server really speaks TLS 1.1 (an old client gets through)...
    let probe = Command::new("sh")
        .arg("-c")
        .arg(format!("openssl s_client -connect 127.0.0.1:{port} -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null 2>&1"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&probe.stdout).contains("Protocol  : TLSv1.1"),
        "{}",
        String::from_utf8_lossy(&probe.stdout)
    );
    // ...and the agent will not talk to it.
    let config = agent_config(
        &dir,
        "tls11.toml",
        &format!("https://localhost:{port}"),
        &format!("ca_file = \"{}\"", s.ca().display()),
        &log,
    );
    let (code, out) = tokio::task::spawn_blocking(move || logon(&config, &[]))
        .await
        .unwrap();
    drop(old);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("could not be verified as genuine"), "{out}");
    let syslog = log
        .until(|t| t.contains("does not speak TLS 1.2 or 1.3"))
        .await;
    assert!(syslog.contains("does not speak TLS 1.2 or 1.3"), "{syslog}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_goes_through_a_configured_or_environment_proxy() {
    let s = Server::start().await;
    let dir = s.dir.path().to_path_buf();
    let log = Syslog::start(&dir);
    let server_port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let proxy_port = free_port();
    let proxy_log = dir.join("tinyproxy.log");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {proxy_port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\nConnectPort {server_port}\n",
            proxy_log.display()
        ),
    )
    .unwrap();
    let proxy = Command::new("tinyproxy")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tinyproxy must be installed (see .ci/run)");
    let _proxy = Reaped(proxy);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", proxy_port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ca = format!("ca_file = \"{}\"", s.ca().display());
    let proxy_url = format!("http://127.0.0.1:{proxy_port}");

    // Configured.
    let c = agent_config(
        &dir,
        "proxy.toml",
        &s.url,
        &format!("{ca}\nproxy = \"{proxy_url}\""),
        &log,
    );
    let (code, out) = tokio::task::spawn_blocking(move || logon(&c, &[]))
        .await
        .unwrap();
    assert_eq!(code, 3, "{out}");
    let connects = || {
        std::fs::read_to_string(&proxy_log)
            .unwrap_or_default()
            .matches(&format!("CONNECT localhost:{server_port}"))
            .count()
    };
    assert_eq!(connects(), 1, "the request went through the proxy");

    // From the environment, when the config says nothing.
    let c = agent_config(&dir, "env.toml", &s.url, &ca, &log);
    let env_proxy = proxy_url.clone();
    let (code, out) =
        tokio::task::spawn_blocking(move || logon(&c, &[("HTTPS_PROXY", env_proxy.as_str())]))
            .await
            .unwrap();
    assert_eq!(code, 3, "{out}");
    assert_eq!(connects(), 2);

    // NO_PROXY naming the server goes direct, as curl would.
    let c = agent_config(&dir, "noproxy.toml", &s.url, &ca, &log);
    let env_proxy = proxy_url.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        logon(
            &c,
            &[
                ("HTTPS_PROXY", env_proxy.as_str()),
                ("NO_PROXY", "127.0.0.1,localhost"),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 3, "{out}");
    assert_eq!(connects(), 2, "not through the proxy");

    // `proxy = ""` ignores the environment; a configured proxy that is down is reported.
    let c = agent_config(
        &dir,
        "direct.toml",
        &s.url,
        &format!("{ca}\nproxy = \"\""),
        &log,
    );
    let (code, out) =
        tokio::task::spawn_blocking(move || logon(&c, &[("HTTPS_PROXY", "http://127.0.0.1:9")]))
            .await
            .unwrap();
    assert_eq!(code, 3, "{out}");
    assert_eq!(connects(), 2);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let c = agent_config(
        &dir,
        "dead.toml",
        &s.url,
        &format!("{ca}\nproxy = \"{dead}\""),
        &log,
    );
    let (code, out) = tokio::task::spawn_blocking(move || logon(&c, &[]))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("can't be reached"), "{out}");
    s.stop().await;
}

/// A PAM service whose password module insists on the password from an earlier module
/// (`use_first_pass`, as pam_sss or pam_ldap get when pam-auth-update places them second):
/// pam_userdb against a Berkeley DB file made with db_load.
fn use_first_pass_service(dir: &Path, agent_config: &Path, user: &str, password: &str) -> PathBuf {
    let services = dir.join("pam-ufp.d");
    std::fs::create_dir_all(&services).unwrap();
    let input = dir.join("users.txt");
    std::fs::write(&input, format!("{user}\n{password}\n")).unwrap();
    let db = dir.join("users");
    let status = Command::new("db5.3_load")
        .args(["-T", "-t", "hash", "-f"])
        .arg(&input)
        .arg(db.with_extension("db"))
        .status()
        .expect("db5.3_load must be installed (db5.3-util, see .ci/run)");
    assert!(status.success());
    std::fs::write(
        services.join("sspr-test"),
        format!(
            "auth [success=ok default=ignore] {module} config={config}\n\
             auth required pam_userdb.so db={db} crypt=none use_first_pass\n\
             account required pam_permit.so\n",
            module = artifact("libpam_sspr.so").display(),
            config = agent_config.display(),
            db = db.display(),
        ),
    )
    .unwrap();
    services
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_first_pass_module_after_the_agent_always_gets_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let log = Syslog::start(dir.path());
    let pw = "the password dave knows";

    // Installed but not configured: a plain prompt, and the password goes on.
    let unconfigured = dir.path().join("unconfigured.toml");
    std::fs::write(
        &unconfigured,
        "# server_url = \"https://sspr.example.com\"\n",
    )
    .unwrap();
    let services = use_first_pass_service(dir.path(), &unconfigured, "dave", pw);
    let mut pam = Pam::start(&services, "dave");
    pam.expect("Password:").await;
    pam.send(pw);
    let (ok, out) = pam.finish().await;
    assert!(ok, "{out}");
    assert!(!out.contains("forgot"), "no reset offered: {out}");

    // Configured, the user makes the gesture and goes back: asked again, then logged in.
    let config = agent_config(
        dir.path(),
        "logon.toml",
        &format!("https://localhost:{}", free_port()),
        "",
        &log,
    );
    let services = use_first_pass_service(dir.path(), &config, "dave", pw);
    let mut pam = Pam::start(&services, "dave");
    pam.expect("Password (press Enter if you forgot it):").await;
    pam.send("");
    pam.expect("Choose 1 or 2:").await;
    pam.send("");
    pam.expect("Password:").await;
    pam.send(pw);
    let (ok, out) = pam.finish().await;
    assert!(ok, "{out}");

    // A service that is not a login screen (sudo here) gets exactly "Password: ", which sudo
    // replaces with its own prompt; no reset is offered there.
    std::fs::copy(services.join("sspr-test"), services.join("sudo")).unwrap();
    let mut pam = Pam::start_service(&services, "sudo", "dave");
    pam.expect("Password: ").await;
    pam.send(pw);
    let (ok, out) = pam.finish().await;
    assert!(ok, "{out}");
    assert!(!out.contains("forgot"), "{out}");

    // The control: without pam_sspr, that module cannot log anyone in by itself.
    let only = services.join("sspr-test");
    let stack = std::fs::read_to_string(&only).unwrap();
    std::fs::write(
        &only,
        stack.lines().skip(1).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let pam = Pam::start(&services, "dave");
    let (ok, _) = pam.finish().await;
    assert!(
        !ok,
        "use_first_pass alone fails without a password from an earlier module"
    );
}
