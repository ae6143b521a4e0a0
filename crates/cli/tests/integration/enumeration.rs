//! No user enumeration: whoever cannot reset gets the same answer, in the same time.

// Helpers fail loudly on purpose: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sspr_domain::Window;

use crate::harness::{PASSWORD, Server};

/// Status, header names (sorted), content-length and JSON body of a POST.
struct Answer {
    status: StatusCode,
    headers: Vec<String>,
    length: Option<String>,
    body: Value,
}

async fn post_full(s: &Server, path: &str, body: Value) -> Answer {
    let resp = s
        .http
        .post(format!("{}{}", s.url, path))
        .header("x-sspr-client", "logon_screen")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let mut headers: Vec<String> = resp
        .headers()
        .keys()
        .map(|k| k.as_str().to_string())
        .collect();
    headers.sort();
    let length = resp
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    Answer {
        status,
        headers,
        length,
        body,
    }
}

/// The four kinds of user ID that cannot reset; returns their logins with the expected reason.
async fn four_classes(s: &Server) -> [(&'static str, &'static str); 4] {
    s.set_policy(|p| {
        p["scope"] = json!("groups");
        p["groups"] = json!(["staff"]);
    })
    .await;
    // Existing, in scope, nothing registered.
    s.user("unreg", &["staff"]).await;
    // Registered, then disabled in the directory.
    s.registered_user("gone").await;
    s.rt.builtin
        .set_flag("gone", sspr_store::Flag::Enabled, false)
        .await
        .unwrap();
    // Registered, but not in an enabled group.
    s.user("contractor", &["contractors"]).await;
    s.registered(
        "contractor",
        sspr_domain::Method::Email,
        "contractor@contoso.test",
    )
    .await;
    s.registered("contractor", sspr_domain::Method::Sms, "+4915112345679")
        .await;
    [
        ("nosuchuser", "unknown_user"),
        ("unreg", "not_registered"),
        ("gone", "disabled"),
        ("contractor", "out_of_scope"),
    ]
}

#[tokio::test]
async fn start_gives_one_answer_for_every_user_who_cannot_reset() {
    let s = Server::start().await;
    let classes = four_classes(&s).await;
    // A control: a user who can reset gets a different answer, so the comparison means something.
    s.registered_user("alice").await;
    let ok = post_full(
        &s,
        "/api/v1/flow/start",
        json!({ "user": "alice", "kind": "reset" }),
    )
    .await;
    assert_eq!(ok.body["status"], "choose_method");

    let mut answers = Vec::new();
    for (login, _) in classes {
        let mut a = post_full(
            &s,
            "/api/v1/flow/start",
            json!({ "user": login, "kind": "reset" }),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{login}: {}", a.body);
        assert_eq!(
            a.body["status"], "registration_required",
            "{login}: {}",
            a.body
        );
        let token = a
            .body
            .as_object_mut()
            .unwrap()
            .remove("flow_token")
            .expect("a flow token for every class");
        assert_eq!(token.as_str().unwrap().len(), 32);
        assert!(a.length.is_some(), "{login}: no content-length");
        answers.push((login, a));
    }
    let (first_login, first) = &answers[0];
    for (login, a) in &answers[1..] {
        assert_eq!(a.status, first.status, "{login} vs {first_login}");
        assert_eq!(a.body, first.body, "{login} vs {first_login}");
        assert_eq!(a.headers, first.headers, "{login} vs {first_login}");
        assert_eq!(a.length, first.length, "{login} vs {first_login}");
    }
    assert_ne!(ok.body["status"], first.body["status"]);

    // The audit log tells the classes apart for the helpdesk.
    for (login, reason) in classes {
        let ev = s
            .audit(&format!("user={login}&activity=reset_started"))
            .await;
        assert_eq!(ev.len(), 1, "{login}: {ev:?}");
        assert_eq!(ev[0]["reason"], reason, "{login}: {:?}", ev[0]);
        assert_eq!(ev[0]["result"], "failure");
    }

    // The same holds for unlock.
    let mut bodies = Vec::new();
    for (login, _) in classes {
        let mut a = post_full(
            &s,
            "/api/v1/flow/start",
            json!({ "user": login, "kind": "unlock" }),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{login}: {}", a.body);
        a.body.as_object_mut().unwrap().remove("flow_token");
        bodies.push((a.body, a.headers, a.length));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    s.stop().await;
}

#[tokio::test]
async fn sign_in_gives_one_answer_for_unknown_users_and_wrong_passwords() {
    let s = Server::start_with(|c| {
        c.limits.ip_starts = Window {
            max: 100_000,
            secs: 600,
        };
        c.limits.account_failures = Window {
            max: 100,
            secs: 24 * 3600,
        };
        c.limits.ip_failures = Window {
            max: 100_000,
            secs: 3600,
        };
    })
    .await;
    s.user("alice", &["staff"]).await;
    let unknown = json!({ "user": "nosuchuser", "password": "a wrong password here" });
    let wrong_pw = json!({ "user": "alice", "password": "a wrong password here" });

    let mut a = post_full(&s, "/api/v1/session", unknown.clone()).await;
    let mut b = post_full(&s, "/api/v1/session", wrong_pw.clone()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(a.status, b.status);
    assert_eq!(a.headers, b.headers);
    assert_eq!(a.length, b.length);
    for x in [&mut a.body, &mut b.body] {
        let code = x.as_object_mut().unwrap().remove("support_code").unwrap();
        assert_eq!(code.as_str().unwrap().len(), 11);
    }
    assert_eq!(a.body, b.body);
    assert_eq!(a.body["error"], "unauthorized");
    assert_eq!(
        s.audit("user=nosuchuser&activity=registration_sign_in")
            .await[0]["reason"],
        "unknown_user"
    );
    assert_eq!(
        s.audit("user=alice&activity=registration_sign_in").await[0]["reason"],
        "wrong_password"
    );

    s.stop().await;
}

#[tokio::test]
async fn requesting_resets_changes_nothing_on_the_account() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    for i in 0..20 {
        let (st, v) = s.start_flow("alice", "reset").await;
        assert_eq!(st, StatusCode::OK, "start {i}: {v}");
        assert_eq!(v["status"], "choose_method");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        s.smtp.messages().is_empty(),
        "starting a flow must not send anything: {:?}",
        s.smtp.messages()
    );
    assert!(s.sms.texts().is_empty());
    assert!(s.password_works("alice", PASSWORD).await);
    let (st, v) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/admin/users/alice",
            Some(&s.admin_token.clone()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["locked"], false);
    assert_eq!(v["registered"], true);
    assert_eq!(s.audit("user=alice&activity=reset_started").await.len(), 20);
    assert!(
        s.audit("user=alice&activity=blocked_from_reset")
            .await
            .is_empty()
    );
    s.stop().await;
}

/// A TCP proxy in front of slapd; once `refuse` is set, it closes every new connection at
/// once (a directory out of connections or file descriptors), while those already open keep
/// working.
async fn refusing_proxy(upstream: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = refuse.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if r.load(Ordering::SeqCst) {
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut server) =
                    tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, refuse)
}

/// Removes the support code (different for every answer) after checking its shape.
fn without_support_code(mut a: Answer) -> Answer {
    if let Some(code) = a.body.as_object_mut().unwrap().remove("support_code") {
        assert_eq!(code.as_str().unwrap().len(), 11);
    }
    a
}

#[tokio::test]
async fn a_directory_out_of_connections_answers_known_and_unknown_ids_alike() {
    let slapd = crate::ldap::Slapd::start();
    let (proxy, refuse) = refusing_proxy(slapd.ldaps_port).await;
    let mut cfg = crate::ldap::ldap_config(
        &slapd,
        format!("ldaps://127.0.0.1:{proxy}"),
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
    );
    cfg.timeout_secs = 2;
    let s = Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
        c.limits.account_failures = Window {
            max: 100,
            secs: 3600,
        };
    })
    .await;
    let known = json!({ "user": "mallory", "password": "a wrong password here" });
    let unknown = json!({ "user": "nosuchuser", "password": "a wrong password here" });

    // A directory that answers: one answer for both, after a bind for both.
    let a = without_support_code(post_full(&s, "/api/v1/session", known.clone()).await);
    let b = without_support_code(post_full(&s, "/api/v1/session", unknown.clone()).await);
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(
        (a.status, &a.headers, &a.body),
        (b.status, &b.headers, &b.body)
    );

    // The pooled service connection stays; new connections (a bind as the user needs one)
    // are refused. Both IDs must fail the same way: before, the known one got 503 and the
    // unknown one 401, which told which accounts exist.
    refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let a = without_support_code(post_full(&s, "/api/v1/session", known).await);
    let b = without_support_code(post_full(&s, "/api/v1/session", unknown).await);
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(a.body["error"], "directory_unavailable", "{}", a.body);
    assert_eq!(
        (a.status, &a.headers, &a.body),
        (b.status, &b.headers, &b.body)
    );
    for who in ["mallory", "nosuchuser"] {
        let ev = s
            .audit(&format!("user={who}&activity=directory_error"))
            .await;
        assert_eq!(ev.len(), 1, "{who}: {ev:?}");
        assert_eq!(ev[0]["reason"], "directory_unavailable", "{ev:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_busy_server_answers_known_and_unknown_ids_alike() {
    // One Argon2 slot and almost no wait: most of a burst of sign-ins finds it taken.
    let s = Server::start_with(|c| {
        c.limits.argon2_concurrency = 1;
        c.limits.argon2_queue_timeout_ms = 1;
        for w in [&mut c.limits.ip_starts, &mut c.limits.ip_failures] {
            *w = Window {
                max: 100_000,
                secs: 3600,
            };
        }
        // The most validation allows; 24 wrong passwords for alice stay under it.
        c.limits.account_failures = Window {
            max: 100,
            secs: 3600,
        };
    })
    .await;
    s.user("alice", &["staff"]).await;
    let burst = |user: &'static str| {
        let tasks: Vec<_> = (0..24)
            .map(|_| {
                let url = format!("{}/api/v1/session", s.url);
                let http = s.http.clone();
                tokio::spawn(async move {
                    let r = http
                        .post(url)
                        .json(&json!({ "user": user, "password": "a wrong password here" }))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status();
                    let retry = r.headers().get("retry-after").is_some();
                    let mut v: Value = r.json().await.unwrap();
                    v.as_object_mut().unwrap().remove("support_code");
                    (status, retry, v)
                })
            })
            .collect::<Vec<_>>();
        async move {
            let mut seen = std::collections::BTreeSet::new();
            for t in tasks {
                let (status, retry, v) = t.await.unwrap();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    assert!(retry, "a 503 without Retry-After: {v}");
                }
                seen.insert((status.as_u16(), v.to_string()));
            }
            seen
        }
    };
    let (known, unknown) = tokio::join!(burst("alice"), burst("nosuchuser"));
    let busy = |set: &std::collections::BTreeSet<(u16, String)>| {
        set.iter()
            .filter(|(st, _)| *st == 503)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        !busy(&known).is_empty(),
        "no sign-in found the server busy: {known:?}"
    );
    // Whatever answers a busy server gives, it gives them to both.
    assert_eq!(
        busy(&known),
        busy(&unknown),
        "known {known:?}\nunknown {unknown:?}"
    );
    assert!(
        known.iter().all(|(st, _)| [401, 503].contains(st)),
        "{known:?}"
    );
    s.stop().await;
}
