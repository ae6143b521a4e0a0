//! The agent's own log: what an administrator reads on the workstation (journald/syslog) to
//! see that resets were offered and how they ended. Never a password, code, answer or token.

use std::fmt;

/// One event the agent always logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The user made the gesture at the password prompt.
    ResetOffered { user: String },
    /// A flow was started on the server.
    FlowStarted {
        user: String,
        kind: &'static str,
        server: String,
    },
    /// The user chose a verification method.
    MethodChosen { user: String, method: String },
    /// How the dialogue ended.
    Finished {
        user: String,
        result: &'static str,
        support_code: Option<String>,
    },
    /// The server could not be used: unreachable, untrusted, or it failed.
    ServerError { user: String, cause: String },
    /// The configuration could not be read; the agent stays out of the way.
    ConfigError { cause: String },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ResetOffered { user } => write!(f, "event=reset_offered user={user:?}"),
            Event::FlowStarted { user, kind, server } => {
                write!(
                    f,
                    "event=flow_started user={user:?} kind={kind} server={server}"
                )
            }
            Event::MethodChosen { user, method } => {
                write!(f, "event=method_chosen user={user:?} method={method:?}")
            }
            Event::Finished {
                user,
                result,
                support_code,
            } => {
                write!(f, "event=finished user={user:?} result={result}")?;
                if let Some(c) = support_code {
                    write!(f, " support_code={c:?}")?;
                }
                Ok(())
            }
            Event::ServerError { user, cause } => {
                write!(f, "event=server_error user={user:?} cause={cause:?}")
            }
            Event::ConfigError { cause } => write!(f, "event=config_error cause={cause:?}"),
        }
    }
}

pub trait Journal: Send + Sync {
    /// An event; always written.
    fn event(&self, event: &Event);
    /// Protocol-level detail for troubleshooting; written only with `enable_logging = 1`.
    fn detail(&self, text: &str);
}

/// Keeps nothing; for callers that have nowhere to log.
pub struct NoJournal;

impl Journal for NoJournal {
    fn event(&self, _: &Event) {}
    fn detail(&self, _: &str) {}
}
