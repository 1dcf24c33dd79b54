//! Conformance of [`ChangeStore`]: every committed secret mutation is recorded at its audit
//! record's position and time, in order; failed mutations and plain audit records record nothing;
//! readers following the feed while writers commit never skip a position; pruning raises the
//! floor; purging the vault takes its feed along.

use crate::*;
use std::sync::Arc;

/// Times of this suite's records: above every other suite's, since pruning is store-wide.
const T: i64 = 1_000_000_000;

fn feed_vault(id: &str, name: &str) -> VaultRow {
    VaultRow {
        id: id.into(),
        name: name.into(),
        tenant_id: "t1".into(),
        subscription_id: "sub-1".into(),
        resource_group: "rg".into(),
        location: "local".into(),
        resource_id: format!(
            "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{name}"
        ),
        tags_json: None,
        retention_days: 7,
        purge_protection: false,
        enable_rbac: false,
        created: 1,
        deleted: None,
    }
}

fn entry(vault: &VaultRow, op: &str, time_ms: i64) -> AuditEntry {
    AuditEntry {
        vault_id: vault.id.clone(),
        time_ms,
        operation: op.into(),
        result_type: "Success".into(),
        caller_oid: None,
        record_json: format!(r#"{{"operationName":"{op}","t":{time_ms}}}"#),
    }
}

fn version(vault: &VaultRow, name: &str, v: &str, enabled: bool) -> VersionRow {
    VersionRow {
        vault_id: vault.id.clone(),
        name: name.into(),
        version: v.into(),
        seq: 0,
        sealed_value: vec![1],
        content_type: None,
        tags_json: None,
        enabled,
        nbf: None,
        exp: None,
        created: 1,
        updated: 1,
    }
}

fn put(vault: &VaultRow, display: &str, v: &str, enabled: bool) -> Mutation {
    Mutation::PutVersion {
        display_name: display.into(),
        version: version(vault, &display.to_ascii_lowercase(), v, enabled),
    }
}

async fn all(store: &dyn Store, vault: &VaultRow) -> Vec<ChangeRow> {
    store.read_changes(&vault.id, 0, 1000).await.unwrap()
}

pub(super) async fn change_feed(store: Arc<dyn Store>) {
    let vault = feed_vault("vault-feed", "feed");
    store.insert_vault(vault.clone()).await.unwrap();
    assert_eq!(
        store.change_bounds(&vault.id).await.unwrap(),
        ChangeBounds { floor: 0, head: 0 }
    );
    assert_eq!(all(&*store, &vault).await, vec![]);

    every_kind_in_order(&*store, &vault).await;
    failures_record_nothing(&*store, &vault).await;
    paging_and_heads(&*store, &vault).await;
    followers_never_skip(store.clone(), &vault).await;
    pruning_raises_the_floor(&*store, &vault).await;
    vault_purge_takes_the_feed(&*store).await;
}

async fn every_kind_in_order(store: &dyn Store, vault: &VaultRow) {
    let apply = |m: Mutation, op: &'static str, t: i64| async move {
        store.apply(m, entry(vault, op, t)).await.unwrap();
    };
    apply(put(vault, "Db-Pass", "v1", true), "SecretSet", T + 100).await;
    apply(put(vault, "db-pass", "v2", false), "SecretSet", T + 101).await;
    let mut v1 = version(vault, "db-pass", "v1", false);
    v1.updated = 2;
    apply(
        Mutation::UpdateVersion { version: v1 },
        "SecretUpdate",
        T + 102,
    )
    .await;
    let (id, name) = (vault.id.clone(), "db-pass".to_string());
    let delete = Mutation::SoftDelete {
        vault_id: id.clone(),
        name: name.clone(),
        deleted_at: 5,
        purge_at: 6,
    };
    apply(delete.clone(), "SecretDelete", T + 103).await;
    let recover = Mutation::Recover {
        vault_id: id.clone(),
        name: name.clone(),
    };
    apply(recover, "SecretRecover", T + 104).await;
    apply(delete, "SecretDelete", T + 105).await;
    apply(
        Mutation::Purge { vault_id: id, name },
        "SecretPurge",
        T + 106,
    )
    .await;
    let restore = Mutation::Restore {
        display_name: "Db-Pass".into(),
        versions: vec![
            version(vault, "db-pass", "r1", false),
            version(vault, "db-pass", "r2", true),
        ],
    };
    apply(restore, "SecretRestore", T + 107).await;

    let changes = all(store, vault).await;
    let seen: Vec<_> = changes
        .iter()
        .map(|c| {
            (
                c.kind,
                c.display_name.as_str(),
                c.version.as_deref(),
                c.enabled,
                c.time_ms,
            )
        })
        .collect();
    use ChangeKind::*;
    assert_eq!(
        seen,
        [
            (NewVersion, "Db-Pass", Some("v1"), Some(true), T + 100),
            // A later put keeps the display name the secret was created with.
            (NewVersion, "Db-Pass", Some("v2"), Some(false), T + 101),
            (Updated, "Db-Pass", Some("v1"), Some(false), T + 102),
            (Deleted, "Db-Pass", None, None, T + 103),
            (Recovered, "Db-Pass", Some("v2"), Some(false), T + 104),
            (Deleted, "Db-Pass", None, None, T + 105),
            (Purged, "Db-Pass", None, None, T + 106),
            (Restored, "Db-Pass", Some("r2"), Some(true), T + 107),
        ]
    );
    assert!(
        changes
            .iter()
            .all(|c| c.name == "db-pass" && c.vault_id == vault.id)
    );
    // Each change sits at its audit record's position.
    for c in &changes {
        let rec = store.read_audit(&vault.id, c.seq - 1, 1).await.unwrap();
        assert_eq!(rec[0].seq, c.seq);
        assert_eq!(rec[0].entry.time_ms, c.time_ms);
    }
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        store.change_bounds(&vault.id).await.unwrap(),
        ChangeBounds {
            floor: 0,
            head: changes.last().unwrap().seq
        }
    );
}

async fn failures_record_nothing(store: &dyn Store, vault: &VaultRow) {
    let before = store.change_bounds(&vault.id).await.unwrap();
    let id = vault.id.clone();
    let name = |n: &str| n.to_string();
    let failing = [
        // Restore of a name that exists.
        Mutation::Restore {
            display_name: "Db-Pass".into(),
            versions: vec![version(vault, "db-pass", "x1", true)],
        },
        Mutation::UpdateVersion {
            version: version(vault, "db-pass", "nope", true),
        },
        Mutation::SoftDelete {
            vault_id: id.clone(),
            name: name("ghost"),
            deleted_at: 1,
            purge_at: 2,
        },
        Mutation::Recover {
            vault_id: id.clone(),
            name: name("db-pass"),
        },
        Mutation::Purge {
            vault_id: id.clone(),
            name: name("db-pass"),
        },
    ];
    for m in failing {
        assert!(
            store
                .apply(m.clone(), entry(vault, "Failing", T + 200))
                .await
                .is_err(),
            "{m:?}"
        );
    }
    // A put onto a soft-deleted secret is refused and recorded nowhere either.
    store
        .apply(
            Mutation::SoftDelete {
                vault_id: id.clone(),
                name: name("db-pass"),
                deleted_at: 1,
                purge_at: 2,
            },
            entry(vault, "SecretDelete", T + 201),
        )
        .await
        .unwrap();
    let deleted_head = store.change_bounds(&vault.id).await.unwrap().head;
    assert!(deleted_head > before.head);
    assert!(matches!(
        store
            .apply(
                put(vault, "db-pass", "v9", true),
                entry(vault, "SecretSet", T + 202)
            )
            .await,
        Err(StoreError::Conflict)
    ));
    // Plain audit records (reads, refusals) advance the chain but are no changes.
    store
        .append_audit(vec![entry(vault, "SecretGet", T + 203)])
        .await
        .unwrap();
    assert_eq!(
        store.change_bounds(&vault.id).await.unwrap().head,
        deleted_head
    );
    let tail = store
        .read_changes(&vault.id, before.head, 100)
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(
        (tail[0].kind, tail[0].time_ms),
        (ChangeKind::Deleted, T + 201)
    );
}

async fn paging_and_heads(store: &dyn Store, vault: &VaultRow) {
    for i in 0..5 {
        store
            .apply(
                put(vault, &format!("page-{i}"), "p1", true),
                entry(vault, "SecretSet", T + 300 + i),
            )
            .await
            .unwrap();
    }
    let everything = all(store, vault).await;
    let head = store.change_bounds(&vault.id).await.unwrap().head;
    assert_eq!(everything.last().unwrap().seq, head);
    let after = everything[everything.len() - 5].seq;
    let page = store.read_changes(&vault.id, after, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["page-1", "page-2"]
    );
    let next = store
        .read_changes(&vault.id, page[1].seq, 100)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["page-3", "page-4"]
    );
    assert_eq!(
        store.read_changes(&vault.id, head, 100).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store
            .read_changes(&vault.id, head + 1000, 100)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store.read_changes("no-such-vault", 0, 10).await.unwrap(),
        vec![]
    );
    let heads = store
        .change_heads(&[vault.id.clone(), "no-such-vault".into()])
        .await
        .unwrap();
    assert_eq!(heads, vec![(vault.id.clone(), head)]);
    assert_eq!(store.change_heads(&[]).await.unwrap(), vec![]);
}

/// Writers commit concurrently while a follower reads after its cursor: if any reader could see
/// a position before a lower one became visible, the follower would step over the lower one.
async fn followers_never_skip(store: Arc<dyn Store>, vault: &VaultRow) {
    let start = store.change_bounds(&vault.id).await.unwrap().head;
    let mut writers = Vec::new();
    for w in 0..4 {
        let (store, vault) = (store.clone(), vault.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                let m = put(&vault, &format!("race-{w}"), &format!("r{w}-{i}"), true);
                store
                    .apply(m, entry(&vault, "SecretSet", T + 400))
                    .await
                    .unwrap();
            }
        }));
    }
    let mut followed = Vec::new();
    let mut cursor = start;
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let page = store.read_changes(&vault.id, cursor, 7).await.unwrap();
        if let Some(last) = page.last() {
            cursor = last.seq;
        }
        let empty = page.is_empty();
        followed.extend(page.into_iter().map(|c| c.seq));
        if done && empty {
            break;
        }
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let committed: Vec<i64> = store
        .read_changes(&vault.id, start, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(committed.len(), 40);
    assert_eq!(
        followed, committed,
        "the follower saw every change, in order"
    );
}

async fn pruning_raises_the_floor(store: &dyn Store, vault: &VaultRow) {
    let changes = all(store, vault).await;
    // The other suites' changes are older than all of these: prune them first.
    store.prune_changes(T).await.unwrap();
    // The first 8 changes were written at T+100..=T+107.
    let eighth = changes[7].seq;
    assert_eq!(store.prune_changes(T + 100).await.unwrap(), 0);
    assert_eq!(store.prune_changes(T + 108).await.unwrap(), 8);
    let bounds = store.change_bounds(&vault.id).await.unwrap();
    assert_eq!(
        bounds,
        ChangeBounds {
            floor: eighth,
            head: changes.last().unwrap().seq
        }
    );
    assert_eq!(
        store.read_changes(&vault.id, 0, 1000).await.unwrap(),
        changes[8..].to_vec()
    );
    // Pruning everything leaves the head where it was, now as the floor.
    assert_eq!(
        store.prune_changes(i64::MAX).await.unwrap() as usize,
        changes.len() - 8
    );
    let head = changes.last().unwrap().seq;
    assert_eq!(
        store.change_bounds(&vault.id).await.unwrap(),
        ChangeBounds { floor: head, head }
    );
    assert_eq!(
        store
            .change_heads(std::slice::from_ref(&vault.id))
            .await
            .unwrap(),
        vec![]
    );
    // New changes continue above the floor.
    store
        .apply(
            put(vault, "after-prune", "a1", true),
            entry(vault, "SecretSet", T + 500),
        )
        .await
        .unwrap();
    let bounds = store.change_bounds(&vault.id).await.unwrap();
    assert_eq!(bounds.floor, head);
    assert!(bounds.head > head);
    assert_eq!(
        store.read_changes(&vault.id, head, 10).await.unwrap().len(),
        1
    );
}

async fn vault_purge_takes_the_feed(store: &dyn Store) {
    let vault = feed_vault("vault-feed-gone", "feedgone");
    store.insert_vault(vault.clone()).await.unwrap();
    store
        .apply(put(&vault, "x", "x1", true), entry(&vault, "SecretSet", 1))
        .await
        .unwrap();
    assert_eq!(all(store, &vault).await.len(), 1);
    let deleted = VaultRow {
        deleted: Some(Deletion {
            deleted_at: 2,
            purge_at: 3,
        }),
        ..vault.clone()
    };
    store
        .update_vault(deleted, entry(&vault, "VaultDelete", 2))
        .await
        .unwrap();
    store
        .purge_vault(&vault.id, entry(&vault, "VaultPurge", 3))
        .await
        .unwrap();
    assert_eq!(all(store, &vault).await, vec![]);
    assert_eq!(
        store.change_bounds(&vault.id).await.unwrap(),
        ChangeBounds::default()
    );
}
