//! Every branch of the logon dialogue, against a scripted user and a scripted server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use sspr_agent::Lang;
use sspr_agent::api::{ApiFailure, ResetApi};
use sspr_agent::config::AgentConfig;
use sspr_agent::dialogue::{self, Dialogue, Kind, Outcome};
use sspr_agent::login::{Next, Place, password_prompt};
use sspr_agent::screen::Screen;
use sspr_proto::{ChallengeResponse, FlowResponse, PasswordPolicyResponse, VerifyRequest};
use support::{Log, Server, User};

const NEW: &str = "correct horse battery staple";

fn run(server: &mut Server, user: &mut User, kind: Kind) -> (Outcome, Log) {
    let log = Log::default();
    let mut d = Dialogue {
        conv: user,
        api: server,
        journal: &log,
        lang: Lang::En,
        user: "alice",
        server: "https://sspr.example.com",
        screen: Screen::Terminal,
    };
    let o = dialogue::run(&mut d, kind);
    (o, log)
}

fn changed(o: &Outcome) -> Option<&str> {
    match o {
        Outcome::PasswordChanged(p) => Some(p.as_str()),
        _ => None,
    }
}

#[test]
fn one_method_then_a_new_password() {
    let mut s = Server::new(1);
    let mut u = User::new(&["1", "123456", NEW, NEW]);
    let (o, log) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert_eq!(s.password.as_deref(), Some(NEW));
    assert!(u.saw("1  Email a code to a•••e@e•••.com"));
    assert!(u.saw("Sent to a•••e@e•••.com"));
    assert!(u.saw("At least 15 characters."), "rules are shown up front");
    assert!(u.saw("Your password was changed."));
    let log = log.text();
    assert!(log.contains("event=flow_started user=\"alice\" kind=reset"));
    assert!(log.contains("event=method_chosen user=\"alice\" method=\"email\""));
    assert!(log.contains("result=password_changed"));
    assert!(!log.contains(NEW) && !log.contains("123456"), "{log}");
}

#[test]
fn two_methods_are_both_asked_for() {
    let mut s = Server::new(2);
    // Email first, then the list no longer offers email: questions are now 1.
    let mut u = User::new(&["1", "123456", "1", "Rex", "Elm Street", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(u.saw("Step 1 of 2"));
    assert!(u.saw("Step 2 of 2"));
    assert!(u.saw("secret Your first pet's name?"), "answers are hidden");
    assert_eq!(s.verified, ["email", "questions"]);
}

#[test]
fn an_authenticator_code_works_at_the_login_screen() {
    let mut s = Server::new(1);
    let mut u = User::new(&["3", "654321", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
}

#[test]
fn a_wrong_code_can_be_typed_again() {
    let mut s = Server::new(1);
    let mut u = User::new(&["1", "000000", "123456", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(u.saw("error That code is not right, or it has expired. (Support code: SUP-1234)"));
}

#[test]
fn enter_at_the_code_prompt_goes_back_to_the_methods() {
    let mut s = Server::new(1);
    let mut u = User::new(&["1", "", "3", "654321", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert_eq!(s.calls[..3], ["start", "challenge email", "challenge totp"]);
}

#[test]
fn too_many_wrong_codes_end_the_dialogue() {
    let mut s = Server::new(1);
    let mut u = User::new(&["1", "1", "2", "3", "4", "5"]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(o, Outcome::Failed);
    assert!(u.saw("Too many tries"));
}

#[test]
fn a_code_limit_on_one_method_leaves_the_others() {
    let mut s = Server::new(1);
    s.email_limited = true;
    let mut u = User::new(&["1", "3", "654321", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(u.saw("Too many codes were requested"));
}

#[test]
fn an_empty_answer_goes_back_to_the_choice() {
    let mut s = Server::new(1);
    let mut u = User::new(&["2", "", "3", "654321", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(!s.calls.iter().any(|c| c == "verify questions"));
}

#[test]
fn wrong_answers_lead_back_to_the_choice() {
    let mut s = Server::new(1);
    let mut u = User::new(&["2", "Rex", "Oak Lane", "2", "Rex", "Elm Street", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
}

#[test]
fn an_expired_flow_ends_with_the_servers_words() {
    let mut s = Server::new(1);
    s.expire_on_verify = true;
    let mut u = User::new(&["1", "123456"]);
    let (o, log) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(o, Outcome::Failed);
    assert!(u.saw(
        "This reset session has expired or is not valid. Start again. (Support code: SUP-1234)"
    ));
    assert!(
        log.text()
            .contains("result=failed support_code=\"SUP-1234\"")
    );
}

#[test]
fn a_rejected_password_is_explained_and_can_be_retried() {
    let mut s = Server::new(1);
    let mut u = User::new(&["1", "123456", "short", "short", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(u.saw(
        "This password can't be used. (Support code: SUP-1234)\n  - Use at least 15 characters."
    ));
}

#[test]
fn mismatched_and_empty_passwords_are_asked_again() {
    let mut s = Server::new(1);
    let mut u = User::new(&["1", "123456", "", NEW, "typo", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(u.saw("can't be empty"));
    assert!(u.saw("don't match"));
    assert_eq!(s.calls.iter().filter(|c| *c == "password").count(), 1);
}

#[test]
fn a_directory_outage_at_the_last_step_can_be_retried() {
    let mut s = Server::new(1);
    s.directory_down_once = true;
    let mut u = User::new(&["1", "123456", NEW, NEW, NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(u.saw("The directory can't be reached"));
}

#[test]
fn a_directory_refusal_at_the_last_step_ends_with_the_support_code() {
    let mut s = Server::new(1);
    s.directory_refuses = true;
    let mut u = User::new(&["1", "123456", NEW, NEW, NEW, NEW]);
    let (o, log) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(o, Outcome::Failed, "{}", u.all());
    assert!(
        u.saw("Contact your helpdesk and give them the support code. (Support code: SUP-1234)")
    );
    assert_eq!(
        s.calls.iter().filter(|c| *c == "password").count(),
        1,
        "not asked again: another try cannot help"
    );
    assert!(
        log.text().contains("support_code=\"SUP-1234\""),
        "{}",
        log.text()
    );
}

#[test]
fn a_server_that_is_down_is_reported_in_words() {
    let mut s = Server::new(1);
    s.down = true;
    let mut u = User::new(&[]);
    let (o, log) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(o, Outcome::Failed);
    assert!(u.saw("can't be reached right now"));
    let log = log.text();
    assert!(
        log.contains("event=server_error") && log.contains("connection refused"),
        "{log}"
    );
}

#[test]
fn an_untrusted_server_is_told_apart() {
    struct Untrusted;
    impl ResetApi for Untrusted {
        fn start(&mut self, _: &str, _: &str) -> Result<FlowResponse, ApiFailure> {
            Err(ApiFailure::Untrusted("pin".into()))
        }
        fn challenge(&mut self, _: &str, _: &str) -> Result<ChallengeResponse, ApiFailure> {
            unreachable!()
        }
        fn verify(&mut self, _: &str, _: &VerifyRequest) -> Result<FlowResponse, ApiFailure> {
            unreachable!()
        }
        fn password_policy(&mut self, _: &str) -> Result<PasswordPolicyResponse, ApiFailure> {
            unreachable!()
        }
        fn set_password(&mut self, _: &str, _: &str) -> Result<FlowResponse, ApiFailure> {
            unreachable!()
        }
        fn unlock(&mut self, _: &str) -> Result<FlowResponse, ApiFailure> {
            unreachable!()
        }
    }
    let mut u = User::new(&[]);
    let log = Log::default();
    let mut d = Dialogue {
        conv: &mut u,
        api: &mut Untrusted,
        journal: &log,
        lang: Lang::En,
        user: "alice",
        server: "https://x",
        screen: Screen::Terminal,
    };
    assert_eq!(dialogue::run(&mut d, Kind::Reset), Outcome::Failed);
    assert!(u.saw("could not be verified as genuine"));
}

#[test]
fn an_unregistered_user_is_told_where_to_register() {
    let mut s = Server::new(1);
    s.registered = false;
    let mut u = User::new(&[]);
    let (o, log) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(o, Outcome::RegistrationRequired);
    assert!(u.saw("error More security info is needed."));
    assert!(u.saw("Register your security info at https://sspr.example.com/register"));
    assert!(log.text().contains("result=registration_required"));
}

#[test]
fn the_user_can_cancel_at_every_prompt() {
    for n in 0..4 {
        let script = ["1", "123456", NEW, NEW];
        let mut answers: Vec<&'static str> = script[..n].to_vec();
        answers.push("^C");
        let mut s = Server::new(1);
        let mut u = User::new(&answers);
        let (o, log) = run(&mut s, &mut u, Kind::Reset);
        assert_eq!(o, Outcome::Cancelled, "cancel at prompt {n}: {}", u.all());
        assert!(u.saw("Password reset cancelled."));
        assert!(log.text().contains("result=cancelled"));
        assert!(s.password.is_none());
    }
    // Enter at the method list cancels too.
    let mut s = Server::new(1);
    let mut u = User::new(&[""]);
    assert_eq!(run(&mut s, &mut u, Kind::Reset).0, Outcome::Cancelled);
}

#[test]
fn a_choice_out_of_range_is_asked_again() {
    let mut s = Server::new(1);
    let mut u = User::new(&["9", "email", "1", "123456", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(u.saw("Type a number from 1 to 3."));
}

#[test]
fn unlock_needs_no_new_password() {
    let mut s = Server::new(1);
    let mut u = User::new(&["1", "123456"]);
    let (o, _) = run(&mut s, &mut u, Kind::Unlock);
    assert_eq!(o, Outcome::Unlocked, "{}", u.all());
    assert!(s.unlocked && s.password.is_none());
    assert!(u.saw("Your account is unlocked."));
}

#[test]
fn chinese_throughout() {
    let mut s = Server::new(1);
    let mut u = User::new(&["1", "123456", NEW, NEW]);
    let log = Log::default();
    let mut d = Dialogue {
        conv: &mut u,
        api: &mut s,
        journal: &log,
        lang: Lang::Zh,
        user: "alice",
        server: "https://x",
        screen: Screen::Terminal,
    };
    assert!(changed(&dialogue::run(&mut d, Kind::Reset)).is_some());
    assert!(u.saw("正在连接密码重置服务"));
    assert!(u.saw("新密码："));
}

// --- The password prompt in the login stack -----------------------------------------------

fn config(extra: &str) -> AgentConfig {
    AgentConfig::parse(&format!(
        "server_url = \"https://sspr.example.com\"\n{extra}"
    ))
    .unwrap()
    .unwrap()
}

fn login(cfg: &AgentConfig, user: &mut User, server: Server) -> (Next, bool, Log) {
    let log = Log::default();
    let mut connected = false;
    let next = password_prompt(
        user,
        cfg,
        Lang::En,
        "alice",
        &log,
        &Place::terminal(),
        || {
            connected = true;
            Ok(Box::new(server))
        },
    );
    (next, connected, log)
}

fn password(n: &Next) -> Option<&str> {
    match n {
        Next::UsePassword(p) => Some(p.as_str()),
        Next::Nothing => None,
    }
}

#[test]
fn a_normal_login_passes_the_password_on_without_any_network() {
    let cfg = config("");
    let mut u = User::new(&["my old password"]);
    let (next, connected, log) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(password(&next), Some("my old password"));
    assert!(!connected, "no server contact on a normal login");
    assert_eq!(
        u.transcript,
        ["secret Password (press Enter if you forgot it): "]
    );
    assert!(log.text().is_empty());
}

#[test]
fn the_gesture_then_a_reset_hands_the_new_password_on() {
    let cfg = config("");
    let mut u = User::new(&["", "1", "1", "123456", NEW, NEW]);
    let (next, connected, log) = login(&cfg, &mut u, Server::new(1));
    assert!(connected);
    assert_eq!(password(&next), Some(NEW), "{}", u.all());
    assert!(u.saw("Signing you in with your new password"));
    assert!(log.text().contains("event=reset_offered user=\"alice\""));
}

#[test]
fn after_reset_prompt_sends_the_user_back_to_the_prompt() {
    let cfg = config("after_reset = \"prompt\"");
    let mut u = User::new(&["", "1", "1", "123456", NEW, NEW, NEW]);
    let (next, _, _) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(
        password(&next),
        Some(NEW),
        "typed again at the plain prompt"
    );
    assert!(u.saw("Sign in with your new password."));
    assert!(
        u.transcript
            .last()
            .unwrap()
            .starts_with("secret Password: ")
    );
}

#[test]
fn after_reset_prompt_never_hands_the_old_password_on() {
    // A caching module after the agent (pam_sss with cached_auth_timeout) would accept the old
    // password from its cache: only the new one goes on, and it refreshes that cache.
    let cfg = config("after_reset = \"prompt\"");
    let mut u = User::new(&["", "1", "1", "123456", NEW, NEW, "my old password", NEW]);
    let (next, _, _) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(password(&next), Some(NEW), "{}", u.all());
    assert!(u.saw("That is not the new password."));

    let old = ["old"; dialogue::MAX_TRIES];
    let mut u = User::new(&[&["", "1", "1", "123456", NEW, NEW][..], &old].concat());
    let (next, _, _) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(password(&next), None, "{}", u.all());
    assert!(u.saw("Too many tries"));
}

#[test]
fn enter_at_the_menu_goes_back_to_a_normal_login() {
    let cfg = config("");
    let mut u = User::new(&["", "", "my password"]);
    let (next, connected, _) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(password(&next), Some("my password"));
    assert!(!connected);
    // An account that really has an empty password (nullok) still gets in: Enter three times.
    let mut u = User::new(&["", "", ""]);
    let (next, _, _) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(password(&next), Some(""));
}

#[test]
fn the_menu_offers_unlock() {
    let cfg = config("");
    let mut u = User::new(&["", "2", "1", "123456", "the password I know"]);
    let (next, _, _) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(
        password(&next),
        Some("the password I know"),
        "the user signs in with the password they know"
    );
    assert!(u.saw("Your account is unlocked."));
    assert!(u.saw("Sign in with your password."));
}

#[test]
fn a_configured_word_is_the_gesture_and_an_empty_password_is_not() {
    let cfg = config("gesture = \"?\"\noffer_unlock = false");
    let mut u = User::new(&[""]);
    let (next, connected, _) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(password(&next), Some(""));
    assert!(!connected);

    let mut u = User::new(&["?", "y", "1", "123456", NEW, NEW]);
    let (next, _, _) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(password(&next), Some(NEW), "{}", u.all());
    assert!(u.saw("secret Password (type ? if you forgot it): "));
}

#[test]
fn a_server_that_is_down_leaves_the_normal_login_working() {
    let cfg = config("");
    let mut s = Server::new(1);
    s.down = true;
    let mut u = User::new(&["", "1", "my password"]);
    let (next, _, _) = login(&cfg, &mut u, s);
    assert_eq!(password(&next), Some("my password"));
    assert!(u.saw("can't be reached right now"));
}

#[test]
fn a_conversation_that_fails_at_once_changes_nothing() {
    let cfg = config("");
    let mut u = User::new(&["^C"]);
    let (next, connected, _) = login(&cfg, &mut u, Server::new(1));
    assert_eq!(next, Next::Nothing);
    assert!(!connected);
}

#[test]
fn a_new_password_that_is_not_utf8_is_refused_before_anything_changes() {
    // PAM's conversation turns the bytes of a Latin-1 console into U+FFFD.
    let mut s = Server::new(1);
    let latin1 = "Gr\u{FFFD}\u{FFFD}e aus M\u{FFFD}nchen 2026";
    let mut u = User::new(&["1", "123456", latin1, latin1, NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(u.saw("did not arrive as UTF-8"), "{}", u.all());
    assert_eq!(
        s.password.as_deref(),
        Some(NEW),
        "only the readable password was sent"
    );
    assert!(!s.calls.iter().any(|c| c.contains('\u{FFFD}')));
}

#[test]
fn an_ssh_login_says_how_long_it_has_and_refuses_to_start_without_enough() {
    let cfg = config("");
    let log = Log::default();
    let plenty = Place {
        screen: Screen::Terminal,
        ssh: true,
        time_left: Some(Box::new(|| Some(110))),
        has_keyring: Box::new(|| false),
    };
    let mut u = User::new(&["", "1", "1", "123456", NEW, NEW, ""]);
    let next = password_prompt(&mut u, &cfg, Lang::En, "alice", &log, &plenty, || {
        Ok(Box::new(Server::new(1)))
    });
    assert!(
        matches!(&next, Next::UsePassword(p) if p.as_str() == NEW),
        "{}",
        u.all()
    );
    assert!(u.saw("closes in about 110 s"), "{}", u.all());
    // The outcome comes before a last prompt: sshd shows no message after the last answer
    // when the client runs a command.
    let end = u.transcript.len();
    assert!(
        u.transcript[end - 2].contains("password was changed"),
        "{}",
        u.all()
    );
    assert_eq!(u.transcript[end - 1], "secret Press Enter to sign in: ");

    let short = Place {
        screen: Screen::Terminal,
        ssh: true,
        time_left: Some(Box::new(|| Some(20))),
        has_keyring: Box::new(|| false),
    };
    let mut u = User::new(&["", "1", "my old password"]);
    let mut connected = false;
    let next = password_prompt(&mut u, &cfg, Lang::En, "alice", &log, &short, || {
        connected = true;
        Ok(Box::new(Server::new(1)))
    });
    assert!(!connected, "no reset is started that sshd would cut off");
    assert!(u.saw("Not enough time"), "{}", u.all());
    assert!(matches!(&next, Next::UsePassword(p) if p.as_str() == "my old password"));
}

#[test]
fn a_passkey_is_said_to_work_in_a_browser_beside_the_methods_that_work_here() {
    let mut s = Server::new(1);
    s.browser_only = vec!["passkey".into()];
    let mut u = User::new(&["1", "123456", NEW, NEW]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert_eq!(changed(&o), Some(NEW), "{}", u.all());
    assert!(
        u.saw("Your passkey works too, but only in a web browser, at https://"),
        "{}",
        u.all()
    );
}

#[test]
fn a_user_with_only_a_passkey_is_sent_to_a_browser() {
    let mut s = Server::new(1);
    s.only_passkey = true;
    s.browser_only = vec!["passkey".into()];
    let mut u = User::new(&[]);
    let (o, _) = run(&mut s, &mut u, Kind::Reset);
    assert!(matches!(o, Outcome::Cancelled), "{}", u.all());
    assert!(
        u.saw("Your passkey works only in a web browser. Open https://"),
        "{}",
        u.all()
    );
    assert!(!s.calls.iter().any(|c| c.starts_with("challenge")));
}
