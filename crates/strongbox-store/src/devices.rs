//! Edge devices (`Microsoft.DataBoxEdge/dataBoxEdgeDevices`): the device resource, the
//! long-running operations that provision it (activation-key generation), and the one-time
//! enrolment secrets that activation keys carry (stored as hashes only).

use crate::{AuditEntry, StoreResult};
use async_trait::async_trait;

/// A device resource. What provisioning built (vault, lock, audit target, CIK reference,
/// identity status) is kept in `state_json`, owned by the domain.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    /// A GUID: the device's own id (also in its activation keys).
    pub id: String,
    /// Lowercase ARM id, unique.
    pub resource_id: String,
    pub subscription_id: String,
    /// Lowercase.
    pub resource_group: String,
    /// As the client spelled it.
    pub name: String,
    pub location: String,
    pub tags_json: Option<String>,
    /// Object id of the device's system-assigned identity.
    pub identity_object_id: String,
    pub state_json: String,
    pub created: i64,
}

/// A long-running operation on a device; its body (steps, result, error) is domain JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceOperationRow {
    pub id: String,
    pub device_id: String,
    /// `InProgress`, `Succeeded` or `Failed`.
    pub status: String,
    pub body_json: String,
    pub created: i64,
    pub updated: i64,
}

/// The one-time secret of an activation key: only its hash is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentRow {
    pub id: String,
    pub device_id: String,
    pub secret_hash: Vec<u8>,
    pub expires: i64,
    pub used_at: Option<i64>,
    pub created: i64,
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Inserts the device with `audit`. Conflict if the resource id is taken.
    async fn insert_device(&self, device: DeviceRow, audit: AuditEntry) -> StoreResult<()>;
    /// By (case-insensitive) resource id.
    async fn get_device(&self, resource_id: &str) -> StoreResult<Option<DeviceRow>>;
    async fn get_device_by_id(&self, id: &str) -> StoreResult<Option<DeviceRow>>;
    /// Devices of a subscription (or one group in it), by resource id.
    async fn list_devices(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
    ) -> StoreResult<Vec<DeviceRow>>;
    /// Replaces `state_json` and `tags_json`. NotFound if absent.
    async fn update_device(&self, device: &DeviceRow) -> StoreResult<()>;
    /// Removes the device with its operations and enrolments, and appends `audit`. NotFound if
    /// absent.
    async fn delete_device(&self, id: &str, audit: AuditEntry) -> StoreResult<()>;

    /// Creates or replaces the operation.
    async fn put_device_operation(&self, op: &DeviceOperationRow) -> StoreResult<()>;
    async fn get_device_operation(&self, id: &str) -> StoreResult<Option<DeviceOperationRow>>;

    /// Inserts an enrolment and removes every earlier unused one of the same device (a new
    /// activation key invalidates the older ones), in one transaction.
    async fn replace_enrollment(&self, enrollment: EnrollmentRow) -> StoreResult<()>;
    async fn get_enrollment(&self, id: &str) -> StoreResult<Option<EnrollmentRow>>;
    /// Marks the enrolment used at `now` if it is unused and not expired; false otherwise (a
    /// second use, or a race lost to another request).
    async fn consume_enrollment(&self, id: &str, now: i64) -> StoreResult<bool>;
}
