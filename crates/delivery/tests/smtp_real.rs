//! SmtpSender against a real SMTP server: Python's aiosmtpd (`pip install aiosmtpd`, or
//! Debian's `python3-aiosmtpd`). Skipped, loudly, only when the module cannot be imported.

// Test helpers live outside `#[test]` functions, where clippy.toml's allow-*-in-tests does
// not reach; failing loudly is what a test should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sspr_app::ports::{Channel, OutboxMessage};
use sspr_delivery::{Sender, SmtpConfig, SmtpSender, SmtpTls};

fn aiosmtpd_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             !! SKIPPING real-SMTP test: `python3 -c 'import aiosmtpd'` failed.          !!\n\
             !! Install it: `pip install aiosmtpd` or `apt-get install python3-aiosmtpd`. !!\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        );
    }
    ok
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server process, killed when the test ends however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str], port: u16) -> Server {
    let child = Command::new("python3")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("aiosmtpd exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "aiosmtpd did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn config(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        allow_insecure: true,
        from: "Password reset <sspr@example.com>".into(),
        timeout_secs: 10,
        ..Default::default()
    }
}

fn email(id: i64, to: &str, subject: &str, body: &str) -> OutboxMessage {
    let mut m = OutboxMessage::new(Channel::Email, to, subject, body, 0);
    m.id = id;
    m
}

/// Parses every message in the maildir with Python's email package (which undoes RFC 2047
/// subjects and quoted-printable / base64 bodies), sorted by recipient.
fn read_maildir(dir: &Path) -> Vec<serde_json::Value> {
    let script = r#"
import json, os, sys
from email import policy
from email.parser import BytesParser
new = os.path.join(sys.argv[1], "new")
out = []
for name in os.listdir(new):
    with open(os.path.join(new, name), "rb") as f:
        m = BytesParser(policy=policy.default).parse(f)
    out.append({"to": str(m["To"]), "from": str(m["From"]), "subject": str(m["Subject"]),
                "content_type": m.get_content_type(), "charset": m.get_content_charset(),
                "body": m.get_body().get_content()})
out.sort(key=lambda x: x["to"])
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_three_messages_into_a_maildir() {
    if !aiosmtpd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _server = start(
        &[
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &listen,
            "-c",
            "aiosmtpd.handlers.Mailbox",
            maildir.to_str().unwrap(),
        ],
        port,
    );

    let sender = SmtpSender::new(&config(port)).unwrap();
    let msgs = [
        email(1, "alice@example.com", "Your code", "Your code is 111111."),
        email(
            2,
            "bob@example.org",
            "Ihr Bestätigungscode",
            "Ihr Code lautet 222222 – gültig für 10 Minuten.",
        ),
        email(
            3,
            "carol@example.net",
            "您的验证码",
            "您的验证码是 333333。",
        ),
    ];
    for m in &msgs {
        sender.send(m).await.unwrap();
    }

    // Python's Maildir writes into tmp/ then renames into new/; wait for all three.
    let new = maildir.join("new");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0) < 3 {
        assert!(
            Instant::now() < deadline,
            "maildir did not receive 3 messages"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = read_maildir(&maildir);
    assert_eq!(got.len(), 3, "{got:#?}");
    for (m, g) in msgs.iter().zip(&got) {
        assert_eq!(g["to"], m.recipient, "{g}");
        assert_eq!(g["subject"], m.subject, "{g}");
        assert_eq!(g["body"].as_str().unwrap().trim_end(), m.body, "{g}");
        assert_eq!(g["content_type"], "text/plain");
        assert_eq!(g["charset"], "utf-8");
        assert_eq!(g["from"], "Password reset <sspr@example.com>");
    }
}

/// An aiosmtpd handler that rejects some recipients and records, per delivered message, the
/// client's port: the same port means the same (pooled) connection.
const REJECTING_SERVER: &str = r#"
import json, sys, threading
from aiosmtpd.controller import Controller
port, log = int(sys.argv[1]), sys.argv[2]
class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nosuchuser@"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if address.startswith("busy@"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"
    async def handle_DATA(self, server, session, envelope):
        with open(log, "a") as f:
            f.write(json.dumps({"to": envelope.rcpt_tos, "peer_port": session.peer[1]}) + "\n")
        return "250 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=port)
c.start()
threading.Event().wait()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuses_connections_and_classifies_rejections() {
    if !aiosmtpd_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let port = free_port();
    let _server = start(
        &[
            "-c",
            REJECTING_SERVER,
            &port.to_string(),
            log.to_str().unwrap(),
        ],
        port,
    );

    let sender = SmtpSender::new(&config(port)).unwrap();
    for i in 0..3 {
        sender
            .send(&email(
                i,
                &format!("user{i}@example.com"),
                "Code",
                "Code 123456",
            ))
            .await
            .unwrap();
        // lettre hands a used connection back to its pool in a background task (after a NOOP
        // check); give it a moment, as a real outbox between messages would.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines
            .iter()
            .all(|l| l["peer_port"] == lines[0]["peer_port"]),
        "sequential sends should share one pooled connection: {lines:?}"
    );

    let e = sender
        .send(&email(10, "nosuchuser@example.com", "Code", "Code 654321"))
        .await
        .unwrap_err();
    assert!(!e.retryable, "550 is permanent: {e:?}");
    assert_eq!(e.class, "rejected");
    assert!(e.detail.contains("550"), "{}", e.detail);
    assert!(
        !e.detail.contains("nosuchuser@example.com"),
        "recipient must be masked: {}",
        e.detail
    );
    assert!(!e.detail.contains("654321"));

    let e = sender
        .send(&email(11, "busy@example.com", "Code", "Code 654321"))
        .await
        .unwrap_err();
    assert!(e.retryable, "451 is transient: {e:?}");
    assert_eq!(e.class, "deferred");

    // The sender is still usable after rejections.
    sender
        .send(&email(12, "user9@example.com", "Code", "Code 123456"))
        .await
        .unwrap();
}
