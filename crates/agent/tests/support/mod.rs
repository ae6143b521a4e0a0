//! The scripted user, server and log that the agent's tests talk to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::VecDeque;
use std::sync::Mutex;

use sspr_agent::api::{ApiFailure, ResetApi};
use sspr_agent::journal::{Event, Journal};
use sspr_agent::{Cancelled, Conversation};
use sspr_proto::{
    ApiError, ChallengeResponse, FlowResponse, MethodOption, PasswordPolicyResponse, QuestionText,
    VerifyRequest,
};

/// Answers prompts from a script, in order, and keeps everything shown.
pub struct User {
    pub answers: VecDeque<&'static str>,
    pub transcript: Vec<String>,
}

impl User {
    pub fn new(answers: &[&'static str]) -> User {
        User {
            answers: answers.iter().copied().collect(),
            transcript: Vec::new(),
        }
    }

    fn next(&mut self, kind: &str, text: &str) -> Result<String, Cancelled> {
        self.transcript.push(format!("{kind} {text}"));
        match self.answers.pop_front() {
            // "^C" stands for the user backing out (Escape at the greeter).
            Some("^C") | None => Err(Cancelled),
            Some(a) => Ok(a.to_string()),
        }
    }

    pub fn saw(&self, text: &str) -> bool {
        self.transcript.iter().any(|l| l.contains(text))
    }

    pub fn all(&self) -> String {
        self.transcript.join("\n")
    }
}

impl Conversation for User {
    fn prompt(&mut self, text: &str) -> Result<String, Cancelled> {
        self.next("prompt", text)
    }
    fn secret(&mut self, text: &str) -> Result<String, Cancelled> {
        self.next("secret", text)
    }
    fn info(&mut self, text: &str) {
        self.transcript.push(format!("info {text}"));
    }
    fn error(&mut self, text: &str) {
        self.transcript.push(format!("error {text}"));
    }
}

#[derive(Default)]
pub struct Log(Mutex<Vec<String>>);

impl Journal for Log {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.to_string());
    }
    fn detail(&self, t: &str) {
        self.0.lock().unwrap().push(format!("detail {t}"));
    }
}

impl Log {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// A server with one user, `alice`, registered for email (code 123456), questions and TOTP
/// (code 654321). Passwords need 15 characters.
pub struct Server {
    pub required: u8,
    pub verified: Vec<String>,
    pub registered: bool,
    pub down: bool,
    pub expire_on_verify: bool,
    pub directory_down_once: bool,
    pub directory_refuses: bool,
    pub drawn: Vec<&'static str>,
    pub calls: Vec<String>,
    pub password: Option<String>,
    pub unlocked: bool,
    pub kind: String,
    pub email_limited: bool,
    /// Only the email method is registered.
    pub only_email: bool,
    /// Nothing this client can run is registered (a passkey only).
    pub only_passkey: bool,
    /// What the server names as browser-only.
    pub browser_only: Vec<String>,
}

impl Server {
    pub fn new(required: u8) -> Server {
        Server {
            required,
            verified: Vec::new(),
            registered: true,
            down: false,
            expire_on_verify: false,
            directory_down_once: false,
            directory_refuses: false,
            drawn: Vec::new(),
            calls: Vec::new(),
            password: None,
            unlocked: false,
            kind: "reset".into(),
            email_limited: false,
            only_email: false,
            only_passkey: false,
            browser_only: Vec::new(),
        }
    }

    fn state(&self, kind: &str) -> FlowResponse {
        let done = self.verified.len() >= self.required as usize;
        let status = match (done, kind) {
            (false, _) => "choose_method",
            (true, "unlock") => "ready_to_unlock",
            (true, _) => "set_password",
        };
        let methods = if done {
            Vec::new()
        } else {
            [
                ("email", "Email a code to a•••e@e•••.com"),
                ("questions", "Answer my security questions"),
                ("totp", "Enter a code from my authenticator app"),
            ]
            .iter()
            .filter(|(m, _)| !self.verified.iter().any(|v| v == m))
            .filter(|(m, _)| !self.only_email || *m == "email")
            .filter(|_| !self.only_passkey)
            .map(|(m, l)| MethodOption {
                method: m.to_string(),
                label: l.to_string(),
                destination: None,
            })
            .collect()
        };
        FlowResponse {
            flow_token: None,
            status: status.into(),
            kind: kind.into(),
            message: "Choose how to verify that it is you.".into(),
            register_url: None,
            methods,
            browser_only: self.browser_only.clone(),
            required: self.required,
            verified: self.verified.clone(),
            expires_in: 900,
        }
    }

    pub fn refuse(status: u16, error: &str, message: &str) -> ApiFailure {
        ApiFailure::Refused {
            status,
            error: ApiError {
                error: error.into(),
                message: message.into(),
                support_code: "SUP-1234".into(),
                details: Vec::new(),
            },
        }
    }

    fn up(&mut self, call: &str) -> Result<(), ApiFailure> {
        self.calls.push(call.to_string());
        if self.down {
            Err(ApiFailure::Unreachable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

impl ResetApi for Server {
    fn start(&mut self, user: &str, kind: &str) -> Result<FlowResponse, ApiFailure> {
        self.up("start")?;
        if !self.registered || user != "alice" {
            return Ok(FlowResponse {
                flow_token: Some("tok".into()),
                status: "registration_required".into(),
                kind: kind.into(),
                message: "More security info is needed.".into(),
                register_url: Some("https://sspr.example.com/register".into()),
                methods: Vec::new(),
                browser_only: Vec::new(),
                required: self.required,
                verified: Vec::new(),
                expires_in: 900,
            });
        }
        self.kind = kind.to_string();
        let mut r = self.state(kind);
        r.flow_token = Some("tok".into());
        Ok(r)
    }

    fn challenge(&mut self, flow: &str, method: &str) -> Result<ChallengeResponse, ApiFailure> {
        self.up(&format!("challenge {method}"))?;
        if self.email_limited && method == "email" {
            return Err(Server::refuse(
                429,
                "too_many_requests",
                "Too many codes were requested. Wait a while, or choose another method.",
            ));
        }
        assert_eq!(flow, "tok");
        let mut r = ChallengeResponse {
            method: method.into(),
            message: "We sent a code.".into(),
            sent_to: None,
            questions: Vec::new(),
            expires_in: None,
            passkey: None,
        };
        match method {
            "email" => r.sent_to = Some("a•••e@e•••.com".into()),
            "questions" => {
                self.drawn = vec!["q3", "q7"];
                r.message = "Answer these security questions.".into();
                r.questions = vec![
                    QuestionText {
                        id: "q3".into(),
                        text: "Your first pet's name?".into(),
                    },
                    QuestionText {
                        id: "q7".into(),
                        text: "The street you grew up on?".into(),
                    },
                ];
            }
            _ => r.message = "Enter the code shown in your authenticator app.".into(),
        }
        Ok(r)
    }

    fn verify(&mut self, _: &str, req: &VerifyRequest) -> Result<FlowResponse, ApiFailure> {
        self.up(&format!("verify {}", req.method))?;
        if self.expire_on_verify {
            return Err(Server::refuse(
                401,
                "unauthorized",
                "This reset session has expired or is not valid. Start again.",
            ));
        }
        let ok = match req.method.as_str() {
            "email" => req.code.as_deref() == Some("123456"),
            "totp" => req.code.as_deref() == Some("654321"),
            "questions" => req.answers.as_ref().is_some_and(|a| {
                a.len() == 2 && a[0].answer == "Rex" && a[1].answer == "Elm Street"
            }),
            _ => false,
        };
        if !ok {
            return Err(Server::refuse(
                400,
                "verification_failed",
                "That code is not right, or it has expired.",
            ));
        }
        self.verified.push(req.method.clone());
        Ok(self.state(&self.kind))
    }

    fn password_policy(&mut self, _: &str) -> Result<PasswordPolicyResponse, ApiFailure> {
        self.up("policy")?;
        Ok(PasswordPolicyResponse {
            min_length: 15,
            max_length: 256,
            rules: vec!["At least 15 characters.".into()],
        })
    }

    fn set_password(&mut self, _: &str, pw: &str) -> Result<FlowResponse, ApiFailure> {
        self.up("password")?;
        if self.directory_down_once {
            self.directory_down_once = false;
            return Err(Server::refuse(
                503,
                "directory_unavailable",
                "The directory can't be reached. Try again in a moment.",
            ));
        }
        if self.directory_refuses {
            return Err(Server::refuse(
                502,
                "directory_refused",
                "The account directory did not allow this change. Nothing was changed. Contact your helpdesk and give them the support code.",
            ));
        }
        if pw.chars().count() < 15 {
            let mut e = Server::refuse(422, "password_rejected", "This password can't be used.");
            if let ApiFailure::Refused { error, .. } = &mut e {
                error.details = vec!["Use at least 15 characters.".into()];
            }
            return Err(e);
        }
        self.password = Some(pw.to_string());
        let mut r = self.state("reset");
        r.status = "completed".into();
        r.message = "Your password was changed.".into();
        Ok(r)
    }

    fn unlock(&mut self, _: &str) -> Result<FlowResponse, ApiFailure> {
        self.up("unlock")?;
        self.unlocked = true;
        let mut r = self.state("unlock");
        r.status = "completed".into();
        r.message = "Your account is unlocked.".into();
        Ok(r)
    }
}
