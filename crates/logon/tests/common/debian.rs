//! What both package tests (the logon agent's here, the server's in crates/cli/tests/deb.rs)
//! need to build, install and purge a .deb as an unattended run would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Whether system tests may run; otherwise says why the test skips.
pub fn system_tests_allowed(what: &str) -> bool {
    if std::env::var("SSPR_TEST_SYSTEM").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "skipped: this test installs and purges {what} as root; set SSPR_TEST_SYSTEM=1 to run \
         it on a disposable Debian machine"
    );
    false
}

/// The workspace's root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `scripts/build-deb PACKAGE EXTRA...`, which prints the .deb's path as its only line on
/// stdout. Without the variables cargo sets for this test (CARGO_MANIFEST_DIR, CARGO_PKG_*...):
/// some build scripts (ring's) watch them, and the release build would redo them every time.
pub fn build_deb(package: &str, extra: &[&str]) -> PathBuf {
    let root = workspace_root();
    let mut cmd = Command::new(root.join("scripts/build-deb"));
    cmd.arg(package).args(extra);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_test = ["CARGO_PKG_", "CARGO_BIN_"]
            .iter()
            .any(|p| name.starts_with(p))
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&&*name);
        if set_by_cargo_test {
            cmd.env_remove(&*name);
        }
    }
    let out = run(cmd.stderr(Stdio::inherit()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rfind(|l| l.ends_with(".deb"));
    let deb = PathBuf::from(
        line.unwrap_or_else(|| panic!("scripts/build-deb printed no .deb: {stdout}")),
    );
    std::fs::canonicalize(root.join(&deb)).unwrap_or_else(|e| panic!("{}: {e}", deb.display()))
}

/// dpkg's state of the package ("installed", "config-files"...); empty when dpkg never saw it.
pub fn dpkg_status(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

pub fn is_installed(package: &str) -> bool {
    dpkg_status(package) == "installed"
}

/// apt-get as an unattended run would call it: no debconf frontend, nothing on stdin, so any
/// question would fail the run instead of hanging it.
pub fn apt_get(args: &[&str]) {
    let out = run(Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("DEBCONF_NONINTERACTIVE_SEEN", "true")
        .env_remove("DEBIAN_PRIORITY"));
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `cmd` with stdin closed; panics with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// If an assertion fails after the install, purge the package so a failed run does not leave
/// it on the system (pam_sspr.so in the PAM stack, a service's files in /etc).
pub struct PurgeOnPanic(pub &'static str);

impl Drop for PurgeOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() && !matches!(dpkg_status(self.0).as_str(), "" | "not-installed")
        {
            eprintln!("test failed: purging {}", self.0);
            let _ = Command::new("apt-get")
                .args(["purge", "-y", self.0])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status();
        }
    }
}
