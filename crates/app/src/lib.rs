//! sspr's application layer: the reset, unlock, registration and admin services, written
//! against small traits ([`ports::Store`], [`ports::Directory`]) that the edges implement.
//!
//! Reading order for a newcomer: `ports` (what the outside world must provide), `app` (the
//! wiring), then `reset` and `register` (the flows), `finish` (the directory write and its
//! recovery after a crash), `admin`.

pub mod admin;
pub mod app;
pub mod audit_chain;
pub mod breached;
pub mod change;
pub mod crypto;
pub mod error;
pub mod finish;
pub mod foreign_hash;
pub mod insights;
pub mod invite;
pub mod messages;
pub mod metrics;
pub mod passkey;
pub mod ports;
pub mod pow;
pub mod recovery;
pub mod register;
pub mod reminders;
pub mod reset;
pub mod totp;

pub use app::{App, RequestCtx, Settings};
pub use error::{AppError, ErrorKind};
pub use messages::Lang;

/// Uppercase hex, as the Pwned Passwords files write SHA-1 hashes.
pub(crate) fn crypto_hex_upper(b: &[u8]) -> String {
    sspr_domain::random::hex(b).to_ascii_uppercase()
}
