-- Edge devices, their provisioning operations and the hashed one-time secrets of activation keys.
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    resource_id TEXT NOT NULL UNIQUE,
    subscription_id TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    name TEXT NOT NULL,
    location TEXT NOT NULL,
    tags_json TEXT,
    identity_object_id TEXT NOT NULL,
    state_json TEXT NOT NULL,
    created BIGINT NOT NULL);
CREATE INDEX devices_group ON devices (subscription_id, resource_group);
CREATE TABLE device_operations (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    status TEXT NOT NULL,
    body_json TEXT NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL);
CREATE INDEX device_operations_device ON device_operations (device_id);
CREATE TABLE device_enrollments (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    expires BIGINT NOT NULL,
    used_at BIGINT,
    created BIGINT NOT NULL);
CREATE INDEX device_enrollments_device ON device_enrollments (device_id);
