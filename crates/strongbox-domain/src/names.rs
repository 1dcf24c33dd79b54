//! Object names, canonicalised once: AKV names are case-insensitive.

use crate::DomainError;

/// AKV: 1-127 characters, ASCII letters, digits and dashes.
pub fn secret_name(raw: &str) -> Result<String, DomainError> {
    let ok = !raw.is_empty()
        && raw.len() <= 127
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(DomainError::BadParameter(format!(
            "The request URI contains an invalid name: {}. Secret names are 1-127 characters of letters, digits and dashes.",
            truncate(raw)
        )))
    }
}

/// Vault names: 3-24 characters, letters, digits and hyphens, starting with a letter, not ending
/// with a hyphen and without consecutive hyphens.
pub fn vault_name(raw: &str) -> Result<String, DomainError> {
    let bytes = raw.as_bytes();
    let ok = (3..=24).contains(&raw.len())
        && bytes[0].is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && !raw.ends_with('-')
        && !raw.contains("--");
    if ok {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(DomainError::BadParameter(format!(
            "The vault name '{}' is invalid: use 3-24 letters, digits and single hyphens, starting with a letter.",
            truncate(raw)
        )))
    }
}

/// A version id as Strongbox makes them: 32 lowercase hex digits.
pub fn is_version_id(raw: &str) -> bool {
    raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Echoing user input in errors is fine for names, but bounded.
fn truncate(raw: &str) -> String {
    raw.chars().take(130).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_follow_akv_rules_and_fold_case() {
        assert_eq!(secret_name("My-Secret-1").unwrap(), "my-secret-1");
        assert!(secret_name(&"a".repeat(127)).is_ok());
        for bad in ["", "a_b", "a b", "a.b", "ä", &"a".repeat(128)] {
            assert!(secret_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn vault_names_follow_akv_rules() {
        assert_eq!(vault_name("Dev-01").unwrap(), "dev-01");
        for bad in ["ab", "1abc", "abc-", "a--b", "abc_d", &"a".repeat(25)] {
            assert!(vault_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
