//! Stronger proofs and account recovery per NIST SP 800-63B-4 §4.2: saved recovery codes
//! (made on the security-info page, each spent once in a reset), and notices to every address
//! of record, not only the one that was used.

use std::time::Duration;

use reqwest::{Method as HttpMethod, StatusCode};
use serde_json::{Value, json};
use sspr_domain::Method;

use crate::harness::{PASSWORD, Server};

async fn sign_in(s: &Server, user: &str) -> String {
    sign_in_with(s, user, PASSWORD).await
}

async fn sign_in_with(s: &Server, user: &str, pw: &str) -> String {
    let (st, v) = s
        .post(
            "/api/v1/session",
            None,
            json!({ "user": user, "password": pw }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["session_token"].as_str().unwrap().to_string()
}

async fn make_codes(s: &Server, session: &str) -> Vec<String> {
    let (st, v) = s
        .post("/api/v1/me/recovery-codes", Some(session), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

async fn codes_left(s: &Server, session: &str) -> Option<u64> {
    let (st, v) = s
        .call(HttpMethod::GET, "/api/v1/me", Some(session), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["method"] == "recovery_code" && m["status"] == "active")
        .map(|m| m["remaining"].as_u64().unwrap())
}

/// A new flow that verifies with `code` as a recovery code.
async fn verify_with(s: &Server, user: &str, code: &str) -> (StatusCode, Value) {
    let (st, v) = s.start_flow(user, "reset").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let token = v["flow_token"].as_str().unwrap().to_string();
    let offered: Vec<&str> = v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    if !offered.contains(&"recovery_code") {
        return (StatusCode::NOT_FOUND, v);
    }
    let (st, c) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&token),
            json!({ "method": "recovery_code" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let (st, v) = s.verify(&token, "recovery_code", code).await;
    let mut v = v;
    v["flow_token"] = Value::String(token);
    (st, v)
}

/// Waits until a message to `to` contains `text`.
async fn mail_with(s: &Server, to: &str, text: &str) -> Option<String> {
    for _ in 0..100 {
        if let Some(m) = s
            .smtp
            .messages()
            .into_iter()
            .find(|m| m.contains(&format!("To: {to}")) && m.contains(text))
        {
            return Some(m);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn text_with(s: &Server, to: &str, text: &str) -> Option<Value> {
    for _ in 0..100 {
        if let Some(t) = s.sms.texts().into_iter().find(|t| {
            t["to"].as_str() == Some(to) && t["message"].as_str().is_some_and(|m| m.contains(text))
        }) {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn recovery_codes_reset_once_each_and_a_new_set_voids_the_old() {
    let s = Server::start().await;
    s.user("rita", &["staff"]).await;
    s.registered("rita", Method::Email, "rita@contoso.test")
        .await;
    let session = sign_in(&s, "rita").await;
    assert_eq!(codes_left(&s, &session).await, None);

    let codes = make_codes(&s, &session).await;
    assert_eq!(codes.len(), 10);
    for c in &codes {
        assert_eq!(
            sspr_domain::recovery::normalise(c).unwrap().len(),
            16,
            "{c}"
        );
    }
    assert_eq!(codes_left(&s, &session).await, Some(10));
    assert!(
        mail_with(&s, "rita@contoso.test", "Recovery codes were made")
            .await
            .is_some(),
        "no notice of the new codes"
    );

    // Typed as people type from paper: lower case, spaces for dashes.
    let typed = codes[3].to_lowercase().replace('-', " ");
    let (st, v) = verify_with(&s, "rita", &typed).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "set_password", "{v}");
    let token = v["flow_token"].as_str().unwrap().to_string();
    let (st, v) = s.set_password(&token, "a recovered passphrase 42").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.password_works("rita", "a recovered passphrase 42").await);
    let session = sign_in_with(&s, "rita", "a recovered passphrase 42").await;
    assert_eq!(codes_left(&s, &session).await, Some(9));
    assert!(
        mail_with(&s, "rita@contoso.test", "9 of your codes are left")
            .await
            .is_some(),
        "no notice of the spent code"
    );

    // Spent: the same code again is refused, but not counted as a guess (a second tab).
    let (st, v) = verify_with(&s, "rita", &codes[3]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "verification_failed", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("used before"),
        "{v}"
    );
    let failures = s.audit("user=rita&activity=verification_failed").await;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(failures[0]["reason"], "expired_or_used", "{failures:#?}");

    // Not a code at all: said what one looks like, not counted.
    let (st, v) = verify_with(&s, "rita", "123456").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_ne!(v["error"], "verification_failed", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("16 letters and digits"),
        "{v}"
    );

    // A new set voids every unused code of the old one.
    let fresh = make_codes(&s, &session).await;
    assert_eq!(codes_left(&s, &session).await, Some(10));
    let (st, v) = verify_with(&s, "rita", &codes[4]).await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "an old code after a new set: {v}"
    );
    assert_eq!(v["error"], "verification_failed", "{v}");
    let (st, v) = verify_with(&s, "rita", &fresh[0]).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // The audit says what happened to the set, never a code.
    let events = s.audit("user=rita&limit=500").await;
    let made: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["activity"] == "security_info_added" && e["details"]["method"] == "recovery_code"
        })
        .collect();
    assert_eq!(made.len(), 2, "{events:#?}");
    assert!(made.iter().any(|e| e["details"]["replaced"] == true));
    assert!(
        events.iter().any(|e| e["activity"] == "method_verified"
            && e["details"]["method"] == "recovery_code"
            && e["details"]["codes_left"] == 9),
        "{events:#?}"
    );
    let text = serde_json::to_string(&events).unwrap();
    for c in codes.iter().chain(&fresh) {
        let canon = sspr_domain::recovery::normalise(c).unwrap();
        assert!(!text.contains(c.as_str()) && !text.contains(&canon));
    }
    // Nor is one in the database: only MACs are kept.
    let digests = s.rt.store.recovery_codes("rita").await.unwrap();
    assert_eq!(digests.len(), 9);
    if let Ok(rd) = std::fs::read_dir(&s.rt.config.data_dir) {
        for f in rd.flatten() {
            let bytes = std::fs::read(f.path()).unwrap_or_default();
            let hay = String::from_utf8_lossy(&bytes);
            for c in &fresh {
                let canon = sspr_domain::recovery::normalise(c).unwrap();
                assert!(
                    !hay.contains(c.as_str()) && !hay.contains(&canon),
                    "a recovery code in {}",
                    f.path().display()
                );
            }
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_recovery_code_raced_in_many_flows_verifies_one() {
    let s = std::sync::Arc::new(Server::start().await);
    s.user("ron", &["staff"]).await;
    let session = sign_in(&s, "ron").await;
    let codes = make_codes(&s, &session).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (s, code) = (s.clone(), codes[0].clone());
            tokio::spawn(async move { verify_with(&s, "ron", &code).await.0 })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "one code, one verified flow");
    assert_eq!(codes_left(&s, &session).await, Some(9));
}

#[tokio::test]
async fn recovery_codes_follow_the_policy() {
    let s = Server::start().await;
    s.user("rob", &["staff"]).await;
    s.registered("rob", Method::Email, "rob@contoso.test").await;
    let session = sign_in(&s, "rob").await;
    let codes = make_codes(&s, &session).await;
    s.set_policy(|p| {
        p["methods"] = json!(["email", "sms", "questions", "totp"]);
    })
    .await;
    let (st, v) = s
        .post("/api/v1/me/recovery-codes", Some(&session), json!({}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // Codes made before are not offered while the admin has the method off.
    let (st, v) = verify_with(&s, "rob", &codes[0]).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "not offered: {v}");
    // The user can still take them away.
    let (st, v) = s
        .call(
            HttpMethod::DELETE,
            "/api/v1/me/methods/recovery_code",
            Some(&session),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(s.rt.store.recovery_codes("rob").await.unwrap().is_empty());
}

/// NIST SP 800-63B-4 §4.6: a reset is told to every address of record, the text-message
/// number too, since the address used may be the attacker's.
#[tokio::test]
async fn a_reset_is_told_to_every_address_of_record() {
    let s = Server::start().await;
    s.registered_user("nia").await;
    let token = s.flow("nia").await;
    let code = s.email_code(&token, "nia@contoso.test").await;
    let (st, v) = s.verify(&token, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A refused password is no reset, and nobody is told of one.
    let (st, v) = s.set_password(&token, "short").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let told = |m: &str| m.contains("Your password was reset");
    assert!(!s.smtp.messages().iter().any(|m| told(m)));
    assert!(
        !s.sms
            .texts()
            .iter()
            .any(|t| told(t["message"].as_str().unwrap_or("")))
    );
    let (st, v) = s.set_password(&token, "another fine passphrase").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        mail_with(&s, "nia@contoso.test", "Your password was reset")
            .await
            .is_some()
    );
    let t = text_with(&s, "+4915112345678", "Your password was reset")
        .await
        .unwrap_or_else(|| panic!("no text to the phone of record: {:#?}", s.sms.texts()));
    let m = t["message"].as_str().unwrap();
    assert!(m.contains("helpdesk"), "{m}");
    assert!(!m.contains(&code), "{m}");
    s.stop().await;
}

/// An address taken away hears of it: removed, or replaced by a new one. Otherwise someone
/// with a stolen session could swap the user's email and phone for their own unnoticed.
#[tokio::test]
async fn a_removed_or_replaced_address_hears_of_the_change() {
    let s = Server::start().await;
    s.registered_user("oli").await;
    let session = sign_in(&s, "oli").await;

    let before = s.mail_count("new-oli@contoso.test");
    let (st, v) = s
        .post(
            "/api/v1/me/email",
            Some(&session),
            json!({ "value": "new-oli@contoso.test" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let code = s.wait_mail_code("new-oli@contoso.test", before).await;
    let (st, v) = s
        .post(
            "/api/v1/me/email/verify",
            Some(&session),
            json!({ "code": code }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        mail_with(&s, "oli@contoso.test", "Security info was added")
            .await
            .is_some(),
        "the replaced address is not told"
    );
    assert!(
        mail_with(&s, "new-oli@contoso.test", "Security info was added")
            .await
            .is_some()
    );
    // The phone of record hears of the email change too.
    assert!(
        text_with(&s, "+4915112345678", "Security info was added")
            .await
            .is_some()
    );

    let (st, v) = s
        .call(
            HttpMethod::DELETE,
            "/api/v1/me/methods/sms",
            Some(&session),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        text_with(&s, "+4915112345678", "Security info was removed")
            .await
            .is_some(),
        "the removed phone is not told: {:#?}",
        s.sms.texts()
    );
    s.stop().await;
}

/// The portal, as a browser without JavaScript uses it: make the codes on the security-info
/// page (shown once, with a download of the same list), then reset with one.
#[tokio::test]
async fn the_portal_makes_recovery_codes_and_resets_with_one() {
    use crate::web::Browser;
    let s = Server::start().await;
    s.user("pia", &["staff"]).await;
    let mut b = Browser::new(&s);
    let page = b.get("/register").await;
    let csrf = page.field("csrf");
    let p = b
        .post(
            "/register/sign-in",
            &[("csrf", &csrf), ("user", "pia"), ("password", PASSWORD)],
        )
        .await;
    assert!(
        p.status.is_success() || p.status.is_redirection(),
        "{}",
        p.body
    );
    let p = b.get("/register").await;
    assert!(p.body.contains("id=\"make-recovery-codes\""), "{}", p.body);
    let csrf = p.field("csrf");

    let p = b.post("/register/recovery-codes", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(
        p.headers["cache-control"], "no-store",
        "the codes must not be cached"
    );
    let codes: Vec<String> = p
        .body
        .split("<li><code>")
        .skip(1)
        .map(|r| r[..r.find('<').unwrap()].to_string())
        .collect();
    assert_eq!(codes.len(), 10, "{}", p.body);
    assert!(
        p.body.contains("download=\"recovery-codes-pia.txt\""),
        "{}",
        p.body
    );
    let href_at = p.body.find("data:text/plain").unwrap();
    let href = &p.body[href_at..];
    let href = &href[..href.find('"').unwrap()];
    for c in &codes {
        assert!(
            href.contains(&c.replace('-', "%2D")) || href.contains(c.as_str()),
            "{href}"
        );
    }
    let p = b.get("/register").await;
    assert!(p.body.contains("id=\"recovery-left\""), "{}", p.body);
    assert!(p.body.contains("Unused codes: 10"), "{}", p.body);

    // A reset in the portal with one of them.
    let page = b.get("/reset").await;
    let csrf = page.field("csrf");
    let pow = {
        let pat = "data-pow=\"";
        let i = page.body.find(pat).unwrap() + pat.len();
        page.body[i..i + page.body[i..].find('"').unwrap()].to_string()
    };
    let bits: u8 = pow.split('.').nth(2).unwrap().parse().unwrap();
    let sol = sspr_app::pow::solve(&pow, bits);
    let p = b
        .post(
            "/start",
            &[
                ("csrf", &csrf),
                ("kind", "reset"),
                ("user", "pia"),
                ("pow", &pow),
                ("pow_solution", &sol),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = b.get("/flow").await;
    assert!(p.body.contains("id=\"method-recovery_code\""), "{}", p.body);
    let p = b
        .post(
            "/flow/challenge",
            &[("csrf", &csrf), ("method", "recovery_code")],
        )
        .await;
    let p = if p.status == StatusCode::SEE_OTHER {
        b.get(p.headers["location"].to_str().unwrap()).await
    } else {
        p
    };
    assert!(p.body.contains("One of your recovery codes"), "{}", p.body);
    let p = b
        .post(
            "/flow/verify",
            &[
                ("csrf", &csrf),
                ("method", "recovery_code"),
                ("code", &codes[9].to_lowercase()),
            ],
        )
        .await;
    let p = if p.status == StatusCode::SEE_OTHER {
        b.get(p.headers["location"].to_str().unwrap()).await
    } else {
        p
    };
    assert!(p.body.contains("name=\"new_password\""), "{}", p.body);
    s.stop().await;
}

fn offered(v: &Value) -> Vec<String> {
    v["methods"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["method"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn register_questions(s: &Server, session: &str) {
    let (st, v) = s
        .call(
            HttpMethod::PUT,
            "/api/v1/me/questions",
            Some(session),
            Some(json!({ "answers": [
                { "question_id": "q1", "answer": "Paris" },
                { "question_id": "q3", "answer": "Rex" },
                { "question_id": "q7", "answer": "Elm street" },
            ]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// NIST SP 800-63B-4 does not accept security questions as a proof: by default they never
/// reset a password alone, only as the second of two different methods. An admin can allow
/// them alone, and is then warned by the policy page and by `sspr doctor`.
#[tokio::test]
async fn security_questions_alone_never_reset_unless_the_admin_says_so() {
    let s = Server::start().await;
    s.user("quin", &["staff"]).await;
    s.user("ema", &["staff"]).await;
    s.registered("ema", Method::Email, "ema@contoso.test").await;

    // By default, questions are not even offered for registration where one method is enough.
    let quin = sign_in(&s, "quin").await;
    let (st, v) = s
        .call(
            HttpMethod::PUT,
            "/api/v1/me/questions",
            Some(&quin),
            Some(json!({ "answers": [] })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // Answers registered while an admin allowed it (or before this rule) stop counting alone
    // once it is off: a user with nothing else is not registered, one with email gets email.
    s.set_policy(|p| p["questions_alone"] = json!(true)).await;
    register_questions(&s, &quin).await;
    let ema = sign_in(&s, "ema").await;
    register_questions(&s, &ema).await;
    let (_, v) = s.start_flow("quin", "reset").await;
    assert_eq!(offered(&v), ["questions"], "allowed alone: {v}");
    s.set_policy(|p| p["questions_alone"] = json!(false)).await;
    let (st, v) = s.start_flow("quin", "reset").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_ne!(v["status"], "choose_method", "questions alone reset: {v}");
    assert!(offered(&v).is_empty(), "{v}");
    let (_, v) = s.start_flow("ema", "reset").await;
    assert_eq!(offered(&v), ["email"], "{v}");

    // With two required, they count as the second; two of one kind never count as two.
    s.set_policy(|p| p["methods_required"] = json!(2)).await;
    let token = s.flow("ema").await;
    let code = s.email_code(&token, "ema@contoso.test").await;
    let (st, v) = s.verify(&token, "email", &code).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "choose_method", "{v}");
    assert_eq!(offered(&v), ["questions"], "email is spent: {v}");
    let (st, v) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&token),
            json!({ "method": "email" }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a second email code: {v}");
    let (st, c) = s
        .post(
            "/api/v1/flow/challenge",
            Some(&token),
            json!({ "method": "questions" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let answers: Vec<Value> = c["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let id = q["id"].as_str().unwrap();
            let a = match id {
                "q1" => "Paris",
                "q3" => "Rex",
                _ => "Elm street",
            };
            json!({ "question_id": id, "answer": a })
        })
        .collect();
    let (st, v) = s
        .post(
            "/api/v1/flow/verify",
            Some(&token),
            json!({ "method": "questions", "answers": answers }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "set_password", "{v}");

    // Allowed alone again: the policy page and doctor say what that means.
    s.set_policy(|p| {
        p["methods_required"] = json!(1);
        p["questions_alone"] = json!(true);
    })
    .await;
    let cfg = s.dir.path().join("doctor.toml");
    let db = &s.rt.config.database;
    let mut text = format!(
        "data_dir = \"{}\"\ndemo = false\n[database]\nurl = \"{}\"\n",
        s.rt.config.data_dir.display(),
        db.url
    );
    if let Some(schema) = &db.schema {
        text.push_str(&format!("schema = \"{schema}\"\n"));
    }
    std::fs::write(&cfg, text).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["doctor", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("WARN policy") && out.contains("security questions alone"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (st, v) = s
        .call(
            HttpMethod::GET,
            "/api/v1/admin/policy",
            Some(&s.admin_token.clone()),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["questions_alone"], true);
    s.user("boss", &["sspr-admins"]).await;
    let mut b = crate::web::Browser::new(&s);
    let csrf = b.get("/admin").await.field("csrf");
    let p = b
        .post(
            "/admin/sign-in",
            &[
                ("csrf", &csrf),
                ("next", "/admin/policy"),
                ("user", "boss"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(p.status.is_redirection(), "{}", p.body);
    let p = b.get("/admin/policy").await;
    assert!(
        p.body.contains("id=\"questions-alone-warning\""),
        "{}",
        p.body
    );
    s.set_policy(|p| p["questions_alone"] = json!(false)).await;
    let p = b.get("/admin/policy").await;
    assert!(
        !p.body.contains("id=\"questions-alone-warning\""),
        "{}",
        p.body
    );
    s.stop().await;
}

/// Passkeys in real Chromium with WebDriver's virtual authenticator: added on the security-info
/// page, used in a reset; a credential the authenticator lost, a signature counter that went
/// backwards (a cloned key) and a passkey the user removed all fail to prove anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_made_in_the_browser_resets_and_a_cloned_or_removed_one_does_not() {
    use crate::browser::Browser;
    let s = Server::start().await;
    s.user("kim", &["staff"]).await;
    s.registered("kim", Method::Email, "kim@contoso.test").await;
    let Some(b) = Browser::start_trusting("en", &s.ca()).await else {
        return;
    };
    let auth = b.add_virtual_authenticator().await;

    // Add a passkey on the security-info page.
    b.open(&s, "/register").await;
    b.fill("#user", "kim").await;
    b.fill("#password", PASSWORD).await;
    b.click("#sign-in").await;
    b.wait_for("#add-passkey").await;
    b.click("#add-passkey").await;
    b.wait_for("#create-passkey").await;
    b.click("#create-passkey").await;
    b.wait_for("#state-passkey [data-state=active]").await;
    crate::portal::shot(&b, "register-passkey").await;
    let creds = b
        .webdriver(
            "GET",
            &format!("/webauthn/authenticator/{auth}/credentials"),
            None,
        )
        .await;
    assert_eq!(creds.as_array().unwrap().len(), 1, "{creds}");
    b.click("#sign-out").await;
    b.wait_for("#go-reset").await;

    // Reset with it.
    let reset_with_passkey = || async {
        b.open(&s, "/reset").await;
        b.fill("#user", "kim").await;
        b.click("#next").await;
        b.wait_for("#method-passkey").await;
        b.click("#method-passkey").await;
        b.wait_for("#passkey").await;
        crate::portal::shot(&b, "reset-passkey").await;
        b.click("#verify").await;
    };
    reset_with_passkey().await;
    b.wait_for("#new_password").await;
    b.fill("#new_password", "a passkey-proved passphrase").await;
    b.fill("#confirm_password", "a passkey-proved passphrase")
        .await;
    b.click("#set-password").await;
    b.wait_for("#done").await;
    assert!(s.password_works("kim", "a passkey-proved passphrase").await);
    let events = s.audit("user=kim&activity=method_verified").await;
    assert!(
        events.iter().any(|e| e["details"]["method"] == "passkey"),
        "{events:#?}"
    );

    // A clone: the same key with its signature counter back at its start.
    let creds = b
        .webdriver(
            "GET",
            &format!("/webauthn/authenticator/{auth}/credentials"),
            None,
        )
        .await;
    let mut cred = creds[0].clone();
    let used = cred["signCount"].as_u64().unwrap();
    assert!(used > 0, "the authenticator counts: {cred}");
    b.webdriver(
        "DELETE",
        &format!("/webauthn/authenticator/{auth}/credentials"),
        None,
    )
    .await;
    cred["signCount"] = json!(0);
    b.webdriver(
        "POST",
        &format!("/webauthn/authenticator/{auth}/credential"),
        Some(cred.clone()),
    )
    .await;
    reset_with_passkey().await;
    b.wait_for_text("could not prove it is you").await;
    let failed = s.audit("user=kim&activity=verification_failed").await;
    assert!(
        failed
            .iter()
            .any(|e| e["details"]["passkey"] == "counter_regression"),
        "{failed:#?}"
    );

    // The authenticator lost it: the browser has nothing to answer with, nothing is proved.
    b.webdriver(
        "DELETE",
        &format!("/webauthn/authenticator/{auth}/credentials"),
        None,
    )
    .await;
    reset_with_passkey().await;
    b.wait_for_text("The passkey did not answer").await;
    assert!(!b.exists("#new_password").await);

    // Removed by the user: no longer offered.
    cred["signCount"] = json!(used + 10);
    b.webdriver(
        "POST",
        &format!("/webauthn/authenticator/{auth}/credential"),
        Some(cred),
    )
    .await;
    b.open(&s, "/register").await;
    b.fill("#user", "kim").await;
    b.fill("#password", "a passkey-proved passphrase").await;
    b.click("#sign-in").await;
    // Remove asks first: "Keep it" keeps it, "Yes, remove it" removes it.
    b.wait_for("#remove-passkey").await;
    b.click("#remove-passkey").await;
    b.wait_for("#confirm-remove").await;
    assert!(b.text("#remove-lead").await.contains("passkey"));
    b.click("#keep").await;
    b.wait_for("#state-passkey [data-state=active]").await;
    b.click("#remove-passkey").await;
    b.wait_for("#confirm-remove").await;
    b.click("#confirm-remove").await;
    // The security-info page again, saying so: only then is the next page opened (the
    // confirmation page has no passkey state either, so its absence proves nothing, and the
    // removal's answer could land after the next page was asked for).
    b.wait_for("#notice").await;
    assert!(!b.exists("#state-passkey [data-state=active]").await);
    b.open(&s, "/reset").await;
    b.fill("#user", "kim").await;
    b.click("#next").await;
    b.wait_for("#method-email").await;
    assert!(!b.exists("#method-passkey").await);
    s.stop().await;
}

/// At a login screen a passkey is named as browser-only, never offered as a choice.
#[tokio::test]
async fn the_login_screen_is_told_a_passkey_works_only_in_a_browser() {
    let s = Server::start().await;
    s.user("lou", &["staff"]).await;
    s.registered("lou", Method::Email, "lou@contoso.test").await;
    s.registered("lou", Method::Passkey, "[]").await;
    let (st, v) = s
        .call_as(
            HttpMethod::POST,
            "/api/v1/flow/start",
            None,
            Some(json!({ "user": "lou", "kind": "reset" })),
            "logon_screen",
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(offered(&v), ["email"], "{v}");
    assert_eq!(v["browser_only"], json!(["passkey"]), "{v}");
    let (_, v) = s.start_flow("lou", "reset").await;
    assert_eq!(
        offered(&v),
        ["email", "passkey"],
        "a browser gets both: {v}"
    );
    assert!(v.get("browser_only").is_none(), "{v}");
}

/// The passkey API refuses what is not a browser's answer to its own challenge, in words.
#[tokio::test]
async fn a_passkey_answer_that_is_not_one_adds_nothing() {
    let s = Server::start().await;
    s.user("max", &["staff"]).await;
    let session = sign_in(&s, "max").await;
    let answer = json!({ "credential": { "id": "x", "type": "public-key" } });
    // No challenge asked for: nothing to answer.
    let (st, v) = s
        .post("/api/v1/me/passkeys/verify", Some(&session), answer.clone())
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s
        .post("/api/v1/me/passkeys", Some(&session), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let pk = &v["options"]["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost", "{v}");
    assert_eq!(
        pk["authenticatorSelection"]["userVerification"], "required",
        "{v}"
    );
    assert!(
        pk["challenge"].as_str().is_some_and(|c| c.len() >= 22),
        "{v}"
    );
    // A malformed answer: refused, said, and the challenge is spent.
    let (st, v) = s
        .post("/api/v1/me/passkeys/verify", Some(&session), answer.clone())
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("could not be read"),
        "{v}"
    );
    let (st, _) = s
        .post("/api/v1/me/passkeys/verify", Some(&session), answer)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, me) = s
        .call(HttpMethod::GET, "/api/v1/me", Some(&session), None)
        .await;
    assert!(
        !me["methods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["method"] == "passkey"),
        "{me}"
    );
}

/// Makes every update of a flow fail (`on`) or work again, as a full disk or a database gone
/// away would at that one write.
async fn flow_updates_fail(s: &Server, on: bool) {
    let postgres = s.rt.config.database.schema.is_some();
    let sql = match (postgres, on) {
        (false, true) => {
            "CREATE TRIGGER test_fault BEFORE UPDATE ON flows \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
        }
        (false, false) => "DROP TRIGGER test_fault;",
        (true, true) => {
            "CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql \
             AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$; \
             CREATE TRIGGER test_fault BEFORE UPDATE ON flows \
             FOR EACH ROW EXECUTE FUNCTION test_fault();"
        }
        (true, false) => "DROP TRIGGER test_fault ON flows; DROP FUNCTION test_fault();",
    };
    s.exec_sql(sql).await;
}

#[tokio::test]
async fn a_store_fault_as_a_proof_is_accepted_spends_nothing_and_the_retry_works() {
    let s = Server::start().await;
    s.user("rita", &["staff"]).await;
    s.registered("rita", Method::Email, "rita@contoso.test")
        .await;
    let session = sign_in(&s, "rita").await;
    let codes = make_codes(&s, &session).await;
    let by_mail = s.flow("rita").await;
    let code = s.email_code(&by_mail, "rita@contoso.test").await;

    // The store fails at the flow's write, after the proof was found right.
    flow_updates_fail(&s, true).await;
    let (st, v) = s.verify(&by_mail, "email", &code).await;
    assert!(st.is_server_error(), "{st} {v}");
    let (st, v) = verify_with(&s, "rita", &codes[0]).await;
    assert!(st.is_server_error(), "{st} {v}");
    let by_recovery = v["flow_token"].as_str().unwrap().to_string();
    flow_updates_fail(&s, false).await;

    // Nothing was spent: the same emailed code and the same recovery code prove it now.
    let (st, v) = s.verify(&by_mail, "email", &code).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "the emailed code was used up by the failed step: {v}"
    );
    assert_eq!(v["status"], "set_password", "{v}");
    let (st, v) = s.verify(&by_recovery, "recovery_code", &codes[0]).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "the recovery code was used up by the failed step: {v}"
    );
    assert_eq!(codes_left(&s, &session).await, Some(9));
    // One event per proof that counted, each with what it spent.
    let ev = s.audit("user=rita&activity=method_verified").await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev.iter().any(|e| e["details"]["codes_left"] == 9), "{ev:?}");
    s.stop().await;
}
