-- Wakes the other instances when a change is recorded, so they reload the
-- revocation window at once instead of at their next periodic reload. The
-- notification is sent when the recording transaction commits, and only for
-- this table: the feed's rare events, never key-use times or other writes.
-- It carries no data; a woken instance reads the window back itself.
CREATE FUNCTION latchkey_notify_access_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_access_changes', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER access_changes_notify
    AFTER INSERT ON access_changes
    FOR EACH STATEMENT
    EXECUTE FUNCTION latchkey_notify_access_change();
