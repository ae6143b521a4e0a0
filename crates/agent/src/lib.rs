//! The logon agent's core, shared by `pam_sspr.so` and the `sspr-logon` terminal client.
//!
//! Everything a user sees at the login screen is decided here, behind two small traits so that
//! every branch is unit-tested with a scripted dialogue and a scripted server:
//! - [`Conversation`]: prompt, secret prompt, info, error (PAM's conversation, a terminal, or a
//!   future Windows credential provider);
//! - [`ResetApi`]: the server's flow API ([`HttpApi`] speaks it over HTTPS).
//!
//! [`login::password_prompt`] is the PAM entry: it asks for the password, recognises the reset
//! gesture and runs [`dialogue::run`]. Nothing here touches the network until the user asks for
//! a reset, and nothing here ever grants access: the outcome is at most a new password handed
//! to the rest of the login stack.

pub mod api;
pub mod change;
pub mod config;
pub mod conversation;
pub mod dialogue;
pub mod journal;
pub mod login;
pub mod screen;
#[cfg(unix)]
pub mod syslog;
pub mod text;
pub mod tls;

pub use api::{ApiFailure, HttpApi, ResetApi};
pub use config::{AfterReset, AgentConfig, ConfigError};
pub use conversation::{Cancelled, Conversation};
pub use dialogue::{Kind, Outcome};
pub use journal::{Event, Journal};
pub use text::Lang;
