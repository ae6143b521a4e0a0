//! The composition root: opens the store, picks the directory, loads the key, and wires them
//! into one [`App`]. `sspr serve` and every admin command build the same thing.

use std::sync::Arc;
use std::time::Duration;

use sspr_app::crypto::{HashPool, ServerKey};
use sspr_app::metrics::Metered;
use sspr_app::ports::UserStore;
use sspr_app::ports::{MethodRecord, MethodStatus, Store};
use sspr_app::{App, Settings};
use sspr_domain::{Clock, Method, OsRandom, Random};
use sspr_store::{BuiltinDirectory, NewUser, PgStore, SqliteStore};

use crate::config::{Config, permission_problem};

pub struct Runtime {
    pub app: Arc<App>,
    pub store: Arc<dyn Store>,
    pub builtin: BuiltinDirectory,
    pub config: Config,
}

/// The demo account created on first start (printed in the banner and the README).
pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "sspr-demo-initial-password";
pub const DEMO_EMAIL: &str = "demo@example.test";
/// The demo administrator for the admin pages (member of `sspr-admins`).
pub const DEMO_ADMIN: &str = "demo-admin";
pub const DEMO_ADMIN_PASSWORD: &str = "sspr-demo-admin-password";
pub const DEMO_ANSWERS: [(&str, &str); 3] = [("q3", "Rex"), ("q7", "Elm Street"), ("q12", "Sam")];

/// The store the configuration names: SQLite (the default) or PostgreSQL. Opening it applies
/// any pending migrations (safely, when several instances start at once).
pub async fn open_store(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn UserStore>)> {
    refuse_root_in_a_service_directory(&config.data_dir)?;
    match config.postgres_url() {
        Some(url) => {
            let pg = match &config.database.schema {
                Some(schema) => PgStore::connect_with_schema(url, schema).await,
                None => PgStore::connect(url).await,
            }
            .map_err(|e| anyhow::anyhow!("cannot open the PostgreSQL database: {e}"))?;
            let pg = Arc::new(pg);
            Ok((pg.clone(), pg))
        }
        None => {
            let path = config.db_path();
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
            }
            let s = SqliteStore::open(&path)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", path.display()))?;
            let s = Arc::new(s);
            Ok((s.clone(), s))
        }
    }
}

pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Runtime> {
    let problems = config.check();
    if !problems.is_empty() {
        anyhow::bail!(
            "the configuration has problems:\n  - {}\n(run `sspr config check` after fixing)",
            problems.join("\n  - ")
        );
    }
    refuse_root_in_a_service_directory(&config.data_dir)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let rng: Arc<dyn Random> = Arc::new(OsRandom);
    let key = load_key(&config, rng.as_ref())?;
    let limits = config.limits.clone();
    let hasher = HashPool::new(
        limits.argon2_concurrency,
        Duration::from_millis(limits.argon2_queue_timeout_ms),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (store, users) = open_store(&config).await?;
    let builtin = BuiltinDirectory::new(
        users,
        hasher.clone(),
        rng.clone(),
        clock.clone(),
        config.directory.password_history,
    )
    .with_max_age_days(config.directory.password_max_age_days);
    let live = config.delivery.mode == "live";
    let settings = Settings {
        public_url: config.public_url.clone(),
        organisation: config.organisation.clone(),
        limits,
        email_enabled: !live || config.delivery.smtp.is_some(),
        sms_enabled: !live || config.delivery.sms.is_some(),
        trust_directory_contacts: config.directory.trust_contacts,
        admin_groups: config.web.admin_groups.clone(),
        helpdesk_groups: config.web.helpdesk_groups.clone(),
        pow_bits: config.web.pow_bits,
        reminders: sspr_app::reminders::ReminderSettings {
            days: sspr_domain::expiry::check_days(&config.reminders.days).unwrap_or_default(),
            sms: config.reminders.sms,
            lang: if config.reminders.language == "zh" {
                sspr_app::Lang::Zh
            } else {
                sspr_app::Lang::En
            },
        },
        breached: match &config.breached_passwords_file {
            Some(p) => {
                Some(sspr_app::breached::BreachedFile::open(p).map_err(|e| anyhow::anyhow!(e))?)
            }
            None => None,
        },
    };
    let webauthn = match sspr_app::passkey::relying_party(&config.public_url, &config.organisation)
    {
        Ok(w) => Some(Arc::new(w)),
        Err(e) => {
            tracing::warn!("passkeys are off: {e}");
            None
        }
    };
    let app = Arc::new(App {
        store: store.clone(),
        directory: match (&config.directory.kind[..], &config.directory.ldap) {
            ("ldap", Some(l)) => Arc::new(Metered(Arc::new(
                sspr_ldap::LdapDirectory::new(l.clone()).map_err(|e| anyhow::anyhow!(e))?,
            ))),
            _ => Arc::new(Metered(Arc::new(builtin.clone()))),
        },
        clock,
        rng,
        hasher,
        key,
        settings,
        webauthn,
        outbox_wake: Arc::new(tokio::sync::Notify::new()),
    });
    Ok(Runtime {
        app,
        store,
        builtin,
        config,
    })
}

/// Root running the CLI on the service's data directory (`sudo sspr users add` on a packaged
/// install) would leave root-owned files there, a new SQLite journal or key, which the
/// service's user then cannot open: the next start or write fails far from the cause. So it
/// is refused, naming the user to run as.
fn refuse_root_in_a_service_directory(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(data_dir) else {
        return Ok(());
    };
    if effective_uid() != 0 || meta.uid() == 0 {
        return Ok(());
    }
    let owner = user_name(meta.uid()).unwrap_or_else(|| format!("uid {}", meta.uid()));
    anyhow::bail!(
        "{} belongs to {owner}, and this runs as root: files it created there would be \
         root's, and the service could not open them. Run it as {owner}: sudo -u {owner} sspr …",
        data_dir.display()
    )
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The local account's name, from /etc/passwd (system users are local).
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

fn load_key(config: &Config, rng: &dyn Random) -> anyhow::Result<ServerKey> {
    let path = config
        .secret_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("secret.key"));
    if path.exists() {
        if let Some(p) = permission_problem(&path) {
            anyhow::bail!("{p}");
        }
        let s = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        return ServerKey::from_hex(&s).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    if config.secret_key_file.is_some() {
        anyhow::bail!(
            "secret_key_file {} does not exist; create it with: sspr key > {} (then chmod 600)",
            path.display(),
            path.display()
        );
    }
    let key = ServerKey::generate(rng);
    sspr_server::tls::write_private(&path, format!("{}\n", key.to_hex()).as_bytes())
        .map_err(|e| anyhow::anyhow!(e))?;
    tracing::info!(path = %path.display(), "generated a new server key");
    Ok(key)
}

/// On first start of an empty built-in directory: the demo user with an email address and
/// three security questions registered, and a policy that lets the questions alone reset, so
/// a reset can be tried at once.
pub async fn seed_demo(rt: &Runtime) -> anyhow::Result<bool> {
    if !rt.config.demo
        || !rt
            .builtin
            .list()
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .is_empty()
    {
        return Ok(false);
    }
    create_demo_accounts(rt).await?;
    Ok(true)
}

/// The demo accounts and policy, whatever the configuration says: for the quick start (through
/// [`seed_demo`]) and for test fixtures that need a known user with known answers.
pub async fn create_demo_accounts(rt: &Runtime) -> anyhow::Result<()> {
    rt.builtin
        .add_user(&NewUser {
            login: DEMO_USER.into(),
            display_name: "Demo User".into(),
            password: DEMO_PASSWORD.into(),
            groups: vec!["staff".into()],
            email: Some(DEMO_EMAIL.into()),
            mobile: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    rt.builtin
        .add_user(&NewUser {
            login: DEMO_ADMIN.into(),
            display_name: "Demo Administrator".into(),
            password: DEMO_ADMIN_PASSWORD.into(),
            groups: rt
                .app
                .settings
                .admin_groups
                .iter()
                .take(1)
                .cloned()
                .collect(),
            email: None,
            mobile: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let now = rt.app.now();
    rt.store
        .put_method(&MethodRecord {
            user_id: DEMO_USER.into(),
            method: Method::Email,
            status: MethodStatus::Active,
            value: DEMO_EMAIL.into(),
            created_at: now,
            verified_at: Some(now),
        })
        .await?;
    let mut answers = Vec::new();
    for (q, a) in DEMO_ANSWERS {
        let norm = sspr_domain::questions::normalise_answer(a);
        answers.push((
            q.to_string(),
            rt.app
                .hasher
                .hash(&norm, rt.app.rng.as_ref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ));
    }
    rt.store.put_answers(DEMO_USER, &answers, now).await?;
    rt.store.confirm(DEMO_USER, now).await?;
    // The demo's questions alone reset its password, so a reset can be tried at a login screen
    // with no mail set up. Never outside the demo; `sspr doctor` says so while it is on.
    let policy = sspr_domain::Policy {
        questions_alone: true,
        ..rt.app.policy().await.map_err(|e| anyhow::anyhow!("{e}"))?
    };
    rt.store.save_policy(&policy, now).await?;
    Ok(())
}
