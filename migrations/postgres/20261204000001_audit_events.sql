-- The schema of migrations/sqlite/20261204000001_audit_events.sql in
-- PostgreSQL's own types: the audit log. No foreign keys and no CHECK on the
-- action, for the reasons given there.
CREATE TABLE audit_events (
    -- A UUIDv7 made from `at`: id order is time order.
    id              UUID PRIMARY KEY NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    action          TEXT NOT NULL,
    actor_user_id   UUID,
    actor_client_id TEXT,
    actor_address   TEXT,
    target_type     TEXT,
    target_id       TEXT,
    -- The account the target is or belongs to (a key's owner).
    target_user_id  UUID,
    -- A JSON object, kept as the text it was written as.
    details         TEXT NOT NULL
);

CREATE INDEX audit_events_actor ON audit_events (actor_user_id, id);
CREATE INDEX audit_events_target ON audit_events (target_user_id, id);
CREATE INDEX audit_events_action ON audit_events (action, id);
CREATE INDEX audit_events_at ON audit_events (at);
