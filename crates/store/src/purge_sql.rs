//! What housekeeping deletes or erases, the throttle tables, and the outbox's backlog, in SQL
//! that SQLite and PostgreSQL both run unchanged: written once here.

use sspr_domain::clock::UnixTime;

/// Messages waiting and the oldest one's queue time (the `outbox_claim` index covers it).
pub(crate) const OUTBOX_BACKLOG: &str =
    "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status IN ('queued', 'sending')";

/// Each statement with its `$1`. History is kept a day past expiry for the helpdesk; counters
/// 8 days (the longest configurable block is 7).
pub(crate) fn statements(now: UnixTime) -> [(&'static str, UnixTime); 9] {
    [
        // A kept invitation holds its link, a bearer secret, in clear: it goes once the
        // invitation is used, voided by a newer one, or expired (with any notice sent under
        // the same flow, which holds no secret but cannot be told apart). Before the flows are
        // deleted, so that the invitation's row is still there to say so.
        (
            "UPDATE outbox SET body = '' WHERE body <> '' AND status = 'sent'
             AND code_id IS NULL AND flow_id IN (SELECT id FROM flows WHERE kind = 'invite'
                 AND (expires_at <= $1 OR state NOT IN ('verifying', 'verified', 'finishing')))",
            now,
        ),
        // A flow still finishing waits for its reconciliation, however old.
        (
            "DELETE FROM flows WHERE expires_at < $1 AND state <> 'finishing'",
            now - 86_400,
        ),
        ("DELETE FROM sessions WHERE expires_at < $1", now),
        ("DELETE FROM webauthn_ceremonies WHERE expires_at < $1", now),
        ("DELETE FROM codes WHERE expires_at < $1", now - 86_400),
        ("DELETE FROM throttle_hits WHERE at < $1", now - 8 * 86_400),
        ("DELETE FROM throttle_blocks WHERE until < $1", now),
        // A reminder's row is needed only until its password has expired.
        (
            "DELETE FROM password_reminders WHERE expires_at < $1",
            now - 86_400,
        ),
        // A body kept after sending (the dev outbox) holds a code in clear: it goes once its
        // code is used or expired. A message still to be sent keeps its body, and so does a
        // notice, which holds no secret.
        (
            "UPDATE outbox SET body = '' WHERE body <> '' AND status = 'sent'
             AND code_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM codes
                             WHERE codes.id = outbox.code_id AND codes.expires_at > $1
                               AND NOT codes.used)",
            now,
        ),
    ]
}

/// Clears the counters and blocks whose key starts with `$1`.
pub(crate) const CLEAR_THROTTLE_PREFIX: [&str; 2] = [
    "DELETE FROM throttle_hits WHERE substr(key, 1, length($1)) = $1",
    "DELETE FROM throttle_blocks WHERE substr(key, 1, length($1)) = $1",
];
