//! Conformance checks for the vault lifecycle: ARM properties, guarded writes, resource locks,
//! paging of vaults, purge-due vaults, and what goes with a purged vault.

use crate::*;

fn entry(chain: &str, op: &str) -> AuditEntry {
    AuditEntry {
        vault_id: chain.to_string(),
        time_ms: 1,
        operation: op.to_string(),
        result_type: "Success".into(),
        caller_oid: Some("oid-1".into()),
        record_json: format!(r#"{{"operationName":"{op}"}}"#),
    }
}

fn vault(id: &str, name: &str, rg: &str) -> VaultRow {
    VaultRow {
        id: id.into(),
        name: name.into(),
        tenant_id: "t1".into(),
        subscription_id: "sub-arm".into(),
        resource_group: rg.into(),
        location: "local".into(),
        resource_id: format!(
            "/subscriptions/sub-arm/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}"
        ),
        tags_json: None,
        retention_days: 7,
        purge_protection: false,
        enable_rbac: false,
        created: 1,
        deleted: None,
    }
}

fn arm(vault_id: &str, sku: &str) -> VaultArmRow {
    VaultArmRow {
        vault_id: vault_id.into(),
        sku: sku.into(),
        properties_json: format!(r#"{{"sku":"{sku}"}}"#),
    }
}

fn policy(vault_id: &str, oid: &str, perms: &[&str]) -> AccessPolicyRow {
    AccessPolicyRow {
        vault_id: vault_id.into(),
        object_id: oid.into(),
        secret_permissions: perms.iter().map(|p| p.to_string()).collect(),
    }
}

fn lock(scope: &str, name: &str, level: &str, vault_id: Option<&str>) -> LockRow {
    LockRow {
        scope: scope.to_ascii_lowercase(),
        name: name.to_ascii_lowercase(),
        resource_id: scope.into(),
        display_name: name.into(),
        level: level.into(),
        notes: Some("why".into()),
        owners_json: None,
        vault_id: vault_id.map(String::from),
        created: 3,
    }
}

fn guard(scopes: &[&str], read_only_only: bool) -> Option<LockGuard> {
    Some(LockGuard {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        read_only_only,
    })
}

pub(crate) async fn vault_arm_and_locks(store: &dyn Store) {
    let rg = "/subscriptions/sub-arm/resourceGroups/Locked";
    let a = vault("arm-a", "arm-a", "locked");
    let b = vault("arm-b", "arm-b", "locked");
    let c = vault("arm-c", "arm-c", "other");

    // Creation writes the vault, its ARM properties and policies, and its audit record, at once.
    store
        .create_vault_arm(
            a.clone(),
            arm(&a.id, "premium"),
            vec![
                policy(&a.id, "o1", &["get"]),
                policy(&a.id, "o2", &["list"]),
            ],
            None,
            entry(&a.id, "create"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_vault_by_name("arm-a").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.get_vault_arm(&a.id).await.unwrap(),
        Some(arm(&a.id, "premium"))
    );
    assert_eq!(store.list_access_policies(&a.id).await.unwrap().len(), 2);
    assert_eq!(store.audit_head(&a.id).await.unwrap().unwrap().0, 1);
    assert!(matches!(
        store
            .create_vault_arm(
                vault("arm-dup", "arm-a", "locked"),
                arm("arm-dup", "standard"),
                vec![],
                None,
                entry("arm-dup", "create"),
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get_vault_arm("arm-dup").await.unwrap(), None);
    assert_eq!(store.get_vault_arm("nope").await.unwrap(), None);

    // Locks: created once, then replaced; names and scopes are case-insensitive.
    let rg_lock = lock(rg, "NoDelete", LOCK_READ_ONLY, None);
    assert!(
        store
            .put_lock(rg_lock.clone(), entry("subscription:sub-arm", "lock"))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_lock(&rg.to_uppercase(), "NODELETE")
            .await
            .unwrap(),
        Some(rg_lock.clone())
    );

    // A ReadOnly lock on the group refuses guarded writes in it; nothing of the write lands.
    let mut changed = a.clone();
    changed.tags_json = Some(r#"{"x":"y"}"#.into());
    let before = store.audit_head(&a.id).await.unwrap();
    assert!(matches!(
        store
            .save_vault_arm(
                changed.clone(),
                Some(arm(&a.id, "standard")),
                Some(vec![]),
                guard(&[&a.resource_id, rg], true),
                entry(&a.id, "write"),
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_vault_by_name("arm-a").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(store.list_access_policies(&a.id).await.unwrap().len(), 2);
    assert_eq!(store.audit_head(&a.id).await.unwrap(), before);
    assert!(matches!(
        store
            .create_vault_arm(
                b.clone(),
                arm(&b.id, "standard"),
                vec![],
                guard(&[&b.resource_id, rg], true),
                entry(&b.id, "create"),
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get_vault_by_name("arm-b").await.unwrap(), None);

    // Downgraded to CanNotDelete, the lock lets writes through but still stops deletes.
    let mut rg_lock = rg_lock;
    rg_lock.level = LOCK_CAN_NOT_DELETE.into();
    assert!(
        !store
            .put_lock(rg_lock.clone(), entry("subscription:sub-arm", "lock"))
            .await
            .unwrap(),
        "replacing is not creating"
    );
    store
        .save_vault_arm(
            changed.clone(),
            Some(arm(&a.id, "standard")),
            Some(vec![policy(&a.id, "o3", &["get", "set"])]),
            guard(&[&a.resource_id, rg], true),
            entry(&a.id, "write"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_vault_by_name("arm-a").await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(
        store.list_access_policies(&a.id).await.unwrap(),
        vec![policy(&a.id, "o3", &["get", "set"])]
    );
    assert_eq!(
        store.get_vault_arm(&a.id).await.unwrap().unwrap().sku,
        "standard"
    );
    // Without policies or ARM properties given, those stay as they are.
    store
        .save_vault_arm(changed.clone(), None, None, None, entry(&a.id, "write"))
        .await
        .unwrap();
    assert_eq!(store.list_access_policies(&a.id).await.unwrap().len(), 1);
    let mut deleting = changed.clone();
    deleting.deleted = Some(Deletion {
        deleted_at: 10,
        purge_at: 20,
    });
    assert!(matches!(
        store
            .save_vault_arm(
                deleting.clone(),
                None,
                None,
                guard(&[&a.resource_id, rg], false),
                entry(&a.id, "delete"),
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store
            .save_vault_arm(
                vault("ghost", "ghost", "x"),
                None,
                None,
                None,
                entry("ghost", "w")
            )
            .await,
        Err(StoreError::NotFound)
    ));

    // Listing: at exact scopes, or under a scope (by prefix of whole segments only).
    store
        .create_vault_arm(
            b.clone(),
            arm(&b.id, "standard"),
            vec![],
            None,
            entry(&b.id, "create"),
        )
        .await
        .unwrap();
    let vault_lock = lock(&a.resource_id, "pin", LOCK_READ_ONLY, Some(&a.id));
    assert!(
        store
            .put_lock(vault_lock.clone(), entry(&a.id, "lock"))
            .await
            .unwrap()
    );
    let sibling = lock(&format!("{rg}x"), "other", LOCK_READ_ONLY, None);
    store
        .put_lock(sibling.clone(), entry("subscription:sub-arm", "lock"))
        .await
        .unwrap();
    let under: Vec<String> = store
        .list_locks_under(rg)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(under, ["nodelete", "pin"]);
    let at = store
        .list_locks_at(&[
            a.resource_id.clone(),
            rg.to_string(),
            "/subscriptions/sub-arm".into(),
        ])
        .await
        .unwrap();
    assert_eq!(at.len(), 2);
    assert!(at.contains(&vault_lock) && at.contains(&rg_lock));

    // Paging of vaults by placement and state.
    store
        .create_vault_arm(
            c.clone(),
            arm(&c.id, "standard"),
            vec![],
            None,
            entry(&c.id, "c"),
        )
        .await
        .unwrap();
    let names = |v: Vec<VaultRow>| v.into_iter().map(|v| v.name).collect::<Vec<_>>();
    assert_eq!(
        names(
            store
                .list_vaults_page("sub-arm", None, false, None, 10)
                .await
                .unwrap()
        ),
        ["arm-a", "arm-b", "arm-c"]
    );
    assert_eq!(
        names(
            store
                .list_vaults_page("sub-arm", Some("locked"), false, None, 1)
                .await
                .unwrap()
        ),
        ["arm-a"]
    );
    assert_eq!(
        names(
            store
                .list_vaults_page("sub-arm", Some("locked"), false, Some("arm-a"), 10)
                .await
                .unwrap()
        ),
        ["arm-b"]
    );

    // A lock on a vault refuses nothing to a lock-free write elsewhere; a soft-deleted vault
    // takes no new lock; purging a vault takes its locks and ARM properties along.
    let mut b_deleted = b.clone();
    b_deleted.deleted = Some(Deletion {
        deleted_at: 10,
        purge_at: 15,
    });
    store
        .save_vault_arm(b_deleted.clone(), None, None, None, entry(&b.id, "delete"))
        .await
        .unwrap();
    assert_eq!(
        names(
            store
                .list_vaults_page("sub-arm", None, true, None, 10)
                .await
                .unwrap()
        ),
        ["arm-b"]
    );
    assert!(matches!(
        store
            .put_lock(
                lock(&b.resource_id, "late", LOCK_CAN_NOT_DELETE, Some(&b.id)),
                entry(&b.id, "lock")
            )
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        names(store.vaults_purge_due(14, 10).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        names(store.vaults_purge_due(15, 10).await.unwrap()),
        ["arm-b"]
    );

    let mut a_deleted = changed.clone();
    a_deleted.deleted = Some(Deletion {
        deleted_at: 10,
        purge_at: 20,
    });
    store
        .save_vault_arm(a_deleted, None, None, None, entry(&a.id, "delete"))
        .await
        .unwrap();
    store
        .purge_vault(&a.id, entry(&a.id, "purge"))
        .await
        .unwrap();
    assert_eq!(store.get_vault_by_name("arm-a").await.unwrap(), None);
    assert_eq!(store.get_vault_arm(&a.id).await.unwrap(), None);
    assert_eq!(store.get_lock(&a.resource_id, "pin").await.unwrap(), None);
    assert_eq!(
        store.get_lock(rg, "nodelete").await.unwrap(),
        Some(rg_lock.clone()),
        "a group's lock outlives the vaults in it"
    );
    // The purged vault's audit chain stays.
    assert!(store.audit_head(&a.id).await.unwrap().unwrap().0 >= 5);

    // Removing a lock is audited with it; a missing lock is NotFound.
    let head = store
        .audit_head("subscription:sub-arm")
        .await
        .unwrap()
        .unwrap()
        .0;
    store
        .delete_lock(rg, "NoDelete", entry("subscription:sub-arm", "unlock"))
        .await
        .unwrap();
    assert_eq!(
        store
            .audit_head("subscription:sub-arm")
            .await
            .unwrap()
            .unwrap()
            .0,
        head + 1
    );
    assert!(matches!(
        store
            .delete_lock(rg, "nodelete", entry("subscription:sub-arm", "unlock"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .audit_head("subscription:sub-arm")
            .await
            .unwrap()
            .unwrap()
            .0,
        head + 1,
        "a refused removal appends nothing"
    );
    store
        .delete_lock(
            &sibling.scope,
            "other",
            entry("subscription:sub-arm", "unlock"),
        )
        .await
        .unwrap();
}
