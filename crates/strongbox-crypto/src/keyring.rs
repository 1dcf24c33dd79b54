use crate::{CryptoError, RootKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::collections::BTreeMap;
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

/// The unsealed data keys. New values are sealed with the newest key; older keys stay for
/// reading, so rotation never rewrites data.
pub struct Keyring {
    keys: BTreeMap<u32, XChaCha20Poly1305>,
    active: u32,
    mac_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

fn wrap_aad(id: u32) -> Vec<u8> {
    format!("strongbox data-key {id}").into_bytes()
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

impl Keyring {
    /// Creates a new data key with the given id, sealed under the root.
    pub fn new_data_key(root: &RootKey, id: u32) -> SealedKey {
        let key = Zeroizing::new(crate::random_bytes::<32>());
        let kek = root.derive("data-key-wrapping");
        SealedKey {
            id,
            wrapped: seal_with(&cipher(&kek), 0, &wrap_aad(id), key.as_ref()),
        }
    }

    /// Unseals the stored data keys. A root that did not seal them fails here, clearly, rather
    /// than on the first read of a secret.
    pub fn open(root: &RootKey, sealed: &[SealedKey]) -> Result<Keyring, CryptoError> {
        let kek = cipher(&root.derive("data-key-wrapping"));
        let mut keys = BTreeMap::new();
        for s in sealed {
            let plain = open_with(&kek, &wrap_aad(s.id), &s.wrapped)?;
            let bytes: &[u8; 32] = plain
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::Decrypt)?;
            keys.insert(s.id, cipher(bytes));
        }
        let active = *keys.keys().next_back().ok_or(CryptoError::UnknownKey(0))?;
        Ok(Keyring {
            keys,
            active,
            mac_key: root.derive("mac"),
        })
    }

    pub fn active_key_id(&self) -> u32 {
        self.active
    }

    /// Seals `plaintext`; `aad` names where it belongs (vault, secret, version…).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.keys[&self.active], self.active, aad, plaintext)
    }

    /// Opens what [`Keyring::seal`] produced with the same `aad`.
    pub fn open_sealed(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < HEADER_LEN || sealed[0] != FORMAT_V1 {
            return Err(CryptoError::Decrypt);
        }
        let id = u32::from_be_bytes(sealed[1..5].try_into().expect("4 bytes"));
        let key = self.keys.get(&id).ok_or(CryptoError::UnknownKey(id))?;
        open_with(key, aad, sealed)
    }

    /// A keyed hash for lookups of high-entropy secrets (client secrets); `label` separates uses.
    pub fn mac(&self, label: &str, data: &[u8]) -> [u8; 32] {
        let key = crate::hmac_sha256(self.mac_key.as_ref(), label.as_bytes());
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
    fn a_wrong_root_cannot_open_the_keyring() {
        let k1 = Keyring::new_data_key(&root(b"a"), 1);
        assert!(matches!(
            Keyring::open(&root(b"b"), &[k1]),
            Err(CryptoError::Decrypt)
        ));
    }
}
