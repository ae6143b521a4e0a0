-- sspr schema, version 1, PostgreSQL. Same meaning as migrations/sqlite/0001_init.sql, so the
-- two stores answer alike. Times are Unix seconds (UTC) in BIGINT. Every number the Rust side
-- reads is BIGINT (decoded as i64, like SQLite's INTEGER); flags are BOOLEAN. Secrets are never
-- stored: tokens as SHA-256, codes as HMAC, answers and passwords as Argon2id, TOTP secrets
-- sealed.

CREATE TABLE policy (
    id          BIGINT  PRIMARY KEY CHECK (id = 1),
    body        TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL
);

CREATE TABLE flows (
    id           TEXT    PRIMARY KEY,
    kind         TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    login        TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    privileged   BOOLEAN NOT NULL,
    required     BIGINT  NOT NULL,
    usable       TEXT    NOT NULL,
    verified     TEXT    NOT NULL,
    questions    TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    client_type  TEXT    NOT NULL,
    client_ip    TEXT    NOT NULL
);
CREATE INDEX flows_user ON flows (user_id, state);
CREATE INDEX flows_expiry ON flows (expires_at);

-- Ids only ever grow (like SQLite's AUTOINCREMENT): `latest_code` orders by id.
CREATE TABLE codes (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner           TEXT    NOT NULL,
    purpose         TEXT    NOT NULL,
    code_mac        TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    used            BOOLEAN NOT NULL DEFAULT FALSE,
    delivery_failed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX codes_owner ON codes (owner, purpose, id);
CREATE INDEX codes_expiry ON codes (expires_at);

CREATE TABLE throttle_hits (
    key TEXT   NOT NULL,
    at  BIGINT NOT NULL
);
CREATE INDEX throttle_key_at ON throttle_hits (key, at);

CREATE TABLE throttle_blocks (
    key   TEXT   PRIMARY KEY,
    until BIGINT NOT NULL
);

CREATE TABLE methods (
    user_id     TEXT   NOT NULL,
    method      TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    verified_at BIGINT,
    PRIMARY KEY (user_id, method, status)
);

CREATE TABLE answers (
    user_id     TEXT NOT NULL,
    question_id TEXT NOT NULL,
    answer_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, question_id)
);

CREATE TABLE registrations (
    user_id        TEXT   PRIMARY KEY,
    confirmed_at   BIGINT,
    totp_last_step BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    id           TEXT   PRIMARY KEY,
    user_id      TEXT   NOT NULL,
    login        TEXT   NOT NULL,
    display_name TEXT   NOT NULL,
    groups       TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel         TEXT   NOT NULL,
    recipient       TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT   NOT NULL DEFAULT '',
    code_id         BIGINT,
    flow_id         TEXT,
    target          TEXT   NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

CREATE TABLE audit (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           BIGINT NOT NULL,
    activity     TEXT   NOT NULL,
    actor        TEXT   NOT NULL,
    target       TEXT   NOT NULL,
    client_ip    TEXT   NOT NULL,
    client_type  TEXT   NOT NULL,
    outcome      TEXT   NOT NULL,
    reason       TEXT   NOT NULL,
    flow_id      TEXT,
    support_code TEXT,
    details      TEXT   NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_target ON audit (target, at);
CREATE INDEX audit_support ON audit (support_code);

CREATE TABLE admin_tokens (
    token_hash TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- The built-in directory.
CREATE TABLE dir_users (
    id                  TEXT    PRIMARY KEY,
    display_name        TEXT    NOT NULL,
    enabled             BOOLEAN NOT NULL,
    locked              BOOLEAN NOT NULL,
    password_hash       TEXT    NOT NULL,
    email               TEXT,
    mobile              TEXT,
    created_at          BIGINT  NOT NULL,
    password_changed_at BIGINT  NOT NULL
);

CREATE TABLE dir_groups (
    user_id TEXT NOT NULL,
    grp     TEXT NOT NULL,
    PRIMARY KEY (user_id, grp)
);

CREATE TABLE dir_history (
    user_id TEXT   NOT NULL,
    hash    TEXT   NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX dir_history_user ON dir_history (user_id, at);
