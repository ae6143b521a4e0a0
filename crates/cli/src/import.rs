//! `sspr users import FILE`: accounts from CSV into the built-in directory, all or none.
//!
//! Two passes. The first reads and checks every line (login, duplicates in the file and
//! against existing accounts, the policy for plaintext passwords, the form of hashes) and
//! reports every problem with its line number; if there is any, nothing is written. The
//! second hashes plaintext passwords on the bounded Argon2 pool, then writes every account
//! and its audit event in one transaction, in multi-row statements.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sspr_app::foreign_hash;
use sspr_app::ports::UserRecord;
use sspr_domain::{PasswordContext, Policy};
use sspr_store::NewUser;

use crate::commands::{actor, cli_ctx, csv_fields};
use crate::runtime::Runtime;

const COLUMNS: &str = "login,display_name,email,mobile,groups,password";
/// How often progress is written to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// One line that passed the first pass. Plaintext passwords wait in `plain` until hashed.
struct Row {
    line: usize,
    record: UserRecord,
    plain: Option<String>,
}

/// Writes "PHASE n/total (rate/s)" to stderr at most every [`PROGRESS_EVERY`], and once at
/// the end of each phase.
struct Progress {
    phase: &'static str,
    total: Option<usize>,
    started: Instant,
    last: Mutex<Instant>,
}

impl Progress {
    fn new(phase: &'static str, total: Option<usize>) -> Self {
        let now = Instant::now();
        Self {
            phase,
            total,
            started: now,
            last: Mutex::new(now),
        }
    }

    fn tick(&self, n: usize) {
        let due = match self.last.lock() {
            Ok(mut last) if last.elapsed() >= PROGRESS_EVERY => {
                *last = Instant::now();
                true
            }
            _ => false,
        };
        if due {
            self.print(n);
        }
    }

    fn print(&self, n: usize) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { n as f64 / secs } else { 0.0 };
        match self.total {
            Some(t) if t > 0 => eprintln!(
                "{} {n}/{t} ({:.0} %, {rate:.0}/s)",
                self.phase,
                n as f64 * 100.0 / t as f64
            ),
            _ => eprintln!("{} {n} ({rate:.0}/s)", self.phase),
        }
    }
}

pub async fn import(rt: &Runtime, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let policy = rt.app.policy().await?;
    let reader = std::io::BufReader::new(
        std::fs::File::open(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?,
    );

    // Pass 1: every line, every problem.
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let validating = Progress::new("validated lines:", None);
    let mut seen = 0usize;
    for (i, line) in reader.split(b'\n').enumerate() {
        let lineno = i + 1;
        let bytes = line.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let Ok(text) = String::from_utf8(bytes) else {
            problems.push((
                lineno,
                format!("line {lineno}: is not UTF-8: save the file as UTF-8 and import it again"),
            ));
            continue;
        };
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let text = if i == 0 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        if text.trim().is_empty()
            || (i == 0 && text.trim_start().to_ascii_lowercase().starts_with("login"))
        {
            continue;
        }
        seen += 1;
        validating.tick(seen);
        match check_line(rt, &policy, lineno, text) {
            Ok(row) => match first_line.get(&row.record.id) {
                Some(&earlier) => problems.push((
                    lineno,
                    format!(
                        "line {lineno}: {}: the same login as line {earlier} (logins are compared after RFC 8265 normalisation): keep one of the two lines",
                        row.record.id
                    ),
                )),
                None => {
                    first_line.insert(row.record.id.clone(), lineno);
                    rows.push(row);
                }
            },
            Err(e) => problems.push((lineno, e)),
        }
    }
    drop(first_line);
    validating.print(seen);

    let ids: Vec<String> = rows.iter().map(|r| r.record.id.clone()).collect();
    let taken: std::collections::HashSet<String> = rt
        .builtin
        .taken(&ids)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the existing accounts: {e}"))?
        .into_iter()
        .collect();
    drop(ids);
    for r in rows.iter().filter(|r| taken.contains(&r.record.id)) {
        problems.push((
            r.line,
            format!(
                "line {}: {}: an account with this login already exists: remove the line (import only creates accounts)",
                r.line, r.record.id
            ),
        ));
    }

    if !problems.is_empty() {
        problems.sort_by_key(|(line, _)| *line);
        for (_, p) in &problems {
            eprintln!("{p}");
        }
        let bad: std::collections::BTreeSet<usize> = problems.iter().map(|(l, _)| *l).collect();
        println!(
            "0 added, {} failed in {:.1} s: nothing was imported; fix the lines above and import the file again",
            bad.len(),
            started.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::from(2));
    }

    // Pass 2a: plaintext passwords to Argon2id, as many at once as the pool has slots, so
    // memory stays at slots × 19 MiB and no task waits long enough to be refused.
    let plain: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].plain.is_some())
        .collect();
    if !plain.is_empty() {
        let hashing = Progress::new("hashed passwords:", Some(plain.len()));
        let slots = rt.config.limits.argon2_concurrency.max(1);
        let mut pending = plain.into_iter();
        let mut set = tokio::task::JoinSet::new();
        let mut done = 0usize;
        loop {
            while set.len() < slots {
                let Some(i) = pending.next() else { break };
                let password = rows[i].plain.take().unwrap_or_default();
                let dir = rt.builtin.clone();
                set.spawn(async move { (i, dir.hash_password(&password).await) });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            let (i, hash) = joined.map_err(|e| anyhow::anyhow!("hashing task: {e}"))?;
            rows[i].record.password_hash = hash.map_err(|e| {
                anyhow::anyhow!(
                    "line {}: {}: cannot hash the password: {e}; nothing was imported",
                    rows[i].line,
                    rows[i].record.id
                )
            })?;
            done += 1;
            hashing.tick(done);
        }
        hashing.print(done);
    }

    // Pass 2b: one transaction. Each account gets the event `users add` writes.
    let records: Vec<UserRecord> = rows.into_iter().map(|r| r.record).collect();
    let mut template = rt.app.event(
        &cli_ctx(),
        sspr_domain::Activity::AdminUserChanged,
        sspr_domain::Outcome::Success,
    );
    template.actor = actor();
    template.reason = "imported".into();
    let audit = move |u: &UserRecord| {
        let mut e = template.clone();
        e.target = u.id.clone();
        e
    };
    let inserting = Progress::new("inserted accounts:", Some(records.len()));
    rt.builtin
        .import(&records, &audit, &|n| inserting.tick(n))
        .await
        .map_err(|e| {
            anyhow::anyhow!("the import failed and was rolled back, nothing was imported: {e}")
        })?;
    inserting.print(records.len());
    println!(
        "{} added, 0 failed in {:.1} s",
        records.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// One CSV line checked on its own; the error names the line and says what to fix.
fn check_line(rt: &Runtime, policy: &Policy, lineno: usize, line: &str) -> Result<Row, String> {
    let mut f = csv_fields(line);
    // Argon2 PHC strings contain commas (`m=19456,t=2,p=1`) and exports rarely quote them:
    // the password is the last column, so what follows the fifth comma is taken whole when
    // it is such a hash.
    if f.len() > 6 {
        let rest = f[5..].join(",");
        if foreign_hash::claimed(&rest).is_some() {
            f.truncate(5);
            f.push(rest);
        }
    }
    let get = |k: usize| f.get(k).cloned().filter(|s| !s.is_empty());
    let login = get(0).ok_or(format!("line {lineno}: the login (column 1) is empty"))?;
    if f.len() > 6 {
        return Err(format!(
            "line {lineno}: {login}: {} columns where there are 6 ({COLUMNS}): put fields that contain a comma in double quotes",
            f.len()
        ));
    }
    let display = get(1).unwrap_or_default();
    let password = get(5).ok_or(format!(
        "line {lineno}: {login}: the password (column 6) is empty: give a password, or a hash (argon2, bcrypt, {{SSHA}}) exported from the old system"
    ))?;
    let user = NewUser {
        login: login.clone(),
        display_name: display.clone(),
        password: String::new(),
        groups: get(4)
            .map(|g| g.split(';').map(str::to_string).collect())
            .unwrap_or_default(),
        email: get(2),
        mobile: get(3),
    };
    let (hash, plain) = if foreign_hash::claimed(&password).is_some() {
        foreign_hash::check(&password).map_err(|e| {
            format!("line {lineno}: {login}: {e}: export the hash unchanged, or give the password in plaintext")
        })?;
        (password, None)
    } else if let Some(what) = foreign_hash::unsupported(&password) {
        return Err(format!(
            "line {lineno}: {login}: the password looks like {what}, which sspr cannot verify: export argon2, bcrypt or {{SSHA}} hashes, or give plaintext passwords"
        ));
    } else {
        let rejections = policy.password.check(
            &password,
            &PasswordContext {
                login: &login,
                display_name: &display,
            },
        );
        if let Some(r) = rejections.first() {
            return Err(format!(
                "line {lineno}: {login}: {} (plaintext passwords must satisfy the policy, see `sspr policy show`; hashes are taken as they are)",
                r.message("en")
            ));
        }
        (String::new(), Some(password))
    };
    let record = rt
        .builtin
        .record(&user, hash)
        .map_err(|e| format!("line {lineno}: {login}: {e}"))?;
    Ok(Row {
        line: lineno,
        record,
        plain,
    })
}
