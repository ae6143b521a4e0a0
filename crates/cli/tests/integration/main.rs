//! sspr end to end: the real server over real HTTPS, a real SQLite file, a real SMTP listener
//! (aiosmtpd) and a real HTTP server standing in for the SMS gateway. Time is a manual clock
//! shared with the server, so every expiry and window is tested at its boundary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod admin;
mod audit_log;
mod binary;
mod browser;
mod change;
mod chauthtok;
mod delivery;
mod enumeration;
mod faults;
mod faults_store;
mod input;
mod invite;
mod ldap;
mod limits;
mod logon;
mod machine;
mod metrics;
mod multi;
mod nslcd;
mod portal;
mod proofs;
mod recovery;
mod register;
mod reminders;
mod reset;
mod siem;
mod ssh;
mod sssd;
mod steps;
mod transport;
mod web;
mod widths;
