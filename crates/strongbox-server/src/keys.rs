//! Key maintenance: the keyring as the store holds it (master keys sealed under the root after a
//! rekey), data key rotation with the background re-encryption that retires the old keys, and
//! rekey (the keyring re-sealed under a new root in one transaction).
//!
//! How servers learn of a rotation: every server re-reads the (tiny) data key table every
//! [`REFRESH`] and adopts the newest key for new writes; a write sealed under a key that a
//! rotation has since retired is refused inside its own transaction, and a key is retired only
//! in a transaction that finds nothing sealed under it, so no value is ever left under a key
//! that is gone. Progress survives a crash: the data key table is the whole state (a rotation
//! is under way while older keys than the newest are stored), and the work left is "every
//! value not sealed under the newest key", so any server (on start and while it runs) and the
//! `rotate-data-key` command resume it; re-encryptions compare-and-swap,
//! so several workers at once only duplicate effort.

use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use strongbox_crypto::{Keyring, MasterKeys, RootKey, SealedKey};
use strongbox_domain::Clock;
use strongbox_store::{DataKeyRow, SealedValueRow, Store, StoreError};

/// How often a server re-reads the data key table.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Metadata: the master keys sealed under the root (present once the store was rekeyed).
pub const MASTER_META: &str = "keyring_master";
/// Metadata: the Argon2id salt of a passphrase root.
pub const SALT_META: &str = "root_salt";
/// The audit chain of keyring operations.
pub const AUDIT_CHAIN: &str = "system:keyring";
/// Old keys are retired no sooner than this after a worker saw the rotation, so that every
/// server has had several refreshes to stop sealing under them.
const RETIRE_AFTER: Duration = Duration::from_secs(3);
const PAGE: u32 = 64;

async fn stored_keys(store: &dyn Store) -> anyhow::Result<Vec<SealedKey>> {
    Ok(store
        .list_data_keys()
        .await?
        .into_iter()
        .map(|r| SealedKey {
            id: r.id,
            wrapped: r.wrapped,
        })
        .collect())
}

/// Unseals the keyring, creating the first data key on a new store.
pub async fn open_keyring(store: &dyn Store, root: &RootKey) -> anyhow::Result<Keyring> {
    let refused = || {
        anyhow::anyhow!(
            "the root key does not open this store's data keys (wrong key file or passphrase?)"
        )
    };
    let sealed_master = store.get_meta(MASTER_META).await?;
    let master = MasterKeys::unseal(root, sealed_master.as_deref()).map_err(|_| refused())?;
    if store.list_data_keys().await?.is_empty() {
        let k = master.wrap_new_data_key(1);
        match store
            .insert_data_key(DataKeyRow {
                id: k.id,
                wrapped: k.wrapped,
            })
            .await
        {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Keyring::open_with(master, &stored_keys(store).await?).map_err(|_| refused())
}

/// Adopts data keys added or retired since the keyring was read.
pub async fn refresh(store: &dyn Store, keyring: &Keyring) -> anyhow::Result<bool> {
    Ok(keyring.refresh(&stored_keys(store).await?)?)
}

/// Appends one record to the keyring's audit chain (before the command reports success).
pub async fn audit(
    store: &dyn Store,
    clock: &dyn Clock,
    operation: &str,
    properties: serde_json::Value,
) -> anyhow::Result<()> {
    let mut entry = strongbox_domain::audit::management_entry(
        AUDIT_CHAIN,
        "/strongbox/keyring",
        operation,
        None,
        200,
        &uuid::Uuid::new_v4().to_string(),
        "local",
        clock.now_ms(),
    );
    let mut record: serde_json::Value = serde_json::from_str(&entry.record_json)?;
    if let (Some(props), Some(extra)) =
        (record["properties"].as_object_mut(), properties.as_object())
    {
        props.extend(extra.clone());
    }
    entry.record_json = record.to_string();
    store.append_audit(vec![entry]).await?;
    Ok(())
}

/// Adds a data key that new writes use at once (here; other servers within [`REFRESH`]);
/// the rotation is under way until the older keys are retired. Returns the new key's id.
pub async fn rotate(
    store: &dyn Store,
    keyring: &Keyring,
    clock: &dyn Clock,
) -> anyhow::Result<u32> {
    refresh(store, keyring).await?;
    let id = keyring.key_ids().last().copied().unwrap_or(0) + 1;
    let k = keyring.wrap_new_data_key(id);
    store
        .insert_data_key(DataKeyRow {
            id: k.id,
            wrapped: k.wrapped,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict => {
                anyhow::anyhow!("another rotation added data key {id} just now")
            }
            e => e.into(),
        })?;
    refresh(store, keyring).await?;
    audit(
        store,
        clock,
        "DataKeyRotate",
        serde_json::json!({"newKeyId": id}),
    )
    .await?;
    Ok(id)
}

/// Whether a rotation is under way: older keys than the newest are still stored.
pub async fn pending(store: &dyn Store, keyring: &Keyring) -> anyhow::Result<bool> {
    refresh(store, keyring).await?;
    Ok(keyring.key_ids().len() > 1)
}

/// Re-encrypts every value not sealed under the newest key, then retires the older keys and
/// adopts the result. `progress(done, total)` after every page. Resumable at any
/// point: the work left is read from the store each pass.
pub async fn reencrypt(
    store: &dyn Store,
    keyring: &Keyring,
    clock: &dyn Clock,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
    pause: Duration,
) -> anyhow::Result<()> {
    if !pending(store, keyring).await? {
        return Ok(());
    }
    // Old keys are retired no sooner than RETIRE_AFTER after this worker saw the rotation (a
    // worker that resumes after a crash waits again: later is always safe).
    let seen_ms = clock.now_ms();
    let total = store.count_not_under(keyring.active_key_id()).await?;
    let mut done = 0u64;
    progress(0, total);
    loop {
        refresh(store, keyring).await?;
        let active = keyring.active_key_id();
        let mut after = None;
        loop {
            let page = store.values_not_under(active, after.clone(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((
                last.vault_id.clone(),
                last.name.clone(),
                last.version.clone(),
            ));
            for row in &page {
                reseal_value(store, keyring, row).await?;
                done += 1;
            }
            progress(done.min(total), total);
            tokio::time::sleep(pause).await;
        }
        for key in store.list_signing_keys().await? {
            let aad = strongbox_identity::signing_aad(&key.kid);
            if let Some(new) = keyring.reseal(&aad, &key.sealed_private)? {
                store
                    .replace_sealed_signing_key(&key.kid, &key.sealed_private, &new)
                    .await?;
            }
        }
        // Give every server time to have stopped sealing under the old keys.
        let due = seen_ms + RETIRE_AFTER.as_millis() as i64;
        let wait = due - clock.now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
        if retire_older(store, keyring, clock, active).await? {
            break;
        }
        // A server that had not yet heard of the new key wrote under an old one: another pass.
        tokio::time::sleep(REFRESH).await;
    }
    progress(total, total);
    refresh(store, keyring).await?;
    Ok(())
}

async fn reseal_value(
    store: &dyn Store,
    keyring: &Keyring,
    row: &SealedValueRow,
) -> anyhow::Result<()> {
    let aad = strongbox_domain::secrets::value_aad(&row.vault_id, &row.name, &row.version);
    if let Some(new) = keyring
        .reseal(&aad, &row.sealed)
        .with_context(|| format!("re-encrypting {}/{}", row.name, row.version))?
    {
        // false: the version changed or went away meanwhile; nothing left to do for it.
        store.replace_sealed_value(row, &new).await?;
    }
    Ok(())
}

/// Retires every key older than `active`; false if one is still in use.
async fn retire_older(
    store: &dyn Store,
    keyring: &Keyring,
    clock: &dyn Clock,
    active: u32,
) -> anyhow::Result<bool> {
    for id in keyring.key_ids().into_iter().filter(|id| *id < active) {
        match store.retire_data_key(id).await {
            Ok(()) => {
                audit(
                    store,
                    clock,
                    "DataKeyRetire",
                    serde_json::json!({"keyId": id}),
                )
                .await?;
                tracing::info!(key = id, "retired data key");
            }
            Err(StoreError::NotFound) => {}
            Err(StoreError::Conflict) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Re-seals the keyring under `new_root` in one transaction (with the new root's salt when it
/// comes from a passphrase): from then on only the new root opens the store.
pub async fn rekey(
    store: &dyn Store,
    keyring: &Keyring,
    clock: &dyn Clock,
    new_root: &RootKey,
    new_salt: Option<&[u8]>,
    described: &str,
) -> anyhow::Result<()> {
    seal_master(store, &keyring.master(), new_root, new_salt).await?;
    audit(
        store,
        clock,
        "RootKeyRekey",
        serde_json::json!({"newRoot": described}),
    )
    .await
}

/// Stores `master` sealed under `root` (and the root's salt, or none), in one transaction.
pub async fn seal_master(
    store: &dyn Store,
    master: &MasterKeys,
    root: &RootKey,
    salt: Option<&[u8]>,
) -> anyhow::Result<()> {
    let sealed = master.seal_under(root);
    store
        .replace_meta(&[(MASTER_META, Some(&sealed)), (SALT_META, salt)])
        .await?;
    Ok(())
}

/// The server's keyring upkeep: adopt rotations other nodes made, and carry on a pending
/// rotation's re-encryption in the background (after a crash, too).
pub fn spawn_upkeep(
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut worker: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            if let Err(e) = refresh(&*store, &keyring).await {
                tracing::warn!(error = %e, "reading the data keys failed");
            }
            let idle = worker.as_ref().is_none_or(|w| w.is_finished());
            if idle && keyring.key_ids().len() > 1 {
                let (store, keyring, clock) = (store.clone(), keyring.clone(), clock.clone());
                worker = Some(tokio::spawn(async move {
                    tracing::info!("re-encrypting values under the newest data key");
                    // About every tenth of the way, and at the end.
                    let logged = std::sync::atomic::AtomicU64::new(0);
                    let log = |done: u64, total: u64| {
                        let step = (total / 10).max(1);
                        let last = logged.load(std::sync::atomic::Ordering::Relaxed);
                        if done == total || done >= last + step {
                            logged.store(done, std::sync::atomic::Ordering::Relaxed);
                            tracing::info!(done, total, "data key rotation");
                        }
                    };
                    if let Err(e) = reencrypt(&*store, &keyring, &*clock, &log, pause).await {
                        tracing::warn!(error = %e, "data key rotation stopped; it will resume");
                    }
                }));
            }
            tokio::time::sleep(REFRESH).await;
        }
    })
}
