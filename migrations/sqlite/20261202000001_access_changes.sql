-- The revocation feed: every change that ends live tokens or changes what a
-- token exchange may grant, written in the transaction of the change itself.
-- Instances keep the rows younger than a token's lifetime in memory; a row is
-- pruned once no token it covers can still verify (`until_ms`).
CREATE TABLE access_changes (
    -- The feed's order. An account's disables and enables are numbered while
    -- its row is locked, so their order is the order they committed in.
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL
             CHECK (kind IN ('key_revoked', 'signed_out', 'disabled', 'enabled', 'token_revoked')),
    user_id  BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The key (key_revoked) or the token id (token_revoked) the change names.
    subject  BLOB,
    -- Milliseconds since the Unix epoch: token cut-offs are exact to the
    -- millisecond, finer than RFC 3339 text compares.
    at_ms    INTEGER NOT NULL,
    until_ms INTEGER NOT NULL
);

CREATE INDEX access_changes_until ON access_changes (until_ms);
CREATE INDEX access_changes_user ON access_changes (user_id, kind, until_ms);
