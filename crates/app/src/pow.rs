//! A self-hosted proof of work that a browser solves before it may start a flow: it costs a
//! person a fraction of a second once, and a script that sprays user IDs the same for every
//! try. No third-party CAPTCHA service sees the user.
//!
//! The challenge is stateless until it is spent: `v1.<issued>.<bits>.<nonce>.<mac>`, the MAC
//! under the server key. A solution is a decimal counter such that
//! `SHA-256(challenge ":" counter)` starts with `bits` zero bits. Each nonce is accepted once.

use sha2::{Digest, Sha256};
use sspr_domain::audit::{Activity, Outcome};
use sspr_domain::clock::UnixTime;
use sspr_domain::random::hex;

use crate::app::{App, RequestCtx};
use crate::error::AppError;
use crate::messages::Msg;

/// Starts without the browser check (JavaScript off), per client address and per hour, and
/// for everyone together: enough for people, too few to spray user IDs. The challenge is still
/// required, fresh and used once.
pub const NO_SCRIPT_PER_SOURCE: u32 = 5;
pub const NO_SCRIPT_TOTAL: u32 = 200;

/// How long a challenge may be held before it is solved and sent.
pub const CHALLENGE_TTL_SECS: i64 = 600;

/// Number of leading zero bits of a digest.
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut n = 0;
    for b in digest {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Whether `counter` solves `challenge` at `bits`.
pub fn solves(challenge: &str, counter: &str, bits: u8) -> bool {
    if counter.is_empty() || counter.len() > 20 || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let d = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(b":")
        .chain_update(counter.as_bytes())
        .finalize();
    leading_zero_bits(&d) >= u32::from(bits)
}

/// Finds a solution (for tests and the benchmark; browsers run `pow.js`).
pub fn solve(challenge: &str, bits: u8) -> String {
    let mut i: u64 = 0;
    loop {
        let c = i.to_string();
        if solves(challenge, &c, bits) {
            return c;
        }
        i += 1;
    }
}

/// The parts of a challenge whose MAC checked out.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub issued: UnixTime,
    pub bits: u8,
    pub nonce: String,
}

impl App {
    /// A fresh challenge at the configured difficulty, or `None` when the check is off.
    pub fn pow_challenge(&self) -> Option<String> {
        let bits = self.settings.pow_bits;
        if bits == 0 {
            return None;
        }
        let mut n = [0u8; 12];
        self.rng.fill(&mut n);
        let body = format!("v1.{}.{bits}.{}", self.now(), hex(&n));
        let mac = self.key.code_mac("pow", &body);
        Some(format!("{body}.{}", &mac[..mac.len().min(32)]))
    }

    /// Parses and authenticates a challenge.
    pub fn pow_parse(&self, challenge: &str) -> Option<Parsed> {
        use subtle::ConstantTimeEq;
        let (body, mac) = challenge.rsplit_once('.')?;
        let want = self.key.code_mac("pow", body);
        let want = want.get(..32)?;
        if !bool::from(want.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let mut it = body.split('.');
        if it.next()? != "v1" {
            return None;
        }
        let issued = it.next()?.parse().ok()?;
        let bits = it.next()?.parse().ok()?;
        let nonce = it.next()?.to_string();
        Some(Parsed {
            issued,
            bits,
            nonce,
        })
    }

    /// Checks a solved challenge and spends it. Off (`pow_bits = 0`): always passes.
    pub async fn pow_check(
        &self,
        ctx: &RequestCtx,
        challenge: &str,
        counter: &str,
    ) -> Result<(), AppError> {
        let want = self.settings.pow_bits;
        if want == 0 {
            return Ok(());
        }
        let now = self.now();
        let reason = match self.pow_parse(challenge) {
            None => "pow_invalid",
            Some(p) if p.bits < want => "pow_too_easy",
            Some(p) if p.issued > now + 60 || now - p.issued > CHALLENGE_TTL_SECS => "pow_expired",
            // No answer at all is a browser without JavaScript: the challenge is still spent,
            // and the start counts against a small quota instead of a solution.
            Some(p) if counter.trim().is_empty() => {
                if self.spend(&p.nonce, now).await? {
                    return self.no_script_quota(ctx, now).await;
                }
                "pow_reused"
            }
            Some(_) if !solves(challenge, counter, want) => "pow_unsolved",
            Some(p) => {
                if self.spend(&p.nonce, now).await? {
                    return Ok(());
                }
                "pow_reused"
            }
        };
        let mut ev = self.event(ctx, Activity::RequestRejected, Outcome::Failure);
        ev.reason = reason.into();
        Err(self
            .fail(ev, AppError::invalid(ctx.t(Msg::BrowserCheckFailed)))
            .await)
    }

    /// Marks a challenge's nonce used: `false` if it was used before.
    async fn spend(&self, nonce: &str, now: UnixTime) -> Result<bool, AppError> {
        Ok(self
            .store
            .hit_within(&format!("pow:{nonce}"), now, now - CHALLENGE_TTL_SECS, 1)
            .await?)
    }

    /// A start without the browser check, within the per-address and overall hourly quotas.
    async fn no_script_quota(&self, ctx: &RequestCtx, now: UnixTime) -> Result<(), AppError> {
        let hour = now - 3600;
        let source = format!("no-script:{}", ctx.ip);
        if self
            .store
            .hit_within(&source, now, hour, NO_SCRIPT_PER_SOURCE)
            .await?
            && self
                .store
                .hit_within("no-script", now, hour, NO_SCRIPT_TOTAL)
                .await?
        {
            return Ok(());
        }
        let mut ev = self.event(ctx, Activity::RateLimited, Outcome::Failure);
        ev.reason = "no_script_quota".into();
        let err = self.too_many(ctx, Msg::NoScriptQuota, 3600);
        Err(self.fail(ev, err).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_bits_are_counted_across_bytes() {
        assert_eq!(leading_zero_bits(&[0, 0, 0x0f]), 20);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0, 1]), 15);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn a_found_solution_solves_and_junk_does_not() {
        let c = "v1.1.8.abc.def";
        let s = solve(c, 8);
        assert!(solves(c, &s, 8));
        assert!(!solves(c, "", 8));
        assert!(!solves(c, "12a", 8));
        assert!(!solves(c, "-1", 8));
        assert!(!solves(c, &"9".repeat(21), 8));
    }
}
