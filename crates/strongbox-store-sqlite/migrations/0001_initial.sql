-- Strongbox schema, SQLite flavour. Secret values are ciphertext only.
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE data_keys (id INTEGER PRIMARY KEY, wrapped BLOB NOT NULL);
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY, sealed_private BLOB NOT NULL, public_jwk TEXT NOT NULL, created INTEGER NOT NULL);
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
    hash BLOB NOT NULL,
    expires INTEGER NOT NULL);
CREATE INDEX client_secrets_principal ON client_secrets (principal_id);
CREATE TABLE vaults (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    retention_days INTEGER NOT NULL,
    purge_protection BOOLEAN NOT NULL,
    created INTEGER NOT NULL);
CREATE TABLE access_policies (
    vault_id TEXT NOT NULL REFERENCES vaults(id),
    object_id TEXT NOT NULL,
    secret_permissions TEXT NOT NULL,
    PRIMARY KEY (vault_id, object_id));
CREATE TABLE secrets (
    vault_id TEXT NOT NULL REFERENCES vaults(id),
    name TEXT NOT NULL,
    display_name TEXT NOT NULL,
    latest_seq INTEGER NOT NULL,
    deleted_at INTEGER,
    purge_at INTEGER,
    PRIMARY KEY (vault_id, name));
CREATE INDEX secrets_purge_due ON secrets (purge_at) WHERE deleted_at IS NOT NULL;
CREATE TABLE secret_versions (
    vault_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sealed_value BLOB NOT NULL,
    content_type TEXT,
    tags_json TEXT,
    enabled BOOLEAN NOT NULL,
    nbf INTEGER,
    exp INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (vault_id, name, version),
    UNIQUE (vault_id, name, seq),
    FOREIGN KEY (vault_id, name) REFERENCES secrets (vault_id, name));
CREATE TABLE audit_records (
    vault_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    operation TEXT NOT NULL,
    result_type TEXT NOT NULL,
    caller_oid TEXT,
    record_json TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (vault_id, seq));
CREATE INDEX audit_records_time ON audit_records (vault_id, time_ms);
CREATE TABLE audit_heads (vault_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash BLOB NOT NULL);
