//! The conformance suite: the behaviour every `Store` must show. Each backend crate runs
//! [`run_all`] against a fresh, empty store.

use crate::chain::Verifier;
use crate::*;
use std::sync::Arc;

mod changes;
mod device_health;
mod devices;
mod identities;
mod insights;
mod keys;
mod users;

/// Runs every check; panics with the failing check's message.
pub async fn run_all(store: Arc<dyn Store>) {
    meta_and_keys(&*store).await;
    identities(&*store).await;
    let vault = vault_and_policies(&*store).await;
    role_assignments_and_vault_purge(&*store).await;
    versions_and_listing(&*store, &vault).await;
    soft_delete_recover_purge(&*store, &vault).await;
    restore_conflicts(&*store, &vault).await;
    concurrent_puts_lose_nothing(store.clone(), &vault).await;
    audit_chain(&*store, &vault).await;
    crate::conformance_vault_arm::vault_arm_and_locks(&*store).await;
    identities::managed_identities_and_key_credentials(&*store).await;
    insights::insights_and_delivery(&*store).await;
    devices::devices_operations_and_enrollments(&*store).await;
    device_health::reports_and_alert_history(&*store).await;
    keys::key_maintenance(&*store, &vault).await;
    users::users_grants_and_refresh_families(&*store).await;
    // Last: it prunes changes store-wide.
    changes::change_feed(store.clone()).await;
}

fn version(vault: &VaultRow, name: &str, version: &str) -> VersionRow {
    VersionRow {
        vault_id: vault.id.clone(),
        name: name.to_string(),
        version: version.to_string(),
        seq: 0,
        sealed_value: vec![1, 2, 3],
        content_type: Some("text/plain".into()),
        tags_json: Some(r#"{"a":"b"}"#.into()),
        enabled: true,
        nbf: None,
        exp: Some(99),
        created: 10,
        updated: 10,
    }
}

fn audit(vault: &VaultRow, op: &str) -> AuditEntry {
    AuditEntry {
        vault_id: vault.id.clone(),
        time_ms: 1,
        operation: op.to_string(),
        result_type: "Success".into(),
        caller_oid: Some("oid-1".into()),
        record_json: format!(r#"{{"operationName":"{op}"}}"#),
    }
}

async fn put(store: &dyn Store, vault: &VaultRow, name: &str, v: &str) -> StoreResult<()> {
    store
        .apply(
            Mutation::PutVersion {
                display_name: name.to_uppercase(),
                version: version(vault, name, v),
            },
            audit(vault, "SecretSet"),
        )
        .await
}

async fn meta_and_keys(store: &dyn Store) {
    assert_eq!(store.get_meta("salt").await.unwrap(), None);
    assert_eq!(
        store.put_meta_if_absent("salt", b"one").await.unwrap(),
        b"one"
    );
    assert_eq!(
        store.put_meta_if_absent("salt", b"two").await.unwrap(),
        b"one",
        "first writer wins"
    );
    store
        .insert_data_key(DataKeyRow {
            id: 1,
            wrapped: vec![9; 40],
        })
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_data_key(DataKeyRow {
                id: 1,
                wrapped: vec![8]
            })
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.list_data_keys().await.unwrap(),
        vec![DataKeyRow {
            id: 1,
            wrapped: vec![9; 40]
        }]
    );
    let key = SigningKeyRow {
        kid: "k1".into(),
        sealed_private: vec![1],
        public_jwk: "{}".into(),
        created: 5,
    };
    store.insert_signing_key(key.clone()).await.unwrap();
    assert_eq!(store.list_signing_keys().await.unwrap(), vec![key]);
}

async fn identities(store: &dyn Store) {
    let tenant = TenantRow {
        id: "t1".into(),
        display_name: "Tenant".into(),
    };
    store.insert_tenant(tenant.clone()).await.unwrap();
    assert_eq!(store.get_tenant("t1").await.unwrap(), Some(tenant));
    assert_eq!(store.get_tenant("t2").await.unwrap(), None);
    let p = PrincipalRow {
        object_id: "oid-1".into(),
        tenant_id: "t1".into(),
        client_id: "app-1".into(),
        display_name: "admin".into(),
        kind: "ServicePrincipal".into(),
    };
    store.insert_principal(p.clone()).await.unwrap();
    assert_eq!(
        store
            .get_principal_by_client_id("t1", "app-1")
            .await
            .unwrap(),
        Some(p)
    );
    assert_eq!(
        store
            .get_principal_by_client_id("t2", "app-1")
            .await
            .unwrap(),
        None
    );
    let s = ClientSecretRow {
        id: "s1".into(),
        principal_id: "oid-1".into(),
        hash: vec![7; 32],
        expires: 100,
    };
    store.insert_client_secret(s.clone()).await.unwrap();
    assert_eq!(store.list_client_secrets("oid-1").await.unwrap(), vec![s]);
}

async fn vault_and_policies(store: &dyn Store) -> VaultRow {
    let sub = SubscriptionRow {
        id: "sub-1".into(),
        tenant_id: "t1".into(),
        display_name: "Sub".into(),
    };
    store.insert_subscription(sub.clone()).await.unwrap();
    assert_eq!(store.get_subscription("sub-1").await.unwrap(), Some(sub));
    assert_eq!(store.get_subscription("sub-2").await.unwrap(), None);
    let vault = VaultRow {
        id: "vault-1".into(),
        name: "dev".into(),
        tenant_id: "t1".into(),
        subscription_id: "sub-1".into(),
        resource_group: "rg".into(),
        location: "local".into(),
        resource_id:
            "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/dev".into(),
        tags_json: None,
        retention_days: 90,
        purge_protection: false,
        enable_rbac: false,
        created: 1,
        deleted: None,
    };
    store.insert_vault(vault.clone()).await.unwrap();
    let dup = VaultRow {
        id: "vault-2".into(),
        ..vault.clone()
    };
    assert!(matches!(
        store.insert_vault(dup).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_vault_by_name("dev").await.unwrap(),
        Some(vault.clone())
    );
    assert_eq!(store.list_vaults().await.unwrap(), vec![vault.clone()]);
    let mut policy = AccessPolicyRow {
        vault_id: vault.id.clone(),
        object_id: "oid-1".into(),
        secret_permissions: vec!["get".into()],
    };
    store.set_access_policy(policy.clone()).await.unwrap();
    policy.secret_permissions = vec!["get".into(), "list".into()];
    store.set_access_policy(policy.clone()).await.unwrap();
    assert_eq!(
        store.list_access_policies(&vault.id).await.unwrap(),
        vec![policy.clone()]
    );
    let other = AccessPolicyRow {
        object_id: "oid-2".into(),
        ..policy
    };
    store.set_access_policy(other).await.unwrap();
    store
        .delete_access_policy(&vault.id, "oid-2")
        .await
        .unwrap();
    assert!(matches!(
        store.delete_access_policy(&vault.id, "oid-2").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.list_access_policies(&vault.id).await.unwrap().len(),
        1
    );

    // Mutable properties round-trip, and the change is audited with it.
    let mut changed = vault.clone();
    changed.tags_json = Some(r#"{"env":"test"}"#.into());
    changed.enable_rbac = true;
    changed.purge_protection = true;
    store
        .update_vault(changed.clone(), audit(&vault, "VaultPatch"))
        .await
        .unwrap();
    assert_eq!(store.get_vault_by_name("dev").await.unwrap(), Some(changed));
    store
        .update_vault(vault.clone(), audit(&vault, "VaultPatch"))
        .await
        .unwrap();
    let ghost = VaultRow {
        id: "nope".into(),
        ..vault.clone()
    };
    assert!(matches!(
        store.update_vault(ghost, audit(&vault, "VaultPatch")).await,
        Err(StoreError::NotFound)
    ));
    vault
}

async fn versions_and_listing(store: &dyn Store, vault: &VaultRow) {
    for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
        put(store, vault, "alpha", v).await.unwrap();
        let secret = store.get_secret(&vault.id, "alpha").await.unwrap().unwrap();
        assert_eq!(secret.display_name, "ALPHA");
        let versions = store
            .list_versions(&vault.id, "alpha", 0, 100)
            .await
            .unwrap();
        assert_eq!(versions.len(), i + 1);
    }
    let versions = store
        .list_versions(&vault.id, "alpha", 0, 100)
        .await
        .unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>(),
        ["v1", "v2", "v3"]
    );
    assert!(
        versions.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq grows with each put"
    );
    let page = store
        .list_versions(&vault.id, "alpha", versions[0].seq, 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].version, "v2");
    let (secret, latest) = store.get_latest(&vault.id, "alpha").await.unwrap().unwrap();
    assert_eq!(
        (secret.name.as_str(), latest.version.as_str()),
        ("alpha", "v3")
    );
    assert_eq!(store.get_latest(&vault.id, "zulu").await.unwrap(), None);
    let got = store
        .get_version(&vault.id, "alpha", "v2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.sealed_value, vec![1, 2, 3]);
    assert_eq!(got.tags_json.as_deref(), Some(r#"{"a":"b"}"#));
    assert_eq!(got.exp, Some(99));
    assert_eq!(
        store.get_version(&vault.id, "alpha", "nope").await.unwrap(),
        None
    );

    let mut updated = got.clone();
    updated.enabled = false;
    updated.content_type = None;
    updated.updated = 20;
    store
        .apply(
            Mutation::UpdateVersion {
                version: updated.clone(),
            },
            audit(vault, "SecretUpdate"),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .get_version(&vault.id, "alpha", "v2")
            .await
            .unwrap()
            .unwrap(),
        updated
    );
    let missing = VersionRow {
        version: "nope".into(),
        ..updated
    };
    assert!(matches!(
        store
            .apply(
                Mutation::UpdateVersion { version: missing },
                audit(vault, "SecretUpdate")
            )
            .await,
        Err(StoreError::NotFound)
    ));

    for n in ["bravo", "charlie", "delta"] {
        put(store, vault, n, &format!("{n}-1")).await.unwrap();
    }
    let all = store
        .list_secrets(&vault.id, false, None, 100)
        .await
        .unwrap();
    let names: Vec<_> = all.iter().map(|(s, _)| s.name.as_str()).collect();
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta"]);
    assert_eq!(all[0].1.version, "v3", "list carries the latest version");
    let page = store
        .list_secrets(&vault.id, false, Some("bravo"), 2)
        .await
        .unwrap();
    let names: Vec<_> = page.iter().map(|(s, _)| s.name.as_str()).collect();
    assert_eq!(names, ["charlie", "delta"]);
}

async fn soft_delete_recover_purge(store: &dyn Store, vault: &VaultRow) {
    let del = |name: &str| Mutation::SoftDelete {
        vault_id: vault.id.clone(),
        name: name.into(),
        deleted_at: 100,
        purge_at: 200,
    };
    let before = store.count_live().await.unwrap();
    store
        .apply(del("bravo"), audit(vault, "SecretDelete"))
        .await
        .unwrap();
    // A soft-deleted secret no longer counts as live; its vault does.
    let after = store.count_live().await.unwrap();
    assert_eq!(after.secrets + 1, before.secrets);
    assert_eq!(after.vaults, before.vaults);
    assert!(after.vaults >= 1);
    let pools = store.pool_usage();
    assert!(pools.open >= 1 && pools.idle <= pools.open, "{pools:?}");
    assert!(matches!(
        store
            .apply(del("bravo"), audit(vault, "SecretDelete"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.apply(del("zulu"), audit(vault, "SecretDelete")).await,
        Err(StoreError::NotFound)
    ));
    let s = store.get_secret(&vault.id, "bravo").await.unwrap().unwrap();
    assert_eq!(
        s.deleted,
        Some(Deletion {
            deleted_at: 100,
            purge_at: 200
        })
    );
    assert!(matches!(
        put(store, vault, "bravo", "bravo-2").await,
        Err(StoreError::Conflict)
    ));
    let live: Vec<_> = store
        .list_secrets(&vault.id, false, None, 100)
        .await
        .unwrap();
    assert!(live.iter().all(|(s, _)| s.name != "bravo"));
    let deleted = store
        .list_secrets(&vault.id, true, None, 100)
        .await
        .unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].0.name, "bravo");

    let recover = |name: &str| Mutation::Recover {
        vault_id: vault.id.clone(),
        name: name.into(),
    };
    assert!(matches!(
        store
            .apply(recover("alpha"), audit(vault, "SecretRecover"))
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .apply(recover("bravo"), audit(vault, "SecretRecover"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_secret(&vault.id, "bravo")
            .await
            .unwrap()
            .unwrap()
            .deleted,
        None
    );
    put(store, vault, "bravo", "bravo-2").await.unwrap();

    let purge = |name: &str| Mutation::Purge {
        vault_id: vault.id.clone(),
        name: name.into(),
    };
    assert!(matches!(
        store
            .apply(purge("bravo"), audit(vault, "SecretPurge"))
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .apply(del("bravo"), audit(vault, "SecretDelete"))
        .await
        .unwrap();
    assert_eq!(store.purge_due(199, 10).await.unwrap(), vec![]);
    assert_eq!(store.purge_due(200, 10).await.unwrap().len(), 1);
    store
        .apply(purge("bravo"), audit(vault, "SecretPurge"))
        .await
        .unwrap();
    assert_eq!(store.get_secret(&vault.id, "bravo").await.unwrap(), None);
    assert_eq!(
        store
            .list_versions(&vault.id, "bravo", 0, 10)
            .await
            .unwrap(),
        vec![]
    );
    put(store, vault, "bravo", "bravo-3").await.unwrap();
}

async fn restore_conflicts(store: &dyn Store, vault: &VaultRow) {
    let versions = vec![version(vault, "echo", "e1"), version(vault, "echo", "e2")];
    let restore = Mutation::Restore {
        display_name: "Echo".into(),
        versions,
    };
    store
        .apply(restore.clone(), audit(vault, "SecretRestore"))
        .await
        .unwrap();
    let restored = store.list_versions(&vault.id, "echo", 0, 10).await.unwrap();
    assert_eq!(
        restored
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>(),
        ["e1", "e2"]
    );
    assert!(matches!(
        store.apply(restore, audit(vault, "SecretRestore")).await,
        Err(StoreError::Conflict)
    ));
    put(store, vault, "echo", "e3").await.unwrap();
    let latest = store
        .list_secrets(&vault.id, false, Some("delta"), 1)
        .await
        .unwrap();
    assert_eq!(
        latest[0].1.version, "e3",
        "a put after restore becomes the latest"
    );
}

async fn concurrent_puts_lose_nothing(store: Arc<dyn Store>, vault: &VaultRow) {
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        let vault = vault.clone();
        tasks.push(tokio::spawn(async move {
            put(&*store, &vault, "hot", &format!("hot-{i}")).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let versions = store.list_versions(&vault.id, "hot", 0, 100).await.unwrap();
    assert_eq!(versions.len(), 24);
    let mut seqs: Vec<_> = versions.iter().map(|v| v.seq).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), 24, "every version got its own seq");
}

async fn audit_chain(store: &dyn Store, vault: &VaultRow) {
    let batch = (0..5)
        .map(|i| audit(vault, &format!("SecretGet{i}")))
        .collect();
    store.append_audit(batch).await.unwrap();
    let mut verifier = Verifier::default();
    let mut after = 0;
    loop {
        let rows = store.read_audit(&vault.id, after, 7).await.unwrap();
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            verifier.push(row).unwrap();
            after = row.seq;
        }
    }
    let head = store.audit_head(&vault.id).await.unwrap();
    let count = verifier.finish(head).unwrap();
    assert!(
        count > 30,
        "mutations and batches are all chained ({count})"
    );
    assert_eq!(
        store.read_audit(&vault.id, count - 1, 10).await.unwrap()[0]
            .entry
            .operation,
        "SecretGet4"
    );
    assert_eq!(store.audit_head("no-such-vault").await.unwrap(), None);
    assert!(store.list_audit_chains().await.unwrap().contains(&vault.id));
}

async fn role_assignments_and_vault_purge(store: &dyn Store) {
    let vault = VaultRow {
        id: "vault-gone".into(),
        name: "gone".into(),
        tenant_id: "t1".into(),
        subscription_id: "sub-1".into(),
        resource_group: "rg".into(),
        location: "local".into(),
        resource_id:
            "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/Gone".into(),
        tags_json: None,
        retention_days: 7,
        purge_protection: false,
        enable_rbac: true,
        created: 1,
        deleted: None,
    };
    store.insert_vault(vault.clone()).await.unwrap();
    let scope = vault.resource_id.clone();
    let ra = |id: &str, scope: &str, principal: &str| RoleAssignmentRow {
        id: id.into(),
        scope: scope.into(),
        role_definition_id: "role".into(),
        principal_id: principal.into(),
        created: 1,
    };
    store
        .insert_role_assignment(ra("ra-1", &scope, "p1"))
        .await
        .unwrap();
    store
        .insert_role_assignment(ra("ra-2", &format!("{scope}/secrets/s1"), "p1"))
        .await
        .unwrap();
    store
        .insert_role_assignment(ra("ra-3", "/subscriptions/sub-1", "p2"))
        .await
        .unwrap();
    // A sibling whose name starts with the same letters is not "under" the vault.
    store
        .insert_role_assignment(ra("ra-4", &format!("{scope}x"), "p2"))
        .await
        .unwrap();
    assert!(matches!(
        store.insert_role_assignment(ra("ra-1", "/x", "p")).await,
        Err(StoreError::Conflict)
    ));
    let mine = store
        .list_role_assignments_for_principal("p1")
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(
        mine[0].scope,
        scope.to_ascii_lowercase(),
        "scopes are stored lowercase"
    );
    let under: Vec<String> = store
        .list_role_assignments_under(&scope.to_uppercase())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(under, ["ra-1", "ra-2"]);
    store.delete_role_assignment("ra-2").await.unwrap();
    assert!(matches!(
        store.delete_role_assignment("ra-2").await,
        Err(StoreError::NotFound)
    ));

    // Only a soft-deleted vault can be purged; purging takes its role assignments along.
    assert!(matches!(
        store
            .purge_vault(&vault.id, audit(&vault, "VaultPurge"))
            .await,
        Err(StoreError::NotFound)
    ));
    let deleted = VaultRow {
        deleted: Some(Deletion {
            deleted_at: 5,
            purge_at: 10,
        }),
        ..vault.clone()
    };
    store
        .update_vault(deleted.clone(), audit(&vault, "VaultDelete"))
        .await
        .unwrap();
    assert_eq!(
        store.get_vault_by_name("gone").await.unwrap(),
        Some(deleted)
    );
    store
        .purge_vault(&vault.id, audit(&vault, "VaultPurge"))
        .await
        .unwrap();
    assert_eq!(store.get_vault_by_name("gone").await.unwrap(), None);
    assert_eq!(
        store
            .list_role_assignments_for_principal("p1")
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store
            .list_role_assignments_for_principal("p2")
            .await
            .unwrap()
            .len(),
        2
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, prev: &[u8], json: &str) -> AuditRow {
        AuditRow {
            entry: AuditEntry {
                vault_id: "v".into(),
                time_ms: 0,
                operation: "op".into(),
                result_type: "Success".into(),
                caller_oid: None,
                record_json: json.into(),
            },
            seq,
            prev_hash: prev.to_vec(),
            hash: chain::link(prev, seq, json),
        }
    }

    #[test]
    fn verifier_finds_edits_gaps_and_cut_tails() {
        let r1 = row(1, &chain::GENESIS, "a");
        let r2 = row(2, &r1.hash, "b");
        let r3 = row(3, &r2.hash, "c");
        let good = |rows: &[&AuditRow], head: (i64, Vec<u8>)| {
            let mut v = Verifier::default();
            for r in rows {
                v.push(r)?;
            }
            v.finish(Some(head))
        };
        assert_eq!(good(&[&r1, &r2, &r3], (3, r3.hash.clone())), Ok(3));
        let mut edited = r2.clone();
        edited.entry.record_json = "B".into();
        assert_eq!(
            good(&[&r1, &edited, &r3], (3, r3.hash.clone()))
                .unwrap_err()
                .seq,
            2
        );
        assert_eq!(good(&[&r1, &r3], (3, r3.hash.clone())).unwrap_err().seq, 2);
        assert_eq!(good(&[&r1, &r2], (3, r3.hash.clone())).unwrap_err().seq, 3);
    }
}
