//! The one error type services return. `message` is for the user, already in their language;
//! `log` is for the operator and never reaches a response.

use sspr_domain::Rejection;

use crate::messages::{Lang, Msg, t};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible (400).
    Invalid,
    /// No valid flow, session or admin token (401).
    Unauthorized,
    /// Valid credentials, but not allowed (403).
    Forbidden,
    /// A code or answer was wrong (400, `verification_failed`).
    VerificationFailed,
    /// A limit was reached or the account is blocked for a while (429).
    TooMany,
    /// The new password breaks a rule (422).
    PasswordRejected,
    /// The password is right but has expired or must be changed first (403,
    /// `password_change_required`).
    PasswordChangeRequired,
    /// Someone else is completing this flow right now (409).
    Conflict,
    /// The directory could not be reached, did not answer, or failed otherwise (503).
    Directory,
    /// The directory answered and refused the operation: the service account lacks a right,
    /// or the account is one the directory protects. Nothing changed, and trying again will
    /// not help until an administrator acts (502: the fault is in sspr's upstream, not in the
    /// request, so it counts as a server error where operators watch for them).
    DirectoryRefused,
    /// Too much load; try again (503).
    Busy,
    /// The store cannot save right now: down, unreachable, disk full, read-only (503).
    StoreUnavailable,
    /// A bug or a broken dependency (500).
    Internal,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::Invalid => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::VerificationFailed => "verification_failed",
            Self::TooMany => "too_many_requests",
            Self::PasswordRejected => "password_rejected",
            Self::PasswordChangeRequired => "password_change_required",
            Self::Conflict => "conflict",
            Self::Directory => "directory_unavailable",
            Self::DirectoryRefused => "directory_refused",
            Self::Busy => "busy",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal_error",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Vec<String>,
    /// Set once the error's audit event is written; the server writes one when it is not.
    pub support_code: Option<String>,
    /// Operator-facing cause; logged, never sent.
    pub log: String,
    /// Seconds to wait, for `TooMany`.
    pub retry_after: Option<i64>,
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            self.kind.code(),
            if self.log.is_empty() {
                &self.message
            } else {
                &self.log
            }
        )
    }
}

impl std::error::Error for AppError {}

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            details: Vec::new(),
            support_code: None,
            log: String::new(),
            retry_after: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn internal(log: impl Into<String>) -> Self {
        let mut e = Self::new(
            ErrorKind::Internal,
            "Something went wrong on our side. Try again later.",
        );
        e.log = log.into();
        e
    }
    pub fn busy() -> Self {
        Self::new(
            ErrorKind::Busy,
            "The service is busy. Try again in a moment.",
        )
    }
    pub fn with_log(mut self, log: impl Into<String>) -> Self {
        self.log = log.into();
        self
    }
    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }
    pub fn with_support_code(mut self, code: String) -> Self {
        self.support_code = Some(code);
        self
    }
    pub fn with_retry_after(mut self, secs: i64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
    pub fn password(rejections: &[Rejection], lang: &str) -> Self {
        let details: Vec<String> = rejections.iter().map(|r| r.message(lang)).collect();
        let message = details.first().cloned().unwrap_or_default();
        Self::new(ErrorKind::PasswordRejected, message).with_details(details)
    }
}

/// Seconds a client is told to wait when the store is unavailable.
pub const STORE_RETRY_SECS: i64 = 60;

impl AppError {
    /// The store cannot save right now, in the user's language.
    pub fn store_unavailable(lang: Lang) -> Self {
        Self::new(ErrorKind::StoreUnavailable, t(lang, Msg::StoreUnavailable))
            .with_retry_after(STORE_RETRY_SECS)
    }

    /// The same error with its message in `lang`, where the message was chosen without
    /// knowing the language (a store error converted with `?`).
    pub fn localized(mut self, lang: Lang) -> Self {
        if self.kind == ErrorKind::StoreUnavailable {
            self.message = t(lang, Msg::StoreUnavailable).into();
        }
        self
    }
}

impl From<crate::ports::StoreError> for AppError {
    fn from(e: crate::ports::StoreError) -> Self {
        if e.unavailable {
            // English until `localized` knows the request's language.
            AppError::store_unavailable(Lang::En).with_log(e.to_string())
        } else {
            AppError::internal(e.to_string())
        }
    }
}
