//! The logon agent in front of a real SSSD (LDAP provider, `cache_credentials = True`) on a
//! workstation joined to the same OpenLDAP the sspr server writes to. The PAM stack is the
//! one pam-auth-update writes: pam_sspr.so, then pam_unix and pam_sss.so `use_first_pass`.
//!
//! What SSSD does, and why the agent hands the new password on: with `cached_auth_timeout`
//! SSSD checks a password against its cache first and asks the directory only when the cache
//! does not match. A password reset elsewhere (a web portal) therefore leaves the OLD password
//! working on the machine until the timeout; the NEW one, typed once, misses the cache, is
//! checked online and replaces the cached hash, after which the old one is refused. The
//! agent's job is to make the first password after a reset the new one.
//!
//! Runs only with `SSPR_TEST_SYSTEM=1` (root, mount namespaces, a root sssd): see machine.rs.
//! `SSPR_TEST_SYSTEM=1 cargo test -p sspr --test integration sssd:: -- --nocapture`

use std::path::PathBuf;

use crate::harness::Server;
use crate::ldap::{OLD, Slapd, server_on};
use crate::logon::{Pam, Syslog, agent_config};
use crate::machine::{FIRST_PROMPT, Machine, login_changing_an_expired_password, system_tests};

const MAIL: &str = "alice@contoso.test";

pub(crate) struct Site {
    pub(crate) slapd: Slapd,
    pub(crate) s: Server,
    pub(crate) m: Machine,
    pub(crate) log: Syslog,
    pub(crate) config: PathBuf,
}

/// slapd, the sspr server on it, and a machine with SSSD on the same slapd; the agent's
/// `after_reset` and SSSD's domain options as given.
pub(crate) async fn site(after_reset: &str, domain_extra: &str, agent_extra: &str) -> Site {
    let slapd = Slapd::start();
    let s = server_on(
        &slapd,
        format!("ldaps://127.0.0.1:{}", slapd.ldaps_port),
        "cn=sspr,dc=sspr,dc=test",
        "service-secret",
    )
    .await;
    let m = tokio::task::block_in_place(|| Machine::start(&slapd, domain_extra));
    let log = Syslog::start(m.dir.path());
    let config = agent_config(
        m.dir.path(),
        "logon.toml",
        &s.url,
        &format!(
            "ca_file = \"{}\"\nafter_reset = \"{after_reset}\"\n{agent_extra}",
            s.ca().display()
        ),
        &log,
    );
    m.sspr_sss_stack("sspr-test", &config);
    Site {
        slapd,
        s,
        m,
        log,
        config,
    }
}

impl Site {
    /// A normal login at the agent's prompt; whether the stack succeeded, and the transcript.
    pub(crate) async fn login(&self, password: &str) -> (bool, String) {
        let mut pam = self.m.pam("sspr-test", "alice");
        pam.expect(FIRST_PROMPT).await;
        pam.send(password);
        pam.finish().await
    }

    /// "Forgot password?" at the prompt up to the new password, typed twice.
    pub(crate) async fn reset(&self, pam: &mut Pam, new: &str) {
        pam.expect(FIRST_PROMPT).await;
        pam.send("");
        pam.expect("Choose 1 or 2:").await;
        pam.send("1");
        pam.expect("1  Email a code").await;
        pam.expect("Choose 1-2, or press Enter to cancel:").await;
        let before = self.s.mail_count(MAIL);
        pam.send("1");
        pam.expect("Code (press Enter to choose another way):")
            .await;
        let code = self.s.wait_mail_code(MAIL, before).await;
        pam.send(&code);
        pam.expect("New password:").await;
        pam.send(new);
        pam.expect("Retype new password:").await;
        pam.send(new);
    }

    /// Log lines of SSSD since `from` (a length of the log) that say how it authenticated.
    fn sssd_said(&self, from: usize) -> String {
        self.m
            .sssd_log_since(from)
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                [
                    "sysdb_cache_auth",
                    "pam_handle_cached_login",
                    "sdap_pam_auth_handler_done",
                    "offline",
                    "pam_reply]",
                    "auth_bind_user_done",
                    "sdap_auth4chpass_done",
                ]
                .iter()
                .any(|k| l.contains(&k.to_lowercase()))
            })
            .map(|l| l.chars().take(220).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How SSSD authenticated since `from`, from its debug log (`-d 0x3ff0`): `cache-hit`
    /// (sysdb_cache_auth: "Hashes do match!"), `cache-miss` ("Cached authentication failed",
    /// after which it asks the directory), `online-ok` (the directory accepted the password:
    /// "Password successfully cached"), `offline` (the back end cannot reach the directory).
    pub(crate) fn sssd_did(&self, from: usize) -> Vec<&'static str> {
        let log = self.m.sssd_log_since(from);
        [
            ("Hashes do match!", "cache-hit"),
            ("Cached authentication failed", "cache-miss"),
            ("Password successfully cached", "online-ok"),
            ("Backend is offline", "offline"),
        ]
        .into_iter()
        .filter(|(k, _)| log.contains(k))
        .map(|(_, v)| v)
        .collect()
    }

    pub(crate) fn log_len(&self) -> usize {
        self.m.sssd_log().len()
    }
}

async fn a_reset_that_continues_into_the_session(cached_auth_timeout: bool, new: &str) {
    let extra = if cached_auth_timeout {
        "cached_auth_timeout = 3600"
    } else {
        ""
    };
    let site = site("continue", extra, "").await;
    let t0 = std::time::Instant::now();

    // (a) A normal login: SSSD checks the password online and caches it; the agent contacts
    // no one (its log stays empty, the server audits no logon-screen client).
    let (ok, out) = site.login(OLD).await;
    assert!(ok, "the current password logs in through pam_sss:\n{out}");
    let mark = site.log_len();
    let (ok, out) = site.login(OLD).await;
    assert!(
        ok,
        "and again (from SSSD's cache with cached_auth_timeout):\n{out}"
    );
    println!(
        "SSSD, second login with the current password:\n{}",
        site.sssd_said(mark)
    );
    let want: &[&str] = if cached_auth_timeout {
        &["cache-hit"]
    } else {
        &["online-ok"]
    };
    assert_eq!(site.sssd_did(mark), want);
    let (ok, _) = site.login("not the password at all").await;
    assert!(!ok, "a wrong password does not log in");
    assert_eq!(site.log.settled().await, "", "a normal login logs nothing");
    assert!(
        site.s.audit("client_type=logon_screen").await.is_empty(),
        "and contacts no sspr server"
    );

    // (b) The reset at the prompt; the session is granted with the new password in the same
    // PAM transaction: pam_sss gets it as PAM_AUTHTOK (use_first_pass).
    let mark = site.log_len();
    let mut pam = site.m.pam("sspr-test", "alice");
    site.reset(&mut pam, new).await;
    pam.expect("Signing you in with your new password").await;
    let (ok, out) = pam.finish().await;
    assert!(ok, "pam_sss accepts the new password at once:\n{out}");
    assert!(!out.contains("\nPassword:"), "no second prompt:\n{out}");
    println!(
        "SSSD, the login that carried the reset:\n{}",
        site.sssd_said(mark)
    );
    let want: &[&str] = if cached_auth_timeout {
        &["cache-miss", "online-ok"]
    } else {
        &["online-ok"]
    };
    assert_eq!(
        site.sssd_did(mark),
        want,
        "pam_sss checked the new password online"
    );
    assert!(
        site.slapd.binds("alice", new),
        "the directory has the new password"
    );
    assert!(!site.slapd.binds("alice", OLD));

    // A fresh login: the old password is refused, the new one works, also within
    // cached_auth_timeout (SSSD's cache was refreshed by the login above).
    let mark = site.log_len();
    let (ok, out) = site.login(OLD).await;
    assert!(!ok, "the old password no longer logs in:\n{out}");
    println!(
        "SSSD, the old password after the reset:\n{}",
        site.sssd_said(mark)
    );
    let want: &[&str] = if cached_auth_timeout {
        &["cache-miss"]
    } else {
        &[]
    };
    assert_eq!(
        site.sssd_did(mark),
        want,
        "refused by the directory, not the cache"
    );
    let (ok, out) = site.login(new).await;
    assert!(ok, "the new password logs in:\n{out}");
    let syslog = site
        .log
        .until(|t| t.contains("result=password_changed"))
        .await;
    assert!(syslog.contains("result=password_changed"), "{syslog}");
    println!("done in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sssd_a_reset_continues_into_the_session_and_the_old_password_is_refused() {
    if !system_tests("sssd::") {
        return;
    }
    a_reset_that_continues_into_the_session(false, "copper lantern beside the sea").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sssd_with_cached_auth_timeout_the_old_password_is_refused_after_a_reset() {
    if !system_tests("sssd::") {
        return;
    }
    a_reset_that_continues_into_the_session(true, "silent meadow after the rain").await;
}

/// The control: the same reset made elsewhere (the server's API, as the web portal makes it).
/// Within cached_auth_timeout SSSD keeps accepting the OLD password from its cache; the new
/// one, typed once, refreshes the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sssd_with_cached_auth_timeout_keeps_the_old_password_after_a_reset_elsewhere() {
    if !system_tests("sssd::") {
        return;
    }
    let site = site("continue", "cached_auth_timeout = 3600", "").await;
    let new = "amber kettle under moonlight";
    let (ok, out) = site.login(OLD).await;
    assert!(ok, "{out}");

    let t = site.s.flow("alice").await;
    let code = site.s.email_code(&t, MAIL).await;
    let (st, v) = site.s.verify(&t, "email", &code).await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    let (st, v) = site.s.set_password(&t, new).await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    assert!(!site.slapd.binds("alice", OLD));

    let mark = site.log_len();
    let (ok, out) = site.login(OLD).await;
    println!(
        "SSSD, old password after a reset elsewhere:\n{}",
        site.sssd_said(mark)
    );
    assert_eq!(site.sssd_did(mark), ["cache-hit"]);
    assert!(
        ok,
        "SSSD still accepts the old password from its cache (if this fails, SSSD now checks \
         online: good news, update the docs):\n{out}"
    );
    let mark = site.log_len();
    let (ok, out) = site.login(new).await;
    println!("SSSD, new password:\n{}", site.sssd_said(mark));
    assert_eq!(site.sssd_did(mark), ["cache-miss", "online-ok"]);
    assert!(
        ok,
        "the new password misses the cache and is checked online:\n{out}"
    );
    let (ok, out) = site.login(OLD).await;
    assert!(!ok, "after which the old one is refused:\n{out}");
}

/// `after_reset = "prompt"`: the user types the new password at the next prompt. The old one
/// typed there is refused by the agent itself and never handed on (SSSD would accept it from
/// its cache); the new one goes on, pam_sss checks it online and refreshes the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sssd_after_reset_prompt_only_the_new_password_goes_on() {
    if !system_tests("sssd::") {
        return;
    }
    let site = site("prompt", "cached_auth_timeout = 3600", "").await;
    let new = "violet harbour under lamps";
    let (ok, out) = site.login(OLD).await;
    assert!(ok, "{out}");

    let mut pam = site.m.pam("sspr-test", "alice");
    site.reset(&mut pam, new).await;
    pam.expect("Sign in with your new password.").await;
    pam.expect("Password:").await;
    let mark = site.log_len();
    pam.send(OLD);
    pam.expect("That is not the new password.").await;
    pam.expect("Password:").await;
    assert_eq!(
        site.sssd_did(mark),
        Vec::<&str>::new(),
        "the old password never reached pam_sss (its cache would have taken it)"
    );
    let mark = site.log_len();
    pam.send(new);
    let (ok, out) = pam.finish().await;
    println!(
        "SSSD, the new password typed after the reset:\n{}",
        site.sssd_said(mark)
    );
    assert!(ok, "the new password logs in:\n{out}");
    assert_eq!(
        site.sssd_did(mark),
        ["cache-miss", "online-ok"],
        "pam_sss checked the new password online and refreshed its cache"
    );
    assert!(site.slapd.binds("alice", new));

    let (ok, out) = site.login(OLD).await;
    assert!(
        !ok,
        "the old password is refused, cached_auth_timeout or not:\n{out}"
    );
    let (ok, out) = site.login(new).await;
    assert!(ok, "{out}");
}

/// The directory goes down after a first login: SSSD goes offline and logs in from its cache;
/// a reset attempt is told the service cannot help now, and the login goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sssd_offline_the_cached_password_works_and_a_reset_attempt_is_told_why_not() {
    if !system_tests("sssd::") {
        return;
    }
    let mut site = site("continue", "", "").await;
    let (ok, out) = site.login(OLD).await;
    assert!(ok, "{out}");
    tokio::task::block_in_place(|| site.slapd.stop());

    let mark = site.log_len();
    let (ok, out) = site.login(OLD).await;
    println!("offline login, what the user saw:\n{out}");
    println!("SSSD:\n{}", site.sssd_said(mark));
    assert!(ok, "offline, SSSD logs in from its cache:\n{out}");
    assert_eq!(site.sssd_did(mark), ["cache-hit", "offline"]);

    let mut pam = site.m.pam("sspr-test", "alice");
    pam.expect(FIRST_PROMPT).await;
    pam.send("");
    pam.expect("Choose 1 or 2:").await;
    let asked = std::time::Instant::now();
    pam.send("1");
    // The server is up but its directory is not: the user is told, nothing changes.
    pam.expect("We could not reach the account directory, so nothing was changed.")
        .await;
    pam.expect("Password:").await;
    let waited = asked.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(5),
        "told in {waited:?}"
    );
    pam.send(OLD);
    let (ok, out) = pam.finish().await;
    println!("reset attempt offline ({waited:?}), what the user saw:\n{out}");
    assert!(ok, "the login goes on with the cached password:\n{out}");
    let syslog = site.log.settled().await;
    println!("agent's log:\n{syslog}");
    assert!(
        syslog.contains("POST /api/v1/flow/start -> 503"),
        "{syslog}"
    );
    assert!(syslog.contains("result=failed support_code="), "{syslog}");
    let events = site.s.audit("user=alice&limit=100").await;
    println!(
        "audit: {:?}",
        events
            .iter()
            .map(|e| format!("{} {} {}", e["activity"], e["result"], e["reason"]))
            .collect::<Vec<_>>()
    );
    assert!(
        events
            .iter()
            .any(|e| e["activity"] == "directory_error" && e["reason"] == "directory_unavailable"),
        "{events:#?}"
    );
}

/// A reset at the prompt, then the directory goes away (a laptop leaves the office): the login
/// that carried the reset stored the new password in SSSD's cache, so offline the new password
/// works and the old one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sssd_offline_after_a_reset_the_new_password_is_the_cached_one() {
    if !system_tests("sssd::") {
        return;
    }
    let mut site = site("continue", "", "").await;
    let new = "driftwood fire on the shore";
    let (ok, out) = site.login(OLD).await;
    assert!(ok, "{out}");
    let mut pam = site.m.pam("sspr-test", "alice");
    site.reset(&mut pam, new).await;
    pam.expect("Signing you in with your new password").await;
    let (ok, out) = pam.finish().await;
    assert!(ok, "{out}");
    tokio::task::block_in_place(|| site.slapd.stop());

    let mark = site.log_len();
    let (ok, out) = site.login(OLD).await;
    println!("SSSD, old password offline:\n{}", site.sssd_said(mark));
    assert!(
        !ok,
        "offline, the old password is refused by the cache:\n{out}"
    );
    let mark = site.log_len();
    let (ok, out) = site.login(new).await;
    println!("SSSD, new password offline:\n{}", site.sssd_said(mark));
    assert!(
        ok,
        "offline, the new password logs in from the cache:\n{out}"
    );
    assert_eq!(site.sssd_did(mark), ["cache-hit", "offline"]);
}

/// An administrator's "change at next sign-in" on OpenLDAP (ppolicy `pwdReset`), at a machine
/// with SSSD in front: pam_sss lets the password in and its account phase answers
/// `PAM_NEW_AUTHTOK_REQD`; the login then asks the password stack, where pam_sspr changes it
/// through sspr (the user's own change, which clears `pwdReset`), and the session opens. The
/// next login with the new password goes through SSSD online, and the old one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sssd_an_expired_password_at_login_is_changed_through_sspr() {
    if !system_tests("sssd::") {
        return;
    }
    let site = site("prompt", "", "").await;
    site.m.sspr_sss_stack_with_change("sspr-test", &site.config);
    let alice = "uid=alice,ou=people,dc=sspr,dc=test";
    site.slapd.modify(&format!(
        "dn: {alice}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n"
    ));
    let new = "Sssd-Changed-Passw0rd-Long";

    // The account phase says the password is right and must be changed first; the login
    // then changes it at pam_sspr's prompts and goes on.
    let (ok, out) =
        login_changing_an_expired_password(&site.m, "sspr-test", "alice", OLD, new, || {
            site.sssd_said(0)
        })
        .await;
    assert!(ok, "the login goes on:\n{out}\n{}", site.log.text());
    assert!(
        site.slapd.attr(alice, "pwdReset").is_empty(),
        "the change cleared pwdReset"
    );
    let ev = site
        .s
        .audit("user=alice&activity=change_password&result=success")
        .await;
    assert_eq!(ev[0]["client_type"], "logon_screen", "{ev:?}");

    // The next login: the new password, through SSSD; the old one no more.
    let (ok, out) = site.login(new).await;
    assert!(ok, "{out}\n{}", site.sssd_said(0));
    let (ok, out) = site.login(OLD).await;
    assert!(!ok, "the old password is refused: {out}");
    site.s.stop().await;
}
