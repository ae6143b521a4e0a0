//! Passkey ceremonies ([`sspr_app::ports::CeremonyStore`]) in SQL that SQLite and PostgreSQL
//! both run unchanged: written once here, expanded in each store's module.

macro_rules! impl_ceremony_store {
    ($store:ty) => {
        #[async_trait]
        impl sspr_app::ports::CeremonyStore for $store {
            async fn put_ceremony(
                &self,
                id: &str,
                owner: &str,
                state: &str,
                expires_at: UnixTime,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO webauthn_ceremonies (id, owner, state, expires_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET owner = excluded.owner,
                         state = excluded.state, expires_at = excluded.expires_at",
                )
                .bind(id)
                .bind(owner)
                .bind(state)
                .bind(expires_at)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(())
            }

            async fn take_ceremony(&self, id: &str, now: UnixTime) -> StoreResult<Option<String>> {
                // The delete is the claim: of concurrent callers, one gets the row.
                let row: Option<(String, i64)> = sqlx::query_as(
                    "DELETE FROM webauthn_ceremonies WHERE id = $1 RETURNING state, expires_at",
                )
                .bind(id)
                .fetch_optional(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(row
                    .filter(|(_, expires_at)| *expires_at > now)
                    .map(|(state, _)| state))
            }
        }
    };
}

pub(crate) use impl_ceremony_store;
