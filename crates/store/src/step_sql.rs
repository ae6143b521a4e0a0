//! A flow step's writes ([`sspr_app::ports::StepStore`]): rate-limit slots; a new flow with
//! its slots and its event; a code with its slots, its message and its event; questions drawn
//! with their event; a proof spent with the flow's move and its event. Each is one
//! transaction, in SQL that SQLite and PostgreSQL both run unchanged (SQLite reads `TRUE` and
//! `FALSE` as 1 and 0). Written once here, expanded in each store's module, where
//! `lock_throttle`, `lock_code`, `ensure_registration`, `spend_recovery_code`, `insert_audit`,
//! `insert_outbox` and `err` are that database's own. On PostgreSQL these transactions take
//! their locks in one order (throttle keys, then a code's owner, then the audit chain, which
//! every writer takes last), so they cannot deadlock one another.

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
                let full = take_slots_in(&mut tx, slots, now).await?;
                tx.commit().await.map_err(err)?;
                Ok(full)
            }

            async fn throttle_state(
                &self,
                blocks: &[String],
                windows: &[sspr_app::ports::Slot],
                now: UnixTime,
            ) -> StoreResult<sspr_app::ports::ThrottleState> {
                if blocks.is_empty() && windows.is_empty() {
                    return Ok(sspr_app::ports::ThrottleState::default());
                }
                // One row of scalar subqueries: $1 is now (only if there are blocks:
                // PostgreSQL refuses a parameter no statement uses), then a key per block and a
                // key and a start per window.
                let mut cols = Vec::with_capacity(blocks.len() + windows.len());
                let mut n = usize::from(!blocks.is_empty());
                for _ in blocks {
                    n += 1;
                    cols.push(format!(
                        "(SELECT MAX(until) FROM throttle_blocks WHERE key = ${n} AND until > $1)"
                    ));
                }
                for _ in windows {
                    cols.push(format!(
                        "(SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM throttle_hits
                          WHERE key = ${} AND at > ${})",
                        n + 1,
                        n + 2
                    ));
                    n += 2;
                }
                let sql = format!("SELECT {}", cols.join(", "));
                // Built from literals and parameter numbers only: nothing of the caller's.
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                if !blocks.is_empty() {
                    q = q.bind(now);
                }
                for b in blocks {
                    q = q.bind(b);
                }
                for w in windows {
                    q = q.bind(&w.key).bind(w.since);
                }
                let row = q
                    .fetch_one(&mut *self.reader().await?)
                    .await
                    .map_err(err)?;
                let mut state = sspr_app::ports::ThrottleState::default();
                for i in 0..blocks.len() {
                    state
                        .blocked_until
                        .push(row.try_get::<Option<i64>, _>(i).map_err(err)?);
                }
                for i in 0..windows.len() {
                    let hits: i64 = row.try_get(blocks.len() + i).map_err(err)?;
                    state.hits.push(u32::try_from(hits).unwrap_or(u32::MAX));
                }
                Ok(state)
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

            async fn start_flow(
                &self,
                f: &FlowRecord,
                event: &AuditEvent,
                slots: &[sspr_app::ports::Slot],
            ) -> StoreResult<Option<usize>> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let full = take_slots_in(&mut tx, slots, f.created_at).await?;
                // A full window still keeps the slots taken before it (counted as tries).
                if full.is_none() {
                    insert_flow_row(&mut tx, f).await?;
                    insert_audit(&mut tx, event).await?;
                }
                tx.commit().await.map_err(err)?;
                Ok(full)
            }

            async fn issue_code(&self, code: &CodeRecord, m: &OutboxMessage) -> StoreResult<i64> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let id = issue_code_in(&mut tx, code, m).await?;
                tx.commit().await.map_err(err)?;
                Ok(id)
            }

            async fn send_code(
                &self,
                code: &CodeRecord,
                m: &OutboxMessage,
                slots: &[sspr_app::ports::Slot],
                event: &AuditEvent,
            ) -> StoreResult<Option<usize>> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                let full = take_slots_in(&mut tx, slots, code.created_at).await?;
                // A full window still keeps the slots taken before it (counted as tries).
                if full.is_none() {
                    issue_code_in(&mut tx, code, m).await?;
                    insert_audit(&mut tx, event).await?;
                }
                tx.commit().await.map_err(err)?;
                Ok(full)
            }

            async fn draw_questions(
                &self,
                flow_id: &str,
                questions: &[String],
                event: &AuditEvent,
            ) -> StoreResult<()> {
                let mut w = self.writer().await?;
                let mut tx = w.begin().await.map_err(err)?;
                sqlx::query("UPDATE flows SET questions = $1 WHERE id = $2")
                    .bind(join(questions))
                    .bind(flow_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
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

        /// Retires the owner's earlier codes for the purpose (only the newest is ever live),
        /// stores the new one and queues its message.
        async fn issue_code_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            code: &CodeRecord,
            m: &OutboxMessage,
        ) -> StoreResult<i64> {
            lock_code(tx, &code.owner, &code.purpose).await?;
            sqlx::query(
                "UPDATE codes SET used = TRUE WHERE owner = $1 AND purpose = $2 AND used = FALSE",
            )
            .bind(&code.owner)
            .bind(&code.purpose)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO codes (owner, purpose, code_mac, destination, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&code.owner)
            .bind(&code.purpose)
            .bind(&code.code_mac)
            .bind(&code.destination)
            .bind(code.created_at)
            .bind(code.expires_at)
            .fetch_one(&mut **tx)
            .await
            .map_err(err)?;
            let mut m = m.clone();
            m.code_id = Some(id);
            insert_outbox(tx, &m).await?;
            Ok(id)
        }

        /// Takes a slot in each window, in order, up to the first full one (its index).
        async fn take_slots_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            slots: &[sspr_app::ports::Slot],
            now: UnixTime,
        ) -> StoreResult<Option<usize>> {
            let keys: Vec<&str> = slots.iter().map(|s| s.key.as_str()).collect();
            lock_throttle(tx, &keys).await?;
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
                .execute(&mut **tx)
                .await
                .map_err(err)?;
                if r.rows_affected() != 1 {
                    return Ok(Some(i));
                }
            }
            Ok(None)
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
