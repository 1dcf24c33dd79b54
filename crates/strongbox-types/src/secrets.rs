//! Azure Key Vault secrets JSON shapes (SecretBundle, SecretItem, DeletedSecretBundle, …), as
//! the REST specs name them. Timestamps are Unix seconds, as on the wire.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type Tags = BTreeMap<String, String>;

/// Attributes a client may send (`enabled`, `nbf`, `exp`); read-only ones are ignored, as AKV does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretAttributesIn {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// Attributes as the service returns them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretAttributes {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub recovery_level: String,
    pub recoverable_days: i64,
}

/// `PUT /secrets/{name}` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretSetParameters {
    pub value: String,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub attributes: Option<SecretAttributesIn>,
}

/// `PATCH /secrets/{name}/{version}` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretUpdateParameters {
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub attributes: Option<SecretAttributesIn>,
    #[serde(default)]
    pub tags: Option<Tags>,
}

/// A secret with (optionally) its value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretBundle {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub attributes: SecretAttributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// What soft delete adds to a bundle or an item.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionInfo {
    pub recovery_id: String,
    pub deleted_date: i64,
    pub scheduled_purge_date: i64,
}

#[derive(Debug, Serialize)]
pub struct DeletedSecretBundle {
    #[serde(flatten)]
    pub secret: SecretBundle,
    #[serde(flatten)]
    pub deletion: DeletionInfo,
}

/// A list entry: never carries a value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretItem {
    pub id: String,
    pub attributes: SecretAttributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DeletedSecretItem {
    #[serde(flatten)]
    pub item: SecretItem,
    #[serde(flatten)]
    pub deletion: DeletionInfo,
}

/// One page of a list; `nextLink` is null on the last page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResult<T> {
    pub value: Vec<T>,
    pub next_link: Option<String>,
}

/// `POST /secrets/{name}/backup` response and `POST /secrets/restore` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupBlob {
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_bundle_flattens_into_one_object() {
        let bundle = DeletedSecretBundle {
            secret: SecretBundle {
                value: None,
                id: "https://v.example/secrets/a/0123".into(),
                content_type: Some("text/plain".into()),
                attributes: SecretAttributes {
                    enabled: true,
                    nbf: None,
                    exp: None,
                    created: 1,
                    updated: 2,
                    recovery_level: "Recoverable+Purgeable".into(),
                    recoverable_days: 90,
                },
                tags: None,
            },
            deletion: DeletionInfo {
                recovery_id: "https://v.example/deletedsecrets/a".into(),
                deleted_date: 3,
                scheduled_purge_date: 4,
            },
        };
        let json = serde_json::to_value(&bundle).unwrap();
        assert_eq!(json["recoveryId"], "https://v.example/deletedsecrets/a");
        assert_eq!(json["contentType"], "text/plain");
        assert_eq!(json["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
        assert!(json.get("value").is_none());
    }

    #[test]
    fn set_parameters_require_a_string_value() {
        assert!(serde_json::from_str::<SecretSetParameters>(r#"{"value": 5}"#).is_err());
        assert!(serde_json::from_str::<SecretSetParameters>(r#"{}"#).is_err());
        let p: SecretSetParameters =
            serde_json::from_str(r#"{"value":"x","attributes":{"enabled":false,"created":5}}"#)
                .unwrap();
        assert_eq!(p.attributes.unwrap().enabled, Some(false));
    }
}
