use crate::{CryptoError, RootKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU32, Ordering};
use zeroize::Zeroizing;

/// Sealed format: version byte, key id (u32 BE), 24-byte nonce, ciphertext with tag.
const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 24;

/// A data key as stored: its id and its bytes sealed under the root's key-wrapping key.
#[derive(Debug, Clone)]
pub struct SealedKey {
    pub id: u32,
    pub wrapped: Vec<u8>,
}

/// What the root key protects: the key that wraps data keys and the MAC key. On a store that was
/// never rekeyed both are derived from the root; `rekey` stores them sealed under the new root
/// instead, so a new root never has to rewrap data keys and running servers (which hold these in
/// memory) keep unwrapping keys that later rotations add.
pub struct MasterKeys {
    kek: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKeys([REDACTED])")
    }
}

const MASTER_AAD: &[u8] = b"strongbox keyring master v1";

impl MasterKeys {
    /// `sealed`: the stored master (after a rekey); None: derived from the root (never rekeyed).
    pub fn unseal(root: &RootKey, sealed: Option<&[u8]>) -> Result<MasterKeys, CryptoError> {
        match sealed {
            None => Ok(MasterKeys {
                kek: root.derive("data-key-wrapping"),
                mac: root.derive("mac"),
            }),
            Some(s) => {
                let plain = open_with(&cipher(&root.derive("keyring-master")), MASTER_AAD, s)?;
                MasterKeys::from_bytes(&plain)
            }
        }
    }

    /// Seals these keys under `root` (what a rekey stores).
    pub fn seal_under(&self, root: &RootKey) -> Vec<u8> {
        seal_with(
            &cipher(&root.derive("keyring-master")),
            0,
            MASTER_AAD,
            &self.to_bytes(),
        )
    }

    /// The 64 bytes, for a backup sealed under a passphrase (which must open without the root).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(64));
        out.extend_from_slice(self.kek.as_ref());
        out.extend_from_slice(self.mac.as_ref());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKeys, CryptoError> {
        if bytes.len() != 64 {
            return Err(CryptoError::Decrypt);
        }
        let mut kek = Zeroizing::new([0u8; 32]);
        let mut mac = Zeroizing::new([0u8; 32]);
        kek.copy_from_slice(&bytes[..32]);
        mac.copy_from_slice(&bytes[32..]);
        Ok(MasterKeys { kek, mac })
    }

    /// A new random data key with the given id, wrapped under these keys.
    pub fn wrap_new_data_key(&self, id: u32) -> SealedKey {
        let key = Zeroizing::new(crate::random_bytes::<32>());
        SealedKey {
            id,
            wrapped: seal_with(&cipher(&self.kek), 0, &wrap_aad(id), key.as_ref()),
        }
    }

    fn clone_keys(&self) -> MasterKeys {
        MasterKeys {
            kek: self.kek.clone(),
            mac: self.mac.clone(),
        }
    }
}

/// The key id a sealed value names in its header (None if it is not in the sealed format).
pub fn sealed_key_id(sealed: &[u8]) -> Option<u32> {
    (sealed.len() >= HEADER_LEN && sealed[0] == FORMAT_V1)
        .then(|| u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]))
}

/// The header's key id of what is sealed under the backup key: no data key has it.
const BACKUP_KEY_ID: u32 = u32::MAX;

/// The unsealed data keys. New values are sealed with the newest key; older keys stay for
/// reading until a rotation has re-encrypted everything under them and retired them. The set
/// can be refreshed in place (`refresh`), so every holder of the `Arc<Keyring>` sees a rotation.
pub struct Keyring {
    keys: RwLock<BTreeMap<u32, XChaCha20Poly1305>>,
    active: AtomicU32,
    master: MasterKeys,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active_key_id())
            .finish_non_exhaustive()
    }
}

fn wrap_aad(id: u32) -> Vec<u8> {
    format!("strongbox data-key {id}").into_bytes()
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

fn unwrap_keys(
    kek: &XChaCha20Poly1305,
    sealed: &[SealedKey],
) -> Result<BTreeMap<u32, XChaCha20Poly1305>, CryptoError> {
    let mut keys = BTreeMap::new();
    for s in sealed {
        let plain = open_with(kek, &wrap_aad(s.id), &s.wrapped)?;
        let bytes: &[u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Decrypt)?;
        keys.insert(s.id, cipher(bytes));
    }
    Ok(keys)
}

impl Keyring {
    /// Creates a new data key with the given id, sealed under a never-rekeyed root.
    pub fn new_data_key(root: &RootKey, id: u32) -> SealedKey {
        let master = MasterKeys::unseal(root, None).expect("derived master keys need no opening");
        master.wrap_new_data_key(id)
    }

    /// Unseals the stored data keys with a never-rekeyed root. A root that did not seal them
    /// fails here, clearly, rather than on the first read of a secret.
    pub fn open(root: &RootKey, sealed: &[SealedKey]) -> Result<Keyring, CryptoError> {
        Keyring::open_with(MasterKeys::unseal(root, None)?, sealed)
    }

    /// Unseals the stored data keys with the master keys the root opened.
    pub fn open_with(master: MasterKeys, sealed: &[SealedKey]) -> Result<Keyring, CryptoError> {
        let keys = unwrap_keys(&cipher(&master.kek), sealed)?;
        let active = *keys.keys().next_back().ok_or(CryptoError::UnknownKey(0))?;
        Ok(Keyring {
            keys: RwLock::new(keys),
            active: AtomicU32::new(active),
            master,
        })
    }

    /// Takes the stored set of data keys as it is now: keys added by a rotation become usable
    /// (the newest seals from now on), retired ones are forgotten. Returns whether anything changed.
    pub fn refresh(&self, sealed: &[SealedKey]) -> Result<bool, CryptoError> {
        let current = self.key_ids();
        let stored: Vec<u32> = sealed.iter().map(|s| s.id).collect();
        if current == stored || sealed.is_empty() {
            return Ok(false);
        }
        let fresh: Vec<SealedKey> = sealed
            .iter()
            .filter(|s| !current.contains(&s.id))
            .cloned()
            .collect();
        let added = unwrap_keys(&cipher(&self.master.kek), &fresh)?;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.extend(added);
        keys.retain(|id, _| stored.contains(id));
        if let Some(newest) = keys.keys().next_back() {
            self.active.store(*newest, Ordering::SeqCst);
        }
        Ok(true)
    }

    /// A new data key with the given id, wrapped like the others (what a rotation stores).
    pub fn wrap_new_data_key(&self, id: u32) -> SealedKey {
        self.master.wrap_new_data_key(id)
    }

    /// The master keys (for a rekey, or a backup sealed under a passphrase).
    pub fn master(&self) -> MasterKeys {
        self.master.clone_keys()
    }

    /// The ids of the data keys held, ascending.
    pub fn key_ids(&self) -> Vec<u32> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.keys().copied().collect()
    }

    pub fn active_key_id(&self) -> u32 {
        self.active.load(Ordering::SeqCst)
    }

    /// Seals `plaintext`; `aad` names where it belongs (vault, secret, version…).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let active = self.active_key_id();
        let key = keys
            .get(&active)
            .expect("the active data key is always in the keyring");
        seal_with(key, active, aad, plaintext)
    }

    /// Opens what [`Keyring::seal`] produced with the same `aad`.
    pub fn open_sealed(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let id = sealed_key_id(sealed).ok_or(CryptoError::Decrypt)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys.get(&id).ok_or(CryptoError::UnknownKey(id))?;
        open_with(key, aad, sealed)
    }

    /// Re-encrypts `sealed` under the active key; None if it already is.
    pub fn reseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Option<Vec<u8>>, CryptoError> {
        if sealed_key_id(sealed) == Some(self.active_key_id()) {
            return Ok(None);
        }
        let plain = self.open_sealed(aad, sealed)?;
        Ok(Some(self.seal(aad, &plain)))
    }

    /// Seals a secret backup blob. Values are re-encrypted by a rotation and their old key
    /// retired, but a blob has left the store and must restore for as long as the deployment
    /// lives (Key Vault's backups do): it is sealed under a key derived from the master keys,
    /// which a data-key rotation leaves alone and a rekey keeps.
    pub fn seal_backup(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.backup_cipher(), BACKUP_KEY_ID, aad, plaintext)
    }

    /// Opens a blob of [`Keyring::seal_backup`], or one sealed under a data key (made before
    /// blobs had their own key) while that key is still in the keyring.
    pub fn open_backup(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed_key_id(sealed) == Some(BACKUP_KEY_ID) {
            open_with(&self.backup_cipher(), aad, sealed)
        } else {
            self.open_sealed(aad, sealed)
        }
    }

    fn backup_cipher(&self) -> XChaCha20Poly1305 {
        let key = Zeroizing::new(crate::hmac_sha256(
            self.master.kek.as_ref(),
            b"strongbox secret-backup blobs v1",
        ));
        cipher(&key)
    }

    /// A keyed hash for lookups of high-entropy secrets (client secrets); `label` separates uses.
    pub fn mac(&self, label: &str, data: &[u8]) -> [u8; 32] {
        let key = crate::hmac_sha256(self.master.mac.as_ref(), label.as_bytes());
        crate::hmac_sha256(&key, data)
    }
}

fn seal_with(cipher: &XChaCha20Poly1305, id: u32, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce = crate::random_bytes::<24>();
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
    out.push(FORMAT_V1);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&nonce);
    // The header is authenticated too, so the key id cannot be swapped.
    let mut full_aad = out.clone();
    full_aad.extend_from_slice(aad);
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &full_aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption does not fail for in-memory sizes");
    out.extend_from_slice(&ct);
    out
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < HEADER_LEN || sealed[0] != FORMAT_V1 {
        return Err(CryptoError::Decrypt);
    }
    let (header, ct) = sealed.split_at(HEADER_LEN);
    let nonce: [u8; 24] = header[5..].try_into().expect("24 bytes");
    let mut full_aad = header.to_vec();
    full_aad.extend_from_slice(aad);
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ct,
                aad: &full_aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(p: &[u8]) -> RootKey {
        RootKey::from_passphrase(p, b"salt-salt-salt-salt").unwrap()
    }

    #[test]
    fn seal_open_round_trip_binds_aad_and_detects_tampering() {
        let r = root(b"a");
        let ring = Keyring::open(&r, &[Keyring::new_data_key(&r, 1)]).unwrap();
        let sealed = ring.seal(b"vault/name/v1", b"hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            ring.open_sealed(b"vault/name/v1", &sealed)
                .unwrap()
                .as_slice(),
            b"hunter2"
        );
        assert!(ring.open_sealed(b"vault/other/v1", &sealed).is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                ring.open_sealed(b"vault/name/v1", &bad).is_err(),
                "flip at {i} went unnoticed"
            );
        }
        assert!(
            ring.open_sealed(b"vault/name/v1", &sealed[..sealed.len() - 1])
                .is_err()
        );
    }

    #[test]
    fn rotation_keeps_old_ciphertexts_readable() {
        let r = root(b"a");
        let k1 = Keyring::new_data_key(&r, 1);
        let old = Keyring::open(&r, std::slice::from_ref(&k1))
            .unwrap()
            .seal(b"x", b"old");
        let ring = Keyring::open(&r, &[k1, Keyring::new_data_key(&r, 2)]).unwrap();
        assert_eq!(ring.active_key_id(), 2);
        assert_eq!(ring.open_sealed(b"x", &old).unwrap().as_slice(), b"old");
        let new = ring.seal(b"x", b"new");
        assert_eq!(&new[1..5], &2u32.to_be_bytes());
    }

    #[test]
    fn refresh_adopts_a_rotation_and_forgets_retired_keys() {
        let r = root(b"a");
        let k1 = Keyring::new_data_key(&r, 1);
        let ring = Keyring::open(&r, std::slice::from_ref(&k1)).unwrap();
        let old = ring.seal(b"x", b"v");
        let k2 = ring.wrap_new_data_key(2);
        assert!(ring.refresh(&[k1, k2.clone()]).unwrap());
        assert_eq!(ring.active_key_id(), 2);
        let new = ring.reseal(b"x", &old).unwrap().unwrap();
        assert_eq!(sealed_key_id(&new), Some(2));
        assert!(ring.reseal(b"x", &new).unwrap().is_none());
        assert!(ring.refresh(std::slice::from_ref(&k2)).unwrap());
        assert_eq!(ring.key_ids(), vec![2]);
        assert!(matches!(
            ring.open_sealed(b"x", &old),
            Err(CryptoError::UnknownKey(1))
        ));
        assert_eq!(ring.open_sealed(b"x", &new).unwrap().as_slice(), b"v");
    }

    #[test]
    fn backup_blobs_outlive_the_rotation_that_retires_their_data_key_and_a_rekey() {
        let (r, new_root) = (root(b"a"), root(b"b"));
        let k1 = Keyring::new_data_key(&r, 1);
        let ring = Keyring::open(&r, std::slice::from_ref(&k1)).unwrap();
        let blob = ring.seal_backup(b"backup", b"versions");
        assert_eq!(sealed_key_id(&blob), Some(BACKUP_KEY_ID));
        // Rotate to key 2 and retire key 1.
        let k2 = ring.wrap_new_data_key(2);
        ring.refresh(std::slice::from_ref(&k2)).unwrap();
        assert_eq!(ring.key_ids(), vec![2]);
        assert_eq!(
            ring.open_backup(b"backup", &blob).unwrap().as_slice(),
            b"versions"
        );
        // Rekey: the master keys sealed under a new root open it too.
        let master = MasterKeys::unseal(&new_root, Some(&ring.master().seal_under(&new_root)));
        let rekeyed = Keyring::open_with(master.unwrap(), &[k2]).unwrap();
        assert_eq!(
            rekeyed.open_backup(b"backup", &blob).unwrap().as_slice(),
            b"versions"
        );
        // Bound to its aad, and to this deployment's master keys.
        assert!(rekeyed.open_backup(b"other", &blob).is_err());
        let foreign = Keyring::open(&root(b"c"), &[Keyring::new_data_key(&root(b"c"), 1)]).unwrap();
        assert!(foreign.open_backup(b"backup", &blob).is_err());
        // Blobs made under a data key still open while that key exists.
        let old_style = rekeyed.seal(b"backup", b"v0");
        assert_eq!(
            rekeyed
                .open_backup(b"backup", &old_style)
                .unwrap()
                .as_slice(),
            b"v0"
        );
    }

    #[test]
    fn a_rekeyed_master_opens_only_under_the_new_root() {
        let (old, new) = (root(b"a"), root(b"b"));
        let k1 = Keyring::new_data_key(&old, 1);
        let ring = Keyring::open(&old, std::slice::from_ref(&k1)).unwrap();
        let sealed = ring.seal(b"x", b"v");
        let stored = ring.master().seal_under(&new);
        assert!(MasterKeys::unseal(&old, Some(&stored)).is_err());
        let master = MasterKeys::unseal(&new, Some(&stored)).unwrap();
        let again = Keyring::open_with(master, &[k1]).unwrap();
        assert_eq!(again.open_sealed(b"x", &sealed).unwrap().as_slice(), b"v");
        assert_eq!(again.mac("l", b"d"), ring.mac("l", b"d"));
    }

    #[test]
    fn a_wrong_root_cannot_open_the_keyring() {
        let k1 = Keyring::new_data_key(&root(b"a"), 1);
        assert!(matches!(
            Keyring::open(&root(b"b"), &[k1]),
            Err(CryptoError::Decrypt)
        ));
    }
}
