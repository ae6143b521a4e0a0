//! The self-service policy an administrator sets: who may reset, with which methods, how many.

use serde::{Deserialize, Serialize};

use crate::method::Method;
use crate::password::PasswordRules;
use crate::questions;

/// Who self-service is enabled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    None,
    /// Members of any group in [`Policy::groups`].
    Groups,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomQuestion {
    /// Stable identifier, `c1`, `c2`…, referenced by users' answers.
    pub id: String,
    /// Shown as entered, in every language (as in Azure AD).
    pub text: String,
}

/// One thing wrong with a policy. Its `Display` names the settings as the policy file and the
/// API spell them (`methods_required must be 1 or 2`), for the people who write those; the admin
/// pages say the same in words of the form instead, from [`PolicyProblem::key`] and
/// [`PolicyProblem::args`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyProblem {
    NoGroups,
    NoMethods,
    MethodTwice,
    MethodsRequired,
    MoreRequiredThanEnabled { required: u8, enabled: usize },
    QuestionsOnly,
    QuestionsToRegister,
    QuestionsToAnswer { registered: u8 },
    TooManyCustomQuestions,
    CustomQuestionLength { id: String, text: String },
    CustomQuestionId { id: String },
    CustomQuestionIdTwice { id: String },
    RegistrationSkips,
    ReconfirmDays,
    AdminNotify,
    MinLength,
    MaxLength { max: usize },
    MinAboveMax,
    CharacterClasses,
    BannedWordTooShort { word: String },
}

impl PolicyProblem {
    /// The problem's name, the end of its key in the portal's catalogue (`policy-problem-…`).
    pub fn key(&self) -> &'static str {
        match self {
            Self::NoGroups => "no-groups",
            Self::NoMethods => "no-methods",
            Self::MethodTwice => "method-twice",
            Self::MethodsRequired => "methods-required",
            Self::MoreRequiredThanEnabled { .. } => "more-required-than-enabled",
            Self::QuestionsOnly => "questions-only",
            Self::QuestionsToRegister => "questions-to-register",
            Self::QuestionsToAnswer { .. } => "questions-to-answer",
            Self::TooManyCustomQuestions => "too-many-custom-questions",
            Self::CustomQuestionLength { .. } => "custom-question-length",
            Self::CustomQuestionId { .. } => "custom-question-id",
            Self::CustomQuestionIdTwice { .. } => "custom-question-id-twice",
            Self::RegistrationSkips => "registration-skips",
            Self::ReconfirmDays => "reconfirm-days",
            Self::AdminNotify => "admin-notify",
            Self::MinLength => "min-length",
            Self::MaxLength { .. } => "max-length",
            Self::MinAboveMax => "min-above-max",
            Self::CharacterClasses => "character-classes",
            Self::BannedWordTooShort { .. } => "banned-word-too-short",
        }
    }

    /// Every key, for the test that the catalogue words each one.
    pub const KEYS: [&'static str; 20] = [
        "no-groups",
        "no-methods",
        "method-twice",
        "methods-required",
        "more-required-than-enabled",
        "questions-only",
        "questions-to-register",
        "questions-to-answer",
        "too-many-custom-questions",
        "custom-question-length",
        "custom-question-id",
        "custom-question-id-twice",
        "registration-skips",
        "reconfirm-days",
        "admin-notify",
        "min-length",
        "max-length",
        "min-above-max",
        "character-classes",
        "banned-word-too-short",
    ];

    /// The values the words need, by name.
    pub fn args(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::MoreRequiredThanEnabled { required, enabled } => {
                vec![
                    ("required", required.to_string()),
                    ("enabled", enabled.to_string()),
                ]
            }
            Self::QuestionsToAnswer { registered } => vec![("registered", registered.to_string())],
            Self::CustomQuestionLength { id, text } => {
                vec![("id", id.clone()), ("text", text.trim().to_string())]
            }
            Self::CustomQuestionId { id } | Self::CustomQuestionIdTwice { id } => {
                vec![("id", id.clone())]
            }
            Self::MaxLength { max } => vec![("max", max.to_string())],
            Self::BannedWordTooShort { word } => vec![("word", word.clone())],
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoGroups => f.write_str("scope is \"groups\" but no group is listed: add at least one to groups"),
            Self::NoMethods => f.write_str("methods is empty: enable at least one of email, sms, questions, totp, recovery_code, passkey"),
            Self::MethodTwice => f.write_str("methods lists a method twice"),
            Self::MethodsRequired => f.write_str("methods_required must be 1 or 2"),
            Self::MoreRequiredThanEnabled { required, enabled } => write!(
                f,
                "methods_required is {required} but only {enabled} method(s) are enabled: enable more methods or require fewer"
            ),
            Self::QuestionsOnly => f.write_str("security questions cannot be the only method (NIST SP 800-63B): enable email, sms, totp, recovery_code or passkey too"),
            Self::QuestionsToRegister => f.write_str("questions_to_register must be between 3 and 5"),
            Self::QuestionsToAnswer { registered } => write!(
                f,
                "questions_to_answer must be between 1 and questions_to_register ({registered})"
            ),
            Self::TooManyCustomQuestions => f.write_str("at most 20 custom_questions are allowed"),
            Self::CustomQuestionLength { id, .. } => {
                write!(f, "custom question {id:?} must be 3–200 characters long")
            }
            Self::CustomQuestionId { id } => {
                write!(f, "custom question id {id:?} must look like c1, c2, …")
            }
            Self::CustomQuestionIdTwice { id } => write!(f, "custom question id {id:?} is used twice"),
            Self::RegistrationSkips => f.write_str("registration_skips must be between 0 and 10"),
            Self::ReconfirmDays => f.write_str("reconfirm_days must be between 0 (never) and 730"),
            Self::AdminNotify => f.write_str("admin_notify must hold email addresses"),
            Self::MinLength => f.write_str("password.min_length must be at least 8 (NIST SP 800-63B)"),
            Self::MaxLength { max } => {
                write!(f, "password.max_length must be between 256 and {max}")
            }
            Self::MinAboveMax => f.write_str("password.min_length cannot exceed password.max_length"),
            Self::CharacterClasses => {
                f.write_str("password.min_character_classes must be between 0 and 4")
            }
            Self::BannedWordTooShort { word } => write!(
                f,
                "banned word {word:?} is shorter than 4 characters; it would ban too much"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub scope: Scope,
    /// Groups enabled when `scope = "groups"`; several are allowed.
    pub groups: Vec<String>,
    /// Methods users may register and use.
    pub methods: Vec<Method>,
    /// Different methods a user must pass to reset or unlock: 1 or 2.
    pub methods_required: u8,
    /// Security questions a user registers (3–5).
    pub questions_to_register: u8,
    /// Security questions drawn at reset (1 up to the number registered).
    pub questions_to_answer: u8,
    /// Questions the admin adds to the predefined set.
    pub custom_questions: Vec<CustomQuestion>,
    /// Ask users who could not reset a forgotten password (too few methods registered) to
    /// register when they sign in to the admin pages.
    pub require_registration: bool,
    /// How many such sign-ins may go on without registering (0–10); after them, signing in
    /// leads to registration first.
    pub registration_skips: u8,
    /// Ask users to re-confirm their methods after this many days (0 = never, at most 730).
    pub reconfirm_days: u16,
    /// Tell the user by email of every reset, unlock and change to their security info.
    pub notify_user: bool,
    /// Tell the addresses in `admin_notify` when an account in a privileged group is reset.
    pub notify_admins_on_admin_reset: bool,
    pub admin_notify: Vec<String>,
    /// Let users unlock their account without changing the password.
    pub allow_unlock: bool,
    /// Members of these groups need 2 methods and may never use security questions.
    pub privileged_groups: Vec<String>,
    /// Let security questions alone prove who a user is where one method is required. Off by
    /// default: NIST SP 800-63B-4 does not accept knowledge-based answers as a proof, so they
    /// count only as the second of two methods. `sspr doctor` and the admin pages warn when on.
    pub questions_alone: bool,
    pub password: PasswordRules,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            scope: Scope::All,
            groups: Vec::new(),
            methods: vec![
                Method::Email,
                Method::Sms,
                Method::Totp,
                Method::RecoveryCode,
                Method::Passkey,
                Method::Questions,
            ],
            methods_required: 1,
            questions_to_register: 3,
            questions_to_answer: 3,
            custom_questions: Vec::new(),
            require_registration: true,
            registration_skips: 3,
            reconfirm_days: 180,
            notify_user: true,
            notify_admins_on_admin_reset: true,
            admin_notify: Vec::new(),
            allow_unlock: true,
            privileged_groups: vec!["admins".into(), "domain admins".into()],
            questions_alone: false,
            password: PasswordRules::default(),
        }
    }
}

/// What the policy asks of one particular user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRequirement {
    pub methods: Vec<Method>,
    pub required: u8,
    pub privileged: bool,
}

impl Policy {
    /// Every problem with this policy, in words that say what to change, naming the settings
    /// as the policy file and the API spell them.
    pub fn validate(&self) -> Vec<String> {
        self.problems().iter().map(ToString::to_string).collect()
    }

    /// Every problem with this policy. The admin pages word them for people, in their language
    /// (`crates/web/locales`, `policy-problem-*`), without the settings' names.
    pub fn problems(&self) -> Vec<PolicyProblem> {
        use PolicyProblem as P;
        let mut e = Vec::new();
        if self.scope == Scope::Groups && self.groups.iter().all(|g| g.trim().is_empty()) {
            e.push(P::NoGroups);
        }
        if self.methods.is_empty() {
            e.push(P::NoMethods);
        }
        let mut seen = self.methods.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.methods.len() {
            e.push(P::MethodTwice);
        }
        if !(1..=2).contains(&self.methods_required) {
            e.push(P::MethodsRequired);
        } else if (self.methods_required as usize) > seen.len() {
            e.push(P::MoreRequiredThanEnabled {
                required: self.methods_required,
                enabled: seen.len(),
            });
        }
        if self.methods == [Method::Questions] {
            e.push(P::QuestionsOnly);
        }
        if !(3..=5).contains(&self.questions_to_register) {
            e.push(P::QuestionsToRegister);
        }
        if self.questions_to_answer == 0 || self.questions_to_answer > self.questions_to_register {
            e.push(P::QuestionsToAnswer {
                registered: self.questions_to_register,
            });
        }
        if self.custom_questions.len() > 20 {
            e.push(P::TooManyCustomQuestions);
        }
        let mut ids = std::collections::HashSet::new();
        for q in &self.custom_questions {
            let len = q.text.trim().chars().count();
            if !(3..=200).contains(&len) {
                e.push(P::CustomQuestionLength {
                    id: q.id.clone(),
                    text: q.text.clone(),
                });
            }
            if !q.id.starts_with('c')
                || q.id.len() < 2
                || !q.id[1..].bytes().all(|b| b.is_ascii_digit())
            {
                e.push(P::CustomQuestionId { id: q.id.clone() });
            }
            if !ids.insert(q.id.as_str()) {
                e.push(P::CustomQuestionIdTwice { id: q.id.clone() });
            }
        }
        if self.registration_skips > 10 {
            e.push(P::RegistrationSkips);
        }
        if self.reconfirm_days > 730 {
            e.push(P::ReconfirmDays);
        }
        if self.notify_admins_on_admin_reset && self.admin_notify.iter().any(|a| !a.contains('@')) {
            e.push(P::AdminNotify);
        }
        e.extend(self.password.problems());
        e
    }

    /// Whether self-service is enabled for a user in `groups`.
    pub fn in_scope(&self, groups: &[String]) -> bool {
        match self.scope {
            Scope::None => false,
            Scope::All => true,
            Scope::Groups => groups
                .iter()
                .any(|g| self.groups.iter().any(|p| p.eq_ignore_ascii_case(g))),
        }
    }

    pub fn is_privileged(&self, groups: &[String]) -> bool {
        groups.iter().any(|g| {
            self.privileged_groups
                .iter()
                .any(|p| p.eq_ignore_ascii_case(g))
        })
    }

    /// Methods and count for a user: privileged accounts need 2 and never questions; where one
    /// method is enough, questions are not one unless the admin allows them alone.
    pub fn requirement_for(&self, groups: &[String]) -> UserRequirement {
        let privileged = self.is_privileged(groups);
        let mut methods = self.methods.clone();
        let mut required = self.methods_required;
        if privileged {
            methods.retain(|m| *m != Method::Questions);
            required = 2;
        } else if required < 2 && !self.questions_alone {
            methods.retain(|m| *m != Method::Questions);
        }
        UserRequirement {
            methods,
            required,
            privileged,
        }
    }

    /// The question ids a user may choose from: predefined plus the admin's own.
    pub fn question_ids(&self) -> Vec<String> {
        questions::PREDEFINED
            .iter()
            .map(|q| q.id.to_string())
            .chain(self.custom_questions.iter().map(|q| q.id.clone()))
            .collect()
    }

    pub fn question_text(&self, id: &str, lang: &str) -> Option<String> {
        if let Some(q) = questions::PREDEFINED.iter().find(|q| q.id == id) {
            return Some(q.text(lang).to_string());
        }
        self.custom_questions
            .iter()
            .find(|q| q.id == id)
            .map(|q| q.text.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Policy::default().validate(), Vec::<String>::new());
    }

    #[test]
    fn bad_values_are_each_named() {
        let p = Policy {
            scope: Scope::Groups,
            methods: vec![Method::Questions],
            methods_required: 3,
            questions_to_register: 6,
            questions_to_answer: 0,
            reconfirm_days: 800,
            registration_skips: 11,
            ..Policy::default()
        };
        let e = p.validate();
        assert!(e.iter().any(|m| m.contains("no group")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("methods_required must be 1 or 2"))
        );
        assert!(e.iter().any(|m| m.contains("cannot be the only method")));
        assert!(e.iter().any(|m| m.contains("questions_to_register")));
        assert!(e.iter().any(|m| m.contains("questions_to_answer")));
        assert!(e.iter().any(|m| m.contains("reconfirm_days")));
        assert!(e.iter().any(|m| m.contains("registration_skips")));
    }

    #[test]
    fn every_problem_has_a_listed_key() {
        let p = Policy {
            scope: Scope::Groups,
            methods: vec![Method::Questions, Method::Questions],
            methods_required: 3,
            questions_to_register: 6,
            questions_to_answer: 0,
            reconfirm_days: 800,
            registration_skips: 11,
            ..Policy::default()
        };
        for problem in p.problems() {
            assert!(PolicyProblem::KEYS.contains(&problem.key()), "{problem:?}");
        }
    }

    #[test]
    fn two_methods_need_two_enabled() {
        let p = Policy {
            methods: vec![Method::Email],
            methods_required: 2,
            ..Policy::default()
        };
        assert!(p.validate().iter().any(|m| m.contains("only 1 method")));
    }

    #[test]
    fn scope_by_any_of_several_groups() {
        let p = Policy {
            scope: Scope::Groups,
            groups: vec!["staff".into(), "Students".into()],
            ..Policy::default()
        };
        assert!(p.in_scope(&["students".into()]));
        assert!(!p.in_scope(&["guests".into()]));
        assert!(
            !Policy {
                scope: Scope::None,
                ..Policy::default()
            }
            .in_scope(&["staff".into()])
        );
    }

    #[test]
    fn privileged_users_need_two_methods_without_questions() {
        let p = Policy::default();
        let r = p.requirement_for(&["Admins".into()]);
        assert!(r.privileged);
        assert_eq!(r.required, 2);
        assert!(!r.methods.contains(&Method::Questions));
        let r = p.requirement_for(&["staff".into()]);
        assert_eq!(r.required, 1);
        assert!(!r.methods.contains(&Method::Questions));
    }

    #[test]
    fn questions_count_alone_only_where_the_admin_allows_it() {
        let staff = ["staff".to_string()];
        let alone = Policy {
            questions_alone: true,
            ..Policy::default()
        };
        assert!(
            alone
                .requirement_for(&staff)
                .methods
                .contains(&Method::Questions)
        );
        let two = Policy {
            methods_required: 2,
            ..Policy::default()
        };
        let r = two.requirement_for(&staff);
        assert_eq!(r.required, 2);
        assert!(
            r.methods.contains(&Method::Questions),
            "as the second of two"
        );
        let admins = ["admins".to_string()];
        assert!(
            !alone
                .requirement_for(&admins)
                .methods
                .contains(&Method::Questions),
            "never for privileged accounts"
        );
    }
}
