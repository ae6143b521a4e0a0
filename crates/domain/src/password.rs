//! Password rules, after NIST SP 800-63B-4: length over composition, a blocklist of common,
//! breached and context-specific passwords, and a reason in words for every rejection.
//!
//! The password is checked and written exactly as typed (no normalisation, no truncation), so
//! that the same keystrokes log in afterwards at PAM, LDAP and AD alike.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Passwords that real people picked most often, from breach corpora (see data/NOTICE).
const COMMON: &str = include_str!("../data/common-passwords.txt");

/// The longest password accepted at all; anything longer is refused before hashing.
pub const HARD_MAX_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordRules {
    /// Minimum length in characters (Unicode code points). NIST SP 800-63B-4 asks for 15 when
    /// the password alone protects the account, as at a login screen; never below 8.
    pub min_length: usize,
    /// Maximum length in characters; at least 256.
    pub max_length: usize,
    /// Reject passwords on the bundled list of common passwords (fuzzy: case, l33t, padding).
    pub reject_common: bool,
    /// Reject passwords that contain the user's login, display name or the organisation.
    pub reject_context: bool,
    /// The organisation's name and other words everyone here would guess.
    pub organisation: String,
    /// The admin's own banned words (matched case-insensitively as substrings, ≥ 4 characters).
    pub banned_words: Vec<String>,
    /// Composition rules are off by default (NIST says not to force them); some directories
    /// need them, so they can be switched on: at least this many of lower, upper, digit, symbol.
    pub min_character_classes: u8,
}

impl Default for PasswordRules {
    fn default() -> Self {
        Self {
            min_length: 15,
            max_length: 256,
            reject_common: true,
            reject_context: true,
            organisation: String::new(),
            banned_words: Vec::new(),
            min_character_classes: 0,
        }
    }
}

/// Why a password was refused. Each has a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rejection {
    TooShort {
        min: usize,
    },
    TooLong {
        max: usize,
    },
    Blank,
    ControlCharacters,
    Common,
    /// One character repeated, a short pattern repeated, or a run like 123456789… (NIST
    /// SP 800-63B §3.1.1.2 names "repetitive or sequential characters").
    Repetitive,
    Breached,
    ContainsContext {
        word: String,
    },
    Banned,
    TooFewClasses {
        min: u8,
    },
    /// The directory refused it, with the directory's reason in words.
    Directory {
        reason: String,
    },
    /// The directory remembers it as a recent password.
    History,
    /// A change to the password the user has now.
    SameAsCurrent,
    Mismatch,
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "too_short",
            Self::TooLong { .. } => "too_long",
            Self::Blank => "blank",
            Self::ControlCharacters => "control_characters",
            Self::Common => "common",
            Self::Repetitive => "repetitive",
            Self::Breached => "breached",
            Self::ContainsContext { .. } => "contains_context",
            Self::Banned => "banned",
            Self::TooFewClasses { .. } => "too_few_classes",
            Self::Directory { .. } => "directory",
            Self::History => "history",
            Self::SameAsCurrent => "same_as_current",
            Self::Mismatch => "mismatch",
        }
    }

    /// The sentence shown to the user, in English (`en`) or Simplified Chinese (`zh`).
    pub fn message(&self, lang: &str) -> String {
        let zh = lang.starts_with("zh");
        match self {
            Self::TooShort { min } if zh => format!("密码太短：至少需要 {min} 个字符。可以用几个词组成一句好记的话。"),
            Self::TooShort { min } => {
                format!("The password is too short: use at least {min} characters. A few words make a good passphrase.")
            }
            Self::TooLong { max } if zh => format!("密码太长：最多 {max} 个字符。"),
            Self::TooLong { max } => format!("The password is too long: use at most {max} characters."),
            Self::Blank if zh => "密码不能为空或只有空格。".into(),
            Self::Blank => "The password cannot be empty or only spaces.".into(),
            Self::ControlCharacters if zh => "密码不能包含控制字符。".into(),
            Self::ControlCharacters => "The password cannot contain control characters.".into(),
            Self::Repetitive if zh => {
                "密码由重复或连续的字符组成（如 aaaa 或 12345），很容易被猜到。请换一个。".into()
            }
            Self::Repetitive => "It is made of repeated or sequential characters (like aaaa or 12345), which are easy to guess. Choose another.".into(),
            Self::Common if zh => "这是最常用的密码之一，很容易被猜到。请换一个。".into(),
            Self::Common => {
                "This is one of the most commonly used passwords and is easy to guess. Choose another.".into()
            }
            Self::Breached if zh => "这个密码曾出现在公开的数据泄露中。请换一个。".into(),
            Self::Breached => "This password has appeared in a known data breach. Choose another.".into(),
            Self::ContainsContext { word } if zh => format!("密码不能包含你的用户名、姓名或机构名（“{word}”）。"),
            Self::ContainsContext { word } => {
                format!("The password cannot contain your user name, your name or the organisation's name (\"{word}\").")
            }
            Self::Banned if zh => "密码包含管理员禁止使用的词。".into(),
            Self::Banned => "The password contains a word your administrator has banned.".into(),
            Self::TooFewClasses { min } if zh => format!("密码需要包含至少 {min} 类字符：小写字母、大写字母、数字、符号。"),
            Self::TooFewClasses { min } => format!(
                "The password needs at least {min} of these: lowercase letters, uppercase letters, digits, symbols."
            ),
            Self::Directory { reason } if zh => format!("目录服务拒绝了这个密码：{reason}"),
            Self::Directory { reason } => format!("The directory refused this password: {reason}"),
            Self::History if zh => "你最近用过这个密码。请换一个新的。".into(),
            Self::History => "You used this password recently. Choose one you have not used before.".into(),
            Self::SameAsCurrent if zh => "新密码与当前密码相同。请另选一个。".into(),
            Self::SameAsCurrent => "The new password is the same as your current one. Choose another.".into(),
            Self::Mismatch if zh => "两次输入的密码不一致。".into(),
            Self::Mismatch => "The two passwords do not match.".into(),
        }
    }
}

/// A rule of the directory's own, told before the user types (sspr's built-in directory,
/// an OpenLDAP ppolicy, an AD domain or fine-grained policy). The directories say what holds;
/// the words are here, in each user's language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryRule {
    /// The built-in directory refuses a password it has stored among the last `count`.
    NoReuse { count: usize },
    /// An LDAP directory's minimum length.
    MinLength { min: i64 },
    /// An LDAP directory's password history, held for sspr's resets too.
    History { count: i64 },
    /// AD's "password must meet complexity requirements".
    Complexity,
    /// A minimum age: the password cannot be changed again for this many seconds.
    MinAge { secs: i64 },
    /// A history the directory keeps that sspr's resets are not checked against.
    HistoryNotChecked,
}

impl DirectoryRule {
    /// The sentence shown to the user, in English (`en`) or Simplified Chinese (`zh`).
    pub fn message(&self, lang: &str) -> String {
        let zh = lang.starts_with("zh");
        match self {
            Self::NoReuse { count } if zh => format!("不能使用最近 {count} 个用过的密码。"),
            Self::NoReuse { count } => {
                format!("You cannot reuse any of your last {count} passwords.")
            }
            Self::MinLength { min } if zh => format!("目录服务要求至少 {min} 个字符。"),
            Self::MinLength { min } => format!("The directory requires at least {min} characters."),
            Self::History { count } if zh => format!("目录服务不接受你最近用过的 {count} 个密码。"),
            Self::History { count } => format!("The directory refuses your last {count} passwords."),
            Self::Complexity if zh => {
                "域要求包含以下四类中的三类：大写字母、小写字母、数字、符号；且不能包含你的用户名。".into()
            }
            Self::Complexity => "The domain requires three of: uppercase letters, lowercase letters, digits, symbols; and not your account name.".into(),
            Self::MinAge { secs } if zh => {
                format!("密码设置后，{}内不能再次更改。", duration_words(*secs, true))
            }
            Self::MinAge { secs } => format!(
                "Once set, the password cannot be changed again for {}.",
                duration_words(*secs, false)
            ),
            Self::HistoryNotChecked if zh => {
                "在这里重置密码时不会检查你以前用过的密码：请选择一个没有用过的密码。".into()
            }
            Self::HistoryNotChecked => "A reset here is not checked against your earlier passwords: choose one you have not used before.".into(),
        }
    }
}

/// A span of seconds in words: "2 days", "1 hour", "30 minutes"; "2 天", "1 小时".
pub fn duration_words(secs: i64, zh: bool) -> String {
    let (n, unit, unit_zh) = if secs >= 86_400 && secs % 86_400 == 0 {
        (secs / 86_400, "day", "天")
    } else if secs >= 3_600 && secs % 3_600 == 0 {
        (secs / 3_600, "hour", "小时")
    } else if secs >= 60 {
        ((secs + 59) / 60, "minute", "分钟")
    } else {
        (secs, "second", "秒")
    };
    if zh {
        format!("{n} {unit_zh}")
    } else {
        format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
    }
}

/// What the checker knows about the user, for context-specific words.
#[derive(Debug, Clone, Default)]
pub struct PasswordContext<'a> {
    pub login: &'a str,
    pub display_name: &'a str,
}

fn common_set() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Lowercase and undo the usual substitutions, so `P@ssw0rd` meets `password`.
fn fold(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' | '!' | '|' => 'l',
            '3' => 'e',
            '4' | '@' => 'a',
            '5' | '$' => 's',
            '7' => 't',
            c => c,
        })
        .collect()
}

impl PasswordRules {
    pub fn validate(&self) -> Vec<String> {
        self.problems().iter().map(ToString::to_string).collect()
    }

    /// What is wrong with these rules, as part of [`crate::Policy::problems`].
    pub fn problems(&self) -> Vec<crate::policy::PolicyProblem> {
        use crate::policy::PolicyProblem as P;
        let mut e = Vec::new();
        if self.min_length < 8 {
            e.push(P::MinLength);
        }
        if !(256..=HARD_MAX_LEN).contains(&self.max_length) {
            e.push(P::MaxLength { max: HARD_MAX_LEN });
        }
        if self.min_length > self.max_length.min(HARD_MAX_LEN) {
            e.push(P::MinAboveMax);
        }
        if self.min_character_classes > 4 {
            e.push(P::CharacterClasses);
        }
        if let Some(w) = self
            .banned_words
            .iter()
            .find(|w| w.trim().chars().count() < 4)
        {
            e.push(P::BannedWordTooShort { word: w.clone() });
        }
        e
    }

    /// All reasons this password is refused; empty when it is acceptable.
    pub fn check(&self, password: &str, ctx: &PasswordContext<'_>) -> Vec<Rejection> {
        let mut out = Vec::new();
        let len = password.chars().count();
        if password.trim().is_empty() {
            out.push(Rejection::Blank);
            return out;
        }
        if password.chars().any(char::is_control) {
            out.push(Rejection::ControlCharacters);
        }
        if len < self.min_length {
            out.push(Rejection::TooShort {
                min: self.min_length,
            });
        }
        if len > self.max_length.min(HARD_MAX_LEN) {
            out.push(Rejection::TooLong {
                max: self.max_length.min(HARD_MAX_LEN),
            });
            return out;
        }
        if self.reject_common && is_common(password) {
            out.push(Rejection::Common);
        } else if self.reject_common && is_repetitive(password) {
            out.push(Rejection::Repetitive);
        }
        let folded = fold(password);
        if self.reject_context {
            let words = context_words(ctx, &self.organisation);
            if let Some(w) = words.iter().find(|w| folded.contains(&fold(w))) {
                out.push(Rejection::ContainsContext { word: w.clone() });
            }
        }
        if self
            .banned_words
            .iter()
            .map(|w| fold(w.trim()))
            .any(|w| w.chars().count() >= 4 && folded.contains(&w))
        {
            out.push(Rejection::Banned);
        }
        if self.min_character_classes > 0 && classes(password) < self.min_character_classes {
            out.push(Rejection::TooFewClasses {
                min: self.min_character_classes,
            });
        }
        out
    }
}

/// On the common list as typed, case-folded, de-l33ted, or with digits and symbols padded on.
pub fn is_common(password: &str) -> bool {
    let set = common_set();
    let lower = password.to_lowercase();
    let stripped = lower.trim_matches(|c: char| !c.is_alphabetic());
    let candidates = [
        lower.clone(),
        fold(&lower),
        stripped.to_string(),
        fold(stripped),
    ];
    candidates
        .iter()
        .any(|c| c.chars().count() >= 4 && set.contains(c.as_str()))
}

/// Words of at least 4 characters the user, or anyone who knows them, would try first.
fn context_words(ctx: &PasswordContext<'_>, organisation: &str) -> Vec<String> {
    let login_local = ctx.login.split('@').next().unwrap_or(ctx.login);
    let mut words: Vec<String> = std::iter::once(login_local)
        .chain(ctx.display_name.split(|c: char| !c.is_alphanumeric()))
        .chain(organisation.split(|c: char| !c.is_alphanumeric()))
        .chain(std::iter::once(organisation))
        .map(|w| w.trim().to_lowercase())
        .filter(|w| w.chars().count() >= 4)
        .collect();
    words.sort();
    words.dedup();
    words
}

fn classes(p: &str) -> u8 {
    let l = p.chars().any(|c| c.is_lowercase()) as u8;
    let u = p.chars().any(|c| c.is_uppercase()) as u8;
    let d = p.chars().any(|c| c.is_ascii_digit()) as u8;
    let s = p.chars().any(|c| !c.is_alphanumeric()) as u8;
    l + u + d + s
}

/// Fewer than five different characters, or every step between neighbours the same
/// (`aaaa…`, `abcdef…`, `97531…`).
pub fn is_repetitive(password: &str) -> bool {
    let chars: Vec<char> = password.chars().collect();
    let mut distinct = chars.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 5 {
        return true;
    }
    let steps: Vec<i64> = chars
        .windows(2)
        .map(|w| i64::from(u32::from(w[1])) - i64::from(u32::from(w[0])))
        .collect();
    steps.windows(2).all(|w| w[0] == w[1]) && steps.first().is_some_and(|d| d.abs() <= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_rules_are_worded_in_both_languages() {
        for rule in [
            DirectoryRule::NoReuse { count: 3 },
            DirectoryRule::MinLength { min: 7 },
            DirectoryRule::History { count: 24 },
            DirectoryRule::Complexity,
            DirectoryRule::MinAge { secs: 86_400 },
            DirectoryRule::HistoryNotChecked,
        ] {
            let (en, zh) = (rule.message("en"), rule.message("zh"));
            assert!(en.is_ascii() && en.ends_with('.'), "{en}");
            assert!(!zh.chars().any(|c| c.is_ascii_alphabetic()), "{zh}");
        }
        assert_eq!(
            DirectoryRule::NoReuse { count: 3 }.message("zh"),
            "不能使用最近 3 个用过的密码。"
        );
    }

    fn ctx() -> PasswordContext<'static> {
        PasswordContext {
            login: "alice",
            display_name: "Alice Liddell",
        }
    }

    #[test]
    fn length_boundaries_count_code_points() {
        let r = PasswordRules::default();
        let varied = |n: usize| "tulip kettle 9".chars().cycle().take(n).collect::<String>();
        assert_eq!(r.check(&varied(28), &ctx()), vec![]);
        assert!(
            r.check("tulip-kettle-9", &ctx())
                .contains(&Rejection::TooShort { min: 15 })
        );
        assert_eq!(r.check("tulip-kettle-9x", &ctx()), vec![]);
        // 15 emoji are 15 characters (60 bytes) and pass.
        let crabs: String = "🦀🐙🦑🐠🐳".chars().cycle().take(15).collect();
        assert_eq!(r.check(&crabs, &ctx()), vec![]);
        assert_eq!(r.check(&varied(256), &ctx()), vec![]);
        assert_eq!(
            r.check(&varied(258), &ctx()),
            vec![Rejection::TooLong { max: 256 }]
        );
    }

    #[test]
    fn no_composition_rules_by_default() {
        let r = PasswordRules::default();
        assert_eq!(r.check("quiet violet harbour lamps", &ctx()), vec![]);
        let strict = PasswordRules {
            min_character_classes: 3,
            ..r
        };
        assert_eq!(
            strict.check("quiet violet harbour lamps", &ctx()),
            vec![Rejection::TooFewClasses { min: 3 }]
        );
    }

    #[test]
    fn repeated_and_sequential_characters_are_refused_and_passphrases_are_not() {
        for weak in [
            "aaaaaaaaaaaaaaa",
            "abababababababab",
            "abcdefghijklmnop",
            "9876543210zyx".get(..10).unwrap_or(""),
            "1122112211221122",
        ] {
            assert!(is_repetitive(weak), "{weak}");
        }
        for ok in [
            "violet tuba harbour",
            "correct horse battery",
            "Tr0ub4dor&3xyz!!",
        ] {
            assert!(!is_repetitive(ok), "{ok}");
        }
        let rules = PasswordRules::default();
        let got = rules.check("aaaaaaaaaaaaaaaaaa", &PasswordContext::default());
        assert!(got.contains(&Rejection::Repetitive), "{got:?}");
    }

    #[test]
    fn common_passwords_are_caught_through_disguises() {
        let r = PasswordRules {
            min_length: 8,
            ..PasswordRules::default()
        };
        for p in [
            "password",
            "Password123456",
            "P@ssw0rd",
            "iloveyou!!",
            "qwertyuiop",
        ] {
            assert!(r.check(p, &ctx()).contains(&Rejection::Common), "{p}");
        }
        assert!(!is_common("harbour-lamps-violet"));
    }

    #[test]
    fn context_words_are_refused_with_the_word() {
        let r = PasswordRules {
            organisation: "Contoso Ltd".into(),
            ..PasswordRules::default()
        };
        let e = r.check("my-name-is-ALICE-ok", &ctx());
        assert!(
            e.contains(&Rejection::ContainsContext {
                word: "alice".into()
            }),
            "{e:?}"
        );
        let e = r.check("liddell-family-rocks", &ctx());
        assert!(matches!(e[0], Rejection::ContainsContext { .. }));
        let e = r.check("c0nt0so-rocks-forever", &ctx());
        assert_eq!(
            e,
            vec![Rejection::ContainsContext {
                word: "contoso".into()
            }]
        );
    }

    #[test]
    fn admin_banned_words() {
        let r = PasswordRules {
            banned_words: vec!["Wonderland".into()],
            ..PasswordRules::default()
        };
        assert_eq!(
            r.check("down-to-w0nderland-we-go", &ctx()),
            vec![Rejection::Banned]
        );
    }

    #[test]
    fn blank_and_control_characters() {
        let r = PasswordRules::default();
        assert_eq!(r.check("                 ", &ctx()), vec![Rejection::Blank]);
        assert!(
            r.check("abcdefgh\u{7}ijklmnop", &ctx())
                .contains(&Rejection::ControlCharacters)
        );
    }

    #[test]
    fn every_rejection_speaks_both_languages() {
        let all = [
            Rejection::TooShort { min: 15 },
            Rejection::TooLong { max: 256 },
            Rejection::Blank,
            Rejection::ControlCharacters,
            Rejection::Common,
            Rejection::Breached,
            Rejection::ContainsContext { word: "x".into() },
            Rejection::Banned,
            Rejection::TooFewClasses { min: 3 },
            Rejection::Directory { reason: "r".into() },
            Rejection::History,
            Rejection::Mismatch,
        ];
        for r in all {
            assert!(r.message("en").is_ascii(), "{r:?}");
            assert!(!r.message("zh-CN").is_ascii(), "{r:?}");
        }
    }

    #[test]
    fn config_bounds() {
        assert!(PasswordRules::default().validate().is_empty());
        let r = PasswordRules {
            min_length: 7,
            max_length: 100,
            banned_words: vec!["ab".into()],
            ..PasswordRules::default()
        };
        assert_eq!(r.validate().len(), 3);
    }
}
