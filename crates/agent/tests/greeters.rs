//! The dialogue as each graphical greeter renders it. The models below follow the greeters'
//! sources and what was seen on the real ones under Xvfb (docs/greeters.md); the end-to-end
//! test (`tests/greeter`) checks the same steps on real LightDM by reading the screen.
//!
//! At every step the user must be able to read what to do next: the way into a reset at the
//! password prompt, the choices, the question, the outcome.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::VecDeque;

use sspr_agent::config::AgentConfig;
use sspr_agent::login::{Next, Place, password_prompt};
use sspr_agent::screen::Screen;
use sspr_agent::{Cancelled, Conversation, Lang};
use support::{Log, Server};

/// lightdm-gtk-greeter 2.0.8 (`process_prompts`, `login_cb`): one message label that each
/// message replaces and Enter clears; a prompt's text is shown only when the label is empty
/// and a password prompt was answered before.
struct Gtk {
    answers: VecDeque<&'static str>,
    label: String,
    password_prompted: bool,
    /// What the user could read at each prompt.
    seen: Vec<String>,
}

impl Gtk {
    fn new(answers: &[&'static str]) -> Gtk {
        Gtk {
            answers: answers.iter().copied().collect(),
            label: String::new(),
            password_prompted: false,
            seen: Vec::new(),
        }
    }

    fn ask(&mut self, text: &str) -> Result<String, Cancelled> {
        if self.label.is_empty() && self.password_prompted {
            self.label = text.trim_end_matches(' ').trim_end_matches(':').into();
        }
        self.password_prompted = true;
        self.seen.push(std::mem::take(&mut self.label));
        self.answers.pop_front().map(String::from).ok_or(Cancelled)
    }
}

impl Conversation for Gtk {
    fn prompt(&mut self, text: &str) -> Result<String, Cancelled> {
        self.ask(text)
    }
    fn secret(&mut self, text: &str) -> Result<String, Cancelled> {
        self.ask(text)
    }
    fn info(&mut self, text: &str) {
        self.label = text.into();
    }
    fn error(&mut self, text: &str) {
        self.label = text.into();
    }
}

/// Lines of slick-greeter's box above the entry with the entry still in sight (a third shows
/// only the entry's top edge).
const SLICK_LINES: usize = 2;
/// Characters of a message line, and of the placeholder, that slick-greeter shows at least
/// (33 to 36 and 29 to 31 were seen, by the letters).
const SLICK_COLUMNS: usize = 33;
const SLICK_PLACEHOLDER: usize = 29;

/// slick-greeter 1.6.1 (`PromptBox`, `GreeterList`): messages stack as lines in a box of fixed
/// height, each cut at 33-36 characters; a prompt becomes the entry's placeholder, cut at 29-31;
/// the box is cleared at the first message or prompt after an answer; when a message came
/// after the last answer, it stops at a "Log In" button instead of starting the session.
struct Slick {
    answers: VecDeque<&'static str>,
    lines: Vec<String>,
    will_clear: bool,
    /// What could be read at each prompt, and whether the entry was in sight.
    seen: Vec<(String, bool)>,
    unacknowledged: bool,
}

fn cut(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

impl Slick {
    fn new(answers: &[&'static str]) -> Slick {
        Slick {
            answers: answers.iter().copied().collect(),
            lines: Vec::new(),
            will_clear: false,
            seen: Vec::new(),
            unacknowledged: false,
        }
    }

    fn clear_if_answered(&mut self) {
        if self.will_clear {
            self.lines.clear();
            self.will_clear = false;
        }
    }

    fn message(&mut self, text: &str) {
        self.clear_if_answered();
        self.lines
            .extend(text.lines().map(|l| cut(l, SLICK_COLUMNS)));
        self.unacknowledged = true;
    }

    fn ask(&mut self, text: &str) -> Result<String, Cancelled> {
        self.clear_if_answered();
        let placeholder = if text.contains('\n') {
            self.message(text);
            String::new()
        } else {
            cut(
                text.trim_end_matches(' ').trim_end_matches(':'),
                SLICK_PLACEHOLDER,
            )
        };
        let in_sight = self.lines.len() <= SLICK_LINES;
        let shown: Vec<String> = self.lines.iter().take(SLICK_LINES).cloned().collect();
        self.seen
            .push((format!("{}\n[{placeholder}]", shown.join("\n")), in_sight));
        self.will_clear = true;
        self.unacknowledged = false;
        self.answers.pop_front().map(String::from).ok_or(Cancelled)
    }
}

impl Conversation for Slick {
    fn prompt(&mut self, text: &str) -> Result<String, Cancelled> {
        self.ask(text)
    }
    fn secret(&mut self, text: &str) -> Result<String, Cancelled> {
        self.ask(text)
    }
    fn info(&mut self, text: &str) {
        self.message(text);
    }
    fn error(&mut self, text: &str) {
        self.message(text);
    }
}

const NEW: &str = "correct horse battery staple";

fn cfg() -> AgentConfig {
    AgentConfig::parse("server_url = \"https://sspr.example.com\"")
        .unwrap()
        .unwrap()
}

fn greeter_login(
    conv: &mut dyn Conversation,
    server: Server,
    screen: Screen,
    keyring: bool,
) -> Next {
    let place = Place {
        screen,
        ssh: false,
        time_left: None,
        has_keyring: Box::new(move || keyring),
    };
    let log = Log::default();
    password_prompt(conv, &cfg(), Lang::En, "alice", &log, &place, || {
        Ok(Box::new(server))
    })
}

/// Each step's answer, and words the user must be able to read before giving it.
const RESET: &[(&str, &[&str])] = &[
    ("", &["forgot password", "press enter"]),
    (
        "1",
        &[
            "type 1 to reset your password",
            "or 2 to unlock your account",
        ],
    ),
    ("1", &["type 1-3", "1 email  2 questions  3 app"]),
    ("999999", &["type the code"]),
    ("123456", &["not right"]),
    ("short", &["new password", "15 characters"]),
    ("short", &["again"]),
    (NEW, &["can't be used"]),
    (NEW, &["again"]),
    ("", &["password is changed", "press enter to sign in"]),
];

fn check(seen: &[String], steps: &[(&str, &[&str])]) {
    assert_eq!(seen.len(), steps.len(), "prompts seen:\n{seen:#?}");
    for (i, (shown, (_, want))) in seen.iter().zip(steps).enumerate() {
        let shown = shown.to_lowercase().replace('\n', " ");
        for w in *want {
            assert!(
                shown.contains(w),
                "step {i}: {w:?} is not visible; the screen shows:\n{shown}"
            );
        }
    }
}

fn answers(steps: &[(&'static str, &[&str])]) -> Vec<&'static str> {
    steps.iter().map(|(a, _)| *a).collect()
}

#[test]
fn every_step_of_a_reset_is_readable_on_the_gtk_greeter() {
    let mut gtk = Gtk::new(&answers(RESET));
    let next = greeter_login(&mut gtk, Server::new(1), Screen::Greeter, false);
    assert!(matches!(&next, Next::UsePassword(p) if p.as_str() == NEW));
    check(&gtk.seen, RESET);
}

#[test]
fn every_step_of_a_reset_is_readable_on_slick_greeter_with_the_entry_in_sight() {
    let mut slick = Slick::new(&answers(RESET));
    let next = greeter_login(&mut slick, Server::new(1), Screen::Greeter, false);
    assert!(matches!(&next, Next::UsePassword(p) if p.as_str() == NEW));
    for (i, (shown, in_sight)) in slick.seen.iter().enumerate() {
        assert!(
            in_sight,
            "step {i}: the entry is pushed out of sight by:\n{shown}"
        );
    }
    let seen: Vec<String> = slick.seen.iter().map(|(s, _)| s.clone()).collect();
    check(&seen, RESET);
    assert!(
        !slick.unacknowledged,
        "a message after the last answer stops slick-greeter at its Log In button"
    );
}

#[test]
fn the_terminal_texts_were_unreadable_on_a_greeter() {
    // What the issue saw: the terminal dialogue on lightdm-gtk-greeter hides the way in and
    // every question; it stays available for consoles and SSH.
    let mut gtk = Gtk::new(&answers(RESET));
    greeter_login(&mut gtk, Server::new(1), Screen::Terminal, false);
    assert!(!gtk.seen[0].to_lowercase().contains("forgot"));
}

#[test]
fn a_stale_keyring_is_told_at_the_outcome_on_both_greeters() {
    let steps: &[(&str, &[&str])] = &[
        ("", &["forgot"]),
        ("1", &["reset"]),
        ("3", &["3 app"]),
        ("654321", &["type the code"]),
        (NEW, &["new password"]),
        (NEW, &["again"]),
        (
            "",
            &["password changed", "press enter", "keyring", "old password"],
        ),
    ];
    let mut gtk = Gtk::new(&answers(steps));
    greeter_login(&mut gtk, Server::new(1), Screen::Greeter, true);
    check(&gtk.seen, steps);
    let mut slick = Slick::new(&answers(steps));
    greeter_login(&mut slick, Server::new(1), Screen::Greeter, true);
    assert!(slick.seen.iter().all(|(_, in_sight)| *in_sight));
    let seen: Vec<String> = slick.seen.iter().map(|(s, _)| s.clone()).collect();
    check(&seen, steps);
}

#[test]
fn a_server_that_is_down_is_said_in_a_few_words_and_sign_in_goes_on() {
    let mut s = Server::new(1);
    s.down = true;
    let steps: &[(&str, &[&str])] = &[
        ("", &["forgot"]),
        ("1", &["reset"]),
        (
            "my old password",
            &["can't reach the reset service", "helpdesk"],
        ),
    ];
    let mut slick = Slick::new(&answers(steps));
    let next = greeter_login(&mut slick, s, Screen::Greeter, false);
    assert!(matches!(&next, Next::UsePassword(p) if p.as_str() == "my old password"));
    assert!(slick.seen.iter().all(|(_, in_sight)| *in_sight));
    let seen: Vec<String> = slick.seen.iter().map(|(s, _)| s.clone()).collect();
    check(&seen, steps);
}

#[test]
fn gdm_gets_the_way_in_in_the_prompt_and_no_message_on_a_normal_login() {
    struct Gdm(Vec<String>);
    impl Conversation for Gdm {
        fn prompt(&mut self, t: &str) -> Result<String, Cancelled> {
            self.0.push(format!("prompt {t}"));
            Ok("x".into())
        }
        fn secret(&mut self, t: &str) -> Result<String, Cancelled> {
            self.0.push(format!("secret {t}"));
            Ok("my password".into())
        }
        fn info(&mut self, t: &str) {
            self.0.push(format!("info {t}"));
        }
        fn error(&mut self, t: &str) {
            self.0.push(format!("error {t}"));
        }
    }
    let mut gdm = Gdm(Vec::new());
    greeter_login(&mut gdm, Server::new(1), Screen::Gdm, false);
    assert_eq!(gdm.0, ["secret Password (forgot it? Enter):"]);
}

#[test]
fn a_single_method_is_taken_without_a_list_and_enter_leaves() {
    let mut s = Server::new(1);
    s.only_email = true;
    let steps: &[(&str, &[&str])] = &[
        ("", &["forgot"]),
        ("1", &["reset"]),
        ("", &["type the code sent to"]),
        ("my old password", &["cancelled"]),
    ];
    let mut gtk = Gtk::new(&answers(steps));
    let next = greeter_login(&mut gtk, s, Screen::Greeter, false);
    assert!(matches!(&next, Next::UsePassword(p) if p.as_str() == "my old password"));
    check(&gtk.seen, steps);
}
