-- The schema of migrations/sqlite/20261202000001_access_changes.sql in
-- PostgreSQL's own types: the revocation feed.
CREATE TABLE access_changes (
    -- The feed's order. An account's disables and enables are numbered while
    -- its row is locked, so their order is the order they committed in.
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind     TEXT NOT NULL
             CHECK (kind IN ('key_revoked', 'signed_out', 'disabled', 'enabled', 'token_revoked')),
    user_id  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The key (key_revoked) or the token id (token_revoked) the change names.
    subject  UUID,
    -- Milliseconds since the Unix epoch.
    at_ms    BIGINT NOT NULL,
    until_ms BIGINT NOT NULL
);

CREATE INDEX access_changes_until ON access_changes (until_ms);
CREATE INDEX access_changes_user ON access_changes (user_id, kind, until_ms);
