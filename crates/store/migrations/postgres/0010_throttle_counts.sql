-- Rate-limit hits as one row per key and second with a count: checking a window reads at
-- most one row per second of it, however many hits it holds (a NAT's thousands of starts an
-- hour were counted row by row on every request). Times are whole seconds, so the counts are
-- exact.
CREATE TABLE throttle_counts (
    key TEXT   NOT NULL,
    at  BIGINT NOT NULL,
    n   BIGINT NOT NULL,
    PRIMARY KEY (key, at)
);
INSERT INTO throttle_counts (key, at, n) SELECT key, at, COUNT(*) FROM throttle_hits GROUP BY key, at;
DROP TABLE throttle_hits;
ALTER TABLE throttle_counts RENAME TO throttle_hits;
ALTER TABLE throttle_hits RENAME CONSTRAINT throttle_counts_pkey TO throttle_hits_pkey;
