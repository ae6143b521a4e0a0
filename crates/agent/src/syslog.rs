//! The machine's log: datagrams to the syslog socket (`/dev/log`, read by journald or rsyslog),
//! facility authpriv, as every PAM module logs. Unix only.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::journal::{Event, Journal};

pub struct Syslog {
    /// Opened at the first message: a normal login logs nothing and opens nothing.
    socket: OnceLock<Option<UnixDatagram>>,
    path: PathBuf,
    ident: &'static str,
    verbose: bool,
}

const AUTHPRIV: u8 = 10;
const WARNING: u8 = 4;
const INFO: u8 = 6;
const DEBUG: u8 = 7;

impl Syslog {
    /// Nothing is written when the socket is missing: logging must never stop a login.
    pub fn new(path: PathBuf, ident: &'static str, verbose: bool) -> Syslog {
        Syslog {
            socket: OnceLock::new(),
            path,
            ident,
            verbose,
        }
    }

    fn send(&self, severity: u8, text: &str) {
        // Non-blocking: a full journald queue drops the line rather than holding the login.
        let open = || {
            let s = UnixDatagram::unbound().ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        let Some(sock) = self.socket.get_or_init(open) else {
            return;
        };
        let line = format!(
            "<{}>{}[{}]: {}",
            AUTHPRIV * 8 + severity,
            self.ident,
            std::process::id(),
            text.replace(['\n', '\r'], " ")
        );
        let _ = sock.send_to(line.as_bytes(), &self.path);
    }
}

impl Journal for Syslog {
    fn event(&self, event: &Event) {
        let severity = match event {
            Event::ServerError { .. } | Event::ConfigError { .. } => WARNING,
            _ => INFO,
        };
        self.send(severity, &event.to_string());
    }

    fn detail(&self, text: &str) {
        if self.verbose {
            self.send(DEBUG, text);
        }
    }
}
