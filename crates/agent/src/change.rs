//! Changing a password from the PAM password stack (`pam_sm_chauthtok`): when the login finds
//! the password expired or to be changed, the application asks the stack for a new one, and
//! `pam_sspr` asks sspr to change it, so sspr's rules, history, audit and notices apply and
//! the directory write is sspr's (the service account's where the directory will not let an
//! expired user bind). Nothing here runs at a normal login.

use zeroize::Zeroizing;

use crate::api::{ApiFailure, ResetApi};
use crate::conversation::Conversation;
use crate::journal::{Event, Journal};
use crate::screen::{OnePerPrompt, first_sentence};
use crate::text::{Lang, T, clean, t};

/// New passwords tried before giving up (each refusal is shown).
const TRIES: usize = 3;

/// How a change ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Changed {
    /// Changed; the new password, for the modules stacked after this one (a keyring).
    Yes(Zeroizing<String>),
    /// sspr answered and refused, and the user was told why (or backed out).
    No,
    /// sspr could not be used (unreachable, untrusted, broken), or does not know the account
    /// with that password: the stack's next module may change the password its own way.
    Unavailable,
}

/// What the change needs besides the conversation.
pub struct ChangeRequest<'a> {
    pub lang: Lang,
    pub user: &'a str,
    /// The current password, if a module before this one asked for it (PAM_OLDAUTHTOK); else
    /// it is asked for.
    pub current: Option<Zeroizing<String>>,
    /// A greeter: the server's words are cut to their first sentence, and every message is
    /// fitted to the greeter (short lines, two at most, one message before each prompt).
    pub short: bool,
}

pub fn change(
    conv: &mut dyn Conversation,
    req: ChangeRequest<'_>,
    api: &mut dyn ResetApi,
    journal: &dyn Journal,
) -> Changed {
    // slick-greeter cuts a line at about 33 characters: unfitted, "The password is too short:
    // use at least 15 characters." ended at "use at leas" there.
    if req.short {
        let mut fitted = OnePerPrompt::new(conv);
        return change_on(&mut fitted, req, api, journal);
    }
    change_on(conv, req, api, journal)
}

fn change_on(
    conv: &mut dyn Conversation,
    req: ChangeRequest<'_>,
    api: &mut dyn ResetApi,
    journal: &dyn Journal,
) -> Changed {
    let lang = req.lang;
    let user = req.user;
    let finished = |result: &'static str, code: Option<String>| {
        journal.event(&Event::Finished {
            user: user.to_string(),
            result,
            support_code: code,
        })
    };
    conv.info(&t(lang, T::MustChangeNow));
    let mut current = match req.current {
        Some(c) if !c.is_empty() => c,
        _ => match conv.secret(&t(lang, T::CurrentPassword)) {
            Ok(c) => Zeroizing::new(c),
            Err(_) => {
                finished("cancelled", None);
                return Changed::No;
            }
        },
    };
    let mut asked_again = false;
    // A new password typed and confirmed, kept when only the current one was wrong.
    let mut pending: Option<Zeroizing<String>> = None;
    for _ in 0..TRIES {
        let new = match pending.take() {
            Some(new) => new,
            None => {
                let Ok(new) = conv.secret(&t(lang, T::NewPassword)).map(Zeroizing::new) else {
                    finished("cancelled", None);
                    return Changed::No;
                };
                let Ok(again) = conv
                    .secret(&t(lang, T::ConfirmPassword))
                    .map(Zeroizing::new)
                else {
                    finished("cancelled", None);
                    return Changed::No;
                };
                if new.is_empty() {
                    conv.error(&t(lang, T::Empty));
                    continue;
                }
                if *new != *again {
                    conv.error(&t(lang, T::Mismatch));
                    continue;
                }
                new
            }
        };
        match api.change_password(user, &current, &new) {
            Ok(_) => {
                conv.info(&t(lang, T::PasswordChangedNow));
                finished("changed", None);
                return Changed::Yes(new);
            }
            Err(ApiFailure::Refused { status, error }) => {
                let words = clean(&error.message);
                let words = if req.short {
                    first_sentence(&words).to_string()
                } else {
                    let mut w = words.clone();
                    for d in error.details.iter().filter(|d| **d != error.message) {
                        w.push('\n');
                        w.push_str(&clean(d));
                    }
                    w
                };
                conv.error(&words);
                match status {
                    // A rule the new password broke: another try.
                    422 => continue,
                    // The current password is not right: asked again once. Twice wrong, it may
                    // be an account sspr does not serve (a local one): the next module may try.
                    401 if !asked_again => match conv.secret(&t(lang, T::CurrentPassword)) {
                        Ok(c) => {
                            asked_again = true;
                            current = Zeroizing::new(c);
                            pending = Some(new);
                            continue;
                        }
                        Err(_) => {
                            finished(
                                "cancelled",
                                Some(error.support_code).filter(|c| !c.is_empty()),
                            );
                            return Changed::No;
                        }
                    },
                    401 => {
                        finished(
                            "not_known",
                            Some(error.support_code).filter(|c| !c.is_empty()),
                        );
                        return Changed::Unavailable;
                    }
                    _ => {
                        finished(
                            "refused",
                            Some(error.support_code).filter(|c| !c.is_empty()),
                        );
                        return Changed::No;
                    }
                }
            }
            Err(failure) => {
                journal.event(&Event::ServerError {
                    user: user.to_string(),
                    cause: failure.cause(),
                });
                let what = match failure {
                    ApiFailure::Untrusted(_) => T::Untrusted,
                    ApiFailure::Protocol(_) => T::ServerBroken,
                    _ => T::Unreachable,
                };
                conv.error(&t(lang, what));
                finished("unavailable", None);
                return Changed::Unavailable;
            }
        }
    }
    conv.error(&t(lang, T::TooManyTries));
    finished("too_many_tries", None);
    Changed::No
}
