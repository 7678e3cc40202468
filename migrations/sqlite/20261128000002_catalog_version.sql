-- A store-wide change version, bumped in the same transaction as every write to destinations or
-- mappings (also by the deletes a destination's deletion cascades to), so a cache can tell
-- cheaply whether anything changed.
CREATE TABLE catalog (
    id      INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO catalog (id, version) VALUES (1, 0);

CREATE TRIGGER destinations_inserted AFTER INSERT ON destinations
BEGIN UPDATE catalog SET version = version + 1; END;
CREATE TRIGGER destinations_updated AFTER UPDATE ON destinations
BEGIN UPDATE catalog SET version = version + 1; END;
CREATE TRIGGER destinations_deleted AFTER DELETE ON destinations
BEGIN UPDATE catalog SET version = version + 1; END;
CREATE TRIGGER mappings_inserted AFTER INSERT ON mappings
BEGIN UPDATE catalog SET version = version + 1; END;
CREATE TRIGGER mappings_updated AFTER UPDATE ON mappings
BEGIN UPDATE catalog SET version = version + 1; END;
CREATE TRIGGER mappings_deleted AFTER DELETE ON mappings
BEGIN UPDATE catalog SET version = version + 1; END;
