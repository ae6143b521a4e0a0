//! Saved recovery codes: generated on the security-info page, spent one at a time as a proof in
//! a reset. sspr keeps only each code's MAC under the server key; the codes themselves exist
//! in one answer and on the user's paper.

use sspr_domain::audit::Activity;
use sspr_domain::{Method, recovery};
use sspr_proto::RecoveryCodes;

use crate::app::{App, RequestCtx};
use crate::error::AppError;
use crate::messages::Msg;
use crate::ports::{FlowRecord, MethodRecord, SessionRecord};

/// Domain separation: a recovery code's MAC can never equal an emailed code's.
fn owner(user_id: &str) -> String {
    format!("recovery:{user_id}")
}

impl App {
    /// A new set of codes. Any earlier set stops working in the same transaction.
    pub async fn generate_recovery_codes(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
    ) -> Result<RecoveryCodes, AppError> {
        let mut ev = self.session_event(ctx, s, Activity::SecurityInfoAdded);
        ev.details = serde_json::json!({ "method": Method::RecoveryCode });
        let policy = self.policy().await?;
        self.require_method_allowed(ctx, s, &policy, Method::RecoveryCode, &mut ev)
            .await?;
        let replaced = !self.store.recovery_codes(&s.user_id).await?.is_empty();
        let codes = recovery::generate(self.rng.as_ref());
        let digests: Vec<String> = codes
            .iter()
            .filter_map(|c| recovery::normalise(c))
            .map(|c| self.key.code_mac(&owner(&s.user_id), &c))
            .collect();
        self.store
            .replace_recovery_codes(&s.user_id, &digests, self.now())
            .await?;
        ev.details = serde_json::json!({
            "method": Method::RecoveryCode,
            "codes": digests.len(),
            "replaced": replaced,
        });
        let notice = if replaced {
            (
                "New recovery codes were made for your account; the old ones no longer work",
                "你的账户生成了新的恢复码，旧的恢复码已失效",
            )
        } else {
            (
                "Recovery codes were made for your account",
                "你的账户生成了恢复码",
            )
        };
        self.changed(ctx, s, ev, notice, Msg::RecoveryCodesCreated)
            .await?;
        Ok(RecoveryCodes {
            codes,
            message: ctx.t(Msg::RecoveryCodesCreated),
        })
    }

    /// The MAC under which a typed recovery code is stored: what a reset step spends
    /// ([`crate::ports::Proof::RecoveryCode`]). An unreadable code is refused before any lookup.
    pub(crate) fn recovery_digest(
        &self,
        ctx: &RequestCtx,
        user_id: &str,
        code: Option<&str>,
    ) -> Result<String, AppError> {
        let Some(code) = recovery::normalise(code.unwrap_or("")) else {
            return Err(AppError::invalid(ctx.t(Msg::RecoveryCodeFormat)));
        };
        Ok(self.key.code_mac(&owner(user_id), &code))
    }

    /// Tells every address of record that a recovery code was spent, and how many are left: a
    /// code is a password-equivalent, and its use is news even if no reset follows.
    pub(crate) async fn recovery_code_used(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        records: &[MethodRecord],
        left: u32,
    ) {
        if !self.policy().await.is_ok_and(|p| p.notify_user) {
            return;
        }
        let user = self.directory.find_user(&flow.login).await.ok().flatten();
        let to = self.notice_recipients(user.as_ref(), records);
        let en =
            format!("A recovery code was used to prove who you are; {left} of your codes are left");
        let zh = format!("有人使用了你的一个恢复码来验证身份；你还剩 {left} 个恢复码");
        self.notify(ctx, &to, &en, &zh, &flow.account).await;
    }

    /// Unused codes of the user, for the security-info page.
    pub(crate) async fn recovery_codes_left(&self, user_id: &str) -> Result<u32, AppError> {
        let n = self.store.recovery_codes(user_id).await?.len();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}
