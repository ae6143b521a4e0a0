//! Password-expiry reminders: from the built-in directory, a real slapd (ppolicy `pwdMaxAge`)
//! and a real Samba AD (`msDS-UserPasswordExpiryTimeComputed`), delivered through the real
//! SMTP listener, each at most once.

use reqwest::StatusCode;
use serde_json::json;
use sspr_app::reminders::ReminderReport;
use sspr_domain::expiry::DAY;
use sspr_store::NewUser;

use crate::harness::{PASSWORD, Server};
use crate::ldap::{AD_ADMIN_PW, NEW, OLD, SambaAd, Slapd};

fn mails_to(s: &Server, to: &str, words: &str) -> usize {
    s.smtp
        .messages()
        .iter()
        .filter(|m| m.contains(&format!("To: {to}")) && m.contains(words))
        .count()
}

async fn wait_mails(s: &Server, to: &str, words: &str, n: usize) {
    for _ in 0..200 {
        if mails_to(s, to, words) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "{to} has {} mails saying {words:?}, not {n}: {:#?}",
        mails_to(s, to, words),
        s.smtp.messages()
    );
}

fn bucket(r: &ReminderReport, b: &str) -> usize {
    r.expiring
        .iter()
        .find(|(k, _)| k == b)
        .map(|(_, n)| *n)
        .unwrap_or(0)
}

#[tokio::test]
async fn builtin_passwords_get_each_reminder_once_and_the_unregistered_a_nudge() {
    let s = Server::start_with(|c| c.directory.password_max_age_days = 30).await;
    // fay registered; gus has only the directory's address (not a method); hal has nothing.
    s.registered_user("fay").await;
    s.rt.builtin
        .add_user(&NewUser {
            login: "gus".into(),
            display_name: "Gus".into(),
            password: PASSWORD.into(),
            groups: vec!["staff".into()],
            email: Some("gus@contoso.test".into()),
            mobile: None,
        })
        .await
        .unwrap();
    s.user("hal", &["staff"]).await;
    let app = &s.rt.app;

    // Nothing is due 20 days before expiry.
    s.clock.advance(10 * DAY);
    let r = app
        .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!((r.due, r.queued), (0, 0), "{r:?}");

    // 10 days before: the 14-day reminder. A dry run reports and queues nothing.
    s.clock.advance(10 * DAY);
    let before = s.smtp.messages().len();
    let r = app
        .run_reminders(true, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!(
        (r.due, r.queued, r.registration_nudges, r.no_address),
        (3, 2, 1, 1),
        "{r:?}"
    );
    assert_eq!(bucket(&r, "14"), 3, "{r:?}");
    let r = app
        .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!((r.queued, r.already_sent), (2, 0), "{r:?}");
    wait_mails(&s, "fay@contoso.test", "expires in 10 days", 1).await;
    wait_mails(&s, "gus@contoso.test", "expires in 10 days", 1).await;
    let gus = s
        .smtp
        .messages()
        .into_iter()
        .find(|m| m.contains("To: gus@contoso.test"))
        .unwrap();
    assert!(gus.contains("/change"), "{gus}");
    assert!(
        gus.contains("/register"),
        "the unregistered are asked to register: {gus}"
    );
    let fay = s
        .smtp
        .messages()
        .into_iter()
        .find(|m| m.contains("To: fay@contoso.test"))
        .unwrap();
    assert!(!fay.contains("/register"), "{fay}");
    assert_eq!(s.smtp.messages().len(), before + 2);

    // Run again, the same day: nothing more.
    let r = app
        .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!((r.queued, r.already_sent), (0, 2), "{r:?}");

    // 6 days before: the 7-day reminder.
    s.clock.advance(4 * DAY);
    let r = app
        .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!(r.queued, 2, "{r:?}");
    wait_mails(&s, "fay@contoso.test", "expires in 6 days", 1).await;

    // A changed password starts afresh: nothing due for fay now.
    let (st, v) = s
        .post(
            "/api/v1/password/change",
            None,
            json!({ "user": "fay", "current_password": PASSWORD, "new_password": NEW }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = app
        .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!((r.due, r.queued), (2, 0), "only gus and hal are due: {r:?}");

    // Expired: counted, not reminded.
    s.clock.advance(7 * DAY);
    let r = app
        .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!(bucket(&r, "expired"), 2, "{r:?}");
    assert_eq!(r.queued, 0, "{r:?}");

    let events = s.audit("user=fay&activity=expiry_reminder").await;
    assert_eq!(events.len(), 2, "{events:?}");
    s.stop().await;
}

#[tokio::test]
async fn the_scheduled_job_runs_on_one_instance_per_window() {
    let s = Server::start_with(|c| c.directory.password_max_age_days = 30).await;
    let app = &s.rt.app;
    assert!(app.reminders_turn(3600).await.unwrap());
    assert!(!app.reminders_turn(3600).await.unwrap(), "taken this hour");
    s.clock.advance(3599);
    assert!(!app.reminders_turn(3600).await.unwrap());
    s.clock.advance(1);
    assert!(app.reminders_turn(3600).await.unwrap());
    s.stop().await;
}

#[tokio::test]
async fn without_a_maximum_age_the_run_says_what_to_set() {
    let s = Server::start().await;
    let e =
        s.rt.app
            .run_reminders(true, sspr_app::reminders::ReminderRunner::Cli)
            .await
            .unwrap_err();
    assert!(e.message.contains("password_max_age_days"), "{}", e.message);
    s.stop().await;
}

#[tokio::test]
async fn openldap_expiry_comes_from_pwd_changed_time_and_the_policys_max_age() {
    let slapd = Slapd::start();
    let s = crate::ldap::server_with_service_account(&slapd).await;
    slapd.modify(
        "dn: cn=default,ou=policies,dc=sspr,dc=test\nchangetype: modify\nadd: pwdMaxAge\npwdMaxAge: 2592000\n",
    );
    // alice's change sets pwdChangedTime; mallory's password dates from before ppolicy (no
    // pwdChangedTime): its age is unknown and it is left out.
    let (st, v) = s
        .post(
            "/api/v1/password/change",
            None,
            json!({ "user": "alice", "current_password": OLD, "new_password": NEW }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let app = &s.rt.app;
    let r = app
        .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!(r.due, 0, "30 days left: {r:?}");

    // The test's clock may run a few seconds behind slapd's: an hour more keeps it at 10.
    s.clock.advance(20 * DAY + 3600);
    let r = app
        .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!((r.due, r.queued), (1, 1), "{r:?}");
    wait_mails(&s, "alice@contoso.test", "expires in 10 days", 1).await;
    let r = app
        .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
        .await
        .unwrap();
    assert_eq!((r.queued, r.already_sent), (0, 1), "{r:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_expiry_is_the_domains_own_computation() {
    let ad = SambaAd::start();
    ad.tool(&["domain", "passwordsettings", "set", "--max-pwd-age=10"]);
    let cfg = ad.config("Administrator", AD_ADMIN_PW);
    let s = Server::start_with(move |c| {
        c.directory.kind = "ldap".into();
        c.directory.ldap = Some(cfg);
        c.directory.trust_contacts = true;
    })
    .await;
    let r =
        s.rt.app
            .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
            .await
            .unwrap();
    // Every account was created just now (alice, weak, the domain's Administrator): 10 days
    // left, the 14-day reminder. Only alice has an address.
    assert!(bucket(&r, "14") >= 2, "{r:?}");
    assert_eq!(r.queued, 1, "{r:?}");
    assert_eq!(r.due, r.queued + r.no_address, "{r:?}");
    // 10 days, or 11 while the test's clock lags Samba's by a moment.
    wait_mails(&s, "alice@contoso.test", "your password expires in 1", 1).await;
    s.stop().await;
}

#[tokio::test]
async fn openldap_twelve_hundred_accounts_are_read_in_pages_not_one_search_each() {
    let slapd = Slapd::start();
    slapd.modify(
        "dn: cn=default,ou=policies,dc=sspr,dc=test\nchangetype: modify\nadd: pwdMaxAge\npwdMaxAge: 2592000\n",
    );
    // 1,200 accounts with passwords (ppolicy stamps pwdChangedTime when an entry is added with
    // one), all members of one group entry.
    let n = 1200;
    let mut ldif = String::new();
    for i in 0..n {
        ldif.push_str(&format!(
            "dn: uid=u{i},ou=people,dc=sspr,dc=test\nchangetype: add\nobjectClass: inetOrgPerson\nuid: u{i}\ncn: User {i}\nsn: U\n\
             mail: u{i}@contoso.test\nuserPassword: password number {i}\n\n"
        ));
    }
    ldif.push_str("dn: cn=many,ou=groups,dc=sspr,dc=test\nchangetype: add\nobjectClass: groupOfNames\ncn: many\n");
    for i in 0..n {
        ldif.push_str(&format!("member: uid=u{i},ou=people,dc=sspr,dc=test\n"));
    }
    slapd.modify(&ldif);
    let s = crate::ldap::server_with_service_account(&slapd).await;
    // Only members of "many" may use sspr: the groups must come with the scan.
    s.set_policy(|p| {
        p["scope"] = json!("groups");
        p["groups"] = json!(["many"]);
    })
    .await;
    s.clock.advance(20 * DAY + 3600);

    // slapd's default size limit (500) holds for paged searches too: a service account
    // without a `limits` line of its own is told so, and nothing is sent.
    let cfg = crate::ldap::ldap_config(
        &slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=weak,dc=sspr,dc=test",
        "weak-secret",
    );
    let weak = sspr_ldap::LdapDirectory::new(cfg).unwrap();
    let e = sspr_app::ports::Directory::expiring_passwords(&weak, s.clock_now() + 30 * DAY)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("size.prtotal=unlimited"), "{e}");

    let before = slapd.searches();
    let r =
        s.rt.app
            .run_reminders(true, sspr_app::reminders::ReminderRunner::Cli)
            .await
            .unwrap();
    let searches = slapd.searches() - before;
    // alice and mallory (staff, outside the scope) date from slapadd: no pwdChangedTime.
    assert_eq!((r.due, r.queued, r.out_of_scope), (n, n, 0), "{r:?}");
    eprintln!("{searches} searches for {n} accounts");
    // 3 pages of users, 1 of groups, the policy: not 1,200 searches.
    assert!(searches <= 8, "{searches} searches for {n} accounts");
    s.stop().await;
}

#[tokio::test]
async fn the_admin_expiry_page_shows_what_expires_when_and_sends_nothing() {
    let s = Server::start_with(|c| c.directory.password_max_age_days = 30).await;
    s.user("root-admin", &["sspr-admins"]).await;
    s.registered_user("jo").await;
    s.clock.advance(25 * DAY);
    let mut b = crate::web::Browser::new(&s);
    let csrf = b.get("/admin").await.field("csrf");
    let p = b
        .post(
            "/admin/sign-in",
            &[
                ("csrf", &csrf),
                ("next", "/admin/expiry"),
                ("user", "root-admin"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(p.status.is_redirection(), "{}: {}", p.status, p.body);
    let before = s.smtp.messages().len();
    let p = b.get("/admin/expiry").await;
    assert_eq!(p.status, reqwest::StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("id=\"expiry-table\""), "{}", p.body);
    // Both passwords expire in 5 days: the 4–7 day row.
    assert!(
        p.body
            .contains("<tr id=\"expiry-7\"><td>In 4–7 days</td><td class=\"num\">2</td></tr>"),
        "{}",
        p.body
    );
    assert!(p.body.contains("id=\"expiry-would\">1<"), "{}", p.body);
    assert!(p.body.contains("aria-current=\"page\""), "{}", p.body);
    let queued = s.rt.app.store.outbox_list(100).await.unwrap();
    assert!(
        !queued.iter().any(|m| m.subject.contains("expires")),
        "a dry run queues nothing"
    );
    assert_eq!(s.smtp.messages().len(), before);
    s.stop().await;
}

#[tokio::test]
async fn reminders_go_by_text_too_and_in_chinese_when_configured() {
    let s = Server::start_with(|c| {
        c.directory.password_max_age_days = 30;
        c.reminders.sms = true;
        c.reminders.language = "zh".into();
    })
    .await;
    s.registered_user("lin").await;
    s.clock.advance(27 * DAY);
    let texts = s.sms.texts().len();
    let r =
        s.rt.app
            .run_reminders(false, sspr_app::reminders::ReminderRunner::Cli)
            .await
            .unwrap();
    assert_eq!(r.queued, 1, "{r:?}");
    wait_mails(&s, "lin@contoso.test", "密码将在 3 天后过期", 1).await;
    for _ in 0..200 {
        if s.sms.texts().len() > texts {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sms = s.sms.texts();
    let text = sms.last().expect("a text").to_string();
    assert!(text.contains("/change"), "{text}");
    assert!(text.contains("过期") || text.contains("\\u8fc7"), "{text}");
    let ev = s.audit("user=lin&activity=expiry_reminder").await;
    assert_eq!(ev[0]["details"]["to"], json!(["email", "sms"]), "{ev:?}");
    s.stop().await;
}

/// The job inside `sspr serve` itself, not a call to the run: with `[reminders] enabled`, a
/// password that comes due is reminded of at the job's next look (it looks each minute), with
/// nobody asking, and audited as the system's.
#[tokio::test]
async fn the_job_inside_serve_reminds_on_its_own() {
    let s = Server::start_with(|c| {
        c.directory.password_max_age_days = 30;
        c.reminders.enabled = true;
        c.reminders.every_minutes = 5;
    })
    .await;
    s.registered_user("fay").await;
    // The job looked at start, when nothing was due. Twenty days on, its next look finds the
    // 14-day reminder due (the window is new on the server's clock too).
    s.clock.advance(20 * DAY);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    while mails_to(&s, "fay@contoso.test", "expires in 10 days") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no reminder from the job within 150 s: {:#?}",
            s.smtp.messages()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let events = s.audit("user=fay&activity=expiry_reminder").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], "system", "{events:?}");
    assert_eq!(events[0]["client_type"], "system", "{events:?}");
    assert_eq!(mails_to(&s, "fay@contoso.test", "expires in 10 days"), 1);

    // A request cannot pass itself off as sspr's own job.
    let (st, v) = s
        .call_as(
            reqwest::Method::POST,
            "/api/v1/flow/start",
            None,
            Some(json!({ "user": "fay", "kind": "reset" })),
            "system",
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let started = s.audit("user=fay&activity=reset_started").await;
    assert_eq!(started[0]["client_type"], "api", "{started:?}");
    s.stop().await;
}
