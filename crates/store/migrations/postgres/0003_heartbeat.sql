-- sspr schema, version 2. One row that the readiness probe (`Store::ping`) rewrites: a write
-- that must succeed for the instance to count as ready (a database that went away, is out of
-- disk or is a read-only standby fails it).

CREATE TABLE heartbeat (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  BIGINT  NOT NULL
);
