//! The reset and unlock dialogue: what the user is asked, in what order, and what each server
//! answer leads to. Pure logic over [`Conversation`] and [`ResetApi`].

use sspr_proto::{Answer, FlowResponse, VerifyRequest};
use zeroize::Zeroizing;

use crate::api::{ApiFailure, ResetApi};
use crate::conversation::{Cancelled, Conversation};
use crate::journal::{Event, Journal};
use crate::screen::{GREETER_LINES, GREETER_WIDTH, Screen, first_sentence, wrap};
use crate::text::{Lang, T, clean, t};

/// Wrong inputs allowed at one prompt before the dialogue gives up.
pub const MAX_TRIES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reset,
    Unlock,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Reset => "reset",
            Kind::Unlock => "unlock",
        }
    }
}

/// How the dialogue ended. Every message has already been shown to the user.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The directory holds this new password now.
    PasswordChanged(Zeroizing<String>),
    Unlocked,
    /// The user has too few methods registered (or is unknown: the server does not say).
    RegistrationRequired,
    Cancelled,
    /// The server refused (limit, block, expired flow) or could not be used.
    Failed,
}

impl Outcome {
    /// The word the machine's log uses.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::PasswordChanged(_) => "password_changed",
            Outcome::Unlocked => "unlocked",
            Outcome::RegistrationRequired => "registration_required",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
        }
    }
}

/// Everything the dialogue talks to.
pub struct Dialogue<'a> {
    pub conv: &'a mut dyn Conversation,
    pub api: &'a mut dyn ResetApi,
    pub journal: &'a dyn Journal,
    pub lang: Lang,
    pub user: &'a str,
    /// The server's URL: for the log, and for the portal where browser-only methods work.
    pub server: &'a str,
    /// How the conversation is rendered: a greeter gets one short message per prompt.
    pub screen: Screen,
}

/// What a user typed that cannot be used: the PAM conversation turns bytes that are not UTF-8
/// (a Latin-1 console) into U+FFFD, which must never become part of a password or a code.
fn unreadable(typed: &str) -> bool {
    typed.contains('\u{FFFD}')
}

/// Why a step stopped short of its goal.
enum Stop {
    Cancelled,
    /// Already shown and logged.
    Failed {
        support_code: Option<String>,
    },
}

impl From<Cancelled> for Stop {
    fn from(_: Cancelled) -> Self {
        Stop::Cancelled
    }
}

/// What verifying one method led to.
enum Step {
    Next(Box<FlowResponse>),
    /// Back to the choice of method (the user asked, or the method failed).
    Again,
}

/// Shows every text without control characters (see [`crate::text::clean`]): much of what
/// the user reads comes from the server.
struct Clean<'a>(&'a mut dyn Conversation);

impl Conversation for Clean<'_> {
    fn prompt(&mut self, text: &str) -> Result<String, Cancelled> {
        self.0.prompt(&clean(text))
    }
    fn secret(&mut self, text: &str) -> Result<String, Cancelled> {
        self.0.secret(&clean(text))
    }
    fn info(&mut self, text: &str) {
        self.0.info(&clean(text))
    }
    fn error(&mut self, text: &str) {
        self.0.error(&clean(text))
    }
}

/// Runs a whole reset or unlock for `d.user`.
pub fn run(d: &mut Dialogue<'_>, kind: Kind) -> Outcome {
    let mut shown = Clean(&mut *d.conv);
    let mut d = Dialogue {
        conv: &mut shown,
        api: &mut *d.api,
        journal: d.journal,
        lang: d.lang,
        user: d.user,
        server: d.server,
        screen: d.screen,
    };
    let result = d.flow(kind);
    let (outcome, support_code) = match result {
        Ok(o) => (o, None),
        Err(Stop::Cancelled) => {
            d.conv.info(&d.t(T::Cancelled));
            (Outcome::Cancelled, None)
        }
        Err(Stop::Failed { support_code }) => (Outcome::Failed, support_code),
    };
    d.journal.event(&Event::Finished {
        user: d.user.to_string(),
        result: outcome.result(),
        support_code,
    });
    outcome
}

impl Dialogue<'_> {
    fn t(&self, what: T<'_>) -> String {
        t(self.lang, what)
    }

    /// The long words on a terminal, the short ones on a greeter.
    fn say(&self, long: T<'_>, short: T<'_>) -> String {
        self.t(if self.greeter() { short } else { long })
    }

    fn greeter(&self) -> bool {
        self.screen.is_greeter()
    }

    /// A server's sentence as this screen can show it: whole on a terminal, its first
    /// sentence on a greeter.
    fn server_words<'s>(&self, text: &'s str) -> &'s str {
        if self.greeter() {
            first_sentence(text)
        } else {
            text
        }
    }

    fn flow(&mut self, kind: Kind) -> Result<Outcome, Stop> {
        // A greeter shows its own spinner; a message here would crowd the next step out.
        if !self.greeter() {
            self.conv.info(&self.t(T::Contacting));
        }
        let mut state = self
            .api
            .start(self.user, kind.as_str())
            .map_err(|e| self.failed(e))?;
        self.journal.event(&Event::FlowStarted {
            user: self.user.to_string(),
            kind: kind.as_str(),
            server: self.server.to_string(),
        });
        if state.status == "registration_required" {
            self.conv.error(&state.message);
            if let Some(url) = &state.register_url {
                self.conv.info(&self.t(T::RegisterAt { url }));
            }
            return Ok(Outcome::RegistrationRequired);
        }
        let Some(token) = state.flow_token.clone().map(Zeroizing::new) else {
            return Err(self.failed(ApiFailure::Protocol("start gave no flow token".into())));
        };
        // Each round verifies a method or returns to the choice; bound the rounds so a confused
        // server can never keep the login screen busy forever.
        for _ in 0..(MAX_TRIES * 4) {
            match state.status.as_str() {
                "choose_method" => {
                    if let Step::Next(next) = self.verify_one(&token, &state)? {
                        state = *next;
                    }
                }
                "set_password" => return self.new_password(&token),
                "ready_to_unlock" => {
                    let done = self.api.unlock(&token).map_err(|e| self.failed(e))?;
                    self.conv.info(self.server_words(&done.message));
                    return Ok(Outcome::Unlocked);
                }
                other => {
                    return Err(
                        self.failed(ApiFailure::Protocol(format!("unexpected status {other:?}")))
                    );
                }
            }
        }
        self.conv.error(&self.t(T::TooManyTries));
        Err(Stop::Failed { support_code: None })
    }

    fn verify_one(&mut self, token: &str, state: &FlowResponse) -> Result<Step, Stop> {
        let methods = &state.methods;
        let portal = format!("{}/reset", self.server.trim_end_matches('/'));
        if methods.is_empty() {
            if !state.browser_only.is_empty() {
                // A passkey is all this user has left: it works in a browser, not here.
                self.conv.error(&self.say(
                    T::BrowserOnly { url: &portal },
                    T::GreeterBrowserOnly { url: &portal },
                ));
                return Err(Stop::Cancelled);
            }
            return Err(self.failed(ApiFailure::Protocol("no method offered".into())));
        }
        if !state.browser_only.is_empty() && !self.greeter() {
            self.conv.info(&self.t(T::AlsoInBrowser { url: &portal }));
        }
        let step = state.verified.len() + 1;
        let of = usize::from(state.required).max(step);
        let n = methods.len();
        // "Another way" is the list of methods; where a greeter skipped the list (one
        // method), it is the way out.
        let back = if self.greeter() && n == 1 {
            Err(Stop::Cancelled)
        } else {
            Ok(Step::Again)
        };
        let choice = if self.greeter() {
            self.greeter_menu(state, step, of)?
        } else {
            self.conv.info(&self.t(T::ChooseMethod { step, of }));
            let mut lines = Vec::new();
            for (i, m) in methods.iter().enumerate() {
                lines.push(self.t(T::MethodLine {
                    n: i + 1,
                    label: &m.label,
                }));
            }
            self.conv.info(&lines.join("\n"));
            self.choose(n)?
        };
        let method = methods[choice].method.clone();
        self.journal.event(&Event::MethodChosen {
            user: self.user.to_string(),
            method: method.clone(),
        });
        // 429 here is usually this method's code limit: another method may still work (a
        // block applies to every method, and the user can leave with Enter).
        let challenge = match self.api.challenge(token, &method) {
            Ok(c) => c,
            Err(e) => return self.retryable(e, &[400, 429]).and(back),
        };
        if !self.greeter() {
            self.conv.info(&challenge.message);
        }
        if method == "questions" {
            let mut answers = Vec::new();
            for q in &challenge.questions {
                let a = if self.greeter() {
                    self.conv.info(&q.text);
                    self.conv.secret(&self.t(T::GreeterAnswerPrompt))?
                } else {
                    self.conv.secret(&format!("{} ", q.text))?
                };
                let a = Zeroizing::new(a);
                if a.trim().is_empty() {
                    return back;
                }
                if unreadable(&a) {
                    self.conv.error(&self.say(T::NotUtf8, T::GreeterNotUtf8));
                    return back;
                }
                answers.push(Answer {
                    question_id: q.id.clone(),
                    answer: a.to_string(),
                });
            }
            let req = VerifyRequest {
                method,
                code: None,
                answers: Some(answers),
                credential: None,
            };
            let result = self.api.verify(token, &req);
            if let Some(a) = req.answers {
                for mut x in a {
                    zeroize::Zeroize::zeroize(&mut x.answer);
                }
            }
            return match result {
                Ok(next) => Ok(Step::Next(Box::new(next))),
                Err(e) => self.retryable(e, &[400]).and(back),
            };
        }
        if self.greeter() {
            let to = challenge.sent_to.as_deref();
            self.conv.info(&self.t(T::GreeterCode {
                method: &method,
                to,
            }));
        } else if let Some(to) = &challenge.sent_to {
            self.conv.info(&self.t(T::SentTo { to }));
        }
        for _ in 0..MAX_TRIES {
            let code = self
                .conv
                .prompt(&self.say(T::CodePrompt, T::GreeterCodePrompt))?;
            let code = code.trim();
            if code.is_empty() {
                return back;
            }
            if unreadable(code) {
                self.conv.error(&self.say(T::NotUtf8, T::GreeterNotUtf8));
                continue;
            }
            let req = VerifyRequest {
                method: method.clone(),
                code: Some(code.to_string()),
                answers: None,
                credential: None,
            };
            match self.api.verify(token, &req) {
                Ok(next) => return Ok(Step::Next(Box::new(next))),
                // A wrong, malformed or spent code: the server's words say which; the user may
                // type it again or press Enter for another way.
                Err(e) => self.retryable(e, &[400])?,
            }
        }
        self.conv.error(&self.t(T::TooManyTries));
        Err(Stop::Failed { support_code: None })
    }

    /// The choice of method on a greeter: a heading and every method as one word on one line
    /// ("1 Email  2 Text  3 App"), where the code goes being said at the next step; the heading
    /// gives way when the list needs both lines. A single method is taken without asking (a
    /// question with one answer is one step too many on a screen this small).
    fn greeter_menu(
        &mut self,
        state: &FlowResponse,
        step: usize,
        of: usize,
    ) -> Result<usize, Stop> {
        let n = state.methods.len();
        if n == 1 {
            return Ok(0);
        }
        let list = state
            .methods
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let word = self.t(T::GreeterMethod {
                    method: &m.method,
                    label: &m.label,
                });
                format!("{} {word}", i + 1)
            })
            .collect::<Vec<_>>()
            .join("  ");
        let heading = self.t(T::GreeterChoose { step, of, n });
        let both = format!("{heading}\n{list}");
        if wrap(&both, GREETER_WIDTH).len() <= GREETER_LINES {
            self.conv.info(&both);
        } else {
            self.conv.info(&list);
        }
        self.choose(n)
    }

    /// Asks for a number from 1 to `n`.
    fn choose(&mut self, n: usize) -> Result<usize, Stop> {
        for _ in 0..MAX_TRIES {
            let answer = self
                .conv
                .prompt(&self.say(T::MethodPrompt { n }, T::GreeterChoosePrompt { n }))?;
            let answer = answer.trim();
            if answer.is_empty() {
                return Err(Stop::Cancelled);
            }
            match answer.parse::<usize>() {
                Ok(k) if (1..=n).contains(&k) => return Ok(k - 1),
                _ => self.conv.error(&self.t(T::NotAChoice { n })),
            }
        }
        self.conv.error(&self.t(T::TooManyTries));
        Err(Stop::Failed { support_code: None })
    }

    fn new_password(&mut self, token: &str) -> Result<Outcome, Stop> {
        let policy = self.api.password_policy(token);
        match &policy {
            // A greeter has room for the length only; the server still checks every rule and
            // names the one broken.
            Ok(_) if self.greeter() => {}
            Ok(p) if !p.rules.is_empty() => {
                let mut lines = vec![self.t(T::RulesHeader)];
                lines.extend(p.rules.iter().map(|r| format!("  - {r}")));
                self.conv.info(&lines.join("\n"));
            }
            Ok(_) => {}
            // The rules are a courtesy; the server still enforces them on the new password.
            Err(e) => self.journal.detail(&format!(
                "could not fetch the password rules: {}",
                e.cause()
            )),
        }
        let min = policy.as_ref().map(|p| p.min_length).unwrap_or(0);
        for _ in 0..MAX_TRIES {
            if self.greeter() && min > 0 {
                self.conv.info(&self.t(T::GreeterNewPassword { min }));
            }
            let first = Zeroizing::new(
                self.conv
                    .secret(&self.say(T::NewPassword, T::GreeterNewPasswordPrompt))?,
            );
            if first.is_empty() {
                self.conv.error(&self.t(T::Empty));
                continue;
            }
            if unreadable(&first) {
                self.conv.error(&self.say(T::NotUtf8, T::GreeterNotUtf8));
                continue;
            }
            if self.greeter() {
                self.conv.info(&self.t(T::GreeterConfirm));
            }
            let second = Zeroizing::new(
                self.conv
                    .secret(&self.say(T::ConfirmPassword, T::GreeterConfirmPrompt))?,
            );
            if *first != *second {
                self.conv.error(&self.t(T::Mismatch));
                continue;
            }
            match self.api.set_password(token, &first) {
                Ok(done) => {
                    // On a greeter the login stack says it, with what to do next.
                    if !self.greeter() {
                        self.conv.info(&done.message);
                    }
                    return Ok(Outcome::PasswordChanged(first));
                }
                // 422: a rule was broken. 503: the directory is down or busy; the flow stays
                // open so the user may try again. A refusal by the directory (502
                // directory_refused: the service account lacks a right, the account is
                // protected) ends the dialogue with the support code: another try cannot help.
                Err(e) => self.retryable(e, &[422, 503])?,
            }
        }
        self.conv.error(&self.t(T::TooManyTries));
        Err(Stop::Failed { support_code: None })
    }

    /// Shows a refusal with one of `statuses` and lets the caller retry; anything else ends
    /// the dialogue.
    fn retryable(&mut self, e: ApiFailure, statuses: &[u16]) -> Result<(), Stop> {
        match e {
            ApiFailure::Refused { status, error } if statuses.contains(&status) => {
                // The user can try again at once: on a greeter the reason is enough.
                if self.greeter() {
                    self.conv.error(first_sentence(&error.message));
                    return Ok(());
                }
                let mut text = self.t(T::WithSupportCode {
                    message: &error.message,
                    code: &error.support_code,
                });
                for d in error.details.iter().filter(|d| **d != error.message) {
                    text.push_str("\n  - ");
                    text.push_str(d);
                }
                self.conv.error(&text);
                Ok(())
            }
            other => Err(self.failed(other)),
        }
    }

    /// Shows and logs a failure that ends the dialogue.
    fn failed(&mut self, e: ApiFailure) -> Stop {
        match &e {
            ApiFailure::Refused { error, .. } => {
                let text = if self.greeter() {
                    format!(
                        "{}\n{}",
                        first_sentence(&error.message),
                        self.t(T::GreeterSupportCode {
                            code: &error.support_code
                        })
                    )
                } else {
                    self.t(T::WithSupportCode {
                        message: &error.message,
                        code: &error.support_code,
                    })
                };
                self.conv.error(&text);
                Stop::Failed {
                    support_code: Some(error.support_code.clone()),
                }
            }
            other => {
                let words = match other {
                    ApiFailure::Untrusted(_) => self.say(T::Untrusted, T::GreeterUntrusted),
                    ApiFailure::Protocol(_) => self.say(T::ServerBroken, T::GreeterServerBroken),
                    _ => self.say(T::Unreachable, T::GreeterUnreachable),
                };
                self.conv.error(&words);
                self.journal.event(&Event::ServerError {
                    user: self.user.to_string(),
                    cause: other.cause(),
                });
                Stop::Failed { support_code: None }
            }
        }
    }
}
