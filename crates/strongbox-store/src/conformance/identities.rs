//! Conformance of [`IdentityStore`]: managed identities, key credentials, assertion ids,
//! identity endpoints.

use crate::*;

/// Managed identities live and die with their principal, key credentials and endpoint bindings;
/// assertion ids are remembered until they expire.
pub(super) async fn managed_identities_and_key_credentials(store: &dyn Store) {
    let principal = |oid: &str, client: &str| PrincipalRow {
        object_id: oid.into(),
        tenant_id: "t1".into(),
        client_id: client.into(),
        display_name: "mi".into(),
        kind: "UserAssignedManagedIdentity".into(),
    };
    let identity = |oid: &str, resource: &str| ManagedIdentityRow {
        object_id: oid.into(),
        kind: "UserAssigned".into(),
        resource_id: resource.into(),
        subscription_id: "sub-1".into(),
        resource_group: "rg".into(),
        name: "mi".into(),
        location: "local".into(),
        tags_json: Some(r#"{"a":"b"}"#.into()),
        created: 5,
    };
    let rid = "/subscriptions/sub-1/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/MI";
    store
        .insert_managed_identity(principal("mi-1", "mi-app-1"), identity("mi-1", rid))
        .await
        .unwrap();
    // The same resource twice, or a taken client id, is a conflict and leaves nothing behind.
    assert!(matches!(
        store
            .insert_managed_identity(principal("mi-2", "mi-app-2"), identity("mi-2", rid))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.get_principal("mi-2").await.unwrap(), None);
    assert!(matches!(
        store
            .insert_managed_identity(principal("mi-3", "mi-app-1"), identity("mi-3", "/x"))
            .await,
        Err(StoreError::Conflict)
    ));
    let (found, p) = store
        .get_managed_identity_by_resource("UserAssigned", &rid.to_uppercase())
        .await
        .unwrap()
        .expect("found by case-insensitive resource id");
    assert_eq!(found.resource_id, rid.to_ascii_lowercase());
    assert_eq!(found.resource_group, "rg");
    assert_eq!(p, principal("mi-1", "mi-app-1"));
    assert_eq!(
        store
            .get_managed_identity_by_resource("SystemAssigned", rid)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_managed_identity("mi-1").await.unwrap().unwrap().0,
        found
    );
    assert_eq!(
        store.list_managed_identities("sub-1").await.unwrap().len(),
        1
    );
    assert!(
        store
            .list_managed_identities("sub-2")
            .await
            .unwrap()
            .is_empty()
    );
    store
        .update_managed_identity_tags("mi-1", None)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_managed_identity("mi-1")
            .await
            .unwrap()
            .unwrap()
            .0
            .tags_json,
        None
    );
    assert!(matches!(
        store.update_managed_identity_tags("nope", None).await,
        Err(StoreError::NotFound)
    ));

    let credential = KeyCredentialRow {
        id: "kc-1".into(),
        principal_id: "mi-1".into(),
        kind: "AsymmetricX509Cert".into(),
        key_id: "ABCD".into(),
        sha256: "00ff".into(),
        der: vec![1, 2, 3],
        not_before: 1,
        expires: 100,
        created: 2,
    };
    store
        .insert_key_credential(credential.clone())
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_key_credential(KeyCredentialRow {
                id: "kc-2".into(),
                ..credential.clone()
            })
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.list_key_credentials("mi-1").await.unwrap(),
        vec![credential.clone()]
    );
    store.delete_key_credential("mi-1", "ABCD").await.unwrap();
    assert!(matches!(
        store.delete_key_credential("mi-1", "ABCD").await,
        Err(StoreError::NotFound)
    ));
    store.insert_key_credential(credential).await.unwrap();

    assert!(
        store
            .record_assertion_id("mi-1", "j1", 50, 10)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_assertion_id("mi-1", "j1", 50, 20)
            .await
            .unwrap(),
        "a replay"
    );
    assert!(
        store
            .record_assertion_id("mi-2", "j1", 50, 20)
            .await
            .unwrap(),
        "per principal"
    );
    // Once expired it is forgotten (the assertion itself is refused by its exp by then).
    assert!(
        store
            .record_assertion_id("mi-1", "j1", 90, 60)
            .await
            .unwrap()
    );

    let endpoint = IdentityEndpointRow {
        id: "ep-1".into(),
        principal_id: "mi-1".into(),
        form: "AppService".into(),
        secret_hash: Some(vec![9; 32]),
        created: 3,
    };
    store
        .insert_identity_endpoint(endpoint.clone())
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_identity_endpoint(IdentityEndpointRow {
                id: "ep-2".into(),
                ..endpoint.clone()
            })
            .await,
        Err(StoreError::Conflict)
    ));
    let arc = IdentityEndpointRow {
        id: "ep-3".into(),
        form: "AzureArc".into(),
        secret_hash: None,
        ..endpoint.clone()
    };
    store.insert_identity_endpoint(arc.clone()).await.unwrap();
    assert_eq!(
        store.get_identity_endpoint_by_hash(&[9; 32]).await.unwrap(),
        Some(endpoint.clone())
    );
    assert_eq!(
        store.get_identity_endpoint_by_hash(&[8; 32]).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_identity_endpoint("ep-3").await.unwrap(),
        Some(arc)
    );
    assert_eq!(
        store.list_identity_endpoints("mi-1").await.unwrap().len(),
        2
    );

    store
        .insert_role_assignment(RoleAssignmentRow {
            id: "ra-mi".into(),
            scope: "/subscriptions/sub-1".into(),
            role_definition_id: "role".into(),
            principal_id: "mi-1".into(),
            created: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .get_role_assignment("ra-mi")
            .await
            .unwrap()
            .unwrap()
            .principal_id,
        "mi-1"
    );
    assert_eq!(store.get_role_assignment("ra-none").await.unwrap(), None);

    // Deleting the identity takes its principal, credentials, endpoints and assignments along.
    store.delete_managed_identity("mi-1").await.unwrap();
    assert_eq!(store.get_principal("mi-1").await.unwrap(), None);
    assert_eq!(store.get_managed_identity("mi-1").await.unwrap(), None);
    assert!(store.list_key_credentials("mi-1").await.unwrap().is_empty());
    assert!(
        store
            .list_identity_endpoints("mi-1")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.get_identity_endpoint_by_hash(&[9; 32]).await.unwrap(),
        None
    );
    assert_eq!(store.get_role_assignment("ra-mi").await.unwrap(), None);
    assert!(matches!(
        store.delete_managed_identity("mi-1").await,
        Err(StoreError::NotFound)
    ));
    // The resource id is free again.
    store
        .insert_managed_identity(principal("mi-4", "mi-app-4"), identity("mi-4", rid))
        .await
        .unwrap();
    assert!(store.get_principal("oid-1").await.unwrap().is_some());
}
