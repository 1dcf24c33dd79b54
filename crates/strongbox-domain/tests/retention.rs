//! Time-based rules, tested by moving an injected clock over a real (SQLite) store.

use std::sync::Arc;
use std::time::Instant;
use strongbox_crypto::{Keyring, RootKey};
use strongbox_domain::audit::{AuditWriter, Operation, RequestInfo};
use strongbox_domain::secrets::SecretService;
use strongbox_domain::vaults::{NewVault, create_vault};
use strongbox_domain::{
    Caller, Clock, DomainError, ManualClock, Permission, SecretAction, VaultAccess, authorize,
};
use strongbox_store::{AccessPolicyRow, Store, VaultRow};
use strongbox_types::secrets::{BackupBlob, SecretSetParameters};

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    secrets: SecretService,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        strongbox_store_sqlite::SqliteStore::open(&format!(
            "sqlite:{}",
            dir.path().join("s.db").display()
        ))
        .await
        .unwrap(),
    );
    let root = RootKey::from_passphrase(b"test passphrase", b"0123456789abcdef").unwrap();
    let keyring = Arc::new(Keyring::open(&root, &[Keyring::new_data_key(&root, 1)]).unwrap());
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (audit, _task) = AuditWriter::start(store.clone());
    let secrets = SecretService::new(store.clone(), keyring, clock.clone(), audit);
    World {
        _dir: dir,
        store,
        clock,
        secrets,
    }
}

fn info(op: Operation) -> RequestInfo {
    RequestInfo {
        operation: op,
        base_url: "https://v.vault.localhost".into(),
        api_version: "7.6".into(),
        correlation_id: "c".into(),
        caller_ip: "127.0.0.1".into(),
        client_info: "test".into(),
        request_uri: "/".into(),
        started: Instant::now(),
    }
}

async fn vault(
    w: &World,
    name: &str,
    tenant: &str,
    retention_days: i64,
    purge_protection: bool,
) -> Arc<VaultRow> {
    let v = create_vault(
        &*w.store,
        &*w.clock,
        NewVault {
            name,
            tenant_id: tenant,
            subscription_id: "sub",
            resource_group: "rg",
            location: "local",
            retention_days,
            purge_protection,
            enable_rbac: false,
        },
    )
    .await
    .unwrap();
    let perms = Permission::ALL
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    w.store
        .set_access_policy(AccessPolicyRow {
            vault_id: v.id.clone(),
            object_id: "admin".into(),
            secret_permissions: perms,
        })
        .await
        .unwrap();
    Arc::new(v)
}

async fn grant(w: &World, v: &Arc<VaultRow>, p: SecretAction) -> strongbox_domain::Grant {
    let caller = Caller {
        object_id: "admin".into(),
        tenant_id: v.tenant_id.clone(),
        app_id: "app".into(),
    };
    let access = VaultAccess::Policies(w.store.list_access_policies(&v.id).await.unwrap());
    authorize(v.clone(), &access, &caller, p, None).unwrap()
}

fn set(value: &str) -> SecretSetParameters {
    serde_json::from_value(serde_json::json!({"value": value})).unwrap()
}

#[tokio::test]
async fn soft_deleted_secrets_are_purged_when_retention_ends_not_before() {
    let w = world().await;
    let v = vault(&w, "short", "t1", 7, false).await;
    w.secrets
        .set(
            &grant(&w, &v, SecretAction::Set).await,
            &info(Operation::SecretSet),
            "a",
            set("x"),
        )
        .await
        .unwrap();
    let deleted = w
        .secrets
        .delete(
            &grant(&w, &v, SecretAction::Delete).await,
            &info(Operation::SecretDelete),
            "a",
        )
        .await
        .unwrap();
    assert_eq!(
        deleted.deletion.scheduled_purge_date - deleted.deletion.deleted_date,
        7 * 86_400
    );
    assert_eq!(
        deleted.secret.attributes.recovery_level,
        "CustomizedRecoverable+Purgeable"
    );
    w.clock.advance_secs(7 * 86_400 - 1);
    assert_eq!(w.secrets.purge_expired().await.unwrap(), 0);
    let g = grant(&w, &v, SecretAction::Get).await;
    assert!(
        w.secrets
            .get_deleted(&g, &info(Operation::SecretGetDeleted), "a")
            .await
            .is_ok()
    );
    w.clock.advance_secs(1);
    assert_eq!(w.secrets.purge_expired().await.unwrap(), 1);
    assert!(matches!(
        w.secrets
            .get_deleted(&g, &info(Operation::SecretGetDeleted), "a")
            .await,
        Err(DomainError::NotFound(_))
    ));
    // The name is free again.
    w.secrets
        .set(
            &grant(&w, &v, SecretAction::Set).await,
            &info(Operation::SecretSet),
            "a",
            set("y"),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn purge_protection_refuses_manual_purge_but_retention_still_ends() {
    let w = world().await;
    let v = vault(&w, "locked", "t1", 90, true).await;
    w.secrets
        .set(
            &grant(&w, &v, SecretAction::Set).await,
            &info(Operation::SecretSet),
            "b",
            set("x"),
        )
        .await
        .unwrap();
    let d = w
        .secrets
        .delete(
            &grant(&w, &v, SecretAction::Delete).await,
            &info(Operation::SecretDelete),
            "b",
        )
        .await
        .unwrap();
    assert_eq!(d.secret.attributes.recovery_level, "Recoverable");
    let purge = grant(&w, &v, SecretAction::Purge).await;
    let refused = w
        .secrets
        .purge(&purge, &info(Operation::SecretPurge), "b")
        .await;
    assert!(
        matches!(refused, Err(DomainError::Forbidden { .. })),
        "{refused:?}"
    );
    w.clock.advance_secs(90 * 86_400);
    assert_eq!(w.secrets.purge_expired().await.unwrap(), 1);
}

#[tokio::test]
async fn backups_restore_only_within_their_tenant() {
    let w = world().await;
    let a = vault(&w, "tenant-a", "ta", 90, false).await;
    let b = vault(&w, "tenant-b", "tb", 90, false).await;
    let a2 = vault(&w, "tenant-a2", "ta", 90, false).await;
    w.secrets
        .set(
            &grant(&w, &a, SecretAction::Set).await,
            &info(Operation::SecretSet),
            "c",
            set("v1"),
        )
        .await
        .unwrap();
    w.secrets
        .set(
            &grant(&w, &a, SecretAction::Set).await,
            &info(Operation::SecretSet),
            "c",
            set("v2"),
        )
        .await
        .unwrap();
    let blob: BackupBlob = w
        .secrets
        .backup(
            &grant(&w, &a, SecretAction::Backup).await,
            &info(Operation::SecretBackup),
            "c",
        )
        .await
        .unwrap();
    let again = BackupBlob {
        value: blob.value.clone(),
    };
    let foreign = w
        .secrets
        .restore(
            &grant(&w, &b, SecretAction::Restore).await,
            &info(Operation::SecretRestore),
            blob,
        )
        .await;
    assert!(
        matches!(foreign, Err(DomainError::BadParameter(_))),
        "{foreign:?}"
    );
    w.secrets
        .restore(
            &grant(&w, &a2, SecretAction::Restore).await,
            &info(Operation::SecretRestore),
            again,
        )
        .await
        .unwrap();
    let got = w
        .secrets
        .get(
            &grant(&w, &a2, SecretAction::Get).await,
            &info(Operation::SecretGet),
            "c",
            None,
        )
        .await
        .unwrap();
    assert_eq!(got.value.as_deref(), Some("v2"));
    let page = Default::default();
    let versions = w
        .secrets
        .list_versions(
            &grant(&w, &a2, SecretAction::List).await,
            &info(Operation::SecretListVersions),
            "c",
            &page,
        )
        .await
        .unwrap();
    assert_eq!(versions.value.len(), 2);
    let _ = w.clock.now();
}
