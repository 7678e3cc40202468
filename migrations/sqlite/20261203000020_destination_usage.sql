-- Usage per destination and calendar month (UTC, `YYYY-MM`): Tracking API calls (events
-- delivered), batches and bytes sent, and the HyperLogLog sketch of the month's distinct users
-- (src/usage/sketch.rs's stored form). Replicas add their counts and merge their sketches in.
CREATE TABLE destination_usage (
    destination_id TEXT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    month          TEXT NOT NULL,
    calls          INTEGER NOT NULL DEFAULT 0,
    batches        INTEGER NOT NULL DEFAULT 0,
    bytes          INTEGER NOT NULL DEFAULT 0,
    users_sketch   BLOB,
    PRIMARY KEY (destination_id, month)
);
