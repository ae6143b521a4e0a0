//! Saved recovery codes (NIST SP 800-63B-4 §4.2.1.1): a set of one-time codes the user keeps
//! on paper or in a password manager, each good for one reset.
//!
//! A code is 16 characters of Crockford's base32, 80 random bits (the standard asks for at
//! least 64), shown in four groups of four. Reading one back forgives what people get wrong
//! when they type from paper: case, spaces, dashes, and the letters O, I and L for the digits
//! 0, 1 and 1.

use crate::random::Random;

/// Codes in a set.
pub const SET_SIZE: usize = 10;
/// Characters in a code, without the dashes.
pub const LEN: usize = 16;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh set of codes, each as it is shown (`XXXX-XXXX-XXXX-XXXX`).
pub fn generate(rng: &dyn Random) -> Vec<String> {
    (0..SET_SIZE).map(|_| one(rng)).collect()
}

fn one(rng: &dyn Random) -> String {
    let mut b = [0u8; LEN];
    rng.fill(&mut b);
    let mut out = String::with_capacity(LEN + 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // 256 is a multiple of 32: the low five bits are uniform.
        out.push(char::from(ALPHABET[(*x & 31) as usize]));
    }
    out
}

/// The canonical form of a typed code (16 characters, no dashes), or `None` when it cannot be
/// one: the wrong length, or a character outside the alphabet.
pub fn normalise(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(LEN);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            ' ' | '-' | '\t' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == LEN).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(std::sync::atomic::AtomicU8);
    impl Random for Counting {
        fn fill(&self, buf: &mut [u8]) {
            for b in buf {
                *b = self.0.fetch_add(7, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn a_set_is_ten_distinct_codes_in_four_groups_that_read_back() {
        let codes = generate(&crate::OsRandom);
        assert_eq!(codes.len(), SET_SIZE);
        let mut seen = std::collections::HashSet::new();
        for c in &codes {
            assert_eq!(c.len(), LEN + 3, "{c}");
            assert_eq!(c.split('-').count(), 4, "{c}");
            let n = normalise(c).unwrap();
            assert_eq!(n, c.replace('-', ""));
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn typing_mistakes_people_make_from_paper_are_forgiven() {
        let rng = Counting(std::sync::atomic::AtomicU8::new(0));
        let code = one(&rng);
        let canon = normalise(&code).unwrap();
        assert_eq!(normalise(&code.to_lowercase()), Some(canon.clone()));
        assert_eq!(normalise(&code.replace('-', " ")), Some(canon.clone()));
        assert_eq!(
            normalise("0O1I-L000-0000-0000"),
            Some("0011100000000000".into())
        );
        assert_eq!(normalise(""), None);
        assert_eq!(normalise("0000-0000-0000"), None, "too short");
        assert_eq!(normalise("0000-0000-0000-0000-0"), None, "too long");
        assert_eq!(
            normalise("0000-0000-0000-000U"),
            None,
            "U is not in the alphabet"
        );
        assert_eq!(normalise("0000-0000-0000-000é"), None);
        assert_eq!(
            normalise("123456"),
            None,
            "an authenticator code is not one"
        );
    }
}
