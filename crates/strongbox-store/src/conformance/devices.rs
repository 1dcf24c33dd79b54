//! Conformance of [`DeviceStore`]: devices with their audit record, operations, and one-time
//! enrolments that a second use (or expiry, or a newer key) refuses.

use crate::*;

fn entry(chain: &str, op: &str) -> AuditEntry {
    AuditEntry {
        vault_id: chain.into(),
        time_ms: 1,
        operation: op.into(),
        result_type: "Success".into(),
        caller_oid: None,
        record_json: "{}".into(),
    }
}

pub(super) async fn devices_operations_and_enrollments(store: &dyn Store) {
    let chain = "subscription:dev-sub";
    let device = DeviceRow {
        id: "dev-1".into(),
        resource_id: "/subscriptions/dev-sub/resourceGroups/RG/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices/Edge1".into(),
        subscription_id: "dev-sub".into(),
        resource_group: "RG".into(),
        name: "Edge1".into(),
        location: "local".into(),
        tags_json: None,
        identity_object_id: "oid-1".into(),
        state_json: "{}".into(),
        created: 3,
    };
    store
        .insert_device(device.clone(), entry(chain, "create"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .insert_device(
                DeviceRow {
                    id: "dev-2".into(),
                    ..device.clone()
                },
                entry(chain, "create")
            )
            .await,
        Err(StoreError::Conflict)
    ));
    let got = store
        .get_device(&device.resource_id.to_ascii_uppercase())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.resource_id, device.resource_id.to_ascii_lowercase());
    assert_eq!(got.resource_group, "rg");
    assert_eq!(got.name, "Edge1");
    assert_eq!(
        store
            .list_devices("dev-sub", Some("RG"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .list_devices("dev-sub", Some("other"))
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(store.list_devices("dev-sub", None).await.unwrap().len(), 1);
    let mut changed = got.clone();
    changed.state_json = r#"{"vault":"v"}"#.into();
    store.update_device(&changed).await.unwrap();
    assert_eq!(
        store
            .get_device_by_id("dev-1")
            .await
            .unwrap()
            .unwrap()
            .state_json,
        r#"{"vault":"v"}"#
    );

    let mut op = DeviceOperationRow {
        id: "op-1".into(),
        device_id: "dev-1".into(),
        status: "InProgress".into(),
        body_json: "{}".into(),
        created: 1,
        updated: 1,
    };
    store.put_device_operation(&op).await.unwrap();
    op.status = "Succeeded".into();
    op.updated = 2;
    store.put_device_operation(&op).await.unwrap();
    assert_eq!(store.get_device_operation("op-1").await.unwrap(), Some(op));

    let enrollment = |id: &str| EnrollmentRow {
        id: id.into(),
        device_id: "dev-1".into(),
        secret_hash: vec![7; 32],
        expires: 100,
        used_at: None,
        created: 1,
    };
    store.replace_enrollment(enrollment("e-1")).await.unwrap();
    // A newer key drops the unused older one.
    store.replace_enrollment(enrollment("e-2")).await.unwrap();
    assert_eq!(store.get_enrollment("e-1").await.unwrap(), None);
    assert!(
        !store.consume_enrollment("e-2", 100).await.unwrap(),
        "expired"
    );
    assert!(store.consume_enrollment("e-2", 50).await.unwrap());
    assert!(
        !store.consume_enrollment("e-2", 51).await.unwrap(),
        "second use"
    );
    assert_eq!(
        store.get_enrollment("e-2").await.unwrap().unwrap().used_at,
        Some(50)
    );

    store
        .delete_device("dev-1", entry(chain, "delete"))
        .await
        .unwrap();
    assert_eq!(store.get_device_by_id("dev-1").await.unwrap(), None);
    assert_eq!(store.get_device_operation("op-1").await.unwrap(), None);
    assert_eq!(store.get_enrollment("e-2").await.unwrap(), None);
    assert!(matches!(
        store.delete_device("dev-1", entry(chain, "delete")).await,
        Err(StoreError::NotFound)
    ));
    let ops: Vec<String> = store
        .read_audit(chain, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.entry.operation)
        .collect();
    assert_eq!(ops, ["create", "delete"]);
}
