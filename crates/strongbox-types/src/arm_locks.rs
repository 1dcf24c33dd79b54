//! Microsoft.Authorization/locks (ManagementLockObject) as azure-mgmt-resource-locks sends and
//! reads them. `properties` is flattened on the SDK side; on the wire it is an object.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LockOwner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockProperties {
    pub level: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owners: Option<Vec<LockOwner>>,
}

/// `PUT …/providers/Microsoft.Authorization/locks/{name}` body. `id`, `name` and `type` are
/// tolerated so a lock fetched with GET can be sent back as is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockParameters {
    pub properties: LockProperties,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManagementLock {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub properties: LockProperties,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_body_as_the_sdk_sends_it_parses_and_strangers_do_not() {
        let p: LockParameters = serde_json::from_str(
            r#"{"properties":{"level":"CanNotDelete","notes":"n","owners":[{"applicationId":"a"}]}}"#,
        )
        .unwrap();
        assert_eq!(p.properties.level, "CanNotDelete");
        for bad in [
            r#"{"properties":{"level":"ReadOnly","color":"red"}}"#,
            r#"{"properties":{"level":1}}"#,
            r#"{"properties":{}}"#,
            r#"{"level":"ReadOnly"}"#,
        ] {
            assert!(
                serde_json::from_str::<LockParameters>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
