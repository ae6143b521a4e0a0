//! The pure heart of sspr: what a policy allows, which passwords are acceptable, how a reset
//! flow advances, which limits apply and which events are audited.
//!
//! Nothing here does I/O. Time comes through [`Clock`] and randomness through [`Random`], so
//! every rule can be tested at its boundaries without sleeping or guessing.

pub mod audit;
pub mod clock;
pub mod expiry;
pub mod flow;
pub mod identity;
pub mod limits;
pub mod mask;
pub mod method;
pub mod password;
pub mod policy;
pub mod questions;
pub mod random;
pub mod recovery;

pub use audit::{Activity, AuditEvent, ClientType, Outcome};
pub use clock::{Clock, ManualClock, SystemClock};
pub use flow::{FlowKind, FlowState};
pub use limits::{Limits, Window};
pub use method::Method;
pub use password::{DirectoryRule, PasswordContext, PasswordRules, Rejection};
pub use policy::{Policy, PolicyProblem, Scope};
pub use random::{OsRandom, Random};
