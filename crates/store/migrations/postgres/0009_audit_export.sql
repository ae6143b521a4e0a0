-- sspr schema, version 9. The SIEM export's durable cursor: per sink, the id of the last audit
-- event the receiver accepted, and which instance may export (a lease), so that instances
-- sharing one database never send an event twice at once and a restart resumes where the
-- last acknowledged batch ended (at least once: a crash between send and write re-sends).

CREATE TABLE audit_export_cursor (
    name         TEXT    PRIMARY KEY,
    last_id      BIGINT  NOT NULL,
    holder       TEXT    NOT NULL,
    lease_until  BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
