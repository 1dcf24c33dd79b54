-- Audit delivery (storage accounts, diagnostic settings) and the indexes behind audit queries.
CREATE TABLE storage_accounts (
    name TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    location TEXT NOT NULL,
    local_path TEXT NOT NULL,
    max_file_bytes BIGINT NOT NULL,
    max_file_age_secs BIGINT NOT NULL,
    tags_json TEXT,
    created BIGINT NOT NULL);
CREATE INDEX storage_accounts_group ON storage_accounts (subscription_id, resource_group);
CREATE TABLE diagnostic_settings (
    vault_id TEXT NOT NULL,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    storage_account TEXT,
    audit_enabled BOOLEAN NOT NULL,
    properties_json TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (vault_id, name_key));
CREATE INDEX diagnostic_settings_account ON diagnostic_settings (storage_account);
-- durationMs lives in the record JSON (top level). A stored column lets SQL sort on it; the
-- function never fails, so an odd record cannot block an audit append (NULL instead).
CREATE FUNCTION strongbox_duration_ms(record TEXT) RETURNS BIGINT AS $$
BEGIN
    RETURN (record::jsonb ->> 'durationMs')::BIGINT;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$ LANGUAGE plpgsql IMMUTABLE;
ALTER TABLE audit_records ADD COLUMN duration_ms BIGINT
    GENERATED ALWAYS AS (strongbox_duration_ms(record_json)) STORED;
CREATE INDEX audit_records_operation ON audit_records (vault_id, operation, time_ms);
CREATE INDEX audit_records_caller ON audit_records (vault_id, caller_oid, time_ms);
CREATE INDEX audit_records_result ON audit_records (vault_id, result_type, time_ms);
