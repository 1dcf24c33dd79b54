//! TEMPORARY contract stub (replaced by the targets branch at merge).
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub enum SecretType {
    #[default]
    Opaque,
    #[serde(rename = "kubernetes.io/basic-auth")]
    BasicAuth,
}

pub struct Payload {
    pub name: String,
    pub secret_type: SecretType,
    pub data: BTreeMap<String, zeroize::Zeroizing<Vec<u8>>>,
}

pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("bad name".into());
    }
    Ok(())
}
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.starts_with("..") {
        return Err("bad key".into());
    }
    Ok(())
}

#[derive(Debug)]
pub enum TargetError {
    NotOurs(String),
    Invalid(String),
    Io(String),
    Api(String),
}
impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[async_trait::async_trait]
pub trait Target: Send + Sync {
    fn describe(&self) -> String;
    async fn apply(&self, p: &Payload) -> Result<bool, TargetError>;
    async fn remove(&self, name: &str) -> Result<(), TargetError>;
    async fn present(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, TargetError>;
}

pub struct FileTarget;
impl FileTarget {
    pub fn new(_root: std::path::PathBuf, _o: FileOptions) -> Result<FileTarget, TargetError> {
        Ok(FileTarget)
    }
}
#[derive(Default)]
pub struct FileOptions;
#[async_trait::async_trait]
impl Target for FileTarget {
    fn describe(&self) -> String {
        String::new()
    }
    async fn apply(&self, _p: &Payload) -> Result<bool, TargetError> {
        Ok(true)
    }
    async fn remove(&self, _name: &str) -> Result<(), TargetError> {
        Ok(())
    }
    async fn present(&self, _name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, TargetError> {
        Ok(None)
    }
}
pub mod kubernetes {
    pub struct KubernetesTarget;
    impl KubernetesTarget {
        pub fn from_env(_ns: &str) -> Result<super::FileTarget, super::TargetError> {
            Ok(super::FileTarget)
        }
    }
}
