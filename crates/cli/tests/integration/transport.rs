//! Transport: TLS versions, security headers, health, OpenAPI, graceful shutdown.

use std::process::Command;

use reqwest::StatusCode;

use crate::harness::Server;

/// Runs `openssl s_client` off the async runtime: the server under test shares it.
async fn handshake(port: u16, version_flag: &'static str) -> bool {
    tokio::task::spawn_blocking(move || handshake_blocking(port, version_flag))
        .await
        .unwrap()
}

fn handshake_blocking(port: u16, version_flag: &str) -> bool {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version_flag,
            "-servername",
            "localhost",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl must be installed (see .ci/run)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    out.status.success() && text.contains("Cipher is") && !text.contains("Cipher is (NONE)")
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_negotiated() {
    let s = Server::start().await;
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(handshake(port, "-tls1_3").await, "TLS 1.3 must work");
    assert!(handshake(port, "-tls1_2").await, "TLS 1.2 must work");
    assert!(!handshake(port, "-tls1_1").await, "TLS 1.1 must be refused");
    assert!(!handshake(port, "-tls1").await, "TLS 1.0 must be refused");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).to_string()
    })
    .await
    .unwrap();
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    s.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let s = Server::start().await;
    let cases = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/password-policy"),
        ("GET", "/api/v1/questions"),
        ("POST", "/api/v1/flow/start"),
        ("GET", "/api/v1/flow"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/admin/audit"),
        ("GET", "/no/such/route"),
    ];
    for (m, path) in cases {
        let req = s
            .http
            .request(m.parse().unwrap(), format!("{}{path}", s.url));
        let req = if m == "POST" {
            req.json(&serde_json::json!({"user": "x"}))
        } else {
            req
        };
        let r = req.send().await.unwrap();
        let h = r.headers();
        let get = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(
            get("strict-transport-security"),
            "max-age=63072000; includeSubDomains",
            "{path}"
        );
        assert_eq!(get("cache-control"), "no-store", "{path}");
        assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(get("x-frame-options"), "DENY", "{path}");
        assert_eq!(get("referrer-policy"), "no-referrer", "{path}");
        assert!(
            get("content-security-policy").contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert!(h.get("server").is_none(), "{path}: no server banner");
        assert!(
            get("content-type").starts_with("application/json"),
            "{path}: {}",
            get("content-type")
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn health_readiness_and_openapi() {
    let s = Server::start().await;
    let (st, v) = s.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!((st, v["message"].as_str()), (StatusCode::OK, Some("ok")));
    let (st, _) = s.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, doc) = s
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/v1/flow/start",
        "/api/v1/flow/verify",
        "/api/v1/session",
        "/api/v1/me/totp",
        "/api/v1/admin/audit",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("FlowResponse").is_some());
    s.stop().await;
}

#[tokio::test]
async fn shutdown_is_graceful() {
    let s = Server::start().await;
    let (st, _) = s.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    // `stop` asserts the server task ends cleanly with Ok within the drain period.
    s.stop().await;
}

/// Waits until the server closes `sock` (end of stream or reset), up to `limit`.
async fn closed_within(sock: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, sock.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// `n` sockets from 127.0.0.1 that send nothing, and how many of them the server closed
/// within 300 ms each.
async fn silent_sockets(s: &Server, n: usize) -> (Vec<tokio::net::TcpStream>, usize) {
    let port = s.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut idle = Vec::new();
    for _ in 0..n {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut closed = 0;
    for sock in idle.iter_mut() {
        if closed_within(sock, std::time::Duration::from_millis(300)).await {
            closed += 1;
        }
    }
    (idle, closed)
}

#[tokio::test]
async fn idle_connections_from_one_address_cannot_lock_the_others_out() {
    let s = Server::start_with(|c| {
        c.connections.per_ip = 20;
        // Long enough that no connection below the share is closed for being slow here.
        c.connections.handshake_timeout_secs = 60;
        // The share is what this test is about: silent sockets reach the server at once.
        c.connections.defer_accept_secs = 0;
    })
    .await;
    // Sixty sockets from 127.0.0.1 that never start TLS: twenty are held, the rest closed at
    // once, before any handshake work.
    let (idle, closed) = silent_sockets(&s, 60).await;
    // The harness's own client may hold a keep-alive connection from the same address.
    let held = 60 - closed;
    assert!(
        (19..=20).contains(&held),
        "one address holds its share of 20, no more: {held} held"
    );

    // Another address is served meanwhile...
    let other = crate::harness::client_builder(&s.ca())
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // ...and the first gets its places back when its sockets close.
    drop(idle);
    let mut back = false;
    for _ in 0..100 {
        if s.http
            .get(format!("{}/healthz", s.url))
            .send()
            .await
            .is_ok()
        {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        back,
        "127.0.0.1 is served again once its idle sockets are gone"
    );
}

#[tokio::test]
async fn a_connection_that_never_starts_tls_is_closed_after_the_handshake_timeout() {
    let s = Server::start_with(|c| {
        c.connections.handshake_timeout_secs = 1;
        c.connections.defer_accept_secs = 1;
    })
    .await;
    let port = s.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // Bounded, not timed: it must close at some point well before the 30 s limit.
    assert!(closed_within(&mut sock, std::time::Duration::from_secs(30)).await);
}

#[tokio::test]
async fn silent_sockets_stay_in_the_kernel_and_take_no_share_of_the_server() {
    // The default: connections that send nothing are not handed to the server for 30 s.
    let s = Server::start_with(|c| c.connections.per_ip = 20).await;
    // Three times the address's share, and none is closed: the server never saw them, so
    // an attacker has nothing to reconnect...
    let (mut idle, closed) = silent_sockets(&s, 60).await;
    assert_eq!(closed, 0, "silent sockets were handed to the server");
    // ...and a real client from the same address is served meanwhile: the silent ones took
    // none of its share of 20.
    let fresh = crate::harness::client_for(&s.ca());
    let r = fresh
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A slow client that speaks at last is served: a whole request over one of the sockets.
    let sock = idle.pop().unwrap();
    let (status, _) = crate::harness::https_get_over(sock, &s.ca(), "/healthz").await;
    assert_eq!(status, 200);
    s.stop().await;
}

/// A request held in flight: its headers sent over a real TLS connection, its body never.
fn request_without_its_body(port: u16) -> std::process::Child {
    use std::io::Write;
    let mut c = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["-servername", "localhost"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl must be installed (see .ci/run)");
    let head = "POST /api/v1/session HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    c.stdin
        .as_mut()
        .unwrap()
        .write_all(head.as_bytes())
        .unwrap();
    c
}

#[tokio::test]
async fn requests_beyond_max_requests_get_503_at_once_and_health_checks_still_answer() {
    let s = Server::start_with(|c| {
        c.connections.max_requests = 2;
        // Every probe is a failed sign-in, each for another unknown ID: neither the
        // per-address nor a per-account block may answer (429) however many the race takes.
        c.limits.ip_failures.max = 100_000;
    })
    .await;
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let probes = std::sync::atomic::AtomicUsize::new(0);
    let sign_in = || async {
        let n = probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = s
            .http
            .post(format!("{}/api/v1/session", s.url))
            .json(
                &serde_json::json!({ "user": format!("nobody{n}"), "password": "wrong password" }),
            )
            .send()
            .await
            .unwrap();
        let status = r.status();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, retry, r.text().await.unwrap())
    };
    assert_eq!(sign_in().await.0, StatusCode::UNAUTHORIZED);

    let mut held: Vec<_> = (0..2).map(|_| request_without_its_body(port)).collect();
    let mut refused = None;
    for _ in 0..100 {
        // A held request that lost the race to a sign-in of this loop got the 503 itself
        // and its connection was closed: hold another in its place.
        for c in &mut held {
            if !matches!(c.try_wait(), Ok(None)) {
                *c = request_without_its_body(port);
            }
        }
        let a = sign_in().await;
        if a.0 == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(a);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, retry, body) = refused.expect("a third request at once was never refused");
    assert_eq!(retry.as_deref(), Some("5"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "busy", "{body}");
    let (st, _) = s.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK, "health checks are never refused");

    // The held requests end (their clients go away): the server takes requests again.
    for c in &mut held {
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut last = None;
    for _ in 0..100 {
        let (status, _, body) = sign_in().await;
        if status == StatusCode::UNAUTHORIZED {
            last = None;
            break;
        }
        last = Some((status, body));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        last, None,
        "requests were still refused after the held ones ended"
    );
    s.stop().await;
}
