-- Strongbox schema, PostgreSQL flavour. Secret values are ciphertext only.
CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE data_keys (id BIGINT PRIMARY KEY, wrapped BYTEA NOT NULL);
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY, sealed_private BYTEA NOT NULL, public_jwk TEXT NOT NULL, created BIGINT NOT NULL);
CREATE TABLE tenants (id TEXT PRIMARY KEY, display_name TEXT NOT NULL);
CREATE TABLE principals (
    object_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    client_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    UNIQUE (tenant_id, client_id));
CREATE TABLE client_secrets (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(object_id),
    hash BYTEA NOT NULL,
    expires BIGINT NOT NULL);
CREATE INDEX client_secrets_principal ON client_secrets (principal_id);
CREATE TABLE vaults (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    retention_days BIGINT NOT NULL,
    purge_protection BOOLEAN NOT NULL,
    created BIGINT NOT NULL);
CREATE TABLE access_policies (
    vault_id TEXT NOT NULL REFERENCES vaults(id),
    object_id TEXT NOT NULL,
    secret_permissions TEXT NOT NULL,
    PRIMARY KEY (vault_id, object_id));
CREATE TABLE secrets (
    vault_id TEXT NOT NULL REFERENCES vaults(id),
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    latest_seq BIGINT NOT NULL,
    deleted_at BIGINT,
    purge_at BIGINT,
    PRIMARY KEY (vault_id, name));
CREATE INDEX secrets_purge_due ON secrets (purge_at) WHERE deleted_at IS NOT NULL;
CREATE TABLE secret_versions (
    vault_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    seq BIGINT NOT NULL,
    sealed_value BYTEA NOT NULL,
    content_type TEXT,
    tags_json TEXT,
    enabled BOOLEAN NOT NULL,
    nbf BIGINT,
    exp BIGINT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (vault_id, name, version),
    UNIQUE (vault_id, name, seq),
    FOREIGN KEY (vault_id, name) REFERENCES secrets (vault_id, name));
CREATE TABLE audit_records (
    vault_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time_ms BIGINT NOT NULL,
    operation TEXT NOT NULL,
    result_type TEXT NOT NULL,
    caller_oid TEXT,
    record_json TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (vault_id, seq));
CREATE INDEX audit_records_time ON audit_records (vault_id, time_ms);
CREATE TABLE audit_heads (vault_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash BYTEA NOT NULL);
