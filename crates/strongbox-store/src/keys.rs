//! What key maintenance needs from a store: rotation (find values sealed under older data keys,
//! re-encrypt them in place, retire a key nothing uses), rekey (several metadata entries
//! replaced in one transaction) and online backup (a consistent copy of the whole store).

use crate::StoreResult;
use async_trait::async_trait;
use std::path::Path;

/// A secret version's sealed value, named by its key (the associated data it is bound to).
#[derive(Debug, Clone, PartialEq)]
pub struct SealedValueRow {
    pub vault_id: String,
    pub name: String,
    pub version: String,
    pub sealed: Vec<u8>,
}

/// The 4 bytes a sealed value carries as its data key id (the keyring's format: version byte,
/// then the id big-endian), as SQL compares them.
pub fn key_id_bytes(id: u32) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// Whether a write sealed under `sealed`'s data key may still be stored: values not in the
/// keyring's format (the conformance suite's placeholders) name no key.
pub fn sealed_key(sealed: &[u8]) -> Option<i64> {
    strongbox_crypto::sealed_key_id(sealed).map(i64::from)
}

#[async_trait]
pub trait KeyStore {
    /// Secret versions whose value is sealed under another key than `key_id`, in key order,
    /// after `after` (vault id, name, version), at most `limit`.
    async fn values_not_under(
        &self,
        key_id: u32,
        after: Option<(String, String, String)>,
        limit: u32,
    ) -> StoreResult<Vec<SealedValueRow>>;
    /// How many stored values (secret versions and token signing keys) are sealed under
    /// another key than `key_id`.
    async fn count_not_under(&self, key_id: u32) -> StoreResult<u64>;
    /// Replaces a version's sealed value if it is still `row.sealed` (false: it changed or
    /// went away meanwhile, which leaves nothing to do).
    async fn replace_sealed_value(&self, row: &SealedValueRow, new: &[u8]) -> StoreResult<bool>;
    /// The same for a token signing key's sealed private key.
    async fn replace_sealed_signing_key(
        &self,
        kid: &str,
        old: &[u8],
        new: &[u8],
    ) -> StoreResult<bool>;
    /// Deletes data key `id` if no stored value is sealed under it, checked in the same
    /// transaction (Conflict otherwise). Writes sealed under a deleted key are refused in their
    /// own transaction, so nothing can be left behind under it. NotFound if it is already gone.
    async fn retire_data_key(&self, id: u32) -> StoreResult<()>;
    /// Sets (Some) or removes (None) metadata entries, all in one transaction.
    async fn replace_meta(&self, entries: &[(&str, Option<&[u8]>)]) -> StoreResult<()>;
    /// Writes a consistent copy of the whole store to `path` (a new file) while it serves.
    async fn snapshot_into(&self, path: &Path) -> StoreResult<()>;
}
