//! The password prompt of the login stack, with "Forgot password?" behind the gesture.

use zeroize::Zeroizing;

use crate::api::ResetApi;
use crate::config::{AfterReset, AgentConfig, ConfigError};
use crate::conversation::Conversation;
use crate::dialogue::{self, Dialogue, Kind, MAX_TRIES, Outcome};
use crate::journal::{Event, Journal};
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

/// Asks for the password. The gesture instead offers a reset or an unlock; `connect` is called
/// only then, so a normal login never touches the network. However the dialogue ends, the
/// password is asked for once more, plainly, and handed on.
pub fn password_prompt(
    conv: &mut dyn Conversation,
    cfg: &AgentConfig,
    lang: Lang,
    user: &str,
    journal: &dyn Journal,
    connect: impl FnOnce() -> Result<Box<dyn ResetApi>, ConfigError>,
) -> Next {
    let Ok(typed) = conv.secret(&t(
        lang,
        T::PasswordPrompt {
            gesture: &cfg.gesture,
        },
    )) else {
        return Next::Nothing;
    };
    let typed = Zeroizing::new(typed);
    if *typed != cfg.gesture {
        return Next::UsePassword(typed);
    }
    journal.event(&Event::ResetOffered {
        user: user.to_string(),
    });
    let Some(kind) = menu(conv, cfg, lang) else {
        return plain_prompt(conv, lang);
    };
    let mut api = match connect() {
        Ok(api) => api,
        Err(e) => {
            conv.error(&t(lang, T::NotConfigured));
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
    };
    match dialogue::run(&mut d, kind) {
        Outcome::PasswordChanged(new) => match cfg.after_reset {
            AfterReset::Continue => {
                d.conv.info(&t(lang, T::SigningIn));
                Next::UsePassword(new)
            }
            AfterReset::Prompt => {
                d.conv.info(&t(lang, T::SignInWithNew));
                plain_prompt(d.conv, lang)
            }
        },
        Outcome::Unlocked => {
            d.conv.info(&t(lang, T::SignInAsUsual));
            plain_prompt(d.conv, lang)
        }
        _ => plain_prompt(d.conv, lang),
    }
}

/// "Reset, unlock, or back?" `None` is back.
fn menu(conv: &mut dyn Conversation, cfg: &AgentConfig, lang: Lang) -> Option<Kind> {
    let unlock = cfg.offer_unlock;
    conv.info(&t(lang, T::Menu { unlock }));
    for _ in 0..MAX_TRIES {
        let answer = conv.prompt(&t(lang, T::MenuPrompt { unlock })).ok()?;
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
