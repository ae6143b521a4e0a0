//! Login-name normalisation: one account whatever form of the name is typed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sspr_domain::identity::{MAX_LOGIN_LEN, canonical_login, login_problem};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let canon = canonical_login(raw);
    if let Some(c) = &canon {
        // The stored name is the canonical one: typing it again must reach the same account.
        assert_eq!(
            canonical_login(c).as_deref(),
            Some(c.as_str()),
            "not idempotent: {raw:?} -> {c:?}"
        );
        assert!(!c.is_empty() && c.chars().count() <= MAX_LOGIN_LEN);
        assert_eq!(c.trim(), c, "{raw:?} -> {c:?} has spaces around it");
        assert!(!c.chars().any(char::is_control), "{raw:?} -> {c:?}");
    }
    // A name that may be created has a canonical form, and that form may be created too.
    if login_problem(raw).is_none() {
        let Some(c) = canon else {
            panic!("{raw:?} may be created but has no canonical form");
        };
        assert_eq!(login_problem(&c), None, "{raw:?} -> {c:?}");
    }
});
