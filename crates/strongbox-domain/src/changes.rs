//! The vault change feed: its request rules, and the waiting room of long polls. A long poll
//! wakes at once when this node commits a change to its vault (`ChangeNotifier::signal`, called
//! by `SecretService` after every successful mutation), and about every second one of the
//! waiters re-reads the heads of all vaults anyone waits on, in one store call, and wakes the
//! waiters of vaults whose head moved: that is how a change committed through another server
//! node on the same database arrives. Waiting holds no store connection, and the number of
//! waiters is bounded.

use crate::DomainError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strongbox_store::Store;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Most entries one answer carries, and the default.
pub const MAX_RESULTS: u32 = 1000;
pub const DEFAULT_RESULTS: u32 = 100;
/// Longest a long poll may wait, and the default.
pub const MAX_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// How long changes are kept. An agent away longer gets `CursorExpired` and reads everything
/// again, which is cheap next to keeping an unbounded history.
pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// How often the store is re-checked for commits made through other nodes.
pub const RECHECK: Duration = Duration::from_secs(1);
/// Most long polls waiting at once on one node; more are told to retry (429).
pub const MAX_WAITERS: usize = 4096;

/// A parsed `GET /changes` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangesRequest {
    /// None: answer the current head at once.
    pub cursor: Option<i64>,
    pub timeout: Duration,
    pub max_results: u32,
}

fn number(name: &str, s: &str) -> Result<u64, DomainError> {
    // Digits only: no sign, no spaces, no exponent.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::BadParameter(format!(
            "{name} must be a non-negative integer."
        )));
    }
    s.parse()
        .map_err(|_| DomainError::BadParameter(format!("{name} is too large.")))
}

impl ChangesRequest {
    pub fn parse(
        cursor: Option<&str>,
        timeout: Option<&str>,
        max_results: Option<&str>,
    ) -> Result<ChangesRequest, DomainError> {
        let cursor = cursor
            .map(|c| {
                number("cursor", c).and_then(|n| {
                    i64::try_from(n)
                        .map_err(|_| DomainError::BadParameter("cursor is too large.".into()))
                })
            })
            .transpose()?;
        let timeout = match timeout {
            None => DEFAULT_TIMEOUT_SECS,
            Some(t) => match number("timeout", t)? {
                n if n <= MAX_TIMEOUT_SECS => n,
                _ => {
                    return Err(DomainError::BadParameter(format!(
                        "timeout must be between 0 and {MAX_TIMEOUT_SECS} seconds."
                    )));
                }
            },
        };
        let max_results = match max_results {
            None => DEFAULT_RESULTS,
            Some(m) => match number("maxresults", m)? {
                n if (1..=u64::from(MAX_RESULTS)).contains(&n) => n as u32,
                _ => {
                    return Err(DomainError::BadParameter(format!(
                        "maxresults must be between 1 and {MAX_RESULTS}."
                    )));
                }
            },
        };
        Ok(ChangesRequest {
            cursor,
            timeout: Duration::from_secs(timeout),
            max_results,
        })
    }
}

/// The waiters of one vault.
struct VaultWatch {
    notify: Notify,
    /// The head the last re-check saw (`i64::MIN`: none yet, so the first one wakes everyone).
    seen_head: AtomicI64,
}

/// The per-vault wake-ups of long polls on this node.
pub struct ChangeNotifier {
    /// Only vaults someone waits on; an entry goes with its last waiter.
    vaults: Mutex<HashMap<String, Arc<VaultWatch>>>,
    last_recheck: Mutex<Option<Instant>>,
    closed: AtomicBool,
    waiters: Arc<Semaphore>,
    max_waiters: usize,
    recheck: Duration,
}

impl Default for ChangeNotifier {
    fn default() -> Self {
        ChangeNotifier::new(MAX_WAITERS, RECHECK)
    }
}

/// A waiter's hold on its vault's watch; the entry is dropped with its last holder.
pub(crate) struct Watching<'a> {
    notifier: &'a ChangeNotifier,
    vault_id: String,
    watch: Arc<VaultWatch>,
}

impl Watching<'_> {
    /// Registers for the next wake-up. Call before reading the store, so that a commit after
    /// the read cannot slip between the read and the wait (only `notify_waiters` is used, which
    /// reaches every `Notified` from its creation on, polled or not).
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.watch.notify.notified()
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        let mut vaults = self.notifier.vaults.lock().expect("watch map");
        // The map's reference and ours: nobody else waits on this vault.
        if Arc::strong_count(&self.watch) == 2 {
            vaults.remove(&self.vault_id);
        }
    }
}

impl ChangeNotifier {
    pub fn new(max_waiters: usize, recheck: Duration) -> Self {
        ChangeNotifier {
            vaults: Mutex::new(HashMap::new()),
            last_recheck: Mutex::new(None),
            closed: AtomicBool::new(false),
            waiters: Arc::new(Semaphore::new(max_waiters)),
            max_waiters,
            recheck,
        }
    }

    /// Long polls waiting on this node now.
    pub fn waiting(&self) -> usize {
        self.max_waiters - self.waiters.available_permits()
    }

    /// A change to `vault_id` was committed on this node: wake its long polls now.
    pub fn signal(&self, vault_id: &str) {
        if let Some(w) = self.vaults.lock().expect("watch map").get(vault_id) {
            w.notify.notify_waiters();
        }
    }

    /// The server is shutting down: every long poll answers now, and new ones do not wait.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for w in self.vaults.lock().expect("watch map").values() {
            w.notify.notify_waiters();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn recheck_interval(&self) -> Duration {
        self.recheck
    }

    pub(crate) fn watch(&self, vault_id: &str) -> Watching<'_> {
        let watch = self
            .vaults
            .lock()
            .expect("watch map")
            .entry(vault_id.to_string())
            .or_insert_with(|| {
                Arc::new(VaultWatch {
                    notify: Notify::new(),
                    seen_head: AtomicI64::new(i64::MIN),
                })
            })
            .clone();
        Watching {
            notifier: self,
            vault_id: vault_id.to_string(),
            watch,
        }
    }

    /// A place in the waiting room, or a refusal when it is full.
    pub(crate) fn wait_permit(&self) -> Result<OwnedSemaphorePermit, DomainError> {
        self.waiters.clone().try_acquire_owned().map_err(|_| {
            DomainError::Throttled(
                "Too many clients are waiting for changes on this server; retry shortly.".into(),
            )
        })
    }

    /// Re-reads the heads of every vault waited on, unless another waiter did within the
    /// interval, and wakes the waiters of vaults whose head moved since the last look.
    pub(crate) async fn recheck(&self, store: &dyn Store) {
        {
            let mut last = self.last_recheck.lock().expect("recheck time");
            if last.is_some_and(|t| t.elapsed() < self.recheck) {
                return;
            }
            *last = Some(Instant::now());
        }
        let ids: Vec<String> = self
            .vaults
            .lock()
            .expect("watch map")
            .keys()
            .cloned()
            .collect();
        if ids.is_empty() {
            return;
        }
        let heads: HashMap<String, i64> = match store.change_heads(&ids).await {
            Ok(h) => h.into_iter().collect(),
            Err(e) => {
                // Waiters still answer at their timeout; the next re-check tries again.
                tracing::warn!(error = %e, "re-checking change heads failed");
                return;
            }
        };
        let vaults = self.vaults.lock().expect("watch map");
        for id in ids {
            if let Some(w) = vaults.get(&id) {
                let head = heads.get(&id).copied().unwrap_or(0);
                if w.seen_head.swap(head, Ordering::SeqCst) != head {
                    w.notify.notify_waiters();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_within_bounds() {
        let p = |c, t, m| ChangesRequest::parse(c, t, m);
        assert_eq!(
            p(None, None, None).unwrap(),
            ChangesRequest {
                cursor: None,
                timeout: Duration::from_secs(30),
                max_results: 100
            }
        );
        assert_eq!(
            p(Some("42"), Some("0"), Some("1000")).unwrap(),
            ChangesRequest {
                cursor: Some(42),
                timeout: Duration::ZERO,
                max_results: 1000
            }
        );
        for (c, t, m) in [
            (Some("-1"), None, None),
            (Some("abc"), None, None),
            (Some(""), None, None),
            (Some("+3"), None, None),
            (Some("99999999999999999999"), None, None),
            (None, Some("61"), None),
            (None, Some("-1"), None),
            (None, None, Some("0")),
            (None, None, Some("1001")),
        ] {
            assert!(
                matches!(p(c, t, m), Err(DomainError::BadParameter(_))),
                "{c:?} {t:?} {m:?}"
            );
        }
    }

    #[tokio::test]
    async fn signals_wake_only_their_vault_and_entries_go_with_their_waiters() {
        let n = ChangeNotifier::new(1, RECHECK);
        let a = n.watch("a");
        let b = n.watch("b");
        let wake_a = a.notified();
        let wake_b = b.notified();
        n.signal("a");
        tokio::time::timeout(Duration::from_secs(1), wake_a)
            .await
            .expect("a was signalled");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), wake_b)
                .await
                .is_err(),
            "b was not"
        );
        let again = n.watch("a");
        drop(a);
        assert!(n.vaults.lock().unwrap().contains_key("a"));
        drop(again);
        drop(b);
        assert!(n.vaults.lock().unwrap().is_empty());

        let permit = n.wait_permit().unwrap();
        assert!(matches!(n.wait_permit(), Err(DomainError::Throttled(_))));
        drop(permit);
        assert!(n.wait_permit().is_ok());

        let c = n.watch("c");
        let wake_c = c.notified();
        n.close();
        assert!(n.is_closed());
        tokio::time::timeout(Duration::from_secs(1), wake_c)
            .await
            .expect("closing wakes every waiter");
    }
}
