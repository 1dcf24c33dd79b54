//! The file challenge of the Azure Arc managed-identity form. A first request gets
//! `401 WWW-Authenticate: Basic realm=<file>`; the file holds fresh random content that only a
//! local process allowed to read the directory can present back as `Authorization: Basic
//! <content>`. Each challenge is single-use: redeeming (or expiring) it removes the file.
//!
//! azure-identity (through MSAL) reads `/var/opt/azcmagent/tokens/<basename>.key` on Linux
//! whatever directory the realm names, refuses files over 4096 bytes, and uses the content
//! verbatim, so files are `<dir>/strongbox-<hex>.key` holding 43 base64url characters and no
//! newline, mode 0600. Challenges live in this process's memory: the file is on this host.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How long a challenge may wait to be redeemed.
const CHALLENGE_TTL_MS: i64 = 60_000;
/// Outstanding challenges at most; more are refused until some are redeemed or expire.
const MAX_PENDING: usize = 256;
const PREFIX: &str = "strongbox-";

struct Pending {
    endpoint_id: String,
    path: PathBuf,
    expires_ms: i64,
}

pub struct ArcChallenges {
    dir: PathBuf,
    /// By SHA-256 of the file content.
    pending: Mutex<HashMap<[u8; 32], Pending>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArcError {
    #[error("too many outstanding challenges")]
    Busy,
    #[error("challenge file: {0}")]
    Io(#[from] std::io::Error),
}

/// `Metadata: true` (any case): the SSRF guard of every IMDS-shaped endpoint.
pub fn metadata_header_ok(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The credential of an `Authorization: Basic <content>` header: the challenge file's content,
/// verbatim (MSAL does not base64 it).
pub fn basic_credential(authorization: Option<&str>) -> Option<&str> {
    authorization
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .map(str::trim)
}

/// The `WWW-Authenticate` value of a challenge: `Basic realm=<path>` (MSAL splits it at `=`).
pub fn www_authenticate(path: &Path) -> String {
    format!("Basic realm={}", path.display())
}

fn is_ours(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|n| n.strip_suffix(".key"))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl ArcChallenges {
    /// Uses `dir` for challenge files, creating it (0700) if missing, and removes challenge
    /// files a previous run left behind (their challenges died with it). Files younger than
    /// two challenge lifetimes are left alone: another server on this host may own them.
    pub fn open(dir: &Path, now_ms: i64) -> std::io::Result<ArcChallenges> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let modified_ms = entry
                .metadata()?
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            if entry.file_name().to_str().is_some_and(is_ours)
                && modified_ms < now_ms - 2 * CHALLENGE_TTL_MS
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(ArcChallenges {
            dir: dir.to_path_buf(),
            pending: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sweep(pending: &mut HashMap<[u8; 32], Pending>, now_ms: i64) {
        pending.retain(|_, p| {
            let keep = p.expires_ms > now_ms;
            if !keep {
                let _ = std::fs::remove_file(&p.path);
            }
            keep
        });
    }

    /// Writes a fresh challenge file for `endpoint_id`; returns its path for the realm.
    pub fn issue(&self, endpoint_id: &str, now_ms: i64) -> Result<PathBuf, ArcError> {
        {
            let mut pending = self.pending.lock().expect("lock");
            Self::sweep(&mut pending, now_ms);
            if pending.len() >= MAX_PENDING {
                return Err(ArcError::Busy);
            }
        }
        let content = URL_SAFE_NO_PAD.encode(strongbox_crypto::random_bytes::<32>());
        let path = self
            .dir
            .join(format!("{PREFIX}{}.key", strongbox_crypto::random_hex_id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        {
            use std::io::Write;
            let mut file = options.open(&path)?;
            file.write_all(content.as_bytes())?;
            file.sync_all()?;
        }
        self.pending.lock().expect("lock").insert(
            strongbox_crypto::sha256(content.as_bytes()),
            Pending {
                endpoint_id: endpoint_id.to_string(),
                path: path.clone(),
                expires_ms: now_ms + CHALLENGE_TTL_MS,
            },
        );
        Ok(path)
    }

    /// Redeems the content of a challenge file for `endpoint_id`. True once per challenge, and
    /// only before it expires; the file is removed either way once the content matched.
    pub fn redeem(&self, endpoint_id: &str, content: &str, now_ms: i64) -> bool {
        let key = strongbox_crypto::sha256(content.as_bytes());
        let mut pending = self.pending.lock().expect("lock");
        Self::sweep(&mut pending, now_ms);
        match pending.remove(&key) {
            Some(p) => {
                let _ = std::fs::remove_file(&p.path);
                p.endpoint_id == endpoint_id
            }
            None => false,
        }
    }

    /// Challenges waiting to be redeemed (for tests and health).
    pub fn pending(&self) -> usize {
        self.pending.lock().expect("lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_is_redeemed_once_by_its_endpoint_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let arc = ArcChallenges::open(dir.path(), 1_000).unwrap();
        let path = arc.issue("ep", 1_000).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(is_ours(name) && path.parent() == Some(dir.path()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let content = std::fs::read_to_string(&path).unwrap();
        assert_eq!(content.len(), 43, "no newline, small");
        assert!(!arc.redeem("ep", "wrong", 1_001));
        assert!(arc.redeem("ep", &content, 1_001));
        assert!(!path.exists(), "the file is removed once redeemed");
        assert!(!arc.redeem("ep", &content, 1_002), "single use");

        // Another endpoint's content does not open this one (and burns the challenge).
        let other = arc.issue("ep2", 2_000).unwrap();
        let c2 = std::fs::read_to_string(&other).unwrap();
        assert!(!arc.redeem("ep", &c2, 2_001));
        assert!(!arc.redeem("ep2", &c2, 2_002));

        // Expired challenges are refused and their files swept.
        let old = arc.issue("ep", 3_000).unwrap();
        let c3 = std::fs::read_to_string(&old).unwrap();
        assert!(!arc.redeem("ep", &c3, 3_000 + CHALLENGE_TTL_MS));
        assert!(!old.exists());
        assert_eq!(arc.pending(), 0);
    }

    #[test]
    fn old_leftovers_of_a_previous_run_are_removed_but_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(format!("{PREFIX}{}.key", "ab".repeat(16)));
        let foreign = dir.path().join("himds.key");
        std::fs::write(&stale, "x").unwrap();
        std::fs::write(&foreign, "y").unwrap();
        let written_ms = std::fs::metadata(&stale)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Young files may belong to another live server on this host: kept.
        ArcChallenges::open(dir.path(), written_ms + 1_000).unwrap();
        assert!(stale.exists());
        ArcChallenges::open(dir.path(), written_ms + 3 * CHALLENGE_TTL_MS).unwrap();
        assert!(!stale.exists());
        assert!(foreign.exists());
    }
}
