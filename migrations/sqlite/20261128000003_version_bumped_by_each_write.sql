-- The change version is now bumped once per write, by the write's transaction itself
-- (`UPDATE catalog SET version = version + 1 RETURNING version`, its first statement), as on
-- PostgreSQL: one protocol for both backends (src/store/shared.rs). The per-row triggers would
-- bump it again, and once per cascaded row.
DROP TRIGGER destinations_inserted;
DROP TRIGGER destinations_updated;
DROP TRIGGER destinations_deleted;
DROP TRIGGER mappings_inserted;
DROP TRIGGER mappings_updated;
DROP TRIGGER mappings_deleted;
