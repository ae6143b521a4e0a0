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
    /// Let the next module ask for the password as it always does.
    AskAsUsual,
}

/// Asks for the password. The gesture instead offers a reset or an unlock; `connect` is called
/// only then, so a normal login never touches the network.
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
        return Next::AskAsUsual;
    };
    let typed = Zeroizing::new(typed);
    if *typed != cfg.gesture {
        return Next::UsePassword(typed);
    }
    journal.event(&Event::ResetOffered {
        user: user.to_string(),
    });
    let Some(kind) = menu(conv, cfg, lang) else {
        return Next::AskAsUsual;
    };
    let mut api = match connect() {
        Ok(api) => api,
        Err(e) => {
            conv.error(&t(lang, T::NotConfigured));
            journal.event(&Event::ConfigError { cause: e.0 });
            return Next::AskAsUsual;
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
                Next::AskAsUsual
            }
        },
        Outcome::Unlocked => {
            d.conv.info(&t(lang, T::SignInAsUsual));
            Next::AskAsUsual
        }
        _ => Next::AskAsUsual,
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
