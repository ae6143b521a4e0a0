//! Onboarding invitations: the admin API and the CLI send a one-time link to the directory's
//! address; the link opens the password step; it works once, expires, and a newer one voids
//! it. On the built-in directory and a real slapd, through the real SMTP listener.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sspr_domain::clock::rfc3339;
use sspr_store::NewUser;

use crate::harness::{PASSWORD, Server};
use crate::ldap::{NEW, Slapd};
use crate::web::Browser;

pub(crate) async fn invite(s: &Server, user: &str) -> (StatusCode, Value) {
    s.call(
        reqwest::Method::POST,
        "/api/v1/admin/invitations",
        Some(&s.admin_token.clone()),
        Some(json!({ "user": user })),
    )
    .await
}

/// The link token in the newest invitation mailed to `to`.
pub(crate) async fn link_token(s: &Server, to: &str, nth: usize) -> String {
    for _ in 0..200 {
        let mails: Vec<String> = s
            .smtp
            .messages()
            .into_iter()
            .filter(|m| m.contains(&format!("To: {to}")) && m.contains("set your password"))
            .map(|m| m.replace("=\n", ""))
            .collect();
        if let Some(m) = mails.get(nth) {
            let i = m.find("/invite/").expect("a link") + "/invite/".len();
            return m[i..i + 32].to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no invitation number {nth} to {to}");
}

pub(crate) async fn add(s: &Server, login: &str, email: Option<&str>, groups: &[&str]) {
    s.rt.builtin
        .add_user(&NewUser {
            login: login.into(),
            display_name: login.into(),
            password: format!("{PASSWORD}-{login}"),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            email: email.map(String::from),
            mobile: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_invitation_link_sets_the_first_password_once_and_then_asks_to_register() {
    let s = Server::start().await;
    add(&s, "nell", Some("nell@contoso.test"), &["staff"]).await;
    let (st, v) = invite(&s, "Nell").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user"], "nell");
    assert_eq!(v["channel"], "email");
    assert!(
        !v["sent_to"].as_str().unwrap().contains("nell@"),
        "masked: {v}"
    );
    let token = link_token(&s, "nell@contoso.test", 0).await;

    // Opening the link (a mail scanner, or the user) changes nothing.
    let mut b = Browser::new(&s);
    for _ in 0..2 {
        let p = b.get(&format!("/invite/{token}")).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert!(p.body.contains("id=\"invite-form\""), "{}", p.body);
    }
    let p = b.get(&format!("/invite/{token}")).await;
    let csrf = p.field("csrf");
    let p = b
        .post("/invite", &[("csrf", &csrf), ("token", &token)])
        .await;
    assert!(p.status.is_redirection(), "{}: {}", p.status, p.body);
    let p = b.get("/flow").await;
    assert!(p.body.contains("id=\"password-form\""), "{}", p.body);
    assert!(
        p.body.contains("id=\"rules\""),
        "the rules first: {}",
        p.body
    );
    let p = b
        .post(
            "/flow/password",
            &[
                ("csrf", &csrf),
                ("new_password", NEW),
                ("confirm_password", NEW),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("Your password is set"), "{}", p.body);
    assert!(
        p.body.contains("href=\"/register\""),
        "asked to register: {}",
        p.body
    );
    assert!(s.password_works("nell", NEW).await);

    // Once only.
    let p = b.get(&format!("/invite/{token}")).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    assert!(
        p.body.contains("expired or has already been used"),
        "{}",
        p.body
    );
    // The API, asked again with the same token, says the password was set already.
    let (st, v) = s.set_password(&token, "amber kettle under moonlight").await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(s.password_works("nell", NEW).await, "unchanged");

    let sent = s.audit("user=nell&activity=invitation_sent").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]["actor"].as_str().unwrap().starts_with("admin:"),
        "{sent:?}"
    );
    let done = s
        .audit("user=nell&activity=invitation_accepted&result=success")
        .await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(
        s.audit("user=nell&activity=reset_password")
            .await
            .is_empty(),
        "an invitation is not counted as a reset"
    );
    s.stop().await;
}

#[tokio::test]
async fn an_invitation_expires_and_a_newer_one_voids_it() {
    let s = Server::start().await;
    add(&s, "otto", Some("otto@contoso.test"), &["staff"]).await;
    let (st, v) = invite(&s, "otto").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let first = link_token(&s, "otto@contoso.test", 0).await;
    let (st, v) = invite(&s, "otto").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let second = link_token(&s, "otto@contoso.test", 1).await;
    assert_ne!(first, second);
    let (st, _) = s.set_password(&first, NEW).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the older link is void");

    // 72 hours by default.
    s.clock.advance(72 * 3600);
    let (st, _) = s.set_password(&second, NEW).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "expired");
    assert!(!s.password_works("otto", NEW).await);
    // The sweep reports it once.
    s.rt.app.sweep_flows().await.unwrap();
    let ev = s.audit("user=otto&activity=flow_expired").await;
    assert!(
        ev.iter().any(|e| e["reason"] == "invitation_unused"),
        "{ev:?} at {}",
        rfc3339(s.clock_now())
    );
    s.stop().await;
}

#[tokio::test]
async fn invitations_are_refused_in_words_where_they_cannot_go() {
    let s = Server::start().await;
    add(&s, "pam", None, &["staff"]).await;
    add(&s, "root-ish", Some("root@contoso.test"), &["admins"]).await;
    let (st, v) = invite(&s, "nobody-here").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("create the account first"),
        "{v}"
    );
    let (st, v) = invite(&s, "pam").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("no email address"),
        "{v}"
    );
    let (st, v) = invite(&s, "root-ish").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(v["message"].as_str().unwrap().contains("privileged"), "{v}");
    let (st, _) = s
        .post("/api/v1/admin/invitations", None, json!({ "user": "pam" }))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "admins only");
    // A flow cannot be started as an invitation.
    let (st, _) = s.start_flow("pam", "invite").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn an_openldap_account_gets_its_first_password_through_an_invitation() {
    let slapd = Slapd::start();
    let s = crate::ldap::server_with_service_account(&slapd).await;
    let (st, v) = invite(&s, "mallory").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let token = link_token(&s, "mallory@contoso.test", 0).await;
    let (st, v) = s.set_password(&token, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(slapd.binds("mallory", NEW));
    s.stop().await;
}

#[tokio::test]
async fn an_administrator_invites_from_the_users_page() {
    let s = Server::start().await;
    s.user("boss", &["sspr-admins"]).await;
    add(&s, "quincy", Some("quincy@contoso.test"), &["staff"]).await;
    add(&s, "root-ish", Some("root@contoso.test"), &["admins"]).await;
    let mut b = Browser::new(&s);
    let csrf = b.get("/admin").await.field("csrf");
    let p = b
        .post(
            "/admin/sign-in",
            &[
                ("csrf", &csrf),
                ("next", "/admin/users"),
                ("user", "boss"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(p.status.is_redirection(), "{}", p.body);
    let p = b.get("/admin/users?q=quincy").await;
    assert!(p.body.contains("id=\"invite-form\""), "{}", p.body);
    let p = b
        .post(
            "/admin/users/invite",
            &[("csrf", &csrf), ("login", "quincy"), ("channel", "email")],
        )
        .await;
    // Post/redirect/get: the user's page says where it went, once.
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.headers["location"], "/admin/users?q=quincy");
    let p = b.get("/admin/users?q=quincy").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("id=\"invite-sent\""), "{}", p.body);
    assert!(
        !p.body.contains("quincy@contoso.test"),
        "masked: {}",
        p.body
    );
    let token = link_token(&s, "quincy@contoso.test", 0).await;
    let (st, v) = s.set_password(&token, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sent = s.audit("user=quincy&activity=invitation_sent").await;
    assert_eq!(sent[0]["actor"], "admin:boss", "{sent:?}");
    let p = b.get("/admin/users?q=quincy").await;
    assert!(
        !p.body.contains("id=\"invite-sent\""),
        "shown twice: {}",
        p.body
    );
    assert_eq!(sent.len(), 1, "{sent:?}");

    // A refusal is shown on the page, in words.
    let p = b
        .post(
            "/admin/users/invite",
            &[("csrf", &csrf), ("login", "root-ish"), ("channel", "email")],
        )
        .await;
    assert!(p.body.contains("privileged"), "{}", p.body);
    assert!(!p.body.contains("id=\"invite-sent\""), "{}", p.body);
    s.stop().await;
}

/// The invitation in Chromium, as the new user meets it: the link's page, then the password
/// page with the rules, then done with the way to registration. Saves the README's screenshots
/// with `SSPR_SCREENSHOTS`.
#[tokio::test]
async fn an_invitation_in_a_browser_sets_the_first_password() {
    let s = Server::start().await;
    add(&s, "nell", Some("nell@contoso.test"), &["staff"]).await;
    let (st, v) = invite(&s, "nell").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let token = link_token(&s, "nell@contoso.test", 0).await;
    let Some(b) = crate::browser::Browser::start("en").await else {
        return;
    };
    b.open(&s, &format!("/invite/{token}")).await;
    b.wait_for("#accept-invite").await;
    crate::portal::shot(&b, "invite").await;
    b.click("#accept-invite").await;
    b.wait_for("#new_password").await;
    b.fill("#new_password", NEW).await;
    b.fill("#confirm_password", NEW).await;
    b.click("#set-password").await;
    b.wait_for_text("Your password is set").await;
    crate::portal::shot(&b, "invite-done").await;
    b.close().await;
    assert!(s.password_works("nell", NEW).await);
    s.stop().await;
}

/// A member of `web.helpdesk_groups` signs in to the admin pages and gets the helpdesk's part:
/// users, the audit log (and its export), expiry, invitations and unblocking, each audited
/// under their name; the policy is neither shown nor changed, and trying is audited too.
#[tokio::test]
async fn the_helpdesk_invites_and_unblocks_but_cannot_see_or_change_the_policy() {
    let s = Server::start().await;
    s.user("hd1", &["sspr-helpdesk"]).await;
    s.user("visitor", &["staff"]).await;
    add(&s, "quincy", Some("quincy@contoso.test"), &["staff"]).await;
    let before = s.rt.app.policy().await.unwrap();

    // Someone in neither group is refused, as a wrong password would be.
    let mut b = Browser::new(&s);
    let csrf = b.get("/admin").await.field("csrf");
    let p = b
        .post(
            "/admin/sign-in",
            &[
                ("csrf", &csrf),
                ("next", "/admin/users"),
                ("user", "visitor"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);

    let mut b = Browser::new(&s);
    let csrf = b.get("/admin").await.field("csrf");
    let p = b
        .post(
            "/admin/sign-in",
            &[
                ("csrf", &csrf),
                ("next", "/admin/users"),
                ("user", "hd1"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(p.status.is_redirection(), "{}", p.body);
    let signed_in = s.audit("user=hd1&activity=admin_sign_in").await;
    assert_eq!(signed_in[0]["details"]["role"], "helpdesk", "{signed_in:?}");

    // The helpdesk's pages, without the policy's link.
    for page in [
        "/admin/insights",
        "/admin/users?q=quincy",
        "/admin/audit",
        "/admin/expiry",
    ] {
        let p = b.get(page).await;
        assert_eq!(p.status, StatusCode::OK, "{page}: {}", p.body);
        assert!(
            p.body.contains("id=\"role-helpdesk\""),
            "{page}: {}",
            p.body
        );
        assert!(!p.body.contains("id=\"nav-policy\""), "{page}: {}", p.body);
    }
    // A full page of the audit log links to the older events, keeping the filter.
    for i in 0..205 {
        let mut e = sspr_domain::audit::AuditEvent::new(
            1_000_000 + i,
            sspr_domain::audit::Activity::CodeSent,
            sspr_domain::audit::Outcome::Success,
        );
        e.target = format!("paged{i:03}");
        s.rt.store.audit(&e).await.unwrap();
    }
    let p = b.get("/admin/audit?activity=code_sent").await;
    assert!(
        p.body.contains("paged204") && !p.body.contains("paged004"),
        "{}",
        p.body
    );
    let href = p
        .body
        .split("id=\"audit-older\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no Older events link: {}", p.body))
        .replace("&amp;", "&");
    assert!(
        href.starts_with("/admin/audit?activity=code_sent&before="),
        "{href}"
    );
    let p = b.get(&href).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(
        p.body.contains("paged004") && !p.body.contains("paged204"),
        "{}",
        p.body
    );

    // Activities and reasons in words, in both languages; a details panel for what an event
    // carries.
    let mut e = sspr_domain::audit::AuditEvent::new(
        2_000_000,
        sspr_domain::audit::Activity::VerificationFailed,
        sspr_domain::audit::Outcome::Failure,
    );
    e.target = "worded".into();
    e.reason = "wrong_code".into();
    e.details = serde_json::json!({"method": "email", "attempt": 2});
    s.rt.store.audit(&e).await.unwrap();
    let p = b.get("/admin/audit?user=worded").await;
    assert!(p.body.contains("Verification failed"), "{}", p.body);
    assert!(p.body.contains(">wrong code or answer<"), "{}", p.body);
    assert!(p.body.contains("<details id=\"details-"), "{}", p.body);
    assert!(p.body.contains("&quot;attempt&quot;: 2"), "{}", p.body);
    let p = b.get("/admin/audit?user=worded&lang=zh").await;
    assert!(p.body.contains("验证失败"), "{}", p.body);
    assert!(p.body.contains(">验证码或答案错误<"), "{}", p.body);
    assert!(!p.body.contains("Verification failed"), "{}", p.body);
    let _ = b.get("/admin/audit?lang=en").await;

    let p = b.get("/admin/audit/export?format=csv").await;
    assert_eq!(p.status, StatusCode::OK);
    let exported = s.audit("activity=audit_exported").await;
    assert_eq!(exported[0]["actor"], "helpdesk:hd1", "{exported:?}");

    // Invitations and unblocking, under the helpdesk's name.
    let p = b
        .post(
            "/admin/users/invite",
            &[("csrf", &csrf), ("login", "quincy"), ("channel", "email")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = b.get("/admin/users?q=quincy").await;
    assert!(p.body.contains("id=\"invite-sent\""), "{}", p.body);
    let sent = s.audit("user=quincy&activity=invitation_sent").await;
    assert_eq!(sent[0]["actor"], "helpdesk:hd1", "{sent:?}");
    let p = b
        .post(
            "/admin/users/unblock",
            &[("csrf", &csrf), ("login", "quincy")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = b.get("/admin/users?q=quincy").await;
    assert!(p.body.contains("id=\"unblocked\""), "{}", p.body);
    let unblocked = s.audit("user=quincy&activity=admin_user_changed").await;
    assert_eq!(unblocked[0]["actor"], "helpdesk:hd1", "{unblocked:?}");

    // The policy: not shown, not changed, and the attempts are in the audit log.
    let p = b.get("/admin/policy").await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("Only administrators"), "{}", p.body);
    assert!(!p.body.contains("id=\"policy-form\""), "{}", p.body);
    let p = b
        .post(
            "/admin/policy",
            &[("csrf", &csrf), ("methods", "email"), ("required", "1")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert_eq!(
        s.rt.app.policy().await.unwrap(),
        before,
        "the policy changed"
    );
    let refused = s.audit("activity=admin_auth_failed").await;
    assert!(
        refused
            .iter()
            .filter(|e| e["actor"] == "helpdesk:hd1" && e["reason"] == "not_admin")
            .count()
            == 2,
        "{refused:?}"
    );
    s.stop().await;
}
