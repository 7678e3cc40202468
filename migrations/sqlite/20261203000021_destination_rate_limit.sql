-- A destination's rate limit: the most events per second one replica sends it; 0 is unlimited,
-- which every existing destination keeps.
ALTER TABLE destinations
    ADD COLUMN rate_limit INTEGER NOT NULL DEFAULT 0 CHECK (rate_limit BETWEEN 0 AND 100000);
