//! Moving about the portal as people do: reloading, going Back, switching language half-way.
//! Every step that changes something answers its form with a redirect to a page that can be
//! fetched again (post/redirect/get), so none of these sends a form twice: no second code,
//! no other questions, no lost input. Errors are tied to the fields they are about.

use serde_json::json;

use crate::browser::Browser;
use crate::harness::{PASSWORD, Server, wrong};

/// The field's attribute, or "".
async fn attr(b: &Browser, css: &str, name: &str) -> String {
    b.execute_with(
        "var e = document.querySelector(arguments[0]); return e ? (e.getAttribute(arguments[1]) || '') : '';",
        vec![json!(css), json!(name)],
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Whether `field` names an element holding `text` in its `aria-describedby`.
async fn described_by(b: &Browser, field: &str, text: &str) -> bool {
    b.execute_with(
        "var e = document.querySelector(arguments[0]), text = arguments[1]; if (!e) return false;
         var ids = (e.getAttribute('aria-describedby') || '').split(/\\s+/);
         return ids.some(function (id) { var d = id && document.getElementById(id);
           return !!d && d.textContent.indexOf(text) !== -1; });",
        vec![json!(field), json!(text)],
    )
    .await
    .as_bool()
    .unwrap_or(false)
}

/// Starts a reset for `user` and chooses email: the code page is open. The code, and how
/// many mails `to` had before it.
async fn email_code_page(b: &Browser, s: &Server, user: &str, to: &str) -> (String, usize) {
    b.open(s, "/reset").await;
    b.fill("#user", user).await;
    b.click("#next").await;
    b.wait_for("#method-email").await;
    let before = s.mail_count(to);
    b.click("#method-email").await;
    b.wait_for("#code").await;
    (s.wait_mail_code(to, before).await, before)
}

#[tokio::test]
async fn a_code_page_survives_reload_a_language_switch_and_back_without_a_second_code() {
    let s = Server::start().await;
    s.registered_user("rita").await;
    let to = "rita@contoso.test";
    let Some(b) = Browser::start("en").await else {
        return;
    };
    let (code, before) = email_code_page(&b, &s, "rita", to).await;
    let url = b.current_url().await;
    assert!(
        url.ends_with("/flow/verify?method=email"),
        "the code page is not a page of its own: {url}"
    );

    // Reload: the same page, and no second code.
    b.client().refresh().await.unwrap();
    b.wait_for("#code").await;
    assert!(
        b.text("#code-hint").await.contains("r•"),
        "{}",
        b.text("#code-hint").await
    );

    // A wrong code, in Chinese: the error is the code field's description.
    b.click("a[hreflang=zh-CN]").await;
    b.wait_for_text("简体中文").await;
    b.wait_for("#code").await;
    assert_eq!(
        b.execute("return document.documentElement.lang;").await,
        "zh-CN"
    );
    b.fill("#code", &wrong(&code)).await;
    b.click("#verify").await;
    b.wait_for("#error").await;
    assert_eq!(attr(&b, "#code", "aria-invalid").await, "true");
    let error = b.text("#error p").await;
    assert!(!error.is_empty());
    assert!(
        described_by(&b, "#code", &error).await,
        "the error is not tied to the code field: {}",
        attr(&b, "#code", "aria-describedby").await
    );

    // Switching back to English from the error page stays on the code page.
    b.click("a[hreflang=en]").await;
    b.wait_for("#code").await;
    b.wait_for_text("Verify").await;
    assert!(
        b.current_url().await.contains("/flow/verify?method=email"),
        "{}",
        b.current_url().await
    );
    assert_eq!(
        s.mail_count(to),
        before + 1,
        "a reload or a language switch sent another code"
    );
    b.fill("#code", &code).await;
    b.click("#verify").await;
    b.wait_for("#new_password").await;

    // Back from the password page: no "Confirm form resubmission", the flow where it was.
    b.client().back().await.unwrap();
    b.wait_for("#new_password").await;
    assert!(
        !b.page_text().await.contains("ERR_CACHE_MISS"),
        "{}",
        b.page_text().await
    );
    assert_eq!(s.mail_count(to), before + 1);
    b.close().await;
    s.stop().await;
}

#[tokio::test]
async fn drawn_questions_come_back_the_same_after_a_reload_and_in_the_other_language() {
    let s = Server::start().await;
    s.set_policy(|p| p["questions_alone"] = json!(true)).await;
    s.user("quinn", &["staff"]).await;
    s.answered("quinn", &["q1", "q3", "q7", "q9"], "answer")
        .await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/reset").await;
    b.fill("#user", "quinn").await;
    b.click("#next").await;
    b.wait_for("#method-questions").await;
    b.click("#method-questions").await;
    b.wait_for("input[name^=answer-]").await;
    let ids = "return Array.prototype.map.call(document.querySelectorAll('input[name^=answer-]'), function (e) { return e.name; }).join(',');";
    let drawn = b.execute(ids).await;
    b.client().refresh().await.unwrap();
    b.wait_for("input[name^=answer-]").await;
    assert_eq!(b.execute(ids).await, drawn, "a reload drew other questions");
    b.click("a[hreflang=zh-CN]").await;
    b.wait_for_text("简体中文").await;
    b.wait_for("input[name^=answer-]").await;
    assert_eq!(
        b.execute(ids).await,
        drawn,
        "a language switch drew other questions"
    );
    let drawn_events = s.audit("activity=questions_drawn").await;
    assert_eq!(drawn_events.len(), 1, "{drawn_events:?}");
    b.close().await;
    s.stop().await;
}

#[tokio::test]
async fn adding_an_email_redirects_and_a_reload_sends_no_second_code() {
    let s = Server::start().await;
    s.user("ivy", &["staff"]).await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/register").await;
    b.fill("#user", "ivy").await;
    b.fill("#password", PASSWORD).await;
    b.click("#sign-in").await;
    b.wait_for("#email").await;
    let to = "ivy@contoso.test";
    let before = s.mail_count(to);
    b.fill("#email", to).await;
    b.click("#add-email").await;
    b.wait_for("#email-code").await;
    b.wait_for("#notice").await;
    s.wait_mail_code(to, before).await;
    assert!(
        b.current_url().await.ends_with("/register"),
        "{}",
        b.current_url().await
    );
    assert_eq!(
        b.execute("return document.activeElement && document.activeElement.id;")
            .await,
        "email-code"
    );
    b.client().refresh().await.unwrap();
    b.wait_for("#email-code").await;
    assert!(!b.exists("#notice").await, "the notice is shown once");
    assert_eq!(s.mail_count(to), before + 1, "a reload sent another code");
    b.close().await;
    s.stop().await;
}

#[tokio::test]
async fn the_policy_form_keeps_unsaved_edits_across_a_language_switch_and_ties_errors_to_fields() {
    let s = Server::start().await;
    s.user("boss", &["sspr-admins"]).await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/admin/policy").await;
    b.fill("#admin-user", "boss").await;
    b.fill("#admin-password", PASSWORD).await;
    b.click("#admin-sign-in").await;
    b.wait_for("#reconfirm_days").await;

    // A number that is not one: the summary links to the field, the field says why.
    b.fill("#reconfirm_days", "ninety").await;
    b.click("#preview").await;
    b.wait_for("#error").await;
    assert_eq!(attr(&b, "#reconfirm_days", "aria-invalid").await, "true");
    assert!(b.exists("#error a[href='#reconfirm_days']").await);
    let why = b.text("#reconfirm_days-error").await;
    assert!(why.contains("whole number"), "{why}");
    assert!(described_by(&b, "#reconfirm_days", &why).await);
    assert_eq!(attr(&b, "#questions_to_answer", "aria-invalid").await, "");

    // Unsaved edits ride along into the other language.
    b.fill("#reconfirm_days", "45").await;
    b.fill("#questions_to_answer", "2").await;
    b.click("a[hreflang=zh-CN]").await;
    b.wait_for("#policy-form[data-restored=true]").await;
    assert_eq!(
        b.execute("return document.documentElement.lang;").await,
        "zh-CN"
    );
    assert_eq!(
        b.prop("#reconfirm_days", "value").await.as_deref(),
        Some("45")
    );
    assert_eq!(
        b.prop("#questions_to_answer", "value").await.as_deref(),
        Some("2")
    );
    // Nothing was saved by the switch.
    let saved = s.rt.app.policy().await.unwrap();
    assert_ne!(saved.reconfirm_days, 45);

    // Saving redirects to the page, which says so once: a reload saves nothing again.
    b.click("#save").await;
    b.wait_for("#policy-saved").await;
    assert!(
        b.current_url().await.ends_with("/admin/policy"),
        "{}",
        b.current_url().await
    );
    assert_eq!(s.rt.app.policy().await.unwrap().reconfirm_days, 45);
    b.client().refresh().await.unwrap();
    b.wait_for("#policy-form").await;
    assert!(!b.exists("#policy-saved").await, "the notice is shown once");
    let changed = s.audit("activity=policy_changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    b.close().await;
    s.stop().await;
}

/// The wrong code that blocks the account says so at once (not "try again", then "blocked"),
/// and the flow offers no method while the block lasts.
#[tokio::test]
async fn the_miss_that_blocks_an_account_says_so_and_nothing_more_is_offered() {
    let s = Server::start().await;
    s.registered_user("bo").await;
    let to = "bo@contoso.test";
    let Some(b) = Browser::start("en").await else {
        return;
    };
    let (code, _) = email_code_page(&b, &s, "bo", to).await;
    // Four misses: "not right", with the code field to try again.
    for _ in 0..4 {
        b.fill("#code", &wrong(&code)).await;
        b.click("#verify").await;
        b.wait_for_text("not right").await;
        b.wait_for("#code").await;
    }
    // The fifth blocks the account: that is what the page says, and only that.
    b.fill("#code", &wrong(&code)).await;
    b.click("#verify").await;
    b.wait_for_text("temporarily blocked").await;
    let text = b.page_text().await;
    assert!(!text.contains("not right"), "{text}");
    assert!(!b.exists("#code").await, "the code field is still offered");
    assert!(
        !b.exists("[id^=method-]").await,
        "methods are still offered"
    );
    // Coming back to the code page: it leads to the flow, which says the same, and no more.
    b.open(&s, "/flow/verify?method=email").await;
    b.wait_for_text("temporarily blocked").await;
    assert!(
        !b.exists("#code").await,
        "the code field is offered while blocked"
    );
    assert!(
        !b.exists("[id^=method-]").await,
        "methods are offered while blocked"
    );
    let ev = s.audit("user=bo&activity=blocked_from_reset").await;
    assert!(!ev.is_empty(), "{ev:?}");
    b.close().await;
    s.stop().await;
}

/// The change form and the admin sign-in tie their error to the field it is about.
#[tokio::test]
async fn sign_in_and_change_errors_are_tied_to_their_fields() {
    let s = Server::start().await;
    s.user("cam", &["staff"]).await;
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/change").await;
    b.fill("#user", "cam").await;
    b.fill("#current_password", "not the password at all").await;
    b.fill("#new_password", "violet tuba harbour forty-two")
        .await;
    b.fill("#confirm_password", "violet tuba harbour forty-two")
        .await;
    b.click("button[type=submit]").await;
    b.wait_for("#error").await;
    let error = b.text("#error p").await;
    assert_eq!(attr(&b, "#current_password", "aria-invalid").await, "true");
    assert!(described_by(&b, "#current_password", &error).await);
    assert_eq!(attr(&b, "#new_password", "aria-invalid").await, "");

    b.fill("#current_password", PASSWORD).await;
    b.fill("#new_password", "aaaaaaaaaaaaaaaa").await;
    b.fill("#confirm_password", "aaaaaaaaaaaaaaaa").await;
    b.click("button[type=submit]").await;
    b.wait_for("#error").await;
    let error = b.text("#error p").await;
    assert_eq!(attr(&b, "#new_password", "aria-invalid").await, "true");
    assert!(described_by(&b, "#new_password", &error).await);

    b.open(&s, "/admin").await;
    b.fill("#admin-user", "cam").await;
    b.fill("#admin-password", "wrong").await;
    b.click("#admin-sign-in").await;
    b.wait_for("#error").await;
    let error = b.text("#error p").await;
    assert_eq!(attr(&b, "#admin-password", "aria-invalid").await, "true");
    assert!(described_by(&b, "#admin-password", &error).await);
    b.close().await;
    s.stop().await;
}

/// A policy that reads but cannot be saved (no method left) lists its problems as links to the
/// fields to fix, and each field says what is wrong with it.
#[tokio::test]
async fn a_policy_that_cannot_be_saved_points_to_the_fields_to_fix() {
    let s = Server::start().await;
    s.user("boss", &["sspr-admins"]).await;
    let before = s.rt.app.policy().await.unwrap();
    let Some(b) = Browser::start("en").await else {
        return;
    };
    b.open(&s, "/admin/policy").await;
    b.fill("#admin-user", "boss").await;
    b.fill("#admin-password", PASSWORD).await;
    b.click("#admin-sign-in").await;
    b.wait_for("#m_email").await;
    b.execute(
        "document.querySelectorAll('input[id^=m_]').forEach(function (e) { e.checked = false; });",
    )
    .await;
    b.click("#save").await;
    b.wait_for("#error").await;
    assert!(
        b.text("#error").await.contains("cannot be saved"),
        "{}",
        b.text("#error").await
    );
    assert!(b.exists("#error a[href='#m_email']").await);
    let why = b.text("#error a[href='#m_email']").await;
    assert_eq!(attr(&b, "#m_email", "aria-invalid").await, "true");
    assert!(described_by(&b, "#m_email", &why).await, "{why}");
    assert!(b.exists("#error a[href='#methods_required']").await);
    assert_eq!(s.rt.app.policy().await.unwrap(), before, "saved anyway");

    // The preview says the same, beside the fields too.
    b.click("#preview").await;
    b.wait_for("#preview-result").await;
    assert!(b.exists("#preview-result a[href='#m_email']").await);
    assert_eq!(attr(&b, "#m_email", "aria-invalid").await, "true");
    b.close().await;
    s.stop().await;
}
