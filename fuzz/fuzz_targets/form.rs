//! The strict form reader against a reference reading of the grammar: pairs split on `&`,
//! name and value on the first `=`, `+` is a space, `%XY` a byte; the first pair that is not
//! UTF-8 or repeats a name is the error. What it accepts, written back encoded, reads the same.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sspr_web::form::{FormError, parse};

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn decode(raw: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).and_then(|&c| hex(c)),
                raw.get(i + 2).and_then(|&c| hex(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

fn reference(body: &[u8]) -> Result<HashMap<String, String>, FormError> {
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

fuzz_target!(|data: &[u8]| {
    let got = parse(data);
    assert_eq!(got, reference(data), "{:?}", String::from_utf8_lossy(data));
    if let Ok(fields) = got {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, NON_ALPHANUMERIC),
                    utf8_percent_encode(v, NON_ALPHANUMERIC)
                )
            })
            .collect();
        assert_eq!(parse(body.join("&").as_bytes()), Ok(fields));
    }
});
