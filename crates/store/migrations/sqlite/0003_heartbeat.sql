-- sspr schema, version 2. One row that the readiness probe (`Store::ping`) rewrites: a write
-- that must succeed for the instance to count as ready (a full disk or a read-only file fails it).

CREATE TABLE heartbeat (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  INTEGER NOT NULL
);
