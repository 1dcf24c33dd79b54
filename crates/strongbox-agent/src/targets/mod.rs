//! Delivery targets of synced secrets (issue 5): where the agent puts a synced secret's keys for
//! workloads to read. A synced secret is a group of keys that switches as one (research
//! edge-sync §7.5): a new username never meets an old password. Two targets:
//!
//! - [`files::FileTarget`]: `{root}/{name}/{key}` written the kubelet AtomicWriter way, plus
//!   fsync, so it also holds on persistent disk (§5, §7.10). Consumers watch the directory for
//!   `..data` and re-read every key.
//! - [`kubernetes::KubernetesTarget`]: a Kubernetes Secret written by one server-side apply,
//!   labelled as ours; a foreign Secret of the same name is never adopted (§7.7).
//!
//! Errors never carry a secret value.

pub mod files;
pub mod kubernetes;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// The Kubernetes Secret types a synced secret may have (an allow-list: never
/// `service-account-token`, nor the legacy `dockercfg` or bootstrap tokens). The names are the
/// `SecretType*` constants of kubernetes/kubernetes `pkg/apis/core/types.go`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SecretType {
    #[default]
    Opaque,
    /// `username` and `password`.
    #[serde(rename = "kubernetes.io/basic-auth")]
    BasicAuth,
    /// `tls.crt` and `tls.key`.
    #[serde(rename = "kubernetes.io/tls")]
    Tls,
    /// A non-empty `ssh-privatekey`.
    #[serde(rename = "kubernetes.io/ssh-auth")]
    SshAuth,
    /// `.dockerconfigjson`, a JSON object.
    #[serde(rename = "kubernetes.io/dockerconfigjson")]
    DockerConfigJson,
}

/// The most a Secret's values may hold together: `MaxSecretSize = 1 * 1024 * 1024` in
/// kubernetes/kubernetes `pkg/apis/core/types.go`; `ValidateSecret` sums the values' lengths
/// (not the keys') and refuses more.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Where the rules below come from, named in every refusal.
const VALIDATE_SECRET: &str = "Kubernetes ValidateSecret, pkg/apis/core/validation/validation.go";

impl SecretType {
    pub const ALL: [SecretType; 5] = [
        SecretType::Opaque,
        SecretType::BasicAuth,
        SecretType::Tls,
        SecretType::SshAuth,
        SecretType::DockerConfigJson,
    ];

    /// The Secret `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::Opaque => "Opaque",
            SecretType::BasicAuth => "kubernetes.io/basic-auth",
            SecretType::Tls => "kubernetes.io/tls",
            SecretType::SshAuth => "kubernetes.io/ssh-auth",
            SecretType::DockerConfigJson => "kubernetes.io/dockerconfigjson",
        }
    }

    /// Keys the type requires. Kubernetes' `ValidateSecret` (per type, with the key names of
    /// `pkg/apis/core/types.go`): basic-auth needs `username` or `password`
    /// (`BasicAuthUsernameKey`, `BasicAuthPasswordKey`), tls needs `tls.crt` and `tls.key`
    /// (`TLSCertKey`, `TLSPrivateKeyKey`), ssh-auth needs `ssh-privatekey` (`SSHAuthPrivateKey`),
    /// dockerconfigjson needs `.dockerconfigjson` (`DockerConfigJsonKey`). The agent asks
    /// basic-auth for both keys: half a credential is no credential, and a dataflow `secretRef`
    /// reads both; so what the agent accepts Kubernetes accepts too.
    pub fn required_keys(self) -> &'static [&'static str] {
        match self {
            SecretType::Opaque => &[],
            SecretType::BasicAuth => &["username", "password"],
            SecretType::Tls => &["tls.crt", "tls.key"],
            SecretType::SshAuth => &["ssh-privatekey"],
            SecretType::DockerConfigJson => &[".dockerconfigjson"],
        }
    }

    /// The rules the key names alone decide (so a synced secret is refused when it is made,
    /// before any value exists): the type's required keys.
    pub fn check_keys<'a>(self, keys: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
        let keys: Vec<&str> = keys.into_iter().collect();
        let missing: Vec<&str> = self
            .required_keys()
            .iter()
            .copied()
            .filter(|k| !keys.contains(k))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "a {self} Secret needs the keys {} ({VALIDATE_SECRET}); missing: {}",
            self.required_keys().join(" and "),
            missing.join(", ")
        ))
    }

    /// The rules the values decide, checked before anything is written; never shows a value.
    /// `ValidateSecret`: the values hold at most [`MAX_SECRET_SIZE`] bytes together; ssh-auth's
    /// `ssh-privatekey` is not empty; dockerconfigjson's `.dockerconfigjson` is JSON that Go's
    /// `json.Unmarshal` reads into a `map[string]interface{}` (an object, or `null`).
    pub fn check_values<'a>(
        self,
        data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(), String> {
        let mut total = 0usize;
        for (k, v) in data {
            total += v.len();
            match (self, k) {
                (SecretType::SshAuth, "ssh-privatekey") if v.is_empty() => {
                    return Err(format!(
                        "a {self} Secret needs a non-empty ssh-privatekey ({VALIDATE_SECRET})"
                    ));
                }
                (SecretType::DockerConfigJson, ".dockerconfigjson")
                    if serde_json::from_slice::<
                        Option<serde_json::Map<String, serde_json::Value>>,
                    >(v)
                    .is_err() =>
                {
                    return Err(format!(
                        "the value of .dockerconfigjson is not a JSON object, which a {self} Secret needs ({VALIDATE_SECRET})"
                    ));
                }
                _ => {}
            }
        }
        if total > MAX_SECRET_SIZE {
            return Err(format!(
                "the values hold {total} bytes together; a Kubernetes Secret holds at most {MAX_SECRET_SIZE} (MaxSecretSize, pkg/apis/core/types.go)"
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for SecretType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One synced secret as a target receives it: all its keys, switched together.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    pub name: String,
    pub secret_type: SecretType,
    pub data: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

/// Names the keys, never the values.
impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("name", &self.name)
            .field("secret_type", &self.secret_type)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Payload {
    /// Everything Kubernetes checks of a Secret's name and data, before anything is written:
    /// the name, every key, the keys the type requires, the values. At least one key.
    pub fn validate(&self) -> Result<(), TargetError> {
        validate_name(&self.name).map_err(TargetError::Invalid)?;
        let refuse = |m: String| TargetError::Invalid(format!("synced secret {}: {m}", self.name));
        if self.data.is_empty() {
            return Err(refuse("it has no keys".into()));
        }
        for k in self.data.keys() {
            validate_key(k).map_err(refuse)?;
        }
        self.secret_type
            .check_keys(self.data.keys().map(String::as_str))
            .map_err(refuse)?;
        self.secret_type
            .check_values(self.data.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(refuse)
    }
}

/// The content hash of a synced secret's data: `sha256:` and the hex SHA-256 of each key and
/// value, length-prefixed in key order (so `a=bc` and `ab=c` differ). Not the data itself.
pub fn content_hash(data: &BTreeMap<String, Zeroizing<Vec<u8>>>) -> String {
    let mut buf = Zeroizing::new(Vec::new());
    for (k, v) in data {
        buf.extend_from_slice(&(k.len() as u64).to_be_bytes());
        buf.extend_from_slice(k.as_bytes());
        buf.extend_from_slice(&(v.len() as u64).to_be_bytes());
        buf.extend_from_slice(v);
    }
    format!("sha256:{}", hex::encode(strongbox_crypto::sha256(&buf)))
}

const MAX_NAME: usize = 253;

/// A Kubernetes Secret name: a DNS-1123 subdomain (lowercase letters, digits, `-` and `.`; at
/// most 253 characters; every dot-separated label starts and ends with a letter or digit): Kubernetes'
/// `ValidateSecretName = NameIsDNSSubdomain` (pkg/apis/core/validation/validation.go), i.e.
/// `IsDNS1123Subdomain` in apimachinery pkg/util/validation/validation.go. Such a name is also a
/// safe directory name (never `.`, `..` or a path).
pub fn validate_name(name: &str) -> Result<(), String> {
    let shown: String = name.chars().take(64).collect();
    if name.is_empty() {
        return Err("the synced secret name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "the synced secret name {shown}… is longer than {MAX_NAME} characters"
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "the synced secret name '{shown}' is not a DNS-1123 subdomain: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (a Kubernetes Secret name)"
        ));
    }
    Ok(())
}

/// A Kubernetes Secret data key, which is also the file name in a file target: Kubernetes'
/// `IsConfigMapKey` (apimachinery pkg/util/validation/validation.go, which `ValidateSecret`
/// applies to every key): `[-._a-zA-Z0-9]+`, at most 253 characters
/// (`DNS1123SubdomainMaxLength`), and not `.`, `..` or anything starting with `..` (which are
/// also the file target's own names: `..data`, `..data_tmp`).
pub fn validate_key(key: &str) -> Result<(), String> {
    let shown: String = key.chars().take(64).collect();
    if key.is_empty() {
        return Err("a key is empty".into());
    }
    if key.len() > MAX_NAME {
        return Err(format!(
            "the key {shown}… is longer than {MAX_NAME} characters"
        ));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(format!(
            "the key '{shown}' may hold only letters, digits, '-', '.' and '_'"
        ));
    }
    if key == "." || key.starts_with("..") {
        return Err(format!(
            "the key '{shown}' is reserved ('.', '..' and names starting with '..')"
        ));
    }
    Ok(())
}

/// A refused or failed delivery. Messages name secrets and keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// An object of that name exists and is not ours: never adopted (the SSE's
    /// `CreateFailedInvalidLabel`).
    #[error("not ours: {0}")]
    NotOurs(String),
    /// The payload breaks a rule (name, key, type).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The local file system failed.
    #[error("I/O: {0}")]
    Io(String),
    /// The Kubernetes API refused (forbidden, invalid, not found) or failed for good.
    #[error("Kubernetes API: {0}")]
    Api(String),
    /// The Kubernetes API could not answer now (unreachable, 5xx, 429): the target keeps what
    /// it holds and the write is retried with the engine's backoff, no sooner than the server's
    /// `retryAfterSeconds` when it gave one.
    #[error("Kubernetes API unavailable: {0}")]
    Unavailable(String, Option<std::time::Duration>),
}

impl TargetError {
    /// A transient failure: report Stale and retry soon, not Error.
    pub fn is_transient(&self) -> bool {
        matches!(self, TargetError::Unavailable(..))
    }
}

/// Where a synced secret is delivered.
#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// For status and logs: `files:/run/x/edp1secrets`, `kubernetes:ns/edp1secrets`.
    fn describe(&self) -> String;
    /// Writes every key of `p` so that they switch together. `Ok(true)` when the content changed,
    /// `Ok(false)` when it already held exactly this (nothing written).
    async fn apply(&self, p: &Payload) -> Result<bool, TargetError>;
    /// Removes the synced secret `name` if it is ours (absent is fine; foreign is `NotOurs`).
    async fn remove(&self, name: &str) -> Result<(), TargetError>;
    /// The content a consumer sees now, or `None` when it is absent: to notice a deleted or
    /// changed target.
    async fn present(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, TargetError>;
    /// Starts telling `changed` whenever something may have changed or deleted this target's
    /// content outside the agent, so it is put back at once. By default nothing is followed
    /// (the engine checks on its regular rounds).
    fn follow_changes(&self, _changed: std::sync::Arc<tokio::sync::Notify>) {}
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every target shares, run against each one.
    use super::*;

    pub fn payload(name: &str, t: SecretType, pairs: &[(&str, &str)]) -> Payload {
        Payload {
            name: name.to_string(),
            secret_type: t,
            data: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Zeroizing::new(v.as_bytes().to_vec())))
                .collect(),
        }
    }

    fn plain(p: &Payload) -> BTreeMap<String, Vec<u8>> {
        p.data
            .iter()
            .map(|(k, v)| (k.clone(), v.to_vec()))
            .collect()
    }

    /// `name` must not exist in the target yet.
    pub async fn run(t: &dyn Target, name: &str) {
        assert!(!t.describe().is_empty());
        assert_eq!(t.present(name).await.unwrap(), None);
        t.remove(name)
            .await
            .expect("removing what is absent is fine");

        let v1 = payload(
            name,
            SecretType::BasicAuth,
            &[("username", "user-1"), ("password", "pass-1")],
        );
        assert!(t.apply(&v1).await.unwrap(), "first write changes");
        assert_eq!(t.present(name).await.unwrap(), Some(plain(&v1)));
        assert!(
            !t.apply(&v1).await.unwrap(),
            "same content: nothing written"
        );

        // A key added and one dropped in the same switch.
        let v2 = payload(
            name,
            SecretType::BasicAuth,
            &[
                ("username", "user-2"),
                ("password", "pass-2"),
                ("ca.crt", "-----BEGIN-----"),
            ],
        );
        assert!(t.apply(&v2).await.unwrap());
        assert_eq!(t.present(name).await.unwrap(), Some(plain(&v2)));
        let v3 = payload(
            name,
            SecretType::BasicAuth,
            &[("username", "user-3"), ("password", "pass-3")],
        );
        assert!(t.apply(&v3).await.unwrap());
        assert_eq!(t.present(name).await.unwrap(), Some(plain(&v3)));

        // Refused before anything is written, without the values in the message.
        let bad = payload(
            name,
            SecretType::BasicAuth,
            &[("username", "user-4-secret")],
        );
        let e = t.apply(&bad).await.unwrap_err();
        assert!(matches!(e, TargetError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("password") && !e.to_string().contains("user-4-secret"));
        let bad = payload(name, SecretType::Opaque, &[("..data", "x")]);
        assert!(matches!(
            t.apply(&bad).await.unwrap_err(),
            TargetError::Invalid(_)
        ));
        let bad = payload("Not_A_Name", SecretType::Opaque, &[("k", "x")]);
        assert!(matches!(
            t.apply(&bad).await.unwrap_err(),
            TargetError::Invalid(_)
        ));
        assert_eq!(t.present(name).await.unwrap(), Some(plain(&v3)));

        t.remove(name).await.unwrap();
        assert_eq!(t.present(name).await.unwrap(), None);
        assert!(t.apply(&v1).await.unwrap(), "written again after removal");
        t.remove(name).await.unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_1123_subdomains() {
        for ok in ["a", "edp1secrets", "db-creds.v2", "0", &"a".repeat(253)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "A",
            "a_b",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a/b",
            "a b",
            "é",
            &"a".repeat(254),
        ] {
            let e = validate_name(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(validate_name("Bad").unwrap_err().contains("DNS-1123"));
    }

    #[test]
    fn keys_follow_kubernetes_data_keys_and_reserve_dot_dot() {
        for ok in [
            "username",
            "tls.crt",
            ".hidden",
            "a..b",
            "A_B-c.d",
            &"k".repeat(253),
        ] {
            assert_eq!(validate_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "..data",
            "..data_tmp",
            "...",
            "a/b",
            "/etc",
            "a b",
            "ключ",
            &"k".repeat(254),
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert!(validate_key("..data").unwrap_err().contains("reserved"));
    }

    #[test]
    fn basic_auth_needs_username_and_password() {
        let p = contract::payload("x", SecretType::BasicAuth, &[("username", "u")]);
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("missing: password"), "{e}");
        let p = contract::payload(
            "x",
            SecretType::BasicAuth,
            &[("username", "u"), ("password", "p")],
        );
        assert_eq!(p.validate(), Ok(()));
        let empty = contract::payload("x", SecretType::Opaque, &[]);
        assert!(empty.validate().is_err());
    }

    /// Each type against Kubernetes' `ValidateSecret` (pkg/apis/core/validation/validation.go):
    /// what it requires is refused when missing, with the rule named and no value shown.
    #[test]
    fn every_type_follows_kubernetes_validate_secret() {
        let check = |t: SecretType, pairs: &[(&str, &str)]| {
            contract::payload("x", t, pairs)
                .validate()
                .map_err(|e| e.to_string())
        };
        let ok: [(SecretType, &[(&str, &str)]); 5] = [
            (SecretType::Opaque, &[("anything", "")]),
            (
                SecretType::BasicAuth,
                &[("username", "u"), ("password", "")],
            ),
            (
                SecretType::Tls,
                &[("tls.crt", "c"), ("tls.key", ""), ("ca.crt", "a")],
            ),
            (
                SecretType::SshAuth,
                &[("ssh-privatekey", "k"), ("known_hosts", "")],
            ),
            (
                SecretType::DockerConfigJson,
                &[(".dockerconfigjson", r#"{"auths": {}}"#)],
            ),
        ];
        for (t, pairs) in ok {
            assert_eq!(check(t, pairs), Ok(()), "{t}");
            // Every required key is required.
            for k in t.required_keys() {
                let without: Vec<(&str, &str)> =
                    pairs.iter().copied().filter(|(x, _)| x != k).collect();
                if without.is_empty() {
                    continue; // no keys at all is refused anyway
                }
                let e = check(t, &without).unwrap_err();
                assert!(
                    e.contains(&format!("missing: {k}")) && e.contains("ValidateSecret"),
                    "{t} {k}: {e}"
                );
            }
        }
        assert_eq!(SecretType::ALL.len(), ok.len(), "every type is covered");
        // Values: ssh-privatekey must not be empty; .dockerconfigjson must be a JSON object
        // (or null, as Go's json.Unmarshal into a map takes it); the error never shows it.
        let e = check(SecretType::SshAuth, &[("ssh-privatekey", "")]).unwrap_err();
        assert!(e.contains("non-empty ssh-privatekey"), "{e}");
        for bad in ["hunter2", "[1]", "\"s\"", "{", ""] {
            let e = check(SecretType::DockerConfigJson, &[(".dockerconfigjson", bad)]).unwrap_err();
            assert!(e.contains("not a JSON object"), "{bad}: {e}");
            assert!(bad.is_empty() || !e.contains(bad) || bad == "{", "{e}");
        }
        assert_eq!(
            check(
                SecretType::DockerConfigJson,
                &[(".dockerconfigjson", "null")]
            ),
            Ok(())
        );
        // The values together at most MaxSecretSize (1 MiB); keys are not counted.
        let half = "v".repeat(MAX_SECRET_SIZE / 2);
        assert_eq!(
            check(SecretType::Opaque, &[("a", &half), ("b", &half)]),
            Ok(())
        );
        let e = check(
            SecretType::Opaque,
            &[("a", &half), ("b", &half), ("c", "!")],
        )
        .unwrap_err();
        assert!(
            e.contains("at most 1048576") && e.contains("MaxSecretSize"),
            "{e}"
        );
        // Keys by IsConfigMapKey, names by IsDNS1123Subdomain (tested above).
        assert!(
            check(SecretType::Opaque, &[("a b", "v")])
                .unwrap_err()
                .contains("letters, digits")
        );
        // The key rules alone decide at create time (no values yet).
        assert!(
            SecretType::Tls
                .check_keys(["tls.crt"])
                .unwrap_err()
                .contains("missing: tls.key")
        );
        assert_eq!(SecretType::Tls.check_keys(["tls.key", "tls.crt"]), Ok(()));
    }

    #[test]
    fn the_type_serializes_as_kubernetes_names_it() {
        assert_eq!(
            serde_json::to_string(&SecretType::BasicAuth).unwrap(),
            "\"kubernetes.io/basic-auth\""
        );
        assert_eq!(
            serde_json::from_str::<SecretType>("\"Opaque\"").unwrap(),
            SecretType::Opaque
        );
        assert!(
            serde_json::from_str::<SecretType>("\"kubernetes.io/service-account-token\"").is_err()
        );
        for t in SecretType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    #[test]
    fn debug_and_hash_never_show_values() {
        let p = contract::payload("x", SecretType::Opaque, &[("k", "hunter2")]);
        assert!(!format!("{p:?}").contains("hunter2"));
        let h = content_hash(&p.data);
        assert!(h.starts_with("sha256:") && h.len() == 7 + 64);
        let q = contract::payload("x", SecretType::Opaque, &[("kh", "unter2")]);
        assert_ne!(h, content_hash(&q.data), "key boundaries count");
    }
}
