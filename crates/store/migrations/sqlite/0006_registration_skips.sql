-- sspr schema, version 6. How many times each user went on without registering when asked at
-- sign-in (policy `require_registration`, `registration_skips`). Kept until the user is
-- registered: the count is not a rate, so housekeeping never shortens it.

CREATE TABLE registration_skips (
    user_id  TEXT    PRIMARY KEY,
    skips    INTEGER NOT NULL,
    last_at  BIGINT  NOT NULL
);
