//! The admin API: token checks, policy validation and change audit, audit queries (JSON and
//! CSV), user look-up, and answers in Chinese.

use reqwest::{Method as HttpMethod, StatusCode};
use serde_json::{Value, json};
use sspr_domain::clock::rfc3339;

use crate::harness::{PASSWORD, Server};

const HEADER: &str = "id,time,activity,actor,target,client_ip,client_type,result,reason,flow_id,support_code,details";

async fn admin_get(s: &Server, path: &str) -> (StatusCode, Value) {
    s.call(HttpMethod::GET, path, Some(&s.admin_token.clone()), None)
        .await
}

/// GET with the admin token; returns status, content type and raw text.
async fn admin_raw(s: &Server, path: &str) -> (StatusCode, String, String) {
    let resp = s
        .http
        .get(format!("{}{}", s.url, path))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    let st = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (st, ct, resp.text().await.unwrap())
}

/// A POST with an Accept-Language header.
async fn post_lang(
    s: &Server,
    path: &str,
    bearer: Option<&str>,
    lang: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut rb = s
        .http
        .post(format!("{}{}", s.url, path))
        .header("accept-language", lang)
        .header("x-sspr-client", "logon_screen")
        .json(&body);
    if let Some(b) = bearer {
        rb = rb.bearer_auth(b);
    }
    let resp = rb.send().await.unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap())
}

#[tokio::test]
async fn admin_endpoints_need_a_valid_token() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    let (st, policy) = admin_get(&s, "/api/v1/admin/policy").await;
    assert_eq!(st, StatusCode::OK, "{policy}");
    let mut changed = policy.clone();
    changed["reconfirm_days"] = json!(7);
    let bad = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let endpoints: [(HttpMethod, &str, Option<Value>); 4] = [
        (HttpMethod::GET, "/api/v1/admin/policy", None),
        (HttpMethod::PUT, "/api/v1/admin/policy", Some(changed)),
        (HttpMethod::GET, "/api/v1/admin/audit", None),
        (HttpMethod::GET, "/api/v1/admin/users/alice", None),
    ];
    for (m, path, body) in &endpoints {
        for token in [None, Some(bad), Some("short")] {
            let (st, v) = s.call(m.clone(), path, token, body.clone()).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {path} {token:?}: {v}");
            assert_eq!(v["error"], "unauthorized", "{v}");
            let msg = v["message"].as_str().unwrap();
            assert!(
                msg.contains("Authorization: Bearer") && msg.contains("sspr admin token create"),
                "{msg}"
            );
            assert_eq!(v["support_code"].as_str().unwrap().len(), 11, "{v}");
            assert!(v.get("users").is_none() && v.get("scope").is_none(), "{v}");
        }
    }
    // Every refusal is audited, with its reason and support code.
    let ev = s.audit("activity=admin_auth_failed").await;
    assert_eq!(ev.len(), 12, "{ev:?}");
    assert!(ev.iter().all(|e| e["result"] == "failure"));
    assert_eq!(ev.iter().filter(|e| e["reason"] == "no_token").count(), 4);
    assert_eq!(ev.iter().filter(|e| e["reason"] == "bad_token").count(), 8);
    assert!(ev.iter().all(|e| e["client_ip"] == "127.0.0.1"));
    let (_, v) = s
        .call(HttpMethod::GET, "/api/v1/admin/policy", None, None)
        .await;
    let code = v["support_code"].as_str().unwrap();
    let ev = s.audit(&format!("support_code={code}")).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["activity"], "admin_auth_failed");

    // The rejected PUT changed nothing; the real token works.
    let (st, p) = admin_get(&s, "/api/v1/admin/policy").await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p, policy);
    assert!(s.audit("activity=policy_changed").await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn policy_is_validated_and_changes_are_audited_with_old_and_new_values() {
    let s = Server::start().await;
    let token = s.admin_token.clone();
    let (_, old) = admin_get(&s, "/api/v1/admin/policy").await;

    let mut bad = old.clone();
    bad["methods_required"] = json!(3);
    bad["questions_to_answer"] = json!(9);
    bad["methods"] = json!([]);
    bad["reconfirm_days"] = json!(800);
    let (st, v) = s
        .call(
            HttpMethod::PUT,
            "/api/v1/admin/policy",
            Some(&token),
            Some(bad),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_request", "{v}");
    let details: Vec<&str> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 4, "{details:?}");
    for words in [
        "methods_required must be 1 or 2",
        "questions_to_answer must be between 1 and questions_to_register (3)",
        "methods is empty",
        "reconfirm_days must be between 0",
    ] {
        assert!(
            details.iter().any(|d| d.contains(words)),
            "{words:?} not in {details:?}"
        );
    }
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("methods_required must be 1 or 2")
    );
    let (_, now) = admin_get(&s, "/api/v1/admin/policy").await;
    assert_eq!(now, old, "an invalid policy must not be stored");
    let ev = s.audit("activity=policy_changed").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["result"], "failure");
    assert_eq!(ev[0]["reason"], "invalid_policy");

    // A valid change: exactly the changed fields, old and new.
    let mut good = old.clone();
    good["methods_required"] = json!(2);
    good["reconfirm_days"] = json!(30);
    good["groups"] = json!(["staff", "students"]);
    let (st, v) = s
        .call(
            HttpMethod::PUT,
            "/api/v1/admin/policy",
            Some(&token),
            Some(good.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, good);
    let (_, now) = admin_get(&s, "/api/v1/admin/policy").await;
    assert_eq!(now, good);
    let ev = s.audit("activity=policy_changed&result=success").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["actor"], "admin:tests");
    assert_eq!(ev[0]["target"], "policy");
    assert_eq!(
        ev[0]["details"]["changes"],
        json!({
            "methods_required": { "old": 1, "new": 2 },
            "reconfirm_days": { "old": 180, "new": 30 },
            "groups": { "old": [], "new": ["staff", "students"] },
        }),
        "{}",
        ev[0]
    );

    // An unknown field is refused outright, nothing stored.
    let mut unknown = good.clone();
    unknown["methods_requried"] = json!(1);
    let (st, v) = s
        .call(
            HttpMethod::PUT,
            "/api/v1/admin/policy",
            Some(&token),
            Some(unknown),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("methods_requried"),
        "{v}"
    );
    let (_, now) = admin_get(&s, "/api/v1/admin/policy").await;
    assert_eq!(now, good);
    assert_eq!(
        s.audit("activity=policy_changed&result=success")
            .await
            .len(),
        1
    );
    s.stop().await;
}

#[tokio::test]
async fn audit_queries_filter_and_export_csv() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    s.user("bob", &["staff"]).await;
    let t0 = s.clock_now();

    // Early events: alice from the logon screen, bob from a browser (a failed sign-in).
    s.flow("alice").await;
    let (st, e) = s
        .call_as(
            HttpMethod::POST,
            "/api/v1/session",
            None,
            Some(json!({ "user": "bob", "password": "definitely not it" })),
            "browser",
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let bob_code = e["support_code"].as_str().unwrap().to_string();

    s.clock.advance(3600);
    let t1 = s.clock_now();
    // Later events.
    s.flow("alice").await;
    let (st, _) = s
        .call_as(
            HttpMethod::POST,
            "/api/v1/session",
            None,
            Some(json!({ "user": "bob", "password": PASSWORD })),
            "browser",
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    let all = s.audit("").await;
    assert!(all.len() >= 5, "{all:?}");

    // user
    let alice = s.audit("user=alice").await;
    assert_eq!(alice.len(), 2, "{alice:?}");
    assert!(alice.iter().all(|e| e["target"] == "alice"));
    assert_eq!(s.audit("user=ALICE").await.len(), 2);
    assert!(s.audit("user=nobody").await.is_empty());
    // activity
    let starts = s.audit("activity=reset_started").await;
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(starts.iter().all(|e| e["activity"] == "reset_started"));
    // result
    let failures = s.audit("result=failure&user=bob").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["reason"], "wrong_password");
    let ok = s.audit("result=success&user=bob").await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["activity"], "registration_sign_in");
    // client_type
    let browser = s.audit("client_type=browser").await;
    assert_eq!(browser.len(), 2, "{browser:?}");
    assert!(browser.iter().all(|e| e["target"] == "bob"));
    assert_eq!(s.audit("client_type=api").await.len(), 2);
    // ip: the admin token was created locally, everything else came over HTTPS.
    let local = s.audit("ip=local").await;
    assert_eq!(local.len(), 1, "{local:?}");
    assert_eq!(local[0]["activity"], "admin_token_created");
    assert_eq!(s.audit("ip=127.0.0.1").await.len(), all.len() - 1);
    assert!(s.audit("ip=10.9.8.7").await.is_empty());
    // since / until split at the clock step.
    let mid = rfc3339(t0 + 1800);
    let late = s.audit(&format!("since={mid}")).await;
    assert_eq!(late.len(), 2, "{late:?}");
    for e in &late {
        assert_eq!(e["time"], rfc3339(t1), "{e}");
    }
    let early = s.audit(&format!("until={mid}")).await;
    assert_eq!(early.len(), all.len() - 2, "{early:?}");
    assert!(early.iter().all(|e| e["time"] != rfc3339(t1)));
    assert_eq!(
        s.audit(&format!("since={}", rfc3339(t1))).await.len(),
        2,
        "since is inclusive"
    );
    assert!(
        s.audit(&format!("since={}", rfc3339(t1 + 1)))
            .await
            .is_empty()
    );
    assert_eq!(
        s.audit(&format!("since={}&until={}&user=bob", rfc3339(t0), mid))
            .await
            .len(),
        1
    );
    // support_code
    let by_code = s.audit(&format!("support_code={bob_code}")).await;
    assert_eq!(by_code.len(), 1, "{by_code:?}");
    assert_eq!(by_code[0]["target"], "bob");
    assert_eq!(by_code[0]["reason"], "wrong_password");
    // limit
    assert_eq!(s.audit("limit=1").await.len(), 1);

    // Invalid values say what is allowed.
    for (q, words) in [
        ("activity=nonsense", "unknown activity"),
        ("since=yesterday", "since must be a UTC time like"),
        ("until=2026-13-01", "until must be a UTC time like"),
        ("result=maybe", "result must be success or failure"),
        (
            "client_type=fax",
            "client_type must be logon_screen, ssh, browser, cli, api or system",
        ),
        ("colour=blue", "colour"),
    ] {
        let (st, v) = admin_get(&s, &format!("/api/v1/admin/audit?{q}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(words),
            "{q}: {words:?} not in {v}"
        );
    }

    // Pages: a full page links to the next, older one, keeping the filters; following the
    // links visits every event once, newest first.
    let (_, all) = admin_get(&s, "/api/v1/admin/audit?limit=1000").await;
    let all: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(all.len() >= 3, "{all:?}");
    let mut path = "/api/v1/admin/audit?limit=2&format=json".to_string();
    let mut paged = Vec::new();
    loop {
        let resp = s
            .http
            .get(format!("{}{}", s.url, path))
            .bearer_auth(&s.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let next = resp
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Value = resp.json().await.unwrap();
        paged.extend(
            page.as_array()
                .unwrap()
                .iter()
                .rev()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        let Some(link) = next else { break };
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        assert!(
            link.contains("limit=2") && link.contains("format=json"),
            "{link}"
        );
        path = link[1..link.find('>').unwrap()].to_string();
    }
    // The log may have grown by the listing's own events at its newest end only.
    assert_eq!(&paged[paged.len() - all.len()..], &all[..]);
    let (st, v) = admin_get(&s, "/api/v1/admin/audit?before=yesterday").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        v["message"].as_str().unwrap().contains("not a page cursor"),
        "{v}"
    );

    // CSV: header, one row per event.
    let (st, ct, csv) = admin_raw(&s, "/api/v1/admin/audit?format=csv").await;
    assert_eq!(st, StatusCode::OK, "{csv}");
    assert!(ct.starts_with("text/csv"), "{ct}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], HEADER);
    let all = s.audit("").await;
    assert_eq!(lines.len(), all.len() + 1, "{csv}");
    let (_, _, csv) = admin_raw(&s, "/api/v1/admin/audit?format=csv&user=bob").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(",bob,bob,127.0.0.1,browser,")),
        "{csv}"
    );
    assert!(csv.contains(&bob_code), "{csv}");

    // A formula-looking value is defused.
    let (st, v) = s.start_flow("=cmd|' /C calc'!A0", "reset").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.start_flow("=cmd", "reset").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "registration_required");
    let (st, _, csv) = admin_raw(&s, "/api/v1/admin/audit?format=csv&user=%3Dcmd").await;
    assert_eq!(st, StatusCode::OK);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(cells[2], "reset_started", "{csv}");
    assert_eq!(cells[3], "'=cmd", "{csv}");
    assert_eq!(cells[4], "'=cmd", "{csv}");
    assert!(
        !csv.lines()
            .skip(1)
            .flat_map(|l| l.split(','))
            .any(|c| c.starts_with('=')),
        "{csv}"
    );
    let (_, _, csv) = admin_raw(&s, "/api/v1/admin/audit?format=csv&activity=reset_started").await;
    for l in csv.lines().skip(1) {
        for c in l.split(',') {
            let c = c.trim_start_matches('"');
            assert!(
                !c.starts_with(['=', '+', '-', '@']),
                "formula cell {c:?} in {l}"
            );
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn admin_user_lookup_shows_methods_and_status() {
    let s = Server::start().await;
    s.registered_user("alice").await;
    s.user("bob", &["staff", "admins"]).await;
    s.registered("bob", sspr_domain::Method::Email, "bob@contoso.test")
        .await;
    s.rt.builtin
        .set_flag("bob", sspr_store::Flag::Locked, true)
        .await
        .unwrap();

    let (st, v) = admin_get(&s, "/api/v1/admin/users/Alice").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["login"], "alice", "{v}");
    assert_eq!(v["display_name"], "alice Tester");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["locked"], false);
    assert_eq!(v["groups"], json!(["staff"]));
    assert_eq!(v["registered"], true, "{v}");
    let mut methods: Vec<&str> = v["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    methods.sort();
    assert_eq!(methods, ["email", "sms"], "{v}");
    // No contact details leak into the summary.
    let text = v.to_string();
    assert!(!text.contains("contoso.test") && !text.contains("4915112345678"));

    // A privileged user with one method is not registered; locked shows.
    let (st, v) = admin_get(&s, "/api/v1/admin/users/bob").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["registered"], false, "{v}");
    assert_eq!(v["locked"], true, "{v}");
    assert_eq!(v["methods"], json!(["email"]));

    let (st, v) = admin_get(&s, "/api/v1/admin/users/nobody").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["message"].as_str().unwrap().contains("nobody"), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn answers_in_chinese() {
    let s = Server::start().await;
    s.registered_user("alice").await;

    let (st, v) = post_lang(
        &s,
        "/api/v1/flow/start",
        None,
        "zh-CN,zh;q=0.9",
        json!({ "user": "nobody-here", "kind": "reset" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "registration_required");
    assert_eq!(
        v["message"],
        "需要更多安全信息才能在这里重置密码。请先注册安全信息，或联系你的技术支持。"
    );
    // The same in English by default.
    let (_, v) = s.start_flow("nobody-here", "reset").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("More security info is needed")
    );

    // A reset in Chinese: the password rules come back in Chinese.
    let (st, v) = post_lang(
        &s,
        "/api/v1/flow/start",
        None,
        "zh-CN",
        json!({ "user": "alice" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "choose_method");
    assert!(!v["message"].as_str().unwrap().is_ascii(), "{v}");
    assert!(
        v["methods"][0]["label"]
            .as_str()
            .unwrap()
            .starts_with("发送验证码到邮箱"),
        "{v}"
    );
    let t = v["flow_token"].as_str().unwrap().to_string();
    let code = s.email_code(&t, "alice@contoso.test").await;
    let (st, v) = post_lang(
        &s,
        "/api/v1/flow/verify",
        Some(&t),
        "zh-CN",
        json!({ "method": "email", "code": code }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "验证成功。请设置新密码。");
    let (st, v) = post_lang(
        &s,
        "/api/v1/flow/password",
        Some(&t),
        "zh-CN",
        json!({ "new_password": "short" }),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "password_rejected");
    let details = v["details"].as_array().unwrap();
    assert!(!details.is_empty(), "{v}");
    for d in details {
        assert!(!d.as_str().unwrap().is_ascii(), "not Chinese: {d}");
    }
    assert!(!v["message"].as_str().unwrap().is_ascii(), "{v}");
    // The same mistake in English says it in English.
    let (st, v) = s.set_password(&t, "short").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().contains("at least 15 characters")),
        "{v}"
    );
    s.stop().await;
}

/// A helpdesk API token (`sspr admin token create NAME --helpdesk`) reads the audit log and
/// users and sends invitations, under its own name; the policy answers 403, audited.
#[tokio::test]
async fn a_helpdesk_token_cannot_read_or_change_the_policy() {
    let s = Server::start().await;
    s.registered_user("quincy").await;
    let desk =
        s.rt.app
            .create_admin_token(
                &crate::harness::ctx(),
                "desk",
                sspr_app::admin::StaffRole::Helpdesk,
            )
            .await
            .unwrap();
    let created = s.audit("activity=admin_token_created").await;
    assert!(
        created
            .iter()
            .any(|e| e["target"] == "desk" && e["details"]["role"] == "helpdesk"),
        "{created:?}"
    );
    let call = |m: HttpMethod, path: &'static str, body: Option<Value>| {
        let desk = desk.clone();
        let s = &s;
        async move { s.call(m, path, Some(&desk), body).await }
    };
    let (st, _) = call(HttpMethod::GET, "/api/v1/admin/audit?user=quincy", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(HttpMethod::GET, "/api/v1/admin/users/quincy", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = call(
        HttpMethod::POST,
        "/api/v1/admin/invitations",
        Some(json!({ "user": "quincy" })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sent = s.audit("user=quincy&activity=invitation_sent").await;
    assert_eq!(sent[0]["actor"], "helpdesk:desk", "{sent:?}");
    let before = s.rt.app.policy().await.unwrap();
    let (st, v) = call(HttpMethod::GET, "/api/v1/admin/policy", None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"], "forbidden", "{v}");
    assert!(v.get("methods").is_none(), "the policy was shown: {v}");
    let (st, v) = call(
        HttpMethod::PUT,
        "/api/v1/admin/policy",
        Some({
            // A valid policy, changed: refused for who sends it, not for what.
            let mut p = serde_json::to_value(&before).unwrap();
            p["reconfirm_days"] = json!(p["reconfirm_days"].as_u64().unwrap() + 7);
            p
        }),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(s.rt.app.policy().await.unwrap(), before);
    let refused = s.audit("activity=admin_auth_failed").await;
    assert_eq!(
        refused
            .iter()
            .filter(|e| e["actor"] == "helpdesk:desk" && e["reason"] == "not_admin")
            .count(),
        2,
        "{refused:?}"
    );
    // The administrator's token still does everything.
    let (st, _) = admin_get(&s, "/api/v1/admin/policy").await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}
