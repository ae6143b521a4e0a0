//! Registration skips ([`sspr_app::ports::SkipStore`]) in SQL that SQLite and PostgreSQL both
//! run unchanged: written once here, expanded in each store's module.

macro_rules! impl_skip_store {
    ($store:ty) => {
        #[async_trait]
        impl sspr_app::ports::SkipStore for $store {
            async fn registration_skips(&self, user_id: &str) -> StoreResult<u32> {
                let n: Option<i64> =
                    sqlx::query_scalar("SELECT CAST(skips AS BIGINT) FROM registration_skips WHERE user_id = $1")
                        .bind(user_id)
                        .fetch_optional(&mut *self.reader().await?)
                        .await
                        .map_err(err)?;
                Ok(n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
            }

            async fn skip_registration(
                &self,
                user_id: &str,
                now: UnixTime,
                max: u32,
            ) -> StoreResult<Option<u32>> {
                if max == 0 {
                    return Ok(None);
                }
                // One statement, so that of any number of concurrent sign-ins on any instance
                // at most `max` are counted: the update's condition is checked on the row it
                // locks, and a first skip inserts.
                let n: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO registration_skips (user_id, skips, last_at) VALUES ($1, 1, $2)
                     ON CONFLICT (user_id) DO UPDATE
                       SET skips = registration_skips.skips + 1, last_at = excluded.last_at
                       WHERE registration_skips.skips < $3
                     RETURNING CAST(skips AS BIGINT)",
                )
                .bind(user_id)
                .bind(now)
                .bind(i64::from(max))
                .fetch_optional(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
            }

            async fn set_registration_skips(
                &self,
                user_id: &str,
                skips: u32,
                at: UnixTime,
            ) -> StoreResult<()> {
                if skips == 0 {
                    sqlx::query("DELETE FROM registration_skips WHERE user_id = $1")
                        .bind(user_id)
                        .execute(&mut *self.writer().await?)
                        .await
                        .map_err(err)?;
                    return Ok(());
                }
                sqlx::query(
                    "INSERT INTO registration_skips (user_id, skips, last_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE
                       SET skips = excluded.skips, last_at = excluded.last_at",
                )
                .bind(user_id)
                .bind(i64::from(skips))
                .bind(at)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(())
            }

            async fn all_registration_skips(&self) -> StoreResult<Vec<(String, u32, UnixTime)>> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(
                    "SELECT user_id, CAST(skips AS BIGINT), last_at FROM registration_skips ORDER BY user_id",
                )
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(err)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, n, at)| (id, u32::try_from(n).unwrap_or(u32::MAX), at))
                    .collect())
            }
        }
    };
}

pub(crate) use impl_skip_store;
