-- Device health beyond the vault: the last secret-version report of each device (names and
-- versions only) and the history of the alerts it raised.
CREATE TABLE device_reports (
    device_id TEXT PRIMARY KEY,
    reported_at INTEGER NOT NULL,
    secrets_json TEXT NOT NULL);
CREATE TABLE device_alerts (
    device_id TEXT NOT NULL,
    alert_type TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    appeared_at INTEGER NOT NULL,
    occurrences INTEGER NOT NULL,
    cleared_at INTEGER,
    PRIMARY KEY (device_id, alert_type));
