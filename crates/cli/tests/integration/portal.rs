//! The web portal in a real headless Chromium: a user registers and resets with two methods,
//! unlocks in Chinese, and an administrator uses every admin page. The browser runs the
//! real JavaScript (the proof of work, the strength meter) under the real CSP.
//!
//! With `SSPR_SCREENSHOTS=<dir>` the journeys also save the README's screenshots there.

use std::path::Path;

use reqwest::Method as HttpMethod;
use serde_json::json;

use crate::browser::Browser;
use crate::harness::{PASSWORD, Server, wrong};

const NEW_PASSWORD: &str = "violet tuba harbour forty-two";

pub(crate) async fn shot(b: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("SSPR_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        b.screenshot(&Path::new(&dir).join(format!("{name}.png")))
            .await;
    }
}

/// The strength meter's reading.
/// The meter's score once the server has answered what was typed (or the page fell back to
/// its guess).
async fn meter(b: &Browser) -> u64 {
    for _ in 0..100 {
        let verdict = b
            .execute("return document.querySelector('#strength-text').dataset.verdict || '';")
            .await;
        if verdict.as_str().is_some_and(|v| v != "pending") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    b.execute("return document.querySelector('#strength').value;")
        .await
        .as_f64()
        .unwrap() as u64
}

/// The strength meter asks the server's rules: a password with the user ID in it, or too
/// short, is never praised, and the meter says why in the rules' words; a good one is.
#[tokio::test]
async fn the_strength_meter_says_what_the_server_will_say() {
    let s = Server::start().await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/change").await;
    b.fill("#user", "quinn").await;
    let verdict = || async {
        b.execute("return document.querySelector('#strength-text').dataset.verdict;")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // Long and varied, so a guess would call it strong; but it holds the user ID.
    b.fill("#new_password", "Quinn-Violet-Harbour-77!").await;
    assert_eq!(meter(&b).await, 0);
    assert_eq!(verdict().await, "refused");
    let words = b.text("#strength-text").await;
    assert!(words.contains("user"), "{words}");
    // Varied but short: the minimum length speaks.
    b.fill("#new_password", "Xy7#kq9!Lm").await;
    assert_eq!(meter(&b).await, 0);
    assert!(b.text("#strength-text").await.contains("too short"));
    // A passphrase the rules take.
    b.fill("#new_password", NEW_PASSWORD).await;
    assert!(meter(&b).await >= 2);
    assert_eq!(verdict().await, "accepted");
    b.close().await;
}

fn totp_now(secret_b32: &str, now: i64) -> String {
    let secret = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, secret_b32)
        .unwrap_or_else(|| panic!("not base32: {secret_b32}"));
    totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret,
        None,
        String::new(),
    )
    .generate(now as u64)
}

#[tokio::test]
async fn portal_a_user_registers_three_methods_then_resets_with_two_in_english() {
    let s = Server::start().await;
    s.set_policy(|p| p["methods_required"] = json!(2)).await;
    s.user("alice", &["staff"]).await;
    let Some(b) = Browser::start("en").await else {
        return;
    };

    // Registration: sign in with the current password.
    b.open(&s, "/register").await;
    shot(&b, "register-sign-in").await;
    b.fill("#user", "alice").await;
    b.fill("#password", PASSWORD).await;
    b.click("#sign-in").await;
    b.wait_for("#status[data-registered=false]").await;

    // Email: a code goes to the real SMTP listener and is typed back.
    let to = "alice@contoso.test";
    let before = s.mail_count(to);
    b.fill("#email", to).await;
    b.click("#add-email").await;
    b.wait_for("#email-code").await;
    let code = s.wait_mail_code(to, before).await;
    b.fill("#email-code", &code).await;
    b.click("#verify-email").await;
    b.wait_for("#state-email [data-state=active]").await;

    // Phone: the code goes through the stand-in SMS gateway.
    let before = s.sms.texts().len();
    b.fill("#phone", "+49 151 12345678").await;
    b.click("#add-phone").await;
    b.wait_for("#phone-code").await;
    let code = s.wait_sms_code(before).await;
    b.fill("#phone-code", &code).await;
    b.click("#verify-phone").await;
    b.wait_for("#state-sms [data-state=active]").await;
    b.wait_for("#status[data-registered=true]").await;

    // Authenticator app: the QR code renders under the CSP; the key enrols.
    b.click("#enrol-totp").await;
    b.wait_for("#totp-qr svg").await;
    shot(&b, "register-totp").await;
    let secret: String = b
        .text("#totp-secret")
        .await
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    b.fill("#totp-code", &totp_now(&secret, s.clock_now()))
        .await;
    b.click("#verify-totp").await;
    b.wait_for("#state-totp [data-state=active]").await;
    shot(&b, "register-home").await;
    b.click("#sign-out").await;
    b.wait_for("#go-reset").await;

    // Reset: the browser check runs in the page before the form goes.
    b.click("#go-reset").await;
    b.wait_for("#user").await;
    shot(&b, "reset-start").await;
    b.fill("#user", "alice").await;
    b.click("#next").await;
    b.wait_for("#method-email").await;
    assert!(b.text("#step").await.contains("Step 1 of 2"));
    assert!(b.exists("#method-sms").await && b.exists("#method-totp").await);
    shot(&b, "reset-methods").await;

    // Method 1, email, with one wrong code first: an error with a support code.
    let before = s.mail_count(to);
    b.click("#method-email").await;
    b.wait_for("#code").await;
    let code = s.wait_mail_code(to, before).await;
    b.fill("#code", &wrong(&code)).await;
    b.click("#verify").await;
    b.wait_for("#error .support-code").await;
    let support = b.text("#error .support-code").await;
    let ev = s.audit(&format!("support_code={support}")).await;
    assert_eq!(
        ev.len(),
        1,
        "support code {support} finds its event: {ev:?}"
    );
    assert_eq!(ev[0]["client_type"], "browser");
    b.fill("#code", &code).await;
    b.click("#verify").await;
    b.wait_for_text("Step 2 of 2").await;
    assert!(
        !b.exists("#method-email").await,
        "a used method is offered again"
    );

    // Method 2, the text message.
    let before = s.sms.texts().len();
    b.click("#method-sms").await;
    b.wait_for("#code").await;
    let code = s.wait_sms_code(before).await;
    b.fill("#code", &code).await;
    b.click("#verify").await;

    // New password: the rules up front, the meter reacting, a weak one refused in words.
    b.wait_for("#new_password").await;
    assert!(b.text("#rules").await.contains("At least 15"));
    b.fill("#new_password", "aaaaaaaaaaaaaaa").await;
    assert_eq!(meter(&b).await, 0);
    b.fill("#confirm_password", "aaaaaaaaaaaaaaa").await;
    b.click("#set-password").await;
    b.wait_for("#error").await;
    b.fill("#new_password", NEW_PASSWORD).await;
    let score = meter(&b).await;
    assert!(score >= 3, "meter {score} for a long passphrase");
    b.fill("#confirm_password", NEW_PASSWORD).await;
    shot(&b, "reset-password").await;
    b.click("#set-password").await;
    b.wait_for("#done").await;
    shot(&b, "reset-done").await;
    assert!(s.password_works("alice", NEW_PASSWORD).await);
    assert!(
        b.cookie("__Host-sspr-flow").await.is_none(),
        "flow cookie left behind"
    );
    let ev = s
        .audit("activity=reset_password&result=success&client_type=browser")
        .await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    b.close().await;
    s.stop().await;
}

#[tokio::test]
async fn portal_a_locked_user_unlocks_in_chinese_and_the_switcher_changes_language() {
    let s = Server::start().await;
    s.registered_user("bob").await;
    s.rt.builtin
        .set_flag("bob", sspr_store::Flag::Locked, true)
        .await
        .unwrap();
    let Some(b) = Browser::start("zh-CN").await else {
        return;
    };
    b.open(&s, "/").await;
    let lang = b.execute("return document.documentElement.lang;").await;
    assert_eq!(lang, "zh-CN");
    assert!(b.page_text().await.contains("解锁我的账户"));
    shot(&b, "home-zh").await;

    b.click("#go-unlock").await;
    b.fill("#user", "bob").await;
    b.click("#next").await;
    b.wait_for("#method-email").await;
    assert!(b.page_text().await.contains("验证你的身份"));
    let to = "bob@contoso.test";
    let before = s.mail_count(to);
    b.click("#method-email").await;
    b.wait_for("#code").await;
    let mail = s.wait_mail_code(to, before).await;
    b.fill("#code", &mail).await;
    b.click("#verify").await;
    b.wait_for("#unlock").await;
    b.click("#unlock").await;
    b.wait_for("#done").await;
    assert!(b.page_text().await.contains("完成"));
    shot(&b, "unlock-done-zh").await;
    let u = s.rt.app.directory.find_user("bob").await.unwrap().unwrap();
    assert!(!u.locked, "still locked");
    assert!(
        s.password_works("bob", PASSWORD).await,
        "unlock changed the password"
    );

    // The switcher: English now, and it sticks on the next page.
    b.open(&s, "/").await;
    b.click("a[hreflang=en]").await;
    b.wait_for_text("Locked out or forgot your password?").await;
    b.open(&s, "/reset").await;
    b.wait_for_text("Reset your password").await;
    b.close().await;
    s.stop().await;
}

#[tokio::test]
async fn portal_an_administrator_uses_insights_policy_users_and_audit_in_both_languages() {
    let s = Server::start().await;
    s.user("boss", &["sspr-admins"]).await;
    s.registered_user("carol").await;
    // Some activity for the charts: one reset through the API.
    let t = s.flow("carol").await;
    let code = s.email_code(&t, "carol@contoso.test").await;
    s.verify(&t, "email", &code).await;
    let (st, _) = s.set_password(&t, NEW_PASSWORD).await;
    assert!(st.is_success());

    let Some(b) = Browser::start("en").await else {
        return;
    };
    // A user who is not an administrator gets the same answer as a wrong password.
    b.open(&s, "/admin").await;
    b.fill("#admin-user", "carol").await;
    b.fill("#admin-password", NEW_PASSWORD).await;
    b.click("#admin-sign-in").await;
    b.wait_for("#error").await;
    assert!(!b.exists("#nav-policy").await);

    b.fill("#admin-user", "boss").await;
    b.fill("#admin-password", PASSWORD).await;
    b.click("#admin-sign-in").await;
    b.wait_for("#chart-resets svg").await;
    assert!(
        b.text("#totals").await.contains('1'),
        "{}",
        b.text("#totals").await
    );
    shot(&b, "admin-insights").await;

    // Policy: preview shows what users will see, save stores it (audited).
    b.click("#nav-policy").await;
    b.wait_for("#policy-form").await;
    b.select("#methods_required", "2").await;
    b.click("#preview").await;
    b.wait_for("#preview-result").await;
    shot(&b, "admin-policy-preview").await;
    b.click("#save").await;
    b.wait_for("#policy-saved").await;
    let (st, p) = s
        .call(
            HttpMethod::GET,
            "/api/v1/admin/policy",
            Some(&s.admin_token),
            None,
        )
        .await;
    assert!(st.is_success());
    assert_eq!(p["methods_required"], 2, "{p}");
    let ev = s.audit("activity=policy_changed").await;
    assert_eq!(ev.last().unwrap()["actor"], "admin:boss", "{ev:?}");
    assert_eq!(ev.last().unwrap()["client_type"], "browser");

    // Users: the helpdesk view of one user.
    b.click("#nav-users").await;
    b.fill("#user-q", "carol").await;
    b.click("#user-search").await;
    b.wait_for("#user-summary").await;
    assert!(b.text("#user-summary").await.contains("carol"));
    assert_eq!(b.text("#sum-blocked").await.trim(), "No");

    // Audit: the table, a filter, and the CSV export fetched with the session cookie.
    b.click("#nav-audit").await;
    b.wait_for("#audit-table").await;
    assert!(b.text("#audit-table").await.contains("reset_password"));
    shot(&b, "admin-audit").await;
    let csv = b
        .execute("return fetch(document.querySelector('#export-csv').href).then(r => r.text());")
        .await;
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("id,time,activity"), "{csv}");
    assert!(csv.contains("policy_changed"), "{csv}");
    let ev = s.audit("activity=audit_exported").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["actor"], "admin:boss");
    b.click("#admin-sign-out").await;
    b.wait_for("#go-reset").await;
    b.open(&s, "/admin/audit").await;
    b.wait_for("#admin-sign-in").await;
    b.close().await;

    // The same pages in Chinese.
    let Some(b) = Browser::start("zh-CN").await else {
        return;
    };
    b.open(&s, "/admin").await;
    b.fill("#admin-user", "boss").await;
    b.fill("#admin-password", PASSWORD).await;
    b.click("#admin-sign-in").await;
    b.wait_for("#chart-resets svg").await;
    assert!(b.text("#nav-insights").await.contains("使用情况"));
    shot(&b, "admin-insights-zh").await;
    b.click("#nav-policy").await;
    b.wait_for("#policy-form").await;
    assert!(b.page_text().await.contains("策略"));
    b.close().await;
    s.stop().await;
}

#[tokio::test]
async fn portal_an_expired_password_is_changed_from_the_sign_in_page() {
    let s = Server::start_with(|c| c.directory.password_max_age_days = 90).await;
    s.user("quinn", &["staff"]).await;
    s.clock.advance(91 * 86_400);
    let Some(b) = Browser::start("en").await else {
        return;
    };
    // Signing in with the expired (but right) password leads to the change, the ID kept.
    b.open(&s, "/register").await;
    b.fill("#user", "quinn").await;
    b.fill("#password", PASSWORD).await;
    b.click("#sign-in").await;
    b.wait_for("#change-form").await;
    shot(&b, "change-required").await;
    assert!(b.text("#error").await.contains("expired"));
    assert_eq!(
        b.execute("return document.querySelector('#user').value;")
            .await,
        "quinn"
    );
    b.fill("#current_password", PASSWORD).await;
    b.fill("#new_password", NEW_PASSWORD).await;
    assert!(meter(&b).await >= 3, "the strength meter runs here too");
    b.fill("#confirm_password", NEW_PASSWORD).await;
    b.click("#change-password").await;
    b.wait_for("#done").await;
    assert!(b.text("#done").await.contains("has been changed"));
    shot(&b, "change-done").await;
    assert!(s.password_works("quinn", NEW_PASSWORD).await);
    b.close().await;
}

#[tokio::test]
async fn portal_the_admin_expiry_page_in_a_browser() {
    let s = Server::start_with(|c| c.directory.password_max_age_days = 30).await;
    for login in ["amy", "ben", "cat", "dan", "eve"] {
        s.registered_user(login).await;
        s.clock.advance(3 * 86_400);
    }
    s.clock.advance(12 * 86_400);
    s.user("boss", &["sspr-admins"]).await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/admin").await;
    b.fill("#admin-user", "boss").await;
    b.fill("#admin-password", PASSWORD).await;
    b.click("#admin-sign-in").await;
    b.click("#nav-expiry").await;
    b.wait_for("#expiry-table").await;
    // amy 3 days left, ben 6, cat 9 and dan 12; eve (15) and boss are further off.
    assert_eq!(b.text("#expiry-3 .num").await.trim(), "1");
    assert_eq!(b.text("#expiry-7 .num").await.trim(), "1");
    assert_eq!(b.text("#expiry-14 .num").await.trim(), "2");
    assert_eq!(b.text("#expiry-would").await.trim(), "4");
    shot(&b, "admin-expiry").await;
    b.close().await;
    s.stop().await;
}

/// Chooses the questions and gives every drawn one the same answer.
async fn answer_drawn_questions(b: &Browser, answer: &str) {
    b.click("#method-questions").await;
    b.wait_for("input[id^=answer-]").await;
    let fields = b
        .client()
        .find_all(fantoccini::Locator::Css("input[id^=answer-]"))
        .await
        .unwrap();
    for f in &fields {
        f.send_keys(answer).await.unwrap();
    }
    b.click("#verify").await;
}

/// Wrong answers to security questions lead back to the choice of method with the error, and
/// the questions are drawn afresh when chosen again: not the same form again, whose answers
/// could only meet "No code is waiting" (issue 20's dead end).
#[tokio::test]
async fn wrong_answers_in_the_portal_lead_to_a_new_draw_not_a_dead_end() {
    let s = Server::start().await;
    s.set_policy(|p| p["questions_alone"] = json!(true)).await;
    s.user("quin", &["staff"]).await;
    s.answered("quin", &["q1", "q3", "q7"], "answer").await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/reset").await;
    b.fill("#user", "quin").await;
    b.click("#next").await;
    b.wait_for("#method-questions").await;
    answer_drawn_questions(&b, "wrong").await;
    b.wait_for_text("not right").await;
    assert!(
        !b.page_text().await.contains("No code is waiting"),
        "{}",
        b.page_text().await
    );
    // Chosen again: a fresh draw, and the right answers go through.
    b.wait_for("#method-questions").await;
    answer_drawn_questions(&b, "answer").await;
    b.wait_for("#new_password").await;
    s.stop().await;
}

/// WCAG 2.2 asks 3:1 between a focus indicator and what it sits on. The ring, as Chromium
/// parsed the stylesheet, against the page's and the card's backgrounds as rendered.
#[tokio::test]
async fn the_focus_ring_stands_out_three_to_one_from_the_page_and_the_card() {
    let s = Server::start().await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/reset").await;
    b.wait_for("#user").await;
    let v = b
        .execute(
            "const rule = [...document.styleSheets[0].cssRules]
               .find(r => r.selectorText === ':focus-visible');
             return [rule ? rule.style.outlineColor : '',
                     getComputedStyle(document.body).backgroundColor,
                     getComputedStyle(document.querySelector('main')).backgroundColor];",
        )
        .await;
    fn rgb(css: &str) -> [f64; 3] {
        let n: Vec<f64> = css
            .trim_start_matches("rgba(")
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .map(|x| x.trim().parse().unwrap())
            .collect();
        [n[0], n[1], n[2]]
    }
    fn luminance(c: [f64; 3]) -> f64 {
        let f = |x: f64| {
            let x = x / 255.0;
            if x <= 0.03928 {
                x / 12.92
            } else {
                ((x + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2])
    }
    let contrast = |a: &str, b: &str| {
        let (x, y) = (luminance(rgb(a)), luminance(rgb(b)));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    };
    let ring = v[0].as_str().unwrap();
    assert!(!ring.is_empty(), "no :focus-visible rule: {v}");
    for bg in [v[1].as_str().unwrap(), v[2].as_str().unwrap()] {
        let c = contrast(ring, bg);
        assert!(c >= 3.0, "focus ring {ring} on {bg}: {c:.2}:1");
    }
    s.stop().await;
}

/// A user blocked from self-service by wrong codes: the administrator lifts the block from the
/// user's page (after checking who is asking), audited with their name, and the user resets.
#[tokio::test]
async fn an_administrator_lifts_a_self_service_block_from_the_users_page() {
    let s = Server::start().await;
    s.user("boss", &["sspr-admins"]).await;
    s.registered_user("bea").await;
    let token = s.flow("bea").await;
    s.email_code(&token, "bea@contoso.test").await;
    let mut blocked = false;
    for _ in 0..10 {
        let (st, _) = s.verify(&token, "email", "000000").await;
        if st == reqwest::StatusCode::TOO_MANY_REQUESTS {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "wrong codes never blocked");
    let (st, v) = s.start_flow("bea", "reset").await;
    assert!(
        st == reqwest::StatusCode::TOO_MANY_REQUESTS || v["status"] != "choose_method",
        "still blocked: {st} {v}"
    );

    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/admin/users?q=bea").await;
    b.fill("#admin-user", "boss").await;
    b.fill("#admin-password", PASSWORD).await;
    b.click("#admin-sign-in").await;
    b.wait_for("#nav-users").await;
    b.open(&s, "/admin/users?q=bea").await;
    b.wait_for("#unblock").await;
    b.click("#unblock").await;
    b.wait_for("#unblocked").await;
    assert!(
        !b.exists("#unblock").await,
        "the block is gone from the page"
    );

    let token = s.flow("bea").await;
    let code = s.email_code(&token, "bea@contoso.test").await;
    let (st, v) = s.verify(&token, "email", &code).await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    let ev = s.audit("activity=admin_user_changed").await;
    assert!(
        ev.iter().any(|e| e["reason"] == "unblocked"
            && e["actor"] == "admin:boss"
            && e["target"] == "bea"),
        "{ev:#?}"
    );
    s.stop().await;
}

/// A reset in Chromium with JavaScript off: no browser check runs, the page says so, and the
/// form goes through (on the no-script quota).
#[tokio::test]
async fn a_reset_starts_in_chromium_with_javascript_off() {
    let s = Server::start().await;
    s.registered_user("nora").await;
    let Some(b) = Browser::start_without_javascript("en").await else {
        return;
    };
    b.open(&s, "/reset").await;
    b.wait_for("#user").await;
    assert!(
        b.page_text().await.contains("JavaScript is off"),
        "{}",
        b.page_text().await
    );
    assert!(!b.page_text().await.contains("Checking your browser"));
    b.fill("#user", "nora").await;
    b.click("#next").await;
    b.wait_for("#method-email").await;
    s.stop().await;
}

/// "Send a new code" on the code page, offered once the first code has had 30 s to arrive
/// (a countdown says how long): a new code goes out and the old one stops working;
/// asked for too often, the code limit answers with when to try again.
#[tokio::test]
async fn a_new_code_can_be_asked_for_from_the_code_page() {
    let s = Server::start().await;
    s.registered_user("rene").await;
    let to = "rene@contoso.test";
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/reset").await;
    b.fill("#user", "rene").await;
    b.click("#next").await;
    b.wait_for("#method-email").await;
    let before = s.mail_count(to);
    b.click("#method-email").await;
    b.wait_for("#code").await;
    let first = s.wait_mail_code(to, before).await;
    // Not at once: the code just sent has time to arrive, and the page says how long.
    b.wait_for_text("You can ask for a new code in").await;
    assert_eq!(
        b.execute("return document.getElementById('resend').disabled;")
            .await,
        true
    );
    s.clock.advance(30);
    b.client().refresh().await.unwrap();
    b.wait_for("#code").await;
    assert_eq!(
        b.execute("return document.getElementById('resend').disabled;")
            .await,
        false
    );
    assert!(
        !b.page_text()
            .await
            .contains("You can ask for a new code in")
    );
    let before = s.mail_count(to);
    b.click("#resend").await;
    b.wait_for("#code").await;
    let second = s.wait_mail_code(to, before).await;
    assert_ne!(first, second);
    b.fill("#code", &first).await;
    b.click("#verify").await;
    b.wait_for_text("not right").await;
    b.fill("#code", &second).await;
    b.click("#verify").await;
    b.wait_for("#new_password").await;
    s.stop().await;
}

/// Registration at admin sign-in in Chromium: an administrator without security info is asked
/// first; "Not now" goes on to the page asked for while skips are left; once they are used up,
/// only "Register now" is offered, and it opens the security-info page without a second
/// sign-in.
#[tokio::test]
async fn an_unregistered_administrator_is_asked_to_register_at_sign_in() {
    let s = Server::start().await;
    s.user("boss", &["sspr-admins"]).await;
    s.set_policy(|p| {
        p["require_registration"] = json!(true);
        p["registration_skips"] = json!(1);
    })
    .await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    let sign_in = || async {
        b.open(&s, "/admin/policy").await;
        b.fill("#admin-user", "boss").await;
        b.fill("#admin-password", PASSWORD).await;
        b.click("#admin-sign-in").await;
        b.wait_for("#register-first").await;
    };
    sign_in().await;
    assert!(
        b.text("#skips-left").await.contains("last time"),
        "{}",
        b.text("#register-first").await
    );
    shot(&b, "admin-register-first").await;
    b.click("#skip-for-now").await;
    b.wait_for("#nav-policy").await;
    assert!(b.current_url().await.ends_with("/admin/policy"));

    // The skip is used: the next sign-in offers registration only, and it opens.
    b.click("#admin-sign-out").await;
    // Signing out lands on the home page; only then is the next page opened (else the
    // sign-out's redirect may arrive after it).
    b.wait_for("#go-reset").await;
    sign_in().await;
    assert!(b.text("#register-required").await.contains("register now"));
    assert!(!b.exists("#skip-for-now").await);
    b.click("#register-now").await;
    b.wait_for("#who").await;
    assert!(b.text("#who").await.contains("boss"));
    b.close().await;
    s.stop().await;
}
