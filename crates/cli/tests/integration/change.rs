//! Changing a password the user knows: the API and the portal page, on the built-in
//! directory, on a real slapd (ppolicy) and on a real Samba AD domain controller.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sspr_app::crypto::token_hash;
use sspr_app::ports::{FlowRecord, UserFlag};
use sspr_domain::{FlowKind, FlowState};

use crate::harness::{PASSWORD, Server};
use crate::ldap::{AD_OLD, NEW, OLD, SambaAd, Slapd, server_on};
use crate::web::Browser;

async fn change(s: &Server, user: &str, current: &str, new: &str) -> (StatusCode, Value) {
    s.post(
        "/api/v1/password/change",
        None,
        json!({ "user": user, "current_password": current, "new_password": new }),
    )
    .await
}

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

async fn wait_for_mail(s: &Server, to: &str, words: &str) {
    for _ in 0..200 {
        if s.smtp
            .messages()
            .iter()
            .any(|m| m.contains(&format!("To: {to}")) && m.contains(words))
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no mail to {to} saying {words:?}");
}

#[tokio::test]
async fn a_known_password_is_changed_under_the_reset_rules_audited_and_notified() {
    let s = Server::start().await;
    s.registered_user("carol").await;
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "carol", "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let session = v["session_token"].as_str().unwrap().to_string();

    // A wrong password and an unknown ID get the same answer: this page finds no accounts.
    let (st1, v1) = change(&s, "carol", "not the password at all", NEW).await;
    let (st2, v2) = change(&s, "nobody-by-this-name", PASSWORD, NEW).await;
    assert_eq!(st1, StatusCode::UNAUTHORIZED, "{v1}");
    assert_eq!(st2, StatusCode::UNAUTHORIZED, "{v2}");
    assert_eq!(message(&v1), message(&v2));

    // The new password meets the rules a reset's meets, and is not the current one.
    let (st, v) = change(&s, "carol", PASSWORD, PASSWORD).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("same as your current one"), "{v}");
    let (st, v) = change(&s, "carol", PASSWORD, "short").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("too short"), "{v}");
    assert!(s.password_works("carol", PASSWORD).await, "nothing changed");

    // A change is not a flow to start.
    let (st, v) = s.start_flow("carol", "change").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    let (st, v) = change(&s, "Carol", PASSWORD, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["kind"], "change", "{v}");
    assert!(message(&v).contains("has been changed"), "{v}");
    assert!(v.get("flow_token").is_none_or(Value::is_null), "{v}");
    assert!(v["register_url"].is_null(), "registered: no nudge: {v}");
    assert!(s.password_works("carol", NEW).await);
    assert!(!s.password_works("carol", PASSWORD).await);

    // Whoever held a session with the old password is signed out.
    let (st, _) = s
        .call(reqwest::Method::GET, "/api/v1/me", Some(&session), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Audited as a change (not a reset), the refusals too; notified.
    let done = s
        .audit("user=carol&activity=change_password&result=success")
        .await;
    assert_eq!(done.len(), 1, "{done:?}");
    let refused = s
        .audit("user=carol&activity=change_password&result=failure")
        .await;
    let reasons: Vec<&str> = refused
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    for want in ["wrong_password", "same_as_current", "too_short"] {
        assert!(reasons.iter().any(|r| r.contains(want)), "{reasons:?}");
    }
    assert!(
        s.audit("user=carol&activity=reset_password")
            .await
            .is_empty()
    );
    wait_for_mail(&s, "carol@contoso.test", "Your password was changed").await;

    // The built-in directory's history applies as at a reset.
    let (st, v) = change(&s, "carol", NEW, PASSWORD).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("used this password recently"), "{v}");

    // A locked account is not changed (nor unlocked): the sign-in answer, as for any
    // password that does not sign in.
    s.rt.builtin
        .set_flag("carol", UserFlag::Locked, true)
        .await
        .unwrap();
    let (st, v) = change(&s, "carol", NEW, "amber kettle under moonlight").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let user =
        s.rt.app
            .directory
            .find_user("carol")
            .await
            .unwrap()
            .unwrap();
    assert!(user.locked, "still locked");
    s.rt.builtin
        .set_flag("carol", UserFlag::Locked, false)
        .await
        .unwrap();
    assert!(s.password_works("carol", NEW).await, "unchanged");
    s.stop().await;
}

#[tokio::test]
async fn the_change_page_shows_the_rules_first_and_changes_the_password() {
    let s = Server::start().await;
    s.user("dave", &["staff"]).await;
    let mut b = Browser::new(&s);
    let home = b.get("/").await;
    assert!(home.body.contains("href=\"/change\""), "linked from home");
    let page = b.get("/change").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"rules\""), "{}", page.body);
    assert!(page.body.contains("autocomplete=\"current-password\""));
    let csrf = page.field("csrf");

    // The two new passwords differ: said, the user ID kept, nothing changed.
    let p = b
        .post(
            "/change",
            &[
                ("csrf", &csrf),
                ("user", "dave"),
                ("current_password", PASSWORD),
                ("new_password", NEW),
                ("confirm_password", "something else entirely"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    assert!(p.body.contains("not the same"), "{}", p.body);
    assert!(p.body.contains("value=\"dave\""), "{}", p.body);

    let p = b
        .post(
            "/change",
            &[
                ("csrf", &csrf),
                ("user", "dave"),
                ("current_password", PASSWORD),
                ("new_password", NEW),
                ("confirm_password", NEW),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("id=\"done\""), "{}", p.body);
    assert!(p.body.contains("has been changed"), "{}", p.body);
    // dave registered nothing: he is asked to, now that he knows his password.
    assert!(p.body.contains("id=\"nudge\""), "{}", p.body);
    assert!(s.password_works("dave", NEW).await);

    // In Chinese too.
    let p = b
        .send(
            reqwest::Method::GET,
            "/change",
            &[],
            &[("accept-language", "zh-CN")],
        )
        .await;
    assert!(p.body.contains("更改密码"), "{}", p.body);
    s.stop().await;
}

#[tokio::test]
async fn an_interrupted_change_is_settled_and_audited_as_a_change() {
    let s = Server::start().await;
    s.registered_user("erin").await;
    let app = &s.rt.app;
    let now = s.clock_now();
    // The state a change leaves when the server dies during its directory write.
    let flow = FlowRecord {
        id: token_hash("an-interrupted-change-0000000000"),
        kind: FlowKind::Change,
        state: FlowState::Verified,
        user_id: "erin".into(),
        login: "erin".into(),
        account: "erin".into(),
        display_name: "erin Tester".into(),
        privileged: false,
        required: 0,
        usable: Vec::new(),
        verified: Vec::new(),
        questions: Vec::new(),
        created_at: now,
        expires_at: now + 600,
        client_type: sspr_domain::audit::ClientType::Browser,
        client_ip: "192.0.2.7".into(),
        finishing_at: 0,
        dir_stamp: None,
        lang: sspr_app::Lang::En,
    };
    app.store.insert_flow(&flow).await.unwrap();
    let user = app.directory.find_user("erin").await.unwrap().unwrap();
    let stamp = app.directory.password_stamp(&user).await.unwrap();
    assert!(
        app.store
            .flow_begin_finish(&flow.id, now, stamp.as_deref())
            .await
            .unwrap()
    );
    app.directory
        .change_password(&user, PASSWORD, NEW)
        .await
        .unwrap();
    s.clock.advance(61);
    assert_eq!(app.sweep_flows().await.unwrap(), 1);
    let events = s.audit("user=erin&activity=change_password").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["result"], "success", "{events:?}");
    assert_eq!(events[0]["reason"], "recovered", "{events:?}");
    wait_for_mail(&s, "erin@contoso.test", "Your password was changed").await;
    // Nothing more to report when the flow's time runs out.
    s.clock.advance(3600);
    app.sweep_flows().await.unwrap();
    assert!(
        s.audit("user=erin&activity=reset_abandoned")
            .await
            .is_empty()
    );
    s.stop().await;
}

#[tokio::test]
async fn openldap_a_change_is_the_users_own_write_under_the_users_rules() {
    let slapd = Slapd::start();
    // A service account that may only read: a change uses the user's own rights.
    let s = server_on(
        &slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=weak,dc=sspr,dc=test",
        "weak-secret",
    )
    .await;
    let (st, v) = change(&s, "alice", OLD, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(slapd.binds("alice", NEW), "the new password binds");
    assert!(!slapd.binds("alice", OLD), "the old one does not");
    let ev = s
        .audit("user=alice&activity=change_password&result=success")
        .await;
    assert_eq!(ev.len(), 1, "{ev:?}");

    // ppolicy's minimum age binds a user's own change, and reaches the user in words.
    let policy = "dn: cn=default,ou=policies,dc=sspr,dc=test\nchangetype: modify\n";
    slapd.modify(&format!("{policy}add: pwdMinAge\npwdMinAge: 3600\n"));
    let (st, v) = change(&s, "alice", NEW, "amber kettle under moonlight").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("changed too recently"), "{v}");
    assert!(slapd.binds("alice", NEW), "unchanged");
    slapd.modify(&format!("{policy}delete: pwdMinAge\n"));

    // And its history.
    let (st, v) = change(&s, "alice", NEW, "amber kettle under moonlight").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = change(&s, "alice", "amber kettle under moonlight", NEW).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("used this password recently"), "{v}");

    // A password that must be changed (pwdReset) can be changed here, which clears the flag.
    let mallory = "uid=mallory,ou=people,dc=sspr,dc=test";
    slapd.modify(&format!(
        "dn: {mallory}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n"
    ));
    assert!(!slapd.may_search("mallory", OLD), "restricted to a change");
    let (st, v) = change(&s, "mallory", OLD, "copper lantern beside the sea").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(slapd.attr(mallory, "pwdReset").is_empty(), "flag cleared");
    assert!(slapd.may_search("mallory", "copper lantern beside the sea"));

    // A lockout from failed binds is not lifted by a change, nor does the change happen.
    for _ in 0..3 {
        assert!(!slapd.binds("mallory", "not the password at all"));
    }
    let (st, v) = change(
        &s,
        "mallory",
        "copper lantern beside the sea",
        "silent meadow after the rain",
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(!slapd.attr(mallory, "pwdAccountLockedTime").is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_a_change_is_the_users_own_write_under_the_domains_rules() {
    let ad = SambaAd::start();
    // An ordinary user as the service account: it has no right to reset anyone.
    let cfg = ad.config("weak", "Weak-Passw0rd!");
    let s = Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
    })
    .await;

    // The domain's complexity rule refuses what sspr's policy allows, in words.
    let (st, v) = change(&s, "alice", AD_OLD, NEW).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        message(&v).contains("domain's length, complexity or history rules"),
        "{v}"
    );
    assert!(ad.binds("alice", AD_OLD), "unchanged");

    let strong = "Quiet-Violet-Harbour-7";
    let (st, v) = change(&s, "alice", AD_OLD, strong).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(ad.binds("alice", strong), "the new password binds");
    assert!(!ad.binds("alice", AD_OLD), "the old one does not");

    // The domain's history applies to a user's change.
    let (st, v) = change(&s, "alice", strong, AD_OLD).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(ad.binds("alice", strong), "unchanged");
    let ev = s
        .audit("user=alice&activity=change_password&result=success")
        .await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    s.stop().await;
}

async fn sign_in(s: &Server, user: &str, pw: &str) -> (StatusCode, Value) {
    s.post(
        "/api/v1/session",
        None,
        json!({ "user": user, "password": pw }),
    )
    .await
}

/// An administrator's "change it at the next sign-in" on the built-in directory (what
/// `sspr users expire` does; AD's `pwdLastSet = 0`), with no maximum age set: the right
/// password is sent to the change, and the new password signs in and is not asked again.
#[tokio::test]
async fn a_builtin_password_the_admin_expired_is_changed_at_the_next_sign_in() {
    let s = Server::start().await;
    s.user("ivy", &["staff"]).await;
    assert!(s.rt.builtin.expire_password("ivy").await.unwrap());
    assert!(!s.rt.builtin.expire_password("nobody").await.unwrap());
    let (st, v) = sign_in(&s, "ivy", PASSWORD).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "password_change_required", "{v}");
    let (st, _) = sign_in(&s, "ivy", "not the password at all").await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "a wrong password learns nothing"
    );
    let (st, v) = change(&s, "ivy", PASSWORD, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = sign_in(&s, "ivy", NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A reset clears it too.
    assert!(s.rt.builtin.expire_password("ivy").await.unwrap());
    s.registered("ivy", sspr_domain::Method::Email, "ivy@contoso.test")
        .await;
    let t = s.flow("ivy").await;
    let code = s.email_code(&t, "ivy@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.set_password(&t, "Amber-Kettle-Moonlight-8").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = sign_in(&s, "ivy", "Amber-Kettle-Moonlight-8").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn an_expired_builtin_password_sends_the_sign_in_to_the_change() {
    let s = Server::start_with(|c| c.directory.password_max_age_days = 30).await;
    s.user("ivy", &["staff"]).await;
    s.user("ada", &["sspr-admins"]).await;
    let (st, v) = sign_in(&s, "ivy", PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    s.clock.advance(31 * 86_400);
    // The right password, expired: not "wrong", but "change it", with its own code.
    let (st, v) = sign_in(&s, "ivy", PASSWORD).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "password_change_required", "{v}");
    assert!(message(&v).contains("expired"), "{v}");
    // A wrong password still gets the sign-in answer.
    let (st, _) = sign_in(&s, "ivy", "not the password at all").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // In the portal, the sign-in page hands over to the change form, the ID filled in.
    let mut b = Browser::new(&s);
    let page = b.get("/register").await;
    let csrf = page.field("csrf");
    let p = b
        .post(
            "/register/sign-in",
            &[("csrf", &csrf), ("user", "ivy"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("id=\"change-form\""), "{}", p.body);
    assert!(p.body.contains("value=\"ivy\""), "{}", p.body);
    // The admin pages' sign-in too.
    let p = b
        .post(
            "/admin/sign-in",
            &[
                ("csrf", &csrf),
                ("next", "/admin"),
                ("user", "ada"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("id=\"change-form\""), "{}", p.body);

    let (st, v) = change(&s, "ivy", PASSWORD, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = sign_in(&s, "ivy", NEW).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "a new password lasts another 30 days: {v}"
    );
    let ev = s
        .audit("user=ivy&activity=change_password&result=success")
        .await;
    assert_eq!(ev[0]["details"]["required"], true, "{ev:?}");
    s.stop().await;
}

#[tokio::test]
async fn openldap_passwords_to_change_are_told_apart_from_wrong_ones_and_changed() {
    let slapd = Slapd::start();
    let s = crate::ldap::server_with_service_account(&slapd).await;
    // pwdReset (an administrator's "change at next sign-in"): the bind works, but ppolicy
    // allows nothing else; signing in to register would be no use.
    let mallory = "uid=mallory,ou=people,dc=sspr,dc=test";
    slapd.modify(&format!(
        "dn: {mallory}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n"
    ));
    let (st, v) = sign_in(&s, "mallory", OLD).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "password_change_required", "{v}");

    // Expired (pwdMaxAge, no grace logins): the bind is refused with passwordExpired.
    let policy = "dn: cn=default,ou=policies,dc=sspr,dc=test\nchangetype: modify\n";
    slapd.modify(&format!("{policy}add: pwdMaxAge\npwdMaxAge: 1\n"));
    // alice's password gets a pwdChangedTime first: an entry without one never expires.
    let (st, v) = change(&s, "alice", OLD, "copper lantern beside the sea").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        !slapd.binds("alice", "copper lantern beside the sea"),
        "expired"
    );
    let (st, v) = sign_in(&s, "alice", "copper lantern beside the sea").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "password_change_required", "{v}");
    let (st, _) = sign_in(&s, "alice", "not the password at all").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // The user cannot bind to change it: the service account writes it for them.
    let (st, v) = change(&s, "alice", "copper lantern beside the sea", NEW).await;
    slapd.modify(&format!("{policy}delete: pwdMaxAge\n"));
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(slapd.binds("alice", NEW));
    assert!(!slapd.binds("alice", "copper lantern beside the sea"));
    // Written by the service account, yet not a reset: no change is asked again.
    let alice = "uid=alice,ou=people,dc=sspr,dc=test";
    assert!(slapd.attr(alice, "pwdReset").is_empty());
    assert!(
        slapd.may_search("alice", NEW),
        "a session good for everything"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_must_change_at_next_logon_is_changed_not_called_wrong() {
    let ad = SambaAd::start();
    ad.tool(&[
        "user",
        "create",
        "bob",
        AD_OLD,
        "--must-change-at-next-login",
        "--mail-address=bob@contoso.test",
    ]);
    assert!(!ad.binds("bob", AD_OLD), "AD refuses the bind (data 773)");
    let cfg = ad.config("Administrator", crate::ldap::AD_ADMIN_PW);
    let s = Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
    })
    .await;
    let (st, v) = sign_in(&s, "bob", AD_OLD).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "password_change_required", "{v}");
    let (st, _) = sign_in(&s, "bob", "Wrong-Passw0rd!").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let strong = "Amber-Kettle-Moonlight-4";
    let (st, v) = change(&s, "bob", AD_OLD, strong).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        ad.binds("bob", strong),
        "the new password binds: no change is asked any more"
    );
    let (st, v) = sign_in(&s, "bob", strong).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.stop().await;
}
