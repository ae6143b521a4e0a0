-- Rate-limit hits as one row per key and second with a count: checking a window reads at
-- most one row per second of it, however many hits it holds (a NAT's thousands of starts an
-- hour were counted row by row on every request). Times are whole seconds, so the counts are
-- exact.
CREATE TABLE throttle_counts (
    key TEXT    NOT NULL,
    at  INTEGER NOT NULL,
    n   INTEGER NOT NULL,
    PRIMARY KEY (key, at)
) WITHOUT ROWID;
INSERT INTO throttle_counts (key, at, n) SELECT key, at, COUNT(*) FROM throttle_hits GROUP BY key, at;
DROP TABLE throttle_hits;
ALTER TABLE throttle_counts RENAME TO throttle_hits;
