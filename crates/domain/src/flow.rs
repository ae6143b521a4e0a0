//! The reset and unlock flow as a small state machine: who may start one, which methods they
//! may use, and when they have proved enough.

use serde::{Deserialize, Serialize};

use crate::method::Method;
use crate::policy::{Policy, UserRequirement};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    /// Set a new password (which also unlocks the account).
    Reset,
    /// Unlock the account and keep the password.
    Unlock,
    /// Change a password the user knows (proved by typing it), with the user's own rights in
    /// the directory: its rules for a user's change apply, and nothing is unlocked.
    Change,
    /// An administrator's invitation: the link sent to the user's address of record opens a
    /// flow already verified by it, to set the first password.
    Invite,
}

impl FlowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Unlock => "unlock",
            Self::Change => "change",
            Self::Invite => "invite",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reset" => Some(Self::Reset),
            "unlock" => Some(Self::Unlock),
            "change" => Some(Self::Change),
            "invite" => Some(Self::Invite),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowState {
    /// Proving identity; more methods to pass.
    Verifying,
    /// Enough methods passed; waiting for the new password (or the unlock).
    Verified,
    /// Being written to the directory right now; no second writer may enter.
    Finishing,
    Completed,
    /// Not eligible from the start. Stored so that unknown and known users cost the same.
    Ineligible,
    /// Expired before it finished; reported once in the audit log as abandoned.
    Abandoned,
}

impl FlowState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verifying => "verifying",
            Self::Verified => "verified",
            Self::Finishing => "finishing",
            Self::Completed => "completed",
            Self::Ineligible => "ineligible",
            Self::Abandoned => "abandoned",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Verifying,
            Self::Verified,
            Self::Finishing,
            Self::Completed,
            Self::Ineligible,
            Self::Abandoned,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// Why a user may not start a flow. Recorded in the audit log only: every variant produces the
/// same response, so the API does not reveal whether an account exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligible {
    UnknownUser,
    Disabled,
    OutOfScope,
    NotRegistered,
    UnlockNotAllowed,
}

impl Ineligible {
    pub fn reason(self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::Disabled => "disabled",
            Self::OutOfScope => "out_of_scope",
            Self::NotRegistered => "not_registered",
            Self::UnlockNotAllowed => "unlock_not_allowed",
        }
    }
}

/// What the directory and the registration store say about a user at the start of a flow.
#[derive(Debug, Clone, Default)]
pub struct Applicant<'a> {
    pub exists: bool,
    pub enabled: bool,
    pub groups: &'a [String],
    /// Methods the user holds in a usable (verified) state.
    pub registered: &'a [Method],
}

/// Who may start, and with which methods.
pub fn eligibility(
    policy: &Policy,
    kind: FlowKind,
    a: &Applicant<'_>,
) -> Result<UserRequirement, Ineligible> {
    if !a.exists {
        return Err(Ineligible::UnknownUser);
    }
    if !a.enabled {
        return Err(Ineligible::Disabled);
    }
    if !policy.in_scope(a.groups) {
        return Err(Ineligible::OutOfScope);
    }
    if kind == FlowKind::Unlock && !policy.allow_unlock {
        return Err(Ineligible::UnlockNotAllowed);
    }
    let mut req = policy.requirement_for(a.groups);
    req.methods.retain(|m| a.registered.contains(m));
    if req.methods.len() < req.required as usize {
        return Err(Ineligible::NotRegistered);
    }
    Ok(req)
}

/// Methods still open to a user who has passed `verified`: each method counts once.
pub fn remaining_methods(usable: &[Method], verified: &[Method]) -> Vec<Method> {
    usable
        .iter()
        .copied()
        .filter(|m| !verified.contains(m))
        .collect()
}

/// Whether a user is registered under a policy: holds as many usable methods as it requires.
pub fn is_registered(policy: &Policy, groups: &[String], registered: &[Method]) -> bool {
    let req = policy.requirement_for(groups);
    req.methods
        .iter()
        .filter(|m| registered.contains(m))
        .count()
        >= req.required as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff() -> Vec<String> {
        vec!["staff".into()]
    }

    #[test]
    fn unknown_disabled_scope_and_unregistered_are_told_apart_only_internally() {
        let p = Policy::default();
        let g = staff();
        let base = Applicant {
            exists: true,
            enabled: true,
            groups: &g,
            registered: &[Method::Email],
        };
        assert!(eligibility(&p, FlowKind::Reset, &base).is_ok());
        assert_eq!(
            eligibility(
                &p,
                FlowKind::Reset,
                &Applicant {
                    exists: false,
                    ..base.clone()
                }
            ),
            Err(Ineligible::UnknownUser)
        );
        assert_eq!(
            eligibility(
                &p,
                FlowKind::Reset,
                &Applicant {
                    enabled: false,
                    ..base.clone()
                }
            ),
            Err(Ineligible::Disabled)
        );
        let scoped = Policy {
            scope: crate::Scope::Groups,
            groups: vec!["students".into()],
            ..Policy::default()
        };
        assert_eq!(
            eligibility(&scoped, FlowKind::Reset, &base),
            Err(Ineligible::OutOfScope)
        );
        assert_eq!(
            eligibility(
                &p,
                FlowKind::Reset,
                &Applicant {
                    registered: &[],
                    ..base.clone()
                }
            ),
            Err(Ineligible::NotRegistered)
        );
    }

    #[test]
    fn two_gate_policy_needs_two_registered_methods() {
        let p = Policy {
            methods_required: 2,
            ..Policy::default()
        };
        let g = staff();
        let one = Applicant {
            exists: true,
            enabled: true,
            groups: &g,
            registered: &[Method::Email],
        };
        assert_eq!(
            eligibility(&p, FlowKind::Reset, &one),
            Err(Ineligible::NotRegistered)
        );
        let two = Applicant {
            registered: &[Method::Email, Method::Totp],
            ..one
        };
        let req = eligibility(&p, FlowKind::Reset, &two).map(|r| r.required);
        assert_eq!(req, Ok(2));
    }

    #[test]
    fn privileged_user_with_questions_and_email_is_not_registered() {
        let p = Policy::default();
        let g = vec!["admins".to_string()];
        let a = Applicant {
            exists: true,
            enabled: true,
            groups: &g,
            registered: &[Method::Email, Method::Questions],
        };
        assert_eq!(
            eligibility(&p, FlowKind::Reset, &a),
            Err(Ineligible::NotRegistered)
        );
        assert!(!is_registered(&p, &g, &[Method::Email, Method::Questions]));
        assert!(is_registered(&p, &g, &[Method::Email, Method::Totp]));
    }

    #[test]
    fn unlock_can_be_switched_off() {
        let p = Policy {
            allow_unlock: false,
            ..Policy::default()
        };
        let g = staff();
        let a = Applicant {
            exists: true,
            enabled: true,
            groups: &g,
            registered: &[Method::Email],
        };
        assert_eq!(
            eligibility(&p, FlowKind::Unlock, &a),
            Err(Ineligible::UnlockNotAllowed)
        );
    }

    #[test]
    fn each_method_counts_once() {
        let usable = [Method::Email, Method::Totp];
        assert_eq!(
            remaining_methods(&usable, &[Method::Email]),
            vec![Method::Totp]
        );
        assert!(remaining_methods(&usable, &usable).is_empty());
    }
}
