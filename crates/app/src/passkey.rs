//! Passkeys (WebAuthn) as a proof: added on the security-info page, used in a browser reset.
//!
//! A passkey is user-verifying (the device asks for its PIN or a fingerprint), so it proves
//! possession and the user at once; it still counts as one method, like every other, so a
//! policy that requires two asks for a second. The relying party is the host of `public_url`,
//! and only that origin's answers are accepted. A ceremony's state waits in the database
//! between its two requests, so any instance finishes it, and only once.

use serde::{Deserialize, Serialize};
use sspr_domain::Method;
use sspr_domain::audit::Activity;
use sspr_proto::{PasskeyOptions, RegistrationStatus};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::app::{App, RequestCtx};
use crate::error::{AppError, ErrorKind};
use crate::messages::Msg;
use crate::ports::{FlowRecord, MethodRecord, MethodStatus, SessionRecord};
use crate::reset::Miss;

/// How long the browser has to answer a challenge.
const CEREMONY_SECS: i64 = 300;

/// The relying party for `public_url` (`https://host[:port]`): its host is the RP ID.
pub fn relying_party(public_url: &str, name: &str) -> Result<Webauthn, String> {
    let origin = Url::parse(public_url).map_err(|e| format!("public_url: {e}"))?;
    let host = origin
        .host_str()
        .ok_or_else(|| "public_url has no host name".to_string())?
        .to_string();
    let name = if name.is_empty() { "sspr" } else { name };
    WebauthnBuilder::new(&host, &origin)
        .and_then(|b| b.rp_name(name).build())
        .map_err(|e| format!("passkeys cannot work with public_url {public_url:?}: {e}"))
}

/// One registered passkey as kept in the method's record (a JSON list of them).
#[derive(Serialize, Deserialize)]
struct Stored {
    added_at: i64,
    passkey: Passkey,
}

/// A stable WebAuthn user handle for a user id: the authenticator files the credential under
/// it, and it reveals nothing (a hash, not the login).
fn user_handle(user_id: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("sspr-user:{user_id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    Uuid::from_bytes(b)
}

impl App {
    fn relying(&self, ctx: &RequestCtx) -> Result<&Webauthn, AppError> {
        self.webauthn
            .as_deref()
            .ok_or_else(|| AppError::new(ErrorKind::Forbidden, ctx.t(Msg::MethodDisabled)))
    }

    fn passkeys_of(records: &[MethodRecord]) -> Vec<Stored> {
        records
            .iter()
            .find(|r| r.method == Method::Passkey && r.status == MethodStatus::Active)
            .and_then(|r| serde_json::from_str(&r.value).ok())
            .unwrap_or_default()
    }

    async fn save_passkeys(&self, user_id: &str, keys: &[Stored]) -> Result<(), AppError> {
        let value = serde_json::to_string(keys)
            .map_err(|e| AppError::internal(format!("passkeys: {e}")))?;
        let now = self.now();
        self.store
            .put_method(&MethodRecord {
                user_id: user_id.into(),
                method: Method::Passkey,
                status: MethodStatus::Active,
                value,
                created_at: now,
                verified_at: Some(now),
            })
            .await?;
        Ok(())
    }

    /// Step 1 of adding a passkey: the options for `navigator.credentials.create`.
    pub async fn start_passkey_registration(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
    ) -> Result<PasskeyOptions, AppError> {
        let mut ev = self.session_event(ctx, s, Activity::SecurityInfoAdded);
        ev.details = serde_json::json!({ "method": Method::Passkey });
        let policy = self.policy().await?;
        self.require_method_allowed(ctx, s, &policy, Method::Passkey, &mut ev)
            .await?;
        let rp = self.relying(ctx)?;
        let records = self.store.methods(&s.user_id).await?;
        let exclude = Self::passkeys_of(&records)
            .iter()
            .map(|k| k.passkey.cred_id().clone())
            .collect::<Vec<_>>();
        let (options, state) = rp
            .start_passkey_registration(user_handle(&s.user_id), &s.login, &s.login, Some(exclude))
            .map_err(|e| AppError::internal(format!("passkey challenge: {e}")))?;
        let state = serde_json::to_string(&state)
            .map_err(|e| AppError::internal(format!("passkey state: {e}")))?;
        self.store
            .put_ceremony(
                &format!("register:{}", s.user_id),
                &s.user_id,
                &state,
                self.now() + CEREMONY_SECS,
            )
            .await?;
        let options = serde_json::to_value(&options)
            .map_err(|e| AppError::internal(format!("passkey options: {e}")))?;
        // Like an authenticator app's enrolment: "added" when it starts, "verified" when the
        // browser's answer has made it a passkey.
        self.record(ev).await;
        Ok(PasskeyOptions {
            options,
            message: ctx.t(Msg::PasskeyCreate),
        })
    }

    /// Step 2: the browser's answer, checked against the challenge, becomes a passkey.
    pub async fn finish_passkey_registration(
        &self,
        ctx: &RequestCtx,
        s: &SessionRecord,
        credential: &serde_json::Value,
    ) -> Result<RegistrationStatus, AppError> {
        let mut ev = self.session_event(ctx, s, Activity::SecurityInfoVerified);
        ev.details = serde_json::json!({ "method": Method::Passkey });
        let rp = self.relying(ctx)?;
        let Some(state) = self
            .store
            .take_ceremony(&format!("register:{}", s.user_id), self.now())
            .await?
        else {
            ev.reason = "no_challenge".into();
            return Err(self
                .fail(ev, AppError::invalid(ctx.t(Msg::PasskeyStartAgain)))
                .await);
        };
        let state: PasskeyRegistration = serde_json::from_str(&state)
            .map_err(|e| AppError::internal(format!("passkey state: {e}")))?;
        let answer: RegisterPublicKeyCredential = match serde_json::from_value(credential.clone()) {
            Ok(a) => a,
            Err(e) => {
                ev.reason = "malformed_credential".into();
                return Err(self
                    .fail(
                        ev,
                        AppError::invalid(ctx.t(Msg::PasskeyNotRead)).with_log(e.to_string()),
                    )
                    .await);
            }
        };
        let passkey = match rp.finish_passkey_registration(&answer, &state) {
            Ok(p) => p,
            Err(e) => {
                ev.reason = "passkey_refused".into();
                return Err(self
                    .fail(
                        ev,
                        AppError::new(ErrorKind::VerificationFailed, ctx.t(Msg::PasskeyRefused))
                            .with_log(e.to_string()),
                    )
                    .await);
            }
        };
        let records = self.store.methods(&s.user_id).await?;
        let mut keys = Self::passkeys_of(&records);
        keys.push(Stored {
            added_at: self.now(),
            passkey,
        });
        self.save_passkeys(&s.user_id, &keys).await?;
        ev.details = serde_json::json!({ "method": Method::Passkey, "passkeys": keys.len() });
        self.changed(
            ctx,
            s,
            ev,
            (
                "A passkey was added to your account",
                "你的账户添加了通行密钥",
            ),
            Msg::Verified,
        )
        .await
    }

    /// A reset's challenge: request options listing the user's passkeys.
    pub(crate) async fn passkey_challenge(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
    ) -> Result<serde_json::Value, AppError> {
        let rp = self.relying(ctx)?;
        let records = self.store.methods(&flow.user_id).await?;
        let keys: Vec<Passkey> = Self::passkeys_of(&records)
            .into_iter()
            .map(|k| k.passkey)
            .collect();
        if keys.is_empty() {
            return Err(AppError::invalid(ctx.t(Msg::MethodNotOffered)));
        }
        let (options, state) = rp
            .start_passkey_authentication(&keys)
            .map_err(|e| AppError::internal(format!("passkey challenge: {e}")))?;
        let state = serde_json::to_string(&state)
            .map_err(|e| AppError::internal(format!("passkey state: {e}")))?;
        self.store
            .put_ceremony(
                &format!("reset:{}", flow.id),
                &flow.user_id,
                &state,
                self.now() + CEREMONY_SECS,
            )
            .await?;
        serde_json::to_value(&options)
            .map_err(|e| AppError::internal(format!("passkey options: {e}")))
    }

    /// Checks the browser's signed answer; a good one advances the stored signature counter.
    /// `Err(reason)` names a refusal for the audit log.
    pub(crate) async fn check_passkey(
        &self,
        ctx: &RequestCtx,
        flow: &FlowRecord,
        credential: Option<&serde_json::Value>,
    ) -> Result<Result<(), (Miss, &'static str)>, AppError> {
        let rp = self.relying(ctx)?;
        let Some(credential) = credential else {
            return Err(AppError::invalid(ctx.t(Msg::PasskeyNotRead)));
        };
        let answer: PublicKeyCredential = serde_json::from_value(credential.clone())
            .map_err(|e| AppError::invalid(ctx.t(Msg::PasskeyNotRead)).with_log(e.to_string()))?;
        // The ceremony is the flow's own (its id names the flow), so it is this user's.
        let Some(state) = self
            .store
            .take_ceremony(&format!("reset:{}", flow.id), self.now())
            .await?
        else {
            return Ok(Err((Miss::NoCode, "no_challenge")));
        };
        let state: PasskeyAuthentication = serde_json::from_str(&state)
            .map_err(|e| AppError::internal(format!("passkey state: {e}")))?;
        let result = match rp.finish_passkey_authentication(&answer, &state) {
            Ok(r) => r,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                tracing::warn!(flow = %crate::reset::short_id(&flow.id), "a passkey's signature counter went backwards: a cloned authenticator?");
                return Ok(Err((Miss::Wrong, "counter_regression")));
            }
            Err(e) => {
                tracing::info!(flow = %crate::reset::short_id(&flow.id), error = %e, "a passkey answer was refused");
                return Ok(Err((Miss::Wrong, "passkey_refused")));
            }
        };
        // The set may have changed since the challenge (a passkey removed in another tab).
        let records = self.store.methods(&flow.user_id).await?;
        let mut keys = Self::passkeys_of(&records);
        let Some(k) = keys
            .iter_mut()
            .find(|k| k.passkey.cred_id() == result.cred_id())
        else {
            return Ok(Err((Miss::Wrong, "passkey_removed")));
        };
        if k.passkey.update_credential(&result) == Some(true) {
            self.save_passkeys(&flow.user_id, &keys).await?;
        }
        Ok(Ok(()))
    }
}
