//! Asymmetric credentials of a principal: an X.509 certificate (what azure-identity's
//! `CertificateCredential` signs with) or a bare public key (JWK or PEM) for clients without a
//! certificate, such as the edge agent. Only public material is ever stored.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use strongbox_domain::{Clock, DomainError};
use strongbox_store::{KeyCredentialRow, PrincipalRow, Store, StoreError};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

/// `KeyCredentialRow::kind` of a certificate.
pub const CERTIFICATE: &str = "AsymmetricX509Cert";
/// `KeyCredentialRow::kind` of a bare public key.
pub const PUBLIC_KEY: &str = "PublicKey";

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
/// Largest certificate or key text accepted.
const MAX_INPUT: usize = 64 * 1024;
const MIN_RSA_BITS: usize = 2048;

fn bad(message: impl Into<String>) -> DomainError {
    DomainError::BadParameter(message.into())
}

/// A public key that can check JWS signatures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VerifyingKey {
    /// The PKCS#1 `RSAPublicKey` DER.
    Rsa(Vec<u8>),
    /// The uncompressed P-256 point.
    EcP256(Vec<u8>),
}

impl VerifyingKey {
    /// Verifies a JWS signature made with `alg` (RS256, PS256 or ES256).
    pub(crate) fn verify(&self, alg: &str, signing_input: &[u8], signature: &[u8]) -> bool {
        match (self, alg) {
            (VerifyingKey::Rsa(k), "RS256") => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k)
                    .verify(signing_input, signature)
                    .is_ok()
            }
            (VerifyingKey::Rsa(k), "PS256") => UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, k)
                .verify(signing_input, signature)
                .is_ok(),
            (VerifyingKey::EcP256(k), "ES256") => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k)
                    .verify(signing_input, signature)
                    .is_ok()
            }
            _ => false,
        }
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[first..]
}

/// The key inside a SubjectPublicKeyInfo, with its RFC 7638 JWK thumbprint. RSA keys must have
/// at least 2048 bits; EC keys must be on P-256.
fn spki_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<(VerifyingKey, String), DomainError> {
    let oid = spki.algorithm.algorithm.to_id_string();
    let data = spki.subject_public_key.data.to_vec();
    if oid == OID_RSA {
        let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(bad("The RSA public key is malformed."));
        };
        let n = strip_zeros(rsa.modulus);
        if n.len() * 8 < MIN_RSA_BITS {
            return Err(bad("RSA keys must have at least 2048 bits."));
        }
        let thumbprint = jwk_thumbprint(&format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(strip_zeros(rsa.exponent)),
            URL_SAFE_NO_PAD.encode(n)
        ));
        return Ok((VerifyingKey::Rsa(data), thumbprint));
    }
    if oid == OID_EC {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        if curve.as_deref() != Some(OID_P256) {
            return Err(bad("Only P-256 elliptic-curve keys are supported."));
        }
        if data.len() != 65 || data[0] != 4 {
            return Err(bad(
                "The EC public key must be an uncompressed P-256 point.",
            ));
        }
        let thumbprint = jwk_thumbprint(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&data[1..33]),
            URL_SAFE_NO_PAD.encode(&data[33..65])
        ));
        return Ok((VerifyingKey::EcP256(data), thumbprint));
    }
    Err(bad("Only RSA and P-256 keys are supported."))
}

fn jwk_thumbprint(canonical_json: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical_json.as_bytes()))
}

fn hex_upper(b: &[u8]) -> String {
    hex::encode_upper(b)
}

/// The DER of the first CERTIFICATE block of a PEM text, or the input itself if it is DER.
/// Other blocks (a private key kept in the same file) are ignored and never stored.
fn certificate_der(input: &[u8]) -> Result<Vec<u8>, DomainError> {
    if !input.starts_with(b"-----") && !input.windows(10).any(|w| w == b"-----BEGIN") {
        return Ok(input.to_vec());
    }
    for pem in x509_parser::pem::Pem::iter_from_buffer(input) {
        let pem = pem.map_err(|_| bad("The PEM text is malformed."))?;
        if pem.label == "CERTIFICATE" {
            return Ok(pem.contents);
        }
    }
    Err(bad("The PEM text holds no CERTIFICATE block."))
}

/// A parsed certificate credential: key, validity window, thumbprints.
pub(crate) struct ParsedCertificate {
    pub key: VerifyingKey,
    pub not_before: i64,
    pub not_after: i64,
    pub sha1_hex: String,
    pub sha256_hex: String,
}

pub(crate) fn parse_certificate(der: &[u8]) -> Result<ParsedCertificate, DomainError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|_| bad("The certificate is not a valid X.509 certificate."))?;
    if !rest.is_empty() {
        return Err(bad("The certificate has trailing data."));
    }
    let (key, _) = spki_key(cert.public_key())?;
    Ok(ParsedCertificate {
        key,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sha1_hex: hex_upper(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref()),
        sha256_hex: hex_upper(digest::digest(&digest::SHA256, der).as_ref()),
    })
}

/// The key of a stored credential.
pub(crate) fn stored_key(c: &KeyCredentialRow) -> Result<VerifyingKey, DomainError> {
    match c.kind.as_str() {
        CERTIFICATE => Ok(parse_certificate(&c.der)?.key),
        PUBLIC_KEY => {
            let (_, spki) = SubjectPublicKeyInfo::from_der(&c.der)
                .map_err(|_| DomainError::Internal("stored public key is malformed".into()))?;
            Ok(spki_key(&spki)?.0)
        }
        other => Err(DomainError::Internal(format!(
            "unknown key credential kind {other}"
        ))),
    }
}

async fn insert(store: &dyn Store, row: KeyCredentialRow) -> Result<KeyCredentialRow, DomainError> {
    match store.insert_key_credential(row.clone()).await {
        Ok(()) => Ok(row),
        Err(StoreError::Conflict) => Err(DomainError::Conflict {
            message: format!(
                "The principal already has a key credential with identifier '{}'.",
                row.key_id
            ),
            inner: Some("KeyCredentialExists"),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Registers a certificate (PEM or DER) on a principal. Its key id is the SHA-1 thumbprint
/// (uppercase hex, as Azure shows it); the credential is valid for the certificate's validity
/// window. An already expired certificate is refused.
pub async fn add_certificate(
    store: &dyn Store,
    clock: &dyn Clock,
    principal: &PrincipalRow,
    certificate: &[u8],
) -> Result<KeyCredentialRow, DomainError> {
    if certificate.len() > MAX_INPUT {
        return Err(bad("The certificate is too large."));
    }
    let der = certificate_der(certificate)?;
    let parsed = parse_certificate(&der)?;
    let now = clock.now();
    if parsed.not_after <= now {
        return Err(bad("The certificate has expired."));
    }
    let row = KeyCredentialRow {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: principal.object_id.clone(),
        kind: CERTIFICATE.into(),
        key_id: parsed.sha1_hex,
        sha256: parsed.sha256_hex,
        der,
        not_before: parsed.not_before,
        expires: parsed.not_after,
        created: now,
    };
    insert(store, row).await
}

/// A DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(b: &[u8]) -> Vec<u8> {
    let b = strip_zeros(b);
    let mut content = Vec::with_capacity(b.len() + 1);
    if b.first().is_none_or(|x| x & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(b);
    der(0x02, &content)
}

fn der_bitstring(b: &[u8]) -> Vec<u8> {
    let mut content = vec![0u8];
    content.extend_from_slice(b);
    der(0x03, &content)
}

/// The SubjectPublicKeyInfo DER of a public JWK (RSA, or EC on P-256), and its `kid` if any.
fn jwk_to_spki(jwk: &serde_json::Value) -> Result<(Vec<u8>, Option<String>), DomainError> {
    let obj = jwk
        .as_object()
        .ok_or_else(|| bad("The JWK must be a JSON object."))?;
    if obj.contains_key("d") || obj.contains_key("p") || obj.contains_key("k") {
        return Err(bad(
            "The JWK holds private key material: register only the public key.",
        ));
    }
    let field = |k: &str| -> Result<Vec<u8>, DomainError> {
        let s = obj
            .get(k)
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(format!("The JWK lacks '{k}'.")))?;
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| bad(format!("The JWK's '{k}' is not base64url.")))
    };
    let kid = obj.get("kid").and_then(|v| v.as_str()).map(str::to_string);
    let spki = match obj.get("kty").and_then(|v| v.as_str()) {
        Some("RSA") => {
            let key = der(
                0x30,
                &[der_uint(&field("n")?), der_uint(&field("e")?)].concat(),
            );
            let alg = der(
                0x30,
                &[
                    der(
                        0x06,
                        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
                    ),
                    der(0x05, &[]),
                ]
                .concat(),
            );
            der(0x30, &[alg, der_bitstring(&key)].concat())
        }
        Some("EC") => {
            if obj.get("crv").and_then(|v| v.as_str()) != Some("P-256") {
                return Err(bad("Only P-256 elliptic-curve keys are supported."));
            }
            let (x, y) = (field("x")?, field("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(bad("The JWK's P-256 coordinates must be 32 bytes each."));
            }
            let alg = der(
                0x30,
                &[
                    der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
                    der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
                ]
                .concat(),
            );
            let point = [&[4u8][..], &x, &y].concat();
            der(0x30, &[alg, der_bitstring(&point)].concat())
        }
        _ => return Err(bad("The JWK's 'kty' must be RSA or EC.")),
    };
    Ok((spki, kid))
}

/// Registers a public key (a JWK, or a PEM `PUBLIC KEY` block) for signed client assertions.
/// Its key id is `kid` if given, else the JWK's `kid`, else its RFC 7638 thumbprint. The
/// credential lasts `lifetime_days`.
pub async fn add_public_key(
    store: &dyn Store,
    clock: &dyn Clock,
    principal: &PrincipalRow,
    key_text: &str,
    kid: Option<&str>,
    lifetime_days: i64,
) -> Result<KeyCredentialRow, DomainError> {
    if key_text.len() > MAX_INPUT {
        return Err(bad("The public key is too large."));
    }
    if !(1..=3650).contains(&lifetime_days) {
        return Err(bad("The lifetime must be between 1 and 3650 days."));
    }
    let trimmed = key_text.trim();
    let (spki_der, jwk_kid) = if trimmed.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|_| bad("The JWK is not valid JSON."))?;
        jwk_to_spki(&v)?
    } else {
        let mut found = None;
        for pem in x509_parser::pem::Pem::iter_from_buffer(trimmed.as_bytes()) {
            let pem = pem.map_err(|_| bad("The PEM text is malformed."))?;
            if pem.label.contains("PRIVATE KEY") {
                return Err(bad(
                    "The PEM text holds a private key: register only the public key.",
                ));
            }
            if pem.label == "PUBLIC KEY" && found.is_none() {
                found = Some(pem.contents);
            }
        }
        (
            found.ok_or_else(|| bad("Give a JWK or a PEM 'PUBLIC KEY' block."))?,
            None,
        )
    };
    let (rest, spki) = SubjectPublicKeyInfo::from_der(&spki_der)
        .map_err(|_| bad("The public key is malformed."))?;
    if !rest.is_empty() {
        return Err(bad("The public key has trailing data."));
    }
    let (_, thumbprint) = spki_key(&spki)?;
    let key_id = kid.map(str::to_string).or(jwk_kid).unwrap_or(thumbprint);
    if key_id.is_empty()
        || key_id.len() > 128
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(bad(
            "The key id must be 1 to 128 printable characters without quotes or backslashes.",
        ));
    }
    let now = clock.now();
    let row = KeyCredentialRow {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: principal.object_id.clone(),
        kind: PUBLIC_KEY.into(),
        key_id,
        sha256: hex_upper(digest::digest(&digest::SHA256, &spki_der).as_ref()),
        der: spki_der,
        not_before: now,
        expires: now + lifetime_days * 86_400,
        created: now,
    };
    insert(store, row).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_integers() {
        assert_eq!(der(0x04, &[1, 2]), vec![4, 2, 1, 2]);
        assert_eq!(&der(0x04, &[0; 200])[..3], &[4, 0x81, 200]);
        assert_eq!(&der(0x04, &[0; 300])[..4], &[4, 0x82, 1, 44]);
        assert_eq!(der_uint(&[0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(der_uint(&[0, 0, 1]), vec![2, 1, 1]);
    }

    #[test]
    fn private_jwks_and_small_or_odd_keys_are_refused() {
        assert!(
            jwk_to_spki(&serde_json::json!({"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}))
                .is_err()
        );
        assert!(jwk_to_spki(&serde_json::json!({"kty":"oct","k":"AQAB"})).is_err());
        assert!(
            jwk_to_spki(&serde_json::json!({"kty":"EC","crv":"P-384","x":"AA","y":"AA"})).is_err()
        );
        // A 512-bit RSA key parses but is too small to register.
        let (spki, _) = jwk_to_spki(&serde_json::json!({
            "kty":"RSA","e":"AQAB","n": URL_SAFE_NO_PAD.encode([0xc5u8; 64])}))
        .unwrap();
        let (_, parsed) = SubjectPublicKeyInfo::from_der(&spki).unwrap();
        assert!(spki_key(&parsed).is_err());
    }
}
