//! Sealing with a key derived from a passphrase, for files that leave the server (secret
//! exports): Argon2id with parameters the file records, then XChaCha20-Poly1305 with associated
//! data. The same primitives as the keyring, without a root key.

use crate::CryptoError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Argon2id cost, recorded beside the salt so a file opens with the cost it was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

impl KdfParams {
    /// 64 MiB, 3 passes, 1 lane: above OWASP's minimum, about a quarter second.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        passes: 3,
        lanes: 1,
    };

    /// Bounds accepted when opening a file, so a crafted header cannot ask for absurd work.
    pub fn is_reasonable(&self) -> bool {
        (8 * 1024..=1024 * 1024).contains(&self.memory_kib)
            && (1..=16).contains(&self.passes)
            && (1..=8).contains(&self.lanes)
    }
}

pub struct PassphraseKey(XChaCha20Poly1305);

impl std::fmt::Debug for PassphraseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassphraseKey([REDACTED])")
    }
}

const NONCE_LEN: usize = 24;

impl PassphraseKey {
    pub fn derive(
        passphrase: &[u8],
        salt: &[u8],
        p: KdfParams,
    ) -> Result<PassphraseKey, CryptoError> {
        use argon2::{Algorithm, Argon2, Params, Version};
        if !p.is_reasonable() {
            return Err(CryptoError::Kdf("unreasonable Argon2id parameters".into()));
        }
        let params = Params::new(p.memory_kib, p.passes, p.lanes, Some(32))
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let key: &[u8; 32] = &key;
        Ok(PassphraseKey(XChaCha20Poly1305::new(key.into())))
    }

    /// A key for files sealed under the root key rather than a passphrase (server backups);
    /// `label` keeps it apart from every other key the root gives.
    pub fn from_root(root: &crate::RootKey, label: &str) -> PassphraseKey {
        let key = root.derive(label);
        let key: &[u8; 32] = &key;
        PassphraseKey(XChaCha20Poly1305::new(key.into()))
    }

    /// A random nonce, then the ciphertext with its tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = crate::random_bytes::<NONCE_LEN>();
        let ct = self
            .0
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Wrong passphrase, tampering, truncation and moved chunks all fail the same way.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce length");
        self.0
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 8 * 1024,
        passes: 1,
        lanes: 1,
    };

    #[test]
    fn sealed_chunks_open_only_with_the_passphrase_and_their_aad() {
        let k = PassphraseKey::derive(b"correct horse battery", b"0123456789abcdef", FAST).unwrap();
        let sealed = k.seal(b"chunk 1", b"secret data");
        assert_eq!(&**k.open(b"chunk 1", &sealed).unwrap(), b"secret data");
        assert!(k.open(b"chunk 2", &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(k.open(b"chunk 1", &flipped).is_err());
        assert!(k.open(b"chunk 1", &sealed[..20]).is_err());
        let wrong =
            PassphraseKey::derive(b"wrong horse battery", b"0123456789abcdef", FAST).unwrap();
        assert!(wrong.open(b"chunk 1", &sealed).is_err());
        assert!(!format!("{k:?}").contains("horse"));
        let absurd = KdfParams {
            memory_kib: u32::MAX,
            ..FAST
        };
        assert!(PassphraseKey::derive(b"x", b"0123456789abcdef", absurd).is_err());
    }
}
