-- The schema of migrations/sqlite/20261123000001_init.sql in PostgreSQL's own
-- types. Ids are UUIDv7: they sort by creation time (uuid compares bytewise),
-- which the cursor pagination relies on.

CREATE TABLE users (
    id            UUID PRIMARY KEY NOT NULL,
    -- Normalised to lower case before it gets here, so the unique index is
    -- case-insensitive in effect without a database-specific collation.
    email         TEXT NOT NULL UNIQUE,
    -- argon2id PHC string; the password itself is never stored.
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id           UUID PRIMARY KEY NOT NULL,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    -- blake3 of the whole key. Keys carry 256 random bits, so a fast unsalted
    -- hash is enough (a slow KDF only helps low-entropy secrets such as
    -- passwords) and it keeps the exchange path to one indexed read.
    key_hash     BYTEA NOT NULL UNIQUE,
    -- "lk_…" plus the last four characters: enough for a person to tell keys apart.
    hint         TEXT NOT NULL,
    -- Space-separated, as in an OAuth scope parameter.
    scopes       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    -- Revocation keeps the row so a key's history stays visible.
    revoked_at   TIMESTAMPTZ
);

CREATE INDEX api_keys_user_id ON api_keys (user_id, id);

CREATE TABLE todos (
    id         UUID PRIMARY KEY NOT NULL,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    completed  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Every todo query is scoped to one owner and pages by id.
CREATE INDEX todos_user_id ON todos (user_id, id);
