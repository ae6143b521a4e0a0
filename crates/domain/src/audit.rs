//! The audit vocabulary. Every step a user or admin takes becomes one [`AuditEvent`].
//!
//! Activity names follow the system sspr mirrors (Azure AD's "Self-service Password
//! Management" category) where one exists, so an admin who knows that log recognises these.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// Who is on the other end. Sent by the client, validated against this fixed set; anything
/// else is recorded as `api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    /// The logon agent at a workstation's login screen (PAM module or `sspr-logon`).
    LogonScreen,
    /// The logon agent in an SSH login (sshd's keyboard-interactive).
    Ssh,
    /// The web portal in a browser.
    Browser,
    /// The admin CLI.
    Cli,
    /// Any other API client.
    #[default]
    Api,
    /// sspr itself: a job inside `sspr serve` (the expiry reminders). Never taken from a
    /// request's header.
    System,
}

impl ClientType {
    pub const ALL: [ClientType; 6] = [
        Self::LogonScreen,
        Self::Ssh,
        Self::Browser,
        Self::Cli,
        Self::Api,
        Self::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogonScreen => "logon_screen",
            Self::Ssh => "ssh",
            Self::Browser => "browser",
            Self::Cli => "cli",
            Self::Api => "api",
            Self::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The logon agent, at a login screen or in an SSH login: a machine shared by its users.
    pub fn is_logon_agent(self) -> bool {
        matches!(self, Self::LogonScreen | Self::Ssh)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    // Reset and unlock flows.
    ResetStarted,
    UnlockStarted,
    CodeSent,
    QuestionsDrawn,
    MethodVerified,
    VerificationFailed,
    BlockedFromReset,
    PasswordRejected,
    ResetPassword,
    UnlockAccount,
    /// A user changed a password they knew (the change-password page or API).
    ChangePassword,
    FlowExpired,
    /// A flow that ended without finishing (never completed before it expired).
    ResetAbandoned,
    UnlockAbandoned,
    /// A directory write whose result could not be established (a timeout, a crash, an
    /// unreadable stamp): the password may or may not have changed.
    OutcomeUnknown,
    DeliveryFailed,
    /// A password-expiry reminder was queued for a user.
    ExpiryReminder,
    /// An administrator invited a user to set their first password.
    InvitationSent,
    /// An invited user set their password through the invitation.
    InvitationAccepted,
    // Registration.
    RegistrationSignIn,
    SecurityInfoAdded,
    SecurityInfoVerified,
    SecurityInfoDeleted,
    SecurityInfoReviewed,
    RegisteredAllRequired,
    // Administration.
    PolicyChanged,
    AdminUserChanged,
    AdminTokenCreated,
    AdminAuthFailed,
    /// An administrator signed in to the admin pages.
    AdminSignIn,
    /// An administrator exported the audit log (who read what is itself audited).
    AuditExported,
    // Transport-level refusals that a user saw with a support code.
    RequestRejected,
    RateLimited,
    DirectoryError,
}

impl Activity {
    pub const ALL: [Activity; 34] = [
        Self::ResetStarted,
        Self::UnlockStarted,
        Self::CodeSent,
        Self::QuestionsDrawn,
        Self::MethodVerified,
        Self::VerificationFailed,
        Self::BlockedFromReset,
        Self::PasswordRejected,
        Self::ResetPassword,
        Self::UnlockAccount,
        Self::ChangePassword,
        Self::FlowExpired,
        Self::ResetAbandoned,
        Self::UnlockAbandoned,
        Self::OutcomeUnknown,
        Self::DeliveryFailed,
        Self::ExpiryReminder,
        Self::InvitationSent,
        Self::InvitationAccepted,
        Self::RegistrationSignIn,
        Self::SecurityInfoAdded,
        Self::SecurityInfoVerified,
        Self::SecurityInfoDeleted,
        Self::SecurityInfoReviewed,
        Self::RegisteredAllRequired,
        Self::PolicyChanged,
        Self::AdminUserChanged,
        Self::AdminTokenCreated,
        Self::AdminAuthFailed,
        Self::AdminSignIn,
        Self::AuditExported,
        Self::RequestRejected,
        Self::RateLimited,
        Self::DirectoryError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResetStarted => "reset_started",
            Self::UnlockStarted => "unlock_started",
            Self::CodeSent => "code_sent",
            Self::QuestionsDrawn => "questions_drawn",
            Self::MethodVerified => "method_verified",
            Self::VerificationFailed => "verification_failed",
            Self::BlockedFromReset => "blocked_from_reset",
            Self::PasswordRejected => "password_rejected",
            Self::ResetPassword => "reset_password",
            Self::UnlockAccount => "unlock_account",
            Self::ChangePassword => "change_password",
            Self::FlowExpired => "flow_expired",
            Self::ResetAbandoned => "reset_abandoned",
            Self::UnlockAbandoned => "unlock_abandoned",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::DeliveryFailed => "delivery_failed",
            Self::ExpiryReminder => "expiry_reminder",
            Self::InvitationSent => "invitation_sent",
            Self::InvitationAccepted => "invitation_accepted",
            Self::RegistrationSignIn => "registration_sign_in",
            Self::SecurityInfoAdded => "security_info_added",
            Self::SecurityInfoVerified => "security_info_verified",
            Self::SecurityInfoDeleted => "security_info_deleted",
            Self::SecurityInfoReviewed => "security_info_reviewed",
            Self::RegisteredAllRequired => "registered_all_required",
            Self::PolicyChanged => "policy_changed",
            Self::AdminUserChanged => "admin_user_changed",
            Self::AdminTokenCreated => "admin_token_created",
            Self::AdminAuthFailed => "admin_auth_failed",
            Self::AdminSignIn => "admin_sign_in",
            Self::AuditExported => "audit_exported",
            Self::RequestRejected => "request_rejected",
            Self::RateLimited => "rate_limited",
            Self::DirectoryError => "directory_error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            _ => None,
        }
    }
}

/// One audit record. Never holds a password, code, answer or token: only what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: UnixTime,
    pub activity: Activity,
    /// Who acted: a login, `admin:<token name>`, `system`, or `anonymous`.
    pub actor: String,
    /// Whom it concerned: a login as entered (canonical form), or the policy.
    pub target: String,
    pub client_ip: String,
    pub client_type: ClientType,
    pub outcome: Outcome,
    /// Machine-readable reason (`wrong_code`, `expired`, `unknown_user`…). Unknown and
    /// unregistered users are told apart here, in the admin's log, never in a response.
    pub reason: String,
    pub flow_id: Option<String>,
    pub support_code: Option<String>,
    /// Free-form details (old/new policy values, method, masked destination).
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// Adds `more`'s fields to the details (both objects), or sets them.
    pub fn merge_details(&mut self, more: serde_json::Value) {
        match (&mut self.details, more) {
            (serde_json::Value::Object(have), serde_json::Value::Object(add)) => have.extend(add),
            (slot, more) => *slot = more,
        }
    }

    pub fn new(at: UnixTime, activity: Activity, outcome: Outcome) -> Self {
        Self {
            id: 0,
            at,
            activity,
            actor: String::new(),
            target: String::new(),
            client_ip: String::new(),
            client_type: ClientType::Api,
            outcome,
            reason: String::new(),
            flow_id: None,
            support_code: None,
            details: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Activity::ALL {
            assert_eq!(Activity::parse(a.as_str()), Some(a));
        }
        for c in ClientType::ALL {
            assert_eq!(ClientType::parse(c.as_str()), Some(c));
        }
        assert_eq!(
            ClientType::parse("Logon-Screen"),
            Some(ClientType::LogonScreen)
        );
        assert_eq!(ClientType::parse("toaster"), None);
    }
}
