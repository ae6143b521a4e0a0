//! The `sspr` binary's library half: configuration, the composition root and the commands,
//! so that integration tests start exactly what `sspr serve` starts.

pub mod audit;
pub mod commands;
pub mod config;
pub mod import;
pub mod invite;
pub mod reminders;
pub mod runtime;
pub mod serve;
