//! The password prompt of the login stack, with "Forgot password?" behind the gesture.

use zeroize::Zeroizing;

use crate::api::ResetApi;
use crate::config::{AfterReset, AgentConfig, ConfigError};
use crate::conversation::Conversation;
use crate::dialogue::{self, Dialogue, Kind, MAX_TRIES, Outcome};
use crate::journal::{Event, Journal};
use crate::screen::{OnePerPrompt, Screen};
use crate::text::{Lang, T, t};

/// What the login stack does next. The agent never decides that a login succeeds.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Give this password to the next module (what the user typed, or the new password).
    UsePassword(Zeroizing<String>),
    /// The conversation failed: leave everything to the next module.
    Nothing,
}

/// Asks for the password the plain way. Whenever the agent has been at the prompt it also
/// collects the password, so that a module after it with `use_first_pass` (pam_sss, pam_ldap
/// placed second by pam-auth-update) always finds one and never fails without asking.
pub fn plain_prompt(conv: &mut dyn Conversation, lang: Lang) -> Next {
    match conv.secret(&t(lang, T::PlainPassword)) {
        Ok(p) => Next::UsePassword(Zeroizing::new(p)),
        Err(_) => Next::Nothing,
    }
}

/// Where the login happens, beyond the config: what renders it and what the machine knows.
pub struct Place<'a> {
    pub screen: Screen,
    /// SSH: seconds sshd leaves for the rest of the login (`LoginGraceTime` less the time
    /// spent so far), when known.
    pub time_left: Option<Box<dyn Fn() -> Option<u64> + 'a>>,
    /// An SSH login: sshd shows a message only with the next prompt (or, after the last
    /// answer, in an interactive session's banner), so an outcome needs a prompt after it.
    pub ssh: bool,
    /// Whether the user has a desktop keyring encrypted with the login password. Asked only
    /// after a reset: a home directory can be slow (NFS) and a normal login must not wait.
    pub has_keyring: Box<dyn Fn() -> bool + 'a>,
}

impl Place<'_> {
    pub fn terminal() -> Place<'static> {
        Place {
            screen: Screen::Terminal,
            ssh: false,
            time_left: None,
            has_keyring: Box::new(|| false),
        }
    }
}

/// A reset needs about this long at least (read a code, type a password twice).
const MIN_SECS_FOR_A_RESET: u64 = 45;

/// Asks for the password. The gesture instead offers a reset or an unlock; `connect` is called
/// only then, so a normal login never touches the network. However the dialogue ends, the
/// password is asked for once more, plainly, and handed on.
pub fn password_prompt(
    conv: &mut dyn Conversation,
    cfg: &AgentConfig,
    lang: Lang,
    user: &str,
    journal: &dyn Journal,
    place: &Place<'_>,
    connect: impl FnOnce() -> Result<Box<dyn ResetApi>, ConfigError>,
) -> Next {
    if place.screen.is_greeter() {
        let mut fitted = OnePerPrompt::new(conv);
        return prompt_on(&mut fitted, cfg, lang, user, journal, place, connect);
    }
    prompt_on(conv, cfg, lang, user, journal, place, connect)
}

fn prompt_on(
    conv: &mut dyn Conversation,
    cfg: &AgentConfig,
    lang: Lang,
    user: &str,
    journal: &dyn Journal,
    place: &Place<'_>,
    connect: impl FnOnce() -> Result<Box<dyn ResetApi>, ConfigError>,
) -> Next {
    let gesture = cfg.gesture.as_str();
    let first = match place.screen {
        // lightdm-gtk-greeter never shows the first prompt's text, and slick-greeter cuts it
        // to a placeholder: the way in goes in a message, which both show.
        Screen::Greeter => {
            conv.info(&t(lang, T::GreeterHint { gesture }));
            t(lang, T::GreeterPassword)
        }
        // GDM shows the prompt as the entry's label but delays every message by its length:
        // a message on every normal login would slow it.
        Screen::Gdm => t(lang, T::GdmPasswordPrompt { gesture }),
        Screen::Terminal => t(lang, T::PasswordPrompt { gesture }),
    };
    let Ok(typed) = conv.secret(&first) else {
        return Next::Nothing;
    };
    let typed = Zeroizing::new(typed);
    if *typed != cfg.gesture {
        return Next::UsePassword(typed);
    }
    journal.event(&Event::ResetOffered {
        user: user.to_string(),
    });
    let Some(kind) = menu(conv, cfg, lang, place.screen) else {
        return plain_prompt(conv, lang);
    };
    if let Some(secs) = place.time_left.as_ref().and_then(|f| f()) {
        if secs < MIN_SECS_FOR_A_RESET {
            conv.error(&t(lang, T::TooLittleTime));
            return plain_prompt(conv, lang);
        }
        conv.info(&t(lang, T::TimeLeft { secs }));
    }
    let greeter = place.screen.is_greeter();
    let say = |long: T<'_>, short: T<'_>| t(lang, if greeter { short } else { long });
    let mut api = match connect() {
        Ok(api) => api,
        Err(e) => {
            conv.error(&say(T::NotConfigured, T::GreeterNotConfigured));
            journal.event(&Event::ConfigError { cause: e.0 });
            return plain_prompt(conv, lang);
        }
    };
    let mut d = Dialogue {
        conv,
        api: api.as_mut(),
        journal,
        lang,
        user,
        server: &cfg.server_url,
        screen: place.screen,
    };
    match dialogue::run(&mut d, kind) {
        Outcome::PasswordChanged(new) => {
            let keyring = (place.has_keyring)();
            match (greeter, keyring) {
                (true, true) => d.conv.info(&t(lang, T::GreeterKeyringOld)),
                (true, false) => d.conv.info(&t(lang, T::GreeterChanged)),
                (false, true) => d.conv.info(&t(lang, T::KeyringOld)),
                (false, false) => {}
            }
            match (cfg.after_reset, greeter) {
                // `ssh host command` would otherwise end without a word about the outcome.
                (AfterReset::Continue, false) if place.ssh => {
                    let _ = d.conv.secret(&t(lang, T::PressEnterPrompt));
                    Next::UsePassword(new)
                }
                (AfterReset::Continue, false) => {
                    d.conv.info(&t(lang, T::SigningIn));
                    Next::UsePassword(new)
                }
                // A greeter starts the session the moment the stack succeeds, and
                // slick-greeter stops at a "Log In" button when a message came after the last
                // answer: one last prompt lets the user read the outcome, then Enter signs in.
                (AfterReset::Continue, true) => {
                    if !keyring {
                        d.conv.info(&t(lang, T::GreeterPressEnter));
                    }
                    let _ = d.conv.secret(&t(lang, T::GreeterPressEnterPrompt));
                    Next::UsePassword(new)
                }
                (AfterReset::Prompt, _) => {
                    d.conv.info(&say(T::SignInWithNew, T::GreeterSignInWithNew));
                    the_new_password(d.conv, lang, &new)
                }
            }
        }
        Outcome::Unlocked => {
            d.conv.info(&t(lang, T::SignInAsUsual));
            plain_prompt(d.conv, lang)
        }
        _ => plain_prompt(d.conv, lang),
    }
}

/// After a reset in prompt mode: the user proves they know the new password, and only the new
/// password goes on. A module after the agent that caches credentials (pam_sss with
/// `cached_auth_timeout`) would otherwise accept the old one from its cache; the new one makes
/// it ask the directory and refresh the cache, after which the old one is refused there too.
fn the_new_password(conv: &mut dyn Conversation, lang: Lang, new: &str) -> Next {
    for _ in 0..MAX_TRIES {
        match plain_prompt(conv, lang) {
            Next::UsePassword(p) if *p == new => return Next::UsePassword(p),
            Next::UsePassword(_) => conv.error(&t(lang, T::NotTheNewPassword)),
            Next::Nothing => return Next::Nothing,
        }
    }
    conv.error(&t(lang, T::TooManyTries));
    Next::Nothing
}

/// "Reset, unlock, or back?" `None` is back.
fn menu(
    conv: &mut dyn Conversation,
    cfg: &AgentConfig,
    lang: Lang,
    screen: Screen,
) -> Option<Kind> {
    let unlock = cfg.offer_unlock;
    let (menu, prompt) = if screen.is_greeter() {
        (T::GreeterMenu { unlock }, T::GreeterMenuPrompt { unlock })
    } else {
        (T::Menu { unlock }, T::MenuPrompt { unlock })
    };
    conv.info(&t(lang, menu));
    for _ in 0..MAX_TRIES {
        let answer = conv.prompt(&t(lang, prompt.clone())).ok()?;
        let answer = answer.trim().to_lowercase();
        match (answer.as_str(), unlock) {
            ("", _) => return None,
            ("1", true) | ("y" | "yes" | "是", false) => return Some(Kind::Reset),
            ("2", true) => return Some(Kind::Unlock),
            (_, true) => conv.error(&t(lang, T::NotAChoice { n: 2 })),
            (_, false) => return None,
        }
    }
    None
}
