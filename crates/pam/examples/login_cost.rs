//! What `pam_sspr.so` adds to a normal login (the user types a password, not the gesture).
//! A benchmark, not a test: it prints Markdown tables and asserts only its sanity checks.
//!
//! ```text
//! cargo build --release -p pam-sspr
//! cargo run --release -p pam-sspr --example login_cost [-- --iterations 2000 --cold 20]
//! ```
//!
//! Real libpam runs in-process (pam_start, pam_authenticate, pam_end) under pam_wrapper, which
//! reads service files from a temp dir instead of /etc/pam.d. pam_wrapper must be preloaded, so
//! the example re-executes itself with `LD_PRELOAD=libpam_wrapper.so PAM_WRAPPER=1
//! PAM_WRAPPER_SERVICE_DIR=…` (Debian: `apt-get install libpam-wrapper`).
//!
//! Two pairs of stacks, each a baseline and the same stack behind `pam_sspr.so`:
//!
//! * pam_matrix (shipped with pam_wrapper) always asks for the password itself; it has no
//!   try_first_pass. Behind pam_sspr it asks a second time, so "added" is pam_sspr's whole cost,
//!   its own conversation round included: an upper bound.
//! * pam_userdb (libpam-modules) honours `try_first_pass` like pam_unix, so behind pam_sspr it
//!   takes PAM_AUTHTOK and the login has one prompt, as in production. Its Berkeley DB file is
//!   created here through libdb's ndbm interface (dlopen'd; the pair is skipped if missing).
//!
//! Each login runs the module's normal path: read logon.toml, one conversation round,
//! PAM_AUTHTOK. `server_url` points at a local TCP listener that must see no connection.
//! Besides the warm in-process loop, `--cold N` runs N fresh processes per stack and times the
//! first login of each: what a fresh gdm-session-worker or login(1) pays, module loading included.

// FFI to libpam and libdb; this example is about the C ABI.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::error::Error;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

#[repr(C)]
struct PamHandle {
    _private: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

#[repr(C)]
struct PamConv {
    conv: extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

const USER: &CStr = c"bench";
const PASSWORD: &CStr = c"correct horse";
const WRONG: &CStr = c"wrong horse";
/// What pam_matrix and pam_userdb (under LC_ALL=C) ask; any other echo-off prompt is pam_sspr's.
const PASSWORD_MODULE_PROMPT: &str = "Password: ";

/// The conversation's state, shared with the callback through `appdata_ptr`.
struct Answers {
    password: Cell<&'static CStr>,
    prompts: Cell<u64>,
    other_prompts: Cell<u64>,
    echo_on: Cell<u64>,
    messages: Cell<u64>,
}

impl Answers {
    fn new() -> Answers {
        Answers {
            password: Cell::new(PASSWORD),
            prompts: Cell::new(0),
            other_prompts: Cell::new(0),
            echo_on: Cell::new(0),
            messages: Cell::new(0),
        }
    }

    fn reset(&self) {
        self.prompts.set(0);
        self.other_prompts.set(0);
        self.echo_on.set(0);
        self.messages.set(0);
    }
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// Answers every echo-off prompt with the current password; info and error messages get no
/// answer; echo-on prompts (none expected: the user is given to pam_start) get none either.
/// The array and the strings are malloc'd because the module frees them.
extern "C" fn converse(
    n: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if n <= 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the &Answers that login() put in the PamConv; it outlives the call.
    let a = unsafe { &*(appdata as *const Answers) };
    let n = n as usize;
    // SAFETY: plain allocation; zeroed, so every resp starts null.
    let out = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if out.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: libpam passes n valid message pointers (Linux-PAM layout).
        let m = unsafe { &**msg.add(i) };
        match m.msg_style {
            PAM_PROMPT_ECHO_OFF => {
                bump(&a.prompts);
                // SAFETY: the module's NUL-terminated prompt.
                let text = unsafe { CStr::from_ptr(m.msg) };
                if text.to_bytes() != PASSWORD_MODULE_PROMPT.as_bytes() {
                    bump(&a.other_prompts);
                }
                // SAFETY: strdup of a valid C string; out has n slots.
                unsafe {
                    let s = libc::strdup(a.password.get().as_ptr());
                    if s.is_null() {
                        for j in 0..i {
                            libc::free((*out.add(j)).resp as *mut c_void);
                        }
                        libc::free(out as *mut c_void);
                        return PAM_BUF_ERR;
                    }
                    (*out.add(i)).resp = s;
                }
            }
            PAM_PROMPT_ECHO_ON => bump(&a.echo_on),
            _ => bump(&a.messages),
        }
    }
    // SAFETY: resp is libpam's out-pointer; the caller frees the array.
    unsafe { *resp = out };
    PAM_SUCCESS
}

/// One full login: pam_start, pam_authenticate, pam_end. Returns pam_authenticate's result.
fn login(service: &CStr, answers: &Answers) -> Res<c_int> {
    let conv = PamConv {
        conv: converse,
        appdata_ptr: answers as *const Answers as *mut c_void,
    };
    let mut h: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: valid C strings and conversation; h is an out-pointer.
    let rc = unsafe { pam_start(service.as_ptr(), USER.as_ptr(), &conv, &mut h) };
    if rc != PAM_SUCCESS || h.is_null() {
        return Err(format!("pam_start({service:?}) failed: {rc}").into());
    }
    // SAFETY: h is the live handle from pam_start; ended exactly once.
    let rc = unsafe { pam_authenticate(h, 0) };
    // SAFETY: as above.
    unsafe { pam_end(h, rc) };
    Ok(rc)
}

fn rc_name(rc: c_int) -> String {
    // SAFETY: Linux-PAM's pam_strerror ignores the handle and returns a static string.
    let p = unsafe { pam_strerror(std::ptr::null_mut(), rc) };
    if p.is_null() {
        return rc.to_string();
    }
    // SAFETY: as above.
    let text = unsafe { CStr::from_ptr(p) }.to_string_lossy();
    format!("{rc} ({text})")
}

/// A field of /proc/self/status, in kB.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn mapped(name: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps").is_ok_and(|m| m.contains(name))
}

struct Stack {
    /// The service file's name.
    service: &'static str,
    label: &'static str,
    /// Index of the stack this one is compared with.
    baseline: Option<usize>,
    /// Echo-off prompts per login, and how many of them are not the password module's.
    prompts: u64,
    sspr_prompts: u64,
}

const STACKS: [Stack; 4] = [
    Stack {
        service: "matrix",
        label: "pam_matrix",
        baseline: None,
        prompts: 1,
        sspr_prompts: 0,
    },
    Stack {
        service: "sspr-matrix",
        label: "pam_sspr + pam_matrix (asks again)",
        baseline: Some(0),
        prompts: 2,
        sspr_prompts: 1,
    },
    Stack {
        service: "userdb",
        label: "pam_userdb",
        baseline: None,
        prompts: 1,
        sspr_prompts: 0,
    },
    Stack {
        service: "sspr-userdb",
        label: "pam_sspr + pam_userdb try_first_pass",
        baseline: Some(2),
        prompts: 1,
        sspr_prompts: 1,
    },
];

fn main() {
    if let Err(e) = run() {
        eprintln!("login_cost: {e}");
        std::process::exit(2);
    }
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child") => child(&args[1..]),
        Some("--cold-one") => cold_one(&args[1..]),
        _ => parent(&args),
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn lib_dirs() -> Vec<PathBuf> {
    let triple = format!("{}-linux-gnu", std::env::consts::ARCH);
    [
        format!("/usr/lib/{triple}"),
        format!("/lib/{triple}"),
        "/usr/lib64".into(),
        "/lib64".into(),
        "/usr/lib".into(),
        "/lib".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

fn find_lib(rel: &str) -> Option<PathBuf> {
    lib_dirs()
        .into_iter()
        .map(|d| d.join(rel))
        .find(|p| p.exists())
}

/// Sets up the temp dir, then runs the measurements in a child with pam_wrapper preloaded.
fn parent(args: &[String]) -> Res<()> {
    for a in args.iter().filter(|a| a.starts_with("--")) {
        if !["--iterations", "--cold", "--module", "--only"].contains(&a.as_str()) {
            return Err(format!(
                "unknown option {a}; usage: login_cost [--iterations N] [--cold N] [--module PATH] \
                 [--only SERVICE,…]"
            )
            .into());
        }
    }
    let module = match flag(args, "--module") {
        Some(p) => PathBuf::from(p),
        // target/release/examples/login_cost -> target/release/libpam_sspr.so
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .ok_or("cannot locate the target directory")?
            .join("libpam_sspr.so"),
    };
    if !module.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release -p pam-sspr` first (or pass --module PATH)",
            module.display()
        )
        .into());
    }
    let module = module.canonicalize()?;
    let wrapper = find_lib("libpam_wrapper.so")
        .ok_or("libpam_wrapper.so not found: apt-get install libpam-wrapper")?;
    let matrix = find_lib("pam_wrapper/pam_matrix.so")
        .ok_or("pam_wrapper/pam_matrix.so not found: apt-get install libpam-wrapper")?;

    let dir = std::env::temp_dir().join(format!("sspr-login-cost.{}", std::process::id()));
    std::fs::create_dir(&dir)?;
    let result = setup_and_run(&dir, &module, &wrapper, &matrix, args);
    let _ = std::fs::remove_dir_all(&dir);
    let code = result?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn setup_and_run(
    dir: &Path,
    module: &Path,
    wrapper: &Path,
    matrix: &Path,
    args: &[String],
) -> Res<i32> {
    let services = dir.join("services");
    let data = dir.join("data");
    std::fs::create_dir(&services)?;
    std::fs::create_dir(&data)?;
    let conf = data.join("logon.toml");
    let sspr_line = format!(
        "auth [success=ok default=ignore] {} config={}\n",
        module.display(),
        conf.display()
    );
    let passdb = data.join("passdb");
    let mut pdb = String::new();
    for s in &STACKS {
        pdb.push_str(&format!(
            "{}:{}:{}\n",
            USER.to_string_lossy(),
            PASSWORD.to_string_lossy(),
            s.service
        ));
    }
    std::fs::write(&passdb, pdb)?;
    let matrix_line = format!(
        "auth required {} passdb={}\n",
        matrix.display(),
        passdb.display()
    );
    std::fs::write(services.join("matrix"), &matrix_line)?;
    std::fs::write(
        services.join("sspr-matrix"),
        format!("{sspr_line}{matrix_line}"),
    )?;
    // A service whose pam_start loads nothing: the cold runs use it to take pam_wrapper's and
    // libpam's own first-call set-up out of the timed login.
    std::fs::write(services.join("prime"), "# loads no module\n")?;
    // libpam parses "other" on every pam_start, as /etc/pam.d/other on a real system; without
    // one it logs an error (to stderr, under pam_wrapper) on every login.
    std::fs::write(services.join("other"), "# loads no module\n")?;

    match find_lib("security/pam_userdb.so") {
        None => println!("pam_userdb.so not found (libpam-modules): pam_userdb stacks skipped"),
        Some(userdb) => match write_userdb(&data.join("users")) {
            Err(e) => println!("cannot create the pam_userdb database ({e}): stacks skipped"),
            Ok(()) => {
                let line = |extra: &str| {
                    format!(
                        "auth required {} db={} crypt=none{extra}\n",
                        userdb.display(),
                        data.join("users").display()
                    )
                };
                std::fs::write(services.join("userdb"), line(""))?;
                std::fs::write(
                    services.join("sspr-userdb"),
                    format!("{sspr_line}{}", line(" try_first_pass")),
                )?;
            }
        },
    }

    let status = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(dir)
        .arg(module)
        .args(args)
        .env("LD_PRELOAD", wrapper)
        .env("PAM_WRAPPER", "1")
        .env("PAM_WRAPPER_SERVICE_DIR", &services)
        // Untranslated prompts from the password modules, English from pam_sspr.
        .env("LC_ALL", "C")
        .status()?;
    Ok(status.code().unwrap_or(1))
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Datum {
    dptr: *mut c_char,
    dsize: c_int,
}

type NdbmOpen = unsafe extern "C" fn(*const c_char, c_int, c_int) -> *mut c_void;
type NdbmStore = unsafe extern "C" fn(*mut c_void, Datum, Datum, c_int) -> c_int;
type NdbmClose = unsafe extern "C" fn(*mut c_void);

/// `<base>.db` for pam_userdb, through the ndbm interface of the libdb it links (Berkeley DB
/// 5.3 on Debian), loaded at run time so the example builds without it.
fn write_userdb(base: &Path) -> Res<()> {
    // SAFETY: dlopen/dlsym with valid C strings; the symbols have the ndbm signatures of db.h.
    unsafe {
        let lib = libc::dlopen(c"libdb-5.3.so".as_ptr(), libc::RTLD_NOW);
        if lib.is_null() {
            return Err("libdb-5.3.so not loadable".into());
        }
        let sym = |name: &CStr| {
            let p = libc::dlsym(lib, name.as_ptr());
            (!p.is_null()).then_some(p)
        };
        let open: NdbmOpen = std::mem::transmute(sym(c"__db_ndbm_open").ok_or("no dbm_open")?);
        let store: NdbmStore = std::mem::transmute(sym(c"__db_ndbm_store").ok_or("no dbm_store")?);
        let close: NdbmClose = std::mem::transmute(sym(c"__db_ndbm_close").ok_or("no dbm_close")?);
        let path = CString::new(base.as_os_str().as_encoded_bytes())?;
        let db = open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600);
        if db.is_null() {
            return Err("dbm_open failed".into());
        }
        // pam_userdb looks the user up without the NUL and compares strlen(password) bytes.
        let key = Datum {
            dptr: USER.as_ptr() as *mut c_char,
            dsize: USER.to_bytes().len() as c_int,
        };
        let val = Datum {
            dptr: PASSWORD.as_ptr() as *mut c_char,
            dsize: PASSWORD.to_bytes().len() as c_int,
        };
        const DBM_REPLACE: c_int = 1;
        let rc = store(db, key, val, DBM_REPLACE);
        close(db);
        if rc != 0 {
            return Err(format!("dbm_store failed: {rc}").into());
        }
    }
    Ok(())
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

struct Sample {
    nanos: Vec<u64>,
}

impl Sample {
    fn sorted(mut self) -> Sample {
        self.nanos.sort_unstable();
        self
    }
    fn mean_us(&self) -> f64 {
        self.nanos.iter().sum::<u64>() as f64 / self.nanos.len().max(1) as f64 / 1e3
    }
    fn pct_us(&self, q: f64) -> f64 {
        if self.nanos.is_empty() {
            return 0.0;
        }
        let i = ((self.nanos.len() - 1) as f64 * q).round() as usize;
        self.nanos[i] as f64 / 1e3
    }
}

/// Runs under pam_wrapper: sanity checks, then the warm loop, then the cold runs.
fn child(args: &[String]) -> Res<()> {
    let dir = PathBuf::from(args.first().ok_or("--child needs the temp dir")?);
    let module = CString::new(args.get(1).ok_or("--child needs the module")?.as_str())?;
    let iterations: usize = flag(args, "--iterations").unwrap_or("2000").parse()?;
    let cold: usize = flag(args, "--cold").unwrap_or("20").parse()?;
    // For profiling one stack: `--only sspr-matrix` (service names: matrix, sspr-matrix, …).
    let only: Option<Vec<&str>> = flag(args, "--only").map(|o| o.split(',').collect());
    if !mapped("libpam_wrapper") {
        return Err("libpam_wrapper.so is not preloaded in the child".into());
    }
    let data = dir.join("data");
    // Anything pam_sspr tries to reach ends up here, and is reported.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let syslog = UnixDatagram::bind(data.join("log"))?;
    syslog.set_nonblocking(true)?;
    std::fs::write(
        data.join("logon.toml"),
        format!(
            "server_url = {}\nsyslog_socket = {}\nservices = [\"*\"]\n",
            toml_string(&format!("https://{}", listener.local_addr()?)),
            toml_string(&data.join("log").to_string_lossy()),
        ),
    )?;

    let stacks: Vec<(usize, &Stack, CString)> = STACKS
        .iter()
        .enumerate()
        .filter(|(_, s)| dir.join("services").join(s.service).exists())
        .filter(|(_, s)| only.as_ref().is_none_or(|o| o.contains(&s.service)))
        .map(|(i, s)| Ok((i, s, CString::new(s.service)?)))
        .collect::<Res<_>>()?;

    let answers = Answers::new();
    let mut ok = true;
    println!(
        "## Sanity (user {USER:?}, password module prompt {PASSWORD_MODULE_PROMPT:?})\n\n\
         | stack | right password | wrong password | prompts/login (pam_sspr's) | expected |\n\
         |---|---|---|---|---|"
    );
    const CHECKS: u64 = 20;
    for (_, s, svc) in &stacks {
        answers.reset();
        answers.password.set(PASSWORD);
        let mut right = Vec::new();
        for _ in 0..CHECKS {
            right.push(login(svc, &answers)?);
        }
        let (p, sp) = (answers.prompts.get(), answers.other_prompts.get());
        let quiet = answers.echo_on.get() == 0 && answers.messages.get() == 0;
        answers.reset();
        answers.password.set(WRONG);
        let mut wrong = Vec::new();
        for _ in 0..CHECKS {
            wrong.push(login(svc, &answers)?);
        }
        answers.password.set(PASSWORD);
        // Same prompts either way (no retry after a wrong token), and no other message.
        let good = right.iter().all(|&rc| rc == PAM_SUCCESS)
            && wrong.iter().all(|&rc| rc == wrong[0] && rc != PAM_SUCCESS)
            && p == s.prompts * CHECKS
            && sp == s.sspr_prompts * CHECKS
            && answers.prompts.get() == p
            && answers.other_prompts.get() == sp
            && quiet
            && answers.echo_on.get() == 0
            && answers.messages.get() == 0;
        ok &= good;
        println!(
            "| {} | {}/{CHECKS} {} | {}/{CHECKS} {} | {} ({}) | {} ({}){} |",
            s.label,
            right.iter().filter(|&&rc| rc == PAM_SUCCESS).count(),
            rc_name(right[0]),
            wrong.iter().filter(|&&rc| rc == wrong[0]).count(),
            rc_name(wrong[0]),
            p as f64 / CHECKS as f64,
            sp as f64 / CHECKS as f64,
            s.prompts,
            s.sspr_prompts,
            if good { "" } else { " **MISMATCH**" },
        );
    }

    // Warm-up, then the timed loop, interleaved in chunks so drift hits every stack alike.
    let warm = (iterations / 10).max(50);
    for (_, _, svc) in &stacks {
        for _ in 0..warm {
            login(svc, &answers)?;
        }
    }
    let hwm_before = status_kb("VmHWM:");
    answers.reset();
    let mut samples: Vec<Vec<u64>> = vec![Vec::with_capacity(iterations); stacks.len()];
    let mut failures = vec![0usize; stacks.len()];
    const CHUNK: usize = 100;
    let mut done = 0;
    while done < iterations {
        let n = CHUNK.min(iterations - done);
        for (k, (_, _, svc)) in stacks.iter().enumerate() {
            for _ in 0..n {
                let t = Instant::now();
                let rc = login(svc, &answers)?;
                samples[k].push(t.elapsed().as_nanos() as u64);
                if rc != PAM_SUCCESS {
                    failures[k] += 1;
                }
            }
        }
        done += n;
    }
    let hwm_after = status_kb("VmHWM:");
    let rss_after = status_kb("VmRSS:");
    let still_mapped = mapped("libpam_sspr.so");
    // Every timed login took the normal path: pam_sspr asked once wherever it is stacked.
    let n = iterations as u64;
    let want: u64 = stacks.iter().map(|(_, s, _)| s.prompts * n).sum();
    let want_sspr: u64 = stacks.iter().map(|(_, s, _)| s.sspr_prompts * n).sum();
    let timed_ok = answers.prompts.get() == want && answers.other_prompts.get() == want_sspr;
    ok &= timed_ok;

    let samples: Vec<Sample> = samples
        .into_iter()
        .map(|nanos| Sample { nanos }.sorted())
        .collect();
    let p50_of = |idx: usize, samples: &[Sample]| {
        stacks
            .iter()
            .position(|(i, _, _)| *i == idx)
            .map(|k| samples[k].pct_us(0.5))
    };
    println!(
        "\n## Warm: {iterations} logins per stack in one process (after {warm} warm-up logins)\n\n\
         | stack | logins | mean µs | p50 µs | p99 µs | added µs (p50 difference) |\n\
         |---|---|---|---|---|---|"
    );
    for (k, (_, s, _)) in stacks.iter().enumerate() {
        let sm = &samples[k];
        let added = match s.baseline.and_then(|b| p50_of(b, &samples)) {
            Some(b) => format!("{:+.1}", sm.pct_us(0.5) - b),
            None => "baseline".into(),
        };
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {added} |",
            s.label,
            sm.nanos.len(),
            sm.mean_us(),
            sm.pct_us(0.5),
            sm.pct_us(0.99),
        );
        if failures[k] != 0 {
            ok = false;
            println!(
                "**{} of these logins did not return PAM_SUCCESS**",
                failures[k]
            );
        }
    }
    println!(
        "\nPrompts during the timed logins: {} ({} of them pam_sspr's), expected {want} \
         ({want_sspr}){}.",
        answers.prompts.get(),
        answers.other_prompts.get(),
        if timed_ok { "" } else { " **MISMATCH**" }
    );
    println!(
        "\nPeak RSS (VmHWM): {hwm_before} kB after warm-up, {hwm_after} kB after the timed \
         loop (VmRSS {rss_after} kB). libpam_sspr.so still mapped between logins: {}.",
        if still_mapped {
            "yes (loaded once, kept)"
        } else {
            "no (pam_end unloads it; every pam_start maps it again)"
        }
    );

    // How much of "added" is loading the module rather than running it: dlopen + dlclose alone,
    // with RTLD_NOW as libpam does.
    let mut load = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        // SAFETY: loading the module runs only its initialisers; it is closed right away.
        unsafe {
            let h = libc::dlopen(module.as_ptr(), libc::RTLD_NOW);
            if h.is_null() {
                return Err(format!("dlopen({module:?}) failed").into());
            }
            libc::dlclose(h);
        }
        load.push(t.elapsed().as_nanos() as u64);
    }
    let load = Sample { nanos: load }.sorted();
    println!(
        "\nLoading and unloading libpam_sspr.so alone (dlopen RTLD_NOW + dlclose, no login), \
         {iterations} times: mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs.",
        load.mean_us(),
        load.pct_us(0.5),
        load.pct_us(0.99)
    );

    if cold > 0 {
        println!(
            "\n## Cold: the first login of a fresh process, {cold} processes per stack\n\n\
             | stack | processes | mean µs | p50 µs | max µs | added µs (p50 difference) | \
             VmHWM after it, p50 |\n|---|---|---|---|---|---|---|"
        );
        let exe = std::env::current_exe()?;
        let mut cold_samples = Vec::new();
        let mut cold_hwm = Vec::new();
        for (_, s, _) in &stacks {
            let mut nanos = Vec::new();
            let mut hwm = Vec::new();
            for _ in 0..cold {
                let out = Command::new(&exe)
                    .arg("--cold-one")
                    .arg(s.service)
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                let mut it = text.split_whitespace().map(str::parse::<u64>);
                match (out.status.success(), it.next(), it.next()) {
                    (true, Some(Ok(ns)), Some(Ok(kb))) => {
                        nanos.push(ns);
                        hwm.push(kb);
                    }
                    _ => {
                        ok = false;
                        println!(
                            "cold run of {} failed: {} {}",
                            s.service,
                            text.trim(),
                            String::from_utf8_lossy(&out.stderr).trim()
                        );
                    }
                }
            }
            hwm.sort_unstable();
            cold_hwm.push(hwm.get(hwm.len() / 2).copied().unwrap_or(0));
            cold_samples.push(Sample { nanos }.sorted());
        }
        for (k, (_, s, _)) in stacks.iter().enumerate() {
            let sm = &cold_samples[k];
            let base = s.baseline.and_then(|b| {
                stacks
                    .iter()
                    .position(|(i, _, _)| *i == b)
                    .map(|bk| (cold_samples[bk].pct_us(0.5), cold_hwm[bk]))
            });
            let (added, added_kb) = match base {
                Some((b, kb)) => (
                    format!("{:+.1}", sm.pct_us(0.5) - b),
                    format!(" ({:+} kB)", cold_hwm[k] as i64 - kb as i64),
                ),
                None => ("baseline".into(), String::new()),
            };
            println!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {added} | {} kB{added_kb} |",
                s.label,
                sm.nanos.len(),
                sm.mean_us(),
                sm.pct_us(0.5),
                sm.pct_us(1.0),
                cold_hwm[k],
            );
        }
    }

    // Nothing may have reached the "server" or the log on a normal login.
    let connections = match listener.accept() {
        Ok(_) => 1,
        Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e.into()),
    };
    let mut buf = [0u8; 2048];
    let mut log_lines = 0;
    while syslog.recv(&mut buf).is_ok() {
        log_lines += 1;
    }
    ok &= connections == 0 && log_lines == 0;
    println!(
        "\nConnections to server_url: {connections}; lines sent to syslog_socket: {log_lines}."
    );
    if !ok {
        println!("\nSANITY CHECK FAILED: see above.");
        std::process::exit(1);
    }
    Ok(())
}

/// One fresh process, one timed login. Prints "nanoseconds VmHWM_kB".
fn cold_one(args: &[String]) -> Res<()> {
    let svc = CString::new(args.first().ok_or("--cold-one needs a service")?.as_str())?;
    let answers = Answers::new();
    // pam_wrapper sets itself up (copies the service dir) on the first pam_start.
    let mut h: *mut PamHandle = std::ptr::null_mut();
    let conv = PamConv {
        conv: converse,
        appdata_ptr: &answers as *const Answers as *mut c_void,
    };
    // SAFETY: valid arguments; the handle is ended right away.
    unsafe {
        if pam_start(c"prime".as_ptr(), USER.as_ptr(), &conv, &mut h) == PAM_SUCCESS {
            pam_end(h, PAM_SUCCESS);
        }
    }
    let t = Instant::now();
    let rc = login(&svc, &answers)?;
    let ns = t.elapsed().as_nanos();
    if rc != PAM_SUCCESS {
        return Err(format!("login returned {}", rc_name(rc)).into());
    }
    println!("{ns} {}", status_kb("VmHWM:"));
    Ok(())
}
