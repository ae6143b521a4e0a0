//! sspr's built-in directory: users in sspr's own database, passwords as Argon2id. It is what
//! `sspr serve` uses out of the box, and what small sites without LDAP can stay on. It works on
//! either store through [`UserStore`].

use std::sync::Arc;

use async_trait::async_trait;
use sspr_app::crypto::{HashPool, token_hash};
use sspr_app::ports::{
    DirError, DirUser, Directory, Expiring, PasswordCheck, UserFlag, UserRecord, UserStore,
};
use sspr_domain::clock::UnixTime;
use sspr_domain::identity::{canonical_login, login_problem};
use sspr_domain::{Clock, Random, Rejection};

/// An account to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub login: String,
    pub display_name: String,
    pub password: String,
    pub groups: Vec<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
}

/// One account as listed by the admin CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub login: String,
    pub display_name: String,
    pub enabled: bool,
    pub locked: bool,
    pub groups: Vec<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
}

#[derive(Clone)]
pub struct BuiltinDirectory {
    users: Arc<dyn UserStore>,
    hasher: HashPool,
    rng: Arc<dyn Random>,
    clock: Arc<dyn Clock>,
    /// Previous passwords a reset may not reuse (0 = no history).
    history: usize,
    /// How long a password lasts, in seconds (0: for ever).
    max_age_secs: i64,
}

fn dir_user(u: UserRecord) -> DirUser {
    DirUser {
        login: u.id.clone(),
        lookup: u.id.clone(),
        id: u.id,
        display_name: u.display_name,
        enabled: u.enabled,
        locked: u.locked,
        groups: u.groups,
        email: u.email,
        mobile: u.mobile,
    }
}

fn derr(e: sspr_app::ports::StoreError) -> DirError {
    DirError::Unavailable(format!("built-in directory: {e}"))
}

/// A hashing failure: busy when every Argon2 slot stayed taken (nothing was tried).
fn herr(e: sspr_app::AppError) -> DirError {
    if e.kind == sspr_app::ErrorKind::Busy {
        DirError::Busy(format!("built-in directory: {e}"))
    } else {
        DirError::Other(e.to_string())
    }
}

impl BuiltinDirectory {
    pub fn new(
        users: Arc<dyn UserStore>,
        hasher: HashPool,
        rng: Arc<dyn Random>,
        clock: Arc<dyn Clock>,
        history: usize,
    ) -> Self {
        Self {
            users,
            hasher,
            rng,
            clock,
            history,
            max_age_secs: 0,
        }
    }

    /// Passwords expire this many days after they are set (0: never).
    pub fn with_max_age_days(mut self, days: u32) -> Self {
        self.max_age_secs = i64::from(days) * sspr_domain::expiry::DAY;
        self
    }

    /// Creates an account. The password must already satisfy the policy (the CLI checks).
    pub async fn add_user(&self, u: &NewUser) -> Result<(), String> {
        if u.password.trim().is_empty() {
            return Err("the password cannot be empty".into());
        }
        // Checked before the hash is paid for.
        self.record(u, String::new())?;
        let password_hash = self.hash_password(&u.password).await?;
        let record = self.record(u, password_hash)?;
        let id = record.id.clone();
        match self.users.insert_user(&record, self.clock.now()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("user {id} already exists")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// An Argon2id hash of `password` on the directory's bounded pool.
    pub async fn hash_password(&self, password: &str) -> Result<String, String> {
        self.hasher
            .hash(password, self.rng.as_ref())
            .await
            .map_err(|e| e.to_string())
    }

    /// The row `u` becomes with `password_hash`: the login checked and in canonical form
    /// (RFC 8265), groups lower-cased, sorted and deduplicated, the display name defaulting
    /// to the login. `u.password` is not read.
    pub fn record(&self, u: &NewUser, password_hash: String) -> Result<UserRecord, String> {
        if let Some(problem) = login_problem(&u.login) {
            return Err(problem);
        }
        let id = canonical_login(&u.login).ok_or("the login is empty or has control characters")?;
        let mut groups: Vec<String> = u
            .groups
            .iter()
            .map(|g| g.trim().to_lowercase())
            .filter(|g| !g.is_empty())
            .collect();
        groups.sort();
        groups.dedup();
        Ok(UserRecord {
            display_name: if u.display_name.is_empty() {
                u.login.clone()
            } else {
                u.display_name.clone()
            },
            id,
            enabled: true,
            locked: false,
            password_hash,
            password_changed_at: self.clock.now(),
            email: u.email.clone(),
            mobile: u.mobile.clone(),
            groups,
        })
    }

    /// Which of these canonical logins already have an account.
    pub async fn taken(&self, ids: &[String]) -> Result<Vec<String>, String> {
        self.users
            .existing_user_ids(ids)
            .await
            .map_err(|e| e.to_string())
    }

    /// Creates every account, each with the event `audit` makes for it, in one transaction:
    /// all or none.
    pub async fn import(
        &self,
        records: &[UserRecord],
        audit: &sspr_app::ports::ImportAudit,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<(), String> {
        self.users
            .import_users(records, audit, self.clock.now(), progress)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn list(&self) -> Result<Vec<UserRow>, String> {
        let users = self.users.users().await.map_err(|e| e.to_string())?;
        Ok(users
            .into_iter()
            .map(|u| UserRow {
                login: u.id,
                display_name: u.display_name,
                enabled: u.enabled,
                locked: u.locked,
                groups: u.groups,
                email: u.email,
                mobile: u.mobile,
            })
            .collect())
    }

    /// The user must change the password at the next sign-in. `false` when there is no such
    /// user.
    pub async fn expire_password(&self, login: &str) -> Result<bool, String> {
        let id = canonical_login(login).unwrap_or_default();
        self.users
            .expire_user_password(&id)
            .await
            .map_err(|e| e.to_string())
    }

    /// Sets `enabled` or `locked`. Returns false when there is no such user.
    pub async fn set_flag(&self, login: &str, flag: UserFlag, value: bool) -> Result<bool, String> {
        let id = canonical_login(login).unwrap_or_default();
        self.users
            .set_user_flag(&id, flag, value)
            .await
            .map_err(|e| e.to_string())
    }
}

impl BuiltinDirectory {
    /// Replaces an imported (bcrypt, `{SSHA}`) or older Argon2 hash with the pool's Argon2id
    /// while the password is at hand, so that weak hashes leave the database as their owners
    /// sign in. The password's age and history stay: it is the same password. A failure only
    /// postpones the upgrade to the next sign-in, so it does not fail this one.
    async fn upgrade_hash(&self, id: &str, old: &str, password: &str) {
        let new = match self.hasher.hash(password, self.rng.as_ref()).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(user = id, error = %e, "password hash upgrade postponed");
                return;
            }
        };
        match self.users.upgrade_user_hash(id, old, &new).await {
            Ok(true) => tracing::info!(user = id, "password hash upgraded to Argon2id"),
            Ok(false) => {}
            Err(e) => tracing::warn!(user = id, error = %e, "password hash upgrade postponed"),
        }
    }
}

#[async_trait]
impl Directory for BuiltinDirectory {
    async fn find_user(&self, login: &str) -> Result<Option<DirUser>, DirError> {
        let Some(id) = canonical_login(login) else {
            return Ok(None);
        };
        Ok(self.users.user(&id).await.map_err(derr)?.map(dir_user))
    }

    async fn check_password(
        &self,
        user: &DirUser,
        password: &str,
    ) -> Result<PasswordCheck, DirError> {
        if password.is_empty() {
            return Ok(PasswordCheck::Wrong);
        }
        let Some(u) = self.users.user(&user.id).await.map_err(derr)? else {
            return Ok(PasswordCheck::Wrong);
        };
        let ok = self
            .hasher
            .verify(password, &u.password_hash)
            .await
            .map_err(herr)?;
        if ok && self.hasher.needs_rehash(&u.password_hash) {
            self.upgrade_hash(&u.id, &u.password_hash, password).await;
        }
        // A locked account does not sign in anywhere, registration included. A change time
        // of 0 is an administrator's "change it at the next sign-in" (`sspr users expire`).
        Ok(if !ok || u.locked {
            PasswordCheck::Wrong
        } else if u.password_changed_at == 0
            || (self.max_age_secs > 0
                && u.password_changed_at + self.max_age_secs <= self.clock.now())
        {
            PasswordCheck::MustChange
        } else {
            PasswordCheck::Right
        })
    }

    async fn check_password_of_nobody(&self, login: &str, password: &str) -> Result<(), DirError> {
        if password.is_empty() {
            return Ok(());
        }
        // The read check_password makes, then one Argon2 verification.
        let id = canonical_login(login).unwrap_or_default();
        self.users.user(&id).await.map_err(derr)?;
        self.hasher.verify_dummy(password).await.map_err(herr)?;
        Ok(())
    }

    async fn reset_password(&self, user: &DirUser, new_password: &str) -> Result<(), DirError> {
        let Some(current) = self.users.user(&user.id).await.map_err(derr)? else {
            return Err(DirError::Other(format!("user {} vanished", user.id)));
        };
        // The last step of a reset: served before the earlier steps of other resets.
        let hasher = self.hasher.first_in_line();
        let reused = async {
            if self.history == 0 {
                return Ok::<bool, DirError>(false);
            }
            let mut previous = self
                .users
                .password_history(&user.id, self.history - 1)
                .await
                .map_err(derr)?;
            previous.insert(0, current.password_hash.clone());
            let pairs = previous
                .into_iter()
                .map(|h| (new_password.to_owned(), h))
                .collect();
            Ok(hasher
                .verify_all(pairs)
                .await
                .map_err(herr)?
                .contains(&true))
        };
        // The new hash is made beside the history's checks, on another core when one is free;
        // it is thrown away in the rare case the password was used before.
        let hashed = async {
            hasher
                .hash(new_password, self.rng.as_ref())
                .await
                .map_err(herr)
        };
        let (reused, hash) = tokio::try_join!(reused, hashed)?;
        if reused {
            return Err(DirError::Rejected(vec![Rejection::History]));
        }
        self.users
            .set_user_password(&user.id, &hash, self.clock.now(), self.history.max(1))
            .await
            .map_err(derr)
    }

    async fn unlock(&self, user: &DirUser) -> Result<(), DirError> {
        self.users
            .set_user_flag(&user.id, UserFlag::Locked, false)
            .await
            .map_err(derr)
            .map(|_| ())
    }

    /// A digest of the stored hash: every write stores a freshly salted hash, so it changes
    /// with each reset, even to the same password.
    async fn password_stamp(&self, user: &DirUser) -> Result<Option<String>, DirError> {
        Ok(self
            .users
            .user(&user.id)
            .await
            .map_err(derr)?
            .map(|u| token_hash(&u.password_hash)))
    }

    async fn password_rules(&self) -> Result<Vec<sspr_domain::DirectoryRule>, DirError> {
        Ok(if self.history > 0 {
            vec![sspr_domain::DirectoryRule::NoReuse {
                count: self.history,
            }]
        } else {
            Vec::new()
        })
    }

    async fn expiring_passwords(
        &self,
        before: UnixTime,
    ) -> Result<Option<Vec<Expiring>>, DirError> {
        if self.max_age_secs <= 0 {
            return Ok(None);
        }
        // Only the passwords set early enough to expire before `before` are read.
        let users = self
            .users
            .users_changed_before(before - self.max_age_secs)
            .await
            .map_err(derr)?;
        Ok(Some(
            users
                .into_iter()
                .filter(|u| u.enabled)
                .map(|u| (u.password_changed_at + self.max_age_secs, u))
                .filter(|(expires_at, _)| *expires_at < before)
                .map(|(expires_at, u)| Expiring {
                    user: dir_user(u),
                    expires_at,
                })
                .collect(),
        ))
    }

    async fn ping(&self) -> Result<(), DirError> {
        self.users.user("").await.map_err(derr).map(|_| ())
    }
}
