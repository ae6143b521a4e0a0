//! The PostgreSQL store, for several sspr instances sharing one database. It mirrors
//! [`crate::SqliteStore`] statement by statement; where PostgreSQL would run concurrently what
//! SQLite serialises (SQLite has a single writer), it takes a row or advisory lock so the
//! outcome is the one SQLite would give.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};
use sspr_app::Lang;
use sspr_app::ports::{
    AdminToken, AuditCheckpoint, AuditFilter, AuditStore, ChainedEvent, Channel, CodeRecord,
    Completion, FinishStore, FlowRecord, MethodRecord, MethodStatus, OutboxMessage, SessionRecord,
    Store, StoreError, StoreResult, UserFlag, UserRecord, UserStore,
};
use sspr_domain::audit::{Activity, AuditEvent, ClientType, Outcome};
use sspr_domain::clock::UnixTime;
use sspr_domain::{FlowKind, FlowState, Method, Policy};

use crate::codec::{err, join, methods_csv, parse_methods, split};

/// Versioned migrations, applied in order, each once, each in its own transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_finish.sql")),
    (3, include_str!("../migrations/postgres/0003_heartbeat.sql")),
    (4, include_str!("../migrations/postgres/0004_reminders.sql")),
    (5, include_str!("../migrations/postgres/0005_proofs.sql")),
    (
        6,
        include_str!("../migrations/postgres/0006_registration_skips.sql"),
    ),
    (
        7,
        include_str!("../migrations/postgres/0007_admin_token_role.sql"),
    ),
    (
        8,
        include_str!("../migrations/postgres/0008_audit_chain.sql"),
    ),
    (
        9,
        include_str!("../migrations/postgres/0009_audit_export.sql"),
    ),
    (
        10,
        include_str!("../migrations/postgres/0010_throttle_counts.sql"),
    ),
    (
        11,
        include_str!("../migrations/postgres/0011_outbox_claim.sql"),
    ),
];

/// Advisory lock key ("ssprmig") held while migrating, so instances starting together apply
/// each migration once. Advisory locks are per database, not per schema: instances on other
/// schemas of the same database merely wait their turn.
const MIGRATION_LOCK: i64 = 0x0073_7370_726d_6967;

/// Namespaces (first key of the two-key advisory lock) for the per-key locks below.
const CODE_LOCK: i32 = 0x7373_7001;
const USER_LOCK: i32 = 0x7373_7002;
/// Appending to the audit chain (a key of its own: one-key and two-key locks never meet).
const AUDIT_LOCK: i64 = 0x0073_7370_7261_7564;
const THROTTLE_LOCK: i32 = 0x7373_7003;

/// How long a request waits for a connection, connecting included.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);
/// PostgreSQL's `statement_timeout` for sspr's sessions.
const STATEMENT_TIMEOUT: &str = "5s";

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL; its search_path decides the schema) and applies
    /// migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let opts = PgConnectOptions::from_str(url).map_err(err)?;
        Self::connect_with(opts).await
    }

    /// Like [`PgStore::connect`], but keeps every table in `schema`, which must exist (sspr does
    /// not need the right to create schemas). Lets several deployments, or tests, share one
    /// database. The name must be a plain lower-case identifier.
    pub async fn connect_with_schema(url: &str, schema: &str) -> StoreResult<Self> {
        if !plain_identifier(schema) {
            return Err(StoreError(format!(
                "schema name {schema:?} must be lower-case letters, digits and '_' (at most 63, not starting with a digit or pg_)"
            )));
        }
        // A startup option, so it holds on every pooled connection, including reconnects.
        let opts = PgConnectOptions::from_str(url)
            .map_err(err)?
            .options([("search_path", schema)]);
        let store = Self::connect_pool(opts).await?;
        // With a search_path naming a missing schema, PostgreSQL would only fail later, with
        // "no schema has been selected to create in"; say what is wrong instead.
        let current: Option<String> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&store.pool)
            .await
            .map_err(err)?;
        if current.as_deref() != Some(schema) {
            store.pool.close().await;
            return Err(StoreError(format!(
                "schema {schema} does not exist (CREATE SCHEMA {schema} first)"
            )));
        }
        store.migrate().await?;
        Ok(store)
    }

    async fn connect_with(opts: PgConnectOptions) -> StoreResult<Self> {
        let store = Self::connect_pool(opts).await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn connect_pool(opts: PgConnectOptions) -> StoreResult<Self> {
        // A statement that runs this long is cancelled (57014, "unavailable"), unless the URL
        // sets its own `options=-c statement_timeout=…`.
        let opts = if opts
            .get_options()
            .is_some_and(|o| o.contains("statement_timeout"))
        {
            opts
        } else {
            opts.options([("statement_timeout", STATEMENT_TIMEOUT)])
        };
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // Connecting (refused, or no answer at all) and waiting for a free connection
            // both end here: a database that went away fails a request fast, with a 503.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await
            .map_err(err)?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection from the pool. The SQL both stores share asks for a writer or a reader,
    /// which SQLite keeps apart (see `sqlite_conn`); PostgreSQL's writers do not get in each
    /// other's way, so both come from the one pool.
    async fn writer(&self) -> StoreResult<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(err)
    }

    async fn reader(&self) -> StoreResult<sqlx::pool::PoolConnection<Postgres>> {
        self.writer().await
    }

    async fn migrate(&self) -> StoreResult<()> {
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await.map_err(err)?;
            // Held until commit or rollback: a second instance waits here, then sees the
            // version recorded and skips. The table is created under the lock too, because
            // concurrent CREATE TABLE IF NOT EXISTS can still fail on PostgreSQL.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
            if done.is_some() {
                tx.commit().await.map_err(err)?;
                continue;
            }
            sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(err)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, EXTRACT(EPOCH FROM now())::BIGINT)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
            tracing::info!(version, "applied migration");
        }
        Ok(())
    }

    pub async fn schema_version(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(err)
    }
}

/// An identifier PostgreSQL takes as-is, unquoted, in SQL and in search_path.
fn plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && s.len() <= 63
        && !s.starts_with("pg_")
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// FNV-1a, as the second key of a two-key advisory lock. Computed here rather than with
/// PostgreSQL's `hashtext` (internal, not promised stable) so every sspr version derives the
/// same key. A collision only makes two unrelated callers wait for each other.
fn lock_key(parts: &[&str]) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // 0xff never occurs in UTF-8, so ("ab", "c") and ("a", "bc") hash differently.
            h = (h ^ 0xff).wrapping_mul(0x0100_0193);
        }
        for b in p.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

async fn advisory_lock(
    tx: &mut Transaction<'_, Postgres>,
    namespace: i32,
    parts: &[&str],
) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(namespace)
        .bind(lock_key(parts))
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    Ok(())
}

fn flow_from(r: &PgRow) -> StoreResult<FlowRecord> {
    let g = |c: &str| r.try_get::<String, _>(c).map_err(err);
    Ok(FlowRecord {
        id: g("id")?,
        kind: FlowKind::parse(&g("kind")?).ok_or_else(|| StoreError("bad flow kind".into()))?,
        state: FlowState::parse(&g("state")?).ok_or_else(|| StoreError("bad flow state".into()))?,
        user_id: g("user_id")?,
        login: g("login")?,
        account: g("account")?,
        display_name: g("display_name")?,
        privileged: r.try_get("privileged").map_err(err)?,
        required: r.try_get::<i64, _>("required").map_err(err)? as u8,
        usable: parse_methods(&g("usable")?),
        verified: parse_methods(&g("verified")?),
        questions: split(&g("questions")?),
        created_at: r.try_get("created_at").map_err(err)?,
        expires_at: r.try_get("expires_at").map_err(err)?,
        client_type: ClientType::parse(&g("client_type")?).unwrap_or_default(),
        client_ip: g("client_ip")?,
        finishing_at: r.try_get("finishing_at").map_err(err)?,
        dir_stamp: r.try_get("dir_stamp").map_err(err)?,
        lang: Lang::negotiate(&g("lang")?),
    })
}

fn code_from(r: &PgRow) -> StoreResult<CodeRecord> {
    Ok(CodeRecord {
        id: r.try_get("id").map_err(err)?,
        owner: r.try_get("owner").map_err(err)?,
        purpose: r.try_get("purpose").map_err(err)?,
        code_mac: r.try_get("code_mac").map_err(err)?,
        destination: r.try_get("destination").map_err(err)?,
        created_at: r.try_get("created_at").map_err(err)?,
        expires_at: r.try_get("expires_at").map_err(err)?,
        attempts: r.try_get::<i64, _>("attempts").map_err(err)? as u32,
        used: r.try_get("used").map_err(err)?,
        delivery_failed: r.try_get("delivery_failed").map_err(err)?,
    })
}

fn admin_token_from(r: &PgRow) -> StoreResult<AdminToken> {
    Ok(AdminToken {
        name: r.try_get("name").map_err(err)?,
        token_hash: r.try_get("token_hash").map_err(err)?,
        created_at: r.try_get("created_at").map_err(err)?,
        role: r.try_get("role").map_err(err)?,
    })
}

fn outbox_from(r: &PgRow) -> StoreResult<OutboxMessage> {
    Ok(OutboxMessage {
        id: r.try_get("id").map_err(err)?,
        channel: Channel::parse(&r.try_get::<String, _>("channel").map_err(err)?)
            .unwrap_or(Channel::Email),
        recipient: r.try_get("recipient").map_err(err)?,
        subject: r.try_get("subject").map_err(err)?,
        body: r.try_get("body").map_err(err)?,
        status: r.try_get("status").map_err(err)?,
        attempts: r.try_get::<i64, _>("attempts").map_err(err)? as u32,
        created_at: r.try_get("created_at").map_err(err)?,
        next_attempt_at: r.try_get("next_attempt_at").map_err(err)?,
        last_error: r.try_get("last_error").map_err(err)?,
        code_id: r.try_get("code_id").map_err(err)?,
        flow_id: r.try_get("flow_id").map_err(err)?,
        target: r.try_get("target").map_err(err)?,
    })
}

fn audit_from(r: &PgRow) -> StoreResult<AuditEvent> {
    let details: String = r.try_get("details").map_err(err)?;
    Ok(AuditEvent {
        id: r.try_get("id").map_err(err)?,
        at: r.try_get("at").map_err(err)?,
        activity: Activity::parse(&r.try_get::<String, _>("activity").map_err(err)?)
            .ok_or_else(|| StoreError("unknown activity in audit row".into()))?,
        actor: r.try_get("actor").map_err(err)?,
        target: r.try_get("target").map_err(err)?,
        client_ip: r.try_get("client_ip").map_err(err)?,
        client_type: ClientType::parse(&r.try_get::<String, _>("client_type").map_err(err)?)
            .unwrap_or_default(),
        outcome: Outcome::parse(&r.try_get::<String, _>("outcome").map_err(err)?)
            .unwrap_or(Outcome::Failure),
        reason: r.try_get("reason").map_err(err)?,
        flow_id: r.try_get("flow_id").map_err(err)?,
        support_code: r.try_get("support_code").map_err(err)?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
    })
}

async fn ensure_registration(tx: &mut Transaction<'_, Postgres>, user_id: &str) -> StoreResult<()> {
    sqlx::query("INSERT INTO registrations (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    Ok(())
}

/// Two concurrent issues for one owner would each retire only the codes they can see and
/// both leave theirs live; SQLite's single writer rules that out, this lock does the same here.
async fn lock_code(
    tx: &mut Transaction<'_, Postgres>,
    owner: &str,
    purpose: &str,
) -> StoreResult<()> {
    advisory_lock(tx, CODE_LOCK, &[owner, purpose]).await
}

/// Under READ COMMITTED two transactions could both count below a limit; a lock per key
/// serialises them across instances. Taken in one order (by lock id), so two transactions
/// that share keys cannot wait on each other.
async fn lock_throttle(tx: &mut Transaction<'_, Postgres>, keys: &[&str]) -> StoreResult<()> {
    let mut ids: Vec<i32> = keys.iter().map(|k| lock_key(&[k])).collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(THROTTLE_LOCK)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
    }
    Ok(())
}

/// Serialises read-then-write transactions on one user's registration across instances.
async fn lock_user(tx: &mut Transaction<'_, Postgres>, user_id: &str) -> StoreResult<()> {
    advisory_lock(tx, USER_LOCK, &[user_id]).await
}

crate::finish_sql::impl_finish_store!(PgStore);
crate::audit_sql::impl_audit_store!(PgStore, Postgres);
crate::reminder_sql::impl_reminder_store!(PgStore);
crate::skip_sql::impl_skip_store!(PgStore);
crate::export_sql::impl_export_store!(PgStore);
crate::user_import_sql::impl_user_import!(PgStore);
crate::recovery_sql::impl_recovery_store!(PgStore, Postgres);
crate::step_sql::impl_step_store!(PgStore, Postgres);
crate::ceremony_sql::impl_ceremony_store!(PgStore);

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "INSERT INTO heartbeat (id, at) VALUES (1, EXTRACT(EPOCH FROM now())::BIGINT)
             ON CONFLICT (id) DO UPDATE SET at = GREATEST(excluded.at, heartbeat.at + 1)",
        )
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn load_policy(&self) -> StoreResult<Option<Policy>> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM policy WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        match body {
            None => Ok(None),
            Some(b) => serde_json::from_str(&b)
                .map(Some)
                .map_err(|e| StoreError(format!("stored policy does not parse: {e}"))),
        }
    }

    async fn save_policy(&self, policy: &Policy, now: UnixTime) -> StoreResult<()> {
        let body = serde_json::to_string(policy).map_err(|e| StoreError(e.to_string()))?;
        sqlx::query(
            "INSERT INTO policy (id, body, updated_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(body)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn flow(&self, id: &str) -> StoreResult<Option<FlowRecord>> {
        let row = sqlx::query("SELECT * FROM flows WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(flow_from).transpose()
    }

    // The single conditional UPDATEs below are race-free as they stand: a second writer
    // blocks on the row lock, then PostgreSQL re-evaluates the WHERE clause against the
    // committed row and matches nothing.
    async fn flow_questions(&self, id: &str, questions: &[String]) -> StoreResult<()> {
        sqlx::query("UPDATE flows SET questions = $1 WHERE id = $2")
            .bind(join(questions))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn flow_transition(&self, id: &str, from: FlowState, to: FlowState) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE flows SET state = $1 WHERE id = $2 AND state = $3")
            .bind(to.as_str())
            .bind(id)
            .bind(from.as_str())
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn close_other_flows(&self, user_id: &str, keep: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE flows SET state = 'completed' WHERE user_id = $1 AND id <> $2 AND state IN ('verifying', 'verified')",
        )
        .bind(user_id)
        .bind(keep)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn latest_code(&self, owner: &str, purpose: &str) -> StoreResult<Option<CodeRecord>> {
        let row = sqlx::query(
            "SELECT * FROM codes WHERE owner = $1 AND purpose = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(owner)
        .bind(purpose)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(code_from).transpose()
    }

    async fn code_attempt_failed(&self, id: i64) -> StoreResult<()> {
        sqlx::query("UPDATE codes SET attempts = attempts + 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn code_delivery_failed(&self, id: i64) -> StoreResult<()> {
        sqlx::query("UPDATE codes SET delivery_failed = TRUE WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn block(&self, key: &str, until: UnixTime) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO throttle_blocks (key, until) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET until = GREATEST(throttle_blocks.until, excluded.until)",
        )
        .bind(key)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn blocked_until(&self, key: &str, now: UnixTime) -> StoreResult<Option<UnixTime>> {
        sqlx::query_scalar("SELECT until FROM throttle_blocks WHERE key = $1 AND until > $2")
            .bind(key)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)
    }

    async fn clear_throttle(&self, keys: &[String]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        for k in keys {
            sqlx::query("DELETE FROM throttle_hits WHERE key = $1")
                .bind(k)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            sqlx::query("DELETE FROM throttle_blocks WHERE key = $1")
                .bind(k)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn clear_throttle_prefix(&self, prefix: &str) -> StoreResult<()> {
        // substr, not LIKE: a key may hold `%` or `_` (it holds what users typed).
        let mut tx = self.pool.begin().await.map_err(err)?;
        for sql in crate::purge_sql::CLEAR_THROTTLE_PREFIX {
            sqlx::query(sql)
                .bind(prefix)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn methods(&self, user_id: &str) -> StoreResult<Vec<MethodRecord>> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the database's collation.
        let rows = sqlx::query(
            r#"SELECT * FROM methods WHERE user_id = $1 ORDER BY method COLLATE "C", status COLLATE "C""#,
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                let method: String = r.try_get("method").map_err(err)?;
                let status: String = r.try_get("status").map_err(err)?;
                Ok(MethodRecord {
                    user_id: r.try_get("user_id").map_err(err)?,
                    method: Method::parse(&method)
                        .ok_or_else(|| StoreError(format!("unknown method {method}")))?,
                    status: if status == "active" {
                        MethodStatus::Active
                    } else {
                        MethodStatus::Pending
                    },
                    value: r.try_get("value").map_err(err)?,
                    created_at: r.try_get("created_at").map_err(err)?,
                    verified_at: r.try_get("verified_at").map_err(err)?,
                })
            })
            .collect()
    }

    // put_method, activate_method, delete_method and put_answers each read-then-write several
    // rows of one user. SQLite runs them one at a time; here a per-user advisory lock does, so
    // e.g. two activations cannot delete the address the other one just activated.

    async fn put_method(&self, m: &MethodRecord) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        advisory_lock(&mut tx, USER_LOCK, &[&m.user_id]).await?;
        ensure_registration(&mut tx, &m.user_id).await?;
        sqlx::query(
            "INSERT INTO methods (user_id, method, status, value, created_at, verified_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, method, status) DO UPDATE SET value = excluded.value, created_at = excluded.created_at,
                 verified_at = excluded.verified_at",
        )
        .bind(&m.user_id)
        .bind(m.method.as_str())
        .bind(m.status.as_str())
        .bind(&m.value)
        .bind(m.created_at)
        .bind(m.verified_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn activate_method(
        &self,
        user_id: &str,
        method: Method,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        advisory_lock(&mut tx, USER_LOCK, &[user_id]).await?;
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM methods WHERE user_id = $1 AND method = $2 AND status = 'pending'")
            .bind(user_id)
            .bind(method.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        if pending == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM methods WHERE user_id = $1 AND method = $2 AND status = 'active'")
            .bind(user_id)
            .bind(method.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query("UPDATE methods SET status = 'active', verified_at = $3 WHERE user_id = $1 AND method = $2 AND status = 'pending'")
            .bind(user_id)
            .bind(method.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn delete_method(&self, user_id: &str, method: Method) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        advisory_lock(&mut tx, USER_LOCK, &[user_id]).await?;
        let r = sqlx::query("DELETE FROM methods WHERE user_id = $1 AND method = $2")
            .bind(user_id)
            .bind(method.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        if method == Method::RecoveryCode {
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        if method == Method::Questions {
            sqlx::query("DELETE FROM answers WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn answers(&self, user_id: &str) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            r#"SELECT question_id, answer_hash FROM answers WHERE user_id = $1 ORDER BY question_id COLLATE "C""#,
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("question_id").map_err(err)?,
                    r.try_get("answer_hash").map_err(err)?,
                ))
            })
            .collect()
    }

    async fn put_answers(
        &self,
        user_id: &str,
        answers: &[(String, String)],
        now: UnixTime,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        advisory_lock(&mut tx, USER_LOCK, &[user_id]).await?;
        ensure_registration(&mut tx, user_id).await?;
        sqlx::query("DELETE FROM answers WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        for (q, h) in answers {
            sqlx::query(
                "INSERT INTO answers (user_id, question_id, answer_hash) VALUES ($1, $2, $3)",
            )
            .bind(user_id)
            .bind(q)
            .bind(h)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        sqlx::query(
            "INSERT INTO methods (user_id, method, status, value, created_at, verified_at) VALUES ($1, 'questions', 'active', '', $2, $2)
             ON CONFLICT (user_id, method, status) DO UPDATE SET verified_at = excluded.verified_at",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn confirmed_at(&self, user_id: &str) -> StoreResult<Option<UnixTime>> {
        let v: Option<Option<i64>> =
            sqlx::query_scalar("SELECT confirmed_at FROM registrations WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        Ok(v.flatten())
    }

    async fn confirm(&self, user_id: &str, now: UnixTime) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO registrations (user_id, confirmed_at) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET confirmed_at = excluded.confirmed_at",
        )
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (id, user_id, login, display_name, groups, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&s.id)
            .bind(&s.user_id)
            .bind(&s.login)
            .bind(&s.display_name)
            .bind(serde_json::to_string(&s.groups).unwrap_or_else(|_| "[]".into()))
            .bind(s.expires_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        let Some(r) = row else { return Ok(None) };
        let groups: String = r.try_get("groups").map_err(err)?;
        Ok(Some(SessionRecord {
            id: r.try_get("id").map_err(err)?,
            user_id: r.try_get("user_id").map_err(err)?,
            login: r.try_get("login").map_err(err)?,
            display_name: r.try_get("display_name").map_err(err)?,
            groups: serde_json::from_str(&groups).unwrap_or_default(),
            expires_at: r.try_get("expires_at").map_err(err)?,
        }))
    }

    async fn delete_session(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn enqueue(&self, m: &OutboxMessage) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let id = insert_outbox(&mut tx, m).await?;
        tx.commit().await.map_err(err)?;
        Ok(id)
    }

    async fn claim_outbox(
        &self,
        now: UnixTime,
        lease: i64,
        limit: u32,
        channel: Option<Channel>,
    ) -> StoreResult<Vec<OutboxMessage>> {
        // After waiting for a row, the outer UPDATE re-checks only `id = ANY(…)`, so the due
        // test must lock in the sub-select: FOR UPDATE makes it wait for a row another worker
        // is claiming and re-test it (it is leased by then, so it drops out); SKIP LOCKED
        // skips such rows instead of waiting, so workers on different instances take disjoint
        // batches without queueing behind each other. ARRAY(…) makes the sub-select an
        // InitPlan, run exactly once; under `IN (…)` the planner may re-scan it.
        //
        // Due messages and lapsed leases are each walked in order on `outbox_claim` and cut
        // at the limit before they are merged: a claim reads about `limit` rows however long
        // the queue. Both are ordered by when they were due, so a message whose worker died
        // keeps its place. FOR UPDATE is not allowed in a UNION's members, hence the CTEs;
        // rows the merge leaves out stay locked only until this statement commits. Without a
        // channel (tests, one-off tools) the walk is per status only.
        let sql = if channel.is_some() {
            "WITH due AS MATERIALIZED (
                 SELECT id, next_attempt_at AS t FROM outbox
                  WHERE status = 'queued' AND channel = $4 AND next_attempt_at <= $2
                  ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),
             lapsed AS MATERIALIZED (
                 SELECT id, next_attempt_at AS t FROM outbox
                  WHERE status = 'sending' AND channel = $4 AND lease_until <= $2
                  ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1
             WHERE id = ANY(ARRAY(SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM lapsed) AS c
                                  ORDER BY t, id LIMIT $3))
             RETURNING *"
        } else {
            "UPDATE outbox SET status = 'sending', lease_until = $1, attempts = attempts + 1
             WHERE id = ANY(ARRAY(SELECT id FROM outbox
                          WHERE ((status = 'queued' AND next_attempt_at <= $2) OR (status = 'sending' AND lease_until <= $2))
                            AND $4::text IS NULL
                          ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED))
             RETURNING *"
        };
        let rows = sqlx::query(sql)
            .bind(now + lease)
            .bind(now)
            .bind(i64::from(limit))
            .bind(channel.map(|c| c.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let mut out: Vec<OutboxMessage> =
            rows.iter().map(outbox_from).collect::<StoreResult<_>>()?;
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    async fn outbox_release(&self, ids: &[i64]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE outbox SET status = 'queued', lease_until = 0, attempts = GREATEST(attempts - 1, 0)
             WHERE id = ANY($1) AND status = 'sending'",
        )
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn outbox_sent(&self, id: i64, keep_body: bool) -> StoreResult<()> {
        let sql = if keep_body {
            "UPDATE outbox SET status = 'sent', last_error = '' WHERE id = $1"
        } else {
            // The body may hold a code: once delivered it has no business staying here.
            "UPDATE outbox SET status = 'sent', last_error = '', body = '' WHERE id = $1"
        };
        sqlx::query(sql)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn outbox_failed(
        &self,
        id: i64,
        retry_at: Option<UnixTime>,
        error: &str,
    ) -> StoreResult<()> {
        match retry_at {
            Some(at) => sqlx::query("UPDATE outbox SET status = 'queued', next_attempt_at = $2, last_error = $3 WHERE id = $1")
                .bind(id)
                .bind(at)
                .bind(error)
                .execute(&self.pool)
                .await
                .map_err(err)?,
            None => sqlx::query("UPDATE outbox SET status = 'failed', last_error = $2, body = '' WHERE id = $1")
                .bind(id)
                .bind(error)
                .execute(&self.pool)
                .await
                .map_err(err)?,
        };
        Ok(())
    }

    async fn outbox_list(&self, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
        let rows = sqlx::query("SELECT * FROM outbox ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(outbox_from).collect()
    }

    async fn outbox_backlog(&self) -> StoreResult<(u64, Option<UnixTime>)> {
        let (n, oldest): (i64, Option<i64>) = sqlx::query_as(crate::purge_sql::OUTBOX_BACKLOG)
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok((u64::try_from(n).unwrap_or(0), oldest))
    }

    async fn insert_admin_token(&self, t: &AdminToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO admin_tokens (token_hash, name, created_at, role) VALUES ($1, $2, $3, $4)",
        )
        .bind(&t.token_hash)
        .bind(&t.name)
        .bind(t.created_at)
        .bind(&t.role)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn admin_token(&self, token_hash: &str) -> StoreResult<Option<AdminToken>> {
        let row = sqlx::query(
            "SELECT name, token_hash, created_at, role FROM admin_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        row.as_ref().map(admin_token_from).transpose()
    }

    async fn admin_tokens(&self) -> StoreResult<Vec<AdminToken>> {
        let rows = sqlx::query(
            "SELECT name, token_hash, created_at, role FROM admin_tokens ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(admin_token_from).collect()
    }

    async fn registration_ids(&self) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT user_id FROM methods UNION SELECT user_id FROM answers UNION SELECT user_id FROM registrations ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }

    async fn totp_last_step(&self, user_id: &str) -> StoreResult<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT totp_last_step FROM registrations WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        Ok(v.unwrap_or(0))
    }

    async fn purge_expired(&self, now: UnixTime) -> StoreResult<u64> {
        let mut n = 0;
        for (sql, cutoff) in crate::purge_sql::statements(now) {
            n += sqlx::query(sql)
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .map_err(err)?
                .rows_affected();
        }
        Ok(n)
    }
}

/// Held to the end of the caller's transaction: appends to the audit chain go one at a time.
async fn lock_audit_chain(conn: &mut sqlx::PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    Ok(())
}

async fn insert_outbox(tx: &mut Transaction<'_, Postgres>, m: &OutboxMessage) -> StoreResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO outbox (channel, recipient, subject, body, status, attempts, created_at, next_attempt_at, code_id, flow_id, target)
         VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(m.channel.as_str())
    .bind(&m.recipient)
    .bind(&m.subject)
    .bind(&m.body)
    .bind(m.created_at)
    .bind(m.next_attempt_at)
    .bind(m.code_id)
    .bind(&m.flow_id)
    .bind(&m.target)
    .fetch_one(&mut **tx)
    .await
    .map_err(err)
}

#[async_trait]
impl UserStore for PgStore {
    async fn insert_user(&self, u: &UserRecord, now: UnixTime) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let r = sqlx::query(
            "INSERT INTO dir_users (id, display_name, enabled, locked, password_hash, email, mobile, created_at, password_changed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&u.id)
        .bind(&u.display_name)
        .bind(u.enabled)
        .bind(u.locked)
        .bind(&u.password_hash)
        .bind(&u.email)
        .bind(&u.mobile)
        .bind(now)
        .bind(u.password_changed_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        for g in &u.groups {
            sqlx::query(
                "INSERT INTO dir_groups (user_id, grp) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&u.id)
            .bind(g)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(true)
    }

    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        // One statement that always returns one row, NULLs for an unknown id, with the groups
        // looked up either way: a known and an unknown login cost the same work, so the time
        // of a flow start or a sign-in does not tell whether the account exists.
        let r = sqlx::query(
            "SELECT u.*, ARRAY(SELECT grp FROM dir_groups WHERE user_id = w.id ORDER BY grp) AS grps
             FROM (SELECT $1::text AS id) AS w LEFT JOIN dir_users AS u ON u.id = w.id",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        let groups: Vec<String> = r.try_get("grps").map_err(err)?;
        if r.try_get::<Option<String>, _>("id").map_err(err)?.is_none() {
            return Ok(None);
        }
        user_from(&r, groups).map(Some)
    }

    async fn users_changed_before(&self, before: UnixTime) -> StoreResult<Vec<UserRecord>> {
        let rows =
            sqlx::query("SELECT * FROM dir_users WHERE password_changed_at < $1 ORDER BY id")
                .bind(before)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        let pairs = sqlx::query(
            "SELECT user_id, grp FROM dir_groups WHERE user_id IN
               (SELECT id FROM dir_users WHERE password_changed_at < $1)
             ORDER BY user_id, grp",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        let mut groups: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for p in &pairs {
            groups
                .entry(p.try_get("user_id").map_err(err)?)
                .or_default()
                .push(p.try_get("grp").map_err(err)?);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id").map_err(err)?;
                user_from(r, groups.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    async fn set_user_flag(&self, id: &str, flag: UserFlag, value: bool) -> StoreResult<bool> {
        let sql = match flag {
            UserFlag::Enabled => "UPDATE dir_users SET enabled = $1 WHERE id = $2",
            UserFlag::Locked => "UPDATE dir_users SET locked = $1 WHERE id = $2",
        };
        let r = sqlx::query(sql)
            .bind(value)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn expire_user_password(&self, id: &str) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE dir_users SET password_changed_at = 0 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_user_password(
        &self,
        id: &str,
        hash: &str,
        now: UnixTime,
        keep: usize,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // The old hash moves into the history in the same transaction that replaces it.
        sqlx::query("INSERT INTO dir_history (user_id, hash, at) SELECT id, password_hash, $2 FROM dir_users WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query("UPDATE dir_users SET password_hash = $1, locked = $2, password_changed_at = $3 WHERE id = $4")
            .bind(hash)
            .bind(false)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query(
            "DELETE FROM dir_history WHERE user_id = $1 AND hash NOT IN
             (SELECT hash FROM dir_history WHERE user_id = $1 ORDER BY at DESC LIMIT $2)",
        )
        .bind(id)
        .bind(keep as i64)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn password_history(&self, id: &str, n: usize) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT hash FROM dir_history WHERE user_id = $1 ORDER BY at DESC LIMIT $2",
        )
        .bind(id)
        .bind(n as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }

    async fn existing_user_ids(&self, ids: &[String]) -> StoreResult<Vec<String>> {
        self.existing_user_ids_sql(ids).await
    }

    async fn import_users(
        &self,
        users: &[UserRecord],
        audit: &sspr_app::ports::ImportAudit,
        now: UnixTime,
        progress: &(dyn Fn(usize) + Sync),
    ) -> StoreResult<()> {
        self.import_users_sql(users, audit, now, progress).await
    }

    async fn upgrade_user_hash(&self, id: &str, old: &str, new: &str) -> StoreResult<bool> {
        self.upgrade_user_hash_sql(id, old, new).await
    }
}

fn user_from(r: &PgRow, groups: Vec<String>) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: r.try_get("id").map_err(err)?,
        display_name: r.try_get("display_name").map_err(err)?,
        enabled: r.try_get::<bool, _>("enabled").map_err(err)?,
        locked: r.try_get::<bool, _>("locked").map_err(err)?,
        password_hash: r.try_get("password_hash").map_err(err)?,
        email: r.try_get("email").map_err(err)?,
        mobile: r.try_get("mobile").map_err(err)?,
        password_changed_at: r.try_get("password_changed_at").map_err(err)?,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in [
            "sspr",
            "t_1a2b",
            "_x",
            "a23456789012345678901234567890123456789012345678901234567890123",
        ] {
            assert!(plain_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "1x",
            "Sspr",
            "a-b",
            "a b",
            "a,public",
            "pg_temp",
            "\"x\"",
            "a234567890123456789012345678901234567890123456789012345678901234",
        ] {
            assert!(!plain_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn lock_keys_separate_the_parts() {
        assert_ne!(lock_key(&["ab", "c"]), lock_key(&["a", "bc"]));
        assert_eq!(lock_key(&["u"]), lock_key(&["u"]));
    }
}
