//! Key hierarchy and sealing: a root key (key file or Argon2id passphrase) wraps data keys; every
//! value is sealed with XChaCha20-Poly1305 and associated data that binds it to its place, so a
//! ciphertext moved to another secret does not open.

pub mod cik;
mod keyring;
mod passphrase;
mod root;

pub use keyring::{Keyring, MasterKeys, SealedKey, sealed_key_id};
pub use passphrase::{KdfParams, PassphraseKey};
pub use root::RootKey;

use hmac::{Hmac, KeyInit as _, Mac};
use sha2::{Digest, Sha256, Sha512};

/// Errors never carry key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Wrong key, tampered or truncated ciphertext, or moved to another place. Deliberately vague.
    #[error("decryption failed")]
    Decrypt,
    #[error("unknown data key {0}")]
    UnknownKey(u32),
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("passphrase key derivation failed: {0}")]
    Kdf(String),
    #[error("a content type must be 1 to 255 bytes")]
    ContentType,
}

/// Fills a fresh array from the operating system's RNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system RNG is unavailable");
    out
}

/// A random identifier of 32 lowercase hex digits (AKV version ids, request ids).
pub fn random_hex_id() -> String {
    hex::encode(random_bytes::<16>())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn sha512(data: &[u8]) -> [u8; 64] {
    Sha512::digest(data).into()
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Compares in constant time (secret hashes, challenge tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
