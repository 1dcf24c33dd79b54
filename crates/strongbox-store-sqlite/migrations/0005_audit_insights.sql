-- Audit delivery (storage accounts, diagnostic settings) and the indexes behind audit queries.
CREATE TABLE storage_accounts (
    name TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    location TEXT NOT NULL,
    local_path TEXT NOT NULL,
    max_file_bytes INTEGER NOT NULL,
    max_file_age_secs INTEGER NOT NULL,
    tags_json TEXT,
    created INTEGER NOT NULL);
CREATE INDEX storage_accounts_group ON storage_accounts (subscription_id, resource_group);
CREATE TABLE diagnostic_settings (
    vault_id TEXT NOT NULL,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    storage_account TEXT,
    audit_enabled BOOLEAN NOT NULL,
    properties_json TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (vault_id, name_key));
CREATE INDEX diagnostic_settings_account ON diagnostic_settings (storage_account);
-- durationMs lives in the record JSON (a number, or a string as Azure writes it); a virtual
-- column lets SQL sort on it (NULL when absent).
ALTER TABLE audit_records ADD COLUMN duration_ms INTEGER
    GENERATED ALWAYS AS (CASE WHEN json_valid(record_json)
        THEN CAST(json_extract(record_json, '$.durationMs') AS INTEGER) END) VIRTUAL;
CREATE INDEX audit_records_operation ON audit_records (vault_id, operation, time_ms);
CREATE INDEX audit_records_caller ON audit_records (vault_id, caller_oid, time_ms);
CREATE INDEX audit_records_result ON audit_records (vault_id, result_type, time_ms);
