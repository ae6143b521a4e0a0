//! Registration end to end: sign in with the current password, add, confirm, replace and
//! remove security info, over real HTTPS with real SMTP and the SMS stand-in.

use reqwest::{Method as HttpMethod, StatusCode};
use serde_json::{Value, json};
use sspr_domain::Method;

use crate::harness::{PASSWORD, Server, wrong};

/// Signs in and returns the session token; panics unless it works.
async fn sign_in(s: &Server, user: &str) -> String {
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": user, "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["session_token"].as_str().unwrap().to_string()
}

async fn me(s: &Server, session: &str) -> (StatusCode, Value) {
    s.call(HttpMethod::GET, "/api/v1/me", Some(session), None)
        .await
}

/// The registered method `m` in a status, if any.
fn method<'a>(status: &'a Value, m: &str, state: &str) -> Option<&'a Value> {
    status["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["method"] == m && r["status"] == state)
}

/// Adds an email address (as typed) and returns the status and the code mailed there.
async fn add_email(s: &Server, session: &str, addr: &str) -> (Value, String) {
    let to = addr.trim();
    let before = s.mail_count(to);
    let (st, v) = s
        .post("/api/v1/me/email", Some(session), json!({ "value": addr }))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let code = s.wait_mail_code(to, before).await;
    (v, code)
}

async fn confirm(s: &Server, session: &str, what: &str, code: &str) -> (StatusCode, Value) {
    s.post(
        &format!("/api/v1/me/{what}/verify"),
        Some(session),
        json!({ "code": code }),
    )
    .await
}

/// Registers and confirms an email address through the API.
async fn register_email(s: &Server, session: &str, addr: &str) -> Value {
    let (_, code) = add_email(s, session, addr).await;
    let (st, v) = confirm(s, session, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn put_questions(s: &Server, session: &str, answers: Value) -> (StatusCode, Value) {
    s.call(
        HttpMethod::PUT,
        "/api/v1/me/questions",
        Some(session),
        Some(json!({ "answers": answers })),
    )
    .await
}

async fn get_with_lang(s: &Server, path: &str, lang: Option<&str>) -> (StatusCode, Value) {
    let mut rb = s.http.get(format!("{}{}", s.url, path));
    if let Some(l) = lang {
        rb = rb.header("accept-language", l);
    }
    let resp = rb.send().await.unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap())
}

fn totp_for(secret_b32: &str) -> impl Fn(i64) -> String {
    let secret = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, secret_b32).unwrap();
    move |t: i64| {
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
    }
}

async fn wait_for_mail(s: &Server, to: &str, needle: &str) -> bool {
    for _ in 0..100 {
        if s.smtp
            .messages()
            .iter()
            .any(|m| m.contains(&format!("To: {to}")) && m.contains(needle))
        {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn sign_in_checks_password_scope_and_session_lifetime() {
    let s = Server::start().await;
    s.set_policy(|p| p["questions_alone"] = json!(true)).await;
    s.user("alice", &["staff"]).await;

    // Wrong password.
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "alice", "password": "not-the-password-at-all" }),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "unauthorized", "{v}");
    assert!(v.get("session_token").is_none(), "{v}");
    let ev = s
        .audit("user=alice&activity=registration_sign_in&result=failure")
        .await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["reason"], "wrong_password");

    // Empty and blank passwords never reach the directory.
    for pw in ["", "   ", "\t"] {
        let (st, v) = s
            .post(
                "/api/v1/session",
                None,
                json!({ "user": "alice", "password": pw }),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{pw:?}: {v}");
        assert_eq!(v["error"], "invalid_request", "{v}");
    }
    // An unknown user with an empty password: the reason is still empty_password, not
    // unknown_user, so the directory was not asked.
    let (st, _) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "ghost", "password": " " }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let ev = s
        .audit("activity=registration_sign_in&result=failure")
        .await;
    let empty = ev
        .iter()
        .filter(|e| e["reason"] == "empty_password")
        .count();
    assert_eq!(empty, 4, "{ev:?}");
    assert!(
        ev.iter()
            .all(|e| e["reason"] == "empty_password" || e["reason"] == "wrong_password"),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|e| e["target"] == "ghost" && e["reason"] == "empty_password"),
        "{ev:?}"
    );

    // The right password: a session and the registration status.
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": " Alice ", "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let token = v["session_token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 32, "{token}");
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{token}"
    );
    assert_eq!(v["expires_in"], 900, "{v}");
    let reg = &v["registration"];
    assert_eq!(reg["user"], "alice", "{v}");
    assert_eq!(reg["registered"], false, "{v}");
    assert_eq!(reg["required"], 1, "{v}");
    assert_eq!(reg["methods"], json!([]), "{v}");
    assert_eq!(reg["questions_to_register"], 3, "{v}");
    for m in ["email", "sms", "totp", "questions"] {
        assert!(
            reg["available_methods"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == m),
            "{m} not available: {v}"
        );
    }

    // The session lasts exactly session_ttl_secs.
    s.clock.advance(899);
    let (st, v) = me(&s, &token).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["user"], "alice");
    s.clock.advance(1);
    let (st, v) = me(&s, &token).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "unauthorized", "{v}");
    let (st, _) = s
        .post(
            "/api/v1/me/email",
            Some(&token),
            json!({ "value": "alice@contoso.test" }),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // No session at all, and a malformed one.
    let (st, _) = s.call(HttpMethod::GET, "/api/v1/me", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = me(&s, "abc").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Outside the policy's scope: 403, even with the right password.
    s.set_policy(|p| {
        p["scope"] = json!("groups");
        p["groups"] = json!(["staff"]);
    })
    .await;
    s.user("carl", &["contractors"]).await;
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": "carl", "password": PASSWORD }),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "forbidden", "{v}");
    assert!(v.get("session_token").is_none());
    let ev = s.audit("user=carl&activity=registration_sign_in").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["reason"], "out_of_scope");
    // A member of the group still signs in.
    sign_in(&s, "alice").await;
    s.stop().await;
}

#[tokio::test]
async fn email_is_pending_until_confirmed_and_a_new_address_waits_beside_the_old() {
    let s = Server::start().await;
    s.user("erin", &["staff"]).await;
    let session = sign_in(&s, "erin").await;

    let (v, code) = add_email(&s, &session, " erin@contoso.test ").await;
    let pending = method(&v, "email", "pending").expect("pending email");
    assert_eq!(pending["destination"], "e••n@c••••••.test", "{v}");
    assert_eq!(v["registered"], false, "{v}");
    assert!(method(&v, "email", "active").is_none(), "{v}");

    // Pending does not count: a reset is not possible yet.
    let (st, f) = s.start_flow("erin", "reset").await;
    assert_eq!(st, StatusCode::OK, "{f}");
    assert_eq!(f["status"], "registration_required", "{f}");

    // A wrong code is refused and changes nothing.
    let (st, e) = confirm(&s, &session, "email", &wrong(&code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"], "verification_failed", "{e}");
    let (_, v) = me(&s, &session).await;
    assert!(method(&v, "email", "pending").is_some(), "{v}");
    assert_eq!(v["registered"], false);

    // The right code makes it active.
    let (st, v) = confirm(&s, &session, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["registered"], true, "{v}");
    let active = method(&v, "email", "active").expect("active email");
    assert_eq!(active["destination"], "e••n@c••••••.test");
    assert!(method(&v, "email", "pending").is_none(), "{v}");
    // A used code cannot be replayed.
    let (st, _) = confirm(&s, &session, "email", &code).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    let (st, f) = s.start_flow("erin", "reset").await;
    assert_eq!(st, StatusCode::OK, "{f}");
    assert_eq!(f["status"], "choose_method", "{f}");
    assert_eq!(f["methods"][0]["method"], "email", "{f}");
    assert_eq!(f["methods"][0]["destination"], "e••n@c••••••.test", "{f}");

    // A new address waits beside the old one; the old one stays usable.
    let (v, new_code) = add_email(&s, &session, "erin.new@contoso.test").await;
    assert_eq!(
        method(&v, "email", "active").unwrap()["destination"],
        "e••n@c••••••.test",
        "{v}"
    );
    assert_eq!(
        method(&v, "email", "pending").unwrap()["destination"],
        "e••••••w@c••••••.test",
        "{v}"
    );
    assert_eq!(v["registered"], true, "{v}");
    let (_, f) = s.start_flow("erin", "reset").await;
    assert_eq!(f["status"], "choose_method", "{f}");
    assert_eq!(f["methods"][0]["destination"], "e••n@c••••••.test", "{f}");
    // A reset started now still mails the old address.
    let t = f["flow_token"].as_str().unwrap().to_string();
    let reset_code = s.email_code(&t, "erin@contoso.test").await;
    let (st, r) = s.verify(&t, "email", &reset_code).await;
    assert_eq!(st, StatusCode::OK, "{r}");

    let (st, v) = confirm(&s, &session, "email", &new_code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let emails: Vec<&Value> = v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["method"] == "email")
        .collect();
    assert_eq!(emails.len(), 1, "{v}");
    assert_eq!(emails[0]["status"], "active");
    assert_eq!(emails[0]["destination"], "e••••••w@c••••••.test");
    let (_, f) = s.start_flow("erin", "reset").await;
    assert_eq!(
        f["methods"][0]["destination"], "e••••••w@c••••••.test",
        "{f}"
    );
    let t = f["flow_token"].as_str().unwrap().to_string();
    let reset_code = s.email_code(&t, "erin.new@contoso.test").await;
    let (st, r) = s.verify(&t, "email", &reset_code).await;
    assert_eq!(st, StatusCode::OK, "{r}");

    // Invalid addresses are refused in words.
    for bad in ["erin", "erin@contoso", "a@b.c,d@e.f", "<erin@contoso.test>"] {
        let (st, e) = s
            .post("/api/v1/me/email", Some(&session), json!({ "value": bad }))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("valid email address"),
            "{e}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn phone_numbers_are_normalised_to_e164_and_confirmed_by_text() {
    let s = Server::start().await;
    s.user("pia", &["staff"]).await;
    let session = sign_in(&s, "pia").await;

    for bad in ["0151 12345678", "+1", "+49 151 CALLME", "call me maybe", ""] {
        let (st, e) = s
            .post("/api/v1/me/phone", Some(&session), json!({ "value": bad }))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad:?}: {e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("international form"),
            "{bad:?}: {e}"
        );
    }
    assert!(
        s.sms.texts().is_empty(),
        "nothing may be sent to a bad number"
    );

    let before = s.sms.texts().len();
    let (st, v) = s
        .post(
            "/api/v1/me/phone",
            Some(&session),
            json!({ "value": "+49 151 1234-5678" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        method(&v, "sms", "pending").expect("pending sms")["destination"],
        "+•••••••••••78",
        "{v}"
    );
    assert_eq!(v["registered"], false);
    let code = s.wait_sms_code(before).await;
    assert_eq!(s.sms.texts()[before]["to"], "+4915112345678");

    let (_, f) = s.start_flow("pia", "reset").await;
    assert_eq!(f["status"], "registration_required", "{f}");

    let (st, e) = confirm(&s, &session, "phone", &wrong(&code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"], "verification_failed");
    // The email code path is a different code: the SMS code does not confirm an email.
    let (st, _) = confirm(&s, &session, "email", &code).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, v) = confirm(&s, &session, "phone", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["registered"], true, "{v}");
    assert!(method(&v, "sms", "active").is_some(), "{v}");

    // The stored value is the normalised number: a reset texts exactly that.
    let mr = sspr_app::ports::Store::methods(s.rt.store.as_ref(), "pia")
        .await
        .unwrap();
    assert_eq!(mr.len(), 1);
    assert_eq!(mr[0].value, "+4915112345678");
    let t = s.flow("pia").await;
    let rc = s.sms_code(&t).await;
    assert_eq!(s.sms.texts().last().unwrap()["to"], "+4915112345678");
    let (st, r) = s.verify(&t, "sms", &rc).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "set_password");
    s.stop().await;
}

#[tokio::test]
async fn security_questions_are_checked_in_words_and_listed_in_two_languages() {
    let s = Server::start().await;
    s.set_policy(|p| p["questions_alone"] = json!(true)).await;
    s.user("quinn", &["staff"]).await;
    let session = sign_in(&s, "quinn").await;
    let a = |q: &str, ans: &str| json!({ "question_id": q, "answer": ans });

    let cases = [
        (json!([a("q1", "Paris"), a("q3", "Rex")]), "exactly 3"),
        (
            json!([
                a("q1", "Paris"),
                a("q3", "Rex"),
                a("q7", "Elm"),
                a("q8", "Oak")
            ]),
            "exactly 3",
        ),
        (
            json!([a("q1", "Paris"), a("q3", "Rex"), a("q999", "Elm street")]),
            "Unknown question",
        ),
        (
            json!([a("q1", "Paris"), a("q1", "Lyon"), a("q7", "Elm street")]),
            "only once",
        ),
        (
            json!([a("q1", "Rex"), a("q3", " rex "), a("q7", "Elm street")]),
            "must be different",
        ),
        (
            json!([a("q1", "Paris"), a("q3", "ab"), a("q7", "Elm street")]),
            "3–40 characters",
        ),
        (
            json!([
                a("q1", "Paris"),
                a("q3", &"x".repeat(41)),
                a("q7", "Elm street")
            ]),
            "3–40 characters",
        ),
    ];
    for (answers, words) in cases {
        let (st, e) = put_questions(&s, &session, answers.clone()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{answers}: {e}");
        assert_eq!(e["error"], "invalid_request", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains(words),
            "{answers}: expected {words:?} in {e}"
        );
    }
    let (_, v) = me(&s, &session).await;
    assert!(method(&v, "questions", "active").is_none(), "{v}");

    // Exactly 40 and 3 characters are fine.
    let (st, v) = put_questions(
        &s,
        &session,
        json!([a("q1", "Paris"), a("q3", &"y".repeat(40)), a("q7", "Elm")]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(method(&v, "questions", "active").is_some(), "{v}");
    assert_eq!(v["registered"], true, "{v}");

    // The catalogue, in English and Chinese.
    let (st, q) = get_with_lang(&s, "/api/v1/questions", None).await;
    assert_eq!(st, StatusCode::OK, "{q}");
    let list = q["questions"].as_array().unwrap();
    assert!(list.len() >= 20, "{q}");
    assert_eq!(q["to_register"], 3);
    let q1 = list.iter().find(|x| x["id"] == "q1").unwrap();
    assert_eq!(
        q1["text"],
        "In what city did you meet your first spouse or partner?"
    );
    assert!(list.iter().all(|x| x["text"].as_str().unwrap().is_ascii()));
    for (path, lang) in [
        ("/api/v1/questions", Some("zh-CN,zh;q=0.9,en;q=0.8")),
        ("/api/v1/questions?lang=zh", None),
    ] {
        let (st, z) = get_with_lang(&s, path, lang).await;
        assert_eq!(st, StatusCode::OK, "{z}");
        let zl = z["questions"].as_array().unwrap();
        assert_eq!(zl.len(), list.len());
        assert_eq!(
            zl.iter().find(|x| x["id"] == "q1").unwrap()["text"],
            "你在哪个城市遇到了你的第一个配偶或伴侣？",
            "{path}"
        );
        assert!(
            zl.iter().all(|x| !x["text"].as_str().unwrap().is_ascii()),
            "{z}"
        );
    }

    // A custom question appears in the list and can be registered and drawn.
    let custom = "What was the name of your first robot?";
    s.set_policy(|p| p["custom_questions"] = json!([{ "id": "c1", "text": custom }]))
        .await;
    let (_, q) = get_with_lang(&s, "/api/v1/questions", None).await;
    let list = q["questions"].as_array().unwrap();
    assert_eq!(
        list.iter().find(|x| x["id"] == "c1").expect("c1 listed")["text"],
        custom
    );
    let (_, z) = get_with_lang(&s, "/api/v1/questions?lang=zh", None).await;
    assert_eq!(
        z["questions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == "c1")
            .expect("c1 listed in Chinese")["text"],
        custom
    );
    let (st, v) = put_questions(
        &s,
        &session,
        json!([a("c1", "Robbie"), a("q3", "Rex"), a("q7", "Elm street")]),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A reset draws all three (questions_to_answer = 3), the custom one among them.
    let t = s.flow("quinn").await;
    let (st, c) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&t),
            json!({ "method": "questions" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let drawn = c["questions"].as_array().unwrap();
    assert_eq!(drawn.len(), 3, "{c}");
    assert_eq!(
        drawn.iter().find(|x| x["id"] == "c1").expect("c1 drawn")["text"],
        custom
    );
    let answers: Vec<Value> = drawn
        .iter()
        .map(|x| {
            let id = x["id"].as_str().unwrap();
            let ans = match id {
                "c1" => "ROBBIE",
                "q3" => "rex",
                _ => " elm  street",
            };
            a(id, ans)
        })
        .collect();
    let (st, r) = s
        .post(
            "/api/v1/flow/verify",
            Some(&t),
            json!({ "method": "questions", "answers": answers }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "set_password");
    s.stop().await;
}

#[tokio::test]
async fn privileged_users_need_two_methods_and_no_questions() {
    let s = Server::start().await;
    s.user("root", &["admins"]).await;
    let session = sign_in(&s, "root").await;
    let (_, v) = me(&s, &session).await;
    assert_eq!(v["required"], 2, "{v}");
    assert!(
        !v["available_methods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "questions"),
        "{v}"
    );

    let (st, e) = put_questions(
        &s,
        &session,
        json!([
            { "question_id": "q1", "answer": "Paris" },
            { "question_id": "q3", "answer": "Rex" },
            { "question_id": "q7", "answer": "Elm street" },
        ]),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(e["error"], "forbidden", "{e}");
    let ev = s
        .audit("user=root&activity=security_info_added&result=failure")
        .await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["reason"], "method_disabled");
    assert!(
        sspr_app::ports::Store::answers(s.rt.store.as_ref(), "root")
            .await
            .unwrap()
            .is_empty()
    );

    let v = register_email(&s, &session, "root@contoso.test").await;
    assert_eq!(v["registered"], false, "one method is not enough: {v}");
    // Questions registered some other way (earlier policy) do not count for an admin.
    s.registered("root", Method::Questions, "").await;
    let (_, v) = me(&s, &session).await;
    assert!(method(&v, "questions", "active").is_some(), "{v}");
    assert_eq!(v["registered"], false, "email + questions: {v}");
    let (_, f) = s.start_flow("root", "reset").await;
    assert_eq!(f["status"], "registration_required", "{f}");

    // Email + authenticator app is enough.
    let (st, en) = s.post("/api/v1/me/totp", Some(&session), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{en}");
    let totp = totp_for(en["secret"].as_str().unwrap());
    let (st, v) = s
        .post(
            "/api/v1/me/totp/verify",
            Some(&session),
            json!({ "code": totp(s.clock_now()) }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(method(&v, "totp", "active").is_some(), "{v}");
    assert_eq!(v["registered"], true, "email + totp: {v}");
    let (_, f) = s.start_flow("root", "reset").await;
    assert_eq!(f["status"], "choose_method", "{f}");
    assert_eq!(f["required"], 2, "{f}");
    let offered: Vec<&str> = f["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert!(!offered.contains(&"questions"), "{offered:?}");
    assert!(offered.contains(&"email") && offered.contains(&"totp"));
    s.stop().await;
}

#[tokio::test]
async fn methods_can_be_removed_once() {
    let s = Server::start().await;
    s.user("rita", &["staff"]).await;
    let session = sign_in(&s, "rita").await;
    let v = register_email(&s, &session, "rita@contoso.test").await;
    assert_eq!(v["registered"], true);

    let (st, v) = s
        .call(
            HttpMethod::DELETE,
            "/api/v1/me/methods/email",
            Some(&session),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["methods"], json!([]), "{v}");
    assert_eq!(v["registered"], false, "{v}");
    let (_, f) = s.start_flow("rita", "reset").await;
    assert_eq!(f["status"], "registration_required", "{f}");

    let (st, e) = s
        .call(
            HttpMethod::DELETE,
            "/api/v1/me/methods/email",
            Some(&session),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("not registered"),
        "{e}"
    );

    let (st, e) = s
        .call(
            HttpMethod::DELETE,
            "/api/v1/me/methods/fax",
            Some(&session),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("email, sms, questions, totp"),
        "{e}"
    );
    // Without a session nothing is removed.
    register_email(&s, &session, "rita@contoso.test").await;
    let (st, _) = s
        .call(HttpMethod::DELETE, "/api/v1/me/methods/email", None, None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, v) = me(&s, &session).await;
    assert!(method(&v, "email", "active").is_some(), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn reconfirmation_falls_due_after_reconfirm_days() {
    let s = Server::start().await;
    s.set_policy(|p| p["reconfirm_days"] = json!(1)).await;
    s.user("vic", &["staff"]).await;
    let session = sign_in(&s, "vic").await;
    let v = register_email(&s, &session, "vic@contoso.test").await;
    assert_eq!(v["registered"], true);
    assert_eq!(v["reconfirm_due"], false, "{v}");

    // One second before the day is up: not due (the session has expired: sign in again).
    s.clock.advance(86_399);
    let (st, _) = me(&s, &session).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let session = sign_in(&s, "vic").await;
    let (_, v) = me(&s, &session).await;
    assert_eq!(v["reconfirm_due"], false, "{v}");
    s.clock.advance(1);
    let (_, v) = me(&s, &session).await;
    assert_eq!(v["reconfirm_due"], true, "{v}");

    let (st, v) = s
        .post("/api/v1/me/confirm", Some(&session), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["reconfirm_due"], false, "{v}");
    assert_eq!(v["registered"], true, "{v}");
    let (_, v) = me(&s, &session).await;
    assert_eq!(v["reconfirm_due"], false, "{v}");
    let ev = s.audit("user=vic&activity=security_info_reviewed").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["result"], "success");

    // An unregistered user is never due.
    s.user("wes", &["staff"]).await;
    let w = sign_in(&s, "wes").await;
    let (_, v) = me(&s, &w).await;
    assert_eq!(v["reconfirm_due"], false, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn changes_are_notified_and_audited_without_secrets() {
    let s = Server::start().await;
    s.set_policy(|p| p["questions_alone"] = json!(true)).await;
    s.user("fay", &["staff"]).await;
    let addr = "fay@contoso.test";
    let client = "browser";
    let (st, v) = s
        .call_as(
            HttpMethod::POST,
            "/api/v1/session",
            None,
            Some(json!({ "user": "fay", "password": PASSWORD })),
            client,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let session = v["session_token"].as_str().unwrap().to_string();
    let call = |m: HttpMethod, path: &'static str, body: Option<Value>| {
        let (s, session) = (&s, session.clone());
        async move { s.call_as(m, path, Some(&session), body, client).await }
    };

    let before = s.mail_count(addr);
    let (st, v) = call(
        HttpMethod::POST,
        "/api/v1/me/email",
        Some(json!({ "value": addr })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let email_code = s.wait_mail_code(addr, before).await;
    let (st, v) = call(
        HttpMethod::POST,
        "/api/v1/me/email/verify",
        Some(json!({ "code": email_code })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        wait_for_mail(&s, addr, "Security info was added").await,
        "no notice of the added email"
    );

    let before = s.sms.texts().len();
    let (st, v) = call(
        HttpMethod::POST,
        "/api/v1/me/phone",
        Some(json!({ "value": "+44 7700 900123" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sms_code = s.wait_sms_code(before).await;
    let (st, v) = call(
        HttpMethod::POST,
        "/api/v1/me/phone/verify",
        Some(json!({ "code": sms_code })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let answers = ["Bucephalus", "Zanzibar", "Quixotic lane"];
    let (st, v) = call(
        HttpMethod::PUT,
        "/api/v1/me/questions",
        Some(json!({ "answers": [
            { "question_id": "q1", "answer": answers[0] },
            { "question_id": "q3", "answer": answers[1] },
            { "question_id": "q7", "answer": answers[2] },
        ]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        wait_for_mail(&s, addr, "Your security questions were changed").await,
        "no notice of the questions"
    );

    let (st, v) = call(HttpMethod::DELETE, "/api/v1/me/methods/sms", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        wait_for_mail(&s, addr, "Security info was removed").await,
        "no notice of the removal"
    );
    // The notices went to the active address only, and carry no code.
    let notices: Vec<String> = s
        .smtp
        .messages()
        .into_iter()
        .filter(|m| m.contains("Security info was") || m.contains("security questions"))
        .collect();
    assert!(notices.len() >= 4, "{}", notices.len());
    for n in &notices {
        assert!(n.contains(&format!("To: {addr}")), "{n}");
        assert!(!n.contains(&email_code) && !n.contains(&sms_code), "{n}");
    }

    let events = s.audit("user=fay").await;
    let acts: Vec<&str> = events
        .iter()
        .map(|e| e["activity"].as_str().unwrap())
        .collect();
    for a in [
        "registration_sign_in",
        "security_info_added",
        "security_info_verified",
        "registered_all_required",
        "security_info_deleted",
    ] {
        assert!(acts.contains(&a), "{a} missing in {acts:?}");
    }
    // Added: email, phone, questions; verified: email, phone.
    assert_eq!(
        acts.iter().filter(|a| **a == "security_info_added").count(),
        3,
        "{acts:?}"
    );
    assert_eq!(
        acts.iter()
            .filter(|a| **a == "security_info_verified")
            .count(),
        2,
        "{acts:?}"
    );
    let deleted = events
        .iter()
        .find(|e| e["activity"] == "security_info_deleted")
        .unwrap();
    assert_eq!(deleted["details"]["method"], "sms", "{deleted}");
    for e in &events {
        assert_eq!(e["client_ip"], "127.0.0.1", "{e}");
        assert_eq!(e["client_type"], client, "{e}");
        assert_eq!(e["result"], "success", "{e}");
    }
    let dump = serde_json::to_string(&events).unwrap();
    assert!(!dump.contains(&email_code), "email code in the audit log");
    assert!(!dump.contains(&sms_code), "sms code in the audit log");
    assert!(!dump.contains(PASSWORD), "password in the audit log");
    assert!(!dump.contains(&session), "session token in the audit log");
    assert!(
        !dump.contains("447700900123"),
        "full phone number in the audit log"
    );
    for a in answers {
        assert!(
            !dump.to_lowercase().contains(&a.to_lowercase()),
            "answer {a} in the audit log"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_code_for_a_withdrawn_address_confirms_nothing() {
    let s = Server::start().await;
    s.user("tom", &["staff"]).await;
    let session = sign_in(&s, "tom").await;
    let (_, code) = add_email(&s, &session, "tom@contoso.test").await;
    // The user withdraws the pending address before entering its code.
    let (st, v) = s
        .call(
            HttpMethod::DELETE,
            "/api/v1/me/methods/email",
            Some(&session),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["methods"], json!([]), "{v}");

    let (st, v) = confirm(&s, &session, "email", &code).await;
    let (_, now) = me(&s, &session).await;
    assert_eq!(now["methods"], json!([]), "{now}");
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "nothing was confirmed, yet the answer says so: {v}"
    );
    assert!(
        s.audit("user=tom&activity=security_info_verified&result=success")
            .await
            .is_empty(),
        "a verification of nothing was audited as a success"
    );
    s.stop().await;
}

/// `require_registration` at admin sign-in: an administrator who could not reset their own
/// password is asked to register, may go on without it `registration_skips` times (each
/// sign-in counts one, so typing an admin page's address passes nothing), then gets a
/// registration session and no admin session. Registering gives the skips back for a later
/// lapse; with the setting off nobody is asked.
#[tokio::test]
async fn an_administrator_who_could_not_reset_is_asked_to_register_and_may_skip_as_often_as_the_policy_says()
 {
    use crate::web::Browser;
    let s = Server::start().await;
    s.user("boss", &["sspr-admins"]).await;
    s.set_policy(|p| {
        p["require_registration"] = json!(true);
        p["registration_skips"] = json!(2);
    })
    .await;
    // Two sign-ins go on, each saying how many are left; the admin pages open.
    for left in ["1", "0"] {
        let mut b = Browser::new(&s);
        let p = admin_sign_in(&mut b).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert!(p.body.contains("id=\"register-first\""), "{}", p.body);
        assert!(
            p.body.contains(&format!("data-left=\"{left}\"")),
            "{left}: {}",
            p.body
        );
        assert!(
            p.body
                .replace("&#x2f;", "/")
                .contains("href=\"/admin/policy\" id=\"skip-for-now\""),
            "{}",
            p.body
        );
        assert_eq!(b.get("/admin/policy").await.status, StatusCode::OK);
        // "Register now" opens the security-info page without a second sign-in.
        let r = b.get("/register").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.contains("id=\"who\""), "{}", r.body);
    }

    // The third: no admin session, only registration.
    let mut b = Browser::new(&s);
    let p = admin_sign_in(&mut b).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("id=\"register-required\""), "{}", p.body);
    assert!(!p.body.contains("skip-for-now"), "{}", p.body);
    let a = b.get("/admin/policy").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "no admin session");
    assert!(a.body.contains("admin-signin-form"), "{}", a.body);

    let events = s.audit("activity=admin_sign_in&user=boss").await;
    assert!(
        events
            .iter()
            .all(|e| e["details"]["registration"] == "asked"
                || e["details"]["registration"] == "required"),
        "{events:?}"
    );
    let lefts: Vec<_> = events
        .iter()
        .map(|e| e["details"]["skips_left"].clone())
        .collect();
    assert!(
        lefts.contains(&json!(1)) && lefts.contains(&json!(0)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["result"] == "failure" && e["reason"] == "registration_required"),
        "{events:?}"
    );

    // Registering (recovery codes, on that registration session) lets the next sign-in
    // straight through.
    let r = b.get("/register").await;
    let csrf = r.field("csrf");
    let r = b.post("/register/recovery-codes", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut b = Browser::new(&s);
    let p = admin_sign_in(&mut b).await;
    assert!(p.status.is_redirection(), "{}: {}", p.status, p.body);

    // Not asked, so no registration session was opened beside the admin one.
    let r = b.get("/register").await;
    assert!(!r.body.contains("id=\"who\""), "{}", r.body);

    // A lapse starts with every skip again.
    let token = sign_in(&s, "boss").await;
    let (st, v) = s
        .call(
            HttpMethod::DELETE,
            "/api/v1/me/methods/recovery_code",
            Some(&token),
            None,
        )
        .await;
    assert!(st.is_success(), "{st}: {v}");
    let mut b = Browser::new(&s);
    let p = admin_sign_in(&mut b).await;
    assert!(p.body.contains("data-left=\"1\""), "{}", p.body);

    // Off: nobody is asked.
    s.set_policy(|p| p["require_registration"] = json!(false))
        .await;
    let mut b = Browser::new(&s);
    let p = admin_sign_in(&mut b).await;
    assert!(p.status.is_redirection(), "{}: {}", p.status, p.body);
    s.stop().await;
}

/// Signs `boss` in to the admin pages, on the way to the policy page.
async fn admin_sign_in(b: &mut crate::web::Browser<'_>) -> crate::web::Page {
    let csrf = b.get("/admin").await.field("csrf");
    b.post(
        "/admin/sign-in",
        &[
            ("csrf", &csrf),
            ("next", "/admin/policy"),
            ("user", "boss"),
            ("password", PASSWORD),
        ],
    )
    .await
}
