//! sspr's store: every durable thing (flows, codes, counters, registrations, outbox, audit,
//! policy) in SQL, behind [`sspr_app::ports::Store`]. SQLite is the embedded default; the SQL
//! is kept portable so a PostgreSQL implementation can share its meaning.
//!
//! Security-relevant updates are conditional (`… WHERE used = 0 AND …`) and report whether
//! they applied, so single use holds however many requests race.

mod builtin;
mod sqlite;

pub use builtin::{BuiltinDirectory, Flag, NewUser, UserRow};
pub use sqlite::SqliteStore;
