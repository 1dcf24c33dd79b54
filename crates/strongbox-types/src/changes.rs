//! The vault change feed (`GET /changes`, a Strongbox extension; the Azure API has none): what
//! changed in a vault's secrets, in commit order, so an edge agent follows a vault without
//! polling every secret. Positions are opaque decimal cursors to clients.

use serde::{Deserialize, Serialize};

/// What happened to a secret. The wire names are the `SecretNewVersion`… strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    #[serde(rename = "SecretNewVersion")]
    NewVersion,
    #[serde(rename = "SecretUpdated")]
    Updated,
    #[serde(rename = "SecretDeleted")]
    Deleted,
    #[serde(rename = "SecretRecovered")]
    Recovered,
    #[serde(rename = "SecretPurged")]
    Purged,
    #[serde(rename = "SecretRestored")]
    Restored,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 6] = [
        ChangeKind::NewVersion,
        ChangeKind::Updated,
        ChangeKind::Deleted,
        ChangeKind::Recovered,
        ChangeKind::Purged,
        ChangeKind::Restored,
    ];

    /// The wire name (also what the stores keep).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::NewVersion => "SecretNewVersion",
            ChangeKind::Updated => "SecretUpdated",
            ChangeKind::Deleted => "SecretDeleted",
            ChangeKind::Recovered => "SecretRecovered",
            ChangeKind::Purged => "SecretPurged",
            ChangeKind::Restored => "SecretRestored",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        ChangeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEntry {
    /// The change's position in the vault's feed (its audit chain seq).
    pub seq: i64,
    /// The secret's name as it was created (display casing).
    pub name: String,
    /// The version concerned: the new or updated version, or the latest one after a recover or
    /// restore; null after a delete or purge.
    #[serde(default)]
    pub version: Option<String>,
    pub change: ChangeKind,
    /// Whether that version is enabled; null when `version` is.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// When the change was committed (Unix milliseconds, server clock).
    pub time_ms: i64,
}

/// `GET /changes` answer: the entries after the cursor asked for, and the cursor to ask with
/// next (the last position examined, which may be past the last entry shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangesPage {
    pub value: Vec<ChangeEntry>,
    pub cursor: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_have_the_documented_shape() {
        let page = ChangesPage {
            value: vec![ChangeEntry {
                seq: 7,
                name: "Db-Password".into(),
                version: None,
                change: ChangeKind::Purged,
                enabled: None,
                time_ms: 1_700_000_000_000,
            }],
            cursor: "7".into(),
        };
        let v = serde_json::to_value(&page).unwrap();
        assert_eq!(
            v,
            json!({"value": [{"seq": 7, "name": "Db-Password", "version": null,
                "change": "SecretPurged", "enabled": null, "timeMs": 1_700_000_000_000i64}],
                "cursor": "7"})
        );
        assert_eq!(serde_json::from_value::<ChangesPage>(v).unwrap(), page);
        for k in ChangeKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
            assert_eq!(ChangeKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ChangeKind::parse("SecretGet"), None);
    }
}
