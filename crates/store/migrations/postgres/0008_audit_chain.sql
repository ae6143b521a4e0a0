-- Tamper evidence (crates/app/src/audit_chain.rs): each event's hash chains it to the event
-- before. Events written before this version have none.
ALTER TABLE audit ADD COLUMN chain TEXT;

-- Signed statements "the log reached event last_id with hash chain", made periodically and
-- before old events are pruned.
CREATE TABLE audit_checkpoints (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    last_id BIGINT NOT NULL,
    chain   TEXT   NOT NULL,
    mac     TEXT   NOT NULL
);

-- One index per filter, (column, at, id): a page newest first walks the index and stops
-- (audit_sql.rs).
DROP INDEX IF EXISTS audit_at;
DROP INDEX IF EXISTS audit_target;
CREATE INDEX audit_at ON audit (at, id);
CREATE INDEX audit_target ON audit (target, at, id);
CREATE INDEX audit_actor ON audit (actor, at, id);
CREATE INDEX audit_activity ON audit (activity, at, id);
CREATE INDEX audit_outcome ON audit (outcome, at, id);
CREATE INDEX audit_client_type ON audit (client_type, at, id);
CREATE INDEX audit_client_ip ON audit (client_ip, at, id);
