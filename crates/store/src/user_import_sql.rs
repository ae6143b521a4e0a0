//! Bulk account import and hash upgrades for the built-in directory, in SQL that SQLite and
//! PostgreSQL both run unchanged: written once here, expanded in each store's module (where
//! `insert_audit_batch` and `err` are that database's own) and called from its `UserStore` impl.

/// Rows per multi-row `INSERT`: 9 parameters each stays under SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters, and a statement this size is well past the point
/// where round trips stop mattering.
pub(crate) const ROWS_PER_STATEMENT: usize = 1_000;

/// `($1, $2, …), ($k, …)` for `rows` rows of `cols` parameters.
pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 6);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

macro_rules! impl_user_import {
    ($store:ty) => {
        impl $store {
            async fn existing_user_ids_sql(&self, ids: &[String]) -> StoreResult<Vec<String>> {
                let mut taken = Vec::new();
                for chunk in ids.chunks(crate::user_import_sql::ROWS_PER_STATEMENT) {
                    let list = crate::user_import_sql::placeholders(1, chunk.len());
                    let sql = format!("SELECT id FROM dir_users WHERE id IN {list}");
                    let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
                    for id in chunk {
                        q = q.bind(id);
                    }
                    taken.extend(q.fetch_all(&mut *self.reader().await?).await.map_err(err)?);
                }
                Ok(taken)
            }

            async fn import_users_sql(
                &self,
                users: &[UserRecord],
                audit: &sspr_app::ports::ImportAudit,
                now: UnixTime,
                progress: &(dyn Fn(usize) + Sync),
            ) -> StoreResult<()> {
                // One transaction for the whole file: if any statement fails, the rollback
                // leaves no account of it behind (dropping `tx` without commit rolls back).
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let mut done = 0;
                for chunk in users.chunks(crate::user_import_sql::ROWS_PER_STATEMENT) {
                    // A plain INSERT: an id taken since the check fails the whole import
                    // rather than skipping that line.
                    let sql = format!(
                        "INSERT INTO dir_users (id, display_name, enabled, locked, password_hash, email, mobile, created_at, password_changed_at) VALUES {}",
                        crate::user_import_sql::placeholders(chunk.len(), 9)
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for u in chunk {
                        q = q
                            .bind(&u.id)
                            .bind(&u.display_name)
                            .bind(u.enabled)
                            .bind(u.locked)
                            .bind(&u.password_hash)
                            .bind(&u.email)
                            .bind(&u.mobile)
                            .bind(now)
                            .bind(u.password_changed_at);
                    }
                    q.execute(&mut *tx).await.map_err(err)?;
                    let pairs: Vec<(&str, &str)> = chunk
                        .iter()
                        .flat_map(|u| u.groups.iter().map(move |g| (u.id.as_str(), g.as_str())))
                        .collect();
                    for part in pairs.chunks(crate::user_import_sql::ROWS_PER_STATEMENT * 4) {
                        let sql = format!(
                            "INSERT INTO dir_groups (user_id, grp) VALUES {} ON CONFLICT DO NOTHING",
                            crate::user_import_sql::placeholders(part.len(), 2)
                        );
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                        for (id, g) in part {
                            q = q.bind(*id).bind(*g);
                        }
                        q.execute(&mut *tx).await.map_err(err)?;
                    }
                    done += chunk.len();
                    progress(done);
                }
                // The audit events last, multi-row and chained: the chain's lock (PostgreSQL)
                // is held from here to the commit only, not through the whole file.
                for chunk in users.chunks(crate::user_import_sql::ROWS_PER_STATEMENT) {
                    let events: Vec<_> = chunk.iter().map(audit).collect();
                    insert_audit_batch(&mut tx, &events).await?;
                }
                tx.commit().await.map_err(err)
            }

            async fn upgrade_user_hash_sql(
                &self,
                id: &str,
                old: &str,
                new: &str,
            ) -> StoreResult<bool> {
                // Not while a reset of this account is writing: the hash is the reset's
                // password stamp, and a changed stamp would tell its recovery after a crash
                // that the new password had landed.
                let r = sqlx::query(
                    "UPDATE dir_users SET password_hash = $1 WHERE id = $2 AND password_hash = $3
                     AND NOT EXISTS (SELECT 1 FROM flows WHERE user_id = $2 AND state = 'finishing')",
                )
                .bind(new)
                .bind(id)
                .bind(old)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(r.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use impl_user_import;
