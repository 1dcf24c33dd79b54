//! The CIK channel (issue 4 point 5): customer secrets for a device travel sealed under a key
//! derived from the device's Channel Integrity Key, so whoever sees the transport or the vault
//! value but not the CIK learns nothing, and any change is detected.
//!
//! Key: HKDF-SHA256 over the CIK with its own label (so the CIK is never used directly and a
//! key for another purpose derived from it cannot collide). Cipher: XChaCha20-Poly1305 with a
//! random 192-bit nonce; the associated data binds the device id, the secret name, the
//! envelope's version and its sequence number, so an envelope copied to another device or name,
//! or an old one relabelled with a newer version or sequence, does not open.
//!
//! The sequence is a number the sender makes grow per secret name (the server uses its clock in
//! milliseconds, and one more than the last envelope's if that is larger). It is authenticated,
//! so a device that remembers the highest sequence it opened under a name can refuse an older
//! envelope put back under that name (a restored backup or an old value set again: a replay).
//!
//! Wire form: `sbcik2.<version>.<sequence>.<base64url(nonce || ciphertext || tag)>`.

use crate::CryptoError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Content type the sealed envelope is stored under in the vault.
pub const CONTENT_TYPE: &str = "application/vnd.strongbox.cik-envelope";
const PREFIX: &str = "sbcik2";
const LABEL: &[u8] = b"strongbox cik channel v1: customer secret envelope";
const NONCE_LEN: usize = 24;

fn cipher(cik: &[u8]) -> XChaCha20Poly1305 {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, cik)
        .expand(LABEL, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let k: &[u8; 32] = &key;
    XChaCha20Poly1305::new(k.into())
}

fn aad(device_id: &str, name: &str, version: &str, seq: u64) -> Vec<u8> {
    // Length-prefixed fields: no two (device, name, version) triples encode alike.
    let mut out = PREFIX.as_bytes().to_vec();
    for f in [device_id, name, version] {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// An opened envelope.
pub struct Opened {
    pub version: String,
    /// The sender's sequence number for this name (authenticated).
    pub seq: u64,
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// Seals `plaintext` for `device_id`'s secret `name` at `version` (an id the sender picks) and
/// sequence `seq` (larger than that of any earlier envelope under `name`).
pub fn seal(
    cik: &[u8],
    device_id: &str,
    name: &str,
    version: &str,
    seq: u64,
    plaintext: &[u8],
) -> String {
    let nonce = crate::random_bytes::<NONCE_LEN>();
    let ct = cipher(cik)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad(device_id, name, version, seq),
            },
        )
        .expect("XChaCha20-Poly1305 encryption does not fail");
    let mut body = nonce.to_vec();
    body.extend_from_slice(&ct);
    format!("{PREFIX}.{version}.{seq}.{}", B64.encode(&body))
}

/// The sequence an envelope claims, without opening it (unauthenticated until [`open`]).
pub fn claimed_seq(envelope: &str) -> Option<u64> {
    let mut parts = envelope.trim().splitn(4, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(PREFIX), Some(_), Some(seq)) => seq.parse().ok(),
        _ => None,
    }
}

/// Opens an envelope for `device_id`'s secret `name`. A wrong CIK, a changed byte (sequence
/// included), or an envelope meant for another device or name all fail alike.
pub fn open(
    cik: &[u8],
    device_id: &str,
    name: &str,
    envelope: &str,
) -> Result<Opened, CryptoError> {
    let mut parts = envelope.trim().splitn(4, '.');
    let (Some(PREFIX), Some(version), Some(seq), Some(body)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CryptoError::Decrypt);
    };
    // Canonical decimal only: "007" and "7" must not both name sequence 7.
    let seq: u64 = match seq.parse::<u64>() {
        Ok(n) if n.to_string() == seq => n,
        _ => return Err(CryptoError::Decrypt),
    };
    let body = B64.decode(body).map_err(|_| CryptoError::Decrypt)?;
    if body.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, ct) = body.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce length");
    let pt = cipher(cik)
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ct,
                aad: &aad(device_id, name, version, seq),
            },
        )
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(Opened {
        version: version.to_string(),
        seq,
        plaintext: Zeroizing::new(pt),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_open_only_with_their_cik_device_name_and_version() {
        let cik = [7u8; 32];
        let e = seal(
            &cik,
            "dev1",
            "share-cred",
            "v1",
            42,
            b"hunter2 share password",
        );
        assert!(!e.contains("hunter2"));
        assert_eq!(claimed_seq(&e), Some(42));
        let o = open(&cik, "dev1", "share-cred", &e).unwrap();
        assert_eq!(
            (o.version.as_str(), o.seq, o.plaintext.as_slice()),
            ("v1", 42, &b"hunter2 share password"[..])
        );
        // A relabelled sequence (newer, or the same number spelled otherwise) is detected.
        for seq in [".43.", ".042.", ".41."] {
            assert!(open(&cik, "dev1", "share-cred", &e.replacen(".42.", seq, 1)).is_err());
        }
        // Another device's CIK, another device, another name: refused.
        assert!(open(&[8u8; 32], "dev1", "share-cred", &e).is_err());
        assert!(open(&cik, "dev2", "share-cred", &e).is_err());
        assert!(open(&cik, "dev1", "other", &e).is_err());
        // A claimed other version, or any flipped byte of the body, is detected.
        assert!(open(&cik, "dev1", "share-cred", &e.replacen(".v1.", ".v2.", 1)).is_err());
        let mut raw = e.clone().into_bytes();
        for i in PREFIX.len() + 4..raw.len() {
            let orig = raw[i];
            raw[i] = if orig == b'A' { b'B' } else { b'A' };
            assert!(
                open(
                    &cik,
                    "dev1",
                    "share-cred",
                    std::str::from_utf8(&raw).unwrap()
                )
                .is_err()
            );
            raw[i] = orig;
        }
        // Fresh nonce each time.
        assert_ne!(
            e,
            seal(
                &cik,
                "dev1",
                "share-cred",
                "v1",
                42,
                b"hunter2 share password"
            )
        );
    }
}
