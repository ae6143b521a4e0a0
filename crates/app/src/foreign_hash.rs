//! Password hashes made elsewhere, as `sspr users import` accepts them: Argon2 PHC strings,
//! bcrypt (`$2a$`, `$2b$`, `$2y$`) and the salted SHA schemes of OpenLDAP's `slappasswd`
//! (`{SSHA}`, `{SSHA256}`, `{SSHA512}`). They are stored as given and verified here; the built-in
//! directory replaces them with its own Argon2id at the next successful sign-in.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The largest costs accepted in an imported hash. Verifying a hash costs what it says, at
/// every sign-in until it is upgraded: one with m = 4 GiB or bcrypt cost 31 would let a file
/// (or whoever can sign in as that account) stall or exhaust the server.
pub const MAX_ARGON2_M_KIB: u32 = 262_144;
pub const MAX_ARGON2_T: u32 = 16;
pub const MAX_ARGON2_P: u32 = 8;
pub const MAX_BCRYPT_COST: u32 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Argon2,
    Bcrypt,
    Ssha1,
    Ssha256,
    Ssha512,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2 => "argon2",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Ssha1 => "{SSHA}",
            Scheme::Ssha256 => "{SSHA256}",
            Scheme::Ssha512 => "{SSHA512}",
        }
    }
}

/// Which scheme `s` claims by its prefix, without checking the rest; `None` for anything else
/// (a plaintext password, as far as import is concerned).
pub fn claimed(s: &str) -> Option<Scheme> {
    if s.starts_with("$argon2id$") || s.starts_with("$argon2i$") {
        Some(Scheme::Argon2)
    } else if s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$") {
        Some(Scheme::Bcrypt)
    } else {
        // OpenLDAP matches scheme names without regard to case.
        let upper = s.get(..9).unwrap_or(s).to_ascii_uppercase();
        if upper.starts_with("{SSHA256}") {
            Some(Scheme::Ssha256)
        } else if upper.starts_with("{SSHA512}") {
            Some(Scheme::Ssha512)
        } else if upper.starts_with("{SSHA}") {
            Some(Scheme::Ssha1)
        } else {
            None
        }
    }
}

/// Whether `s` looks like a hash of a scheme sspr does not accept, so that import can say so
/// rather than take it for a plaintext password.
pub fn unsupported(s: &str) -> Option<&'static str> {
    let upper = s.get(..10).unwrap_or(s).to_ascii_uppercase();
    for scheme in [
        "{SHA}", "{MD5}", "{SMD5}", "{CRYPT}", "{PBKDF2", "{SHA256}", "{SHA512}",
    ] {
        if upper.starts_with(scheme) {
            return Some("an unsalted or crypt(3) LDAP hash");
        }
    }
    if s.starts_with("$argon2d$") {
        return Some("an Argon2d hash");
    }
    if s.starts_with("$1$") || s.starts_with("$5$") || s.starts_with("$6$") || s.starts_with("$y$")
    {
        return Some("a crypt(3) hash (MD5, SHA-256, SHA-512 or yescrypt)");
    }
    None
}

/// Checks that `s` is a well-formed hash of a scheme sspr accepts, with costs it is willing to
/// pay at each sign-in; the error says what is wrong.
pub fn check(s: &str) -> Result<Scheme, String> {
    let Some(scheme) = claimed(s) else {
        return Err("not a hash sspr recognises".into());
    };
    match scheme {
        Scheme::Argon2 => check_argon2(s)?,
        Scheme::Bcrypt => check_bcrypt(s)?,
        Scheme::Ssha1 | Scheme::Ssha256 | Scheme::Ssha512 => {
            ssha_parts(s, scheme).ok_or_else(|| {
                format!(
                    "the {} hash is not base64 of a {}-byte digest followed by a salt",
                    scheme.name(),
                    digest_len(scheme)
                )
            })?;
        }
    }
    Ok(scheme)
}

fn check_argon2(s: &str) -> Result<(), String> {
    let h =
        argon2::PasswordHash::new(s).map_err(|e| format!("the argon2 hash does not parse: {e}"))?;
    let p = argon2::Params::try_from(&h)
        .map_err(|e| format!("the argon2 hash has unusable parameters: {e}"))?;
    if h.hash.is_none() || h.salt.is_none() {
        return Err("the argon2 hash has no salt or no output".into());
    }
    if p.m_cost() > MAX_ARGON2_M_KIB || p.t_cost() > MAX_ARGON2_T || p.p_cost() > MAX_ARGON2_P {
        return Err(format!(
            "the argon2 hash costs more than sspr will verify at each sign-in (m={}, t={}, p={}; at most m={MAX_ARGON2_M_KIB}, t={MAX_ARGON2_T}, p={MAX_ARGON2_P})",
            p.m_cost(),
            p.t_cost(),
            p.p_cost()
        ));
    }
    Ok(())
}

fn check_bcrypt(s: &str) -> Result<(), String> {
    // $2b$12$ + 22 characters of salt + 31 of hash, in bcrypt's own base64 alphabet.
    let bad = || "a bcrypt hash is 60 characters: $2b$NN$ and 53 of [./A-Za-z0-9]".to_string();
    if s.len() != 60 || s.as_bytes().get(6) != Some(&b'$') {
        return Err(bad());
    }
    let cost: u32 = s.get(4..6).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    if !s[7..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Err(bad());
    }
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(format!(
            "the bcrypt cost {cost} is outside 4..={MAX_BCRYPT_COST} (sspr pays it at each sign-in until the hash is upgraded)"
        ));
    }
    Ok(())
}

fn digest_len(scheme: Scheme) -> usize {
    match scheme {
        Scheme::Ssha256 => 32,
        Scheme::Ssha512 => 64,
        _ => 20,
    }
}

/// The digest and the salt of a `{SSHA…}` value.
fn ssha_parts(s: &str, scheme: Scheme) -> Option<(Vec<u8>, Vec<u8>)> {
    let prefix = scheme.name().len();
    let raw = STANDARD.decode(s.get(prefix..)?.trim()).ok()?;
    let n = digest_len(scheme);
    if raw.len() <= n {
        return None;
    }
    let (digest, salt) = raw.split_at(n);
    Some((digest.to_vec(), salt.to_vec()))
}

/// Whether `secret` matches a bcrypt or `{SSHA…}` hash; `None` when `stored` is not one of
/// those (an Argon2 hash, verified by the pool, or something malformed).
pub fn verify_foreign(secret: &[u8], stored: &str) -> Option<bool> {
    let scheme = claimed(stored)?;
    Some(match scheme {
        Scheme::Argon2 => return None,
        // The bcrypt crate compares in constant time. A malformed or too costly hash never
        // matches: the cost check keeps a stored cost of 31 from stalling a core.
        Scheme::Bcrypt => {
            check_bcrypt(stored).is_ok() && bcrypt::verify(secret, stored).unwrap_or(false)
        }
        Scheme::Ssha1 | Scheme::Ssha256 | Scheme::Ssha512 => {
            let Some((want, salt)) = ssha_parts(stored, scheme) else {
                return Some(false);
            };
            let got = match scheme {
                Scheme::Ssha256 => Sha256::new()
                    .chain_update(secret)
                    .chain_update(&salt)
                    .finalize()
                    .to_vec(),
                Scheme::Ssha512 => Sha512::new()
                    .chain_update(secret)
                    .chain_update(&salt)
                    .finalize()
                    .to_vec(),
                _ => Sha1::new()
                    .chain_update(secret)
                    .chain_update(&salt)
                    .finalize()
                    .to_vec(),
            };
            got.ct_eq(&want).into()
        }
    })
}

/// `{SSHA}` of `secret` with `salt`, as `slappasswd -h {SSHA}` writes it. For tests and the
/// import benchmark's generator.
pub fn ssha1(secret: &str, salt: &[u8]) -> String {
    let mut raw = Sha1::new()
        .chain_update(secret.as_bytes())
        .chain_update(salt)
        .finalize()
        .to_vec();
    raw.extend_from_slice(salt);
    format!("{{SSHA}}{}", STANDARD.encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssha_from_slappasswd_verifies() {
        // `slappasswd -h {SSHA} -s secret` output is SHA-1(secret ‖ salt) ‖ salt in base64.
        let h = ssha1("secret", b"abcd");
        assert_eq!(check(&h), Ok(Scheme::Ssha1));
        assert_eq!(verify_foreign(b"secret", &h), Some(true));
        assert_eq!(verify_foreign(b"Secret", &h), Some(false));
        let lower = h.replacen("{SSHA}", "{ssha}", 1);
        assert_eq!(verify_foreign(b"secret", &lower), Some(true));
    }

    #[test]
    fn ssha512_verifies() {
        let mut raw = Sha512::new()
            .chain_update(b"pw")
            .chain_update(b"saltsalt")
            .finalize()
            .to_vec();
        raw.extend_from_slice(b"saltsalt");
        let h = format!("{{SSHA512}}{}", STANDARD.encode(raw));
        assert_eq!(check(&h), Ok(Scheme::Ssha512));
        assert_eq!(verify_foreign(b"pw", &h), Some(true));
        assert_eq!(verify_foreign(b"px", &h), Some(false));
    }

    #[test]
    fn bcrypt_verifies_and_costs_are_bounded() {
        let h = bcrypt::hash("hunter2", 4).unwrap();
        assert_eq!(check(&h), Ok(Scheme::Bcrypt));
        assert_eq!(verify_foreign(b"hunter2", &h), Some(true));
        assert_eq!(verify_foreign(b"hunter3", &h), Some(false));
        let y = h.replacen("$2b$", "$2y$", 1);
        assert_eq!(verify_foreign(b"hunter2", &y), Some(true));
        let costly = h.replacen("$04$", "$31$", 1);
        assert!(check(&costly).is_err());
        assert_eq!(verify_foreign(b"hunter2", &costly), Some(false));
    }

    #[test]
    fn malformed_and_foreign_values_are_refused() {
        assert!(check("$2b$12$short").is_err());
        assert!(check("{SSHA}not base64!").is_err());
        assert!(check("{SSHA}AAAA").is_err());
        assert!(
            check("$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA").is_err()
        );
        assert_eq!(claimed("correct horse"), None);
        assert!(unsupported("{SHA}abc").is_some());
        assert!(unsupported("$6$salt$hash").is_some());
    }
}
