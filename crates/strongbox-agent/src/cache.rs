//! The edge's last-known-good copy of the vault secrets its synced secrets reference, sealed
//! under the device's data key (`edge-cache.sealed`). Targets are rendered from here, so they
//! come back at boot and stay correct while the uplink is down; a value is replaced only by one
//! at least as new (a slow read never overwrites a newer value).

use crate::state::StateDir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use strongbox_client::Error;
use zeroize::Zeroize;

pub const CACHE_FILE: &str = "edge-cache.sealed";
/// Binds the sealed bytes to their purpose: the device state does not open as a cache.
const AAD: &[u8] = b"strongbox-agent edge cache v1";

/// What the vault last said about a referenced secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceState {
    Present,
    /// Deleted (soft or purged) or never there.
    Deleted,
    Disabled,
}

/// One referenced secret (its latest version, or a pinned one). `Debug` prints no value.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub version: String,
    /// The last value seen; kept when the source goes away (policy keep-last-known).
    pub value: Option<String>,
    pub created: i64,
    pub updated: i64,
    pub fetched_at: i64,
    pub state: SourceState,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("version", &self.version)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

/// The cache key of a reference: the lower-cased name, plus `/version` when pinned.
pub fn key(name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{}/{}", name.to_ascii_lowercase(), v.to_ascii_lowercase()),
        None => name.to_ascii_lowercase(),
    }
}

#[derive(Default, Serialize, Deserialize)]
pub struct Cache {
    entries: BTreeMap<String, Entry>,
    /// Synced secrets written to a target, with where: kept here so that one deleted while
    /// the agent was stopped still has its target removed at the next start.
    #[serde(default)]
    pub rendered: BTreeMap<String, crate::edge::TargetSpec>,
}

/// Whether `put` took the new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Changed,
    Same,
    /// Older than what the cache holds: ignored.
    Older,
}

impl Cache {
    pub fn load(dir: &StateDir) -> Result<Cache, Error> {
        Ok(dir.read_sealed(CACHE_FILE, AAD)?.unwrap_or_default())
    }

    pub fn save(&self, dir: &StateDir) -> Result<(), Error> {
        dir.write_sealed(CACHE_FILE, AAD, self)
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Takes `e` for `key` unless the cache holds a newer version (created later) or the same
    /// version updated later. `force` takes it anyway (the vault announced a restore or
    /// recovery, which brings back older versions on purpose).
    pub fn put(&mut self, key: &str, e: Entry, force: bool) -> Put {
        match self.entries.get_mut(key) {
            Some(old) => {
                let same = old.version == e.version
                    && old.state == e.state
                    && old.value.as_deref().map(str::as_bytes)
                        == e.value.as_deref().map(str::as_bytes);
                if same {
                    old.fetched_at = e.fetched_at;
                    return Put::Same;
                }
                let older = old.state == SourceState::Present
                    && e.state != SourceState::Deleted
                    && (e.created < old.created
                        || (e.version == old.version && e.updated < old.updated));
                if older && !force {
                    return Put::Older;
                }
                *old = e;
                Put::Changed
            }
            None => {
                self.entries.insert(key.to_string(), e);
                Put::Changed
            }
        }
    }

    /// Marks `key` gone (deleted or disabled), keeping its last value for keep-last-known.
    pub fn mark(&mut self, key: &str, state: SourceState, at: i64) -> Put {
        match self.entries.get_mut(key) {
            Some(old) if old.state == state => {
                old.fetched_at = at;
                Put::Same
            }
            Some(old) => {
                old.state = state;
                old.fetched_at = at;
                Put::Changed
            }
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        version: String::new(),
                        value: None,
                        created: 0,
                        updated: 0,
                        fetched_at: at,
                        state,
                    },
                );
                Put::Changed
            }
        }
    }

    /// Drops entries no synced secret references any more.
    pub fn retain(&mut self, keep: &std::collections::BTreeSet<String>) -> bool {
        let before = self.entries.len();
        self.entries.retain(|k, _| keep.contains(k));
        before != self.entries.len()
    }

    /// The oldest confirmation time of any entry: how old the edge's view may be.
    pub fn oldest_fetch(&self) -> Option<i64> {
        self.entries.values().map(|e| e.fetched_at).min()
    }
}

pub const TOKEN_FILE: &str = "identity-tokens.sealed";
const TOKEN_AAD: &[u8] = b"strongbox-agent identity tokens v1";

/// The device identity's last token per scope, sealed like the cache: bearer tokens are
/// credentials too. Served to local workloads while the token service cannot be reached.
#[derive(Default, Serialize, Deserialize)]
pub struct TokenCache {
    tokens: BTreeMap<String, (String, i64)>,
}

impl Drop for TokenCache {
    fn drop(&mut self) {
        for (t, _) in self.tokens.values_mut() {
            t.zeroize();
        }
    }
}

impl TokenCache {
    /// The kept tokens; an unreadable file is an empty cache (it only holds tokens).
    pub fn load(dir: &StateDir) -> TokenCache {
        dir.read_sealed(TOKEN_FILE, TOKEN_AAD)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Keeps `token` for `scope` in the sealed file (read, changed and written under the data
    /// dir's lock, so two token requests at once both keep theirs).
    pub fn keep(dir: &StateDir, scope: &str, token: &str, exp: i64, now: i64) -> Result<(), Error> {
        dir.update_sealed(TOKEN_FILE, TOKEN_AAD, |t: &mut TokenCache| {
            t.put(scope, token, exp, now)
        })
    }

    /// Keeps `token` for `scope`, dropping expired ones.
    fn put(&mut self, scope: &str, token: &str, exp: i64, now: i64) {
        self.tokens.retain(|_, (_, e)| *e > now);
        self.tokens
            .insert(scope.to_string(), (token.to_string(), exp));
    }

    /// A kept token for `scope` that has not expired.
    pub fn get(&self, scope: &str, now: i64) -> Option<(String, i64)> {
        self.tokens
            .get(scope)
            .filter(|(_, exp)| *exp > now)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, value: &str, created: i64, updated: i64) -> Entry {
        Entry {
            version: version.into(),
            value: Some(value.into()),
            created,
            updated,
            fetched_at: 1,
            state: SourceState::Present,
        }
    }

    #[test]
    fn never_takes_an_older_value_unless_forced_and_survives_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir.path()).unwrap();
        let mut c = Cache::default();
        assert_eq!(
            c.put("a", entry("v2", "new-value", 20, 20), false),
            Put::Changed
        );
        assert_eq!(
            c.put("a", entry("v1", "old-value", 10, 10), false),
            Put::Older
        );
        assert_eq!(
            c.put("a", entry("v2", "new-value", 20, 20), false),
            Put::Same
        );
        assert_eq!(
            c.put("a", entry("v1", "old-value", 10, 10), true),
            Put::Changed
        );
        assert_eq!(c.mark("a", SourceState::Deleted, 30), Put::Changed);
        assert_eq!(c.get("a").unwrap().value.as_deref(), Some("old-value"));
        c.save(&sd).unwrap();
        let raw = std::fs::read(dir.path().join(CACHE_FILE)).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("old-value"));
        let back = Cache::load(&sd).unwrap();
        assert_eq!(back.get("a").unwrap().state, SourceState::Deleted);
        assert_eq!(key("Opc-User", Some("ABC")), "opc-user/abc");
    }

    #[test]
    fn identity_tokens_are_kept_sealed_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir.path()).unwrap();
        TokenCache::keep(&sd, "https://vault/.default", "eyJ-token-text", 100, 0).unwrap();
        TokenCache::keep(&sd, "other-scope", "eyJ-other", 100, 0).unwrap();
        let raw = std::fs::read(dir.path().join(TOKEN_FILE)).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("eyJ-token-text"));
        let back = TokenCache::load(&sd);
        assert_eq!(
            back.get("https://vault/.default", 99).unwrap().0,
            "eyJ-token-text"
        );
        assert!(back.get("https://vault/.default", 100).is_none());
        assert!(back.get("other", 0).is_none());
        assert_eq!(back.get("other-scope", 0).unwrap().0, "eyJ-other");
    }
}
