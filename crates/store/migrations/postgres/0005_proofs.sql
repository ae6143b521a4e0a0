-- sspr schema, version 5: stronger proofs.
--
-- Saved recovery codes: the MAC of each code under the server key (never the code), so a copy
-- of the database alone does not give them away. A spent code keeps its row with `used_at`
-- set: that tells "used before" (a second tab, a race) apart from a wrong guess. A new set
-- deletes the old one.
CREATE TABLE recovery_codes (
    user_id     TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (user_id, digest)
);

-- A passkey ceremony between its two requests (the challenge sent, the signed answer to
-- come): any instance may finish it, once. Taken by deleting the row.
CREATE TABLE webauthn_ceremonies (
    id          TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL
);
