-- Subscriptions, ARM placement and soft delete of vaults, and role assignments.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    display_name TEXT NOT NULL);
ALTER TABLE vaults ADD COLUMN subscription_id TEXT NOT NULL DEFAULT '';
ALTER TABLE vaults ADD COLUMN resource_group TEXT NOT NULL DEFAULT '';
ALTER TABLE vaults ADD COLUMN location TEXT NOT NULL DEFAULT 'local';
ALTER TABLE vaults ADD COLUMN tags_json TEXT;
ALTER TABLE vaults ADD COLUMN enable_rbac BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE vaults ADD COLUMN deleted_at INTEGER;
ALTER TABLE vaults ADD COLUMN purge_at INTEGER;
CREATE INDEX vaults_purge_due ON vaults (purge_at) WHERE deleted_at IS NOT NULL;
CREATE TABLE role_assignments (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    created INTEGER NOT NULL);
CREATE INDEX role_assignments_principal ON role_assignments (principal_id);
CREATE INDEX role_assignments_scope ON role_assignments (scope);
