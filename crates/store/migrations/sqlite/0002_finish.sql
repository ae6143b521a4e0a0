-- Crash-safe finish: when the directory write began and the directory's password stamp read
-- just before it, so a restart can tell whether the write landed.
ALTER TABLE flows ADD COLUMN finishing_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flows ADD COLUMN dir_stamp TEXT;
CREATE INDEX flows_state ON flows (state, finishing_at);
