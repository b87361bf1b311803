-- The signing keyring that every instance on this database signs and
-- verifies with, so that a rotation reaches all of them. It is one sealed
-- blob (XChaCha20-Poly1305 under --keyring-secret, which the database never
-- sees): whoever reads the database, a backup or a replica cannot sign tokens.
-- SQLite keeps its keyring in the data directory's file instead.
CREATE TABLE signing_keyring (
    -- One row: the keyring is read and replaced whole, and changed under this
    -- row's lock, so two writers (instances starting together on an empty
    -- database, a rotation) cannot lose each other's keys.
    id         BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    -- A format byte, then what that format holds (src/keyring/seal.rs);
    -- NULL until the first instance, rotation or migration writes a keyring.
    sealed     BYTEA,
    updated_at TIMESTAMPTZ
);

-- There from the start, so the first writers have a row to lock.
INSERT INTO signing_keyring (id) VALUES (TRUE);
