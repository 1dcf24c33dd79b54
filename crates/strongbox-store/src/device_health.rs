//! What a device's health is judged from beyond its vault: the last report of the secret
//! versions the device holds (sent after every sync), and a short history of the alerts it
//! raised (first seen, current episode, occurrences, cleared). The alerts themselves are
//! computed from the real state on every read; only their history is kept here.

use crate::StoreResult;
use async_trait::async_trait;

/// The versions of its secrets a device said it holds, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReportRow {
    pub device_id: String,
    /// Unix seconds (server clock) when the report arrived.
    pub reported_at: i64,
    /// `[{"name", "version"}]`, owned by the domain. Names and versions only, never a value.
    pub secrets_json: String,
}

/// The history of one alert type on one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceAlertRow {
    pub device_id: String,
    pub alert_type: String,
    /// When the alert was first observed, ever.
    pub first_seen: i64,
    /// When its current (or last) episode began.
    pub appeared_at: i64,
    /// Episodes so far: a condition that clears and comes back counts again.
    pub occurrences: i64,
    /// When the last episode ended; None while the alert is raised.
    pub cleared_at: Option<i64>,
}

#[async_trait]
pub trait DeviceHealthStore: Send + Sync {
    /// Creates or replaces the device's last report.
    async fn put_device_report(&self, report: DeviceReportRow) -> StoreResult<()>;
    async fn get_device_report(&self, device_id: &str) -> StoreResult<Option<DeviceReportRow>>;

    /// Records that exactly the alert types `raised` are raised now, in one transaction: a type
    /// never seen gets a row (first seen and appeared now, one occurrence); a cleared one that
    /// is back starts a new episode (appeared now, occurrences + 1); a raised one that is not in
    /// `raised` is cleared at `now`. Raised ones that stay raised do not change. Returns every
    /// row of the device, by alert type.
    async fn observe_device_alerts(
        &self,
        device_id: &str,
        raised: &[String],
        now: i64,
    ) -> StoreResult<Vec<DeviceAlertRow>>;

    /// Points the device at another system-assigned identity (its old one was deleted and a
    /// new one made). NotFound if the device is absent.
    async fn set_device_identity(&self, device_id: &str, object_id: &str) -> StoreResult<()>;

    /// Forgets the report and alert history of a deleted device.
    async fn delete_device_health(&self, device_id: &str) -> StoreResult<()>;
}
