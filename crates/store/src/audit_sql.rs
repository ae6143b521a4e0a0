//! The audit log ([`sspr_app::ports::AuditStore`]) in SQL that SQLite and PostgreSQL both run
//! unchanged: written once here, expanded in each store's module, where `audit_from`,
//! `lock_audit_chain` (what holds the chain's end until commit) and `err` are that database's
//! own. `insert_audit` and `insert_audit_batch`, defined here, are what the other shared
//! modules append with.
//!
//! Queries stay fast at millions of events because each one walks an index in the order it
//! returns, and stops after one page: every filter column has an index `(column, at)` (with
//! the id after it), a page newest first is `ORDER BY at DESC, id DESC LIMIT n`, and the next
//! page starts below a keyset cursor `(at, id)`, never at an offset. A user's events are the
//! union of two such walks (as target, as actor), not an `OR` that no index serves.

/// The filter columns in the order their index is preferred when several are given: the most
/// selective first. Only the first one given is compared as the bare column (which its index
/// serves); the others as `column || ''`, which no index serves, so that the planner, without
/// statistics, does not walk a large index (say, every success) for a rare value.
pub(crate) fn audit_conditions(f: &sspr_app::ports::AuditFilter) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(v) = &f.support_code {
        out.push(("support_code", v.clone()));
    }
    if let Some(v) = &f.client_ip {
        out.push(("client_ip", v.clone()));
    }
    if let Some(v) = f.activity {
        out.push(("activity", v.as_str().to_string()));
    }
    if let Some(v) = f.client_type {
        out.push(("client_type", v.as_str().to_string()));
    }
    if let Some(v) = f.outcome {
        out.push(("outcome", v.as_str().to_string()));
    }
    out
}

macro_rules! impl_audit_store {
    ($store:ty, $db:ty) => {
        /// Appends the filter's conditions after a `WHERE`; `indexed` says whether the first
        /// equality may use its index (not when a user's index already leads).
        fn push_audit_conditions(
            qb: &mut sqlx::QueryBuilder<$db>,
            f: &AuditFilter,
            indexed: bool,
        ) {
            if let Some(v) = f.since {
                qb.push(" AND at >= ").push_bind(v);
            }
            if let Some(v) = f.until {
                qb.push(" AND at < ").push_bind(v);
            }
            for (i, (col, v)) in crate::audit_sql::audit_conditions(f).into_iter().enumerate() {
                if i == 0 && indexed {
                    qb.push(format!(" AND {col} = ")).push_bind(v);
                } else {
                    qb.push(format!(" AND {col} || '' = ")).push_bind(v);
                }
            }
            if let Some(c) = f.before {
                qb.push(" AND (at, id) < (")
                    .push_bind(c.at)
                    .push(", ")
                    .push_bind(c.id)
                    .push(")");
            }
        }

        fn chained_from(r: &<$db as sqlx::Database>::Row) -> StoreResult<ChainedEvent> {
            let event = audit_from(r)?;
            Ok(ChainedEvent {
                chain: r.try_get("chain").map_err(err)?,
                details_text: r.try_get("details").map_err(err)?,
                event,
            })
        }

        fn checkpoint_from(r: &<$db as sqlx::Database>::Row) -> StoreResult<AuditCheckpoint> {
            Ok(AuditCheckpoint {
                id: r.try_get("id").map_err(err)?,
                at: r.try_get("at").map_err(err)?,
                kind: r.try_get("kind").map_err(err)?,
                last_id: r.try_get("last_id").map_err(err)?,
                chain: r.try_get("chain").map_err(err)?,
                mac: r.try_get("mac").map_err(err)?,
            })
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn audit(&self, e: &AuditEvent) -> StoreResult<()> {
                // A transaction of its own: the chain's read of the event before and the
                // append must not be split by another writer.
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                insert_audit(&mut tx, e).await?;
                tx.commit().await.map_err(err)
            }

            async fn audit_query(&self, f: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
                let limit = i64::from(if f.limit == 0 {
                    1000
                } else {
                    f.limit.min(100_000)
                });
                if let Some(after) = f.after_id {
                    let mut qb =
                        sqlx::QueryBuilder::<$db>::new("SELECT * FROM audit WHERE id > ");
                    qb.push_bind(after);
                    if let Some(u) = &f.user {
                        qb.push(" AND (target = ")
                            .push_bind(u.clone())
                            .push(" OR actor = ")
                            .push_bind(u.clone())
                            .push(")");
                    }
                    push_audit_conditions(&mut qb, f, true);
                    qb.push(" ORDER BY id ASC LIMIT ").push_bind(limit);
                    let rows = qb.build().fetch_all(&mut *self.reader().await?).await.map_err(err)?;
                    return rows.iter().map(audit_from).collect();
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new("");
                match &f.user {
                    None => {
                        qb.push("SELECT * FROM audit WHERE 1 = 1");
                        push_audit_conditions(&mut qb, f, true);
                    }
                    Some(u) => {
                        qb.push("SELECT * FROM (SELECT * FROM (SELECT * FROM audit WHERE target = ")
                            .push_bind(u.clone());
                        push_audit_conditions(&mut qb, f, false);
                        qb.push(" ORDER BY at DESC, id DESC LIMIT ")
                            .push_bind(limit)
                            .push(") t UNION SELECT * FROM (SELECT * FROM audit WHERE actor = ")
                            .push_bind(u.clone());
                        push_audit_conditions(&mut qb, f, false);
                        qb.push(" ORDER BY at DESC, id DESC LIMIT ")
                            .push_bind(limit)
                            .push(") a) u WHERE 1 = 1");
                    }
                }
                qb.push(" ORDER BY at DESC, id DESC LIMIT ").push_bind(limit);
                let rows = qb.build().fetch_all(&mut *self.reader().await?).await.map_err(err)?;
                let mut out: Vec<AuditEvent> =
                    rows.iter().map(audit_from).collect::<StoreResult<_>>()?;
                // Callers read a page oldest first, as a log reads.
                out.reverse();
                Ok(out)
            }

            async fn audit_chain_page(
                &self,
                after_id: i64,
                limit: u32,
            ) -> StoreResult<Vec<ChainedEvent>> {
                let rows = sqlx::query("SELECT * FROM audit WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after_id)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.reader().await?)
                    .await
                    .map_err(err)?;
                rows.iter().map(chained_from).collect()
            }

            async fn audit_head(&self) -> StoreResult<Option<(i64, Option<String>)>> {
                sqlx::query_as("SELECT id, chain FROM audit ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut *self.reader().await?)
                    .await
                    .map_err(err)
            }

            async fn audit_prune_end(
                &self,
                before: UnixTime,
                limit: u32,
            ) -> StoreResult<Option<(i64, Option<String>)>> {
                // Walks the time index, so a run with nothing to prune reads nothing. The
                // newest event always stays: the next one chains from it.
                sqlx::query_as(
                    "SELECT id, chain FROM audit WHERE id = (
                       SELECT max(id) FROM (SELECT id FROM audit
                                            WHERE at < $1 AND id < (SELECT max(id) FROM audit)
                                            ORDER BY at, id LIMIT $2) b)",
                )
                .bind(before)
                .bind(i64::from(limit))
                .fetch_optional(&mut *self.writer().await?)
                .await
                .map_err(err)
            }

            async fn audit_prune(&self, c: &AuditCheckpoint) -> StoreResult<u64> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let gone = sqlx::query("DELETE FROM audit WHERE id <= $1")
                    .bind(c.last_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                insert_checkpoint(&mut tx, c).await?;
                tx.commit().await.map_err(err)?;
                Ok(gone)
            }

            async fn insert_audit_checkpoint(&self, c: &AuditCheckpoint) -> StoreResult<()> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                insert_checkpoint(&mut tx, c).await?;
                tx.commit().await.map_err(err)
            }

            async fn audit_checkpoints(&self) -> StoreResult<Vec<AuditCheckpoint>> {
                let rows = sqlx::query("SELECT * FROM audit_checkpoints ORDER BY id")
                    .fetch_all(&mut *self.reader().await?)
                    .await
                    .map_err(err)?;
                rows.iter().map(checkpoint_from).collect()
            }
        }

        /// Appends `e` chained to the newest event: a batch of one, so that the lock, the read
        /// of the chain's end and the insert are written once.
        async fn insert_audit(
            conn: &mut <$db as sqlx::Database>::Connection,
            e: &AuditEvent,
        ) -> StoreResult<()> {
            insert_audit_batch(conn, std::slice::from_ref(e)).await
        }

        /// Appends `events` in their order, chained, in multi-row statements: every append,
        /// one event or a bulk write's many. On SQLite the caller's transaction began
        /// `IMMEDIATE`, so it holds the write lock; on PostgreSQL the chain's lock is taken
        /// here and held to the caller's commit.
        async fn insert_audit_batch(
            conn: &mut <$db as sqlx::Database>::Connection,
            events: &[AuditEvent],
        ) -> StoreResult<()> {
            lock_audit_chain(&mut *conn).await?;
            let prev: Option<Option<String>> =
                sqlx::query_scalar("SELECT chain FROM audit ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(err)?;
            let mut prev = prev.flatten();
            // 12 parameters a row: well under either database's limit.
            for chunk in events.chunks(1000) {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO audit (at, activity, actor, target, client_ip, client_type, outcome, reason, flow_id, support_code, details, chain) ",
                );
                qb.push_values(chunk, |mut b, e| {
                    let details = e.details.to_string();
                    let chain = sspr_app::audit_chain::link(prev.as_deref(), e, &details);
                    b.push_bind(e.at)
                        .push_bind(e.activity.as_str())
                        .push_bind(e.actor.clone())
                        .push_bind(e.target.clone())
                        .push_bind(e.client_ip.clone())
                        .push_bind(e.client_type.as_str())
                        .push_bind(e.outcome.as_str())
                        .push_bind(e.reason.clone())
                        .push_bind(e.flow_id.clone())
                        .push_bind(e.support_code.clone())
                        .push_bind(details)
                        .push_bind(chain.clone());
                    prev = Some(chain);
                });
                qb.build().execute(&mut *conn).await.map_err(err)?;
            }
            Ok(())
        }

        async fn insert_checkpoint(
            tx: &mut sqlx::Transaction<'_, $db>,
            c: &AuditCheckpoint,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO audit_checkpoints (at, kind, last_id, chain, mac)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(c.at)
            .bind(&c.kind)
            .bind(c.last_id)
            .bind(&c.chain)
            .bind(&c.mac)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            Ok(())
        }
    };
}

pub(crate) use impl_audit_store;
