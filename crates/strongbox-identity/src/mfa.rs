//! The second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of skew either
//! way; each step good once) with the secret sealed under the root key, and ten one-use recovery
//! codes kept as keyed hashes.

use secrecy::SecretString;
use strongbox_crypto::Keyring;
use strongbox_domain::DomainError;
use strongbox_store::{Store, UserRow};

const ISSUER: &str = "Strongbox";
const RECOVERY_MAC: &str = "recovery-code";
const RECOVERY_CODES: usize = 10;
/// Unambiguous letters and digits for recovery codes (no 0/O, 1/I/L).
const RECOVERY_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

fn totp_aad(object_id: &str) -> Vec<u8> {
    format!("strongbox totp {object_id}").into_bytes()
}

fn totp(secret: Vec<u8>, upn: &str) -> Result<totp_rs::Totp, DomainError> {
    totp_rs::Builder::new()
        .with_secret(secret)
        .with_account_name(upn)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| DomainError::Internal(format!("TOTP: {e}")))
}

/// What enrolment hands the person once: the `otpauth://` URI (for an authenticator app) and
/// the recovery codes.
pub struct Enrollment {
    pub otpauth_uri: SecretString,
    pub recovery_codes: Vec<SecretString>,
}

/// Enrols (or re-enrols) the user: a new TOTP secret and new recovery codes replace the old.
pub async fn enroll(
    store: &dyn Store,
    keyring: &Keyring,
    user: &UserRow,
) -> Result<Enrollment, DomainError> {
    let secret = strongbox_crypto::random_bytes::<20>();
    let uri = totp(secret.to_vec(), &user.upn)?
        .to_url()
        .map_err(|e| DomainError::Internal(format!("TOTP URI: {e}")))?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let raw = strongbox_crypto::random_bytes::<10>();
        let code: String = raw
            .iter()
            .map(|b| RECOVERY_ALPHABET[usize::from(*b) % RECOVERY_ALPHABET.len()] as char)
            .collect();
        hashes.push(keyring.mac(RECOVERY_MAC, code.as_bytes()).to_vec());
        codes.push(SecretString::from(format!("{}-{}", &code[..5], &code[5..])));
    }
    store
        .update_user(&UserRow {
            totp_sealed: Some(keyring.seal(&totp_aad(&user.object_id), &secret)),
            ..user.clone()
        })
        .await?;
    store
        .replace_recovery_codes(&user.object_id, hashes)
        .await?;
    Ok(Enrollment {
        otpauth_uri: SecretString::from(uri),
        recovery_codes: codes,
    })
}

/// Removes the user's TOTP secret and recovery codes.
pub async fn remove(store: &dyn Store, user: &UserRow) -> Result<(), DomainError> {
    store
        .update_user(&UserRow {
            totp_sealed: None,
            ..user.clone()
        })
        .await?;
    store
        .replace_recovery_codes(&user.object_id, vec![])
        .await?;
    Ok(())
}

/// Whether `code` is the user's current TOTP code (not used before) or an unused recovery code,
/// which it uses up.
pub(crate) async fn verify(
    store: &dyn Store,
    keyring: &Keyring,
    user: &UserRow,
    code: &str,
    now: i64,
) -> Result<bool, DomainError> {
    let Some(sealed) = &user.totp_sealed else {
        return Ok(false);
    };
    let code: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        let secret = keyring
            .open_sealed(&totp_aad(&user.object_id), sealed)
            .map_err(|e| DomainError::Internal(format!("TOTP secret: {e}")))?;
        let Some(step) = totp(secret.to_vec(), &user.upn)?.check(&code, now.max(0) as u64) else {
            return Ok(false);
        };
        return Ok(store
            .advance_totp_step(&user.object_id, step as i64)
            .await?);
    }
    if code.len() != 10 {
        return Ok(false);
    }
    let hash = keyring.mac(RECOVERY_MAC, code.as_bytes());
    Ok(store
        .consume_recovery_code(&user.object_id, &hash, now)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_rfc_6238() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", T = 59 s: 94287082 (8
        // digits), so the 6-digit code is its last six.
        let t = totp(b"12345678901234567890".to_vec(), "a@b.example").expect("totp");
        assert_eq!(t.generate(59).to_string(), "287082");
        assert_eq!(t.check("287082", 59 + 30), Some(1), "one step of skew");
        assert_eq!(t.check("287082", 59 + 90), None);
    }
}
