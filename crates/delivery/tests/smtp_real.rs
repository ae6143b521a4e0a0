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

/// A relay that accepts the TCP connection and then says nothing. Records `accepted` and,
/// once the client hangs up, `closed`.
async fn silent_relay() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>) {
    use tokio::io::AsyncReadExt;
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ev = events.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            ev.lock().unwrap().push("accepted");
            let ev = ev.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
                ev.lock().unwrap().push("closed");
            });
        }
    });
    (port, events)
}

/// A tiny relay that speaks just enough SMTP and keeps every message's raw text.
async fn recording_relay() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let g = g.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 test ESMTP\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-test\r\n250 8BITMIME\r\n"
                    } else if cmd.starts_with("DATA") {
                        w.write_all(b"354 go on\r\n").await.unwrap();
                        let mut data = String::new();
                        loop {
                            line.clear();
                            r.read_line(&mut line).await.unwrap();
                            if line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        g.lock().unwrap().push(data);
                        b"250 queued\r\n"
                    } else if cmd.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, got)
}

#[tokio::test]
async fn a_relay_that_accepts_and_never_answers_fails_at_timeout_secs() {
    let (port, events) = silent_relay().await;
    let sender = SmtpSender::new(&SmtpConfig {
        timeout_secs: 2,
        ..config(port)
    })
    .unwrap();
    // Without a deadline on the whole transaction this waits for the greeting forever.
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        sender.send(&email(1, "alice@example.com", "Your code", "Code 111111")),
    )
    .await
    .expect("the send must end at its own deadline")
    .unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert_eq!(e.class, "timeout");
    assert!(e.detail.contains("2s"), "{}", e.detail);
    // The cut-short connection is closed, not kept for the next message.
    let deadline = Instant::now() + Duration::from_secs(10);
    while *events.lock().unwrap() != ["accepted", "closed"] {
        assert!(
            Instant::now() < deadline,
            "the connection was not closed: {:?}",
            events.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_copy_of_a_row_has_the_same_message_id() {
    let (port, got) = recording_relay().await;
    let sender = SmtpSender::new(&config(port)).unwrap();
    let mut m = email(7, "alice@example.com", "Your code", "Code 111111");
    m.created_at = 1_700_000_000;
    sender.send(&m).await.unwrap();
    // The same row sent again (a retry, or another instance after a crash).
    let again = SmtpSender::new(&config(port)).unwrap();
    m.attempts = 2;
    again.send(&m).await.unwrap();
    sender
        .send(&email(8, "alice@example.com", "Your code", "Code 222222"))
        .await
        .unwrap();
    let ids: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|raw| {
            raw.lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            "<sspr.7.1700000000@example.com>",
            "<sspr.7.1700000000@example.com>",
            "<sspr.8.0@example.com>",
        ]
    );
    assert_eq!(sender.message_id(&m), "<sspr.7.1700000000@example.com>");
}
