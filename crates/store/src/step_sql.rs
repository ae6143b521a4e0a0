//! A flow step's writes ([`sspr_app::ports::StepStore`]): rate-limit slots, a new flow with
//! its event, a proof spent with the flow's move and its event; each one transaction, in SQL
//! that SQLite and PostgreSQL both run unchanged (SQLite reads `TRUE` and `FALSE` as 1 and 0).
//! Written once here, expanded in each store's module, where `lock_throttle`,
//! `ensure_registration`, `spend_recovery_code`, `insert_audit` and `err` are that database's
//! own.

macro_rules! impl_step_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl sspr_app::ports::StepStore for $store {
            async fn take_slots(
                &self,
                slots: &[sspr_app::ports::Slot],
                now: UnixTime,
            ) -> StoreResult<Option<usize>> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let keys: Vec<&str> = slots.iter().map(|s| s.key.as_str()).collect();
                lock_throttle(&mut tx, &keys).await?;
                let mut full = None;
                for (i, s) in slots.iter().enumerate() {
                    let r = sqlx::query(
                        "INSERT INTO throttle_hits (key, at, n) SELECT $1, $2, 1
                         WHERE (SELECT COALESCE(SUM(n), 0) FROM throttle_hits
                                WHERE key = $1 AND at > $3) < $4
                         ON CONFLICT (key, at) DO UPDATE SET n = throttle_hits.n + 1",
                    )
                    .bind(&s.key)
                    .bind(now)
                    .bind(s.since)
                    .bind(i64::from(s.max))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                    if r.rows_affected() != 1 {
                        full = Some(i);
                        break;
                    }
                }
                tx.commit().await.map_err(err)?;
                Ok(full)
            }

            async fn hit(&self, key: &str, now: UnixTime) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO throttle_hits (key, at, n) VALUES ($1, $2, 1)
                     ON CONFLICT (key, at) DO UPDATE SET n = throttle_hits.n + 1",
                )
                .bind(key)
                .bind(now)
                .execute(&mut *self.writer().await?)
                .await
                .map_err(err)?;
                Ok(())
            }

            async fn hits_since(&self, key: &str, since: UnixTime) -> StoreResult<u32> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM throttle_hits
                     WHERE key = $1 AND at > $2",
                )
                .bind(key)
                .bind(since)
                .fetch_one(&mut *self.reader().await?)
                .await
                .map_err(err)?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            }

            async fn hit_within(
                &self,
                key: &str,
                now: UnixTime,
                since: UnixTime,
                max: u32,
            ) -> StoreResult<bool> {
                let slot = sspr_app::ports::Slot {
                    key: key.into(),
                    since,
                    max,
                };
                Ok(self.take_slots(&[slot], now).await?.is_none())
            }

            async fn insert_flow(&self, f: &FlowRecord) -> StoreResult<()> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                insert_flow_row(&mut tx, f).await?;
                tx.commit().await.map_err(err)
            }

            async fn start_flow(&self, f: &FlowRecord, event: &AuditEvent) -> StoreResult<()> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                insert_flow_row(&mut tx, f).await?;
                insert_audit(&mut tx, event).await?;
                tx.commit().await.map_err(err)
            }

            async fn consume_code(
                &self,
                id: i64,
                now: UnixTime,
                max_attempts: u32,
            ) -> StoreResult<bool> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let spent = spend_code(&mut tx, id, now, max_attempts).await?;
                tx.commit().await.map_err(err)?;
                Ok(spent)
            }

            async fn totp_use_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let spent = spend_totp_step(&mut tx, user_id, step).await?;
                tx.commit().await.map_err(err)?;
                Ok(spent)
            }

            async fn verify_step(
                &self,
                s: &sspr_app::ports::VerifiedStep,
            ) -> StoreResult<sspr_app::ports::StepResult> {
                use sspr_app::ports::{Proof, RecoveryUse, StepResult};
                // Every early return drops the transaction, which rolls it back: a refused
                // proof or a moved flow leaves nothing changed.
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let mut recovery_left = None;
                let mut event = s.event.clone();
                let spent = match &s.proof {
                    Proof::Code { id, max_attempts } => {
                        spend_code(&mut tx, *id, s.now, *max_attempts).await?
                    }
                    Proof::TotpStep { step } => spend_totp_step(&mut tx, &s.user_id, *step).await?,
                    Proof::RecoveryCode { digest } => {
                        match spend_recovery_code(&mut tx, &s.user_id, digest, s.now).await? {
                            RecoveryUse::Spent { left } => {
                                recovery_left = Some(left);
                                event.merge_details(serde_json::json!({ "codes_left": left }));
                                true
                            }
                            RecoveryUse::UsedBefore => false,
                            RecoveryUse::Unknown => return Ok(StepResult::ProofUnknown),
                        }
                    }
                    Proof::Nothing => true,
                };
                if !spent {
                    return Ok(StepResult::ProofSpent);
                }
                let moved = sqlx::query(
                    "UPDATE flows SET verified = $1, state = $2, questions = ''
                     WHERE id = $3 AND verified = $4 AND state = 'verifying'",
                )
                .bind(methods_csv(&s.after))
                .bind(s.state.as_str())
                .bind(&s.flow_id)
                .bind(methods_csv(&s.before))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                if moved.rows_affected() != 1 {
                    return Ok(StepResult::FlowMoved);
                }
                insert_audit(&mut tx, &event).await?;
                tx.commit().await.map_err(err)?;
                Ok(StepResult::Verified { recovery_left })
            }
        }

        async fn insert_flow_row(
            tx: &mut sqlx::Transaction<'_, $db>,
            f: &FlowRecord,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO flows (id, kind, state, user_id, login, display_name, privileged, required,
                                    usable, verified, questions, created_at, expires_at, client_type,
                                    client_ip, finishing_at, dir_stamp, lang, account)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            )
            .bind(&f.id)
            .bind(f.kind.as_str())
            .bind(f.state.as_str())
            .bind(&f.user_id)
            .bind(&f.login)
            .bind(&f.display_name)
            .bind(f.privileged)
            .bind(i64::from(f.required))
            .bind(methods_csv(&f.usable))
            .bind(methods_csv(&f.verified))
            .bind(join(&f.questions))
            .bind(f.created_at)
            .bind(f.expires_at)
            .bind(f.client_type.as_str())
            .bind(&f.client_ip)
            .bind(f.finishing_at)
            .bind(&f.dir_stamp)
            .bind(f.lang.tag())
            .bind(&f.account)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            Ok(())
        }

        /// Marks the code used if it is unused, unexpired and has attempts left.
        async fn spend_code(
            tx: &mut sqlx::Transaction<'_, $db>,
            id: i64,
            now: UnixTime,
            max_attempts: u32,
        ) -> StoreResult<bool> {
            let r = sqlx::query(
                "UPDATE codes SET used = TRUE
                 WHERE id = $1 AND used = FALSE AND delivery_failed = FALSE
                   AND expires_at > $2 AND created_at <= $2 AND attempts < $3",
            )
            .bind(id)
            .bind(now)
            .bind(i64::from(max_attempts))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            Ok(r.rows_affected() == 1)
        }

        /// Conditional on the stored step, so of two racing uses of one step only the first
        /// matches once the second has waited for its row lock.
        async fn spend_totp_step(
            tx: &mut sqlx::Transaction<'_, $db>,
            user_id: &str,
            step: i64,
        ) -> StoreResult<bool> {
            ensure_registration(tx, user_id).await?;
            let r = sqlx::query(
                "UPDATE registrations SET totp_last_step = $1
                 WHERE user_id = $2 AND totp_last_step < $1",
            )
            .bind(step)
            .bind(user_id)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            Ok(r.rows_affected() == 1)
        }
    };
}

pub(crate) use impl_step_store;
