//! Form bodies read strictly. A browser sends each field of our forms once, as UTF-8; anything
//! else is a crafted request, and a lenient reader would let it say two things: with
//! `user=a&user=b` one layer may read `a` and another `b`, and bytes that are not UTF-8 would
//! become U+FFFD and a different login name than the one typed.

use std::collections::HashMap;

use percent_encoding::percent_decode;

/// Why a form body was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum FormError {
    /// A name or value is not UTF-8 once decoded.
    NotUtf8,
    /// A field came twice (its name, cut for the log).
    Repeated(String),
}

/// Parses an `application/x-www-form-urlencoded` body.
pub fn parse(body: &[u8]) -> Result<HashMap<String, String>, FormError> {
    let mut out = HashMap::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode(name)?;
        let value = decode(value)?;
        if out.contains_key(&name) {
            return Err(FormError::Repeated(name.chars().take(40).collect()));
        }
        out.insert(name, value);
    }
    Ok(out)
}

fn decode(raw: &[u8]) -> Result<String, FormError> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    String::from_utf8(percent_decode(&spaced).collect()).map_err(|_| FormError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browsers_form_is_read_whole() {
        let f = parse(b"user=d%C3%A9mo+x&csrf=ab&empty=&flag").unwrap();
        assert_eq!(f["user"], "démo x");
        assert_eq!(f["csrf"], "ab");
        assert_eq!(f["empty"], "");
        assert_eq!(f["flag"], "");
        assert!(parse(b"").unwrap().is_empty());
    }

    #[test]
    fn a_repeated_field_or_bytes_that_are_not_utf8_are_refused() {
        assert_eq!(
            parse(b"user=a&user=b"),
            Err(FormError::Repeated("user".into()))
        );
        assert_eq!(parse(b"user=%FF"), Err(FormError::NotUtf8));
        assert_eq!(parse(b"us%E9r=a"), Err(FormError::NotUtf8));
        assert_eq!(parse(b"user=\xff"), Err(FormError::NotUtf8));
    }
}
