-- Crash-safe finish: when the directory write began and the directory's password stamp read
-- just before it, so a restart can tell whether the write landed.
ALTER TABLE flows ADD COLUMN finishing_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE flows ADD COLUMN dir_stamp TEXT;
-- The user's language, for the notices a settlement sends after the request is gone.
ALTER TABLE flows ADD COLUMN lang TEXT NOT NULL DEFAULT 'en';
-- The account's own name for the audit log (a user may type a mail address or a UPN).
ALTER TABLE flows ADD COLUMN account TEXT NOT NULL DEFAULT '';
CREATE INDEX flows_state ON flows (state, finishing_at);
