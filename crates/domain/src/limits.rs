//! Lifetimes and throttles. Defaults follow the system sspr mirrors (Azure AD SSPR, see
//! docs/decisions.md) where it publishes a number, and NIST SP 800-63B-4 where it sets a bound.

use serde::{Deserialize, Serialize};

/// At most `max` events within `secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub max: u32,
    pub secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A reset or unlock flow must finish within this many seconds of its start (Azure: 15 min).
    pub flow_ttl_secs: i64,
    /// A registration session (signed in with the current password) lasts this long.
    pub session_ttl_secs: i64,
    /// Email and SMS codes expire after this many seconds (Azure: 5 min; NIST: at most 10 min).
    pub code_ttl_secs: i64,
    /// Digits in an email or SMS code, 6 to 8.
    pub code_digits: u8,
    /// Wrong guesses one code survives before it is dead.
    pub code_max_attempts: u32,
    /// Failed verifications per account before the account is blocked from self-service
    /// (Azure: 5 in 24 h). A new code does not reset this count; a successful reset does.
    pub account_failures: Window,
    /// Codes sent per account (Azure: 5 phone/app/SMS validations an hour).
    pub account_codes: Window,
    /// Codes sent to one email address or phone number (Azure: 10 emails per 10 min).
    pub destination_codes: Window,
    /// Flows started for one user ID, whether or not it exists.
    pub account_starts: Window,
    /// Flows and sign-ins started from one client IP.
    pub ip_starts: Window,
    /// Failed verifications and sign-ins from one client IP.
    pub ip_failures: Window,
    /// How long a block lasts (Azure: 24 h).
    pub block_secs: i64,
    /// At most this many Argon2 computations run at once; the rest wait (bounded memory).
    pub argon2_concurrency: usize,
    /// A request that waits longer than this for an Argon2 slot is answered 503.
    pub argon2_queue_timeout_ms: u64,
    /// A directory write still unsettled this many seconds after it began is taken as
    /// interrupted (a crash, a lost answer) and settled by asking the directory whether it
    /// landed. Longer than the slowest write; the in-request write is cut off at half of it.
    pub finish_lease_secs: i64,
    /// How long an invitation link (to set a first password) stays valid.
    pub invitation_ttl_secs: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            flow_ttl_secs: 15 * 60,
            session_ttl_secs: 15 * 60,
            code_ttl_secs: 5 * 60,
            code_digits: 6,
            code_max_attempts: 3,
            account_failures: Window {
                max: 5,
                secs: 24 * 3600,
            },
            account_codes: Window { max: 5, secs: 3600 },
            destination_codes: Window { max: 10, secs: 600 },
            account_starts: Window {
                max: 20,
                secs: 3600,
            },
            ip_starts: Window { max: 60, secs: 600 },
            ip_failures: Window {
                max: 30,
                secs: 3600,
            },
            block_secs: 24 * 3600,
            argon2_concurrency: 2,
            argon2_queue_timeout_ms: 5_000,
            finish_lease_secs: 60,
            invitation_ttl_secs: 72 * 3600,
        }
    }
}

impl Limits {
    /// Every problem, each in words that say what to change.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !(60..=24 * 3600).contains(&self.flow_ttl_secs) {
            e.push("limits.flow_ttl_secs must be between 60 and 86400 seconds".into());
        }
        if !(60..=24 * 3600).contains(&self.session_ttl_secs) {
            e.push("limits.session_ttl_secs must be between 60 and 86400 seconds".into());
        }
        if !(30..=600).contains(&self.code_ttl_secs) {
            e.push(
                "limits.code_ttl_secs must be between 30 and 600 seconds (NIST SP 800-63B: codes live at most 10 minutes)"
                    .into(),
            );
        }
        if !(6..=8).contains(&self.code_digits) {
            e.push("limits.code_digits must be 6, 7 or 8".into());
        }
        if !(1..=10).contains(&self.code_max_attempts) {
            e.push("limits.code_max_attempts must be between 1 and 10".into());
        }
        if !(1..=100).contains(&self.account_failures.max) {
            e.push("limits.account_failures.max must be between 1 and 100 (NIST SP 800-63B allows at most 100)".into());
        }
        for (name, w) in [
            ("account_failures", self.account_failures),
            ("account_codes", self.account_codes),
            ("destination_codes", self.destination_codes),
            ("account_starts", self.account_starts),
            ("ip_starts", self.ip_starts),
            ("ip_failures", self.ip_failures),
        ] {
            if w.max == 0 || w.secs <= 0 {
                e.push(format!("limits.{name} needs max ≥ 1 and secs ≥ 1"));
            }
        }
        if !(3600..=30 * 24 * 3600).contains(&self.invitation_ttl_secs) {
            e.push(
                "limits.invitation_ttl_secs must be between 3600 (an hour) and 2592000 (30 days)"
                    .into(),
            );
        }
        if !(60..=7 * 24 * 3600).contains(&self.block_secs) {
            e.push("limits.block_secs must be between 60 seconds and 7 days".into());
        }
        if !(2..=3600).contains(&self.finish_lease_secs) {
            e.push("limits.finish_lease_secs must be between 2 and 3600 seconds".into());
        }
        if !(1..=64).contains(&self.argon2_concurrency) {
            e.push(
                "limits.argon2_concurrency must be between 1 and 64 (each slot holds 19 MiB)"
                    .into(),
            );
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Limits::default().validate().is_empty());
    }

    #[test]
    fn codes_beyond_ten_minutes_are_refused() {
        let l = Limits {
            code_ttl_secs: 601,
            code_digits: 5,
            ..Limits::default()
        };
        let e = l.validate();
        assert_eq!(e.len(), 2, "{e:?}");
    }
}
