//! Microsoft.KeyVault/vaults as Azure Resource Manager speaks it (the shapes azure-mgmt-keyvault
//! sends and reads). Request bodies refuse unknown fields: a typo must not silently become a
//! default. Fields Azure documents but Strongbox does not act on (`enabledFor*`, `networkAcls`,
//! `publicNetworkAccess`, key/certificate/storage permissions) are accepted and echoed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type ArmTags = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sku {
    pub family: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessPolicyEntry {
    pub tenant_id: String,
    pub object_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    pub permissions: Permissions,
}

/// `properties` of a PUT body (VaultProperties). `vaultUri` and `provisioningState` are output
/// fields the SDK sends back when a caller round-trips a vault; they are accepted and ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VaultPropertiesIn {
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub sku: Option<Sku>,
    #[serde(default)]
    pub access_policies: Option<Vec<AccessPolicyEntry>>,
    #[serde(default)]
    pub vault_uri: Option<String>,
    #[serde(default)]
    pub enabled_for_deployment: Option<bool>,
    #[serde(default)]
    pub enabled_for_disk_encryption: Option<bool>,
    #[serde(default)]
    pub enabled_for_template_deployment: Option<bool>,
    #[serde(default)]
    pub enable_soft_delete: Option<bool>,
    #[serde(default)]
    pub soft_delete_retention_in_days: Option<i64>,
    #[serde(default)]
    pub enable_rbac_authorization: Option<bool>,
    #[serde(default)]
    pub create_mode: Option<String>,
    #[serde(default)]
    pub enable_purge_protection: Option<bool>,
    #[serde(default)]
    pub network_acls: Option<serde_json::Value>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    #[serde(default)]
    pub public_network_access: Option<String>,
}

/// `PUT …/vaults/{name}` body (VaultCreateOrUpdateParameters). `id`, `name` and `type` are
/// tolerated so a vault fetched with GET can be sent back as is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultCreateOrUpdateParameters {
    pub location: String,
    #[serde(default)]
    pub tags: Option<ArmTags>,
    pub properties: VaultPropertiesIn,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `PATCH …/vaults/{name}` body (VaultPatchParameters): every field optional; what is absent
/// stays as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultPatchParameters {
    #[serde(default)]
    pub tags: Option<ArmTags>,
    #[serde(default)]
    pub properties: Option<VaultPropertiesIn>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VaultAccessPolicyProperties {
    pub access_policies: Vec<AccessPolicyEntry>,
}

/// `PUT …/vaults/{name}/accessPolicies/{add|replace|remove}` body and response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultAccessPolicyParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub properties: VaultAccessPolicyProperties,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultProperties {
    pub tenant_id: String,
    pub sku: Sku,
    pub access_policies: Vec<AccessPolicyEntry>,
    pub vault_uri: String,
    pub enabled_for_deployment: bool,
    pub enabled_for_disk_encryption: bool,
    pub enabled_for_template_deployment: bool,
    pub enable_soft_delete: bool,
    pub soft_delete_retention_in_days: i64,
    pub enable_rbac_authorization: bool,
    /// Omitted until it has been turned on, as Azure does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_purge_protection: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_acls: Option<serde_json::Value>,
    pub provisioning_state: String,
    pub public_network_access: String,
}

/// A vault as GET returns it.
#[derive(Debug, Clone, Serialize)]
pub struct Vault {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub location: String,
    pub tags: ArmTags,
    pub properties: VaultProperties,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedVaultProperties {
    pub vault_id: String,
    pub location: String,
    /// RFC 3339.
    pub deletion_date: String,
    pub scheduled_purge_date: String,
    pub tags: ArmTags,
    pub purge_protection_enabled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeletedVault {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub properties: DeletedVaultProperties,
}

/// `POST …/providers/Microsoft.KeyVault/checkNameAvailability` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultCheckNameAvailabilityParameters {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckNameAvailabilityResult {
    pub name_available: bool,
    /// `AccountNameInvalid` or `AlreadyExists`, when not available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One page of an ARM list; `nextLink` is null on the last page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmList<T> {
    pub value: Vec<T>,
    pub next_link: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_as_the_sdk_sends_it_parses() {
        let body = r#"{"location":"eastus","tags":{"a":"b"},"properties":{"tenantId":"t",
            "sku":{"family":"A","name":"standard"},
            "accessPolicies":[{"tenantId":"t","objectId":"o","permissions":{"keys":["get"],
              "secrets":["get","list"],"certificates":[],"storage":[]}}],
            "enableSoftDelete":true,"softDeleteRetentionInDays":7,"enablePurgeProtection":true,
            "enableRbacAuthorization":false,"vaultUri":"https://ignored/","provisioningState":"Succeeded"}}"#;
        let p: VaultCreateOrUpdateParameters = serde_json::from_str(body).unwrap();
        assert_eq!(p.properties.soft_delete_retention_in_days, Some(7));
        assert_eq!(
            p.properties.access_policies.unwrap()[0]
                .permissions
                .secrets
                .as_deref(),
            Some(&["get".to_string(), "list".to_string()][..])
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        for bad in [
            r#"{"location":"x","properties":{},"extra":1}"#,
            r#"{"location":"x","properties":{"enableSoftDeleet":true}}"#,
            r#"{"location":"x","properties":{"sku":{"family":"A","name":"standard","tier":1}}}"#,
            r#"{"location":"x","properties":{"softDeleteRetentionInDays":"7"}}"#,
            r#"{"location":5,"properties":{}}"#,
            r#"{"properties":{}}"#,
        ] {
            assert!(
                serde_json::from_str::<VaultCreateOrUpdateParameters>(bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn purge_protection_is_omitted_until_set() {
        let v = VaultProperties {
            tenant_id: "t".into(),
            sku: Sku {
                family: "A".into(),
                name: "standard".into(),
            },
            access_policies: vec![],
            vault_uri: "https://v.vault.localhost/".into(),
            enabled_for_deployment: false,
            enabled_for_disk_encryption: false,
            enabled_for_template_deployment: false,
            enable_soft_delete: true,
            soft_delete_retention_in_days: 90,
            enable_rbac_authorization: false,
            enable_purge_protection: None,
            network_acls: None,
            provisioning_state: "Succeeded".into(),
            public_network_access: "Enabled".into(),
        };
        let json = serde_json::to_value(&v).unwrap();
        assert!(json.get("enablePurgeProtection").is_none());
        assert_eq!(json["softDeleteRetentionInDays"], 90);
        assert_eq!(json["provisioningState"], "Succeeded");
    }
}
