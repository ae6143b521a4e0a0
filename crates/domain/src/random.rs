//! Randomness, injected. Production uses the OS CSPRNG; tests may script it.

/// A source of random bytes. Implementations used outside tests must be a CSPRNG.
pub trait Random: Send + Sync + 'static {
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG (`getrandom`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        // The kernel's CSPRNG does not fail once the system has booted. If it ever did, handing
        // out predictable codes would be worse than stopping, so the process stops.
        if getrandom::fill(buf).is_err() {
            std::process::abort();
        }
    }
}

/// A uniformly random decimal code of `digits` digits (leading zeros kept), without modulo bias.
pub fn numeric_code(rng: &dyn Random, digits: u8) -> String {
    let mut out = String::with_capacity(digits as usize);
    while out.len() < digits as usize {
        let mut b = [0u8; 1];
        rng.fill(&mut b);
        // 250 is the largest multiple of 10 below 256: reject the rest to stay uniform.
        if b[0] < 250 {
            out.push(char::from(b'0' + b[0] % 10));
        }
    }
    out
}

/// 128 random bits, URL-safe, for flow, session and admin tokens.
pub fn token(rng: &dyn Random) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    hex(&b)
}

/// A short code a user can read out to the helpdesk; it finds the audit event of an error.
pub fn support_code(rng: &dyn Random) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 10];
    rng.fill(&mut b);
    let s: String = b
        .iter()
        .map(|x| char::from(ALPHABET[(*x as usize) % 32]))
        .collect();
    format!("{}-{}", &s[..5], &s[5..])
}

pub fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(H[(x >> 4) as usize]));
        s.push(char::from(H[(x & 15) as usize]));
    }
    s
}

/// A deterministic generator for tests (xorshift); never use for secrets.
#[derive(Debug)]
pub struct SeededRandom(std::sync::Mutex<u64>);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        Self(std::sync::Mutex::new(seed.max(1)))
    }
}

impl Random for SeededRandom {
    fn fill(&self, buf: &mut [u8]) {
        let mut s = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for b in buf {
            *s ^= *s << 13;
            *s ^= *s >> 7;
            *s ^= *s << 17;
            *b = (*s >> 24) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_right_shape_and_keep_leading_zeros() {
        let r = OsRandom;
        let mut saw_leading_zero = false;
        for _ in 0..2000 {
            let c = numeric_code(&r, 6);
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
            saw_leading_zero |= c.starts_with('0');
        }
        assert!(saw_leading_zero);
    }

    #[test]
    fn digits_are_roughly_uniform() {
        let r = OsRandom;
        let mut counts = [0u32; 10];
        for _ in 0..5000 {
            for b in numeric_code(&r, 8).bytes() {
                counts[(b - b'0') as usize] += 1;
            }
        }
        // 40 000 digits: each expected 4 000; a biased generator would skew 0–5 by ~2.4 %.
        for c in counts {
            assert!((3700..4300).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn tokens_carry_128_bits() {
        let t = token(&OsRandom);
        assert_eq!(t.len(), 32);
        assert_ne!(t, token(&OsRandom));
    }

    #[test]
    fn support_codes_are_readable() {
        let s = support_code(&SeededRandom::new(7));
        assert_eq!(s.len(), 11);
        assert!(!s.contains('0') && !s.contains('O') && !s.contains('1'));
    }
}
