//! sspr's built-in directory: users in the same database, passwords as Argon2id. It is what
//! `sspr serve` uses out of the box, and what small sites without LDAP can stay on.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use sspr_app::crypto::HashPool;
use sspr_app::ports::{DirError, DirUser, Directory};
use sspr_domain::identity::canonical_login;
use sspr_domain::{Clock, Random, Rejection};

use crate::SqliteStore;

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
    pool: SqlitePool,
    hasher: HashPool,
    rng: Arc<dyn Random>,
    clock: Arc<dyn Clock>,
    /// Previous passwords a reset may not reuse (0 = no history).
    history: usize,
}

fn derr(e: sqlx::Error) -> DirError {
    DirError::Unavailable(format!("built-in directory: {e}"))
}

impl BuiltinDirectory {
    pub fn new(
        store: &SqliteStore,
        hasher: HashPool,
        rng: Arc<dyn Random>,
        clock: Arc<dyn Clock>,
        history: usize,
    ) -> Self {
        Self {
            pool: store.pool().clone(),
            hasher,
            rng,
            clock,
            history,
        }
    }

    /// Creates an account. The password must already satisfy the policy (the CLI checks).
    pub async fn add_user(&self, u: &NewUser) -> Result<(), String> {
        let id = canonical_login(&u.login).ok_or("the login is empty or has control characters")?;
        if u.password.trim().is_empty() {
            return Err("the password cannot be empty".into());
        }
        let hash = self
            .hasher
            .hash(&u.password, self.rng.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let now = self.clock.now();
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        let r = sqlx::query(
            "INSERT INTO dir_users (id, display_name, enabled, locked, password_hash, email, mobile, created_at, password_changed_at)
             VALUES ($1, $2, 1, 0, $3, $4, $5, $6, $6)",
        )
        .bind(&id)
        .bind(if u.display_name.is_empty() { &u.login } else { &u.display_name })
        .bind(&hash)
        .bind(&u.email)
        .bind(&u.mobile)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = r {
            return Err(if e.to_string().contains("UNIQUE") {
                format!("user {id} already exists")
            } else {
                e.to_string()
            });
        }
        for g in &u.groups {
            let g = g.trim().to_lowercase();
            if !g.is_empty() {
                sqlx::query("INSERT OR IGNORE INTO dir_groups (user_id, grp) VALUES ($1, $2)")
                    .bind(&id)
                    .bind(g)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.commit().await.map_err(|e| e.to_string())
    }

    pub async fn exists(&self, login: &str) -> Result<bool, String> {
        let id = canonical_login(login).unwrap_or_default();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dir_users WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        Ok(n > 0)
    }

    pub async fn list(&self) -> Result<Vec<UserRow>, String> {
        let rows = sqlx::query("SELECT * FROM dir_users ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get("id").map_err(|e| e.to_string())?;
            let groups = self.groups(&id).await.map_err(|e| e.to_string())?;
            out.push(UserRow {
                display_name: r.try_get("display_name").map_err(|e| e.to_string())?,
                enabled: r.try_get::<i64, _>("enabled").map_err(|e| e.to_string())? != 0,
                locked: r.try_get::<i64, _>("locked").map_err(|e| e.to_string())? != 0,
                email: r.try_get("email").map_err(|e| e.to_string())?,
                mobile: r.try_get("mobile").map_err(|e| e.to_string())?,
                login: id,
                groups,
            });
        }
        Ok(out)
    }

    /// Sets `enabled` or `locked`. Returns false when there is no such user.
    pub async fn set_flag(&self, login: &str, flag: Flag, value: bool) -> Result<bool, String> {
        let id = canonical_login(login).unwrap_or_default();
        let sql = match flag {
            Flag::Enabled => "UPDATE dir_users SET enabled = $1 WHERE id = $2",
            Flag::Locked => "UPDATE dir_users SET locked = $1 WHERE id = $2",
        };
        let r = sqlx::query(sql)
            .bind(value as i64)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        Ok(r.rows_affected() == 1)
    }

    async fn groups(&self, id: &str) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT grp FROM dir_groups WHERE user_id = $1 ORDER BY grp")
            .bind(id)
            .fetch_all(&self.pool)
            .await
    }

    async fn password_hash(&self, id: &str) -> Result<Option<(String, bool)>, DirError> {
        let row = sqlx::query("SELECT password_hash, locked FROM dir_users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(derr)?;
        row.map(|r| {
            Ok((
                r.try_get("password_hash").map_err(derr)?,
                r.try_get::<i64, _>("locked").map_err(derr)? != 0,
            ))
        })
        .transpose()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Flag {
    Enabled,
    Locked,
}

#[async_trait]
impl Directory for BuiltinDirectory {
    async fn find_user(&self, login: &str) -> Result<Option<DirUser>, DirError> {
        let Some(id) = canonical_login(login) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT * FROM dir_users WHERE id = $1")
            .bind(&id)
            .fetch_optional(&self.pool)
            .await
            .map_err(derr)?;
        let Some(r) = row else { return Ok(None) };
        let groups = self.groups(&id).await.map_err(derr)?;
        Ok(Some(DirUser {
            login: id.clone(),
            id,
            display_name: r.try_get("display_name").map_err(derr)?,
            enabled: r.try_get::<i64, _>("enabled").map_err(derr)? != 0,
            locked: r.try_get::<i64, _>("locked").map_err(derr)? != 0,
            groups,
            email: r.try_get("email").map_err(derr)?,
            mobile: r.try_get("mobile").map_err(derr)?,
        }))
    }

    async fn check_password(&self, user: &DirUser, password: &str) -> Result<bool, DirError> {
        if password.is_empty() {
            return Ok(false);
        }
        match self.password_hash(&user.id).await? {
            // A locked account does not sign in anywhere, registration included.
            Some((hash, locked)) => {
                let ok = self
                    .hasher
                    .verify(password, &hash)
                    .await
                    .map_err(|e| DirError::Other(e.to_string()))?;
                Ok(ok && !locked)
            }
            None => Ok(false),
        }
    }

    async fn reset_password(&self, user: &DirUser, new_password: &str) -> Result<(), DirError> {
        let Some((current, _)) = self.password_hash(&user.id).await? else {
            return Err(DirError::Other(format!("user {} vanished", user.id)));
        };
        if self.history > 0 {
            let mut previous: Vec<String> = sqlx::query_scalar(
                "SELECT hash FROM dir_history WHERE user_id = $1 ORDER BY at DESC LIMIT $2",
            )
            .bind(&user.id)
            .bind(self.history as i64 - 1)
            .fetch_all(&self.pool)
            .await
            .map_err(derr)?;
            previous.insert(0, current.clone());
            for h in &previous {
                if self
                    .hasher
                    .verify(new_password, h)
                    .await
                    .map_err(|e| DirError::Other(e.to_string()))?
                {
                    return Err(DirError::Rejected(vec![Rejection::History]));
                }
            }
        }
        let hash = self
            .hasher
            .hash(new_password, self.rng.as_ref())
            .await
            .map_err(|e| DirError::Other(e.to_string()))?;
        let now = self.clock.now();
        let mut tx = self.pool.begin().await.map_err(derr)?;
        sqlx::query("UPDATE dir_users SET password_hash = $1, locked = 0, password_changed_at = $2 WHERE id = $3")
            .bind(&hash)
            .bind(now)
            .bind(&user.id)
            .execute(&mut *tx)
            .await
            .map_err(derr)?;
        sqlx::query("INSERT INTO dir_history (user_id, hash, at) VALUES ($1, $2, $3)")
            .bind(&user.id)
            .bind(&current)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(derr)?;
        sqlx::query(
            "DELETE FROM dir_history WHERE user_id = $1 AND rowid NOT IN
             (SELECT rowid FROM dir_history WHERE user_id = $1 ORDER BY at DESC, rowid DESC LIMIT $2)",
        )
        .bind(&user.id)
        .bind(self.history.max(1) as i64)
        .execute(&mut *tx)
        .await
        .map_err(derr)?;
        tx.commit().await.map_err(derr)
    }

    async fn unlock(&self, user: &DirUser) -> Result<(), DirError> {
        sqlx::query("UPDATE dir_users SET locked = 0 WHERE id = $1")
            .bind(&user.id)
            .execute(&self.pool)
            .await
            .map_err(derr)?;
        Ok(())
    }

    async fn password_rules(&self) -> Result<Vec<String>, DirError> {
        Ok(if self.history > 0 {
            vec![format!(
                "You cannot reuse any of your last {} passwords.",
                self.history
            )]
        } else {
            Vec::new()
        })
    }

    async fn ping(&self) -> Result<(), DirError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(derr)
            .map(|_| ())
    }
}
