//! One canonical form for a login name, so `Alice`, `alice` and ` alice ` share one account,
//! one counter and one response.

use unicode_normalization::UnicodeNormalization;

/// The longest user ID accepted; longer input is refused before any lookup.
pub const MAX_LOGIN_LEN: usize = 256;

/// Trims, applies NFKC and lowercases (close to RFC 8265's UsernameCaseMapped, which sspr
/// follows for the names it creates). Returns `None` for an empty or oversized ID or one with
/// control or invisible characters, which no directory should hold.
pub fn canonical_login(raw: &str) -> Option<String> {
    // Normalised again after lower-casing (RFC 8265's order: case mapping, then
    // normalisation): lower-casing can leave marks out of canonical order ("İ" becomes
    // "i\u{307}", before marks that sort ahead of U+0307).
    let folded: String = raw
        .trim()
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect();
    // Trimmed again: NFKC turns a spacing accent into a space and a combining mark (U+00B4
    // ´ becomes " \u{301}"), and a canonical form that starts with a space is not its own
    // canonical form: the name stored would not find its own account.
    let s = folded.trim();
    if s.is_empty()
        || s.chars().count() > MAX_LOGIN_LEN
        || s.chars().any(|c| c.is_control() || invisible(c))
    {
        return None;
    }
    Some(s.to_string())
}

/// Why a login name may not be created, in words that say what to fix; `None` when it may.
/// Beyond what [`canonical_login`] refuses: invisible characters (a zero-width space makes a
/// second account that looks like the first) and letters of two of the scripts that share
/// look-alikes (Latin, Greek, Cyrillic: "аlice" with a Cyrillic "а" is not "alice").
pub fn login_problem(raw: &str) -> Option<String> {
    if let Some((i, c)) = raw.trim().chars().enumerate().find(|(_, c)| invisible(*c)) {
        return Some(format!(
            "the login has an invisible character (U+{:04X}) at position {}: type it again without it",
            c as u32,
            i + 1
        ));
    }
    let Some(login) = canonical_login(raw) else {
        return Some(
            "the login is empty, longer than 256 characters or has control characters".into(),
        );
    };
    // The canonical form too: normalising can compose what was allowed into what is not
    // ("=" and U+0338 become "≠"), and the canonical form is the name stored.
    if let Some(problem) = precis_problem(raw.trim(), "")
        .or_else(|| precis_problem(&login, &format!(" of its normalised form {login:?}")))
    {
        return Some(problem);
    }
    let mut first: Option<(Script, char)> = None;
    for c in login.chars() {
        let Some(script) = script(c) else { continue };
        match first {
            None => first = Some((script, c)),
            Some((s, f)) if s != script => {
                return Some(format!(
                    "the login mixes {} letters ('{f}') and {} letters ('{c}', U+{:04X}): type it with one keyboard layout",
                    s.name(),
                    script.name(),
                    c as u32
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// What RFC 8265's UsernameCaseMapped profile refuses: spaces, symbols, non-ASCII
/// punctuation, compatibility characters other than full- and half-width forms ("ﬁ" is not
/// "fi"), and right-to-left text that breaks the bidi rule. Existing directory accounts are
/// never refused at lookup: this applies to the names sspr creates.
fn precis_problem(login: &str, of: &str) -> Option<String> {
    use precis_core::profile::PrecisFastInvocation;
    match precis_profiles::UsernameCaseMapped::enforce(login) {
        Ok(_) => None,
        Err(precis_core::Error::BadCodepoint(info)) => {
            let shown = char::from_u32(info.cp)
                .filter(|c| !c.is_whitespace())
                .map(|c| format!("'{c}', "))
                .unwrap_or_default();
            Some(format!(
                "the login has a character user names may not hold ({shown}U+{:04X}) at position {}{of}: \
                 use letters, digits and ASCII punctuation such as . _ -",
                info.cp,
                info.position + 1
            ))
        }
        Err(_) => Some(
            "the login is not a valid user name (RFC 8265): check its right-to-left text \
             or retype it with letters, digits and ASCII punctuation"
                .into(),
        ),
    }
}

/// Characters that show as nothing: format characters, joiners, fillers, variation selectors
/// (Unicode's default-ignorable code points).
fn invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// The scripts whose letters look alike.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
}

impl Script {
    fn name(self) -> &'static str {
        match self {
            Script::Latin => "Latin",
            Script::Greek => "Greek",
            Script::Cyrillic => "Cyrillic",
        }
    }
}

fn script(c: char) -> Option<Script> {
    if !c.is_alphabetic() {
        return None;
    }
    match c as u32 {
        0x0041..=0x024F | 0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF => {
            Some(Script::Latin)
        }
        0x0370..=0x03FF | 0x1F00..=0x1FFF => Some(Script::Greek),
        0x0400..=0x052F | 0x1C80..=0x1C8F | 0x2DE0..=0x2DFF | 0xA640..=0xA69F => {
            Some(Script::Cyrillic)
        }
        _ => None,
    }
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
    fn the_canonical_form_is_its_own_canonical_form() {
        // Found by the `login` fuzz target: NFKC gave "´" a leading space.
        // And by CI's run: "İ" lower-cases to "i\u{307}", out of order before U+032C.
        for raw in [
            "\u{B4}",
            "\u{A8}x",
            " \u{2DC}bob",
            "\u{309B}",
            "x\u{B4}",
            "\u{130}\u{32C}\u{330}",
        ] {
            let once = canonical_login(raw);
            assert_eq!(once.as_deref().and_then(canonical_login), once, "{raw:?}");
        }
        assert_eq!(canonical_login("\u{B4}"), Some("\u{301}".into()));
    }

    #[test]
    fn invisible_characters_and_look_alike_scripts_are_refused_at_creation() {
        let zw = login_problem("ali\u{200B}ce").unwrap();
        assert!(zw.contains("U+200B") && zw.contains("position 4"), "{zw}");
        assert!(login_problem("alice\u{FEFF}").is_some());
        assert_eq!(canonical_login("ali\u{200D}ce"), None, "never found either");
        let mixed = login_problem("\u{0430}lice").unwrap();
        assert!(
            mixed.contains("Cyrillic") && mixed.contains("Latin"),
            "{mixed}"
        );
        assert!(login_problem("pаypal").is_some());
        assert!(login_problem("ΑLICE").is_some(), "a Greek capital alpha");
        for fine in [
            "alice",
            "josé.garcía",
            "o'brien-2",
            "张伟",
            "tanaka.太郎",
            "иван",
            "ελένη",
            "Ａｌｉｃｅ",
        ] {
            assert_eq!(login_problem(fine), None, "{fine}");
        }
    }

    #[test]
    fn names_rfc_8265_refuses_are_refused_at_creation_with_the_character_named() {
        let space = login_problem("john smith").unwrap();
        assert!(
            space.contains("U+0020") && space.contains("position 5"),
            "{space}"
        );
        let lig = login_problem("\u{FB01}nance").unwrap();
        assert!(
            lig.contains("U+FB01"),
            "a ligature is not two letters: {lig}"
        );
        // Found by the `login` fuzz target: allowed as typed, a symbol once normalised.
        let composed = login_problem("=\u{338}ci").unwrap();
        assert!(composed.contains("U+2260"), "{composed}");
        for bad in ["alice\u{2603}", "bob\u{00A0}x", "ali\u{2126}"] {
            assert!(login_problem(bad).is_some(), "{bad:?}");
        }
        // Lookups stay lenient: a directory may hold names sspr would not create.
        assert_eq!(canonical_login("John Smith"), Some("john smith".into()));
    }

    #[test]
    fn junk_is_refused() {
        assert_eq!(canonical_login("   "), None);
        assert_eq!(canonical_login("a\u{0}b"), None);
        assert_eq!(canonical_login(&"x".repeat(300)), None);
    }
}
