//! The device's state at rest: one JSON envelope whose payload is sealed with XChaCha20-Poly1305
//! under a data key, itself wrapped by the device key file (`device.key`, 32 random bytes, mode
//! 0600). Nothing in the data dir but that key file holds a secret in the clear: the private
//! key, the CIK, the recovery key and the BMC password live only inside the sealed payload.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use strongbox_client::Error;
use strongbox_crypto::{Keyring, RootKey, SealedKey};
use zeroize::Zeroize;

pub const KEY_FILE: &str = "device.key";
pub const STATE_FILE: &str = "state.json";
/// Binds the sealed payload to its purpose: it does not open as anything else.
const AAD: &[u8] = b"strongbox-agent device state v1";

/// Everything the device keeps. `Debug` prints no secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceState {
    pub device_id: String,
    pub resource_id: String,
    pub device_name: String,
    pub tenant_id: String,
    pub client_id: String,
    pub principal_id: String,
    pub key_id: String,
    pub token_endpoint: String,
    pub vault_scope: String,
    pub vault_name: String,
    pub vault_uri: String,
    pub cik_name: String,
    pub ca_pem: String,
    /// PKCS#8 DER of the device's P-256 private key, hex.
    pub private_key: String,
    /// The CIK as read from the vault after activation (the device's copy restores it).
    pub cik: Option<String>,
    pub disk_recovery_key: String,
    pub bmc_password: String,
    pub activated_at: i64,
    pub last_sync_at: Option<i64>,
    /// The highest CIK-channel envelope sequence opened, by lowercase secret name: an older
    /// envelope under that name is a replay and is refused.
    #[serde(default)]
    pub envelope_seqs: std::collections::BTreeMap<String, u64>,
}

impl std::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceState")
            .field("device_id", &self.device_id)
            .field("vault_name", &self.vault_name)
            .finish_non_exhaustive()
    }
}

impl Drop for DeviceState {
    fn drop(&mut self) {
        self.private_key.zeroize();
        self.cik.zeroize();
        self.disk_recovery_key.zeroize();
        self.bmc_password.zeroize();
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope {
    v: u32,
    data_key_id: u32,
    /// The data key wrapped under the device key file, hex.
    data_key: String,
    /// The sealed [`DeviceState`] JSON, hex.
    sealed: String,
}

/// The data dir: the key file and the sealed state.
pub struct StateDir {
    dir: PathBuf,
    keyring: Keyring,
    data_key: SealedKey,
}

fn config(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("{what} {}: {e}", path.display()))
}

impl StateDir {
    /// Opens (creating if needed) the data dir and its key file.
    pub fn open(dir: &Path) -> Result<StateDir, Error> {
        std::fs::create_dir_all(dir).map_err(|e| config("creating", dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| config("securing", dir, e))?;
        }
        let root = RootKey::load_or_create_file(&dir.join(KEY_FILE))
            .map_err(|e| Error::Config(e.to_string()))?;
        let path = dir.join(STATE_FILE);
        let data_key = match std::fs::read(&path) {
            Ok(bytes) => {
                let env: Envelope =
                    serde_json::from_slice(&bytes).map_err(|e| config("reading", &path, e))?;
                SealedKey {
                    id: env.data_key_id,
                    wrapped: hex::decode(env.data_key).map_err(|e| config("reading", &path, e))?,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Keyring::new_data_key(&root, 1),
            Err(e) => return Err(config("reading", &path, e)),
        };
        let keyring = Keyring::open(&root, std::slice::from_ref(&data_key)).map_err(|_| {
            Error::Config(format!(
                "{} does not open with {}: wrong or replaced key file",
                path.display(),
                KEY_FILE
            ))
        })?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
            keyring,
            data_key,
        })
    }

    /// The stored state, if the device was activated.
    pub fn load(&self) -> Result<Option<DeviceState>, Error> {
        let path = self.dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(config("reading", &path, e)),
        };
        let env: Envelope =
            serde_json::from_slice(&bytes).map_err(|e| config("reading", &path, e))?;
        let sealed = hex::decode(env.sealed).map_err(|e| config("reading", &path, e))?;
        let plain = self
            .keyring
            .open_sealed(AAD, &sealed)
            .map_err(|e| config("opening", &path, e))?;
        let st = serde_json::from_slice(&plain).map_err(|e| config("reading", &path, e))?;
        Ok(Some(st))
    }

    /// Writes the state sealed, atomically (temp file, fsync, rename), mode 0600.
    pub fn save(&self, st: &DeviceState) -> Result<(), Error> {
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(st).expect("state serializes"));
        let env = Envelope {
            v: 1,
            data_key_id: self.data_key.id,
            data_key: hex::encode(&self.data_key.wrapped),
            sealed: hex::encode(self.keyring.seal(AAD, &plain)),
        };
        write_atomically(
            &self.dir.join(STATE_FILE),
            &serde_json::to_vec_pretty(&env).expect("envelope serializes"),
        )
    }

    /// Seals `plain` under the device's data key, bound to `aad` (which file it is).
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.keyring.seal(aad, plain)
    }

    fn open_sealed(&self, aad: &[u8], sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        self.keyring
            .open_sealed(aad, sealed)
            .map_err(|e| Error::Config(format!("opening sealed data: {e}")))
    }

    /// Reads the JSON value sealed under `aad` in `file` of the data dir; `None` when the file
    /// does not exist. A file that does not open with this device's key is an error.
    pub fn read_sealed<T: serde::de::DeserializeOwned>(
        &self,
        file: &str,
        aad: &[u8],
    ) -> Result<Option<T>, Error> {
        let path = self.dir.join(file);
        let sealed = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(config("reading", &path, e)),
        };
        let plain = self.open_sealed(aad, &sealed).map_err(|_| {
            Error::Config(format!(
                "{} does not open with this device's key",
                path.display()
            ))
        })?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|e| config("reading", &path, e))
    }

    /// Writes `value` as JSON sealed under `aad` to `file` of the data dir, atomically.
    pub fn write_sealed<T: Serialize>(
        &self,
        file: &str,
        aad: &[u8],
        value: &T,
    ) -> Result<(), Error> {
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(value).expect("value serializes"));
        write_atomically(&self.dir.join(file), &self.seal(aad, &plain))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Replaces `path` with `bytes` atomically and durably: a 0600 temp file, fsync, rename, fsync
/// of the directory (so a power cut leaves the old or the new file, never an empty one).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(|e| config("writing", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| config("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| config("writing", path, e))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| config("syncing", parent, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DeviceState {
        DeviceState {
            device_id: "d".into(),
            resource_id: "/r".into(),
            device_name: "edge".into(),
            tenant_id: "t".into(),
            client_id: "c".into(),
            principal_id: "p".into(),
            key_id: "k".into(),
            token_endpoint: "https://x/token".into(),
            vault_scope: "s".into(),
            vault_name: "v".into(),
            vault_uri: "https://v".into(),
            cik_name: "cik".into(),
            ca_pem: "pem".into(),
            private_key: "00ff00ff-private".into(),
            cik: Some("cik-value-plain".into()),
            disk_recovery_key: "123456-disk-plain".into(),
            bmc_password: "bmc-password-plain".into(),
            activated_at: 1,
            last_sync_at: None,
            envelope_seqs: Default::default(),
        }
    }

    #[test]
    fn state_round_trips_sealed_and_fails_with_another_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir.path()).unwrap();
        assert!(sd.load().unwrap().is_none());
        sd.save(&sample()).unwrap();
        let back = StateDir::open(dir.path()).unwrap().load().unwrap().unwrap();
        assert_eq!(back.bmc_password, "bmc-password-plain");
        let raw = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        for plain in ["private", "cik-value", "disk-plain", "bmc-password"] {
            assert!(!raw.contains(plain), "{plain} on disk");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [KEY_FILE, STATE_FILE] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        // A replaced key file is refused clearly, not read as garbage.
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        assert!(StateDir::open(dir.path()).is_err());
        // A tampered payload does not open.
        let dir2 = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir2.path()).unwrap();
        sd.save(&sample()).unwrap();
        let mut env: Envelope =
            serde_json::from_slice(&std::fs::read(dir2.path().join(STATE_FILE)).unwrap()).unwrap();
        let mut s = hex::decode(&env.sealed).unwrap();
        let last = s.len() - 1;
        s[last] ^= 1;
        env.sealed = hex::encode(s);
        std::fs::write(
            dir2.path().join(STATE_FILE),
            serde_json::to_vec(&env).unwrap(),
        )
        .unwrap();
        assert!(sd.load().is_err());
    }
}
