//! Wire types of Strongbox's APIs: the Azure Key Vault secrets JSON shapes, the token service
//! documents, and the one table of error codes with their HTTP statuses. serde only: no HTTP
//! framework, no storage.

pub mod arm_locks;
pub mod arm_vaults;
pub mod changes;
pub mod error;
pub mod secrets;
pub mod token;

pub use error::{ErrorBody, ErrorCode};
