//! Authenticator-app codes (RFC 6238: SHA-1, 6 digits, 30 s), one step of clock skew allowed.

use totp_rs::{Algorithm, TOTP};

pub const STEP: u64 = 30;

fn totp(secret: &[u8], issuer: &str, account: &str) -> Option<TOTP> {
    // `new_unchecked`: account names may hold `:` or `@`; the URI is escaped by the crate.
    Some(TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        STEP,
        secret.to_vec(),
        Some(issuer.to_string()),
        account.to_string(),
    ))
}

/// The time step the code belongs to (now, one before or one after), if any.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let t = totp(secret, "sspr", "user")?;
    let now = u64::try_from(now).ok()?;
    let current = now / STEP;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .find(|s| {
            let c = t.generate(s * STEP);
            subtle::ConstantTimeEq::ct_eq(c.as_bytes(), code.as_bytes()).into()
        })
        .and_then(|s| i64::try_from(s).ok())
}

/// The code for `now` (for tests and the demo).
pub fn code_at(secret: &[u8], now: i64) -> String {
    totp(secret, "sspr", "user")
        .map(|t| t.generate(u64::try_from(now).unwrap_or(0)))
        .unwrap_or_default()
}

/// `otpauth://totp/Issuer:account?secret=…&issuer=…` for the QR code.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    totp(secret, issuer, account)
        .map(|t| t.get_url())
        .unwrap_or_default()
}

pub fn base32(secret: &[u8]) -> String {
    base32::encode(base32::Alphabet::Rfc4648 { padding: false }, secret)
}

/// The otpauth URI as an SVG QR code.
pub fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1 seed, truncated to 6 digits.
    const SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_vectors() {
        assert_eq!(code_at(SEED, 59), "287082");
        assert_eq!(code_at(SEED, 1_111_111_109), "081804");
        assert_eq!(code_at(SEED, 2_000_000_000), "279037");
    }

    #[test]
    fn one_step_of_skew_either_side() {
        let now = 1_700_000_015;
        let step = now / 30;
        assert_eq!(matching_step(SEED, &code_at(SEED, now), now), Some(step));
        assert_eq!(
            matching_step(SEED, &code_at(SEED, now - 30), now),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(SEED, &code_at(SEED, now + 30), now),
            Some(step + 1)
        );
        assert_eq!(matching_step(SEED, &code_at(SEED, now - 60), now), None);
    }

    #[test]
    fn uri_and_qr() {
        let uri = otpauth_uri(SEED, "Contoso", "alice@contoso.test");
        assert!(
            uri.starts_with("otpauth://totp/Contoso:alice%40contoso.test?"),
            "{uri}"
        );
        assert!(qr_svg(&uri).contains("<svg"));
    }
}
