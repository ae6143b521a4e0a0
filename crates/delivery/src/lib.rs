//! sspr's delivery side: the outbox worker and the senders it drives.
//!
//! The application never talks to a mail server or an SMS gateway. It writes an
//! [`OutboxMessage`] into the durable outbox (in the same
//! transaction as the code the message carries), and the [`OutboxWorker`] later claims due
//! messages, hands each to a [`Sender`] and records the outcome. A crash between the two sides
//! loses nothing: an unfinished message is leased again once its lease runs out.
//!
//! Senders:
//! - [`SmtpSender`]: email through an SMTP relay (lettre, pooled connections, rustls).
//! - [`SmsSender`]: SMS through an HTTPS gateway (a generic JSON API or Twilio).
//! - [`DevSender`]: delivers nothing; the message stays readable in the outbox (`sspr outbox`).

use async_trait::async_trait;
use sspr_app::ports::OutboxMessage;

mod dev;
mod secret;
mod sms;
mod smtp;
mod tls;
mod worker;

pub use dev::DevSender;
pub use sms::{SmsConfig, SmsKind, SmsSender};
pub use smtp::{SmtpConfig, SmtpSender, SmtpTls};
pub use worker::{OutboxWorker, WorkerConfig};

/// Why a message was not delivered.
///
/// `detail` goes to the log and the outbox's `last_error`; it never holds the message body or
/// subject (either may carry a one-time code). `class` is a short, stable word for the audit
/// log's `reason` (`rejected`, `timeout`, `connection`…).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {detail}")]
pub struct SendError {
    /// Whether trying again later may succeed (network trouble, 4xx SMTP, HTTP 429/5xx).
    pub retryable: bool,
    pub class: &'static str,
    pub detail: String,
}

impl SendError {
    pub fn retryable(class: &'static str, detail: impl Into<String>) -> Self {
        Self {
            retryable: true,
            class,
            detail: detail.into(),
        }
    }
    pub fn permanent(class: &'static str, detail: impl Into<String>) -> Self {
        Self {
            retryable: false,
            class,
            detail: detail.into(),
        }
    }
}

/// Delivers one message on one channel.
#[async_trait]
pub trait Sender: Send + Sync {
    /// Delivers `msg` to `msg.recipient`. Implementations must not log or return the body.
    async fn send(&self, msg: &OutboxMessage) -> Result<(), SendError>;
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}
