//! The SIEM export's cursors ([`sspr_app::ports::ExportStore`]) in SQL that SQLite and
//! PostgreSQL both run unchanged: written once here, expanded in each store's module.

macro_rules! impl_export_store {
    ($store:ty) => {
        #[async_trait]
        impl sspr_app::ports::ExportStore for $store {
            async fn export_lease(
                &self,
                name: &str,
                holder: &str,
                now: UnixTime,
                until: UnixTime,
            ) -> StoreResult<Option<i64>> {
                // One statement: the update's condition is checked on the row it locks, so of
                // instances racing for an expired lease exactly one gets a row back.
                sqlx::query_scalar(
                    "INSERT INTO audit_export_cursor (name, last_id, holder, lease_until, updated_at)
                     VALUES ($1, 0, $2, $4, $3)
                     ON CONFLICT (name) DO UPDATE
                       SET holder = excluded.holder, lease_until = excluded.lease_until
                       WHERE audit_export_cursor.holder = excluded.holder
                          OR audit_export_cursor.lease_until < $3
                     RETURNING last_id",
                )
                .bind(name)
                .bind(holder)
                .bind(now)
                .bind(until)
                .fetch_optional(&mut *self.writer().await?)
                .await
                .map_err(err)
            }

            async fn export_advance(
                &self,
                name: &str,
                holder: &str,
                from: i64,
                to: i64,
                now: UnixTime,
            ) -> StoreResult<bool> {
                let r = sqlx::query(
                    "UPDATE audit_export_cursor SET last_id = $4, updated_at = $5
                     WHERE name = $1 AND holder = $2 AND last_id = $3",
                )
                .bind(name)
                .bind(holder)
                .bind(from)
                .bind(to)
                .bind(now)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(r.rows_affected() == 1)
            }

            async fn export_cursors(&self) -> StoreResult<Vec<(String, i64, UnixTime)>> {
                sqlx::query_as(
                    "SELECT name, last_id, updated_at FROM audit_export_cursor ORDER BY name",
                )
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(err)
            }
        }
    };
}

pub(crate) use impl_export_store;
