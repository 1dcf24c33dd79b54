//! Edge devices: the activation key's wire format and the names a device's provisioning derives.
//!
//! An activation key is `base64url(JSON) "#" hex(SHA-512(base64url(JSON)))[..16]`, Azure's shape
//! (the suffix catches typos; it is not a MAC). The JSON names the device, its tenant, the
//! vault and where to activate, plus a one-time enrolment id and secret; the server keeps only
//! the secret's hash. No private key and no CIK travel in the key: the device proves the secret
//! once, registers its own public key, and reads the CIK from the vault with its identity.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Resource type of devices.
pub const DEVICE_TYPE: &str = "Microsoft.DataBoxEdge/dataBoxEdgeDevices";
/// An activation key is valid this long after it is generated (Azure: three days).
pub const KEY_LIFETIME_SECS: i64 = 72 * 3600;
/// Largest activation key accepted.
pub const MAX_KEY_LEN: usize = 8192;

/// What an activation key carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActivationKey {
    pub v: u32,
    pub device_id: String,
    pub resource_id: String,
    pub tenant_id: String,
    pub authority: String,
    pub activation_endpoint: String,
    pub vault_name: String,
    pub vault_uri: String,
    pub enrollment_id: String,
    /// 32 random bytes, base64url.
    pub enrollment_secret: String,
    /// Unix seconds.
    pub exp: i64,
}

fn checksum(body: &str) -> String {
    hex::encode(&strongbox_crypto::sha512(body.as_bytes())[..8])
}

impl ActivationKey {
    pub fn encode(&self) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("key serializes"));
        let sum = checksum(&body);
        format!("{body}#{sum}")
    }

    /// Parses a key, refusing one whose checksum does not match (a typo or a cut copy).
    pub fn parse(text: &str) -> Result<ActivationKey, &'static str> {
        let text = text.trim();
        if text.len() > MAX_KEY_LEN {
            return Err("The activation key is too long.");
        }
        let (body, sum) = text
            .rsplit_once('#')
            .ok_or("The activation key is malformed: it has no checksum.")?;
        if !strongbox_crypto::constant_time_eq(checksum(body).as_bytes(), sum.as_bytes()) {
            return Err("The activation key is malformed: its checksum does not match.");
        }
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| "The activation key is malformed.")?;
        let key: ActivationKey =
            serde_json::from_slice(&json).map_err(|_| "The activation key is malformed.")?;
        if key.v != 1 {
            return Err("The activation key's version is not supported.");
        }
        Ok(key)
    }

    /// The hash the server keeps of the enrolment secret.
    pub fn secret_hash(secret: &str) -> Vec<u8> {
        strongbox_crypto::sha256(secret.as_bytes()).to_vec()
    }
}

/// Device names: 2–50 letters, digits and hyphens, starting and ending with a letter or digit.
pub fn valid_device_name(name: &str) -> bool {
    let b = name.as_bytes();
    (2..=50).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// The vault name a device gets when the user gives none: its name made vault-safe (at most
/// 15 characters, starting with a letter) and `-kv` with four hex digits of the device id, so
/// two devices of the same name in different groups do not collide.
pub fn default_vault_name(device_name: &str, device_id: &str) -> String {
    let mut base = String::new();
    for c in device_name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || (c == '-' && !base.is_empty() && !base.ends_with('-')) {
            base.push(c);
        }
        if base.len() == 15 {
            break;
        }
    }
    let mut base = base.trim_end_matches('-').to_string();
    if !base.starts_with(|c: char| c.is_ascii_alphabetic()) {
        base.insert(0, 'd');
        base.truncate(15);
        base = base.trim_end_matches('-').to_string();
    }
    let suffix: String = device_id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(4)
        .collect();
    format!("{base}-kv{suffix}")
}

/// The audit storage account of a vault: its letters and digits (at most 19) and `audit`.
pub fn audit_account_name(vault_name: &str) -> String {
    let base: String = vault_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(19)
        .collect();
    format!("{base}audit")
}

/// The vault secret holding a device's Channel Integrity Key (Azure's `ase-cik-<guid>`).
pub fn cik_secret_name(device_id: &str) -> String {
    format!("sbx-cik-{device_id}")
}

/// The vault secret holding a device's disk recovery key (the agent pushes it).
pub fn disk_recovery_key_name(device_name: &str) -> String {
    format!("{device_name}-disk-recovery-key")
}

/// The vault secret holding a device's BMC user password (the agent pushes it).
pub fn bmc_password_name(device_name: &str) -> String {
    format!("{device_name}-bmc-password")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ActivationKey {
        ActivationKey {
            v: 1,
            device_id: "d".into(),
            resource_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices/e".into(),
            tenant_id: "t".into(),
            authority: "https://localhost:1".into(),
            activation_endpoint: "https://localhost:1/devices/activate".into(),
            vault_name: "e-kv1234".into(),
            vault_uri: "https://e-kv1234.vault.localhost:1/".into(),
            enrollment_id: "id".into(),
            enrollment_secret: "secret".into(),
            exp: 5,
        }
    }

    #[test]
    fn keys_round_trip_and_one_changed_character_is_refused() {
        let text = key().encode();
        assert_eq!(ActivationKey::parse(&text).unwrap(), key());
        let (body, sum) = text.rsplit_once('#').unwrap();
        assert_eq!(sum.len(), 16);
        assert_eq!(
            sum,
            hex::encode(&strongbox_crypto::sha512(body.as_bytes())[..8])
        );
        let mut bytes = text.clone().into_bytes();
        bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
        assert!(ActivationKey::parse(&String::from_utf8(bytes).unwrap()).is_err());
        assert!(ActivationKey::parse(body).is_err());
        assert!(ActivationKey::parse("x#y").is_err());
    }

    #[test]
    fn derived_names_follow_the_vault_and_storage_rules() {
        for (device, id) in [
            ("Edge-01", "ab12cd34-0000"),
            ("9lives", "ffff"),
            ("a--b--c-very-long-device-name-here", "0123"),
            ("x-", "9999"),
        ] {
            let v = default_vault_name(device, id);
            assert!(crate::names::vault_name(&v).is_ok(), "{device} -> {v}");
            let s = audit_account_name(&v);
            assert!((3..=24).contains(&s.len()), "{s}");
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
        }
        assert_eq!(default_vault_name("Edge-01", "ab12cd34"), "edge-01-kvab12");
        assert!(valid_device_name("edge-1") && !valid_device_name("-e") && !valid_device_name("e"));
    }
}
