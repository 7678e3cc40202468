-- Destinations and their mappings. Write keys are stored only encrypted (AES-256-GCM), with the id
-- of the key that sealed them so keys can rotate.
CREATE TABLE destinations (
    id                    TEXT PRIMARY KEY NOT NULL,
    name                  TEXT NOT NULL UNIQUE,
    region                TEXT NOT NULL,
    write_key_key_id      TEXT NOT NULL,
    write_key_nonce       BLOB NOT NULL,
    write_key_ciphertext  BLOB NOT NULL,
    write_key_fingerprint TEXT NOT NULL,
    enabled               INTEGER NOT NULL,
    version               INTEGER NOT NULL,
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE mappings (
    id             TEXT PRIMARY KEY NOT NULL,
    destination_id TEXT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    model          TEXT NOT NULL,
    enabled        INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    document       TEXT NOT NULL,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (destination_id, name)
);

CREATE INDEX mappings_by_destination_model ON mappings (destination_id, model);
