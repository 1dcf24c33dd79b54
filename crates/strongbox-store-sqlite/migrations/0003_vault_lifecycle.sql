-- The vault lifecycle through the management API: ARM properties of vaults that the data plane
-- does not use, and resource locks. Both go with their vault when it is purged (cascade).
CREATE TABLE vault_arm (
    vault_id TEXT PRIMARY KEY REFERENCES vaults(id) ON DELETE CASCADE,
    sku TEXT NOT NULL,
    properties_json TEXT NOT NULL);
CREATE TABLE resource_locks (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    level TEXT NOT NULL,
    notes TEXT,
    owners_json TEXT,
    vault_id TEXT REFERENCES vaults(id) ON DELETE CASCADE,
    created INTEGER NOT NULL,
    PRIMARY KEY (scope, name));
CREATE INDEX resource_locks_vault ON resource_locks (vault_id);
CREATE INDEX vaults_placement ON vaults (subscription_id, resource_group, name);
