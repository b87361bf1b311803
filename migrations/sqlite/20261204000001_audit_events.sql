-- The audit log: every change to accounts, keys, signing keys and
-- revocations, written in the transaction of the change itself, and the
-- failures and throttled requests of each client address, tallied per action
-- and minute into one row. Rows older than --audit-retention are pruned.
--
-- No foreign keys: an event outlives what it names, and names things that
-- are no row here (a signing key, a token). The actions and target types are
-- checked by the code that writes them, not by a CHECK, so that a later
-- version can add one without rebuilding the table while older instances
-- still run on it.
CREATE TABLE audit_events (
    -- A UUIDv7 made from `at`: id order is time order, so pages run newest
    -- first by id, as the other lists run oldest first.
    id              BLOB PRIMARY KEY NOT NULL,
    at              TEXT NOT NULL,
    action          TEXT NOT NULL,
    -- Who: an account and the client its token came from (a key id, or
    -- `password`), `cli`, or `server`; and the client address over HTTP.
    actor_user_id   BLOB,
    actor_client_id TEXT,
    actor_address   TEXT,
    -- What: `user`, `key`, `token` or `signing_key`, and its id.
    target_type     TEXT,
    target_id       TEXT,
    -- The account the target is or belongs to (a key's owner), so that an
    -- account's events are found by it as actor or as target.
    target_user_id  BLOB,
    -- A JSON object. Never a key, token or password.
    details         TEXT NOT NULL
);

-- GET /me/audit and ?user_id=: an account as actor, or as target; each
-- index serves its half of the OR, newest first.
CREATE INDEX audit_events_actor ON audit_events (actor_user_id, id);
CREATE INDEX audit_events_target ON audit_events (target_user_id, id);
-- ?action=, newest first.
CREATE INDEX audit_events_action ON audit_events (action, id);
-- The pruning of what is older than the retention.
CREATE INDEX audit_events_at ON audit_events (at);
