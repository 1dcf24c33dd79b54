//! The sync engine (issue 5): follows the bound vault's change feed (long poll, resumable
//! cursor), falls back to polling the standard API every rotation interval, keeps the sealed
//! last-known-good cache ([`crate::cache`]) and renders every synced secret's target from it.
//!
//! Errors are classified before acting (research edge-sync §7.2): a deleted or disabled source is
//! authoritative (the synced secret's policy applies); 401/403 keep the last value and report
//! `Error(AccessLost)`; anything transient keeps the last value and reports `Stale(since)`.
//! Nothing is ever written to, or deleted from, the vault here.

use crate::cache::{self, Cache, Entry, Put, SourceState};
use crate::edge::{EdgeConfig, OnSourceDeleted, SyncedSecret, TargetSpec};
use crate::metrics::Metrics;
use crate::targets::files::{FileOptions, FileTarget};
use crate::targets::kubernetes::KubernetesTarget;
use crate::targets::{Payload, Target, TargetError};
use crate::{Agent, now};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use strongbox_client::{Error, secrets};
use tokio::sync::Notify;

/// The most secret names one change-feed request may name (the server's limit).
const MAX_FEED_NAMES: usize = 256;
/// How long one long poll waits at the server.
const FEED_WAIT_SECS: u32 = 30;
/// Retry delays after a failure: capped exponential with jitter.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The one retry rule for the vault, the targets and the Kubernetes watch: 0.5 s doubling to
/// 10 s, each delay drawn between half and all of it, so no wait exceeds 10 s and a fleet
/// coming back from an outage spreads out.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The delay before the next attempt; the one after it doubles (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        let jitter =
            u64::from(strongbox_crypto::random_bytes::<1>()[0]) * d.as_millis() as u64 / 512;
        d - Duration::from_millis(jitter)
    }

    /// A success: the next failure waits the least again.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// How a synced secret is doing, as the agent API and CLI show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// `Pending` (not rendered yet), `Synced`, `Stale` or `Error`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_successful_sync_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<i64>,
    pub items: Vec<ItemStatus>,
    pub target: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ItemStatus {
    pub key: String,
    pub secret: String,
    /// The version the edge holds (empty when none).
    pub version: String,
    /// `Present`, `Deleted`, `Disabled` or `Missing` (never fetched).
    pub state: String,
}

/// What the engine and the local API share.
pub struct Shared {
    pub data_dir: PathBuf,
    pub secrets_dir: PathBuf,
    /// The vault this edge is bound to (uri, name): the device's, which a recovery after a
    /// purge replaces with a new one.
    vault: RwLock<(String, String)>,
    pub config: RwLock<EdgeConfig>,
    pub status: Mutex<BTreeMap<String, SyncStatus>>,
    pub metrics: Metrics,
    /// Config changed or a sync was asked for: the engine re-reads everything.
    pub wake: Notify,
    /// A target may have been changed or deleted outside the agent (a Kubernetes watch event):
    /// the engine renders again from the cache, without a vault call.
    pub retarget: Arc<Notify>,
    /// Since when the vault has been unreachable.
    pub uplink_down_since: Mutex<Option<i64>>,
    /// Why the device cannot use the vault at all (sign-in refused, vault gone), until a
    /// round works again.
    pub access_error: Mutex<Option<String>>,
    /// Following the change feed (false: polling every rotation interval).
    pub feed_active: AtomicBool,
    targets: Mutex<HashMap<String, Arc<dyn Target>>>,
    files: FileOptions,
}

impl Shared {
    pub fn new(
        data_dir: PathBuf,
        secrets_dir: PathBuf,
        vault_uri: String,
        vault_name: String,
        files: FileOptions,
    ) -> Result<Shared, Error> {
        let config = EdgeConfig::load(&data_dir)?;
        Ok(Shared {
            data_dir,
            secrets_dir,
            vault: RwLock::new((vault_uri, vault_name)),
            config: RwLock::new(config),
            status: Mutex::new(BTreeMap::new()),
            metrics: Metrics::default(),
            wake: Notify::new(),
            retarget: Arc::new(Notify::new()),
            uplink_down_since: Mutex::new(None),
            access_error: Mutex::new(None),
            feed_active: AtomicBool::new(false),
            targets: Mutex::new(HashMap::new()),
            files,
        })
    }

    pub fn vault_uri(&self) -> String {
        self.vault.read().expect("vault lock").0.clone()
    }

    pub fn vault_name(&self) -> String {
        self.vault.read().expect("vault lock").1.clone()
    }

    pub fn config(&self) -> EdgeConfig {
        self.config.read().expect("config lock").clone()
    }

    /// The target a synced secret is delivered to (built once per distinct spec).
    pub async fn target(&self, spec: &TargetSpec) -> Result<Arc<dyn Target>, String> {
        let id = serde_json::to_string(spec).expect("spec serializes");
        if let Some(t) = self.targets.lock().expect("targets lock").get(&id) {
            return Ok(t.clone());
        }
        let t: Arc<dyn Target> = match spec {
            TargetSpec::Files { dir } => Arc::new(FileTarget::new(
                dir.clone().unwrap_or_else(|| self.secrets_dir.clone()),
                self.files,
            )),
            TargetSpec::Kubernetes { namespace } => Arc::new(
                KubernetesTarget::from_env(Some(namespace))
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        let mut targets = self.targets.lock().expect("targets lock");
        // Another round may have built it meanwhile: keep the one already followed.
        if let Some(t) = targets.get(&id) {
            return Ok(t.clone());
        }
        t.follow_changes(self.retarget.clone());
        targets.insert(id, t.clone());
        Ok(t)
    }

    pub fn status_of(&self, name: &str) -> Option<SyncStatus> {
        self.status.lock().expect("status lock").get(name).cloned()
    }
}

/// Why a fetch did not give a value.
#[derive(Debug)]
enum FetchError {
    /// Authoritative: 401/403 other than disabled, or the vault is gone. Keep the last value.
    Access(String),
    /// Unreachable, timeout, 5xx, 429: keep the last value, report Stale.
    Transient(String),
}

fn classify(e: Error) -> FetchError {
    if let Error::Auth { code, .. } = &e {
        // The token service refused the device (identity disabled or deleted).
        return FetchError::Access(format!("AccessLost: the device cannot sign in ({code})"));
    }
    match e.status() {
        Some(401 | 403) => FetchError::Access(format!("AccessLost: {}", e.code())),
        Some(404) if e.code() == "VaultNotFound" => FetchError::Access("VaultNotFound".into()),
        Some(400) => FetchError::Access(format!("Refused: {}", e.code())),
        _ => FetchError::Transient(e.to_string()),
    }
}

/// The server answered as one without a change feed (poll instead); a vanished vault is not
/// that (it is classified as an access error).
fn feed_unsupported(status: u16, body: Option<&Value>) -> bool {
    matches!(status, 400 | 404 | 405 | 501)
        && body.is_none_or(|b| b["error"]["code"] != "VaultNotFound")
}

/// A target is due to be rendered again (see [`Engine::target_due`]).
struct Retarget;

pub struct Engine {
    agent: Agent,
    shared: Arc<Shared>,
    cache: Cache,
    /// The vault token and its expiry, reused until a minute before it expires.
    token: Option<(String, i64)>,
    /// The last failure per synced secret that is not about the uplink.
    errors: BTreeMap<String, String>,
    /// Synced secrets whose target could not be written for now (Kubernetes API unreachable,
    /// 5xx, 429): since when, why, and the server's Retry-After. Reported Stale, retried with
    /// `target_backoff`.
    unavailable: BTreeMap<String, (i64, String, Option<Duration>)>,
    target_backoff: Backoff,
    target_retry_at: Option<tokio::time::Instant>,
    /// References the vault refused (access lost), by cache key, until a read works again.
    refused: BTreeMap<String, String>,
    last_success: Option<i64>,
    last_attempt: Option<i64>,
    backoff: Backoff,
    rotation: Duration,
    use_feed: bool,
    /// The device moved to another vault: the cursor (of the old one) is void.
    vault_moved: bool,
}

impl Engine {
    pub fn new(
        agent: Agent,
        shared: Arc<Shared>,
        rotation: Duration,
        use_feed: bool,
    ) -> Result<Engine, Error> {
        let cache = match Cache::load(&agent.dir) {
            Ok(c) => c,
            Err(e) => {
                // A damaged or foreign cache is set aside (never deleted: it may be evidence)
                // and rebuilt from the vault; the targets stay as they are meanwhile.
                let path = agent.dir.dir().join(cache::CACHE_FILE);
                let aside = path.with_extension(format!("unreadable-{}", now()));
                eprintln!(
                    "warning: {e}; set aside as {} and rebuilt from the vault",
                    aside.display()
                );
                std::fs::rename(&path, &aside)
                    .map_err(|e| Error::Config(format!("setting {} aside: {e}", path.display())))?;
                Cache::default()
            }
        };
        Ok(Engine {
            agent,
            shared,
            cache,
            token: None,
            errors: BTreeMap::new(),
            unavailable: BTreeMap::new(),
            target_backoff: Backoff::default(),
            target_retry_at: None,
            refused: BTreeMap::new(),
            last_success: None,
            last_attempt: None,
            backoff: Backoff::default(),
            rotation,
            use_feed,
            vault_moved: false,
        })
    }

    async fn token(&mut self) -> Result<String, Error> {
        if let Some((t, exp)) = &self.token
            && *exp - 60 > now()
        {
            return Ok(t.clone());
        }
        let scope = self.agent.state().vault_scope.clone();
        let (t, exp) = self.agent.token_for(&scope).await?;
        self.token = Some((t.clone(), exp));
        Ok(t)
    }

    async fn vault_call(
        &mut self,
        call: strongbox_client::Call,
    ) -> Result<(u16, Option<Value>), Error> {
        let token = self.token().await?;
        let r = self.agent.call(&token, call).await;
        let status = match &r {
            Ok((s, _)) => s.to_string(),
            Err(_) => "0".into(),
        };
        self.shared
            .metrics
            .vault_requests
            .get_or_create(&crate::metrics::Status { status })
            .inc();
        if let Ok((401, _)) = r {
            // A revoked or expired token: the next call asks for a new one.
            self.token = None;
        }
        r
    }

    /// Reads one reference from the vault into the cache. `force` accepts an older version
    /// (the feed announced a restore or recovery).
    async fn fetch(
        &mut self,
        name: &str,
        version: Option<&str>,
        force: bool,
    ) -> Result<Put, FetchError> {
        let key = cache::key(name, version);
        let r = self.fetch_inner(&key, name, version, force).await;
        match &r {
            Ok(_) => {
                self.refused.remove(&key);
            }
            Err(FetchError::Access(m)) => {
                self.refused.insert(key, m.clone());
            }
            Err(FetchError::Transient(_)) => {}
        }
        r
    }

    async fn fetch_inner(
        &mut self,
        key: &str,
        name: &str,
        version: Option<&str>,
        force: bool,
    ) -> Result<Put, FetchError> {
        let r = self
            .vault_call(secrets::get(&self.shared.vault_uri(), name, version))
            .await
            .map_err(classify)?;
        let at = now();
        match r {
            (200, Some(b)) => {
                let s: secrets::Secret = serde_json::from_value(b)
                    .map_err(|e| FetchError::Transient(format!("decoding the secret: {e}")))?;
                let enabled = s.attributes.enabled.unwrap_or(true);
                if !enabled {
                    return Ok(self.cache.mark(key, SourceState::Disabled, at));
                }
                let e = Entry {
                    version: s.version().to_string(),
                    value: s.value.clone(),
                    created: s.attributes.created.unwrap_or(0),
                    updated: s.attributes.updated.unwrap_or(0),
                    fetched_at: at,
                    state: SourceState::Present,
                };
                Ok(self.cache.put(key, e, force))
            }
            // Only the vault's own answers are authoritative: a proxy's bare 404 is not a delete.
            (404, Some(b)) if b["error"]["code"] == "SecretNotFound" => {
                Ok(self.cache.mark(key, SourceState::Deleted, at))
            }
            (403, Some(b)) if b["error"]["innererror"]["code"] == "SecretDisabled" => {
                Ok(self.cache.mark(key, SourceState::Disabled, at))
            }
            (s, b) => Err(classify(strongbox_client::http_error(s, b.as_ref()))),
        }
    }

    /// Every (name, version) the synced secrets reference.
    fn references(config: &EdgeConfig) -> BTreeSet<(String, Option<String>)> {
        config
            .synced_secrets
            .values()
            .flat_map(|s| s.references.iter())
            .map(|r| (r.secret.to_ascii_lowercase(), r.version.clone()))
            .collect()
    }

    /// Reads every referenced secret. Ok even when some are refused (their synced secrets
    /// report the error); Err only when the vault cannot be reached.
    async fn full_sync(&mut self) -> Result<(), String> {
        let config = self.shared.config();
        let refs = Self::references(&config);
        let mut changed = false;
        for (name, version) in &refs {
            // One sequential reader: what a full read returns is the vault's state now, even
            // an older version brought back by a restore the feed did not show.
            match self.fetch(name, version.as_deref(), true).await {
                Ok(p) => changed |= p == Put::Changed,
                Err(FetchError::Access(_)) => {}
                Err(FetchError::Transient(m)) => {
                    if changed {
                        self.save_cache()?;
                    }
                    return Err(m);
                }
            }
        }
        let keep: BTreeSet<String> = refs
            .iter()
            .map(|(n, v)| cache::key(n, v.as_deref()))
            .collect();
        changed |= self.cache.retain(&keep);
        self.refused.retain(|k, _| keep.contains(k));
        if changed {
            self.save_cache()?;
        }
        self.connected();
        self.render_all(&config, None).await;
        Ok(())
    }

    /// Persists the cache; values that are not persisted are not rendered (after a reboot the
    /// cache would otherwise put older values back over them).
    fn save_cache(&mut self) -> Result<(), String> {
        self.cache.save(&self.agent.dir).map_err(|e| {
            self.count_failure("CacheWrite");
            format!("saving the edge cache failed: {e}")
        })
    }

    fn count_failure(&self, reason: &str) {
        self.shared
            .metrics
            .sync_failures
            .get_or_create(&crate::metrics::Reason {
                reason: reason.into(),
            })
            .inc();
    }

    fn connected(&mut self) {
        let t = now();
        self.last_success = Some(t);
        self.last_attempt = Some(t);
        self.backoff.reset();
        *self.shared.uplink_down_since.lock().expect("uplink lock") = None;
        *self.shared.access_error.lock().expect("access lock") = None;
        self.shared.metrics.stale_seconds.set(0.0);
    }

    fn disconnected(&mut self, why: &str) {
        let t = now();
        self.last_attempt = Some(t);
        let mut down = self.shared.uplink_down_since.lock().expect("uplink lock");
        if down.is_none() {
            eprintln!("warning: the vault is unreachable, serving from the local cache: {why}");
            *down = Some(t);
        }
        self.shared
            .metrics
            .stale_seconds
            .set((t - down.unwrap_or(t)) as f64);
        drop(down);
        self.count_failure("Unreachable");
    }

    /// Renders every synced secret from the cache (`only`: just these), removes the targets of
    /// synced secrets that are gone, and refreshes statuses. `changed_at_ms`: the vault commit
    /// time of the change being delivered, for the latency histogram.
    async fn render_all(
        &mut self,
        config: &EdgeConfig,
        changed_at_ms: Option<(i64, &BTreeSet<String>)>,
    ) {
        // Synced secrets deleted from the config (the API removes their targets too; this
        // covers an edit of edge.json while the agent was stopped).
        let gone: Vec<(String, TargetSpec)> = self
            .cache
            .rendered
            .iter()
            .filter(|(n, spec)| {
                config
                    .synced_secrets
                    .get(*n)
                    .is_none_or(|s| &s.target != *spec)
            })
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        let before = self.cache.rendered.clone();
        for (name, spec) in gone {
            let removed = match self.shared.target(&spec).await {
                Ok(t) => match t.remove(&name).await {
                    // Nothing of ours is there: nothing left to remove.
                    Err(TargetError::NotOurs(m)) => {
                        eprintln!("warning: the target of the removed {name} is not ours: {m}");
                        Ok(())
                    }
                    r => r.map_err(|e| e.to_string()),
                },
                Err(e) => Err(e),
            };
            match removed {
                Ok(()) => {
                    self.cache.rendered.remove(&name);
                    self.errors.remove(&name);
                    self.unavailable.remove(&name);
                }
                // Kept, so the next round tries again.
                Err(e) => eprintln!("warning: removing the target of {name}: {e}"),
            }
        }
        let mut statuses = BTreeMap::new();
        for s in config.synced_secrets.values() {
            let touched = changed_at_ms.is_none_or(|(_, keys)| {
                s.references
                    .iter()
                    .any(|r| keys.contains(&cache::key(&r.secret, r.version.as_deref())))
            });
            if touched {
                match self.render(s).await {
                    Ok(true) => {
                        self.shared.metrics.target_writes.inc();
                        if let Some((ms, _)) = changed_at_ms {
                            let ms_now = crate::now_ms();
                            self.shared
                                .metrics
                                .sync_latency
                                .observe(((ms_now - ms).max(0)) as f64 / 1000.0);
                        }
                    }
                    Ok(false) => {}
                    Err(e) if e.is_transient() => {
                        self.count_failure("TargetUnavailable");
                        self.errors.remove(&s.name);
                        let after = match &e {
                            TargetError::Unavailable(_, after) => *after,
                            _ => None,
                        };
                        let since = self.unavailable.get(&s.name).map_or_else(now, |u| u.0);
                        self.unavailable
                            .insert(s.name.clone(), (since, e.to_string(), after));
                    }
                    Err(e) => {
                        self.count_failure("Target");
                        self.unavailable.remove(&s.name);
                        self.errors
                            .insert(s.name.clone(), format!("TargetError: {e}"));
                    }
                }
            }
            let target = match self.shared.target(&s.target).await {
                Ok(t) => t.describe(),
                Err(e) => format!("unavailable: {e}"),
            };
            statuses.insert(s.name.clone(), self.status(s, target));
        }
        let mut counts: BTreeMap<String, i64> = ["Synced", "Stale", "Error", "Pending"]
            .iter()
            .map(|s| (s.to_string(), 0))
            .collect();
        for st in statuses.values() {
            *counts.entry(st.state.clone()).or_default() += 1;
        }
        for (state, n) in counts {
            self.shared
                .metrics
                .synced_secrets
                .get_or_create(&crate::metrics::State { state })
                .set(n);
        }
        if let Some(oldest) = self.cache.oldest_fetch() {
            self.shared
                .metrics
                .cache_age
                .set((now() - oldest).max(0) as f64);
        }
        *self.shared.status.lock().expect("status lock") = statuses;
        self.unavailable
            .retain(|n, _| config.synced_secrets.contains_key(n));
        self.schedule_target_retry();
        if self.cache.rendered != before
            && let Err(e) = self.save_cache()
        {
            eprintln!("warning: {e}");
        }
    }

    /// Writes one synced secret's target if its content changed. All keys switch together;
    /// nothing is written while a key was never fetched.
    async fn render(&mut self, s: &SyncedSecret) -> Result<bool, TargetError> {
        let target = self
            .shared
            .target(&s.target)
            .await
            .map_err(TargetError::Api)?;
        let mut data = BTreeMap::new();
        let mut missing = Vec::new();
        for r in &s.references {
            let key = cache::key(&r.secret, r.version.as_deref());
            match self.cache.get(&key) {
                Some(e)
                    if e.state == SourceState::Present
                        || s.on_source_deleted == OnSourceDeleted::KeepLastKnown =>
                {
                    match &e.value {
                        Some(v) => {
                            data.insert(
                                r.key.clone(),
                                zeroize::Zeroizing::new(v.as_bytes().to_vec()),
                            );
                        }
                        None => missing.push(r.key.clone()),
                    }
                }
                Some(_) => {} // deleted or disabled at the source: the key leaves the target
                None => missing.push(r.key.clone()),
            }
        }
        if !missing.is_empty() {
            self.errors.remove(&s.name);
            self.unavailable.remove(&s.name);
            return Ok(false);
        }
        // A type's required key gone at the source (basic-auth without its password): the
        // target goes as a whole rather than keep the deleted value.
        if s.secret_type
            .check_keys(data.keys().map(String::as_str))
            .is_err()
        {
            data.clear();
        }
        let result = if data.is_empty() {
            target.remove(&s.name).await.map(|_| true)
        } else {
            target
                .apply(&Payload {
                    name: s.name.clone(),
                    secret_type: s.secret_type,
                    data,
                })
                .await
        };
        match result {
            Ok(changed) => {
                self.errors.remove(&s.name);
                self.unavailable.remove(&s.name);
                self.cache.rendered.insert(s.name.clone(), s.target.clone());
                Ok(changed)
            }
            Err(e) => Err(e),
        }
    }

    fn status(&self, s: &SyncedSecret, target: String) -> SyncStatus {
        let mut items = Vec::new();
        let mut reasons = Vec::new();
        let mut pending = false;
        for r in &s.references {
            let key = cache::key(&r.secret, r.version.as_deref());
            let (version, state) = match self.cache.get(&key) {
                Some(e) => (
                    e.version.clone(),
                    match e.state {
                        SourceState::Present => "Present",
                        SourceState::Deleted => "Deleted",
                        SourceState::Disabled => "Disabled",
                    },
                ),
                None => {
                    pending = true;
                    (String::new(), "Missing")
                }
            };
            if state == "Deleted" || state == "Disabled" {
                reasons.push(format!("Source{state}: {} ({})", r.secret, r.key));
            }
            if let Some(m) = self.refused.get(&key) {
                reasons.push(format!("{m}: {}", r.secret));
            }
            items.push(ItemStatus {
                key: r.key.clone(),
                secret: r.secret.clone(),
                version,
                state: state.into(),
            });
        }
        if let Some(e) = self.errors.get(&s.name) {
            reasons.push(e.clone());
        }
        if let Some(e) = self
            .shared
            .access_error
            .lock()
            .expect("access lock")
            .clone()
        {
            reasons.push(e);
        }
        let down = *self.shared.uplink_down_since.lock().expect("uplink lock");
        let (state, since, reason) = if !reasons.is_empty() {
            ("Error", None, Some(reasons.join("; ")))
        } else if let Some((since, why, _)) = self.unavailable.get(&s.name) {
            (
                "Stale",
                Some(*since),
                Some(format!(
                    "{why}; the target keeps what it holds and the write is retried"
                )),
            )
        } else if pending {
            (
                "Pending",
                down,
                down.map(|_| {
                    "the vault is unreachable and this synced secret was never fetched".to_string()
                }),
            )
        } else if let Some(since) = down {
            (
                "Stale",
                Some(since),
                Some("the vault is unreachable; serving the last known values".into()),
            )
        } else {
            ("Synced", None, None)
        };
        SyncStatus {
            state: state.into(),
            since,
            reason,
            last_successful_sync_time: self.last_success,
            last_attempt_time: self.last_attempt,
            items,
            target,
        }
    }

    /// The feed's current position, `None` when the server has no feed (poll instead).
    async fn head(&mut self, names: &[String]) -> Result<Option<String>, FetchError> {
        match self
            .vault_call(secrets::changes_named(
                &self.shared.vault_uri(),
                None,
                0,
                names,
            ))
            .await
        {
            Ok((200, Some(b))) => Ok(b["cursor"].as_str().map(String::from)),
            Ok((s, b)) if feed_unsupported(s, b.as_ref()) => Ok(None),
            Ok((s, b)) => Err(classify(strongbox_client::http_error(s, b.as_ref()))),
            Err(e) => Err(classify(e)),
        }
    }

    /// The secrets the feed is asked about: the device identity may get them, not list the
    /// vault, so it names what it follows.
    fn feed_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Self::references(&self.shared.config())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.dedup();
        names
    }

    /// Asks the service which vault is the device's now (as the device); after a recovery
    /// that made a new vault, the edge follows it. `true` when it moved.
    async fn follow_device_vault(&mut self) -> bool {
        let Ok(token) = self.token().await else {
            return false;
        };
        if self.agent.refresh_vault(&token).await.is_err() {
            return false; // still deleted, or unreachable: try again next round
        }
        let st = self.agent.state();
        if st.vault_uri == self.shared.vault_uri() {
            return false;
        }
        eprintln!(
            "the device's vault is now {} ({}): following it",
            st.vault_name, st.vault_uri
        );
        *self.shared.vault.write().expect("vault lock") =
            (st.vault_uri.clone(), st.vault_name.clone());
        self.vault_moved = true;
        true
    }

    /// A failed round: Access errors are reported per synced secret (never as an outage),
    /// anything else marks the uplink down. Targets are re-rendered from the cache either way
    /// (a target deleted at the edge comes back while offline). `true` when woken by a config
    /// change during the backoff.
    async fn failed(&mut self, e: FetchError) -> bool {
        match e {
            FetchError::Access(m) => {
                if m == "VaultNotFound" && self.follow_device_vault().await {
                    return true;
                }
                self.count_failure("AccessLost");
                *self.shared.access_error.lock().expect("access lock") = Some(m);
                self.last_attempt = Some(now());
            }
            FetchError::Transient(m) => self.disconnected(&m),
        }
        let config = self.shared.config();
        self.render_all(&config, None).await;
        self.pause().await
    }

    /// Waits out the backoff; `true` when woken early (config changed: re-read everything).
    async fn pause(&mut self) -> bool {
        let d = self.backoff.next_delay();
        self.idle(d).await
    }

    /// After a round that left targets unwritten for now (Kubernetes API unreachable): when to
    /// try them again, by the shared backoff and no sooner than the server asked.
    fn schedule_target_retry(&mut self) {
        if self.unavailable.is_empty() {
            self.target_backoff.reset();
            self.target_retry_at = None;
            return;
        }
        let asked = self
            .unavailable
            .values()
            .filter_map(|u| u.2)
            .max()
            .unwrap_or_default();
        let d = self.target_backoff.next_delay().max(asked);
        self.target_retry_at = Some(tokio::time::Instant::now() + d);
    }

    /// What the engine waits for besides the vault: a target changed outside the agent, or
    /// the retry of a target that could not be written. Owns what it needs, so it can be
    /// awaited next to a vault call.
    fn target_due(&self) -> impl std::future::Future<Output = Retarget> + use<> {
        let retarget = self.shared.retarget.clone();
        let retry = self.target_retry_at;
        async move {
            tokio::select! {
                _ = retarget.notified() => Retarget,
                _ = async {
                    match retry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => Retarget,
            }
        }
    }

    /// Waits `d`, putting targets back meanwhile (from the cache, no vault call); `true` when
    /// woken early by a config change (re-read everything).
    async fn idle(&mut self, d: Duration) -> bool {
        let until = tokio::time::Instant::now() + d;
        let shared = self.shared.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return false,
                _ = shared.wake.notified() => return true,
                Retarget = self.target_due() => {}
            }
            let config = self.shared.config();
            self.render_all(&config, None).await;
        }
    }

    /// Runs forever: renders from the cache first (no network needed), then follows the vault.
    pub async fn run(mut self) {
        let config = self.shared.config();
        self.render_all(&config, None).await;
        let mut cursor: Option<String> = None;
        let mut feed = self.use_feed;
        let mut need_full = true;
        let mut last_full = tokio::time::Instant::now();
        loop {
            if std::mem::take(&mut self.vault_moved) {
                cursor = None;
                need_full = true;
            }
            let rotation_due = last_full.elapsed() >= self.rotation;
            // A feed found missing is tried again at every rotation (a proxy's or a
            // recovering vault's answer must not switch it off for good).
            if self.use_feed && !feed && rotation_due {
                feed = true;
            }
            // Nothing referenced: nothing to follow. More names than the server takes in one
            // request: poll instead.
            let names = self.feed_names();
            let following = feed && !names.is_empty() && names.len() <= MAX_FEED_NAMES;
            self.shared.feed_active.store(following, Ordering::Relaxed);
            if following && cursor.is_none() {
                match self.head(&names).await {
                    Ok(Some(c)) => cursor = Some(c),
                    Ok(None) => feed = false,
                    Err(e) => {
                        need_full |= self.failed(e).await;
                        continue;
                    }
                }
            }
            if need_full || rotation_due {
                if let Err(e) = self.full_sync().await {
                    need_full |= self.failed(FetchError::Transient(e)).await;
                    continue;
                }
                need_full = false;
                last_full = tokio::time::Instant::now();
            }
            if !following {
                self.idle(self.rotation).await;
                need_full = true;
                continue;
            }
            let c = cursor.clone().unwrap_or_default();
            let call =
                secrets::changes_named(&self.shared.vault_uri(), Some(&c), FEED_WAIT_SECS, &names);
            let shared = self.shared.clone();
            // A target to put back ends the long poll (resumed from the same cursor after).
            let retarget = self.target_due();
            let mut retargeted = false;
            let r = tokio::select! {
                r = self.vault_call(call) => Some(r),
                _ = shared.wake.notified() => None,
                Retarget = retarget => {
                    retargeted = true;
                    None
                }
            };
            if retargeted {
                let config = self.shared.config();
                self.render_all(&config, None).await;
                continue;
            }
            match r {
                None => need_full = true,
                Some(Ok((200, Some(b)))) => {
                    let entries = b["value"].as_array().cloned().unwrap_or_default();
                    let result = if entries.is_empty() {
                        // A quiet feed: put back any target someone changed or deleted at the
                        // edge (from the cache, no vault call).
                        let config = self.shared.config();
                        self.render_all(&config, None).await;
                        Ok(())
                    } else {
                        self.apply_changes(&entries).await
                    };
                    match result {
                        // The cursor moves only past changes that were applied.
                        Ok(()) => {
                            if let Some(next) = b["cursor"].as_str() {
                                cursor = Some(next.to_string());
                            }
                        }
                        Err(e) => need_full |= self.failed(FetchError::Transient(e)).await,
                    }
                }
                Some(Ok((410, _))) => {
                    // Cursor expired: re-read everything, then follow from a fresh cursor.
                    cursor = None;
                    need_full = true;
                }
                Some(Ok((s, b))) if feed_unsupported(s, b.as_ref()) => {
                    feed = false;
                    cursor = None;
                }
                Some(Ok((s, b))) => {
                    let e = classify(strongbox_client::http_error(s, b.as_ref()));
                    if matches!(e, FetchError::Access(_)) {
                        need_full = true; // the fetches say which synced secrets lost access
                    }
                    need_full |= self.failed(e).await;
                }
                Some(Err(e)) => {
                    // Changes made meanwhile are still behind the cursor: nothing is missed.
                    need_full |= self.failed(classify(e)).await;
                }
            }
        }
    }

    /// Fetches what the feed entries announce and re-renders the synced secrets they touch.
    async fn apply_changes(&mut self, entries: &[Value]) -> Result<(), String> {
        let config = self.shared.config();
        let refs = Self::references(&config);
        let mut touched = BTreeSet::new();
        let mut first_ms = i64::MAX;
        let mut changed = false;
        for e in entries {
            let Some(name) = e["name"].as_str().map(str::to_ascii_lowercase) else {
                continue;
            };
            let kind = e["change"].as_str().unwrap_or_default();
            let force = matches!(kind, "SecretRestored" | "SecretRecovered");
            for (n, v) in refs.iter().filter(|(n, _)| *n == name) {
                let key = cache::key(n, v.as_deref());
                if touched.contains(&key) {
                    continue;
                }
                match self.fetch(n, v.as_deref(), force).await {
                    Ok(p) => {
                        if p == Put::Changed {
                            changed = true;
                            first_ms = first_ms.min(e["timeMs"].as_i64().unwrap_or(i64::MAX));
                        }
                    }
                    Err(FetchError::Access(_)) => {}
                    Err(FetchError::Transient(m)) => {
                        if changed {
                            self.save_cache()?;
                        }
                        return Err(m);
                    }
                }
                touched.insert(key);
            }
        }
        if changed {
            self.save_cache()?;
        }
        self.connected();
        let at = if first_ms == i64::MAX {
            crate::now_ms()
        } else {
            first_ms
        };
        self.render_all(&config, Some((at, &touched))).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one retry rule: 0.5 s doubling to 10 s, each delay between half and all of it.
    #[test]
    fn the_backoff_grows_from_half_a_second_to_ten_with_jitter() {
        let mut b = Backoff::default();
        let mut cap = BACKOFF_MIN;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d <= cap && d >= cap / 2, "{d:?} for {cap:?}");
            seen.push(d);
            cap = (cap * 2).min(BACKOFF_MAX);
        }
        assert!(seen.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(seen[9] >= Duration::from_secs(5));
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }
}
