//! Conformance of [`DeviceHealthStore`]: the last report replaces the one before, and the
//! alert history counts episodes (first seen kept, a return counted, a clearance recorded).

use crate::*;

pub(super) async fn reports_and_alert_history(store: &dyn Store) {
    assert_eq!(store.get_device_report("hd-1").await.unwrap(), None);
    let report = DeviceReportRow {
        device_id: "hd-1".into(),
        reported_at: 10,
        secrets_json: r#"[{"name":"a","version":"v1"}]"#.into(),
    };
    store.put_device_report(report.clone()).await.unwrap();
    assert_eq!(
        store.get_device_report("hd-1").await.unwrap(),
        Some(report.clone())
    );
    let newer = DeviceReportRow {
        reported_at: 20,
        secrets_json: r#"[{"name":"a","version":"v2"}]"#.into(),
        ..report
    };
    store.put_device_report(newer.clone()).await.unwrap();
    assert_eq!(store.get_device_report("hd-1").await.unwrap(), Some(newer));

    let raised = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let rows = store
        .observe_device_alerts("hd-1", &raised(&["A", "B"]), 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.first_seen == 100
        && r.appeared_at == 100
        && r.occurrences == 1
        && r.cleared_at.is_none()));
    // Still raised: nothing moves.
    let rows = store
        .observe_device_alerts("hd-1", &raised(&["A", "B"]), 150)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r.appeared_at == 100 && r.occurrences == 1)
    );
    // B clears, then comes back: a second episode, first seen kept.
    let rows = store
        .observe_device_alerts("hd-1", &raised(&["A"]), 200)
        .await
        .unwrap();
    let b = rows.iter().find(|r| r.alert_type == "B").unwrap();
    assert_eq!((b.cleared_at, b.occurrences), (Some(200), 1));
    let rows = store
        .observe_device_alerts("hd-1", &raised(&["A", "B"]), 300)
        .await
        .unwrap();
    let b = rows.iter().find(|r| r.alert_type == "B").unwrap();
    assert_eq!(
        (b.first_seen, b.appeared_at, b.occurrences, b.cleared_at),
        (100, 300, 2, None)
    );
    let a = rows.iter().find(|r| r.alert_type == "A").unwrap();
    assert_eq!((a.appeared_at, a.occurrences), (100, 1));
    // Another device's history is its own.
    assert!(
        store
            .observe_device_alerts("hd-2", &[], 300)
            .await
            .unwrap()
            .is_empty()
    );

    store.delete_device_health("hd-1").await.unwrap();
    assert_eq!(store.get_device_report("hd-1").await.unwrap(), None);
    assert!(
        store
            .observe_device_alerts("hd-1", &[], 400)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.set_device_identity("no-such-device", "oid").await,
        Err(StoreError::NotFound)
    ));
    let device = DeviceRow {
        id: "hd-3".into(),
        resource_id: "/subscriptions/hd-sub/resourceGroups/rg/providers/Microsoft.DataBoxEdge/dataBoxEdgeDevices/hd3".into(),
        subscription_id: "hd-sub".into(),
        resource_group: "rg".into(),
        name: "hd3".into(),
        location: "local".into(),
        tags_json: None,
        identity_object_id: "oid-old".into(),
        state_json: "{}".into(),
        created: 1,
    };
    let entry = AuditEntry {
        vault_id: "subscription:hd-sub".into(),
        time_ms: 1,
        operation: "create".into(),
        result_type: "Success".into(),
        caller_oid: None,
        record_json: "{}".into(),
    };
    store.insert_device(device, entry).await.unwrap();
    store.set_device_identity("hd-3", "oid-new").await.unwrap();
    let d = store.get_device_by_id("hd-3").await.unwrap().unwrap();
    assert_eq!(
        (d.identity_object_id.as_str(), d.state_json.as_str()),
        ("oid-new", "{}")
    );
}
