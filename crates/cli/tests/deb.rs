//! The server's Debian package on a real system: it installs without asking anything, makes
//! the `sspr` system user and `/var/lib/sspr`, ships a unit that `systemd-analyze verify`
//! accepts and that is enabled; the server then runs as the unit would run it (as `sspr`, in
//! a file system read-only outside its state directory, with the unit's environment, umask and
//! file limit) and answers; the CLI finds the installed configuration, refuses root on the
//! service's files and works as `sspr`; an upgrade keeps the data and an edited
//! configuration; a purge leaves nothing but the system user.
//!
//! systemd is not PID 1 here (a container), so the unit itself is not started: its settings
//! are applied by hand, with the closest tools (setpriv, unshare, prlimit).
//!
//! Runs only when `SSPR_TEST_SYSTEM=1` (on a disposable Debian machine) and otherwise skips.
//! Needs root, apt-get, cargo-deb, systemd (for systemd-analyze), curl, util-linux.
//!
//! ```text
//! SSPR_TEST_SYSTEM=1 cargo test -p sspr --test deb -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../logon/tests/common/debian.rs"]
mod debian;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use debian::{PurgeOnPanic, apt_get, build_deb, dpkg_status, is_installed, run};

const PACKAGE: &str = "sspr";
const UNIT: &str = "/lib/systemd/system/sspr.service";
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants/sspr.service";
const CONFIG: &str = "/etc/sspr/sspr.toml";
const STATE: &str = "/var/lib/sspr";
const BINARY: &str = "/usr/bin/sspr";
const HEALTH: &str = "https://localhost:8443/healthz";

#[test]
fn the_server_package_installs_runs_as_its_unit_upgrades_and_purges() {
    if !debian::system_tests_allowed("the sspr server package (a system user, /etc/sspr)") {
        return;
    }
    eprintln!("== 1. the packages: this version and a later revision of it");
    // cargo-deb deletes a package's older .deb when it builds another: keep a copy of each.
    let kept = std::env::temp_dir().join(format!("sspr-deb-test-{}", std::process::id()));
    fs::create_dir_all(&kept).unwrap();
    let keep = |deb: std::path::PathBuf| {
        let copy = kept.join(deb.file_name().unwrap());
        fs::copy(&deb, &copy).unwrap();
        copy
    };
    let deb = keep(build_deb(PACKAGE, &[]));
    let upgrade = keep(build_deb(PACKAGE, &["--deb-revision", "99"]));
    eprintln!("{}\n{}", deb.display(), upgrade.display());
    let status = dpkg_status(PACKAGE);
    assert!(
        status.is_empty() || status == "not-installed",
        "{PACKAGE} is already on this system ({status}); purge it first (apt-get purge -y {PACKAGE})"
    );
    assert!(
        std::net::TcpListener::bind("127.0.0.1:8443").is_ok(),
        "port 8443, which the packaged configuration listens on, is taken"
    );

    eprintln!("== 2. apt-get install (noninteractive, stdin closed)");
    let _cleanup = PurgeOnPanic(PACKAGE);
    apt_get(&["install", "-y", &deb.to_string_lossy()]);
    assert!(is_installed(PACKAGE), "{PACKAGE} is not installed");
    let (uid, gid, shell) = passwd_entry("sspr").expect("no sspr user after install");
    assert!(
        uid < 1000 && shell.ends_with("nologin"),
        "sspr is not a system user without a login: uid {uid}, shell {shell}"
    );
    for (path, mode, owner) in [
        (BINARY, 0o755, (0, 0)),
        (UNIT, 0o644, (0, 0)),
        (CONFIG, 0o640, (0, gid)),
        (STATE, 0o750, (uid, gid)),
    ] {
        let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{path} after install: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}: mode");
        assert_eq!((meta.uid(), meta.gid()), owner, "{path}: owner");
    }
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]));
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains(CONFIG),
        "{CONFIG} is not a conffile"
    );
    assert_eq!(
        fs::read_link(WANTS).ok().as_deref(),
        Some(Path::new(UNIT)),
        "the unit is not enabled (no {WANTS} → {UNIT})"
    );

    eprintln!("== 3. systemd-analyze verify and security");
    let verify = Command::new("systemd-analyze")
        .args(["verify", UNIT])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr).into_owned();
    eprint!("{said}");
    let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("sspr")).collect();
    assert!(
        verify.status.success() && about_ours.is_empty(),
        "systemd-analyze verify {UNIT}: {:?}\n{said}",
        verify.status
    );
    let security = run(Command::new("systemd-analyze").args([
        "security",
        "--offline=yes",
        "--no-pager",
        UNIT,
    ]));
    let report = String::from_utf8_lossy(&security.stdout).into_owned();
    let exposure = overall_exposure(&report);
    eprintln!("systemd-analyze security: overall exposure {exposure}");
    assert!(
        exposure <= 2.0,
        "the unit's exposure is {exposure} (systemd calls under 2 'OK'):\n{report}"
    );

    eprintln!("== 4. the server, run as the unit runs it");
    let unit = fs::read_to_string(UNIT).unwrap();
    let mut server = ServerAsUnit::start(&unit);
    wait_for_health(&mut server);
    let log = server.log();
    assert!(
        log.contains(&format!("config: {CONFIG}, data: {STATE}")),
        "the startup message does not name the installed configuration:\n{log}"
    );
    assert!(
        !log.contains("Demo user") && !log.contains("demo-admin"),
        "demo accounts on a packaged install:\n{log}"
    );
    for entry in walk(Path::new(STATE)) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (uid, gid),
            "{} is not owned by sspr",
            entry.display()
        );
    }
    let key = fs::metadata(format!("{STATE}/secret.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600, "secret.key mode");

    eprintln!(
        "== 5. the CLI: root is refused on the service's files, sspr works, others cannot read"
    );
    let root = cli_as(None, &["users", "list"], "");
    let said = String::from_utf8_lossy(&root.stderr);
    assert!(
        !root.status.success() && said.contains("sudo -u sspr sspr"),
        "root running the CLI on {STATE}: {:?} {said}",
        root.status
    );
    let added = cli_as(
        Some("sspr"),
        &[
            "users",
            "add",
            "--admin",
            "alice",
            "--email",
            "alice@example.org",
        ],
        "a long and unguessable first password\n",
    );
    assert!(
        added.status.success(),
        "sudo -u sspr sspr users add --admin alice: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let listed = cli_as(Some("sspr"), &["users", "list", "--format", "json"], "");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("\"alice\""),
        "alice is not listed: {}",
        String::from_utf8_lossy(&listed.stdout)
    );
    let nobody = cli_as(Some("nobody"), &["users", "list"], "");
    let said = String::from_utf8_lossy(&nobody.stderr);
    assert!(
        !nobody.status.success()
            && said.contains("cannot read the config file /etc/sspr/sspr.toml"),
        "another user running the CLI: {:?} {said}",
        nobody.status
    );
    // Making a key reads no configuration: anyone may, e.g. for metrics.token_file.
    let key = cli_as(Some("nobody"), &["key"], "");
    assert!(
        key.status.success() && String::from_utf8_lossy(&key.stdout).trim().len() == 64,
        "sspr key as nobody: {}",
        String::from_utf8_lossy(&key.stderr)
    );
    server.stop();

    eprintln!("== 6. upgrade: the data and an edited configuration are kept");
    let edited = fs::read_to_string(CONFIG)
        .unwrap()
        .replace("organisation = \"sspr\"", "organisation = \"Example Org\"");
    assert!(
        edited.contains("Example Org"),
        "the packaged config has no organisation line"
    );
    fs::write(CONFIG, &edited).unwrap();
    apt_get(&["install", "-y", &upgrade.to_string_lossy()]);
    let version = run(Command::new("dpkg-query").args(["-W", "-f=${Version}", PACKAGE]));
    assert!(
        String::from_utf8_lossy(&version.stdout).ends_with("-99"),
        "not upgraded: {}",
        String::from_utf8_lossy(&version.stdout)
    );
    assert_eq!(
        fs::read_to_string(CONFIG).unwrap(),
        edited,
        "the edit was lost"
    );
    let listed = cli_as(Some("sspr"), &["users", "list", "--format", "json"], "");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("\"alice\""),
        "alice is gone after the upgrade"
    );
    assert!(
        fs::read_link(WANTS).is_ok(),
        "the upgrade disabled the unit"
    );

    eprintln!("== 7. apt-get purge");
    apt_get(&["purge", "-y", PACKAGE]);
    assert!(!is_installed(PACKAGE), "{PACKAGE} is still installed");
    for path in [CONFIG, UNIT, WANTS, STATE, BINARY] {
        assert!(
            fs::symlink_metadata(path).is_err(),
            "{path} is still there after the purge"
        );
    }
    assert!(
        passwd_entry("sspr").is_some(),
        "the system user was removed (Debian keeps system users: files it owned may remain)"
    );
    let _ = fs::remove_dir_all(&kept);
    eprintln!("ok");
}

/// uid, gid and shell of a local account.
fn passwd_entry(name: &str) -> Option<(u32, u32, String)> {
    fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name) && f.len() >= 7)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, f[6].to_owned())))?
        })
}

/// "→ Overall exposure level for sspr.service: 1.9 OK 🙂"
fn overall_exposure(report: &str) -> f64 {
    report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"))
}

/// `Key=value` lines of the unit's [Service] section, in order (a key may repeat).
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

/// The server started with what the unit says: its user and group with no capabilities and
/// no new privileges, only its environment, its umask and file limit, its working directory
/// (/), and the file system read-only but for its state directory (ProtectSystem=strict with
/// StateDirectory=). Logs to a file, as journald would keep them.
struct ServerAsUnit {
    child: Child,
    log: std::path::PathBuf,
}

impl ServerAsUnit {
    fn start(unit: &str) -> ServerAsUnit {
        let settings = service_settings(unit);
        let one = |key: &str| {
            settings
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("the unit has no {key}="))
        };
        let (user, group, exec) = (one("User"), one("Group"), one("ExecStart"));
        let umask = one("UMask");
        // systemd would raise the limit; a container's own hard limit may be lower, and
        // without CAP_SYS_RESOURCE it cannot be passed.
        let nofile = one("LimitNOFILE")
            .parse::<u64>()
            .unwrap()
            .min(hard_nofile_limit());
        assert_eq!(one("ProtectSystem"), "strict");
        assert_eq!(one("StateDirectory"), "sspr");
        let env: Vec<String> = settings
            .iter()
            .filter(|(k, _)| k == "Environment")
            .map(|(_, v)| v.clone())
            .collect();
        let log = std::env::temp_dir().join(format!("sspr-deb-test-{}.log", std::process::id()));
        let out = fs::File::create(&log).unwrap();
        let script = format!(
            "mount --bind {STATE} {STATE} && mount -o remount,bind,ro / && cd / && umask {umask} \
             && exec prlimit --nofile={nofile} setpriv --reuid={user} --regid={group} \
             --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all \
             env -i PATH=/usr/bin:/bin {} {exec}",
            env.join(" ")
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        ServerAsUnit { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerAsUnit {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// This process's hard open-file limit, from /proc/self/limits.
fn hard_nofile_limit() -> u64 {
    fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap_or(1024)
}

fn wait_for_health(server: &mut ServerAsUnit) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ca = format!("{STATE}/tls/ca.pem");
        if Path::new(&ca).exists() {
            let curl = Command::new("curl")
                .args(["-sS", "--max-time", "5", "--cacert", &ca, HEALTH])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if curl.status.success() {
                return;
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "the server run as the unit exited ({status}):\n{}",
                server.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the server run as the unit did not answer {HEALTH} within 60 s:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The installed CLI with no --config (it must find the installed one), as `user` (runuser)
/// or as root, `stdin` on its standard input.
fn cli_as(user: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", BINARY]);
            c
        }
        None => Command::new(BINARY),
    };
    cmd.args(args)
        .env_remove("SSPR_CONFIG")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Every file and directory under `dir`, itself included.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
