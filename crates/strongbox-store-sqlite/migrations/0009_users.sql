-- People who sign in: users (principals of kind User), recovery codes (keyed hashes), the grants
-- of the interactive OAuth flows and web sessions (found by keyed hashes of their handles),
-- refresh tokens in rotation families, sign-in failure counters, the sign-in log, and the
-- tenant setting that requires a second factor.
CREATE TABLE users (
    object_id TEXT PRIMARY KEY REFERENCES principals(object_id),
    upn TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    totp_sealed BLOB,
    totp_last_step INTEGER NOT NULL,
    created INTEGER NOT NULL);
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users(object_id),
    hash BLOB NOT NULL,
    used INTEGER,
    PRIMARY KEY (user_id, hash));
CREATE TABLE auth_grants (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    user_code TEXT UNIQUE,
    user_id TEXT,
    state TEXT NOT NULL,
    payload TEXT NOT NULL,
    expires INTEGER NOT NULL,
    touched INTEGER NOT NULL);
CREATE INDEX auth_grants_user ON auth_grants (user_id);
CREATE INDEX auth_grants_expires ON auth_grants (expires);
CREATE TABLE refresh_tokens (
    id TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    used INTEGER,
    revoked INTEGER NOT NULL);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE TABLE signin_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_failure INTEGER NOT NULL,
    last_failure INTEGER NOT NULL);
CREATE TABLE signin_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    tenant_id TEXT,
    user_id TEXT,
    upn TEXT,
    client_id TEXT,
    flow TEXT NOT NULL,
    result TEXT NOT NULL,
    reason TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT);
CREATE INDEX signin_log_time ON signin_log (time_ms);
CREATE TABLE tenant_settings (
    tenant_id TEXT PRIMARY KEY,
    require_mfa INTEGER NOT NULL);
