-- Destinations and their mappings. Write keys are stored only encrypted (AES-256-GCM), with the id
-- of the key that sealed them so keys can rotate.
CREATE TABLE destinations (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    region                TEXT NOT NULL,
    write_key_key_id      TEXT NOT NULL,
    write_key_nonce       BYTEA NOT NULL,
    write_key_ciphertext  BYTEA NOT NULL,
    write_key_fingerprint TEXT NOT NULL,
    enabled               BOOLEAN NOT NULL,
    version               BIGINT NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE mappings (
    id             TEXT PRIMARY KEY,
    destination_id TEXT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    model          TEXT NOT NULL,
    enabled        BOOLEAN NOT NULL,
    version        BIGINT NOT NULL,
    document       TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (destination_id, name)
);

CREATE INDEX mappings_by_destination_model ON mappings (destination_id, model);

-- The store-wide change version. Every write transaction first increments it (which also
-- serialises writers, so versions follow commit order), then NOTIFYs the new value on
-- channel segment_connections_changes; replicas LISTEN, and poll this row as a fallback.
CREATE TABLE catalog (
    id      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    version BIGINT NOT NULL
);
INSERT INTO catalog (version) VALUES (0);
