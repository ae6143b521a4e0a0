-- sspr schema, version 4. Password-expiry reminders already queued: one row per threshold per
-- password (a new password has a new expiry, so a new series), so that a reminder goes out at
-- most once however often and on however many instances the job runs.

CREATE TABLE password_reminders (
    user_id     TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL,
    days        INTEGER NOT NULL,
    sent_at     BIGINT  NOT NULL,
    PRIMARY KEY (user_id, expires_at, days)
);
