//! The secrets data plane: every operation takes the `Grant` that authorized it, and leaves one
//! audit record behind on success (committed with the mutation, or appended durably for reads).
//! Failures are recorded by the caller, who knows the final status.

use crate::audit::{self, AuditWriter, RequestInfo};
use crate::changes::{ChangeNotifier, ChangesRequest};
use crate::{Clock, DomainError, FeedGrant, Grant, names};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use strongbox_crypto::Keyring;
use strongbox_store::{ChangeRow, Mutation, SecretRow, Store, StoreError, VaultRow, VersionRow};
use strongbox_types::changes::{ChangeEntry, ChangesPage};
use strongbox_types::secrets::*;
use zeroize::{Zeroize, Zeroizing};

/// AKV's limit on a secret value.
pub const MAX_VALUE_BYTES: usize = 25 * 1024;
const MAX_TAGS: usize = 15;
const MAX_TAG_NAME: usize = 512;
const MAX_TAG_VALUE: usize = 256;
const MAX_CONTENT_TYPE: usize = 255;
/// AKV's page size bounds.
pub const MAX_PAGE: u32 = 25;

pub struct SecretService {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    audit: AuditWriter,
    changes: Arc<ChangeNotifier>,
}

/// A page request: `maxresults` and the opaque `$skiptoken` of the previous page.
#[derive(Debug, Default, Clone)]
pub struct PageRequest {
    pub max_results: Option<u32>,
    pub skip_token: Option<String>,
}

/// What a version's sealed value is bound to (also used when a rotation reseals it).
pub fn value_aad(vault_id: &str, name: &str, version: &str) -> Vec<u8> {
    format!("strongbox secret v1\0{vault_id}\0{name}\0{version}").into_bytes()
}

const BACKUP_AAD: &[u8] = b"strongbox secret backup v1";

/// The plaintext inside a backup blob. Zeroized when dropped.
#[derive(Serialize, Deserialize)]
struct BackupPayload {
    tenant_id: String,
    name: String,
    versions: Vec<BackupVersion>,
}

#[derive(Serialize, Deserialize)]
struct BackupVersion {
    version: String,
    value: String,
    content_type: Option<String>,
    tags_json: Option<String>,
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: i64,
    updated: i64,
}

impl Drop for BackupPayload {
    fn drop(&mut self) {
        for v in &mut self.versions {
            v.value.zeroize();
        }
    }
}

fn not_found(name: &str, version: Option<&str>) -> DomainError {
    match version {
        Some(v) => DomainError::NotFound(format!(
            "A secret with (name/id) {name}/{v} was not found in this key vault."
        )),
        None => DomainError::NotFound(format!(
            "A secret with (name/id) {name} was not found in this key vault."
        )),
    }
}

fn deleted_not_found(name: &str) -> DomainError {
    DomainError::NotFound(format!("Deleted Secret not found: {name}"))
}

fn recovery_level(vault: &VaultRow) -> String {
    let custom = if vault.retention_days < 90 {
        "CustomizedRecoverable"
    } else {
        "Recoverable"
    };
    if vault.purge_protection {
        custom.to_string()
    } else {
        format!("{custom}+Purgeable")
    }
}

fn validate_tags(tags: &Option<Tags>) -> Result<(), DomainError> {
    let Some(tags) = tags else { return Ok(()) };
    if tags.len() > MAX_TAGS {
        return Err(DomainError::BadParameter(format!(
            "A secret may have at most {MAX_TAGS} tags."
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > MAX_TAG_NAME || v.len() > MAX_TAG_VALUE {
            return Err(DomainError::BadParameter(format!(
                "Tag names must be 1-{MAX_TAG_NAME} characters and tag values at most {MAX_TAG_VALUE}."
            )));
        }
    }
    Ok(())
}

fn validate_content_type(ct: &Option<String>) -> Result<(), DomainError> {
    match ct {
        Some(ct) if ct.len() > MAX_CONTENT_TYPE => Err(DomainError::BadParameter(format!(
            "contentType must be at most {MAX_CONTENT_TYPE} characters."
        ))),
        _ => Ok(()),
    }
}

fn validate_window(nbf: Option<i64>, exp: Option<i64>) -> Result<(), DomainError> {
    match (nbf, exp) {
        (Some(n), Some(e)) if n > e => Err(DomainError::BadParameter(
            "nbf must not be later than exp.".into(),
        )),
        _ => Ok(()),
    }
}

fn encode_token<T: Serialize>(t: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).expect("page tokens serialize"))
}

fn decode_token<T: for<'de> Deserialize<'de>>(token: &str) -> Result<T, DomainError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| DomainError::BadParameter("The $skiptoken is malformed.".into()))
}

fn page_size(page: &PageRequest) -> Result<u32, DomainError> {
    match page.max_results {
        None => Ok(MAX_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(DomainError::BadParameter(format!(
            "maxresults must be between 1 and {MAX_PAGE}."
        ))),
    }
}

fn next_link(info: &RequestInfo, path: &str, token: Option<String>, size: u32) -> Option<String> {
    token.map(|t| {
        format!(
            "{}/{path}?api-version={}&$skiptoken={t}&maxresults={size}",
            info.base_url, info.api_version
        )
    })
}

impl SecretService {
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        audit: AuditWriter,
    ) -> Self {
        SecretService {
            store,
            keyring,
            clock,
            audit,
            changes: Arc::new(ChangeNotifier::default()),
        }
    }

    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Uses `notifier` for change-feed wake-ups (tests pick its re-check interval).
    pub fn with_change_notifier(mut self, notifier: Arc<ChangeNotifier>) -> Self {
        self.changes = notifier;
        self
    }

    /// Whether the keyring seals and opens with its active data key (readiness).
    pub fn keyring_works(&self) -> bool {
        let aad = b"strongbox:readyz";
        let sealed = self.keyring.seal(aad, b"probe");
        self.keyring
            .open_sealed(aad, &sealed)
            .is_ok_and(|p| p.as_slice() == b"probe")
    }

    /// The wake-ups of this node's change-feed long polls (the server closes it on shutdown).
    pub fn change_notifier(&self) -> &Arc<ChangeNotifier> {
        &self.changes
    }

    /// Applies a mutation (recorded in the change feed by the store, in the same transaction),
    /// then wakes the vault's long polls on this node.
    async fn commit(
        &self,
        mutation: Mutation,
        audit: strongbox_store::AuditEntry,
    ) -> Result<(), StoreError> {
        let vault_id = audit.vault_id.clone();
        self.store.apply(mutation, audit).await?;
        self.changes.signal(&vault_id);
        Ok(())
    }

    fn secret_id(info: &RequestInfo, display: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{}/secrets/{display}/{v}", info.base_url),
            None => format!("{}/secrets/{display}", info.base_url),
        }
    }

    fn attributes(vault: &VaultRow, v: &VersionRow) -> SecretAttributes {
        SecretAttributes {
            enabled: v.enabled,
            nbf: v.nbf,
            exp: v.exp,
            created: v.created,
            updated: v.updated,
            recovery_level: recovery_level(vault),
            recoverable_days: vault.retention_days,
        }
    }

    fn tags(v: &VersionRow) -> Option<Tags> {
        v.tags_json
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
    }

    fn bundle(
        vault: &VaultRow,
        info: &RequestInfo,
        display: &str,
        v: &VersionRow,
        value: Option<String>,
    ) -> SecretBundle {
        SecretBundle {
            value,
            id: Self::secret_id(info, display, Some(&v.version)),
            content_type: v.content_type.clone(),
            attributes: Self::attributes(vault, v),
            tags: Self::tags(v),
        }
    }

    fn item(
        vault: &VaultRow,
        info: &RequestInfo,
        display: &str,
        v: &VersionRow,
        version: Option<&str>,
    ) -> SecretItem {
        SecretItem {
            id: Self::secret_id(info, display, version),
            attributes: Self::attributes(vault, v),
            tags: Self::tags(v),
            content_type: v.content_type.clone(),
        }
    }

    fn deletion(info: &RequestInfo, s: &SecretRow) -> DeletionInfo {
        let d = s.deleted.expect("only called on deleted secrets");
        DeletionInfo {
            recovery_id: format!("{}/deletedsecrets/{}", info.base_url, s.display_name),
            deleted_date: d.deleted_at,
            scheduled_purge_date: d.purge_at,
        }
    }

    /// Appends the success record of a read and waits until it is durable.
    async fn audit_read(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        status: u16,
        id: Option<&str>,
    ) -> Result<(), DomainError> {
        let e = audit::entry(
            grant.vault(),
            info,
            Some(grant.caller()),
            status,
            id,
            self.clock.now_ms(),
        );
        Ok(self.audit.append(e).await?)
    }

    fn success(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        status: u16,
        id: &str,
    ) -> strongbox_store::AuditEntry {
        audit::entry(
            grant.vault(),
            info,
            Some(grant.caller()),
            status,
            Some(id),
            self.clock.now_ms(),
        )
    }

    async fn live_latest(
        &self,
        vault: &VaultRow,
        name: &str,
        raw: &str,
    ) -> Result<(SecretRow, VersionRow), DomainError> {
        match self.store.get_latest(&vault.id, name).await? {
            Some((s, v)) if s.deleted.is_none() => Ok((s, v)),
            _ => Err(not_found(raw, None)),
        }
    }

    /// A live secret with the given version, or its latest when `version` is None.
    async fn live_version(
        &self,
        vault: &VaultRow,
        name: &str,
        raw: &str,
        version: Option<&str>,
    ) -> Result<(SecretRow, VersionRow), DomainError> {
        let Some(v) = version else {
            return self.live_latest(vault, name, raw).await;
        };
        let secret = self
            .store
            .get_secret(&vault.id, name)
            .await?
            .filter(|s| s.deleted.is_none());
        let row = self
            .store
            .get_version(&vault.id, name, &v.to_ascii_lowercase())
            .await?;
        match (secret, row) {
            (Some(s), Some(r)) => Ok((s, r)),
            _ => Err(not_found(raw, Some(v))),
        }
    }

    async fn deleted_secret(
        &self,
        vault: &VaultRow,
        name: &str,
        raw: &str,
    ) -> Result<(SecretRow, VersionRow), DomainError> {
        match self.store.get_latest(&vault.id, name).await? {
            Some((s, v)) if s.deleted.is_some() => Ok((s, v)),
            _ => Err(deleted_not_found(raw)),
        }
    }

    fn open_value(&self, v: &VersionRow) -> Result<String, DomainError> {
        let plain = self
            .keyring
            .open_sealed(
                &value_aad(&v.vault_id, &v.name, &v.version),
                &v.sealed_value,
            )
            .map_err(|e| DomainError::Internal(format!("secret {}/{}: {e}", v.name, v.version)))?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| DomainError::Internal("stored value is not UTF-8".into()))
    }

    pub async fn set(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        raw_name: &str,
        params: SecretSetParameters,
    ) -> Result<SecretBundle, DomainError> {
        let name = names::secret_name(raw_name)?;
        let value = Zeroizing::new(params.value);
        if value.len() > MAX_VALUE_BYTES {
            return Err(DomainError::BadParameter(format!(
                "The secret value is too large: at most {MAX_VALUE_BYTES} bytes are allowed."
            )));
        }
        validate_tags(&params.tags)?;
        validate_content_type(&params.content_type)?;
        let attrs = params.attributes.unwrap_or_default();
        validate_window(attrs.nbf, attrs.exp)?;
        let vault = grant.vault();
        let now = self.clock.now();
        let version = strongbox_crypto::random_hex_id();
        let row = VersionRow {
            vault_id: vault.id.clone(),
            name: name.clone(),
            version: version.clone(),
            seq: 0,
            sealed_value: self
                .keyring
                .seal(&value_aad(&vault.id, &name, &version), value.as_bytes()),
            content_type: params.content_type,
            tags_json: params
                .tags
                .as_ref()
                .map(|t| serde_json::to_string(t).expect("tags serialize")),
            enabled: attrs.enabled.unwrap_or(true),
            nbf: attrs.nbf,
            exp: attrs.exp,
            created: now,
            updated: now,
        };
        // An existing secret keeps the casing it was created with.
        let display = match self.store.get_secret(&vault.id, &name).await? {
            Some(s) if s.deleted.is_some() => return Err(deleted_conflict(raw_name)),
            Some(s) => s.display_name,
            None => raw_name.to_string(),
        };
        let id = Self::secret_id(info, &display, Some(&version));
        let audit = self.success(grant, info, 200, &id);
        match self
            .commit(
                Mutation::PutVersion {
                    display_name: display.clone(),
                    version: row.clone(),
                },
                audit,
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => return Err(deleted_conflict(raw_name)),
            Err(e) => return Err(e.into()),
        }
        Ok(Self::bundle(
            vault,
            info,
            &display,
            &row,
            Some(value.to_string()),
        ))
    }

    pub async fn get(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        raw_name: &str,
        version: Option<&str>,
    ) -> Result<SecretBundle, DomainError> {
        let name = names::secret_name(raw_name)?;
        let vault = grant.vault();
        let (secret, row) = self.live_version(vault, &name, raw_name, version).await?;
        if !row.enabled {
            return Err(DomainError::Forbidden {
                message: "Operation get is not allowed on a disabled secret.".into(),
                inner: Some("SecretDisabled"),
            });
        }
        let value = self.open_value(&row)?;
        let bundle = Self::bundle(vault, info, &secret.display_name, &row, Some(value));
        self.audit_read(grant, info, 200, Some(&bundle.id)).await?;
        Ok(bundle)
    }

    pub async fn update(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        raw_name: &str,
        version: Option<&str>,
        params: SecretUpdateParameters,
    ) -> Result<SecretBundle, DomainError> {
        let name = names::secret_name(raw_name)?;
        validate_tags(&params.tags)?;
        validate_content_type(&params.content_type)?;
        let vault = grant.vault();
        let (secret, mut row) = self.live_version(vault, &name, raw_name, version).await?;
        if let Some(ct) = params.content_type {
            row.content_type = Some(ct);
        }
        if let Some(tags) = params.tags {
            row.tags_json = Some(serde_json::to_string(&tags).expect("tags serialize"));
        }
        if let Some(a) = params.attributes {
            row.enabled = a.enabled.unwrap_or(row.enabled);
            row.nbf = a.nbf.or(row.nbf);
            row.exp = a.exp.or(row.exp);
        }
        validate_window(row.nbf, row.exp)?;
        row.updated = self.clock.now();
        let bundle = Self::bundle(vault, info, &secret.display_name, &row, None);
        let audit = self.success(grant, info, 200, &bundle.id);
        match self
            .commit(Mutation::UpdateVersion { version: row }, audit)
            .await
        {
            Ok(()) => Ok(bundle),
            Err(StoreError::NotFound) => Err(not_found(raw_name, version)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        page: &PageRequest,
    ) -> Result<ListResult<SecretItem>, DomainError> {
        let (rows, next) = self.page_of_secrets(grant, info, page, false).await?;
        let vault = grant.vault();
        let value = rows
            .iter()
            .map(|(s, v)| Self::item(vault, info, &s.display_name, v, None))
            .collect();
        let result = ListResult {
            value,
            next_link: next,
        };
        self.audit_read(grant, info, 200, None).await?;
        Ok(result)
    }

    pub async fn list_deleted(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        page: &PageRequest,
    ) -> Result<ListResult<DeletedSecretItem>, DomainError> {
        let (rows, next) = self.page_of_secrets(grant, info, page, true).await?;
        let vault = grant.vault();
        let value = rows
            .iter()
            // Azure names a deleted item by its secret id (`…/secrets/NAME`); the
            // `/deletedsecrets/` URL is only its recoveryId (the Rust SDK's resource_id() parses
            // the former and refuses the latter).
            .map(|(s, v)| DeletedSecretItem {
                item: Self::item(vault, info, &s.display_name, v, None),
                deletion: Self::deletion(info, s),
            })
            .collect();
        let result = ListResult {
            value,
            next_link: next,
        };
        self.audit_read(grant, info, 200, None).await?;
        Ok(result)
    }

    async fn page_of_secrets(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        page: &PageRequest,
        deleted: bool,
    ) -> Result<(Vec<(SecretRow, VersionRow)>, Option<String>), DomainError> {
        let size = page_size(page)?;
        let after: Option<String> = page.skip_token.as_deref().map(decode_token).transpose()?;
        let mut rows = self
            .store
            .list_secrets(&grant.vault().id, deleted, after.as_deref(), size + 1)
            .await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let token = more.then(|| encode_token(&rows.last().expect("a full page").0.name));
        let path = if deleted { "deletedsecrets" } else { "secrets" };
        Ok((rows, next_link(info, path, token, size)))
    }

    pub async fn list_versions(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        raw_name: &str,
        page: &PageRequest,
    ) -> Result<ListResult<SecretItem>, DomainError> {
        let name = names::secret_name(raw_name)?;
        let size = page_size(page)?;
        let after: i64 = page
            .skip_token
            .as_deref()
            .map(decode_token)
            .transpose()?
            .unwrap_or(0);
        let vault = grant.vault();
        let secret = self
            .store
            .get_secret(&vault.id, &name)
            .await?
            .filter(|s| s.deleted.is_none());
        let (mut rows, display) = match &secret {
            Some(s) => (
                self.store
                    .list_versions(&vault.id, &name, after, size + 1)
                    .await?,
                s.display_name.as_str(),
            ),
            None => (Vec::new(), raw_name),
        };
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let token = more.then(|| encode_token(&rows.last().expect("a full page").seq));
        let value = rows
            .iter()
            .map(|v| Self::item(vault, info, display, v, Some(&v.version)))
            .collect();
        let result = ListResult {
            value,
            next_link: next_link(info, &format!("secrets/{display}/versions"), token, size),
        };
        self.audit_read(grant, info, 200, None).await?;
        Ok(result)
    }

    pub async fn delete(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        raw_name: &str,
    ) -> Result<DeletedSecretBundle, DomainError> {
        let name = names::secret_name(raw_name)?;
        let vault = grant.vault();
        let (mut secret, row) = self.live_latest(vault, &name, raw_name).await?;
        let now = self.clock.now();
        let deletion = strongbox_store::Deletion {
            deleted_at: now,
            purge_at: now + vault.retention_days * 86_400,
        };
        secret.deleted = Some(deletion);
        let bundle = DeletedSecretBundle {
            secret: Self::bundle(vault, info, &secret.display_name, &row, None),
            deletion: Self::deletion(info, &secret),
        };
        let audit = self.success(grant, info, 200, &bundle.secret.id);
        let m = Mutation::SoftDelete {
            vault_id: vault.id.clone(),
            name,
            deleted_at: deletion.deleted_at,
            purge_at: deletion.purge_at,
        };
        match self.commit(m, audit).await {
            Ok(()) => Ok(bundle),
            Err(StoreError::NotFound) => Err(not_found(raw_name, None)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_deleted(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        raw_name: &str,
    ) -> Result<DeletedSecretBundle, DomainError> {
        let name = names::secret_name(raw_name)?;
        let vault = grant.vault();
        let (secret, row) = self.deleted_secret(vault, &name, raw_name).await?;
        let bundle = DeletedSecretBundle {
            secret: Self::bundle(vault, info, &secret.display_name, &row, None),
            deletion: Self::deletion(info, &secret),
        };
        self.audit_read(grant, info, 200, Some(&bundle.secret.id))
            .await?;
        Ok(bundle)
    }

    pub async fn recover(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        raw_name: &str,
    ) -> Result<SecretBundle, DomainError> {
        let name = names::secret_name(raw_name)?;
        let vault = grant.vault();
        let (secret, row) = self.deleted_secret(vault, &name, raw_name).await?;
        let bundle = Self::bundle(vault, info, &secret.display_name, &row, None);
        let audit = self.success(grant, info, 200, &bundle.id);
        match self
            .commit(
                Mutation::Recover {
                    vault_id: vault.id.clone(),
                    name,
                },
                audit,
            )
            .await
        {
            Ok(()) => Ok(bundle),
            Err(StoreError::NotFound) => Err(deleted_not_found(raw_name)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn purge(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        raw_name: &str,
    ) -> Result<(), DomainError> {
        let name = names::secret_name(raw_name)?;
        let vault = grant.vault();
        let (secret, _) = self.deleted_secret(vault, &name, raw_name).await?;
        if vault.purge_protection {
            return Err(DomainError::Forbidden {
                message: format!(
                    "Operation \"purge\" is not allowed because purge protection is enabled for vault '{}'. \
                     The secret will be purged automatically after its scheduled purge date.",
                    vault.name
                ),
                inner: Some("PurgeProtectionEnabled"),
            });
        }
        let id = format!("{}/deletedsecrets/{}", info.base_url, secret.display_name);
        let audit = self.success(grant, info, 204, &id);
        match self
            .commit(
                Mutation::Purge {
                    vault_id: vault.id.clone(),
                    name,
                },
                audit,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(deleted_not_found(raw_name)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn backup(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        raw_name: &str,
    ) -> Result<BackupBlob, DomainError> {
        let name = names::secret_name(raw_name)?;
        let vault = grant.vault();
        let (secret, _) = self.live_latest(vault, &name, raw_name).await?;
        let rows = self
            .store
            .list_versions(&vault.id, &name, 0, u32::MAX)
            .await?;
        let mut versions = Vec::with_capacity(rows.len());
        for v in rows {
            versions.push(BackupVersion {
                value: self.open_value(&v)?,
                version: v.version,
                content_type: v.content_type,
                tags_json: v.tags_json,
                enabled: v.enabled,
                nbf: v.nbf,
                exp: v.exp,
                created: v.created,
                updated: v.updated,
            });
        }
        let payload = BackupPayload {
            tenant_id: vault.tenant_id.clone(),
            name: secret.display_name.clone(),
            versions,
        };
        let plain =
            Zeroizing::new(serde_json::to_vec(&payload).expect("backup payload serializes"));
        let blob = BackupBlob {
            value: URL_SAFE_NO_PAD.encode(self.keyring.seal_backup(BACKUP_AAD, &plain)),
        };
        self.audit_read(
            grant,
            info,
            200,
            Some(&Self::secret_id(info, &secret.display_name, None)),
        )
        .await?;
        Ok(blob)
    }

    pub async fn restore(
        &self,
        grant: &Grant,
        info: &RequestInfo,
        blob: BackupBlob,
    ) -> Result<SecretBundle, DomainError> {
        let malformed = || {
            DomainError::BadParameter(
                "The backup blob is malformed, was altered, or was not made by this service."
                    .into(),
            )
        };
        let sealed = URL_SAFE_NO_PAD
            .decode(blob.value.trim_end_matches('='))
            .map_err(|_| malformed())?;
        let plain = self
            .keyring
            .open_backup(BACKUP_AAD, &sealed)
            .map_err(|_| malformed())?;
        let payload: BackupPayload = serde_json::from_slice(&plain).map_err(|_| malformed())?;
        let vault = grant.vault();
        if payload.tenant_id != vault.tenant_id {
            return Err(DomainError::BadParameter(
                "The backup was made in another tenant and cannot be restored here.".into(),
            ));
        }
        let name = names::secret_name(&payload.name)?;
        if payload.versions.is_empty() {
            return Err(malformed());
        }
        let versions: Vec<VersionRow> = payload
            .versions
            .iter()
            .map(|v| VersionRow {
                vault_id: vault.id.clone(),
                name: name.clone(),
                version: v.version.clone(),
                seq: 0,
                sealed_value: self
                    .keyring
                    .seal(&value_aad(&vault.id, &name, &v.version), v.value.as_bytes()),
                content_type: v.content_type.clone(),
                tags_json: v.tags_json.clone(),
                enabled: v.enabled,
                nbf: v.nbf,
                exp: v.exp,
                created: v.created,
                updated: v.updated,
            })
            .collect();
        let latest = versions.last().expect("checked non-empty").clone();
        let bundle = Self::bundle(vault, info, &payload.name, &latest, None);
        let audit = self.success(grant, info, 200, &bundle.id);
        match self
            .commit(
                Mutation::Restore {
                    display_name: payload.name.clone(),
                    versions,
                },
                audit,
            )
            .await
        {
            Ok(()) => Ok(bundle),
            Err(StoreError::Conflict) => Err(DomainError::Conflict {
                message: format!(
                    "Secret {} already exists in this vault (or is soft-deleted there).",
                    payload.name
                ),
                inner: Some("SecretAlreadyExists"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// `GET /changes`: without a cursor, the vault's head at once; with one, the changes after
    /// it that the caller may see, waiting up to the request's timeout for one. The answer's
    /// cursor is the last position examined, past changes filtered out for this caller too.
    pub async fn changes(
        &self,
        feed: &FeedGrant,
        info: &RequestInfo,
        req: ChangesRequest,
    ) -> Result<ChangesPage, DomainError> {
        let grant = feed.grant();
        let vault_id = grant.vault().id.as_str();
        let Some(mut cursor) = req.cursor else {
            let head = self.store.change_bounds(vault_id).await?.head;
            self.audit_read(grant, info, 200, None).await?;
            return Ok(ChangesPage {
                value: Vec::new(),
                cursor: head.to_string(),
            });
        };
        let deadline = tokio::time::Instant::now() + req.timeout;
        // A caller who sees only some secrets scans in larger pages, but never without end in
        // one request: past SCAN_LIMIT rows it answers with the cursor moved on.
        let scan = if feed.sees_all() {
            req.max_results
        } else {
            SCAN_PAGE
        };
        let mut scanned = 0usize;
        let mut value = Vec::new();
        let watching = self.changes.watch(vault_id);
        let mut permit = None;
        'poll: loop {
            let woken = watching.notified();
            tokio::pin!(woken);
            let rows = self.store.read_changes(vault_id, cursor, scan).await?;
            let bounds = self.store.change_bounds(vault_id).await?;
            if cursor < bounds.floor {
                return Err(DomainError::CursorExpired(format!(
                    "The cursor {cursor} is older than the changes this vault keeps. Read the secrets \
                     again, then follow from a fresh cursor (GET /changes without a cursor)."
                )));
            }
            if cursor > bounds.head {
                return Err(DomainError::CursorExpired(format!(
                    "The cursor {cursor} is ahead of this vault's changes (it was not issued by this \
                     vault). Read the secrets again, then follow from a fresh cursor (GET /changes \
                     without a cursor)."
                )));
            }
            let full = rows.len() == scan as usize;
            for row in rows {
                cursor = row.seq;
                scanned += 1;
                if feed.may_see(&row.name) {
                    value.push(entry(row));
                    if value.len() == req.max_results as usize {
                        break;
                    }
                }
            }
            if !value.is_empty() || (full && scanned >= SCAN_LIMIT) {
                break;
            }
            if full {
                continue;
            }
            if self.changes.is_closed() {
                break;
            }
            loop {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    break 'poll;
                }
                if permit.is_none() {
                    permit = Some(self.changes.wait_permit()?);
                }
                let tick = self.changes.recheck_interval().min(deadline - now);
                tokio::select! {
                    biased;
                    _ = &mut woken => continue 'poll,
                    _ = tokio::time::sleep(tick) => self.changes.recheck(&*self.store).await,
                }
            }
        }
        self.audit_read(grant, info, 200, None).await?;
        Ok(ChangesPage {
            value,
            cursor: cursor.to_string(),
        })
    }

    /// Drops change-feed entries older than the retention; returns how many went.
    pub async fn prune_changes(&self) -> Result<u64, DomainError> {
        let before = self.clock.now_ms() - crate::changes::RETENTION_MS;
        Ok(self.store.prune_changes(before).await?)
    }

    /// Purges soft-deleted secrets whose retention has passed; returns how many went.
    pub async fn purge_expired(&self) -> Result<usize, DomainError> {
        let now = self.clock.now();
        let due = self.store.purge_due(now, 100).await?;
        let mut purged = 0;
        let mut vaults: std::collections::HashMap<String, VaultRow> = Default::default();
        if !due.is_empty() {
            for v in self.store.list_vaults().await? {
                vaults.insert(v.id.clone(), v);
            }
        }
        for s in due {
            let Some(vault) = vaults.get(&s.vault_id) else {
                continue;
            };
            let info = RequestInfo {
                operation: audit::Operation::SecretPurge,
                base_url: String::new(),
                api_version: String::new(),
                correlation_id: strongbox_crypto::random_hex_id(),
                caller_ip: String::new(),
                client_info: "strongbox retention".into(),
                request_uri: String::new(),
                started: std::time::Instant::now(),
            };
            let e = audit::entry(
                vault,
                &info,
                None,
                204,
                Some(&s.display_name),
                self.clock.now_ms(),
            );
            match self
                .commit(
                    Mutation::Purge {
                        vault_id: s.vault_id.clone(),
                        name: s.name.clone(),
                    },
                    e,
                )
                .await
            {
                Ok(()) => purged += 1,
                Err(StoreError::NotFound) => {} // recovered or purged meanwhile
                Err(e) => return Err(e.into()),
            }
        }
        Ok(purged)
    }
}

/// Rows read per store call when the caller sees only some secrets, and the most one request
/// examines before answering.
const SCAN_PAGE: u32 = 1000;
const SCAN_LIMIT: usize = 10_000;

fn entry(row: ChangeRow) -> ChangeEntry {
    ChangeEntry {
        seq: row.seq,
        name: row.display_name,
        version: row.version,
        change: row.kind,
        enabled: row.enabled,
        time_ms: row.time_ms,
    }
}

fn deleted_conflict(name: &str) -> DomainError {
    DomainError::Conflict {
        message: format!(
            "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; \
             in this state, the secret can only be recovered or purged."
        ),
        inner: Some("ObjectIsDeletedButRecoverable"),
    }
}
