//! The device's state at rest: one JSON envelope whose payload is sealed with XChaCha20-Poly1305
//! under a data key, itself wrapped by the device key file (`device.key`, 32 random bytes, mode
//! 0600). Nothing in the data dir but that key file holds a secret in the clear: the private
//! key, the CIK, the recovery key and the BMC password live only inside the sealed payload.
//!
//! Writers. The data dir is shared by `strongbox agent run` and the one-shot commands
//! (`agent activate | sync-secrets | receive`), possibly at the same time, so:
//! - `state.json` (the [`DeviceState`]) is changed only by [`StateDir::update`]: under an
//!   exclusive `flock` on `state.lock`, re-read from disk, changed, written back. No process
//!   writes a copy it read earlier, so no change made by another one is lost (the CIK-channel
//!   replay record above all). Activation holds the same lock from its check to its write.
//! - Every file is replaced atomically ([`write_atomically`]: temp file, fsync, rename, fsync of
//!   the dir), so a crash leaves the old or the new file; the lock is released by the kernel
//!   when its holder dies.
//! - `agent run` holds `run.lock` for its life ([`RunLock`]): a second agent on the same data
//!   dir is refused, which makes it the single writer of what only it writes: `agent.json`
//!   (its URL and pid), `api.token`, `edge.json` (changed through its local API, which the
//!   `synced-secret`/`endpoint` commands call), `edge-audit.jsonl`, `edge-cache.sealed`,
//!   `identity-tokens.sealed` and the delivered files under `--secrets-dir`.
//! - `device.key` is created once, under the state lock, by whoever opens the dir first.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use strongbox_client::Error;
use strongbox_crypto::{Keyring, RootKey, SealedKey};
use zeroize::Zeroize;

pub const KEY_FILE: &str = "device.key";
pub const STATE_FILE: &str = "state.json";
/// Held (flock) by whoever reads, changes and writes a sealed file of the data dir.
pub const LOCK_FILE: &str = "state.lock";
/// Held (flock) by `strongbox agent run` for as long as it runs.
pub const RUN_LOCK_FILE: &str = "run.lock";
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
        // Two processes opening a new dir at once must not both create (or half-read) the key.
        let _held = lock_file(&dir.join(LOCK_FILE), Wait::Block)?;
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

    /// The data dir's state lock, held until the guard is dropped (waits for another holder).
    pub fn lock(&self) -> Result<StateLock, Error> {
        lock_file(&self.dir.join(LOCK_FILE), Wait::Block)
    }

    /// The one way to change a stored state: under the lock, re-read it, apply `change`, write
    /// it back; returns the state as written and what `change` returned. An error from `change`
    /// writes nothing.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut DeviceState) -> Result<R, Error>,
    ) -> Result<(DeviceState, R), Error> {
        let held = self.lock()?;
        let mut st = self.load()?.ok_or_else(|| {
            Error::Config(format!("{} holds no activated device", self.dir.display()))
        })?;
        let r = change(&mut st)?;
        self.save(&held, &st)?;
        Ok((st, r))
    }

    /// Writes the state sealed, atomically (temp file, fsync, rename), mode 0600; only with
    /// the state lock held (see [`StateDir::update`]).
    pub fn save(&self, _held: &StateLock, st: &DeviceState) -> Result<(), Error> {
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

    /// Writes `value` as JSON sealed under `aad` to `file` of the data dir, atomically, under
    /// the state lock.
    pub fn write_sealed<T: Serialize>(
        &self,
        file: &str,
        aad: &[u8],
        value: &T,
    ) -> Result<(), Error> {
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(value).expect("value serializes"));
        let _held = self.lock()?;
        write_atomically(&self.dir.join(file), &self.seal(aad, &plain))
    }

    /// Read-modify-write of a sealed JSON file under the state lock; a missing or unreadable
    /// file starts from `T::default()` (for caches, which the vault can refill).
    pub fn update_sealed<T: Serialize + serde::de::DeserializeOwned + Default>(
        &self,
        file: &str,
        aad: &[u8],
        change: impl FnOnce(&mut T),
    ) -> Result<(), Error> {
        let _held = self.lock()?;
        let mut value: T = self
            .read_sealed(file, aad)
            .ok()
            .flatten()
            .unwrap_or_default();
        change(&mut value);
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&value).expect("value serializes"));
        write_atomically(&self.dir.join(file), &self.seal(aad, &plain))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// An exclusive `flock` on a lock file of the data dir, released when dropped (or when the
/// process dies: a killed holder never leaves the dir locked).
#[must_use = "the lock is released when the guard is dropped"]
pub struct StateLock {
    _file: std::fs::File,
}

/// Held by `strongbox agent run` for its life: one agent per data dir.
pub type RunLock = StateLock;

enum Wait {
    Block,
    No,
}

fn lock_file(path: &Path, wait: Wait) -> Result<StateLock, Error> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let f = options.open(path).map_err(|e| config("opening", path, e))?;
    match wait {
        Wait::Block => f.lock().map_err(|e| config("locking", path, e))?,
        Wait::No => f.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => Error::Config(format!(
                "another `strongbox agent run` uses the data dir {} (it holds {}); stop it first",
                path.parent().unwrap_or(path).display(),
                path.display()
            )),
            std::fs::TryLockError::Error(e) => config("locking", path, e),
        })?,
    }
    Ok(StateLock { _file: f })
}

/// Takes the data dir's run lock, or says that another agent runs on it.
pub fn run_lock(dir: &Path) -> Result<RunLock, Error> {
    std::fs::create_dir_all(dir).map_err(|e| config("creating", dir, e))?;
    lock_file(&dir.join(RUN_LOCK_FILE), Wait::No)
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
    fn concurrent_writers_through_update_lose_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir.path()).unwrap();
        sd.save(&sd.lock().unwrap(), &sample()).unwrap();
        // Each thread is a separate writer (its own StateDir, as another process would be),
        // recording its own names while the others write the same file.
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let path = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let sd = StateDir::open(&path).unwrap();
                    for i in 0..25u64 {
                        sd.update(|st| {
                            st.envelope_seqs.insert(format!("t{t}-{i}"), i + 1);
                            Ok(())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st = sd.load().unwrap().unwrap();
        assert_eq!(st.envelope_seqs.len(), 100);
        assert_eq!(st.envelope_seqs["t3-24"], 25);
        // An update whose change fails writes nothing.
        let before = std::fs::read(dir.path().join(STATE_FILE)).unwrap();
        assert!(
            sd.update(|st| {
                st.envelope_seqs.clear();
                Err::<(), _>(Error::Config("no".into()))
            })
            .is_err()
        );
        assert_eq!(std::fs::read(dir.path().join(STATE_FILE)).unwrap(), before);
    }

    #[test]
    fn a_second_run_lock_on_one_data_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = run_lock(dir.path()).unwrap();
        let e = run_lock(dir.path()).err().unwrap().to_string();
        assert!(e.contains("another `strongbox agent run`"), "{e}");
        drop(first);
        let _again = run_lock(dir.path()).unwrap();
    }

    #[test]
    fn state_round_trips_sealed_and_fails_with_another_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir.path()).unwrap();
        assert!(sd.load().unwrap().is_none());
        sd.save(&sd.lock().unwrap(), &sample()).unwrap();
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
        sd.save(&sd.lock().unwrap(), &sample()).unwrap();
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
