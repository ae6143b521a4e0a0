//! The admin CLI. It works on the same database as the server (SQLite allows both at once),
//! through the same services, so its changes are validated and audited like the API's.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use sspr_app::{Lang, RequestCtx};
use sspr_domain::audit::ClientType;
use sspr_domain::clock::rfc3339;
use sspr_domain::{PasswordContext, Policy};
use sspr_store::{Flag, NewUser};

use crate::config::Config;
use crate::runtime::Runtime;

pub(crate) fn cli_ctx() -> RequestCtx {
    RequestCtx::new("local", ClientType::Cli, Lang::En)
}

pub(crate) fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Validate the configuration; every problem is listed with what to change.
    Check,
    /// Print the effective configuration (secrets are never printed).
    Show,
}

pub fn config(c: ConfigCmd, cfg: Config) -> anyhow::Result<ExitCode> {
    match c {
        ConfigCmd::Check => {
            let problems = cfg.check();
            if problems.is_empty() {
                println!("configuration OK");
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    println!("error: {p}");
                }
                Ok(ExitCode::from(2))
            }
        }
        ConfigCmd::Show => {
            let mut shown = cfg.clone();
            // A password read from database.password_file is never printed.
            if let Some((scheme, rest)) = shown.database.url.split_once("://")
                && let Some((cred, host)) = rest.split_once('@')
                && let Some((user, _)) = cred.split_once(':')
            {
                shown.database.url = format!("{scheme}://{user}:***@{host}");
            }
            println!("{}", toml::to_string_pretty(&shown)?);
            if let Some(s) = &cfg.delivery.smtp {
                println!("# delivery.smtp: {s:?}");
            }
            if let Some(s) = &cfg.delivery.sms {
                println!("# delivery.sms: {s:?}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum UsersCmd {
    /// Add a user to the built-in directory. The password is read from standard input.
    Add {
        login: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        mobile: Option<String>,
        /// Group membership; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// An administrator: also a member of the first of `admin_groups` (how the first
        /// administrator of a new installation is made).
        #[arg(long)]
        admin: bool,
    },
    /// Import users from CSV: login,display_name,email,mobile,groups(;-separated),password.
    /// The password is plaintext (checked against the policy) or a hash: argon2, bcrypt,
    /// {SSHA}/{SSHA256}/{SSHA512}. All or nothing: any bad line, and no account is created.
    Import {
        file: std::path::PathBuf,
    },
    /// List users with their registration status.
    List {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// One user's account and registration.
    Status {
        login: String,
    },
    Lock {
        login: String,
    },
    Unlock {
        login: String,
    },
    Disable {
        login: String,
    },
    Enable {
        login: String,
    },
    /// Require a new password at the next sign-in (built-in directory; AD's "User must change
    /// password at next logon"). Signing in then leads to the change; any new password clears it.
    Expire {
        login: String,
    },
    /// Send one-time links to set a first password (to the directory's email, or --sms).
    Invite {
        logins: Vec<String>,
        #[arg(long)]
        sms: bool,
        /// A CSV file: login[,email|sms] per line.
        #[arg(long)]
        csv: Option<std::path::PathBuf>,
    },
}

pub async fn users(c: UsersCmd, rt: &Runtime) -> anyhow::Result<ExitCode> {
    let dir = &rt.builtin;
    match c {
        UsersCmd::Add {
            login,
            name,
            email,
            mobile,
            mut groups,
            admin,
        } => {
            if admin
                && let Some(g) = rt.app.settings.admin_groups.first()
                && !groups.iter().any(|have| have.eq_ignore_ascii_case(g))
            {
                groups.push(g.clone());
            }
            let mut password = String::new();
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprint!("Password for {login}: ");
                let _ = std::io::stderr().flush();
            }
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            let policy = rt.app.policy().await?;
            let display = name.clone().unwrap_or_default();
            let rejections = policy.password.check(
                &password,
                &PasswordContext {
                    login: &login,
                    display_name: &display,
                },
            );
            if !rejections.is_empty() {
                for r in rejections {
                    eprintln!("password rejected: {}", r.message("en"));
                }
                return Ok(ExitCode::from(2));
            }
            dir.add_user(&NewUser {
                login: login.clone(),
                display_name: display,
                password,
                groups,
                email,
                mobile,
            })
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
            audit_user_change(rt, &login, "added").await;
            println!("added {login}");
            Ok(ExitCode::SUCCESS)
        }
        UsersCmd::Import { file } => crate::import::import(rt, &file).await,
        UsersCmd::Invite { logins, sms, csv } => {
            crate::invite::invite(rt, &logins, sms, csv.as_deref(), &cli_ctx(), &actor()).await
        }
        UsersCmd::List { format } => {
            let users = dir.list().await.map_err(|e| anyhow::anyhow!(e))?;
            let mut rows = Vec::new();
            for u in users {
                let (registered, methods) = rt.app.registration_of(&u.login, &u.groups).await?;
                rows.push(sspr_proto::UserSummary {
                    login: u.login,
                    display_name: u.display_name,
                    enabled: u.enabled,
                    locked: u.locked,
                    groups: u.groups,
                    registered,
                    methods: methods.iter().map(|m| m.as_str().to_string()).collect(),
                });
            }
            match format {
                ListFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                ListFormat::Csv => {
                    println!("login,display_name,enabled,locked,groups,registered,methods");
                    for r in rows {
                        println!(
                            "{},{},{},{},{},{},{}",
                            r.login,
                            r.display_name.replace(',', " "),
                            r.enabled,
                            r.locked,
                            r.groups.join(";"),
                            r.registered,
                            r.methods.join(";")
                        );
                    }
                }
                ListFormat::Table => {
                    println!(
                        "{:<20} {:<24} {:<8} {:<7} {:<11} {:<20} GROUPS",
                        "LOGIN", "NAME", "ENABLED", "LOCKED", "REGISTERED", "METHODS"
                    );
                    for r in rows {
                        println!(
                            "{:<20} {:<24} {:<8} {:<7} {:<11} {:<20} {}",
                            r.login,
                            r.display_name,
                            r.enabled,
                            r.locked,
                            r.registered,
                            r.methods.join(","),
                            r.groups.join(",")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        UsersCmd::Status { login } => {
            let Some(u) = sspr_app::ports::Directory::find_user(dir, &login)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            else {
                eprintln!("no user {login:?}");
                return Ok(ExitCode::from(2));
            };
            let (registered, methods) = rt.app.registration_of(&u.id, &u.groups).await?;
            let confirmed = sspr_app::ports::Store::confirmed_at(rt.store.as_ref(), &u.id).await?;
            println!("login:       {}", u.login);
            println!("name:        {}", u.display_name);
            println!("enabled:     {}", u.enabled);
            println!("locked:      {}", u.locked);
            println!("groups:      {}", u.groups.join(", "));
            println!("registered:  {registered}");
            println!(
                "methods:     {}",
                methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            println!(
                "confirmed:   {}",
                confirmed.map(rfc3339).unwrap_or_else(|| "never".into())
            );
            Ok(ExitCode::SUCCESS)
        }
        UsersCmd::Lock { login } => flag(rt, &login, Flag::Locked, true, "locked").await,
        UsersCmd::Unlock { login } => {
            // The sign-in lockout is sspr's own, whatever directory holds the account.
            rt.app
                .clear_sign_in_lockout(&login)
                .await
                .map_err(|e| anyhow::anyhow!(e.log))?;
            let builtin = rt
                .builtin
                .set_flag(&login, Flag::Locked, false)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            if builtin {
                audit_user_change(rt, &login, "unlocked").await;
                println!("{login} unlocked");
            } else {
                audit_user_change(rt, &login, "sign_in_lockout_cleared").await;
                println!("{login}: sign-in lockout cleared (not in the built-in directory)");
            }
            Ok(ExitCode::SUCCESS)
        }
        UsersCmd::Disable { login } => flag(rt, &login, Flag::Enabled, false, "disabled").await,
        UsersCmd::Enable { login } => flag(rt, &login, Flag::Enabled, true, "enabled").await,
        UsersCmd::Expire { login } => {
            if rt
                .builtin
                .expire_password(&login)
                .await
                .map_err(|e| anyhow::anyhow!(e))?
            {
                audit_user_change(rt, &login, "password_expired").await;
                println!("{login} must change the password at the next sign-in");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "no user {login:?} in the built-in directory (for LDAP or AD, set it there: pwdReset, or pwdLastSet = 0)"
                );
                Ok(ExitCode::from(2))
            }
        }
    }
}

async fn flag(rt: &Runtime, login: &str, f: Flag, v: bool, word: &str) -> anyhow::Result<ExitCode> {
    if rt
        .builtin
        .set_flag(login, f, v)
        .await
        .map_err(|e| anyhow::anyhow!(e))?
    {
        audit_user_change(rt, login, word).await;
        println!("{login} {word}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("no user {login:?}");
        Ok(ExitCode::from(2))
    }
}

async fn audit_user_change(rt: &Runtime, login: &str, what: &str) {
    let mut ev = rt.app.event(
        &cli_ctx(),
        sspr_domain::Activity::AdminUserChanged,
        sspr_domain::Outcome::Success,
    );
    ev.actor = actor();
    ev.target = sspr_domain::identity::canonical_login(login).unwrap_or_default();
    ev.reason = what.into();
    rt.app.record(ev).await;
}

/// Splits one CSV line, honouring double quotes.
pub(crate) fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Print the policy as TOML (or JSON with --json).
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Change fields: `sspr policy set methods_required=2 methods=email,totp password.min_length=12`.
    Set {
        #[arg(required = true)]
        assignments: Vec<String>,
    },
    /// Replace the policy with a TOML or JSON file.
    Apply { file: std::path::PathBuf },
    /// Check a TOML or JSON policy file without applying it.
    Validate { file: std::path::PathBuf },
}

fn read_policy_file(file: &std::path::Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    if file.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    } else {
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    }
}

/// Sets `a.b=value` in a JSON tree. The value is JSON if it parses, a comma list for array
/// fields, else a string.
fn assign(tree: &mut serde_json::Value, path: &str, raw: &str) -> Result<(), String> {
    let mut node = tree;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let obj = node
            .as_object_mut()
            .ok_or(format!("{path}: {p} is not a section"))?;
        if !obj.contains_key(*p) {
            return Err(format!(
                "the policy has no field {path:?} (see `sspr policy show`)"
            ));
        }
        if i + 1 == parts.len() {
            let current = &obj[*p];
            let v = match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(v) if !current.is_string() || v.is_string() => v,
                _ if current.is_array() => serde_json::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| serde_json::Value::String(s.into()))
                        .collect(),
                ),
                _ => serde_json::Value::String(raw.into()),
            };
            obj.insert(p.to_string(), v);
            return Ok(());
        }
        node = obj.get_mut(*p).ok_or(format!("no field {path:?}"))?;
    }
    Ok(())
}

pub async fn policy(c: PolicyCmd, rt: &Runtime) -> anyhow::Result<ExitCode> {
    let ctx = cli_ctx();
    let apply = |p: Policy| async move {
        match rt.app.set_policy(&cli_ctx(), &actor(), p).await {
            Ok(_) => {
                println!("policy updated");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                for d in if e.details.is_empty() {
                    vec![e.message.clone()]
                } else {
                    e.details.clone()
                } {
                    eprintln!("error: {d}");
                }
                Ok(ExitCode::from(2))
            }
        }
    };
    match c {
        PolicyCmd::Show { json } => {
            let p = rt.app.policy().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!("{}", toml::to_string_pretty(&p)?);
            }
            let _ = ctx;
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Set { assignments } => {
            let mut tree = serde_json::to_value(rt.app.policy().await?)?;
            for a in &assignments {
                let Some((k, v)) = a.split_once('=') else {
                    eprintln!("error: {a:?} is not KEY=VALUE");
                    return Ok(ExitCode::from(2));
                };
                if let Err(e) = assign(&mut tree, k.trim(), v.trim()) {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            }
            match serde_json::from_value::<Policy>(tree) {
                Ok(p) => apply(p).await,
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        PolicyCmd::Apply { file } => apply(read_policy_file(&file)?).await,
        PolicyCmd::Validate { file } => {
            let problems = read_policy_file(&file)?.validate();
            if problems.is_empty() {
                println!("policy OK");
                Ok(ExitCode::SUCCESS)
            } else {
                for p in problems {
                    println!("error: {p}");
                }
                Ok(ExitCode::from(2))
            }
        }
    }
}

/// How a listing is printed. An unknown value is an error that lists these (clap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug)]
pub struct OutboxArgs {
    #[arg(long, default_value_t = 10)]
    limit: u32,
    /// table or json (csv is not offered: message bodies span lines).
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// The same as --format json (kept for scripts written before --format).
    #[arg(long, hide = true)]
    json: bool,
}

pub async fn outbox(a: OutboxArgs, rt: &Runtime) -> anyhow::Result<ExitCode> {
    if a.format == ListFormat::Csv {
        eprintln!("error: the outbox is listed as table or json");
        return Ok(ExitCode::from(2));
    }
    let msgs = sspr_app::ports::Store::outbox_list(rt.store.as_ref(), a.limit).await?;
    if a.json || a.format == ListFormat::Json {
        let v: Vec<_> = msgs
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id, "time": rfc3339(m.created_at), "channel": m.channel.as_str(), "to": m.recipient,
                    "subject": m.subject, "body": m.body, "status": m.status, "attempts": m.attempts, "last_error": m.last_error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if msgs.is_empty() {
        println!("the outbox is empty");
    }
    for m in msgs.iter().rev() {
        println!(
            "#{} {} {} to {} [{}{}]",
            m.id,
            rfc3339(m.created_at),
            m.channel.as_str(),
            m.recipient,
            m.status,
            if m.last_error.is_empty() {
                String::new()
            } else {
                format!(": {}", m.last_error)
            }
        );
        if !m.subject.is_empty() {
            println!("  Subject: {}", m.subject);
        }
        for l in m.body.lines() {
            println!("  {l}");
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// `sspr doctor`: every check on one line, failures followed by what to do.
pub async fn doctor(cfg: Config, user: Option<&str>) -> anyhow::Result<ExitCode> {
    use sspr_ldap::Check;
    let mut checks: Vec<Check> = Vec::new();
    let pass = |name: &str, detail: String| Check {
        name: name.into(),
        ok: true,
        detail,
        fix: String::new(),
    };
    let fail = |name: &str, detail: String, fix: &str| Check {
        name: name.into(),
        ok: false,
        detail,
        fix: fix.into(),
    };
    let problems = cfg.check();
    if problems.is_empty() {
        checks.push(pass("configuration", "valid".into()));
    } else {
        for p in problems {
            checks.push(fail(
                "configuration",
                p,
                "edit the configuration file (sspr config check lists every problem)",
            ));
        }
    }
    // Choices an admin may make on purpose, but should make knowingly: said, not failed.
    let mut warnings: Vec<(&str, String, &str)> = Vec::new();
    match crate::runtime::open_store(&cfg).await {
        Ok((store, users)) => match store.ping().await {
            Ok(()) => {
                checks.push(pass("database", "reachable, schema up to date".into()));
                if !cfg.demo {
                    checks.extend(demo_accounts(users.as_ref()).await);
                }
                if let Ok(Some(p)) = store.load_policy().await {
                    let req = p.requirement_for(&[]);
                    if req.required < 2 && req.methods.contains(&sspr_domain::Method::Questions) {
                        warnings.push((
                            "policy",
                            "security questions alone can reset a password (questions_alone is on); NIST SP 800-63B-4 does not accept them as a proof".into(),
                            "turn \"Let security questions alone prove who a user is\" off on the admin Policy page, or require two methods",
                        ));
                    }
                }
            }
            Err(e) => checks.push(fail(
                "database",
                e.to_string(),
                "check database.url and that the database server runs",
            )),
        },
        Err(e) => checks.push(fail(
            "database",
            format!("{e:#}"),
            "check database.url, the password file, and that the database server runs",
        )),
    }
    match (cfg.directory.kind.as_str(), &cfg.directory.ldap) {
        ("ldap", Some(l)) => match sspr_ldap::LdapDirectory::new(l.clone()) {
            Ok(d) => checks.extend(d.diagnose(user).await),
            Err(e) => checks.push(fail("directory", e, "fix [directory.ldap]")),
        },
        _ => {
            checks.push(pass(
                "directory",
                "built-in (accounts in sspr's database)".into(),
            ));
            if let Some(login) = user {
                checks.push(builtin_user(&cfg, login).await);
            }
        }
    }
    if cfg.delivery.mode == "live" {
        match cfg
            .delivery
            .smtp
            .as_ref()
            .map(sspr_delivery::SmtpSender::new)
        {
            Some(Ok(sender)) => match sender.check().await {
                Ok(()) => checks.push(pass(
                    "smtp",
                    "the mail server greets and accepts the login".into(),
                )),
                Err(e) => checks.push(fail(
                    "smtp",
                    e,
                    "check [delivery.smtp] host, port, tls, username and password_file",
                )),
            },
            Some(Err(e)) => checks.push(fail("smtp", e.0, "fix [delivery.smtp]")),
            None => checks.push(fail(
                "smtp",
                "delivery.mode is live without [delivery.smtp]".into(),
                "add [delivery.smtp]",
            )),
        }
    } else {
        checks.push(pass("smtp", "dev mode: messages stay in the outbox".into()));
    }
    for c in &checks {
        println!(
            "{} {:<14} {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
        if !c.ok {
            println!("     {:<14} fix: {}", "", c.fix);
        }
    }
    for (name, detail, fix) in &warnings {
        println!("WARN {name:<14} {detail}");
        println!("     {:<14} fix: {fix}", "");
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    println!("{failed} problem(s) found");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `doctor --user` on the built-in directory: whether the account exists and can use sspr, and
/// what it has registered.
async fn builtin_user(cfg: &Config, login: &str) -> sspr_ldap::Check {
    let check = |ok: bool, detail: String, fix: &str| sspr_ldap::Check {
        name: "user".into(),
        ok,
        detail,
        fix: fix.into(),
    };
    let Some(id) = sspr_domain::identity::canonical_login(login) else {
        return check(
            false,
            format!("{login:?} is not a login name"),
            "check the spelling",
        );
    };
    let (store, users) = match crate::runtime::open_store(cfg).await {
        Ok(s) => s,
        Err(e) => return check(false, format!("{e:#}"), "see the database check"),
    };
    let u = match users.user(&id).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return check(
                false,
                format!("no account {id} in the built-in directory"),
                "check the spelling, or add it: sspr users add LOGIN",
            );
        }
        Err(e) => return check(false, e.to_string(), "see the database check"),
    };
    let methods: Vec<&str> = store
        .methods(&id)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|m| m.status == sspr_app::ports::MethodStatus::Active)
        .map(|m| m.method.as_str())
        .collect();
    let registered = if methods.is_empty() {
        "nothing registered".to_string()
    } else {
        format!("registered: {}", methods.join(", "))
    };
    let expired = if u.password_changed_at == 0 {
        ", must change the password at the next sign-in"
    } else {
        ""
    };
    match (u.enabled, u.locked) {
        (false, _) => check(
            false,
            format!("{id} is disabled; {registered}"),
            "sspr users enable LOGIN",
        ),
        (true, true) => check(
            false,
            format!("{id} is locked (a reset unlocks it); {registered}"),
            "sspr users unlock LOGIN, or let the user reset",
        ),
        (true, false) => check(
            true,
            format!("{id} found, enabled, not locked{expired}; {registered}"),
            "",
        ),
    }
}

/// The quick start's demo accounts, found on an installation that is not the quick start (an
/// earlier version made them wherever the built-in directory started empty): a failure while
/// one still has the password the README publishes.
async fn demo_accounts(users: &dyn sspr_app::ports::UserStore) -> Vec<sspr_ldap::Check> {
    use crate::runtime::{DEMO_ADMIN, DEMO_ADMIN_PASSWORD, DEMO_PASSWORD, DEMO_USER};
    let Ok(hasher) = sspr_app::crypto::HashPool::new(1, std::time::Duration::from_secs(10)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (login, published) in [
        (DEMO_ADMIN, DEMO_ADMIN_PASSWORD),
        (DEMO_USER, DEMO_PASSWORD),
    ] {
        let Ok(Some(u)) = users.user(login).await else {
            continue;
        };
        let known = u.enabled
            && hasher
                .verify(published, &u.password_hash)
                .await
                .unwrap_or(false);
        out.push(sspr_ldap::Check {
            name: "demo accounts".into(),
            ok: !known,
            detail: if known {
                format!(
                    "{login} exists outside the quick start with the password the README publishes"
                )
            } else {
                format!(
                    "{login} exists outside the quick start (disabled, or its password changed)"
                )
            },
            fix: format!("sspr users disable {login}, or give it a new password"),
        });
    }
    out
}

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Copy users, registrations, policy, admin tokens and the audit log into an empty database:
    /// `sspr store copy --from sqlite:///var/lib/sspr/sspr.db --to postgres://sspr@db/sspr`.
    Copy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// PostgreSQL schema of the source.
        #[arg(long)]
        from_schema: Option<String>,
        /// PostgreSQL schema of the target (must exist).
        #[arg(long)]
        to_schema: Option<String>,
    },
}

pub async fn store(c: StoreCmd, cfg: Config) -> anyhow::Result<ExitCode> {
    let StoreCmd::Copy {
        from,
        to,
        from_schema,
        to_schema,
    } = c;
    let side = |url: String, schema: Option<String>| {
        let mut c = cfg.clone();
        c.database.url = url;
        c.database.schema = schema;
        c
    };
    let (from_cfg, to_cfg) = (side(from, from_schema), side(to, to_schema));
    for c in [&from_cfg, &to_cfg] {
        if let Some(p) = c.check().into_iter().find(|p| p.contains("database")) {
            eprintln!("error: {p}");
            return Ok(ExitCode::from(2));
        }
    }
    let (fs, fu) = crate::runtime::open_store(&from_cfg).await?;
    let (ts, tu) = crate::runtime::open_store(&to_cfg).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut last = String::new();
    let mut progress = |what: &str, n: usize| {
        if what != last || n.is_multiple_of(500) {
            eprintln!("copying {what}: {n}");
            last = what.to_string();
        }
    };
    let from = sspr_store::copy::Side {
        store: fs.as_ref(),
        users: fu.as_ref(),
    };
    let to = sspr_store::copy::Side {
        store: ts.as_ref(),
        users: tu.as_ref(),
    };
    match sspr_store::copy::copy_installation(from, to, now, &mut progress).await {
        Ok(d) => {
            println!(
                "copied {} users, {} registrations, {} audit events, {} admin tokens, {} reminders sent{}",
                d.users,
                d.registrations,
                d.audit_events,
                d.admin_tokens,
                d.reminders,
                if d.policy { ", the policy" } else { "" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Admin API tokens: `sspr admin token create NAME [--helpdesk]` prints a new token once.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    Create {
        name: String,
        /// A helpdesk token: the audit log, users and invitations, not the policy.
        #[arg(long)]
        helpdesk: bool,
    },
}

pub async fn admin(c: AdminCmd, rt: &Runtime) -> anyhow::Result<ExitCode> {
    match c {
        AdminCmd::Token(TokenCmd::Create { name, helpdesk }) => {
            let role = if helpdesk {
                sspr_app::admin::StaffRole::Helpdesk
            } else {
                sspr_app::admin::StaffRole::Admin
            };
            match rt.app.create_admin_token(&cli_ctx(), &name, role).await {
                Ok(t) => {
                    println!("{t}");
                    eprintln!(
                        "This token is shown once. Send it as: Authorization: Bearer <token>"
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {}", e.message);
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes() {
        assert_eq!(
            csv_fields(r#"a,"b, c","d ""e""",,f"#),
            vec!["a", "b, c", "d \"e\"", "", "f"]
        );
    }

    #[test]
    fn policy_assignment() {
        let mut t = serde_json::to_value(Policy::default()).unwrap();
        assign(&mut t, "methods_required", "2").unwrap();
        assign(&mut t, "methods", "email,totp").unwrap();
        assign(&mut t, "password.min_length", "12").unwrap();
        assign(&mut t, "password.organisation", "Contoso").unwrap();
        assert!(assign(&mut t, "nope", "1").is_err());
        let p: Policy = serde_json::from_value(t).unwrap();
        assert_eq!(p.methods_required, 2);
        assert_eq!(
            p.methods,
            vec![sspr_domain::Method::Email, sspr_domain::Method::Totp]
        );
        assert_eq!(p.password.min_length, 12);
        assert_eq!(p.password.organisation, "Contoso");
    }
}
