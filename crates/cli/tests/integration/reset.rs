//! Reset and unlock end to end, with one and two methods.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{PASSWORD, Server, wrong};

const NEW: &str = "quiet violet harbour lamps";

#[tokio::test]
async fn reset_with_one_method_changes_the_password_in_the_directory() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    assert!(s.password_works("alice", PASSWORD).await);

    let t = s.flow("Alice ").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &wrong(&code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "verification_failed");
    assert!(v["support_code"].as_str().unwrap().len() == 11);
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "set_password");

    let (st, v) = s.set_password(&t, "short").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("at least 15 characters"),
        "{v}"
    );
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "completed");

    assert!(
        s.password_works("alice", NEW).await,
        "the new password must verify"
    );
    assert!(
        !s.password_works("alice", PASSWORD).await,
        "the old password must not"
    );

    // The flow is spent: replaying the last step fails, and says which password is in force.
    let (st, v) = s.set_password(&t, "another fine passphrase").await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("already complete"),
        "{v}"
    );
    assert!(s.password_works("alice", NEW).await);
    let (st, _) = s.verify(&t, "email", "123456").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Every step is audited with IP and client type; no secret is in the log.
    let events = s.audit("user=alice").await;
    let acts: Vec<&str> = events
        .iter()
        .map(|e| e["activity"].as_str().unwrap())
        .collect();
    for a in [
        "reset_started",
        "code_sent",
        "verification_failed",
        "method_verified",
        "password_rejected",
        "reset_password",
    ] {
        assert!(acts.contains(&a), "{a} missing in {acts:?}");
    }
    for e in &events {
        assert_eq!(e["client_ip"], "127.0.0.1", "{e}");
        if e["activity"] != "registration_sign_in" {
            assert_eq!(e["client_type"], "api", "{e}");
        }
    }
    let dump = serde_json::to_string(&events).unwrap();
    assert!(
        !dump.contains(NEW)
            && !dump.contains(PASSWORD)
            && !dump.contains(&code)
            && !dump.contains(&t)
    );

    // The user is told.
    let notices = s
        .smtp
        .messages()
        .into_iter()
        .filter(|m| m.contains("Your password was reset"))
        .count();
    for _ in 0..100 {
        if notices > 0
            || s.smtp
                .messages()
                .iter()
                .any(|m| m.contains("Your password was reset"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        s.smtp
            .messages()
            .iter()
            .any(|m| m.contains("Your password was reset"))
    );
    s.stop().await;
}

#[tokio::test]
async fn two_method_policy_needs_two_different_methods() {
    let s = Server::start().await;
    s.set_policy(|p| p["methods_required"] = json!(2)).await;
    s.registered_user("bob").await;
    let (st, v) = s.start_flow("bob", "reset").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["required"], 2);
    let t = v["flow_token"].as_str().unwrap().to_string();

    let code = s.email_code(&t, "bob@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "choose_method");
    assert_eq!(v["verified"], json!(["email"]));
    // The same method cannot count twice.
    let (st, _) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&t),
            json!({ "method": "email" }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // The password cannot be set yet.
    let (st, _) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let code = s.sms_code(&t).await;
    assert_eq!(s.sms.texts().last().unwrap()["to"], "+4915112345678");
    let (st, v) = s.verify(&t, "sms", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "set_password");
    let (st, v) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.password_works("bob", NEW).await);
    assert!(!s.password_works("bob", PASSWORD).await);
    s.stop().await;
}

#[tokio::test]
async fn unlock_keeps_the_password_and_reset_also_unlocks() {
    let s = Server::start().await;
    s.registered_user("carol").await;
    s.rt.builtin
        .set_flag("carol", sspr_store::Flag::Locked, true)
        .await
        .unwrap();
    assert!(
        !s.password_works("carol", PASSWORD).await,
        "locked accounts do not sign in"
    );

    let (st, v) = s.start_flow("carol", "unlock").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t = v["flow_token"].as_str().unwrap().to_string();
    let code = s.email_code(&t, "carol@contoso.test").await;
    let (_, v) = s.verify(&t, "email", &code).await;
    assert_eq!(v["status"], "ready_to_unlock", "{v}");
    let (st, v) = s.post("/api/v1/flow/unlock", Some(&t), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        s.password_works("carol", PASSWORD).await,
        "unlocked, same password"
    );
    let ev = s.audit("user=carol&activity=unlock_account").await;
    assert_eq!(ev.len(), 1);

    // A reset unlocks too.
    s.rt.builtin
        .set_flag("carol", sspr_store::Flag::Locked, true)
        .await
        .unwrap();
    let t = s.flow("carol").await;
    let code = s.email_code(&t, "carol@contoso.test").await;
    s.verify(&t, "email", &code).await;
    let (st, _) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK);
    assert!(s.password_works("carol", NEW).await);

    // Unlock can be switched off, for everyone: then every unlock request, for a known user
    // or not, is told so and pointed at a reset (which also unlocks), never at registration.
    s.set_policy(|p| p["allow_unlock"] = json!(false)).await;
    let (st, v) = s.start_flow("carol", "unlock").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "forbidden", "{v}");
    let said = v["message"].as_str().unwrap().to_string();
    assert!(
        said.contains("not offered here") && said.contains("Reset your password instead"),
        "{v}"
    );
    assert!(
        v["flow_token"].is_null() && v["register_url"].is_null(),
        "{v}"
    );
    for nobody in ["nobody-at-all", "carol"] {
        let (st2, v2) = s.start_flow(nobody, "unlock").await;
        assert_eq!((st2, &v2["message"]), (st, &v["message"]), "{v2}");
    }
    let ev = s.audit("user=carol&activity=unlock_started").await;
    assert_eq!(ev.last().unwrap()["reason"], "unlock_not_allowed", "{ev:?}");
    s.stop().await;
}

#[tokio::test]
async fn security_questions_and_authenticator_app() {
    let s = Server::start().await;
    s.set_policy(|p| p["questions_alone"] = serde_json::json!(true))
        .await;
    s.user("dan", &["staff"]).await;
    // Register questions and an authenticator app through the API.
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "dan", "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let session = v["session_token"].as_str().unwrap().to_string();
    let answers = json!({ "answers": [
        { "question_id": "q1", "answer": "Paris" },
        { "question_id": "q3", "answer": "Rex" },
        { "question_id": "q7", "answer": "  Elm   street " },
    ]});
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            "/api/v1/me/questions",
            Some(&session),
            Some(answers),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["registered"], true);
    let (st, v) = s.post("/api/v1/me/totp", Some(&session), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        v["qr_svg"].as_str().unwrap().starts_with("<?xml")
            || v["qr_svg"].as_str().unwrap().contains("<svg")
    );
    let secret = base32::decode(
        base32::Alphabet::Rfc4648 { padding: false },
        v["secret"].as_str().unwrap(),
    )
    .unwrap();
    let totp = |t: i64| {
        totp_rs::TOTP::new_unchecked(
            totp_rs::Algorithm::SHA1,
            6,
            1,
            30,
            secret.clone(),
            None,
            String::new(),
        )
        .generate(t as u64)
    };
    let (st, v) = s
        .post(
            "/api/v1/me/totp/verify",
            Some(&session),
            json!({ "code": totp(s.clock_now()) }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Reset with two methods: questions, then the app.
    s.set_policy(|p| {
        p["methods_required"] = json!(2);
        p["questions_to_answer"] = json!(2);
    })
    .await;
    s.clock.advance(30);
    let t = s.flow("dan").await;
    let (st, v) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&t),
            json!({ "method": "questions" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let drawn: Vec<String> = v["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(drawn.len(), 2);
    let answer = |id: &str| match id {
        "q1" => "paris",
        "q3" => "REX",
        _ => "elm street",
    };
    // One wrong answer fails the whole set and draws again.
    let bad: Vec<_> = drawn
        .iter()
        .map(|q| json!({ "question_id": q, "answer": "wrong" }))
        .collect();
    let (st, _) = s
        .post(
            "/api/v1/flow/verify",
            Some(&t),
            json!({ "method": "questions", "answers": bad }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, v) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&t),
            json!({ "method": "questions" }),
        )
        .await;
    let drawn: Vec<String> = v["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap().to_string())
        .collect();
    let good: Vec<_> = drawn
        .iter()
        .map(|q| json!({ "question_id": q, "answer": answer(q) }))
        .collect();
    let (st, v) = s
        .post(
            "/api/v1/flow/verify",
            Some(&t),
            json!({ "method": "questions", "answers": good }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&t),
            json!({ "method": "totp" }),
        )
        .await;
    assert!(v["message"].as_str().unwrap().contains("authenticator"));
    let code = totp(s.clock_now());
    let (st, v) = s.verify(&t, "totp", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "set_password");
    let (st, _) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK);
    assert!(s.password_works("dan", NEW).await);

    // A TOTP code is single use: the same code in a new flow is refused.
    let (st, v) = s.start_flow("dan", "reset").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t2 = v["flow_token"].as_str().unwrap().to_string();
    let (st, _) = s.verify(&t2, "totp", &code).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_uses_of_one_code_succeed_exactly_once() {
    let s = std::sync::Arc::new(Server::start().await);
    s.registered_user("erin").await;
    let t = s.flow("erin").await;
    let code = s.email_code(&t, "erin@contoso.test").await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (s, t, code) = (s.clone(), t.clone(), code.clone());
        set.spawn(async move { s.verify(&t, "email", &code).await.0 });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        if r.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "exactly one of 50 concurrent uses may succeed");
    let verified = s
        .audit("user=erin&activity=method_verified&result=success")
        .await;
    assert_eq!(verified.len(), 1);
}

#[tokio::test]
async fn passwords_from_the_offline_breach_list_are_refused() {
    use sha1::Digest;
    let dir = tempfile::tempdir().unwrap();
    let breached = "amber kettle under moonlight";
    let mut lines: Vec<String> = [breached, "another leaked passphrase"]
        .iter()
        .map(|p| {
            format!(
                "{}:42",
                sspr_domain::random::hex(&sha1::Sha1::digest(p.as_bytes())).to_ascii_uppercase()
            )
        })
        .collect();
    lines.sort();
    let file = dir.path().join("pwned.txt");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let s = Server::start_with(move |c| c.breached_passwords_file = Some(file)).await;
    s.registered_user("fay").await;
    let t = s.flow("fay").await;
    let code = s.email_code(&t, "fay@contoso.test").await;
    s.verify(&t, "email", &code).await;
    let (st, v) = s.set_password(&t, breached).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("data breach"),
        "{v}"
    );
    let (st, _) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK);
    let ev = s.audit("user=fay&activity=password_rejected").await;
    assert_eq!(ev[0]["reason"], "breached");
    s.stop().await;
}

#[tokio::test]
async fn resetting_an_administrator_tells_the_other_administrators() {
    let s = Server::start().await;
    s.set_policy(|p| p["admin_notify"] = json!(["security@contoso.test"]))
        .await;
    s.user("root", &["admins"]).await;
    s.registered("root", sspr_domain::Method::Email, "root@contoso.test")
        .await;
    s.registered("root", sspr_domain::Method::Sms, "+4915112345678")
        .await;
    let (_, v) = s.start_flow("root", "reset").await;
    assert_eq!(
        v["required"], 2,
        "privileged accounts need two methods: {v}"
    );
    let t = v["flow_token"].as_str().unwrap().to_string();
    let code = s.email_code(&t, "root@contoso.test").await;
    s.verify(&t, "email", &code).await;
    let code = s.sms_code(&t).await;
    s.verify(&t, "sms", &code).await;
    let (st, _) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK);
    let mut told = false;
    for _ in 0..100 {
        told =
            s.smtp.messages().iter().any(|m| {
                m.contains("To: security@contoso.test") && m.contains("administrator root")
            });
        if told {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(told, "the admin_notify address was not told");

    // With notify_user off, an ordinary user's reset sends no notice.
    s.set_policy(|p| p["notify_user"] = json!(false)).await;
    s.registered_user("gil").await;
    let t = s.flow("gil").await;
    let code = s.email_code(&t, "gil@contoso.test").await;
    s.verify(&t, "email", &code).await;
    let (st, _) = s.set_password(&t, NEW).await;
    assert_eq!(st, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !s.smtp
            .messages()
            .iter()
            .any(|m| m.contains("To: gil@contoso.test") && m.contains("was reset"))
    );
    s.stop().await;
}

#[tokio::test]
async fn answers_to_a_custom_question_the_admin_removed_are_never_drawn_as_a_blank_question() {
    let s = Server::start().await;
    s.set_policy(|p| {
        p["questions_alone"] = serde_json::json!(true);
        p["custom_questions"] =
            serde_json::json!([{ "id": "c1", "text": "Name of my first pet?" }]);
    })
    .await;
    s.registered_user("quinn").await;
    s.answered("quinn", &["c1", "q3", "q7"], "answer").await;

    // While c1 exists, all three are drawn with their texts.
    let t = s.flow("quinn").await;
    let (st, v) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&t),
            serde_json::json!({ "method": "questions" }),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let texts: Vec<&str> = v["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 3);
    assert!(texts.iter().all(|t| !t.is_empty()), "{v}");

    // The admin rewords it (a new id): the old answer has no question any more.
    s.set_policy(|p| {
        p["custom_questions"] =
            serde_json::json!([{ "id": "c2", "text": "Name of your first pet?" }]);
    })
    .await;
    let t = s.flow("quinn").await;
    let (st, v) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&t),
            serde_json::json!({ "method": "questions" }),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::BAD_REQUEST, "{v}");
    assert!(v.get("questions").is_none(), "{v}");
    let ev = s
        .audit("user=quinn&activity=questions_drawn&result=failure")
        .await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_reset_signs_the_user_out_everywhere_and_an_unlock_does_not() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let sign_in = |pw: &'static str| {
        let s = &s;
        async move {
            let (st, v) = s
                .post(
                    "/api/v1/session",
                    None,
                    json!({ "user": "alice", "password": pw }),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            v["session_token"].as_str().unwrap().to_string()
        }
    };
    let me = |token: String| {
        let s = &s;
        async move {
            s.call(reqwest::Method::GET, "/api/v1/me", Some(&token), None)
                .await
                .0
        }
    };
    // Whoever signed in before the reset (the owner on another device, or a thief).
    let before = sign_in(PASSWORD).await;
    assert_eq!(me(before.clone()).await, StatusCode::OK);

    // An unlock (the user knows the password) leaves sessions alone.
    let (st, v) = s.start_flow("alice", "unlock").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let t = v["flow_token"].as_str().unwrap().to_string();
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(me(before.clone()).await, StatusCode::OK);

    let new = "a fresh passphrase after the storm";
    let t = s.flow("alice").await;
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = s.verify(&t, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.set_password(&t, new).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        me(before).await,
        StatusCode::UNAUTHORIZED,
        "a session from before the reset ends with it"
    );
    let after = sign_in(new).await;
    assert_eq!(me(after).await, StatusCode::OK);
    s.stop().await;
}
