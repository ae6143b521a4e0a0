//! The ways a user proves who they are.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A code sent to a verified email address.
    Email,
    /// A code sent by text message to a verified mobile number.
    Sms,
    /// Answers to registered security questions.
    Questions,
    /// A code from an authenticator app (TOTP, RFC 6238).
    Totp,
    /// One of a set of one-time codes the user saved when they generated them (NIST SP
    /// 800-63B-4 §4.2.1.1, saved recovery codes).
    RecoveryCode,
    /// A passkey (WebAuthn): a key pair on the user's device or in their password manager,
    /// unlocked there with a PIN or a fingerprint. Browser only.
    Passkey,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Email,
        Method::Sms,
        Method::Questions,
        Method::Totp,
        Method::RecoveryCode,
        Method::Passkey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Email => "email",
            Method::Sms => "sms",
            Method::Questions => "questions",
            Method::Totp => "totp",
            Method::RecoveryCode => "recovery_code",
            Method::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Methods that need a web browser: a login screen's PAM dialogue cannot run them.
    pub fn browser_only(self) -> bool {
        matches!(self, Method::Passkey)
    }

    /// Methods where sspr sends a one-time code to a destination.
    pub fn sends_code(self) -> bool {
        matches!(self, Method::Email | Method::Sms)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
