//! The vault lifecycle as Azure Resource Manager exposes it (Microsoft.KeyVault/vaults): create
//! or replace, patch, access-policy edits, soft delete, the deleted-vault listing, recovery,
//! purge (refused under purge protection) and the automatic purge once retention has passed.
//!
//! Rules kept here, and only here: names and placement, the tenant of a vault is its
//! subscription's, soft delete cannot be turned off, retention is fixed at creation, purge
//! protection cannot be turned off, a soft-deleted vault holds its name, and resource locks
//! (see [`crate::locks`]) refuse deletes and (ReadOnly) writes. Every change is committed with
//! its audit record; refusals are audited by the caller, who knows the final status.

use crate::audit::management_entry;
use crate::authz::Permission;
use crate::locks::{self, LockedOp};
use crate::{Caller, Clock, names};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use strongbox_store::{
    AccessPolicyRow, AuditEntry, Deletion, Store, StoreError, SubscriptionRow, VaultArmRow,
    VaultRow,
};
use strongbox_types::arm_vaults::*;

/// RBAC actions of the vault lifecycle; audit records use them as operation names too.
pub mod actions {
    pub const VAULT_READ: &str = "Microsoft.KeyVault/vaults/read";
    pub const VAULT_WRITE: &str = "Microsoft.KeyVault/vaults/write";
    pub const VAULT_DELETE: &str = "Microsoft.KeyVault/vaults/delete";
    pub const ACCESS_POLICIES_WRITE: &str = "Microsoft.KeyVault/vaults/accessPolicies/write";
    pub const DELETED_VAULTS_READ: &str = "Microsoft.KeyVault/deletedVaults/read";
    pub const DELETED_VAULT_PURGE: &str = "Microsoft.KeyVault/locations/deletedVaults/purge/action";
    pub const CHECK_NAME_AVAILABILITY: &str = "Microsoft.KeyVault/checkNameAvailability/read";
}

pub const VAULT_TYPE: &str = "Microsoft.KeyVault/vaults";
pub const DEFAULT_RETENTION_DAYS: i64 = 90;
/// Azure's limit on access policies per vault.
pub const MAX_ACCESS_POLICIES: usize = 1024;
const MAX_TAGS: usize = 50;
const MAX_PERMISSIONS: usize = 64;
const MAX_NETWORK_ACLS_BYTES: usize = 32 * 1024;
const MAX_AUDITED_ID: usize = 2048;

/// What kind of refusal: the HTTP layer picks the status from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgmtErrorKind {
    BadRequest,
    NotFound,
    Conflict,
    /// The store's disk is full: 503 with Retry-After.
    Unavailable,
    Internal,
}

/// A refused management operation, with the ARM error code clients match on. Messages name
/// resources, never secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct MgmtError {
    pub kind: MgmtErrorKind,
    pub code: &'static str,
    /// For `Internal`, the detail for logs (clients get a generic message).
    pub message: String,
}

impl MgmtError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        MgmtError {
            kind: MgmtErrorKind::BadRequest,
            code: "BadRequest",
            message: message.into(),
        }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        MgmtError {
            kind: MgmtErrorKind::NotFound,
            code,
            message: message.into(),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        MgmtError {
            kind: MgmtErrorKind::Conflict,
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for MgmtError {
    fn from(e: StoreError) -> Self {
        if let StoreError::DiskFull = e {
            return MgmtError {
                kind: MgmtErrorKind::Unavailable,
                code: "ServiceUnavailable",
                message: crate::error::DISK_FULL_MESSAGE.into(),
            };
        }
        MgmtError {
            kind: MgmtErrorKind::Internal,
            code: "InternalServerError",
            message: e.to_string(),
        }
    }
}

/// Who asked, for the audit records of management operations.
#[derive(Debug, Clone)]
pub struct AuditCtx {
    pub caller: Option<Caller>,
    pub correlation_id: String,
    pub caller_ip: String,
}

impl AuditCtx {
    pub fn entry(
        &self,
        chain: &str,
        resource_id: &str,
        operation: &str,
        status: u16,
        now_ms: i64,
    ) -> AuditEntry {
        // Resource ids come from request paths: bounded, as the data plane bounds its URIs.
        let resource_id: String = resource_id.chars().take(MAX_AUDITED_ID).collect();
        management_entry(
            chain,
            &resource_id,
            operation,
            self.caller.as_ref(),
            status,
            &self.correlation_id,
            &self.caller_ip,
            now_ms,
        )
    }

    /// The context of work the server does by itself (retention purge).
    pub fn system() -> Self {
        AuditCtx {
            caller: None,
            correlation_id: strongbox_crypto::random_hex_id(),
            caller_ip: String::new(),
        }
    }
}

/// Where vaults answer on the data plane, for `vaultUri`: `https://{name}.{dns_suffix}{port_suffix}/`.
#[derive(Debug, Clone)]
pub struct VaultHost {
    pub dns_suffix: String,
    /// `:{port}`, or empty on 443.
    pub port_suffix: String,
}

/// The audit chain of subscription-level operations.
pub fn subscription_chain(subscription_id: &str) -> String {
    format!("subscription:{subscription_id}")
}

/// The audit chain of tenant-level operations (listing subscriptions and tenants), named by the
/// verified caller's tenant.
pub fn tenant_chain(tenant_id: &str) -> String {
    format!("tenant:{tenant_id}")
}

pub fn resource_group_id(subscription_id: &str, resource_group: &str) -> String {
    format!("/subscriptions/{subscription_id}/resourceGroups/{resource_group}")
}

pub fn deleted_vault_id(subscription_id: &str, location: &str, name: &str) -> String {
    format!(
        "/subscriptions/{subscription_id}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{name}"
    )
}

/// ARM resource group names: 1-90 letters, digits, `-_.()`, not ending in a period. Compared
/// case-insensitively, kept lowercase.
pub fn resource_group_name(raw: &str) -> Result<String, MgmtError> {
    let ok = (1..=90).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
        && !raw.ends_with('.');
    if ok {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(MgmtError::bad_request(format!(
            "The resource group name '{}' is invalid: use 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'.",
            bounded(raw)
        )))
    }
}

/// Vault names as Azure allows them (see [`names::vault_name`]), with ARM's error code.
pub fn vault_name(raw: &str) -> Result<String, MgmtError> {
    names::vault_name(raw).map_err(|e| MgmtError {
        kind: MgmtErrorKind::BadRequest,
        code: "VaultNameNotValid",
        message: e.to_string(),
    })
}

/// Azure region names are compared without case or spaces ("West Europe" = "westeurope").
pub fn location(raw: &str) -> Result<String, MgmtError> {
    let canon: String = raw
        .chars()
        .filter(|c| *c != ' ')
        .collect::<String>()
        .to_ascii_lowercase();
    if (1..=64).contains(&canon.len()) && canon.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(canon)
    } else {
        Err(MgmtError::bad_request(format!(
            "The location '{}' is invalid.",
            bounded(raw)
        )))
    }
}

fn bounded(raw: &str) -> String {
    raw.chars().take(100).collect()
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The subscription named in the path, or ARM's 404.
pub async fn require_subscription(
    store: &dyn Store,
    subscription_id: &str,
) -> Result<SubscriptionRow, MgmtError> {
    store
        .get_subscription(subscription_id)
        .await?
        .ok_or_else(|| {
            MgmtError::not_found(
                "SubscriptionNotFound",
                format!(
                    "The subscription '{}' could not be found.",
                    bounded(subscription_id)
                ),
            )
        })
}

fn vault_not_found(resource_group: &str, name: &str) -> MgmtError {
    MgmtError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource 'Microsoft.KeyVault/vaults/{name}' under resource group '{resource_group}' was not found."
        ),
    )
}

/// The vault placed at (subscription, group, name), live or soft-deleted.
async fn placed(
    store: &dyn Store,
    subscription_id: &str,
    resource_group: &str,
    name: &str,
) -> Result<Option<VaultRow>, MgmtError> {
    Ok(store.get_vault_by_name(name).await?.filter(|v| {
        v.subscription_id == subscription_id
            && v.resource_group.eq_ignore_ascii_case(resource_group)
    }))
}

/// The live vault at (subscription, group, name), from raw path values; 400 on bad names, 404
/// when there is none.
pub async fn find_live(
    store: &dyn Store,
    subscription_id: &str,
    resource_group: &str,
    name: &str,
) -> Result<VaultRow, MgmtError> {
    let rg = resource_group_name(resource_group)?;
    let name = vault_name(name)?;
    placed(store, subscription_id, &rg, &name)
        .await?
        .filter(|v| v.deleted.is_none())
        .ok_or_else(|| vault_not_found(&rg, &name))
}

/// The chain of requests that name a subscription that does not exist: one shared chain, so
/// made-up ids in paths cannot multiply chains.
pub const UNKNOWN_SUBSCRIPTION_CHAIN: &str = "subscription:unknown";

/// The audit chain of a subscription-level request: the subscription's, if it exists. ARM ids
/// are case-insensitive, so a path may spell the (lower-case) id in any case.
pub async fn subscription_audit_chain(store: &dyn Store, subscription_id: &str) -> String {
    for id in [
        subscription_id.to_string(),
        subscription_id.to_ascii_lowercase(),
    ] {
        if let Ok(Some(s)) = store.get_subscription(&id).await {
            return subscription_chain(&s.id);
        }
    }
    UNKNOWN_SUBSCRIPTION_CHAIN.into()
}

/// The audit chain a request about this vault name joins: the vault's own if it is placed in
/// this subscription (live or deleted), the subscription's otherwise.
pub async fn audit_chain(store: &dyn Store, subscription_id: &str, name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match store.get_vault_by_name(&name).await {
        Ok(Some(v)) if v.subscription_id == subscription_id => v.id,
        _ => subscription_audit_chain(store, subscription_id).await,
    }
}

// --- properties kept beside the vault (VaultArmRow.properties_json) ----------------------------

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ArmProps {
    enabled_for_deployment: bool,
    enabled_for_disk_encryption: bool,
    enabled_for_template_deployment: bool,
    network_acls: Option<serde_json::Value>,
    public_network_access: Option<String>,
    /// Per object id: what access policies carry beyond secret permissions.
    policies: BTreeMap<String, PolicyExtras>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PolicyExtras {
    tenant_id: Option<String>,
    application_id: Option<String>,
    keys: Vec<String>,
    certificates: Vec<String>,
    storage: Vec<String>,
}

/// An access policy entry as the domain handles it: secret permissions act on the data plane,
/// the rest is kept and echoed.
#[derive(Debug, Clone, PartialEq)]
struct Policy {
    object_id: String,
    tenant_id: String,
    application_id: Option<String>,
    secrets: Vec<String>,
    keys: Vec<String>,
    certificates: Vec<String>,
    storage: Vec<String>,
}

impl Policy {
    fn is_empty(&self) -> bool {
        self.secrets.is_empty()
            && self.keys.is_empty()
            && self.certificates.is_empty()
            && self.storage.is_empty()
    }

    fn wire(&self) -> AccessPolicyEntry {
        AccessPolicyEntry {
            tenant_id: self.tenant_id.clone(),
            object_id: self.object_id.clone(),
            application_id: self.application_id.clone(),
            permissions: Permissions {
                keys: Some(self.keys.clone()),
                secrets: Some(self.secrets.clone()),
                certificates: Some(self.certificates.clone()),
                storage: Some(self.storage.clone()),
            },
        }
    }
}

/// A vault's full management state.
struct State {
    vault: VaultRow,
    sku: String,
    props: ArmProps,
    policies: Vec<Policy>,
}

async fn load(store: &dyn Store, vault: VaultRow) -> Result<State, MgmtError> {
    let (sku, props) = match store.get_vault_arm(&vault.id).await? {
        Some(row) => (
            row.sku,
            serde_json::from_str(&row.properties_json).map_err(|e| MgmtError {
                kind: MgmtErrorKind::Internal,
                code: "InternalServerError",
                message: format!("stored vault properties of {}: {e}", vault.id),
            })?,
        ),
        None => ("standard".to_string(), ArmProps::default()),
    };
    let policies = store
        .list_access_policies(&vault.id)
        .await?
        .into_iter()
        .map(|p| {
            let extra = props
                .policies
                .get(&p.object_id)
                .cloned()
                .unwrap_or_default();
            Policy {
                tenant_id: extra.tenant_id.unwrap_or_else(|| vault.tenant_id.clone()),
                object_id: p.object_id,
                application_id: extra.application_id,
                secrets: p.secret_permissions,
                keys: extra.keys,
                certificates: extra.certificates,
                storage: extra.storage,
            }
        })
        .collect();
    Ok(State {
        vault,
        sku,
        props,
        policies,
    })
}

impl State {
    /// The rows to store: policies for the data plane, everything else as ARM properties.
    fn rows(&mut self) -> (VaultArmRow, Vec<AccessPolicyRow>) {
        self.props.policies = self
            .policies
            .iter()
            .map(|p| {
                (
                    p.object_id.clone(),
                    PolicyExtras {
                        tenant_id: Some(p.tenant_id.clone()),
                        application_id: p.application_id.clone(),
                        keys: p.keys.clone(),
                        certificates: p.certificates.clone(),
                        storage: p.storage.clone(),
                    },
                )
            })
            .collect();
        let arm = VaultArmRow {
            vault_id: self.vault.id.clone(),
            sku: self.sku.clone(),
            properties_json: serde_json::to_string(&self.props).expect("properties serialize"),
        };
        let policies = self
            .policies
            .iter()
            .map(|p| AccessPolicyRow {
                vault_id: self.vault.id.clone(),
                object_id: p.object_id.clone(),
                secret_permissions: p.secrets.clone(),
            })
            .collect();
        (arm, policies)
    }

    fn wire(&self, host: &VaultHost) -> Vault {
        let v = &self.vault;
        Vault {
            id: v.resource_id.clone(),
            name: v.name.clone(),
            kind: VAULT_TYPE.into(),
            location: v.location.clone(),
            tags: tags_of(v),
            properties: VaultProperties {
                tenant_id: v.tenant_id.clone(),
                sku: Sku {
                    family: "A".into(),
                    name: self.sku.clone(),
                },
                access_policies: self.policies.iter().map(Policy::wire).collect(),
                vault_uri: format!(
                    "https://{}.{}{}/",
                    v.name, host.dns_suffix, host.port_suffix
                ),
                enabled_for_deployment: self.props.enabled_for_deployment,
                enabled_for_disk_encryption: self.props.enabled_for_disk_encryption,
                enabled_for_template_deployment: self.props.enabled_for_template_deployment,
                enable_soft_delete: true,
                soft_delete_retention_in_days: v.retention_days,
                enable_rbac_authorization: v.enable_rbac,
                enable_purge_protection: v.purge_protection.then_some(true),
                network_acls: self.props.network_acls.clone(),
                provisioning_state: "Succeeded".into(),
                public_network_access: self
                    .props
                    .public_network_access
                    .clone()
                    .unwrap_or_else(|| "Enabled".into()),
            },
        }
    }
}

fn tags_of(v: &VaultRow) -> ArmTags {
    v.tags_json
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

fn tags_json(tags: &ArmTags) -> Result<Option<String>, MgmtError> {
    if tags.len() > MAX_TAGS {
        return Err(MgmtError::bad_request(format!(
            "A resource may have at most {MAX_TAGS} tags."
        )));
    }
    for (k, v) in tags {
        if k.is_empty()
            || k.len() > 512
            || v.len() > 256
            || k.chars().any(|c| "<>%&\\?/".contains(c))
        {
            return Err(MgmtError::bad_request(
                "Tag names must be 1-512 characters without <>%&\\?/ and tag values at most 256 characters.",
            ));
        }
    }
    Ok((!tags.is_empty()).then(|| serde_json::to_string(tags).expect("tags serialize")))
}

const KEY_PERMISSIONS: &[&str] = &[
    "encrypt",
    "decrypt",
    "wrapKey",
    "unwrapKey",
    "sign",
    "verify",
    "get",
    "list",
    "create",
    "update",
    "import",
    "delete",
    "backup",
    "restore",
    "recover",
    "purge",
    "release",
    "rotate",
    "getrotationpolicy",
    "setrotationpolicy",
];
const CERTIFICATE_PERMISSIONS: &[&str] = &[
    "get",
    "list",
    "delete",
    "create",
    "import",
    "update",
    "managecontacts",
    "getissuers",
    "listissuers",
    "setissuers",
    "deleteissuers",
    "manageissuers",
    "recover",
    "purge",
    "backup",
    "restore",
];
const STORAGE_PERMISSIONS: &[&str] = &[
    "get",
    "list",
    "delete",
    "set",
    "update",
    "regeneratekey",
    "recover",
    "purge",
    "backup",
    "restore",
    "setsas",
    "listsas",
    "getsas",
    "deletesas",
];

/// Canonical permission names in the order of `known`; `all` stands for every one.
fn permission_list(
    kind: &str,
    given: &Option<Vec<String>>,
    known: &[&str],
) -> Result<Vec<String>, MgmtError> {
    let Some(given) = given else {
        return Ok(vec![]);
    };
    if given.len() > MAX_PERMISSIONS {
        return Err(MgmtError::bad_request(format!(
            "Too many {kind} permissions in one access policy."
        )));
    }
    let mut chosen = vec![false; known.len()];
    for p in given {
        let p = p.trim();
        if p.eq_ignore_ascii_case("all") {
            chosen.iter_mut().for_each(|c| *c = true);
            continue;
        }
        match known.iter().position(|k| k.eq_ignore_ascii_case(p)) {
            Some(i) => chosen[i] = true,
            None => {
                return Err(MgmtError::bad_request(format!(
                    "Invalid {kind} permission '{}' in an access policy.",
                    bounded(p)
                )));
            }
        }
    }
    Ok(known
        .iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(k, _)| k.to_string())
        .collect())
}

fn secret_permission_names() -> Vec<&'static str> {
    Permission::ALL.iter().map(|p| p.as_str()).collect()
}

/// Validates access policy entries for a vault of `tenant_id`.
fn policies_from(entries: &[AccessPolicyEntry], tenant_id: &str) -> Result<Vec<Policy>, MgmtError> {
    if entries.len() > MAX_ACCESS_POLICIES {
        return Err(MgmtError::bad_request(format!(
            "A vault may have at most {MAX_ACCESS_POLICIES} access policies."
        )));
    }
    let secrets_known = secret_permission_names();
    let mut out: Vec<Policy> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if !is_guid(&e.object_id) || !is_guid(&e.tenant_id) {
            return Err(MgmtError::bad_request(format!(
                "accessPolicies[{i}]: tenantId and objectId must be GUIDs."
            )));
        }
        if let Some(app) = &e.application_id
            && !is_guid(app)
        {
            return Err(MgmtError::bad_request(format!(
                "accessPolicies[{i}]: applicationId must be a GUID."
            )));
        }
        if !e.tenant_id.eq_ignore_ascii_case(tenant_id) {
            return Err(MgmtError::bad_request(format!(
                "accessPolicies[{i}]: every access policy must use the vault's tenant '{tenant_id}'."
            )));
        }
        let object_id = e.object_id.to_ascii_lowercase();
        if out.iter().any(|p| p.object_id == object_id) {
            return Err(MgmtError::bad_request(format!(
                "accessPolicies[{i}]: object '{object_id}' appears twice."
            )));
        }
        out.push(Policy {
            object_id,
            tenant_id: tenant_id.to_string(),
            application_id: e.application_id.as_ref().map(|a| a.to_ascii_lowercase()),
            secrets: permission_list("secrets", &e.permissions.secrets, &secrets_known)?,
            keys: permission_list("keys", &e.permissions.keys, KEY_PERMISSIONS)?,
            certificates: permission_list(
                "certificates",
                &e.permissions.certificates,
                CERTIFICATE_PERMISSIONS,
            )?,
            storage: permission_list("storage", &e.permissions.storage, STORAGE_PERMISSIONS)?,
        });
    }
    Ok(out)
}

fn union(a: &[String], b: &[String], known: &[&str]) -> Vec<String> {
    known
        .iter()
        .filter(|k| a.iter().chain(b).any(|x| x == *k))
        .map(|k| k.to_string())
        .collect()
}

fn minus(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

/// How `accessPolicies/{kind}` changes a vault's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyEdit {
    /// Merge permissions into the object's entry (or add one).
    Add,
    /// Overwrite the object's entry.
    Replace,
    /// Take the listed permissions away; an entry listing none, or left with none, goes.
    Remove,
}

impl PolicyEdit {
    pub fn parse(raw: &str) -> Result<PolicyEdit, MgmtError> {
        match raw.to_ascii_lowercase().as_str() {
            "add" => Ok(PolicyEdit::Add),
            "replace" => Ok(PolicyEdit::Replace),
            "remove" => Ok(PolicyEdit::Remove),
            _ => Err(MgmtError::bad_request(format!(
                "The access policy operation '{}' is invalid: use add, replace or remove.",
                bounded(raw)
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            PolicyEdit::Add => "add",
            PolicyEdit::Replace => "replace",
            PolicyEdit::Remove => "remove",
        }
    }
}

fn edit_policies(current: &mut Vec<Policy>, edit: PolicyEdit, changes: Vec<Policy>) {
    let secrets_known = secret_permission_names();
    for change in changes {
        let at = current.iter().position(|p| p.object_id == change.object_id);
        match (edit, at) {
            (PolicyEdit::Add, Some(i)) => {
                let p = &mut current[i];
                p.secrets = union(&p.secrets, &change.secrets, &secrets_known);
                p.keys = union(&p.keys, &change.keys, KEY_PERMISSIONS);
                p.certificates = union(
                    &p.certificates,
                    &change.certificates,
                    CERTIFICATE_PERMISSIONS,
                );
                p.storage = union(&p.storage, &change.storage, STORAGE_PERMISSIONS);
                if change.application_id.is_some() {
                    p.application_id = change.application_id;
                }
            }
            (PolicyEdit::Replace, Some(i)) => current[i] = change,
            (PolicyEdit::Add | PolicyEdit::Replace, None) => current.push(change),
            (PolicyEdit::Remove, Some(i)) => {
                if change.is_empty() {
                    current.remove(i);
                } else {
                    let p = &mut current[i];
                    p.secrets = minus(&p.secrets, &change.secrets);
                    p.keys = minus(&p.keys, &change.keys);
                    p.certificates = minus(&p.certificates, &change.certificates);
                    p.storage = minus(&p.storage, &change.storage);
                    if p.is_empty() {
                        current.remove(i);
                    }
                }
            }
            (PolicyEdit::Remove, None) => {}
        }
    }
}

fn sku_name(sku: &Sku) -> Result<String, MgmtError> {
    if sku.family != "A" {
        return Err(MgmtError::bad_request(format!(
            "The SKU family '{}' is invalid: use 'A'.",
            bounded(&sku.family)
        )));
    }
    match sku.name.to_ascii_lowercase().as_str() {
        n @ ("standard" | "premium") => Ok(n.to_string()),
        _ => Err(MgmtError::bad_request(format!(
            "The SKU name '{}' is invalid: use 'standard' or 'premium'.",
            bounded(&sku.name)
        ))),
    }
}

fn retention(days: i64) -> Result<i64, MgmtError> {
    if (7..=90).contains(&days) {
        Ok(days)
    } else {
        Err(MgmtError::bad_request(
            "softDeleteRetentionInDays must be between 7 and 90.",
        ))
    }
}

fn soft_delete_stays_on(enable: Option<bool>) -> Result<(), MgmtError> {
    if enable == Some(false) {
        return Err(MgmtError::bad_request(
            "Soft delete cannot be turned off: every vault keeps deleted vaults and secrets recoverable for softDeleteRetentionInDays.",
        ));
    }
    Ok(())
}

fn tenant_matches(given: &str, tenant_id: &str) -> Result<(), MgmtError> {
    if given.eq_ignore_ascii_case(tenant_id) {
        Ok(())
    } else {
        Err(MgmtError::bad_request(format!(
            "The tenant '{}' is not the tenant of the subscription ('{tenant_id}'); a vault belongs to its subscription's tenant.",
            bounded(given)
        )))
    }
}

fn public_network_access(raw: &str) -> Result<String, MgmtError> {
    match raw.to_ascii_lowercase().as_str() {
        "enabled" => Ok("Enabled".into()),
        "disabled" => Ok("Disabled".into()),
        _ => Err(MgmtError::bad_request(
            "publicNetworkAccess must be 'Enabled' or 'Disabled'.",
        )),
    }
}

fn network_acls(v: &serde_json::Value) -> Result<serde_json::Value, MgmtError> {
    if !v.is_object() || v.to_string().len() > MAX_NETWORK_ACLS_BYTES {
        return Err(MgmtError::bad_request(
            "networkAcls must be an object (NetworkRuleSet).",
        ));
    }
    Ok(v.clone())
}

/// Applies the optional properties shared by PUT (over defaults) and PATCH (over the vault).
fn apply_common(state: &mut State, p: &VaultPropertiesIn) -> Result<(), MgmtError> {
    if let Some(sku) = &p.sku {
        state.sku = sku_name(sku)?;
    }
    if let Some(b) = p.enabled_for_deployment {
        state.props.enabled_for_deployment = b;
    }
    if let Some(b) = p.enabled_for_disk_encryption {
        state.props.enabled_for_disk_encryption = b;
    }
    if let Some(b) = p.enabled_for_template_deployment {
        state.props.enabled_for_template_deployment = b;
    }
    if let Some(acls) = &p.network_acls {
        state.props.network_acls = Some(network_acls(acls)?);
    }
    if let Some(pna) = &p.public_network_access {
        state.props.public_network_access = Some(public_network_access(pna)?);
    }
    if let Some(b) = p.enable_rbac_authorization {
        state.vault.enable_rbac = b;
    }
    if let Some(entries) = &p.access_policies {
        state.policies = policies_from(entries, &state.vault.tenant_id)?;
    }
    Ok(())
}

/// Purge protection, once on, stays on; retention is fixed when the vault is made.
fn apply_immutables(state: &mut State, p: &VaultPropertiesIn) -> Result<(), MgmtError> {
    soft_delete_stays_on(p.enable_soft_delete)?;
    if let Some(days) = p.soft_delete_retention_in_days
        && days != state.vault.retention_days
    {
        retention(days)?;
        return Err(MgmtError::bad_request(format!(
            "The property 'softDeleteRetentionInDays' has been set already ({} days) and it can't be modified.",
            state.vault.retention_days
        )));
    }
    match p.enable_purge_protection {
        Some(false) if state.vault.purge_protection => Err(MgmtError::bad_request(
            "The property 'enablePurgeProtection' cannot be set to false: enabling purge protection for a vault is irreversible.",
        )),
        Some(b) => {
            state.vault.purge_protection = b;
            Ok(())
        }
        None => Ok(()),
    }
}

fn create_mode_is_recover(p: &VaultPropertiesIn) -> Result<bool, MgmtError> {
    match p
        .create_mode
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("default") => Ok(false),
        Some("recover") => Ok(true),
        Some(other) => Err(MgmtError::bad_request(format!(
            "The createMode '{}' is invalid: use 'default' or 'recover'.",
            bounded(other)
        ))),
    }
}

fn deleted_name_held(name: &str) -> MgmtError {
    MgmtError::conflict(
        "ConflictError",
        format!(
            "A vault with the same name ('{name}') already exists in deleted state. You need to either recover or purge existing key vault."
        ),
    )
}

fn name_in_use(name: &str) -> MgmtError {
    MgmtError::conflict(
        "VaultAlreadyExists",
        format!(
            "The vault name '{name}' is already in use. Vault names are unique across the deployment, so it is possible that the name is already taken."
        ),
    )
}

/// After a guarded store write reported Conflict: a lock (ScopeLocked) or, for a create, the
/// name (taken meanwhile).
async fn explain_conflict(
    store: &dyn Store,
    resource_id: &str,
    op: LockedOp,
    name: &str,
) -> MgmtError {
    match locks::ensure_unlocked(store, resource_id, op).await {
        Err(e) => e,
        Ok(_) => match store.get_vault_by_name(name).await {
            Ok(Some(v)) if v.deleted.is_some() => deleted_name_held(name),
            _ => name_in_use(name),
        },
    }
}

async fn save(
    store: &dyn Store,
    mut state: State,
    guard_op: LockedOp,
    policies_changed: bool,
    entry: AuditEntry,
) -> Result<State, MgmtError> {
    let guard = locks::ensure_unlocked(store, &state.vault.resource_id, guard_op).await?;
    let (arm, policies) = state.rows();
    match store
        .save_vault_arm(
            state.vault.clone(),
            Some(arm),
            policies_changed.then_some(policies),
            Some(guard),
            entry,
        )
        .await
    {
        Ok(()) => Ok(state),
        Err(StoreError::Conflict) => {
            Err(
                explain_conflict(store, &state.vault.resource_id, guard_op, &state.vault.name)
                    .await,
            )
        }
        Err(StoreError::NotFound) => Err(vault_not_found(
            &state.vault.resource_group,
            &state.vault.name,
        )),
        Err(e) => Err(e.into()),
    }
}

/// A management request about one vault: where it is and who asks.
pub struct VaultRequest<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub audit: &'a AuditCtx,
    pub host: &'a VaultHost,
    pub subscription_id: &'a str,
    pub resource_group: &'a str,
    pub name: &'a str,
}

pub async fn get(r: &VaultRequest<'_>) -> Result<Vault, MgmtError> {
    let vault = find_live(r.store, r.subscription_id, r.resource_group, r.name).await?;
    Ok(load(r.store, vault).await?.wire(r.host))
}

/// PUT: creates the vault, replaces the properties of the one already there, or (createMode
/// `recover`) brings a soft-deleted one back as it was. Returns the vault and whether it was
/// created (201) rather than replaced or recovered (200).
pub async fn create_or_update(
    r: &VaultRequest<'_>,
    params: VaultCreateOrUpdateParameters,
) -> Result<(Vault, bool), MgmtError> {
    let subscription = require_subscription(r.store, r.subscription_id).await?;
    let rg = resource_group_name(r.resource_group)?;
    let name = vault_name(r.name)?;
    let location = location(&params.location)?;
    let p = &params.properties;
    let recover = create_mode_is_recover(p)?;
    let existing = r.store.get_vault_by_name(&name).await?;
    let here = |v: &VaultRow| {
        v.subscription_id == r.subscription_id && v.resource_group.eq_ignore_ascii_case(&rg)
    };
    if recover {
        return match existing {
            Some(v) if v.deleted.is_some() && here(&v) => {
                if v.location != location {
                    return Err(MgmtError::bad_request(format!(
                        "The deleted vault '{name}' is in location '{}'; recover it there.",
                        v.location
                    )));
                }
                let mut state = load(r.store, v).await?;
                state.vault.deleted = None;
                let entry = r.audit.entry(
                    &state.vault.id,
                    &state.vault.resource_id,
                    actions::VAULT_WRITE,
                    200,
                    r.clock.now_ms(),
                );
                let state = save(r.store, state, LockedOp::Write, false, entry).await?;
                Ok((state.wire(r.host), false))
            }
            Some(v) if v.deleted.is_some() => Err(MgmtError::conflict(
                "ConflictError",
                format!(
                    "The deleted vault '{name}' belongs to another subscription or resource group; recover it there."
                ),
            )),
            Some(_) => Err(MgmtError::conflict(
                "ConflictError",
                format!("The vault '{name}' is not deleted; there is nothing to recover."),
            )),
            None => Err(MgmtError::not_found(
                "SoftDeletedVaultDoesNotExist",
                format!(
                    "A soft deleted vault with the name '{name}' does not exist. Ensure that the vault being recovered is in a recoverable state."
                ),
            )),
        };
    }

    let tenant = p
        .tenant_id
        .as_deref()
        .ok_or_else(|| MgmtError::bad_request("properties.tenantId is required."))?;
    tenant_matches(tenant, &subscription.tenant_id)?;
    let sku = sku_name(
        p.sku
            .as_ref()
            .ok_or_else(|| MgmtError::bad_request("properties.sku is required."))?,
    )?;
    soft_delete_stays_on(p.enable_soft_delete)?;
    let tags = tags_json(&params.tags.clone().unwrap_or_default())?;

    match existing {
        Some(v) if v.deleted.is_some() => Err(deleted_name_held(&name)),
        Some(v) if !here(&v) => Err(name_in_use(&name)),
        Some(v) => {
            // Replace: PUT carries the whole resource; what it leaves out takes its default,
            // except what cannot change (retention, purge protection once on).
            if v.location != location {
                return Err(MgmtError::bad_request(format!(
                    "The location of vault '{name}' is '{}' and cannot be changed.",
                    v.location
                )));
            }
            tenant_matches(tenant, &v.tenant_id)?;
            let mut state = State {
                vault: VaultRow {
                    tags_json: tags,
                    enable_rbac: false,
                    ..v
                },
                sku,
                props: ArmProps::default(),
                policies: vec![],
            };
            apply_common(&mut state, p)?;
            apply_immutables(&mut state, p)?;
            let entry = r.audit.entry(
                &state.vault.id,
                &state.vault.resource_id,
                actions::VAULT_WRITE,
                200,
                r.clock.now_ms(),
            );
            let state = save(r.store, state, LockedOp::Write, true, entry).await?;
            Ok((state.wire(r.host), false))
        }
        None => {
            let days = retention(
                p.soft_delete_retention_in_days
                    .unwrap_or(DEFAULT_RETENTION_DAYS),
            )?;
            let mut state = State {
                vault: VaultRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    resource_id: crate::vaults::vault_resource_id(r.subscription_id, &rg, &name),
                    name: name.clone(),
                    tenant_id: subscription.tenant_id.clone(),
                    subscription_id: r.subscription_id.to_string(),
                    resource_group: rg,
                    location,
                    tags_json: tags,
                    retention_days: days,
                    purge_protection: p.enable_purge_protection.unwrap_or(false),
                    enable_rbac: false,
                    created: r.clock.now(),
                    deleted: None,
                },
                sku,
                props: ArmProps::default(),
                policies: vec![],
            };
            apply_common(&mut state, p)?;
            // A ReadOnly lock on the group or subscription refuses new resources in it.
            let guard =
                locks::ensure_unlocked(r.store, &state.vault.resource_id, LockedOp::Write).await?;
            let (arm, policies) = state.rows();
            let entry = r.audit.entry(
                &state.vault.id,
                &state.vault.resource_id,
                actions::VAULT_WRITE,
                201,
                r.clock.now_ms(),
            );
            match r
                .store
                .create_vault_arm(state.vault.clone(), arm, policies, Some(guard), entry)
                .await
            {
                Ok(()) => Ok((state.wire(r.host), true)),
                Err(StoreError::Conflict) => {
                    Err(
                        explain_conflict(r.store, &state.vault.resource_id, LockedOp::Write, &name)
                            .await,
                    )
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// PATCH: changes only what the body names.
pub async fn patch(r: &VaultRequest<'_>, params: VaultPatchParameters) -> Result<Vault, MgmtError> {
    let vault = find_live(r.store, r.subscription_id, r.resource_group, r.name).await?;
    let mut state = load(r.store, vault).await?;
    let p = params.properties.unwrap_or_default();
    if create_mode_is_recover(&p)? {
        return Err(MgmtError::bad_request(
            "createMode 'recover' is for PUT on a deleted vault, not for PATCH.",
        ));
    }
    if let Some(t) = &p.tenant_id {
        tenant_matches(t, &state.vault.tenant_id)?;
    }
    if let Some(tags) = &params.tags {
        state.vault.tags_json = tags_json(tags)?;
    }
    apply_common(&mut state, &p)?;
    apply_immutables(&mut state, &p)?;
    let entry = r.audit.entry(
        &state.vault.id,
        &state.vault.resource_id,
        actions::VAULT_WRITE,
        200,
        r.clock.now_ms(),
    );
    let changed = p.access_policies.is_some();
    let state = save(r.store, state, LockedOp::Write, changed, entry).await?;
    Ok(state.wire(r.host))
}

/// `accessPolicies/{add|replace|remove}`: returns what ARM echoes (the entries sent).
pub async fn update_access_policy(
    r: &VaultRequest<'_>,
    edit: PolicyEdit,
    params: VaultAccessPolicyParameters,
) -> Result<VaultAccessPolicyParameters, MgmtError> {
    let vault = find_live(r.store, r.subscription_id, r.resource_group, r.name).await?;
    let mut state = load(r.store, vault).await?;
    let changes = policies_from(&params.properties.access_policies, &state.vault.tenant_id)?;
    let echoed = changes.iter().map(Policy::wire).collect();
    edit_policies(&mut state.policies, edit, changes);
    if state.policies.len() > MAX_ACCESS_POLICIES {
        return Err(MgmtError::bad_request(format!(
            "A vault may have at most {MAX_ACCESS_POLICIES} access policies."
        )));
    }
    let entry = r.audit.entry(
        &state.vault.id,
        &state.vault.resource_id,
        actions::ACCESS_POLICIES_WRITE,
        200,
        r.clock.now_ms(),
    );
    let state = save(r.store, state, LockedOp::Write, true, entry).await?;
    Ok(VaultAccessPolicyParameters {
        id: Some(format!(
            "{}/accessPolicies/{}",
            state.vault.resource_id,
            edit.as_str()
        )),
        name: Some(edit.as_str().into()),
        kind: Some("Microsoft.KeyVault/vaults/accessPolicies".into()),
        location: Some(state.vault.location.clone()),
        properties: VaultAccessPolicyProperties {
            access_policies: echoed,
        },
    })
}

/// DELETE: soft delete. The vault and its secrets stop answering and the name stays held
/// until the vault is recovered or purged. Returns false when there was no vault (204).
pub async fn delete(r: &VaultRequest<'_>) -> Result<bool, MgmtError> {
    let vault = match find_live(r.store, r.subscription_id, r.resource_group, r.name).await {
        Ok(v) => v,
        Err(e) if e.kind == MgmtErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let now = r.clock.now();
    let mut state = load(r.store, vault).await?;
    state.vault.deleted = Some(Deletion {
        deleted_at: now,
        purge_at: now + state.vault.retention_days * 86_400,
    });
    let entry = r.audit.entry(
        &state.vault.id,
        &state.vault.resource_id,
        actions::VAULT_DELETE,
        200,
        r.clock.now_ms(),
    );
    save(r.store, state, LockedOp::Delete, false, entry).await?;
    Ok(true)
}

/// One page of live vaults in a subscription (or one of its groups), and the name to continue
/// after when there are more.
pub async fn list(
    store: &dyn Store,
    host: &VaultHost,
    subscription_id: &str,
    resource_group: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<Vault>, Option<String>), MgmtError> {
    require_subscription(store, subscription_id).await?;
    let rg = resource_group.map(resource_group_name).transpose()?;
    let after = after.map(vault_name).transpose()?;
    let mut rows = store
        .list_vaults_page(
            subscription_id,
            rg.as_deref(),
            false,
            after.as_deref(),
            limit + 1,
        )
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last().map(|v| v.name.clone())).flatten();
    let mut out = Vec::with_capacity(rows.len());
    for v in rows {
        out.push(load(store, v).await?.wire(host));
    }
    Ok((out, next))
}

/// The live vault of that name in the subscription, as a list of zero or one (a generic resource
/// list filtered by `name eq`, which the Azure CLI uses to find a vault's resource group).
pub async fn list_named(
    store: &dyn Store,
    host: &VaultHost,
    subscription_id: &str,
    name: &str,
) -> Result<Vec<Vault>, MgmtError> {
    require_subscription(store, subscription_id).await?;
    let Ok(name) = vault_name(name) else {
        // A name no vault can have matches nothing.
        return Ok(Vec::new());
    };
    match store.get_vault_by_name(&name).await? {
        Some(v) if v.subscription_id == subscription_id && v.deleted.is_none() => {
            Ok(vec![load(store, v).await?.wire(host)])
        }
        _ => Ok(Vec::new()),
    }
}

/// Whether a vault could be created with this name now (names are unique across the
/// deployment, and a soft-deleted vault keeps holding its name).
pub async fn check_name_availability(
    store: &dyn Store,
    subscription_id: &str,
    params: VaultCheckNameAvailabilityParameters,
) -> Result<CheckNameAvailabilityResult, MgmtError> {
    require_subscription(store, subscription_id).await?;
    if !params.kind.eq_ignore_ascii_case(VAULT_TYPE) {
        return Err(MgmtError::bad_request(format!(
            "The type must be '{VAULT_TYPE}'."
        )));
    }
    let unavailable = |reason: &str, message: String| CheckNameAvailabilityResult {
        name_available: false,
        reason: Some(reason.into()),
        message: Some(message),
    };
    let name = match vault_name(&params.name) {
        Ok(n) => n,
        Err(e) => return Ok(unavailable("AccountNameInvalid", e.message)),
    };
    Ok(match store.get_vault_by_name(&name).await? {
        Some(v) if v.deleted.is_some() => {
            unavailable("AlreadyExists", deleted_name_held(&name).message)
        }
        Some(_) => unavailable("AlreadyExists", name_in_use(&name).message),
        None => CheckNameAvailabilityResult {
            name_available: true,
            reason: None,
            message: None,
        },
    })
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn deleted_wire(v: &VaultRow) -> DeletedVault {
    let d = v.deleted.unwrap_or(Deletion {
        deleted_at: 0,
        purge_at: 0,
    });
    DeletedVault {
        id: deleted_vault_id(&v.subscription_id, &v.location, &v.name),
        name: v.name.clone(),
        kind: "Microsoft.KeyVault/deletedVaults".into(),
        properties: DeletedVaultProperties {
            vault_id: v.resource_id.clone(),
            location: v.location.clone(),
            deletion_date: rfc3339(d.deleted_at),
            scheduled_purge_date: rfc3339(d.purge_at),
            tags: tags_of(v),
            purge_protection_enabled: v.purge_protection,
        },
    }
}

/// One page of soft-deleted vaults of a subscription.
pub async fn list_deleted(
    store: &dyn Store,
    subscription_id: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<(Vec<DeletedVault>, Option<String>), MgmtError> {
    require_subscription(store, subscription_id).await?;
    let after = after.map(vault_name).transpose()?;
    let mut rows = store
        .list_vaults_page(subscription_id, None, true, after.as_deref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more.then(|| rows.last().map(|v| v.name.clone())).flatten();
    Ok((rows.iter().map(deleted_wire).collect(), next))
}

async fn find_deleted(
    store: &dyn Store,
    subscription_id: &str,
    location_raw: &str,
    name: &str,
) -> Result<VaultRow, MgmtError> {
    require_subscription(store, subscription_id).await?;
    let loc = location(location_raw)?;
    let name = vault_name(name)?;
    store
        .get_vault_by_name(&name)
        .await?
        .filter(|v| {
            v.deleted.is_some() && v.subscription_id == subscription_id && v.location == loc
        })
        .ok_or_else(|| {
            MgmtError::not_found(
                "ResourceNotFound",
                format!("The deleted vault '{name}' was not found in location '{loc}'."),
            )
        })
}

pub async fn get_deleted(
    store: &dyn Store,
    subscription_id: &str,
    location: &str,
    name: &str,
) -> Result<DeletedVault, MgmtError> {
    Ok(deleted_wire(
        &find_deleted(store, subscription_id, location, name).await?,
    ))
}

/// Purges a soft-deleted vault now: it and its secrets, policies, role assignments and locks
/// are gone for good and the name is free. Refused under purge protection.
pub async fn purge_deleted(
    store: &dyn Store,
    clock: &dyn Clock,
    audit: &AuditCtx,
    subscription_id: &str,
    location: &str,
    name: &str,
) -> Result<(), MgmtError> {
    let v = find_deleted(store, subscription_id, location, name).await?;
    if v.purge_protection {
        let d = v.deleted.map(|d| d.purge_at).unwrap_or_default();
        return Err(MgmtError::conflict(
            "PurgeProtectionEnabled",
            format!(
                "Operation 'purge' is not allowed because purge protection is enabled for vault '{}'. It will be purged automatically on {}.",
                v.name,
                rfc3339(d)
            ),
        ));
    }
    let entry = audit.entry(
        &v.id,
        &v.resource_id,
        actions::DELETED_VAULT_PURGE,
        200,
        clock.now_ms(),
    );
    match store.purge_vault(&v.id, entry).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(MgmtError::not_found(
            "ResourceNotFound",
            format!("The deleted vault '{}' was not found.", v.name),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Purges soft-deleted vaults whose retention has passed (purge protection does not stop
/// this: it only forbids purging early). Returns how many went.
pub async fn purge_expired(store: &dyn Store, clock: &dyn Clock) -> Result<usize, MgmtError> {
    let due = store.vaults_purge_due(clock.now(), 100).await?;
    let mut purged = 0;
    for v in due {
        let entry = AuditCtx::system().entry(
            &v.id,
            &v.resource_id,
            actions::DELETED_VAULT_PURGE,
            200,
            clock.now_ms(),
        );
        match store.purge_vault(&v.id, entry).await {
            Ok(()) => purged += 1,
            Err(StoreError::NotFound) => {} // recovered or purged meanwhile
            Err(e) => return Err(e.into()),
        }
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const O1: &str = "11111111-1111-1111-1111-111111111111";
    const O2: &str = "22222222-2222-2222-2222-222222222222";

    fn entry(oid: &str, secrets: &[&str], keys: &[&str]) -> AccessPolicyEntry {
        AccessPolicyEntry {
            tenant_id: T.into(),
            object_id: oid.into(),
            application_id: None,
            permissions: Permissions {
                secrets: Some(secrets.iter().map(|s| s.to_string()).collect()),
                keys: Some(keys.iter().map(|s| s.to_string()).collect()),
                certificates: None,
                storage: None,
            },
        }
    }

    #[test]
    fn permissions_are_validated_canonical_and_all_expands() {
        let p = policies_from(&[entry(O1, &["LIST", "get", "get"], &["WrapKey"])], T).unwrap();
        assert_eq!(p[0].secrets, ["get", "list"]);
        assert_eq!(p[0].keys, ["wrapKey"]);
        let all = policies_from(&[entry(O1, &["all"], &[])], T).unwrap();
        assert_eq!(all[0].secrets.len(), 8);
        assert!(policies_from(&[entry(O1, &["steal"], &[])], T).is_err());
        assert!(policies_from(&[entry("not-a-guid", &["get"], &[])], T).is_err());
        let other_tenant = AccessPolicyEntry {
            tenant_id: O2.into(),
            ..entry(O1, &["get"], &[])
        };
        assert!(policies_from(&[other_tenant], T).is_err());
        assert!(policies_from(&[entry(O1, &["get"], &[]), entry(O1, &["list"], &[])], T).is_err());
    }

    #[test]
    fn add_merges_replace_overwrites_remove_subtracts() {
        let mut current = policies_from(&[entry(O1, &["get"], &["sign"])], T).unwrap();
        let change = |e| policies_from(&[e], T).unwrap();
        edit_policies(
            &mut current,
            PolicyEdit::Add,
            change(entry(O1, &["list"], &[])),
        );
        assert_eq!(current[0].secrets, ["get", "list"]);
        assert_eq!(current[0].keys, ["sign"]);
        edit_policies(
            &mut current,
            PolicyEdit::Add,
            change(entry(O2, &["set"], &[])),
        );
        assert_eq!(current.len(), 2);
        edit_policies(
            &mut current,
            PolicyEdit::Replace,
            change(entry(O1, &["delete"], &[])),
        );
        assert_eq!(current[0].secrets, ["delete"]);
        assert!(current[0].keys.is_empty());
        edit_policies(
            &mut current,
            PolicyEdit::Remove,
            change(entry(O2, &["set"], &[])),
        );
        assert_eq!(current.len(), 1, "an entry left with nothing goes");
        edit_policies(
            &mut current,
            PolicyEdit::Remove,
            change(entry(O1, &[], &[])),
        );
        assert!(
            current.is_empty(),
            "an entry listing nothing removes the whole entry"
        );
    }

    #[test]
    fn names_locations_and_groups() {
        assert_eq!(location("West Europe").unwrap(), "westeurope");
        assert!(location("").is_err() && location("a/b").is_err());
        assert_eq!(resource_group_name("My_RG(1)").unwrap(), "my_rg(1)");
        assert!(resource_group_name("rg.").is_err());
        assert!(resource_group_name(&"a".repeat(91)).is_err());
        assert_eq!(vault_name("ab").unwrap_err().code, "VaultNameNotValid");
        assert!(is_guid(T) && !is_guid("72f988bf86f141af91ab2d7cd011db47"));
    }
}
