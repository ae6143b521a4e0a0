//! `sspr store copy`: moves an installation between stores (SQLite → PostgreSQL, or back)
//! through the store traits, so every backend pair works the same way.
//!
//! Copied: the built-in directory's users (with their password hashes), every registration
//! (methods, hashed answers, unused recovery codes' MACs, confirmation dates, the last TOTP
//! step), the policy, admin tokens, the record of expiry reminders sent (so that none goes out
//! twice), the registration skips counted at sign-in, and the whole audit log. Not copied: what
//! is short-lived by design (open flows, codes, sessions, throttle counters, the outbox) and
//! the built-in directory's password history.

use sspr_app::ports::{AuditFilter, Store, StoreError, StoreResult, UserStore};
use sspr_domain::clock::UnixTime;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub users: usize,
    pub registrations: usize,
    pub audit_events: usize,
    pub admin_tokens: usize,
    pub reminders: usize,
    pub policy: bool,
}

pub struct Side<'a> {
    pub store: &'a dyn Store,
    pub users: &'a dyn UserStore,
}

/// Copies everything durable from `from` to `to`, which must be empty. `progress` is told
/// what is being copied and how many items are done.
pub async fn copy_installation(
    from: Side<'_>,
    to: Side<'_>,
    now: UnixTime,
    progress: &mut (dyn FnMut(&str, usize) + Send),
) -> StoreResult<Copied> {
    let probe = AuditFilter {
        limit: 1,
        ..AuditFilter::default()
    };
    if !to.users.users().await?.is_empty()
        || !to.store.audit_query(&probe).await?.is_empty()
        || !to.store.registration_ids().await?.is_empty()
    {
        return Err(StoreError(
            "the target already holds an installation; copy into an empty database (or schema)"
                .into(),
        ));
    }
    let mut done = Copied::default();

    for u in from.users.users().await? {
        if !to.users.insert_user(&u, now).await? {
            return Err(StoreError(format!("user {} exists in the target", u.id)));
        }
        done.users += 1;
        progress("users", done.users);
    }

    for id in from.store.registration_ids().await? {
        let answers = from.store.answers(&id).await?;
        if !answers.is_empty() {
            to.store.put_answers(&id, &answers, now).await?;
        }
        let codes = from.store.recovery_codes(&id).await?;
        if !codes.is_empty() {
            to.store.replace_recovery_codes(&id, &codes, now).await?;
        }
        // After the answers, so each method keeps its own dates and status.
        for m in from.store.methods(&id).await? {
            to.store.put_method(&m).await?;
        }
        if let Some(t) = from.store.confirmed_at(&id).await? {
            to.store.confirm(&id, t).await?;
        }
        let step = from.store.totp_last_step(&id).await?;
        if step > 0 {
            to.store.totp_use_step(&id, step).await?;
        }
        done.registrations += 1;
        progress("registrations", done.registrations);
    }

    if let Some(p) = from.store.load_policy().await? {
        to.store.save_policy(&p, now).await?;
        done.policy = true;
    }

    for t in from.store.admin_tokens().await? {
        to.store.insert_admin_token(&t).await?;
        done.admin_tokens += 1;
    }

    for r in from.store.reminders().await? {
        to.store.record_reminder(&r).await?;
        done.reminders += 1;
    }

    for (id, skips, at) in from.store.all_registration_skips().await? {
        to.store.set_registration_skips(&id, skips, at).await?;
    }

    let mut after = 0;
    loop {
        let page = from
            .store
            .audit_query(&AuditFilter {
                after_id: Some(after),
                limit: 1000,
                ..AuditFilter::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in &page {
            to.store.audit(e).await?;
        }
        done.audit_events += page.len();
        progress("audit events", done.audit_events);
    }
    Ok(done)
}
