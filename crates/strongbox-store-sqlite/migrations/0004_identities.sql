-- Managed identities, asymmetric key credentials, the assertion replay cache, and the bindings
-- of managed-identity token endpoints (secrets stored as keyed hashes only).
CREATE TABLE managed_identities (
    object_id TEXT PRIMARY KEY REFERENCES principals(object_id),
    kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    name TEXT NOT NULL,
    location TEXT NOT NULL,
    tags_json TEXT,
    created INTEGER NOT NULL,
    UNIQUE (kind, resource_id));
CREATE INDEX managed_identities_subscription ON managed_identities (subscription_id);
CREATE TABLE key_credentials (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(object_id),
    kind TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    der BLOB NOT NULL,
    not_before INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    created INTEGER NOT NULL,
    UNIQUE (principal_id, key_id));
CREATE TABLE assertion_ids (
    principal_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (principal_id, jti));
CREATE INDEX assertion_ids_expires ON assertion_ids (expires);
CREATE TABLE identity_endpoints (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(object_id),
    form TEXT NOT NULL,
    secret_hash BLOB UNIQUE,
    created INTEGER NOT NULL);
CREATE INDEX identity_endpoints_principal ON identity_endpoints (principal_id);
