//! sspr's store: every durable thing (flows, codes, counters, registrations, outbox, audit,
//! policy) in SQL, behind [`sspr_app::ports::Store`]. SQLite is the embedded default;
//! PostgreSQL ([`PgStore`]) serves several instances sharing one database. Both keep the same
//! schema meaning and pass the same contract tests (`tests/contract.rs`).
//!
//! Security-relevant updates are conditional (`… WHERE used = 0 AND …`) and report whether
//! they applied, so single use holds however many requests race.

mod audit_sql;
mod builtin;
mod ceremony_sql;
mod codec;
pub mod copy;
mod export_sql;
mod finish_sql;
mod postgres;
mod purge_sql;
mod recovery_sql;
mod reminder_sql;
mod skip_sql;
mod sqlite;
mod sqlite_conn;
mod step_sql;
mod user_import_sql;

pub use builtin::{BuiltinDirectory, NewUser, UserRow};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use sspr_app::ports::UserFlag as Flag;
