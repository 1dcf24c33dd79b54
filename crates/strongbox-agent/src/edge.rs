//! The edge resources an agent keeps (issue 5): synced secrets (named groups of vault secret
//! references, each mapped to a key, with a delivery target) and endpoints (asset and dataflow
//! endpoints whose authentication names `<synced-secret>/<key>`). They hold no secret value, so
//! the file (`edge.json`) is plain JSON, written atomically; values live in the sealed cache.

use crate::targets::{SecretType, validate_key, validate_name};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const EDGE_FILE: &str = "edge.json";

/// A refusal of an edge request: an HTTP status, a code and a message (never a secret value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl EdgeError {
    pub fn bad(code: &'static str, message: impl Into<String>) -> EdgeError {
        EdgeError {
            status: 400,
            code,
            message: message.into(),
        }
    }
    pub fn not_found(what: &str, name: &str) -> EdgeError {
        EdgeError {
            status: 404,
            code: "NotFound",
            message: format!("no {what} named {name} at this edge"),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> EdgeError {
        EdgeError {
            status: 409,
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for EdgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// One key of a synced secret and the vault secret it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reference {
    pub key: String,
    /// The vault secret's name, or its full id (`https://{vault}/secrets/{name}[/{version}]`),
    /// whose vault must be the one this edge is bound to.
    pub secret: String,
    /// A pinned version; absent follows the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Where a synced secret is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum TargetSpec {
    /// A directory under the agent's secrets dir (or `dir`), written the kubelet way.
    Files {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir: Option<PathBuf>,
    },
    /// A Kubernetes Secret of the synced secret's name in `namespace`.
    Kubernetes { namespace: String },
}

impl Default for TargetSpec {
    fn default() -> TargetSpec {
        TargetSpec::Files { dir: None }
    }
}

/// What happens at the edge when a referenced vault secret is deleted or disabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnSourceDeleted {
    /// Its key leaves the target (the whole target when no key is left).
    #[default]
    Remove,
    /// The last known value stays.
    KeepLastKnown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncedSecret {
    pub name: String,
    #[serde(default, rename = "type")]
    pub secret_type: SecretType,
    pub references: Vec<Reference>,
    #[serde(default)]
    pub target: TargetSpec,
    #[serde(default)]
    pub on_source_deleted: OnSourceDeleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EndpointKind {
    /// A device inbound (asset) endpoint.
    Asset,
    /// A dataflow endpoint.
    Dataflow,
}

/// How an endpoint authenticates; secret names are `<synced-secret>/<key>` (a dataflow
/// `secretRef` names a whole synced secret, which must hold `username` and `password`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", deny_unknown_fields)]
pub enum Authentication {
    Anonymous,
    #[serde(rename_all = "camelCase")]
    UsernamePassword {
        username_secret_name: String,
        password_secret_name: String,
    },
    #[serde(rename_all = "camelCase")]
    Certificate {
        certificate_secret_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_secret_name: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    SecretRef {
        secret_ref: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub name: String,
    pub kind: EndpointKind,
    pub address: String,
    pub authentication: Authentication,
}

impl Endpoint {
    /// The `(synced secret, key)` pairs this endpoint reads; a `secretRef` needs both keys.
    pub fn secret_uses(&self) -> Vec<(String, String)> {
        let split = |s: &String| match s.split_once('/') {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => (s.clone(), String::new()),
        };
        match &self.authentication {
            Authentication::Anonymous => vec![],
            Authentication::UsernamePassword {
                username_secret_name,
                password_secret_name,
            } => vec![split(username_secret_name), split(password_secret_name)],
            Authentication::Certificate {
                certificate_secret_name,
                key_secret_name,
            } => std::iter::once(certificate_secret_name)
                .chain(key_secret_name.iter())
                .map(split)
                .collect(),
            Authentication::SecretRef { secret_ref } => vec![
                (secret_ref.clone(), "username".into()),
                (secret_ref.clone(), "password".into()),
            ],
        }
    }
}

/// Every edge resource of this agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeConfig {
    #[serde(default)]
    pub synced_secrets: BTreeMap<String, SyncedSecret>,
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
}

const MAX_REFERENCES: usize = 64;
const MAX_ADDRESS: usize = 2048;

/// The vault secret name and optional version a reference names, checked against the vault
/// this edge is bound to (`vault_uri`, e.g. `https://dev.vault.localhost:8443`).
pub fn resolve_reference(
    r: &Reference,
    vault_uri: &str,
) -> Result<(String, Option<String>), EdgeError> {
    let (name, version) = if r.secret.contains("://") {
        let (base, path) = match r.secret.split_once("/secrets/") {
            Some(x) => x,
            None => {
                return Err(EdgeError::bad(
                    "InvalidReference",
                    format!(
                        "{} is not a secret id (https://{{vault}}/secrets/{{name}}[/{{version}}])",
                        r.secret
                    ),
                ));
            }
        };
        if !same_vault(base, vault_uri) {
            return Err(EdgeError::bad(
                "VaultNotBound",
                format!(
                    "this edge instance is bound to the vault {vault_uri}; {base} is another vault, and one edge instance works with only one vault"
                ),
            ));
        }
        let mut parts = path.trim_end_matches('/').splitn(2, '/');
        let name = parts.next().unwrap_or_default().to_string();
        (name, parts.next().map(String::from))
    } else {
        (r.secret.clone(), None)
    };
    let version = match (version, &r.version) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => {
            return Err(EdgeError::bad(
                "InvalidReference",
                format!("the reference for key {} names two versions", r.key),
            ));
        }
        (a, b) => a.or(b.clone()),
    };
    if strongbox_domain::names::secret_name(&name).is_err() {
        return Err(EdgeError::bad(
            "InvalidReference",
            format!("{name:?} is not a valid vault secret name (1-127 letters, digits and dashes)"),
        ));
    }
    if let Some(v) = &version
        && (v.len() != 32 || !v.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(EdgeError::bad(
            "InvalidReference",
            format!("{v:?} is not a secret version (32 hex digits)"),
        ));
    }
    Ok((name, version.map(|v| v.to_ascii_lowercase())))
}

fn same_vault(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    norm(a) == norm(b)
}

impl SyncedSecret {
    /// Checks names, keys, references and the target, and rewrites each reference to its
    /// canonical form (plain name + optional version).
    pub fn validate(&mut self, vault_uri: &str) -> Result<(), EdgeError> {
        validate_name(&self.name).map_err(|m| EdgeError::bad("InvalidName", m))?;
        if self.references.is_empty() {
            return Err(EdgeError::bad(
                "InvalidReference",
                "a synced secret needs at least one reference",
            ));
        }
        if self.references.len() > MAX_REFERENCES {
            return Err(EdgeError::bad(
                "InvalidReference",
                format!("at most {MAX_REFERENCES} references per synced secret"),
            ));
        }
        let mut keys = std::collections::BTreeSet::new();
        for r in &mut self.references {
            validate_key(&r.key).map_err(|m| EdgeError::bad("InvalidKey", m))?;
            if !keys.insert(r.key.clone()) {
                return Err(EdgeError::bad(
                    "InvalidKey",
                    format!("the key {} appears twice", r.key),
                ));
            }
            let (name, version) = resolve_reference(r, vault_uri)?;
            r.secret = name;
            r.version = version;
        }
        // The type's required keys (Kubernetes' rules, see SecretType): refused now rather
        // than by the API server (or the target) once values exist.
        self.secret_type
            .check_keys(keys.iter().map(String::as_str))
            .map_err(|m| EdgeError::bad("InvalidKey", m))?;
        match &self.target {
            TargetSpec::Files { dir: Some(d) } if !d.is_absolute() => {
                return Err(EdgeError::bad(
                    "InvalidTarget",
                    "a files target dir must be an absolute path",
                ));
            }
            TargetSpec::Kubernetes { .. } if self.name.len() > 63 => {
                return Err(EdgeError::bad(
                    "InvalidName",
                    "a synced secret delivered to Kubernetes has a name of at most 63 characters (it is also a label value)",
                ));
            }
            TargetSpec::Kubernetes { namespace } => {
                validate_name(namespace)
                    .ok()
                    .filter(|_| namespace.len() <= 63 && !namespace.contains('.'))
                    .ok_or_else(|| {
                        EdgeError::bad(
                            "InvalidTarget",
                            format!("{namespace:?} is not a Kubernetes namespace name"),
                        )
                    })?;
            }
            TargetSpec::Files { .. } => {}
        }
        Ok(())
    }
}

impl Endpoint {
    pub fn validate(&self, config: &EdgeConfig) -> Result<(), EdgeError> {
        validate_name(&self.name).map_err(|m| EdgeError::bad("InvalidName", m))?;
        if self.address.is_empty() || self.address.len() > MAX_ADDRESS {
            return Err(EdgeError::bad(
                "InvalidAddress",
                format!("an endpoint address is 1-{MAX_ADDRESS} characters"),
            ));
        }
        if let Authentication::SecretRef { .. } = self.authentication
            && self.kind != EndpointKind::Dataflow
        {
            return Err(EdgeError::bad(
                "InvalidAuthentication",
                "secretRef authentication is for dataflow endpoints; asset endpoints name <synced-secret>/<key>",
            ));
        }
        for (synced, key) in self.secret_uses() {
            let s = config.synced_secrets.get(&synced).ok_or_else(|| {
                EdgeError::bad(
                    "InvalidSecretReference",
                    format!("no synced secret named {synced:?} at this edge (references are <synced-secret>/<key>)"),
                )
            })?;
            if !s.references.iter().any(|r| r.key == key) {
                return Err(EdgeError::bad(
                    "InvalidSecretReference",
                    format!("the synced secret {synced} has no key {key:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl EdgeConfig {
    /// The endpoints that read `synced`.
    pub fn users_of(&self, synced: &str) -> Vec<String> {
        self.endpoints
            .values()
            .filter(|e| e.secret_uses().iter().any(|(s, _)| s == synced))
            .map(|e| e.name.clone())
            .collect()
    }

    /// Whether every secret an endpoint names still resolves.
    pub fn endpoint_ready(&self, e: &Endpoint) -> Result<(), String> {
        for (synced, key) in e.secret_uses() {
            match self.synced_secrets.get(&synced) {
                None => return Err(format!("ReferencedSecretMissing: {synced}")),
                Some(s) if !s.references.iter().any(|r| r.key == key) => {
                    return Err(format!("ReferencedKeyMissing: {synced}/{key}"));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<EdgeConfig, strongbox_client::Error> {
        let path = dir.join(EDGE_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                strongbox_client::Error::Config(format!("reading {}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EdgeConfig::default()),
            Err(e) => Err(strongbox_client::Error::Config(format!(
                "reading {}: {e}",
                path.display()
            ))),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), strongbox_client::Error> {
        crate::state::write_atomically(
            &dir.join(EDGE_FILE),
            &serde_json::to_vec_pretty(self).expect("edge config serializes"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAULT: &str = "https://edge1.vault.localhost:8443";

    fn synced(refs: &[(&str, &str)]) -> SyncedSecret {
        SyncedSecret {
            name: "edp1secrets".into(),
            secret_type: SecretType::Opaque,
            references: refs
                .iter()
                .map(|(k, s)| Reference {
                    key: k.to_string(),
                    secret: s.to_string(),
                    version: None,
                })
                .collect(),
            target: TargetSpec::default(),
            on_source_deleted: OnSourceDeleted::Remove,
        }
    }

    #[test]
    fn references_resolve_only_in_the_bound_vault() {
        let mut s = synced(&[
            ("username", "opc-user"),
            (
                "password",
                "https://EDGE1.vault.localhost:8443/secrets/opc-pass/0123456789abcdef0123456789ABCDEF",
            ),
        ]);
        s.validate(VAULT).unwrap();
        assert_eq!(s.references[1].secret, "opc-pass");
        assert_eq!(
            s.references[1].version.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        let mut other = synced(&[("u", "https://other.vault.localhost:8443/secrets/x")]);
        assert_eq!(other.validate(VAULT).unwrap_err().code, "VaultNotBound");
        for bad in ["", "a_b", "x/../y"] {
            let mut s = synced(&[("u", bad)]);
            assert_eq!(
                s.validate(VAULT).unwrap_err().code,
                "InvalidReference",
                "{bad}"
            );
        }
        let mut dup = synced(&[("u", "a"), ("u", "b")]);
        assert_eq!(dup.validate(VAULT).unwrap_err().code, "InvalidKey");
        let mut basic = synced(&[("username", "a")]);
        basic.secret_type = SecretType::BasicAuth;
        assert_eq!(basic.validate(VAULT).unwrap_err().code, "InvalidKey");
        let mut rel = synced(&[("u", "a")]);
        rel.target = TargetSpec::Files {
            dir: Some("relative/dir".into()),
        };
        assert_eq!(rel.validate(VAULT).unwrap_err().code, "InvalidTarget");
    }

    #[test]
    fn endpoints_must_name_existing_keys_and_are_found_as_users() {
        let mut cfg = EdgeConfig::default();
        let mut s = synced(&[("username", "opc-user"), ("password", "opc-pass")]);
        s.validate(VAULT).unwrap();
        cfg.synced_secrets.insert(s.name.clone(), s);
        let e = Endpoint {
            name: "opcua-1".into(),
            kind: EndpointKind::Asset,
            address: "opc.tcp://plc:4840".into(),
            authentication: Authentication::UsernamePassword {
                username_secret_name: "edp1secrets/username".into(),
                password_secret_name: "edp1secrets/password".into(),
            },
        };
        e.validate(&cfg).unwrap();
        let mut wrong = e.clone();
        wrong.authentication = Authentication::UsernamePassword {
            username_secret_name: "edp1secrets/user".into(),
            password_secret_name: "edp1secrets/password".into(),
        };
        assert_eq!(
            wrong.validate(&cfg).unwrap_err().code,
            "InvalidSecretReference"
        );
        let mut asset_ref = e.clone();
        asset_ref.authentication = Authentication::SecretRef {
            secret_ref: "edp1secrets".into(),
        };
        assert_eq!(
            asset_ref.validate(&cfg).unwrap_err().code,
            "InvalidAuthentication"
        );
        asset_ref.kind = EndpointKind::Dataflow;
        asset_ref.validate(&cfg).unwrap();
        cfg.endpoints.insert(e.name.clone(), e.clone());
        assert_eq!(cfg.users_of("edp1secrets"), vec!["opcua-1".to_string()]);
        cfg.synced_secrets.clear();
        assert!(
            cfg.endpoint_ready(&e)
                .unwrap_err()
                .contains("ReferencedSecretMissing")
        );
    }
}
