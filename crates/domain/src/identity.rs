//! One canonical form for a login name, so `Alice`, `alice` and ` alice ` share one account,
//! one counter and one response.

use unicode_normalization::UnicodeNormalization;

/// The longest user ID accepted; longer input is refused before any lookup.
pub const MAX_LOGIN_LEN: usize = 256;

/// Trims, applies NFKC and lowercases. Returns `None` for an empty or oversized ID or one with
/// control characters, which no directory holds.
pub fn canonical_login(raw: &str) -> Option<String> {
    let s: String = raw.trim().nfkc().collect::<String>().to_lowercase();
    if s.is_empty() || s.chars().count() > MAX_LOGIN_LEN || s.chars().any(char::is_control) {
        return None;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_space_fold_to_one_account() {
        assert_eq!(canonical_login(" Alice "), Some("alice".into()));
        assert_eq!(canonical_login("ALICE"), canonical_login("alice"));
        assert_eq!(canonical_login("Ａｌｉｃｅ"), Some("alice".into()));
    }

    #[test]
    fn junk_is_refused() {
        assert_eq!(canonical_login("   "), None);
        assert_eq!(canonical_login("a\u{0}b"), None);
        assert_eq!(canonical_login(&"x".repeat(300)), None);
    }
}
