//! The password change behind `pam_sm_chauthtok`, against a scripted user and server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use sspr_agent::Lang;
use sspr_agent::api::{ApiFailure, ResetApi};
use sspr_agent::change::{ChangeRequest, Changed, change};
use sspr_proto::FlowResponse;
use support::{Log, Server, User};
use zeroize::Zeroizing;

/// A server whose only call is the change: `alice`'s current password is "old password",
/// and a new one needs 15 characters.
struct Changer {
    down: bool,
    calls: usize,
}

impl ResetApi for Changer {
    fn start(&mut self, _: &str, _: &str) -> Result<FlowResponse, ApiFailure> {
        panic!("a change starts no flow")
    }
    fn challenge(&mut self, _: &str, _: &str) -> Result<sspr_proto::ChallengeResponse, ApiFailure> {
        panic!()
    }
    fn verify(
        &mut self,
        _: &str,
        _: &sspr_proto::VerifyRequest,
    ) -> Result<FlowResponse, ApiFailure> {
        panic!()
    }
    fn password_policy(
        &mut self,
        _: &str,
    ) -> Result<sspr_proto::PasswordPolicyResponse, ApiFailure> {
        panic!()
    }
    fn set_password(&mut self, _: &str, _: &str) -> Result<FlowResponse, ApiFailure> {
        panic!()
    }
    fn unlock(&mut self, _: &str) -> Result<FlowResponse, ApiFailure> {
        panic!()
    }
    fn change_password(
        &mut self,
        user: &str,
        current: &str,
        new: &str,
    ) -> Result<FlowResponse, ApiFailure> {
        self.calls += 1;
        if self.down {
            return Err(ApiFailure::Unreachable("connection refused".into()));
        }
        if user != "alice" || current != "old password" {
            return Err(Server::refuse(
                401,
                "unauthorized",
                "The user ID or password is not correct.",
            ));
        }
        if new.chars().count() < 15 {
            return Err(Server::refuse(
                422,
                "password_rejected",
                "The password is too short: use at least 15 characters.",
            ));
        }
        Ok(FlowResponse {
            flow_token: None,
            status: "completed".into(),
            kind: "change".into(),
            message: "Your password has been changed.".into(),
            register_url: None,
            methods: Vec::new(),
            browser_only: Vec::new(),
            required: 0,
            verified: Vec::new(),
            expires_in: 0,
        })
    }
}

fn req(current: Option<&str>) -> ChangeRequest<'static> {
    ChangeRequest {
        lang: Lang::En,
        user: "alice",
        current: current.map(|c| Zeroizing::new(c.to_string())),
        short: false,
    }
}

#[test]
fn a_refused_password_is_explained_and_the_next_one_goes_through() {
    let mut user = User::new(&[
        "old password",
        "short",
        "short",
        "a long enough new passphrase",
        "a long enough new passphrase",
    ]);
    let mut api = Changer {
        down: false,
        calls: 0,
    };
    let log = Log::default();
    let got = change(&mut user, req(None), &mut api, &log);
    assert_eq!(
        got,
        Changed::Yes(Zeroizing::new("a long enough new passphrase".into()))
    );
    assert!(
        user.saw("error The password is too short"),
        "{}",
        user.all()
    );
    assert!(user.saw("info Password changed."), "{}", user.all());
    assert!(log.text().contains("result=changed"), "{}", log.text());
    assert!(!log.text().contains("passphrase"), "{}", log.text());
}

#[test]
fn a_current_password_from_the_stack_is_not_asked_again_and_mismatches_cost_no_call() {
    let mut user = User::new(&[
        "a long enough new passphrase",
        "a different long passphrase",
        "a long enough new passphrase",
        "a long enough new passphrase",
    ]);
    let mut api = Changer {
        down: false,
        calls: 0,
    };
    let got = change(
        &mut user,
        req(Some("old password")),
        &mut api,
        &Log::default(),
    );
    assert!(matches!(got, Changed::Yes(_)), "{}", user.all());
    assert!(!user.saw("Current password"), "{}", user.all());
    assert!(
        user.saw("error The two passwords don't match"),
        "{}",
        user.all()
    );
    assert_eq!(api.calls, 1);
}

#[test]
fn an_unreachable_server_steps_aside_and_three_refusals_end_it() {
    let mut user = User::new(&[
        "old password",
        "x long enough passphrase",
        "x long enough passphrase",
    ]);
    let mut api = Changer {
        down: true,
        calls: 0,
    };
    let got = change(&mut user, req(None), &mut api, &Log::default());
    assert_eq!(got, Changed::Unavailable);
    assert!(user.saw("can't be reached"), "{}", user.all());

    let mut user = User::new(&["old password", "a", "a", "b", "b", "c", "c"]);
    let mut api = Changer {
        down: false,
        calls: 0,
    };
    let got = change(&mut user, req(None), &mut api, &Log::default());
    assert_eq!(got, Changed::No);
    assert!(user.saw("Too many tries"), "{}", user.all());
    assert_eq!(api.calls, 3);

    // Backing out at any prompt changes nothing.
    let mut user = User::new(&["old password", "^C"]);
    let got = change(&mut user, req(None), &mut api, &Log::default());
    assert_eq!(got, Changed::No);
}

#[test]
fn an_account_sspr_does_not_know_is_left_to_the_next_module() {
    // A local account: sspr answers "not correct" to both current passwords.
    let mut user = User::new(&[
        "local password",
        "a long enough new passphrase",
        "a long enough new passphrase",
        "local password again",
    ]);
    let mut api = Changer {
        down: false,
        calls: 0,
    };
    let log = Log::default();
    let got = change(&mut user, req(None), &mut api, &log);
    assert_eq!(got, Changed::Unavailable, "{}", user.all());
    assert_eq!(api.calls, 2);
    assert!(log.text().contains("result=not_known"), "{}", log.text());
}

/// On a greeter every message fits: lines of at most 32 columns, two lines at most, so
/// slick-greeter (which cuts a line at about 33 characters) shows the server's rule whole.
#[test]
fn on_a_greeter_every_message_fits_the_greeters_lines() {
    let mut user = User::new(&[
        "old password",
        "short",
        "short",
        "a long enough new passphrase",
        "a long enough new passphrase",
    ]);
    let mut api = Changer {
        down: false,
        calls: 0,
    };
    let got = change(
        &mut user,
        ChangeRequest {
            short: true,
            ..req(None)
        },
        &mut api,
        &Log::default(),
    );
    assert!(matches!(got, Changed::Yes(_)), "{got:?}");
    assert!(
        user.saw("error The password is too short: use\nat least 15 characters."),
        "{}",
        user.all()
    );
    for line in &user.transcript {
        let (_, text) = line.split_once(' ').unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert!(lines.len() <= 2, "{line:?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 32), "{line:?}");
    }
}
