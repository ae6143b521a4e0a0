-- Tamper evidence (crates/app/src/audit_chain.rs): each event's hash chains it to the event
-- before. Events written before this version have none.
ALTER TABLE audit ADD COLUMN chain TEXT;

-- Signed statements "the log reached event last_id with hash chain", made periodically and
-- before old events are pruned.
CREATE TABLE audit_checkpoints (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    last_id INTEGER NOT NULL,
    chain   TEXT    NOT NULL,
    mac     TEXT    NOT NULL
);

-- One index per filter, (column, at) with the rowid after it: a page newest first walks the
-- index and stops (audit_sql.rs). audit_at and audit_target (target, at) already exist.
CREATE INDEX audit_actor ON audit (actor, at);
CREATE INDEX audit_activity ON audit (activity, at);
CREATE INDEX audit_outcome ON audit (outcome, at);
CREATE INDEX audit_client_type ON audit (client_type, at);
CREATE INDEX audit_client_ip ON audit (client_ip, at);
