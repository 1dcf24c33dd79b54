//! The vault lifecycle and resource locks over a real (SQLite) store, with time moved by an
//! injected clock: soft delete, recovery with secrets intact, name reuse, purge protection,
//! retention purge, immutable properties, and locks at vault and group level.

use std::sync::Arc;
use std::time::Instant;
use strongbox_crypto::{Keyring, RootKey};
use strongbox_domain::audit::{AuditWriter, Operation, RequestInfo};
use strongbox_domain::locks::{self, LockTarget};
use strongbox_domain::secrets::SecretService;
use strongbox_domain::vault_lifecycle::{
    self as lifecycle, AuditCtx, MgmtError, MgmtErrorKind, PolicyEdit, VaultHost, VaultRequest,
};
use strongbox_domain::{Caller, ManualClock, SecretAction, VaultAccess, authorize};
use strongbox_store::{Store, SubscriptionRow, TenantRow};
use strongbox_types::arm_locks::LockParameters;
use strongbox_types::arm_vaults::*;
use strongbox_types::secrets::SecretSetParameters;

const TENANT: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const SUB: &str = "bbbbbbbb-0000-0000-0000-000000000002";
const ADMIN: &str = "cccccccc-0000-0000-0000-000000000003";
const DAY: i64 = 86_400;

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    secrets: SecretService,
    audit: AuditCtx,
    host: VaultHost,
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
    store
        .insert_tenant(TenantRow {
            id: TENANT.into(),
            display_name: "t".into(),
        })
        .await
        .unwrap();
    store
        .insert_subscription(SubscriptionRow {
            id: SUB.into(),
            tenant_id: TENANT.into(),
            display_name: "s".into(),
        })
        .await
        .unwrap();
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
        audit: AuditCtx {
            caller: Some(caller()),
            correlation_id: "corr".into(),
            caller_ip: "127.0.0.1".into(),
        },
        host: VaultHost {
            dns_suffix: "vault.localhost".into(),
            port_suffix: ":8443".into(),
        },
    }
}

fn caller() -> Caller {
    Caller {
        object_id: ADMIN.into(),
        tenant_id: TENANT.into(),
        app_id: "app".into(),
    }
}

fn req<'a>(w: &'a World, rg: &'a str, name: &'a str) -> VaultRequest<'a> {
    VaultRequest {
        store: &*w.store,
        clock: &*w.clock,
        audit: &w.audit,
        host: &w.host,
        subscription_id: SUB,
        resource_group: rg,
        name,
    }
}

fn params(extra: serde_json::Value) -> VaultCreateOrUpdateParameters {
    let mut props = serde_json::json!({
        "tenantId": TENANT,
        "sku": {"family": "A", "name": "standard"},
        "accessPolicies": [{"tenantId": TENANT, "objectId": ADMIN,
            "permissions": {"secrets": ["all"], "keys": ["get"]}}],
    });
    props
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(serde_json::json!({"location": "westeurope", "properties": props}))
        .unwrap()
}

fn patch(body: serde_json::Value) -> VaultPatchParameters {
    serde_json::from_value(body).unwrap()
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

async fn grant(w: &World, name: &str, action: SecretAction) -> strongbox_domain::Grant {
    let v = Arc::new(w.store.get_vault_by_name(name).await.unwrap().unwrap());
    let access = VaultAccess::Policies(w.store.list_access_policies(&v.id).await.unwrap());
    authorize(v, &access, &caller(), action, None).unwrap()
}

async fn set_secret(w: &World, vault: &str, name: &str, value: &str) {
    let p: SecretSetParameters =
        serde_json::from_value(serde_json::json!({"value": value})).unwrap();
    w.secrets
        .set(
            &grant(w, vault, SecretAction::Set).await,
            &info(Operation::SecretSet),
            name,
            p,
        )
        .await
        .unwrap();
}

async fn get_secret(w: &World, vault: &str, name: &str) -> String {
    w.secrets
        .get(
            &grant(w, vault, SecretAction::Get).await,
            &info(Operation::SecretGet),
            name,
            None,
        )
        .await
        .unwrap()
        .value
        .unwrap()
}

fn code(r: Result<impl std::fmt::Debug, MgmtError>) -> &'static str {
    r.expect_err("refused").code
}

#[tokio::test]
async fn soft_delete_recover_and_retention_purge_follow_the_clock() {
    let w = world().await;
    let (created, new) = lifecycle::create_or_update(
        &req(&w, "RG", "life"),
        params(serde_json::json!({"softDeleteRetentionInDays": 7})),
    )
    .await
    .unwrap();
    assert!(new);
    assert_eq!(
        created.properties.vault_uri,
        "https://life.vault.localhost:8443/"
    );
    assert_eq!(
        created.properties.access_policies[0]
            .permissions
            .secrets
            .as_ref()
            .unwrap()
            .len(),
        8
    );
    set_secret(&w, "life", "db", "s3cret").await;

    assert!(lifecycle::delete(&req(&w, "rg", "life")).await.unwrap());
    assert_eq!(
        code(lifecycle::get(&req(&w, "rg", "life")).await),
        "ResourceNotFound"
    );
    let deleted = lifecycle::get_deleted(&*w.store, SUB, "West Europe", "life")
        .await
        .unwrap();
    assert_eq!(deleted.properties.vault_id, created.id);
    assert_eq!(deleted.properties.deletion_date, "2027-01-15T08:00:00Z");
    assert_eq!(
        deleted.properties.scheduled_purge_date,
        "2027-01-22T08:00:00Z"
    );
    // The soft-deleted vault holds its name, here and in any other group.
    for rg in ["rg", "elsewhere"] {
        assert_eq!(
            code(
                lifecycle::create_or_update(&req(&w, rg, "life"), params(serde_json::json!({})))
                    .await
            ),
            "ConflictError"
        );
    }

    // Recovery brings everything back as it was, secrets included.
    let (recovered, new) = lifecycle::create_or_update(
        &req(&w, "rg", "life"),
        serde_json::from_value(serde_json::json!({"location": "westeurope",
            "properties": {"tenantId": TENANT, "sku": {"family": "A", "name": "standard"},
            "createMode": "recover"}}))
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(!new);
    assert_eq!(
        recovered.properties.access_policies,
        created.properties.access_policies
    );
    assert_eq!(get_secret(&w, "life", "db").await, "s3cret");
    assert_eq!(
        code(
            lifecycle::create_or_update(
                &req(&w, "rg", "nothing"),
                params(serde_json::json!({"createMode": "recover"}))
            )
            .await
        ),
        "SoftDeletedVaultDoesNotExist"
    );

    // Deleted again, it stays until its retention has passed, then the sweeper takes it and
    // its secrets, and the name is free.
    lifecycle::delete(&req(&w, "rg", "life")).await.unwrap();
    let vault_id = w.store.get_vault_by_name("life").await.unwrap().unwrap().id;
    w.clock.advance_secs(7 * DAY - 1);
    assert_eq!(
        lifecycle::purge_expired(&*w.store, &*w.clock)
            .await
            .unwrap(),
        0
    );
    assert!(
        lifecycle::get_deleted(&*w.store, SUB, "westeurope", "life")
            .await
            .is_ok()
    );
    w.clock.advance_secs(1);
    assert_eq!(
        lifecycle::purge_expired(&*w.store, &*w.clock)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        code(lifecycle::get_deleted(&*w.store, SUB, "westeurope", "life").await),
        "ResourceNotFound"
    );
    assert_eq!(w.store.get_secret(&vault_id, "db").await.unwrap(), None);
    let audit = w.store.read_audit(&vault_id, 0, 1000).await.unwrap();
    let last: serde_json::Value =
        serde_json::from_str(&audit.last().unwrap().entry.record_json).unwrap();
    assert_eq!(
        last["operationName"],
        lifecycle::actions::DELETED_VAULT_PURGE
    );
    assert_eq!(
        last["identity"],
        serde_json::Value::Null,
        "the server purged it itself"
    );
    lifecycle::create_or_update(&req(&w, "other", "life"), params(serde_json::json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn purge_protection_refuses_purge_but_not_the_end_of_retention() {
    let w = world().await;
    lifecycle::create_or_update(
        &req(&w, "rg", "kept"),
        params(serde_json::json!({"enablePurgeProtection": true, "softDeleteRetentionInDays": 10})),
    )
    .await
    .unwrap();
    lifecycle::delete(&req(&w, "rg", "kept")).await.unwrap();
    assert_eq!(
        code(
            lifecycle::purge_deleted(&*w.store, &*w.clock, &w.audit, SUB, "westeurope", "kept")
                .await
        ),
        "PurgeProtectionEnabled"
    );
    w.clock.advance_secs(10 * DAY);
    assert_eq!(
        lifecycle::purge_expired(&*w.store, &*w.clock)
            .await
            .unwrap(),
        1
    );
    assert_eq!(w.store.get_vault_by_name("kept").await.unwrap(), None);

    // Without purge protection a deleted vault can be purged at once.
    lifecycle::create_or_update(&req(&w, "rg", "gone"), params(serde_json::json!({})))
        .await
        .unwrap();
    lifecycle::delete(&req(&w, "rg", "gone")).await.unwrap();
    lifecycle::purge_deleted(&*w.store, &*w.clock, &w.audit, SUB, "westeurope", "gone")
        .await
        .unwrap();
    assert_eq!(w.store.get_vault_by_name("gone").await.unwrap(), None);
}

#[tokio::test]
async fn immutable_and_refused_properties() {
    let w = world().await;
    let r = req(&w, "rg", "fixed");
    lifecycle::create_or_update(
        &r,
        params(serde_json::json!({"softDeleteRetentionInDays": 30})),
    )
    .await
    .unwrap();
    let bad = [
        serde_json::json!({"properties": {"softDeleteRetentionInDays": 31}}),
        serde_json::json!({"properties": {"enableSoftDelete": false}}),
        serde_json::json!({"properties": {"tenantId": SUB}}),
        serde_json::json!({"properties": {"sku": {"family": "B", "name": "standard"}}}),
        serde_json::json!({"properties": {"createMode": "recover"}}),
        serde_json::json!({"properties": {"publicNetworkAccess": "sometimes"}}),
        serde_json::json!({"properties": {"networkAcls": [1]}}),
    ];
    for body in bad {
        let e = lifecycle::patch(&r, patch(body.clone())).await.unwrap_err();
        assert_eq!(e.kind, MgmtErrorKind::BadRequest, "{body}");
    }
    // Retention may be restated unchanged; purge protection goes on once and stays.
    let v = lifecycle::patch(
        &r,
        patch(serde_json::json!({"tags": {"env": "prod"}, "properties":
            {"softDeleteRetentionInDays": 30, "enablePurgeProtection": true, "enableRbacAuthorization": true}})),
    )
    .await
    .unwrap();
    assert_eq!(v.properties.enable_purge_protection, Some(true));
    assert!(v.properties.enable_rbac_authorization);
    assert_eq!(v.tags["env"], "prod");
    assert_eq!(
        lifecycle::patch(
            &r,
            patch(serde_json::json!({"properties": {"enablePurgeProtection": false}}))
        )
        .await
        .unwrap_err()
        .kind,
        MgmtErrorKind::BadRequest
    );
    for create in [
        serde_json::json!({"enableSoftDelete": false}),
        serde_json::json!({"softDeleteRetentionInDays": 6}),
        serde_json::json!({"tenantId": SUB}),
    ] {
        let e = lifecycle::create_or_update(&req(&w, "rg", "other"), params(create.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.kind, MgmtErrorKind::BadRequest, "{create}");
    }
    assert_eq!(w.store.get_vault_by_name("other").await.unwrap(), None);

    // PUT replaces: what it leaves out goes back to defaults, but immutables stay.
    let (v, new) = lifecycle::create_or_update(&r, params(serde_json::json!({})))
        .await
        .unwrap();
    assert!(!new);
    assert!(v.tags.is_empty() && !v.properties.enable_rbac_authorization);
    assert_eq!(v.properties.soft_delete_retention_in_days, 30);
    assert_eq!(v.properties.enable_purge_protection, Some(true));
    // The name is unique across the deployment.
    assert_eq!(
        code(
            lifecycle::create_or_update(&req(&w, "rg2", "fixed"), params(serde_json::json!({})))
                .await
        ),
        "VaultAlreadyExists"
    );

    // Access policy edits reach the data plane's policies.
    let other = "dddddddd-0000-0000-0000-000000000004";
    let edit = |kind, secrets: serde_json::Value| {
        let body = serde_json::json!({"properties": {"accessPolicies": [
            {"tenantId": TENANT, "objectId": other, "permissions": {"secrets": secrets}}]}});
        lifecycle::update_access_policy(&r, kind, serde_json::from_value(body).unwrap())
    };
    edit(PolicyEdit::Add, serde_json::json!(["get"]))
        .await
        .unwrap();
    edit(PolicyEdit::Add, serde_json::json!(["list"]))
        .await
        .unwrap();
    let vault = w.store.get_vault_by_name("fixed").await.unwrap().unwrap();
    let find = |ps: Vec<strongbox_store::AccessPolicyRow>| {
        ps.into_iter()
            .find(|p| p.object_id == other)
            .map(|p| p.secret_permissions)
    };
    assert_eq!(
        find(w.store.list_access_policies(&vault.id).await.unwrap()),
        Some(vec!["get".to_string(), "list".to_string()])
    );
    edit(PolicyEdit::Remove, serde_json::json!([]))
        .await
        .unwrap();
    assert_eq!(
        find(w.store.list_access_policies(&vault.id).await.unwrap()),
        None
    );
}

fn lock(level: &str) -> LockParameters {
    serde_json::from_value(serde_json::json!({"properties": {"level": level, "notes": "n"}}))
        .unwrap()
}

#[tokio::test]
async fn locks_on_the_group_and_the_vault_refuse_what_their_level_forbids() {
    let w = world().await;
    let r = req(&w, "locked", "held");
    lifecycle::create_or_update(&r, params(serde_json::json!({})))
        .await
        .unwrap();
    let group = LockTarget::ResourceGroup {
        subscription_id: SUB,
        resource_group: "Locked",
    };
    let vault = LockTarget::Vault {
        subscription_id: SUB,
        resource_group: "locked",
        name: "held",
    };
    let (l, created) = locks::put(
        &*w.store,
        &*w.clock,
        &w.audit,
        &group,
        "NoDelete",
        lock("CanNotDelete"),
    )
    .await
    .unwrap();
    assert!(created);
    assert_eq!(
        l.id,
        format!(
            "/subscriptions/{SUB}/resourceGroups/locked/providers/Microsoft.Authorization/locks/NoDelete"
        )
    );

    // CanNotDelete on the group: the vault in it cannot be deleted, but can be changed.
    let e = lifecycle::delete(&r).await.unwrap_err();
    assert_eq!(e.code, "ScopeLocked");
    assert!(
        e.message.contains("'NoDelete' (CanNotDelete)"),
        "{}",
        e.message
    );
    lifecycle::patch(&r, patch(serde_json::json!({"tags": {"a": "b"}})))
        .await
        .unwrap();

    // ReadOnly on the vault: no writes, no policy edits; the group's new vaults are fine.
    locks::put(
        &*w.store,
        &*w.clock,
        &w.audit,
        &vault,
        "frozen",
        lock("ReadOnly"),
    )
    .await
    .unwrap();
    assert_eq!(
        code(lifecycle::patch(&r, patch(serde_json::json!({"tags": {}}))).await),
        "ScopeLocked"
    );
    assert_eq!(
        code(lifecycle::create_or_update(&r, params(serde_json::json!({}))).await),
        "ScopeLocked"
    );
    let add =
        serde_json::from_value(serde_json::json!({"properties": {"accessPolicies": []}})).unwrap();
    assert_eq!(
        code(lifecycle::update_access_policy(&r, PolicyEdit::Add, add).await),
        "ScopeLocked"
    );
    lifecycle::create_or_update(&req(&w, "locked", "sibling"), params(serde_json::json!({})))
        .await
        .unwrap();

    // Listing: the group's list includes the vault's lock; atScope() on the vault shows both.
    assert_eq!(locks::list(&*w.store, &group, None).await.unwrap().len(), 2);
    assert_eq!(
        locks::list(&*w.store, &vault, Some("atScope()"))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        locks::list(&*w.store, &group, Some("atScope()"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        code(locks::list(&*w.store, &group, Some("level eq 'x'")).await),
        "BadRequest"
    );

    // A ReadOnly lock on the group refuses new vaults in it.
    locks::put(
        &*w.store,
        &*w.clock,
        &w.audit,
        &group,
        "NoDelete",
        lock("ReadOnly"),
    )
    .await
    .unwrap();
    assert_eq!(
        code(
            lifecycle::create_or_update(
                &req(&w, "locked", "newcomer"),
                params(serde_json::json!({}))
            )
            .await
        ),
        "ScopeLocked"
    );
    assert_eq!(w.store.get_vault_by_name("newcomer").await.unwrap(), None);

    // Removing the locks (audited in their chains) lets the delete through.
    let vault_row = w.store.get_vault_by_name("held").await.unwrap().unwrap();
    let head = w.store.audit_head(&vault_row.id).await.unwrap().unwrap().0;
    assert!(
        locks::delete(&*w.store, &*w.clock, &w.audit, &vault, "FROZEN")
            .await
            .unwrap()
    );
    let rec = w.store.read_audit(&vault_row.id, head, 10).await.unwrap();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].entry.operation, locks::actions::LOCKS_DELETE);
    assert!(
        !locks::delete(&*w.store, &*w.clock, &w.audit, &vault, "frozen")
            .await
            .unwrap()
    );
    assert_eq!(code(lifecycle::delete(&r).await), "ScopeLocked");
    locks::delete(&*w.store, &*w.clock, &w.audit, &group, "nodelete")
        .await
        .unwrap();
    assert!(lifecycle::delete(&r).await.unwrap());
    assert_eq!(
        code(locks::get(&*w.store, &group, "nodelete").await),
        "LockNotFound"
    );
    // A deleted vault takes no locks.
    assert_eq!(
        code(
            locks::put(
                &*w.store,
                &*w.clock,
                &w.audit,
                &vault,
                "late",
                lock("ReadOnly")
            )
            .await
        ),
        "ResourceNotFound"
    );
}
