//! Password-expiry reminders ([`sspr_app::ports::ReminderStore`]) in SQL that SQLite and
//! PostgreSQL both run unchanged: written once here, expanded in each store's module, where
//! `insert_audit`, `insert_outbox` and `err` are that database's own.

macro_rules! impl_reminder_store {
    ($store:ty) => {
        #[async_trait]
        impl sspr_app::ports::ReminderStore for $store {
            async fn queue_reminder(
                &self,
                r: &sspr_app::ports::Reminder,
                messages: &[OutboxMessage],
                event: &AuditEvent,
            ) -> StoreResult<bool> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                // The primary key decides: of any number of instances, one inserts the row.
                let fresh = sqlx::query(
                    "INSERT INTO password_reminders (user_id, expires_at, days, sent_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&r.user_id)
                .bind(r.expires_at)
                .bind(i64::from(r.days))
                .bind(r.sent_at)
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected()
                    == 1;
                if !fresh {
                    return Ok(false);
                }
                for m in messages {
                    insert_outbox(&mut tx, m).await?;
                }
                insert_audit(&mut tx, event).await?;
                tx.commit().await.map_err(err)?;
                Ok(true)
            }

            async fn reminder_sent(
                &self,
                user_id: &str,
                expires_at: UnixTime,
                days: u32,
            ) -> StoreResult<bool> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM password_reminders
                     WHERE user_id = $1 AND expires_at = $2 AND days = $3",
                )
                .bind(user_id)
                .bind(expires_at)
                .bind(i64::from(days))
                .fetch_one(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(n > 0)
            }

            async fn reminders(&self) -> StoreResult<Vec<sspr_app::ports::Reminder>> {
                let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT user_id, expires_at, CAST(days AS BIGINT), sent_at FROM password_reminders
                     ORDER BY user_id, expires_at, days",
                )
                .fetch_all(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(user_id, expires_at, days, sent_at)| sspr_app::ports::Reminder {
                            user_id,
                            expires_at,
                            days: u32::try_from(days).unwrap_or(0),
                            sent_at,
                        },
                    )
                    .collect())
            }

            async fn record_reminder(&self, r: &sspr_app::ports::Reminder) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO password_reminders (user_id, expires_at, days, sent_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&r.user_id)
                .bind(r.expires_at)
                .bind(i64::from(r.days))
                .bind(r.sent_at)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_reminder_store;
