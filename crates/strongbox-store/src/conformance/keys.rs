//! Key maintenance: values found by the key they are sealed under, compare-and-swap
//! re-encryption, retirement refused while a value uses the key, writes under a retired key
//! refused, metadata replaced together.

use crate::*;

/// A value in the keyring's sealed format under data key `id`.
fn sealed(id: u32, fill: u8) -> Vec<u8> {
    let mut v = vec![1];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[fill; 40]);
    v
}

async fn put_sealed(
    store: &dyn Store,
    vault: &VaultRow,
    name: &str,
    value: Vec<u8>,
) -> StoreResult<()> {
    let mut v = super::version(vault, name, &format!("{name}-v"));
    v.sealed_value = value;
    store
        .apply(
            Mutation::PutVersion {
                display_name: name.into(),
                version: v,
            },
            super::audit(vault, "SecretSet"),
        )
        .await
}

pub(super) async fn key_maintenance(store: &dyn Store, vault: &VaultRow) {
    store
        .insert_data_key(DataKeyRow {
            id: 2,
            wrapped: vec![7; 40],
        })
        .await
        .unwrap();
    for (name, key) in [("km-a", 1), ("km-b", 1), ("km-c", 2)] {
        put_sealed(store, vault, name, sealed(key, 5))
            .await
            .unwrap();
    }
    let before = store.count_not_under(2).await.unwrap();
    // Paged one at a time: in order, no repeats, nothing under key 2.
    let (mut after, mut seen) = (None, Vec::new());
    loop {
        let page = store.values_not_under(2, after.clone(), 1).await.unwrap();
        let Some(row) = page.first() else { break };
        assert_eq!(page.len(), 1);
        after = Some((row.vault_id.clone(), row.name.clone(), row.version.clone()));
        seen.push(row.clone());
    }
    let names: Vec<_> = seen
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| n.starts_with("km-"))
        .collect();
    assert_eq!(names, ["km-a", "km-b"]);
    assert_eq!(
        seen.len() as u64 + store.list_signing_keys().await.unwrap().len() as u64,
        before
    );

    assert!(
        matches!(store.retire_data_key(1).await, Err(StoreError::Conflict)),
        "km-a and km-b use key 1"
    );
    for row in seen.iter().filter(|r| r.name.starts_with("km-")) {
        let stale = SealedValueRow {
            sealed: sealed(1, 6),
            ..row.clone()
        };
        assert!(
            !store
                .replace_sealed_value(&stale, &sealed(2, 8))
                .await
                .unwrap(),
            "compare-and-swap"
        );
        assert!(
            store
                .replace_sealed_value(row, &sealed(2, 8))
                .await
                .unwrap()
        );
    }
    assert_eq!(store.count_not_under(2).await.unwrap(), before - 2);
    store.retire_data_key(1).await.unwrap();
    assert!(matches!(
        store.retire_data_key(1).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .list_data_keys()
            .await
            .unwrap()
            .iter()
            .map(|k| k.id)
            .collect::<Vec<_>>(),
        [2]
    );
    assert!(
        put_sealed(store, vault, "km-d", sealed(1, 5))
            .await
            .is_err(),
        "key 1 is retired"
    );
    put_sealed(store, vault, "km-d", sealed(2, 5))
        .await
        .unwrap();
    put_sealed(store, vault, "km-e", sealed(9, 5))
        .await
        .unwrap();

    let k1 = store.list_signing_keys().await.unwrap()[0].clone();
    assert!(
        !store
            .replace_sealed_signing_key(&k1.kid, b"other", &sealed(2, 1))
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_sealed_signing_key(&k1.kid, &k1.sealed_private, &sealed(2, 1))
            .await
            .unwrap()
    );
    assert_eq!(
        store.list_signing_keys().await.unwrap()[0].sealed_private,
        sealed(2, 1)
    );

    store
        .replace_meta(&[("km-1", Some(b"a")), ("km-2", Some(b"b"))])
        .await
        .unwrap();
    store
        .replace_meta(&[("km-1", None), ("km-2", Some(b"c"))])
        .await
        .unwrap();
    assert_eq!(store.get_meta("km-1").await.unwrap(), None);
    assert_eq!(
        store.get_meta("km-2").await.unwrap().as_deref(),
        Some(&b"c"[..])
    );
}
