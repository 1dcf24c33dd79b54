//! The file sink: delivers each vault's audit chain to the storage accounts its diagnostic
//! settings name. It reads the store's audit table after a cursor, and the cursor is the last
//! record already in the files, so a crash (of the server, or between a write and its fsync)
//! resumes exactly where the files end: nothing is lost, nothing is written twice. The store
//! stays the source of truth; the files are a verifiable copy.

use crate::audit_files::{ChainWriter, Rotation, chain_dir};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use strongbox_domain::Clock;
use strongbox_store::Store;
use tokio::time::Instant;

/// Records read from the store per batch (one write and fsync per batch).
const BATCH: u32 = 1000;
/// Batches per chain per pass, so one busy vault does not starve the others.
const BATCHES_PER_PASS: usize = 20;
/// After a failure (disk full, unwritable directory, broken chain) a chain waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(10);

struct Target {
    chain: String,
    resource_id: String,
    rotation: Rotation,
}

#[derive(Default)]
struct Sink {
    writers: HashMap<PathBuf, ChainWriter>,
    failed: HashMap<PathBuf, Instant>,
}

pub fn spawn(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sink = Sink::default();
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = sink.pass(&*store, &*clock).await {
                tracing::warn!(error = %e, "audit file delivery pass failed");
            }
        }
    })
}

impl Sink {
    async fn targets(&self, store: &dyn Store) -> Result<BTreeMap<PathBuf, Target>, String> {
        let settings = store
            .list_delivering_settings()
            .await
            .map_err(|e| e.to_string())?;
        if settings.is_empty() {
            return Ok(BTreeMap::new());
        }
        let vaults: HashMap<String, _> = store
            .list_vaults()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|v| (v.id.clone(), v))
            .collect();
        let mut accounts = HashMap::new();
        let mut out = BTreeMap::new();
        for s in settings {
            let (Some(name), Some(vault)) = (&s.storage_account, vaults.get(&s.vault_id)) else {
                continue;
            };
            if !accounts.contains_key(name) {
                let a = store
                    .get_storage_account(name)
                    .await
                    .map_err(|e| e.to_string())?;
                accounts.insert(name.clone(), a);
            }
            let Some(Some(account)) = accounts.get(name) else {
                continue;
            };
            let dir = chain_dir(
                Path::new(&account.local_path),
                &vault.resource_id,
                &vault.id,
            );
            out.insert(
                dir,
                Target {
                    chain: vault.id.clone(),
                    resource_id: vault.resource_id.clone(),
                    rotation: Rotation {
                        max_file_bytes: account.max_file_bytes.max(1) as u64,
                        max_file_age_ms: account.max_file_age_secs.saturating_mul(1000),
                    },
                },
            );
        }
        Ok(out)
    }

    async fn pass(&mut self, store: &dyn Store, clock: &dyn Clock) -> Result<(), String> {
        let targets = self.targets(store).await?;
        // A setting that went away releases its directory (and its lock).
        self.writers.retain(|dir, _| targets.contains_key(dir));
        let now = Instant::now();
        self.failed.retain(|_, until| *until > now);
        for (dir, t) in targets {
            if self.failed.contains_key(&dir) {
                continue;
            }
            if let Err(e) = self.deliver(store, clock, &dir, &t).await {
                tracing::error!(dir = %dir.display(), error = %e, "audit file delivery failed; retrying later");
                self.writers.remove(&dir);
                self.failed.insert(dir, Instant::now() + RETRY_AFTER);
            }
        }
        Ok(())
    }

    async fn deliver(
        &mut self,
        store: &dyn Store,
        clock: &dyn Clock,
        dir: &Path,
        t: &Target,
    ) -> Result<(), String> {
        let mut writer = match self.writers.remove(dir) {
            Some(w) => w,
            None => {
                let (d, chain, rid) = (dir.to_path_buf(), t.chain.clone(), t.resource_id.clone());
                let opened =
                    tokio::task::spawn_blocking(move || ChainWriter::open(&d, &chain, &rid))
                        .await
                        .map_err(|e| e.to_string())??;
                match opened {
                    Some(w) => w,
                    // Another process on this machine delivers to this directory.
                    None => return Ok(()),
                }
            }
        };
        for _ in 0..BATCHES_PER_PASS {
            let rows = store
                .read_audit(&t.chain, writer.last_seq(), BATCH)
                .await
                .map_err(|e| e.to_string())?;
            if rows.is_empty() {
                break;
            }
            let (rotation, now_ms, full) = (t.rotation, clock.now_ms(), rows.len() as u32 == BATCH);
            writer = tokio::task::spawn_blocking(move || {
                writer.append(&rows, rotation, now_ms).map(|()| writer)
            })
            .await
            .map_err(|e| e.to_string())??;
            if !full {
                break;
            }
        }
        self.writers.insert(dir.to_path_buf(), writer);
        Ok(())
    }
}
