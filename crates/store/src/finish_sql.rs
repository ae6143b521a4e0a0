//! The finish bracket ([`sspr_app::ports::FinishStore`]) in SQL that SQLite and PostgreSQL
//! both run unchanged: written once here, expanded in each store's module, where `flow_from`,
//! `insert_audit`, `insert_outbox` and `err` are that database's own.

macro_rules! impl_finish_store {
    ($store:ty) => {
        #[async_trait]
        impl FinishStore for $store {
            async fn flow_begin_finish(
                &self,
                id: &str,
                at: UnixTime,
                stamp: Option<&str>,
            ) -> StoreResult<bool> {
                let r = sqlx::query(
                    "UPDATE flows SET state = 'finishing', finishing_at = $1, dir_stamp = $2
                 WHERE id = $3 AND state = 'verified'",
                )
                .bind(at)
                .bind(stamp)
                .bind(id)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn flow_abort_finish(&self, id: &str, at: UnixTime) -> StoreResult<bool> {
                let r = sqlx::query(
                    "UPDATE flows SET state = 'verified'
                 WHERE id = $1 AND state = 'finishing' AND finishing_at = $2",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn flow_complete(&self, done: &Completion) -> StoreResult<()> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                sqlx::query("UPDATE flows SET state = 'completed' WHERE id = $1")
                    .bind(&done.flow_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                sqlx::query(
                    "UPDATE flows SET state = 'completed'
                 WHERE user_id = $1 AND id <> $2 AND state IN ('verifying', 'verified')",
                )
                .bind(&done.user_id)
                .bind(&done.flow_id)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                for k in &done.clear {
                    for sql in [
                        "DELETE FROM throttle_hits WHERE key = $1",
                        "DELETE FROM throttle_blocks WHERE key = $1",
                    ] {
                        sqlx::query(sql)
                            .bind(k)
                            .execute(&mut *tx)
                            .await
                            .map_err(err)?;
                    }
                }
                if done.end_sessions {
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                        .bind(&done.user_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
                insert_audit(&mut tx, &done.event).await?;
                for m in &done.notices {
                    insert_outbox(&mut tx, m).await?;
                }
                tx.commit().await.map_err(err)
            }

            async fn flows_finishing(
                &self,
                before: UnixTime,
                limit: u32,
            ) -> StoreResult<Vec<FlowRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM flows WHERE state = 'finishing' AND finishing_at < $1
                 ORDER BY finishing_at LIMIT $2",
                )
                .bind(before)
                .bind(limit as i64)
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(err)?;
                rows.iter().map(flow_from).collect()
            }

            async fn take_abandoned_flows(
                &self,
                now: UnixTime,
                limit: u32,
            ) -> StoreResult<Vec<FlowRecord>> {
                // One statement: two instances sweeping at once each get a disjoint set.
                let rows = sqlx::query(
                    "UPDATE flows SET state = 'abandoned'
                 WHERE id IN (SELECT id FROM flows
                              WHERE state IN ('verifying', 'verified') AND expires_at <= $1
                              ORDER BY expires_at LIMIT $2)
                   AND state IN ('verifying', 'verified')
                 RETURNING *",
                )
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                rows.iter().map(flow_from).collect()
            }
        }
    };
}

pub(crate) use impl_finish_store;
