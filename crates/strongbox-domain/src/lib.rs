//! The rules of Strongbox: secrets and their versions, soft delete / recover / purge / retention,
//! backups, names, authorization (a pure function returning a capability), and audit records.
//! Talks to storage, time and keys through `Store`, `Clock` and `Keyring`; knows no HTTP.

pub mod arm;
pub mod audit;
pub mod authz;
pub mod changes;
pub mod clock;
pub mod devices;
pub mod error;
pub mod identities;
pub mod locks;
pub mod names;
pub mod rbac;
pub mod secrets;
pub mod vault_lifecycle;
pub mod vaults;

pub use authz::{
    Caller, FeedGrant, Grant, Permission, SecretAction, VaultAccess, authorize, authorize_feed,
};
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use error::{DISK_FULL_MESSAGE, DISK_FULL_RETRY_AFTER_SECS, DomainError};
