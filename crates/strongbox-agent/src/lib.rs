//! `strongbox agent`: the edge device side of issue 4. The agent redeems an activation key once
//! (registering its own P-256 public key as its identity's credential), keeps its state sealed in
//! its data dir ([`state`]), gets vault tokens only by ES256 signed client assertion, and pushes
//! its device secrets (the CIK it read from the vault, a disk recovery key and a BMC password it
//! generated) with the Get/Set grant its identity holds. [`web`] serves the loopback page where
//! an activation key can be pasted.

pub mod cache;
pub mod edge;
pub mod local_api;
pub mod metrics;
pub mod msi;
pub mod state;
pub mod sync;
pub mod targets;
pub mod web;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use state::{DeviceState, StateDir};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strongbox_client::{Error, LocalhostResolver, http_error, secrets};
use strongbox_domain::devices::ActivationKey;

pub type Result<T> = std::result::Result<T, Error>;

/// Lifetime of a client assertion: short, it is used at once.
const ASSERTION_SECS: i64 = 300;

/// The device's secrets in the vault, as research §1.6 names their types.
pub fn disk_recovery_key_name(device: &str) -> String {
    strongbox_domain::devices::disk_recovery_key_name(device)
}
pub fn bmc_password_name(device: &str) -> String {
    strongbox_domain::devices::bmc_password_name(device)
}

fn now() -> i64 {
    use strongbox_domain::clock::{Clock, SystemClock};
    SystemClock.now()
}

fn now_ms() -> i64 {
    use strongbox_domain::clock::{Clock, SystemClock};
    SystemClock.now_ms()
}

/// A BitLocker-style recovery key: eight groups of six digits, each a multiple of 11.
pub fn new_disk_recovery_key() -> String {
    let r = strongbox_crypto::random_bytes::<16>();
    r.chunks(2)
        .map(|c| format!("{:06}", u32::from(u16::from_be_bytes([c[0], c[1]])) * 11))
        .collect::<Vec<_>>()
        .join("-")
}

/// A 24-character BMC password with upper and lower case letters, digits and symbols.
pub fn new_bmc_password() -> String {
    const SETS: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        b"!#%+-.:=?@_~",
    ];
    let all: Vec<u8> = SETS.concat();
    loop {
        // 256 is not a multiple of the alphabet size: reject the biased top bytes.
        let limit = 256 - 256 % all.len();
        let pw: String = strongbox_crypto::random_bytes::<64>()
            .iter()
            .filter(|b| usize::from(**b) < limit)
            .take(24)
            .map(|b| all[usize::from(*b) % all.len()] as char)
            .collect();
        if pw.len() == 24 && SETS.iter().all(|s| pw.bytes().any(|c| s.contains(&c))) {
            return pw;
        }
    }
}

/// An HTTPS client trusting `ca_pem` (plus the system roots), resolving `*.localhost` locally.
pub fn http_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .dns_resolver(Arc::new(LocalhostResolver))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("strongbox-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| Error::Config(format!("the server CA certificate: {e}")))?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| Error::Transport(e.to_string()))
}

async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Option<Value>)> {
    let resp = req.send().await.map_err(|e| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        Error::Transport(text)
    })?;
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.ok();
    Ok((status, body))
}

fn field(body: &Value, name: &str) -> Result<String> {
    body[name]
        .as_str()
        .map(String::from)
        .ok_or_else(|| Error::Decode(format!("the activation response has no {name}")))
}

/// Redeems `key_text` once and stores the device's sealed state in `data_dir`; then pushes the
/// device secrets. A data dir that is already activated is refused (activate a fresh one).
pub async fn activate(data_dir: &Path, key_text: &str, server_ca: Option<&[u8]>) -> Result<Agent> {
    // A typo is caught here, before any network call.
    let key = ActivationKey::parse(key_text).map_err(|m| Error::Http {
        status: 400,
        code: "InvalidActivationKey".into(),
        message: m.into(),
    })?;
    let dir = StateDir::open(data_dir)?;
    // Held from the check to the write: two activations of one dir cannot both pass the check.
    let held = dir.lock()?;
    if let Some(st) = dir.load()? {
        return Err(Error::Http {
            status: 409,
            code: "DeviceAlreadyActivated".into(),
            message: format!(
                "this data dir already holds device {} (activated); use a new data dir to activate again",
                st.device_name
            ),
        });
    }
    let http = http_client(server_ca)?;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| Error::Config("generating the device key failed".into()))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| Error::Config("generating the device key failed".into()))?;
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])});
    let (status, body) = send(
        http.post(&key.activation_endpoint)
            .json(&json!({"activationKey": key_text.trim(), "publicKey": jwk})),
    )
    .await?;
    let body = match (status, body) {
        (200, Some(b)) => b,
        (s, b) => return Err(http_error(s, b.as_ref())),
    };
    let resource_id = field(&body, "resourceId")?;
    let st = DeviceState {
        device_id: field(&body, "deviceId")?,
        device_name: resource_id
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        resource_id,
        tenant_id: field(&body, "tenantId")?,
        client_id: field(&body, "clientId")?,
        principal_id: field(&body, "principalId")?,
        key_id: field(&body, "keyId")?,
        token_endpoint: field(&body, "tokenEndpoint")?,
        vault_scope: field(&body, "vaultScope")?,
        vault_name: field(&body, "vaultName")?,
        vault_uri: field(&body, "vaultUri")?,
        cik_name: field(&body, "channelIntegrityKeyName")?,
        ca_pem: field(&body, "caCertificate")?,
        private_key: hex::encode(pkcs8.as_ref()),
        cik: None,
        disk_recovery_key: new_disk_recovery_key(),
        bmc_password: new_bmc_password(),
        activated_at: now(),
        last_sync_at: None,
        envelope_seqs: Default::default(),
    };
    // The key is spent: keep the state before anything else can fail.
    dir.save(&held, &st)?;
    drop(held);
    Agent::with(dir, st)
}

/// What a sync did to one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The vault held the device's value.
    Unchanged,
    /// The device read it from the vault for the first time (the CIK).
    Read,
    /// It was missing from the vault and was written again.
    Restored,
    /// The vault held another value; the device's value was written.
    Updated,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Unchanged => "in sync",
            Outcome::Read => "read",
            Outcome::Restored => "restored",
            Outcome::Updated => "updated",
        })
    }
}

#[derive(Debug, Clone)]
pub struct SyncReport {
    pub vault: String,
    pub at: i64,
    pub secrets: Vec<(String, Outcome)>,
    /// The sync answered an administrator's request (`strongbox device sync-secrets`).
    pub answered: bool,
}

impl SyncReport {
    pub fn changed(&self) -> bool {
        self.secrets
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Restored | Outcome::Updated))
    }
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = time::OffsetDateTime::from_unix_timestamp(self.at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        write!(f, "device secrets synced to vault {} at {at}:", self.vault)?;
        for (name, o) in &self.secrets {
            write!(f, " {name} ({o})")?;
        }
        if self.answered {
            write!(f, "; reported to the service as requested")?;
        }
        Ok(())
    }
}

/// The version segment of a secret bundle's id.
fn version_of(b: &Value) -> String {
    b["id"]
        .as_str()
        .and_then(|id| id.rsplit('/').next())
        .unwrap_or_default()
        .to_string()
}

/// A numeric claim of a JWT read without verifying it: only to echo the token service's own
/// `exp`/`nbf` back to a workload (the vault verifies the token).
pub fn unverified_claim(jwt: &str, claim: &str) -> Option<i64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = B64.decode(payload).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?[claim].as_i64()
}

/// An activated device.
pub struct Agent {
    dir: StateDir,
    state: DeviceState,
    http: reqwest::Client,
}

impl Agent {
    fn with(dir: StateDir, state: DeviceState) -> Result<Agent> {
        let http = http_client(Some(state.ca_pem.as_bytes()))?;
        Ok(Agent { dir, state, http })
    }

    /// Opens an activated data dir.
    pub fn open(data_dir: &Path) -> Result<Agent> {
        let dir = StateDir::open(data_dir)?;
        let state = dir.load()?.ok_or_else(|| {
            Error::Config(format!(
                "{} holds no activated device; run `strongbox agent activate` first",
                data_dir.display()
            ))
        })?;
        Agent::with(dir, state)
    }

    pub fn state(&self) -> &DeviceState {
        &self.state
    }

    /// Applies `change` to the stored state (re-read under the data dir's lock, so a change
    /// another process made meanwhile is kept) and takes the result as this agent's view.
    fn update<R>(&mut self, change: impl FnOnce(&mut DeviceState) -> Result<R>) -> Result<R> {
        let (st, r) = self.dir.update(change)?;
        self.state = st;
        Ok(r)
    }

    /// Takes the stored state as this agent's view: a long-running agent sees what the
    /// one-shot commands changed (the vault it moved to, the CIK it read).
    fn reload(&mut self) -> Result<()> {
        if let Some(st) = self.dir.load()? {
            self.state = st;
        }
        Ok(())
    }

    /// A vault token by ES256 client assertion with the device's private key.
    pub async fn token(&self) -> Result<String> {
        Ok(self.token_for(&self.state.vault_scope).await?.0)
    }

    /// A token of the device's identity for `scope` (`<resource>/.default`) by ES256 client
    /// assertion with the device's private key, and its expiry (the token's `exp`, Unix
    /// seconds): what the local managed-identity endpoint ([`msi`]) hands to workloads.
    pub async fn token_for(&self, scope: &str) -> Result<(String, i64)> {
        let st = &self.state;
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(st.key_id.clone());
        let t = now();
        let claims = json!({"iss": st.client_id, "sub": st.client_id, "aud": st.token_endpoint,
            "nbf": t - 30, "exp": t + ASSERTION_SECS, "jti": strongbox_crypto::random_hex_id()});
        let der = zeroize::Zeroizing::new(
            hex::decode(&st.private_key)
                .map_err(|_| Error::Config("the stored device key is damaged".into()))?,
        );
        let assertion =
            jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_ec_der(&der))
                .map_err(|e| Error::Config(format!("signing the client assertion: {e}")))?;
        let (status, body) = send(self.http.post(&st.token_endpoint).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", st.client_id.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
            ("scope", scope),
        ]))
        .await?;
        match (status, body) {
            (200, Some(b)) if b["access_token"].is_string() => {
                let token = b["access_token"].as_str().unwrap_or_default().to_string();
                let exp = unverified_claim(&token, "exp")
                    .unwrap_or_else(|| t + b["expires_in"].as_i64().unwrap_or(0));
                Ok((token, exp))
            }
            (s, b) => {
                let b = b.unwrap_or(Value::Null);
                Err(Error::Auth {
                    code: b["error"].as_str().map_or(format!("HTTP{s}"), String::from),
                    message: b["error_description"]
                        .as_str()
                        .unwrap_or("the token service refused the device")
                        .to_string(),
                })
            }
        }
    }

    async fn call(
        &self,
        token: &str,
        call: strongbox_client::Call,
    ) -> Result<(u16, Option<Value>)> {
        let mut req = self.http.request(call.method, call.url).bearer_auth(token);
        if let Some(t) = call.timeout {
            // A long poll outlives the client's default timeout.
            req = req.timeout(t);
        }
        if let Some(b) = call.body {
            req = req.json(&b);
        }
        send(req).await
    }

    /// The vault's current value and version of `name`, or `None` when it is not there.
    async fn get(&self, token: &str, name: &str) -> Result<Option<(String, String)>> {
        match self
            .call(token, secrets::get(&self.state.vault_uri, name, None))
            .await?
        {
            (200, Some(b)) => Ok(b["value"].as_str().map(|v| (v.to_string(), version_of(&b)))),
            (404, _) => Ok(None),
            (s, b) => Err(http_error(s, b.as_ref())),
        }
    }

    async fn set(&self, token: &str, name: &str, value: &str, kind: &str) -> Result<String> {
        let mut tags = std::collections::BTreeMap::new();
        tags.insert("deviceId".to_string(), self.state.device_id.clone());
        tags.insert("secretType".to_string(), kind.to_string());
        let o = secrets::SetOptions {
            content_type: Some("text/plain".into()),
            tags: Some(tags),
            ..Default::default()
        };
        match self
            .call(token, secrets::set(&self.state.vault_uri, name, value, &o))
            .await?
        {
            (200, Some(b)) => Ok(version_of(&b)),
            (200, None) => Ok(String::new()),
            (409, b) => {
                let e = http_error(409, b.as_ref());
                Err(Error::Http {
                    status: 409,
                    code: e.code().to_string(),
                    message: format!(
                        "the secret {name} is deleted but recoverable in vault {}: someone with recover permission must recover (or purge) it, then sync again",
                        self.state.vault_name
                    ),
                })
            }
            (s, b) => Err(http_error(s, b.as_ref())),
        }
    }

    /// Asks the service (as the device itself) which vault is the device's now: a recovery
    /// after a purge moves the device to a new vault, and the secrets must go there.
    fn device_url(&self, what: &str) -> Result<String> {
        let st = &self.state;
        let suffix = format!("/{}/oauth2/v2.0/token", st.tenant_id);
        let authority = st
            .token_endpoint
            .strip_suffix(&suffix)
            .ok_or_else(|| Error::Config("the stored token endpoint is not recognised".into()))?;
        Ok(format!("{authority}/devices/{}/{what}", st.device_id))
    }

    /// Refreshes the device's vault; returns the id of a sync an administrator requested.
    async fn refresh_vault(&mut self, token: &str) -> Result<Option<String>> {
        let url = self.device_url("keyVault")?;
        let st = &self.state;
        let (status, body) = send(self.http.get(url).bearer_auth(token)).await?;
        let body = match (status, body) {
            (200, Some(b)) => b,
            (s, b) => return Err(http_error(s, b.as_ref())),
        };
        let name = body["vaultName"].as_str().unwrap_or_default().to_string();
        let request = body["secretsSyncRequest"]["id"].as_str().map(String::from);
        match body["status"].as_str() {
            Some("Deleted") => {
                return Err(Error::Http {
                    status: 409,
                    code: "KeyVaultDeleted".into(),
                    message: format!(
                        "the device's vault {name} is deleted: an administrator must run `strongbox device recover-vault --name {}` first",
                        st.device_name
                    ),
                });
            }
            Some("NotConfigured") | None => return Ok(request),
            Some(_) => {}
        }
        let uri = body["vaultUri"].as_str().unwrap_or_default().to_string();
        if !uri.is_empty() && uri != self.state.vault_uri {
            self.update(|st| {
                st.vault_name = name;
                st.vault_uri = uri;
                Ok(())
            })?;
        }
        Ok(request)
    }

    /// Pushes the device secrets: each one missing from the vault, or holding another value, is
    /// written with the device's value. Uses only Get and Set.
    pub async fn sync(&mut self) -> Result<SyncReport> {
        self.reload()?;
        let token = self.token().await?;
        let request = self.refresh_vault(&token).await?;
        let mut report = Vec::new();
        let cik_name = self.state.cik_name.clone();
        let in_vault = self.get(&token, &cik_name).await?;
        let outcome = match (&self.state.cik, in_vault) {
            (None, Some((v, version))) => {
                self.update(|st| {
                    st.cik.get_or_insert(v);
                    Ok(())
                })?;
                (Outcome::Read, version)
            }
            (None, None) => {
                return Err(Error::Http {
                    status: 404,
                    code: "SecretNotFound".into(),
                    message: format!(
                        "the Channel Integrity Key {cik_name} is not in vault {} and this device never read it: recover the secret in the vault",
                        self.state.vault_name
                    ),
                });
            }
            (Some(mine), theirs) => {
                let mine = mine.clone();
                self.push(&token, &cik_name, &mine, theirs, "ChannelIntegrityKey")
                    .await?
            }
        };
        report.push((cik_name, outcome));
        let device = self.state.device_name.clone();
        for (name, value, kind) in [
            (
                disk_recovery_key_name(&device),
                self.state.disk_recovery_key.clone(),
                "SystemVolumeBitLockerRecoveryKey",
            ),
            (
                bmc_password_name(&device),
                self.state.bmc_password.clone(),
                "BMCDefaultUserPassword",
            ),
        ] {
            let theirs = self.get(&token, &name).await?;
            let o = self.push(&token, &name, &value, theirs, kind).await?;
            report.push((name, o));
        }
        let at = now();
        self.update(|st| {
            st.last_sync_at = Some(at);
            Ok(())
        })?;
        // Every sync is reported (not only a requested one): the service compares the versions
        // with the vault's to tell when someone changed a device secret behind its back.
        let answered = self
            .report_synced(&token, request.as_deref(), &report)
            .await?;
        Ok(SyncReport {
            vault: self.state.vault_name.clone(),
            at,
            secrets: report.into_iter().map(|(n, (o, _))| (n, o)).collect(),
            answered,
        })
    }

    /// Reports the versions now in the vault, answering the sync an administrator requested
    /// if there is one. `true` when it answered that request; `false` when there was none or it
    /// was no longer pending (timed out, replaced), in which case the report goes without it.
    async fn report_synced(
        &self,
        token: &str,
        request: Option<&str>,
        report: &[(String, (Outcome, String))],
    ) -> Result<bool> {
        let secrets: Vec<Value> = report
            .iter()
            .map(|(n, (o, v))| json!({"name": n, "version": v, "outcome": o.to_string()}))
            .collect();
        let url = self.device_url("secretsSynced")?;
        let post = |request: Option<&str>| {
            let mut body = json!({"secrets": secrets});
            if let Some(id) = request {
                body["requestId"] = json!(id);
            }
            send(self.http.post(&url).bearer_auth(token).json(&body))
        };
        let (status, body) = post(request).await?;
        match (status, request) {
            (200, Some(_)) => Ok(true),
            (200, None) => Ok(false),
            (409, Some(_)) => match post(None).await? {
                (200, _) => Ok(false),
                (s, b) => Err(http_error(s, b.as_ref())),
            },
            (s, _) => Err(http_error(s, body.as_ref())),
        }
    }

    /// Reads the CIK-channel envelope `name` from the device's vault and opens it with the
    /// device's CIK copy: its version, content type (binary values) and exact bytes. A changed
    /// byte, an envelope sealed under another CIK, or one older than an envelope already opened
    /// under `name` (a replay) is refused; the highest sequence opened per name is kept in the
    /// sealed state.
    pub async fn receive(&mut self, name: &str) -> Result<strongbox_crypto::cik::Opened> {
        let token = self.token().await?;
        self.refresh_vault(&token).await?;
        let b = match self
            .call(&token, secrets::get(&self.state.vault_uri, name, None))
            .await?
        {
            (200, Some(b)) => b,
            (s, b) => return Err(http_error(s, b.as_ref())),
        };
        let refused = |m: String| Error::Http {
            status: 422,
            code: "EnvelopeRefused".into(),
            message: m,
        };
        if b["contentType"].as_str() != Some(strongbox_crypto::cik::CONTENT_TYPE) {
            return Err(refused(format!(
                "the secret {name} is not a CIK-channel envelope (content type {})",
                strongbox_crypto::cik::CONTENT_TYPE
            )));
        }
        let cik = self.state.cik.as_deref().ok_or_else(|| {
            Error::Config(
                "this device has not read its CIK yet: run `strongbox agent sync-secrets`".into(),
            )
        })?;
        let cik = zeroize::Zeroizing::new(
            B64.decode(cik)
                .map_err(|_| Error::Config("the stored CIK is damaged".into()))?,
        );
        let envelope = b["value"].as_str().unwrap_or_default();
        let opened = strongbox_crypto::cik::open(&cik, &self.state.device_id, name, envelope)
            .map_err(|_| {
                refused(format!(
                    "the envelope {name} did not open with this device's CIK: it was changed after sealing, or sealed for another device; nothing was written"
                ))
            })?;
        // Checked and recorded in one step under the data dir's lock, against the record on
        // disk: another receive or a running agent cannot slip an older envelope in between,
        // nor write back a record without this one. Vault names are case-insensitive: so is
        // the replay check.
        let key = name.to_ascii_lowercase();
        self.update(|st| {
            let seen = st.envelope_seqs.get(&key).copied().unwrap_or(0);
            if opened.seq < seen {
                return Err(refused(format!(
                    "the envelope {name} (sequence {}) is older than one this device already opened under that name (sequence {seen}): an old envelope was put back (a replay); nothing was written. Send the current value again with `strongbox device send-secret`",
                    opened.seq
                )));
            }
            st.envelope_seqs.insert(key, opened.seq);
            Ok(())
        })?;
        Ok(opened)
    }

    async fn push(
        &self,
        token: &str,
        name: &str,
        mine: &str,
        theirs: Option<(String, String)>,
        kind: &str,
    ) -> Result<(Outcome, String)> {
        let outcome = match theirs {
            None => Outcome::Restored,
            Some((v, version))
                if strongbox_crypto::constant_time_eq(v.as_bytes(), mine.as_bytes()) =>
            {
                return Ok((Outcome::Unchanged, version));
            }
            Some(_) => Outcome::Updated,
        };
        let version = self.set(token, name, mine, kind).await?;
        Ok((outcome, version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_their_formats() {
        let k = new_disk_recovery_key();
        let groups: Vec<&str> = k.split('-').collect();
        assert_eq!(groups.len(), 8, "{k}");
        for g in groups {
            assert_eq!(g.len(), 6);
            assert_eq!(g.parse::<u32>().unwrap() % 11, 0);
        }
        assert_ne!(k, new_disk_recovery_key());
        let p = new_bmc_password();
        assert_eq!(p.len(), 24);
        assert!(p.bytes().any(|c| c.is_ascii_digit()) && p.bytes().any(|c| c.is_ascii_uppercase()));
        assert_ne!(p, new_bmc_password());
    }

    #[tokio::test]
    async fn a_mistyped_key_is_refused_before_any_network_call() {
        let dir = tempfile::tempdir().unwrap();
        let e = activate(dir.path(), "eyJ2IjoxfQ#0000000000000000", None)
            .await
            .err()
            .unwrap();
        assert_eq!(e.code(), "InvalidActivationKey");
        assert!(!dir.path().join(state::STATE_FILE).exists());
    }
}
