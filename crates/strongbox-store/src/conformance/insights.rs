//! Storage accounts, diagnostic settings, audit queries and insights.

use crate::insights::*;
use crate::*;

fn entry(
    chain: &str,
    time_ms: i64,
    op: &str,
    ok: bool,
    caller: Option<&str>,
    ms: Option<i64>,
) -> AuditEntry {
    let duration = ms
        .map(|m| format!(r#","durationMs":{m}"#))
        .unwrap_or_default();
    AuditEntry {
        vault_id: chain.into(),
        time_ms,
        operation: op.into(),
        result_type: if ok { "Success" } else { "Failure" }.into(),
        caller_oid: caller.map(String::from),
        record_json: format!(
            r#"{{"category":"AuditEvent"{duration},"operationName":"{op}","properties":{{"durationMs":777}}}}"#
        ),
    }
}

fn account(name: &str, rg: &str) -> StorageAccountRow {
    StorageAccountRow {
        name: name.into(),
        subscription_id: "sub-1".into(),
        resource_group: rg.into(),
        location: "local".into(),
        local_path: format!("/tmp/{name}"),
        max_file_bytes: 1024,
        max_file_age_secs: 60,
        tags_json: None,
        created: 5,
    }
}

pub(super) async fn insights_and_delivery(store: &dyn Store) {
    let admin = "subscription:sub-1";
    let log = |op: &str| entry(admin, 1, op, true, Some("admin"), None);

    // Storage accounts: upsert in place, a name is taken across resource groups.
    store
        .put_storage_account(account("logs1", "rg"), log("a"))
        .await
        .unwrap();
    let mut changed = account("logs1", "rg");
    changed.max_file_bytes = 2048;
    store
        .put_storage_account(changed.clone(), log("b"))
        .await
        .unwrap();
    assert_eq!(
        store.get_storage_account("logs1").await.unwrap(),
        Some(changed)
    );
    assert!(matches!(
        store
            .put_storage_account(account("logs1", "other"), log("c"))
            .await,
        Err(StoreError::Conflict)
    ));
    store
        .put_storage_account(account("logs2", "other"), log("d"))
        .await
        .unwrap();
    let names = |v: Vec<StorageAccountRow>| v.into_iter().map(|a| a.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_storage_accounts("sub-1", None).await.unwrap()),
        ["logs1", "logs2"]
    );
    assert_eq!(
        names(
            store
                .list_storage_accounts("sub-1", Some("rg"))
                .await
                .unwrap()
        ),
        ["logs1"]
    );
    assert!(
        store
            .list_storage_accounts("sub-2", None)
            .await
            .unwrap()
            .is_empty()
    );

    // Diagnostic settings: names ignore case, a referenced account cannot be deleted.
    let setting = DiagnosticSettingRow {
        vault_id: "vault-x".into(),
        name: "ToFiles".into(),
        storage_account: Some("logs1".into()),
        audit_enabled: true,
        properties_json: "{}".into(),
        created: 7,
    };
    store
        .put_diagnostic_setting(setting.clone(), log("e"))
        .await
        .unwrap();
    let quiet = DiagnosticSettingRow {
        name: "quiet".into(),
        audit_enabled: false,
        ..setting.clone()
    };
    store
        .put_diagnostic_setting(quiet.clone(), log("f"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_diagnostic_setting("vault-x", "tofiles")
            .await
            .unwrap(),
        Some(setting.clone())
    );
    assert_eq!(
        store.list_diagnostic_settings("vault-x").await.unwrap(),
        [quiet, setting.clone()]
    );
    assert_eq!(
        store.list_delivering_settings().await.unwrap(),
        std::slice::from_ref(&setting)
    );
    assert!(matches!(
        store.delete_storage_account("logs1", log("g")).await,
        Err(StoreError::Conflict)
    ));
    store
        .delete_diagnostic_setting("vault-x", "TOFILES", log("h"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .delete_diagnostic_setting("vault-x", "tofiles", log("i"))
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .delete_diagnostic_setting("vault-x", "quiet", log("j"))
        .await
        .unwrap();
    store
        .delete_storage_account("logs1", log("k"))
        .await
        .unwrap();
    assert!(matches!(
        store.delete_storage_account("logs1", log("l")).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.get_storage_account("logs1").await.unwrap(), None);
    // Every successful change above left exactly one record in the subscription's chain.
    let logged: Vec<String> = store
        .read_audit(admin, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.entry.operation)
        .collect();
    assert_eq!(logged, ["a", "b", "d", "e", "f", "h", "j", "k"]);

    // Known traffic: 10 SecretGet (durations 1..=10, two failures), 4 SecretSet by another
    // caller, 1 record without a duration, spread over three minutes.
    let chain = "insights-chain";
    let minute = 60_000;
    let mut entries = Vec::new();
    for i in 1..=10 {
        entries.push(entry(
            chain,
            1000 + i,
            "SecretGet",
            i % 5 != 0,
            Some("alice"),
            Some(i),
        ));
    }
    for i in 0..4 {
        entries.push(entry(
            chain,
            1000 + minute + i,
            "SecretSet",
            i != 3,
            Some("bob"),
            Some(100),
        ));
    }
    entries.push(entry(
        chain,
        1000 + 2 * minute,
        "Unknown",
        false,
        None,
        None,
    ));
    entries.push(entry(
        "other-chain",
        1000,
        "SecretGet",
        true,
        Some("alice"),
        Some(5),
    ));
    store.append_audit(entries).await.unwrap();

    let all = AuditFilter {
        chain: chain.into(),
        ..Default::default()
    };
    let seqs = |rows: Vec<AuditRow>| rows.into_iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.query_audit(&all, 0, 100).await.unwrap()),
        (1..=15).collect::<Vec<_>>()
    );
    // Paging by seq.
    assert_eq!(
        seqs(store.query_audit(&all, 4, 3).await.unwrap()),
        [5, 6, 7]
    );
    let q = |f: AuditFilter| async move { seqs(store.query_audit(&f, 0, 100).await.unwrap()) };
    assert_eq!(
        q(AuditFilter {
            operation: Some("SecretSet".into()),
            ..all.clone()
        })
        .await,
        [11, 12, 13, 14]
    );
    assert_eq!(
        q(AuditFilter {
            result_type: Some("Failure".into()),
            ..all.clone()
        })
        .await,
        [5, 10, 14, 15]
    );
    assert_eq!(
        q(AuditFilter {
            caller_oid: Some("bob".into()),
            result_type: Some("Success".into()),
            ..all.clone()
        })
        .await,
        [11, 12, 13]
    );
    assert_eq!(
        q(AuditFilter {
            from_ms: Some(1000 + minute),
            to_ms: Some(1000 + 2 * minute),
            ..all.clone()
        })
        .await,
        [11, 12, 13, 14]
    );

    let ins = store.audit_insights(&all, minute).await.unwrap();
    assert_eq!((ins.total, ins.failures), (15, 4));
    let count = |key: Option<&str>, total, failures| Count {
        key: key.map(String::from),
        total,
        failures,
    };
    assert_eq!(
        ins.by_operation,
        [
            count(Some("SecretGet"), 10, 2),
            count(Some("SecretSet"), 4, 1),
            count(Some("Unknown"), 1, 1)
        ]
    );
    assert_eq!(
        ins.by_result,
        [count(Some("Success"), 11, 0), count(Some("Failure"), 4, 4)]
    );
    assert_eq!(
        ins.by_caller,
        [
            count(Some("alice"), 10, 2),
            count(Some("bob"), 4, 1),
            count(None, 1, 1)
        ]
    );
    // 14 durations: 1..=10 and four 100s. Nearest rank: p50 = 7th = 7, p90 = 13th = 100.
    assert_eq!(
        ins.latency,
        Latency {
            count: 14,
            p50: Some(7),
            p90: Some(100),
            p99: Some(100),
            max: Some(100)
        }
    );
    assert_eq!(
        ins.buckets,
        [
            Bucket {
                start_ms: 0,
                total: 10,
                failures: 2
            },
            Bucket {
                start_ms: minute,
                total: 4,
                failures: 1
            },
            Bucket {
                start_ms: 2 * minute,
                total: 1,
                failures: 1
            },
        ]
    );
    // A window: buckets count from its start; records outside it do not count.
    let window = AuditFilter {
        from_ms: Some(1005),
        to_ms: Some(1000 + minute + 2),
        ..all.clone()
    };
    let ins = store.audit_insights(&window, 30_000).await.unwrap();
    assert_eq!((ins.total, ins.failures), (8, 2));
    assert_eq!(
        ins.buckets,
        [
            Bucket {
                start_ms: 1005,
                total: 6,
                failures: 2
            },
            Bucket {
                start_ms: 1005 + 30_000,
                total: 2,
                failures: 0
            },
        ]
    );
    // 5..=10 and two 100s: p50 = 4th = 8.
    assert_eq!((ins.latency.p50, ins.latency.max), (Some(8), Some(100)));
    // Nothing in the window: zeros, no percentiles.
    let empty = AuditFilter {
        from_ms: Some(10 * minute),
        ..all
    };
    assert_eq!(
        store.audit_insights(&empty, minute).await.unwrap(),
        AuditInsights::default()
    );
}
