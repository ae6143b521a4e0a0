//! Saved recovery codes ([`sspr_app::ports::RecoveryStore`]) in SQL that SQLite and PostgreSQL
//! both run unchanged: written once here, expanded in each store's module, where `lock_user`,
//! `ensure_registration` and `err` are that database's own.

macro_rules! impl_recovery_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl sspr_app::ports::RecoveryStore for $store {
            async fn replace_recovery_codes(
                &self,
                user_id: &str,
                digests: &[String],
                now: UnixTime,
            ) -> StoreResult<()> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                lock_user(&mut tx, user_id).await?;
                ensure_registration(&mut tx, user_id).await?;
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                for d in digests {
                    sqlx::query(
                        "INSERT INTO recovery_codes (user_id, digest, created_at) VALUES ($1, $2, $3)",
                    )
                    .bind(user_id)
                    .bind(d)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                }
                sqlx::query(
                    "INSERT INTO methods (user_id, method, status, value, created_at, verified_at)
                     VALUES ($1, 'recovery_code', 'active', '', $2, $2)
                     ON CONFLICT (user_id, method, status)
                     DO UPDATE SET created_at = excluded.created_at, verified_at = excluded.verified_at",
                )
                .bind(user_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                tx.commit().await.map_err(err)
            }

            async fn use_recovery_code(
                &self,
                user_id: &str,
                digest: &str,
                now: UnixTime,
            ) -> StoreResult<sspr_app::ports::RecoveryUse> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let used = spend_recovery_code(&mut tx, user_id, digest, now).await?;
                if matches!(used, sspr_app::ports::RecoveryUse::Spent { .. }) {
                    tx.commit().await.map_err(err)?;
                }
                Ok(used)
            }

            async fn recovery_codes(&self, user_id: &str) -> StoreResult<Vec<String>> {
                sqlx::query_scalar(
                    "SELECT digest FROM recovery_codes
                     WHERE user_id = $1 AND used_at IS NULL ORDER BY digest",
                )
                .bind(user_id)
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(err)
            }
        }

        /// Spends the code with this digest within the caller's transaction (the caller
        /// commits only if it was spent). Spending the last code removes the method.
        async fn spend_recovery_code(
            tx: &mut sqlx::Transaction<'_, $db>,
            user_id: &str,
            digest: &str,
            now: UnixTime,
        ) -> StoreResult<sspr_app::ports::RecoveryUse> {
            use sspr_app::ports::RecoveryUse;
            lock_user(tx, user_id).await?;
            // The conditional update is the check: of concurrent callers, one sets used_at.
            let spent = sqlx::query(
                "UPDATE recovery_codes SET used_at = $3
                 WHERE user_id = $1 AND digest = $2 AND used_at IS NULL",
            )
            .bind(user_id)
            .bind(digest)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(err)?
            .rows_affected()
                == 1;
            if !spent {
                let known: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND digest = $2",
                )
                .bind(user_id)
                .bind(digest)
                .fetch_one(&mut **tx)
                .await
                .map_err(err)?;
                return Ok(if known > 0 {
                    RecoveryUse::UsedBefore
                } else {
                    RecoveryUse::Unknown
                });
            }
            let left: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
            )
            .bind(user_id)
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
            if left == 0 {
                sqlx::query("DELETE FROM methods WHERE user_id = $1 AND method = 'recovery_code'")
                    .bind(user_id)
                    .execute(&mut **tx)
                    .await
                    .map_err(err)?;
            }
            Ok(RecoveryUse::Spent {
                left: u32::try_from(left).unwrap_or(u32::MAX),
            })
        }
    };
}

pub(crate) use impl_recovery_store;
