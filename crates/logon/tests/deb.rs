//! The Debian package on a real system: it installs without asking anything, puts
//! pam_sspr.so first in /etc/pam.d/common-auth, and a purge leaves /etc/pam.d exactly as it
//! was and /etc/sspr/logon.toml gone.
//!
//! It installs and purges a package as root, so it runs only when `SSPR_TEST_SYSTEM=1` (on a
//! disposable Debian machine or container) and otherwise skips. Needs root, apt-get,
//! libpam-runtime (pam-auth-update) and, unless `SSPR_DEB` names a prebuilt .deb (absolute,
//! or relative to the workspace root), cargo-deb for `scripts/build-deb`.
//!
//! ```text
//! SSPR_TEST_SYSTEM=1 cargo test -p sspr-logon --test deb -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::debian::{PurgeOnPanic, apt_get, build_deb, dpkg_status, run, workspace_root};

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

const PACKAGE: &str = "sspr-logon";
const PAM_D: &str = "/etc/pam.d";
const CONFIG: &str = "/etc/sspr/logon.toml";
const MODULE: &str = "/usr/lib/x86_64-linux-gnu/security/pam_sspr.so";
const PROFILE: &str = "/usr/share/pam-configs/sspr";
const CLIENT: &str = "/usr/bin/sspr-logon";

#[test]
fn the_package_installs_first_in_the_pam_stack_and_purges_without_a_trace() {
    if !common::debian::system_tests_allowed("the sspr-logon package (rewriting /etc/pam.d)") {
        return;
    }
    let root = workspace_root();

    eprintln!("== 1. the package");
    let deb = match std::env::var_os("SSPR_DEB") {
        Some(p) => root.join(p),
        None => build_deb(PACKAGE, &[]),
    };
    let deb = fs::canonicalize(&deb).unwrap_or_else(|e| panic!("{}: {e}", deb.display()));
    eprintln!("{}", deb.display());
    let status = dpkg_status(PACKAGE);
    assert!(
        status.is_empty() || status == "not-installed",
        "{PACKAGE} is already on this system ({status}); purge it first (apt-get purge -y \
         {PACKAGE}) so that the snapshot of {PAM_D} is of a system without it"
    );

    eprintln!("== 2. snapshot of {PAM_D}");
    let before = snapshot(Path::new(PAM_D));
    eprintln!("{} files", before.len());

    eprintln!("== 3. apt-get install (noninteractive, stdin closed)");
    let _cleanup = PurgeOnPanic(PACKAGE);
    apt_get(&["install", "-y", &deb.to_string_lossy()]);
    assert!(
        common::debian::is_installed(PACKAGE),
        "{PACKAGE} is not installed after apt-get install"
    );

    eprintln!("== 4. pam_sspr.so is first in common-auth; the files are in place");
    let after_install = snapshot(Path::new(PAM_D));
    eprint!("{}", diff_snapshots(&before, &after_install));
    let changed: Vec<&String> = changed_files(&before, &after_install);
    assert_eq!(
        changed,
        ["common-auth"],
        "installing should change common-auth and nothing else in {PAM_D} (if nothing \
         changed, pam-auth-update found local edits: see its output above):\n{}",
        diff_snapshots(&before, &after_install)
    );
    let common_auth = String::from_utf8_lossy(&after_install["common-auth"]).into_owned();
    check_common_auth(&common_auth);
    for (path, mode) in [
        (MODULE, 0o644),
        (CLIENT, 0o755),
        (PROFILE, 0o644),
        (CONFIG, 0o644),
    ] {
        let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{path} after install: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}: mode");
    }
    let packaged = fs::read_to_string(root.join("crates/logon/debian/logon.toml")).unwrap();
    assert_eq!(
        fs::read_to_string(CONFIG).unwrap(),
        packaged,
        "{CONFIG} is not the packaged one"
    );
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains(CONFIG),
        "{CONFIG} is not a conffile: {}",
        String::from_utf8_lossy(&conffiles.stdout)
    );
    // The packaged config leaves the agent off: the client says server_url is unset (exit 64).
    let check = Command::new(CLIENT)
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.code() == Some(64) && said.contains("sets no server_url"),
        "`sspr-logon check` on the packaged config: {:?} {said}",
        check.status
    );

    eprintln!("== 5. apt-get purge");
    apt_get(&["purge", "-y", PACKAGE]);
    assert!(
        !common::debian::is_installed(PACKAGE),
        "{PACKAGE} is still installed after apt-get purge"
    );

    eprintln!("== 6. {PAM_D} is as it was; {CONFIG} is gone");
    let after_purge = snapshot(Path::new(PAM_D));
    assert!(
        before == after_purge,
        "{PAM_D} differs from the snapshot taken before the install:\n{}",
        diff_snapshots(&before, &after_purge)
    );
    for path in [CONFIG, MODULE, PROFILE, CLIENT] {
        assert!(
            !Path::new(path).exists(),
            "{path} is still there after the purge"
        );
    }
    eprintln!("ok");
}

/// The auth stack pam-auth-update wrote: pam_sspr.so first and inert, the password module
/// after it taking the password from PAM_AUTHTOK, and every `success=N` jump still landing
/// on the pam_permit.so line after pam_deny.so, as in Debian's stock stack.
fn check_common_auth(text: &str) {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("auth"))
        .collect();
    let fields = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let first = lines.first().map(|l| fields(l)).unwrap_or_default();
    assert_eq!(
        first,
        ["auth", "[success=ok", "default=ignore]", "pam_sspr.so"],
        "pam_sspr.so is not the first auth line of common-auth:\n{text}"
    );
    let unix = lines.iter().find(|l| l.contains("pam_unix.so"));
    let unix = unix.unwrap_or_else(|| panic!("no pam_unix.so in common-auth:\n{text}"));
    assert!(
        unix.contains("try_first_pass"),
        "pam_unix.so lacks try_first_pass:\n{text}"
    );
    let deny = lines.iter().position(|l| l.contains("pam_deny.so"));
    let deny = deny.unwrap_or_else(|| panic!("no pam_deny.so in common-auth:\n{text}"));
    assert!(
        lines
            .get(deny + 1)
            .is_some_and(|l| l.contains("pam_permit.so")),
        "pam_deny.so is not followed by pam_permit.so:\n{text}"
    );
    for (i, line) in lines.iter().enumerate().take(deny) {
        let jump = line
            .split(['[', ']', ' ', '\t'])
            .find_map(|w| w.strip_prefix("success="))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(n) = jump {
            assert_eq!(
                i + n + 1,
                deny + 1,
                "`{line}` jumps past {n} lines, not onto pam_permit.so:\n{text}"
            );
        }
    }
}

/// Every file under `dir` (recursively), by relative path: its bytes, or for a symlink its
/// target prefixed with "-> ".
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else if meta.is_dir() {
                walk(base, &path, out);
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Names of the files added, removed or changed between two snapshots.
fn changed_files<'a>(
    a: &'a BTreeMap<String, Vec<u8>>,
    b: &'a BTreeMap<String, Vec<u8>>,
) -> Vec<&'a String> {
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names.retain(|n| a.get(*n) != b.get(*n));
    names
}

/// A readable account of the differences: added and removed files, and a line diff of each
/// changed one.
fn diff_snapshots(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> String {
    let mut out = String::new();
    for name in changed_files(a, b) {
        match (a.get(name), b.get(name)) {
            (Some(_), None) => out.push_str(&format!("removed: {name}\n")),
            (None, Some(_)) => out.push_str(&format!("added: {name}\n")),
            (Some(old), Some(new)) => {
                out.push_str(&format!("--- {name} (before)\n+++ {name} (after)\n"));
                out.push_str(&line_diff(
                    &String::from_utf8_lossy(old),
                    &String::from_utf8_lossy(new),
                ));
            }
            (None, None) => {}
        }
    }
    if out.is_empty() {
        out.push_str("(no differences)\n");
    }
    out
}

/// The lines of `old` and `new` marked " ", "-" or "+", from their longest common subsequence
/// (the files are small).
fn line_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {}\n", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push_str(&format!("+ {}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("- {}\n", a[i]));
            i += 1;
        }
    }
    out
}
