use crate::CryptoError;
use hkdf::Hkdf;
use sha2::Sha256;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// The root of the key hierarchy. Never leaves memory; `Debug` prints nothing of it.
pub struct RootKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey([REDACTED])")
    }
}

/// Argon2id parameters for passphrase-derived roots (OWASP's 19 MiB / 2 passes / 1 lane).
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;

fn key_file_error(path: &Path, reason: String) -> CryptoError {
    CryptoError::KeyFile {
        path: path.display().to_string(),
        reason,
    }
}

impl RootKey {
    /// Reads the key file, or creates it (mode 0600, 32 random bytes as hex) if it is absent.
    pub fn load_or_create_file(path: &Path) -> Result<RootKey, CryptoError> {
        match std::fs::read_to_string(path) {
            Ok(text) => RootKey::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RootKey::create_file(path),
            Err(e) => Err(key_file_error(path, e.to_string())),
        }
    }

    /// Reads an existing key file (never creates one).
    pub fn load_file(path: &Path) -> Result<RootKey, CryptoError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| key_file_error(path, e.to_string()))?,
        );
        RootKey::parse(path, &text)
    }

    /// Creates a new key file (mode 0600, 32 random bytes as hex, synced); fails if it exists.
    pub fn create_file(path: &Path) -> Result<RootKey, CryptoError> {
        let err = |e: std::io::Error| key_file_error(path, e.to_string());
        let key = Zeroizing::new(crate::random_bytes::<32>());
        let hex_key = Zeroizing::new(hex::encode(*key));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(err)?;
        file.write_all(hex_key.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        Ok(RootKey(key))
    }

    fn parse(path: &Path, text: &str) -> Result<RootKey, CryptoError> {
        let bytes = Zeroizing::new(
            hex::decode(text.trim()).map_err(|_| key_file_error(path, "not hex".into()))?,
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| key_file_error(path, "must hold 32 bytes".into()))?;
        Ok(RootKey(Zeroizing::new(key)))
    }

    /// Derives the root from a passphrase with Argon2id; the salt is stored beside the data.
    pub fn from_passphrase(passphrase: &[u8], salt: &[u8]) -> Result<RootKey, CryptoError> {
        use argon2::{Algorithm, Argon2, Params, Version};
        let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, 1, Some(32))
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|e| CryptoError::Kdf(e.to_string()))?;
        Ok(RootKey(key))
    }

    /// A purpose-bound subkey; distinct labels give independent keys.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(b"strongbox root v1"), self.0.as_ref())
            .expand(label.as_bytes(), out.as_mut())
            .expect("32 bytes is a valid HKDF output length");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("sbkey-{}", crate::random_hex_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("root.key");
        let a = RootKey::load_or_create_file(&path).unwrap();
        let b = RootKey::load_or_create_file(&path).unwrap();
        assert_eq!(*a.derive("x"), *b.derive("x"));
        assert_ne!(*a.derive("x"), *a.derive("y"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{a:?}"), "RootKey([REDACTED])");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn passphrase_roots_depend_on_passphrase_and_salt() {
        let a = RootKey::from_passphrase(b"correct horse", b"0123456789abcdef").unwrap();
        let b = RootKey::from_passphrase(b"correct horse", b"0123456789abcdef").unwrap();
        let c = RootKey::from_passphrase(b"wrong horse", b"0123456789abcdef").unwrap();
        assert_eq!(*a.derive("k"), *b.derive("k"));
        assert_ne!(*a.derive("k"), *c.derive("k"));
    }
}
