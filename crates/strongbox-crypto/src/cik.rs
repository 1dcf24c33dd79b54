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
//! Wire form: `sbcik2.<version>.<sequence>.<base64url(nonce || ciphertext || tag)>` for text
//! (what every sender wrote before binary values existed, and still writes for text), and
//! `sbcik3.<…same…>` for a value with a content type: its plaintext is `len || content type ||
//! the value's bytes` (len one byte), so the type is sealed with the bytes. The prefix is part of
//! the associated data: neither form opens as the other.

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
const PREFIX_TYPED: &str = "sbcik3";
/// Longest content type a typed envelope carries.
pub const MAX_CONTENT_TYPE: usize = 255;
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

fn aad(prefix: &str, device_id: &str, name: &str, version: &str, seq: u64) -> Vec<u8> {
    // Length-prefixed fields: no two (device, name, version) triples encode alike.
    let mut out = prefix.as_bytes().to_vec();
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
    /// The value's content type (authenticated); `None` for a text envelope.
    pub content_type: Option<String>,
    /// The value's bytes, exactly as sent.
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// Where an envelope goes: `device_id`'s secret `name` at `version` (an id the sender picks)
/// and sequence `seq` (larger than that of any earlier envelope under `name`).
pub struct Label<'a> {
    pub device_id: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub seq: u64,
}

fn seal_with(cik: &[u8], prefix: &str, l: &Label, plaintext: &[u8]) -> String {
    let nonce = crate::random_bytes::<NONCE_LEN>();
    let ct = cipher(cik)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad(prefix, l.device_id, l.name, l.version, l.seq),
            },
        )
        .expect("XChaCha20-Poly1305 encryption does not fail");
    let mut body = nonce.to_vec();
    body.extend_from_slice(&ct);
    format!("{prefix}.{}.{}.{}", l.version, l.seq, B64.encode(&body))
}

/// Seals a text value (the `sbcik2` form).
pub fn seal(cik: &[u8], label: &Label, plaintext: &[u8]) -> String {
    seal_with(cik, PREFIX, label, plaintext)
}

/// Seals any bytes with their content type (the `sbcik3` form). The content type must be 1 to
/// [`MAX_CONTENT_TYPE`] bytes.
pub fn seal_typed(
    cik: &[u8],
    label: &Label,
    content_type: &str,
    value: &[u8],
) -> Result<String, CryptoError> {
    let len = u8::try_from(content_type.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or(CryptoError::ContentType)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(1 + content_type.len() + value.len()));
    plain.push(len);
    plain.extend_from_slice(content_type.as_bytes());
    plain.extend_from_slice(value);
    Ok(seal_with(cik, PREFIX_TYPED, label, &plain))
}

/// The sequence an envelope claims, without opening it (unauthenticated until [`open`]).
pub fn claimed_seq(envelope: &str) -> Option<u64> {
    let mut parts = envelope.trim().splitn(4, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(PREFIX | PREFIX_TYPED), Some(_), Some(seq)) => seq.parse().ok(),
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
    let (Some(prefix @ (PREFIX | PREFIX_TYPED)), Some(version), Some(seq), Some(body)) =
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
                aad: &aad(prefix, device_id, name, version, seq),
            },
        )
        .map_err(|_| CryptoError::Decrypt)?;
    let pt = Zeroizing::new(pt);
    let (content_type, plaintext) = if prefix == PREFIX {
        (None, pt)
    } else {
        // Authenticated, so a bad frame is the sender's bug, not an attack: refused alike.
        let (&len, rest) = pt.split_first().ok_or(CryptoError::Decrypt)?;
        let len = usize::from(len);
        if len == 0 || rest.len() < len {
            return Err(CryptoError::Decrypt);
        }
        let ct = std::str::from_utf8(&rest[..len]).map_err(|_| CryptoError::Decrypt)?;
        (Some(ct.to_string()), Zeroizing::new(rest[len..].to_vec()))
    };
    Ok(Opened {
        version: version.to_string(),
        seq,
        content_type,
        plaintext,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Label = Label {
        device_id: "dev1",
        name: "share-cred",
        version: "v1",
        seq: 42,
    };

    #[test]
    fn envelopes_open_only_with_their_cik_device_name_and_version() {
        let cik = [7u8; 32];
        let e = seal(&cik, &L, b"hunter2 share password");
        assert!(!e.contains("hunter2"));
        assert_eq!(claimed_seq(&e), Some(42));
        let o = open(&cik, "dev1", "share-cred", &e).unwrap();
        assert_eq!(
            (o.version.as_str(), o.seq, o.plaintext.as_slice()),
            ("v1", 42, &b"hunter2 share password"[..])
        );
        assert!(o.content_type.is_none());
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
        assert_ne!(e, seal(&cik, &L, b"hunter2 share password"));
    }

    #[test]
    fn typed_envelopes_carry_any_bytes_and_their_content_type() {
        let cik = [7u8; 32];
        let bytes: Vec<u8> = (0..=255u8).chain([0, 0xff, 0x80]).collect();
        let e = seal_typed(&cik, &L, "application/x-pkcs12", &bytes).unwrap();
        assert!(e.starts_with("sbcik3.v1.42."), "{e}");
        assert_eq!(claimed_seq(&e), Some(42));
        let o = open(&cik, "dev1", "share-cred", &e).unwrap();
        assert_eq!(o.content_type.as_deref(), Some("application/x-pkcs12"));
        assert_eq!(o.plaintext.as_slice(), bytes.as_slice());
        // The form is authenticated: a typed envelope relabelled as text (or back) fails, and so
        // does a relabelled sequence.
        assert!(
            open(
                &cik,
                "dev1",
                "share-cred",
                &e.replacen("sbcik3", "sbcik2", 1)
            )
            .is_err()
        );
        let text = seal(&cik, &L, b"x");
        assert!(
            open(
                &cik,
                "dev1",
                "share-cred",
                &text.replacen("sbcik2", "sbcik3", 1)
            )
            .is_err()
        );
        assert!(open(&cik, "dev1", "share-cred", &e.replacen(".42.", ".43.", 1)).is_err());
        assert!(open(&cik, "dev1", "other", &e).is_err());
        // An empty value is still a value; the content type must be 1 to 255 bytes.
        let empty = seal_typed(&cik, &L, "application/octet-stream", b"").unwrap();
        assert!(
            open(&cik, "dev1", "share-cred", &empty)
                .unwrap()
                .plaintext
                .is_empty()
        );
        assert!(seal_typed(&cik, &L, "", b"x").is_err());
        assert!(seal_typed(&cik, &L, &"a".repeat(256), b"x").is_err());
        assert!(seal_typed(&cik, &L, &"a".repeat(255), b"x").is_ok());
    }
}
