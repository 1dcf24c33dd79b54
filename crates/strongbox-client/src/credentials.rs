//! Who the client is and where the server is: the `dev-credentials.json` shape the server writes
//! in dev mode, or the same facts from the environment. The client secret lives in a
//! `SecretString` (zeroized, redacted in `Debug`) and never travels in argv.

use crate::Error;
use secrecy::SecretString;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
pub struct Credentials {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// `https://host:port` of the token service, which also serves the management API.
    pub authority: String,
    #[serde(default)]
    pub subscription_id: Option<String>,
    #[serde(default)]
    pub resource_group: Option<String>,
    /// A vault URL (`https://{vault}.{suffix}:{port}`); the other vaults' URLs follow from it.
    #[serde(default)]
    pub vault_url: Option<String>,
    /// PEM file of the CA that signed the server's certificate (if not a public one).
    #[serde(default)]
    pub ca_cert: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("authority", &self.authority)
            .field("subscription_id", &self.subscription_id)
            .field("vault_url", &self.vault_url)
            .finish()
    }
}

/// Environment variables read by [`Credentials::from_env`].
pub const ENV_FILE: &str = "STRONGBOX_CREDENTIALS";
pub const ENV_TENANT: &str = "AZURE_TENANT_ID";
pub const ENV_CLIENT: &str = "AZURE_CLIENT_ID";
pub const ENV_SECRET: &str = "AZURE_CLIENT_SECRET";
pub const ENV_AUTHORITY: &str = "STRONGBOX_AUTHORITY";
pub const ENV_SUBSCRIPTION: &str = "STRONGBOX_SUBSCRIPTION_ID";
pub const ENV_RESOURCE_GROUP: &str = "STRONGBOX_RESOURCE_GROUP";
pub const ENV_VAULT_URL: &str = "STRONGBOX_VAULT_URL";
pub const ENV_CA_CERT: &str = "STRONGBOX_CA_CERT";

impl Credentials {
    /// Reads a credentials file (the `dev-credentials.json` shape). A relative `ca_cert` is
    /// taken relative to the file.
    pub fn from_file(path: &Path) -> Result<Credentials, Error> {
        let text = std::fs::read(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        let mut c: Credentials = serde_json::from_slice(&text).map_err(|e| {
            Error::Config(format!(
                "{} is not a credentials file (line {}, column {}: {})",
                path.display(),
                e.line(),
                e.column(),
                match e.classify() {
                    serde_json::error::Category::Data => "a field is missing or has the wrong type",
                    _ => "not valid JSON",
                }
            ))
        })?;
        if let Some(ca) = &c.ca_cert
            && Path::new(ca).is_relative()
            && let Some(dir) = path.parent()
        {
            c.ca_cert = Some(dir.join(ca).display().to_string());
        }
        Ok(c)
    }

    /// From the environment: `STRONGBOX_CREDENTIALS` (a file), else `AZURE_TENANT_ID`,
    /// `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` and `STRONGBOX_AUTHORITY` (plus optional
    /// `STRONGBOX_SUBSCRIPTION_ID`, `STRONGBOX_RESOURCE_GROUP`, `STRONGBOX_VAULT_URL`,
    /// `STRONGBOX_CA_CERT`). `None` when neither is set.
    pub fn from_env() -> Result<Option<Credentials>, Error> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(file) = var(ENV_FILE) {
            return Credentials::from_file(&PathBuf::from(file)).map(Some);
        }
        let (Some(tenant_id), Some(client_id), Some(secret), Some(authority)) = (
            var(ENV_TENANT),
            var(ENV_CLIENT),
            var(ENV_SECRET),
            var(ENV_AUTHORITY),
        ) else {
            return Ok(None);
        };
        Ok(Some(Credentials {
            tenant_id,
            client_id,
            client_secret: SecretString::from(secret),
            authority,
            subscription_id: var(ENV_SUBSCRIPTION),
            resource_group: var(ENV_RESOURCE_GROUP),
            vault_url: var(ENV_VAULT_URL),
            ca_cert: var(ENV_CA_CERT),
        }))
    }

    pub fn subscription(&self) -> Result<&str, Error> {
        self.subscription_id
            .as_deref()
            .ok_or_else(|| Error::Config("the credentials name no subscription_id".into()))
    }

    /// The URL of a vault: `name` itself if it is a URL, else `https://{name}.{suffix}` with the
    /// suffix (and port) of the credentials' vault URL.
    pub fn vault_url(&self, name: &str) -> Result<String, Error> {
        if name.contains("://") {
            return Ok(name.trim_end_matches('/').to_string());
        }
        let (scheme, suffix) = self.vault_suffix()?;
        Ok(format!("{scheme}://{}.{suffix}", name.to_ascii_lowercase()))
    }

    /// The data-plane token audience: `https://{suffix}` (with the port, if any).
    pub fn vault_audience(&self) -> Result<String, Error> {
        let (scheme, suffix) = self.vault_suffix()?;
        Ok(format!("{scheme}://{suffix}"))
    }

    fn vault_suffix(&self) -> Result<(&str, &str), Error> {
        let url = self.vault_url.as_deref().ok_or_else(|| {
            Error::Config("the credentials name no vault_url to derive vault addresses from".into())
        })?;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::Config(format!("vault_url {url} is not a URL")))?;
        let rest = rest.trim_end_matches('/');
        let (_, suffix) = rest
            .split_once('.')
            .ok_or_else(|| Error::Config(format!("vault_url {url} has no vault name label")))?;
        Ok((scheme, suffix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn creds() -> Credentials {
        serde_json::from_str(
            r#"{"tenant_id":"t","subscription_id":"s","resource_group":"rg","client_id":"c",
            "client_secret":"hush","authority":"https://localhost:8443",
            "vault_url":"https://dev.vault.localhost:8443","ca_cert":"/x/ca.pem"}"#,
        )
        .unwrap()
    }

    #[test]
    fn vault_urls_and_audience_follow_the_dev_vault_url() {
        let c = creds();
        assert_eq!(
            c.vault_url("Prod").unwrap(),
            "https://prod.vault.localhost:8443"
        );
        assert_eq!(
            c.vault_url("https://x.example/").unwrap(),
            "https://x.example"
        );
        assert_eq!(c.vault_audience().unwrap(), "https://vault.localhost:8443");
        assert_eq!(c.client_secret.expose_secret(), "hush");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hush") && debug.contains("REDACTED"));
    }

    #[test]
    fn files_with_relative_ca_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(
            &path,
            r#"{"tenant_id":"t","client_id":"c","client_secret":"s","authority":"https://a","ca_cert":"tls/ca.pem"}"#,
        )
        .unwrap();
        let c = Credentials::from_file(&path).unwrap();
        assert_eq!(
            c.ca_cert.unwrap(),
            dir.path().join("tls/ca.pem").display().to_string()
        );
        std::fs::write(&path, r#"{"tenant_id":"t","client_secret":"TOPSECRET"}"#).unwrap();
        let e = Credentials::from_file(&path).unwrap_err().to_string();
        assert!(!e.contains("TOPSECRET"), "{e}");
    }
}
