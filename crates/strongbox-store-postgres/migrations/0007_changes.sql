-- The change feed: one row per committed secret mutation, written in the mutation's transaction
-- at the position (audit chain seq) of its audit record. Rows older than the retention go; the
-- highest position pruned is kept as the vault's floor, so a cursor below it is known to be stale.
CREATE TABLE secret_changes (
    vault_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    version TEXT,
    change TEXT NOT NULL,
    enabled BOOLEAN,
    time_ms BIGINT NOT NULL,
    PRIMARY KEY (vault_id, seq));
CREATE INDEX secret_changes_time ON secret_changes (time_ms);
CREATE TABLE change_floors (vault_id TEXT PRIMARY KEY, floor BIGINT NOT NULL);
