//! Conformance of [`UserStore`]: users, recovery codes, grants, refresh-token families, failure
//! counters, the sign-in log and the MFA setting.

use crate::*;

pub(super) async fn users_grants_and_refresh_families(store: &dyn Store) {
    store
        .insert_tenant(TenantRow {
            id: "tu".into(),
            display_name: "users".into(),
        })
        .await
        .expect("tenant");
    let principal = |oid: &str| PrincipalRow {
        object_id: oid.into(),
        tenant_id: "tu".into(),
        client_id: oid.into(),
        display_name: "Alice".into(),
        kind: "User".into(),
    };
    let user = |oid: &str, upn: &str| UserRow {
        object_id: oid.into(),
        tenant_id: "tu".into(),
        upn: upn.into(),
        display_name: "Alice".into(),
        password_hash: "$argon2id$x".into(),
        enabled: true,
        totp_sealed: None,
        totp_last_step: 0,
        created: 7,
    };
    store
        .insert_user(principal("u-1"), user("u-1", "Alice@Contoso.example"))
        .await
        .expect("insert user");
    assert!(matches!(
        store
            .insert_user(principal("u-2"), user("u-2", "alice@contoso.example"))
            .await,
        Err(StoreError::Conflict)
    ));
    let mut alice = store
        .get_user_by_upn("ALICE@contoso.example")
        .await
        .expect("get")
        .expect("found by upn, any case");
    assert_eq!(alice, user("u-1", "alice@contoso.example"));
    alice.enabled = false;
    alice.totp_sealed = Some(vec![9, 9]);
    alice.display_name = "Alice A".into();
    store.update_user(&alice).await.expect("update");
    assert_eq!(
        store.get_user("u-1").await.expect("get"),
        Some(alice.clone())
    );
    assert_eq!(
        store.list_users("tu").await.expect("list"),
        vec![alice.clone()]
    );
    assert!(store.advance_totp_step("u-1", 5).await.expect("step"));
    assert!(
        !store
            .advance_totp_step("u-1", 5)
            .await
            .expect("replayed step")
    );
    assert!(!store.advance_totp_step("u-1", 4).await.expect("older step"));

    store
        .replace_recovery_codes("u-1", vec![vec![1], vec![2]])
        .await
        .expect("codes");
    assert!(
        store
            .consume_recovery_code("u-1", &[1], 9)
            .await
            .expect("use")
    );
    assert!(
        !store
            .consume_recovery_code("u-1", &[1], 9)
            .await
            .expect("reuse")
    );
    assert_eq!(store.count_recovery_codes("u-1").await.expect("count"), 1);

    let grant = GrantRow {
        id: "g-1".into(),
        kind: "device".into(),
        user_code: Some("ABCD-EFGH".into()),
        user_id: None,
        state: "pending".into(),
        payload: "{}".into(),
        expires: 100,
        touched: 1,
    };
    store.insert_grant(grant.clone(), 1).await.expect("grant");
    assert!(matches!(
        store
            .insert_grant(
                GrantRow {
                    id: "g-2".into(),
                    ..grant.clone()
                },
                1
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store
            .get_grant_by_user_code("ABCD-EFGH")
            .await
            .expect("by code"),
        Some(grant.clone())
    );
    let approved = GrantRow {
        state: "approved".into(),
        user_id: Some("u-1".into()),
        ..grant.clone()
    };
    assert!(
        store
            .update_grant(&approved, "pending")
            .await
            .expect("approve")
    );
    assert!(
        !store
            .update_grant(&approved, "pending")
            .await
            .expect("second approve loses")
    );
    assert_eq!(store.get_grant("g-1").await.expect("get"), Some(approved));
    // An expired grant is forgotten when the next one is made.
    store
        .insert_grant(
            GrantRow {
                id: "g-3".into(),
                user_code: None,
                ..grant.clone()
            },
            101,
        )
        .await
        .expect("later grant");
    assert_eq!(store.get_grant("g-1").await.expect("get"), None);
    store.delete_grant("g-3").await.expect("delete");
    assert_eq!(store.get_grant("g-3").await.expect("get"), None);

    let token = |id: &str| RefreshTokenRow {
        id: id.into(),
        family_id: "f-1".into(),
        user_id: "u-1".into(),
        client_id: "c".into(),
        payload: "{}".into(),
        created: 1,
        expires: 50,
        used: None,
        revoked: false,
    };
    store.insert_refresh_token(token("r-1")).await.expect("rt");
    let outcome = store
        .rotate_refresh_token(
            "r-1",
            RefreshTokenRow {
                family_id: "other".into(),
                ..token("r-2")
            },
            10,
        )
        .await
        .expect("rotate");
    assert_eq!(
        outcome,
        RefreshOutcome::Rotated(RefreshTokenRow {
            used: Some(10),
            ..token("r-1")
        })
    );
    let second = store
        .get_refresh_token("r-2")
        .await
        .expect("get")
        .expect("r-2");
    assert_eq!(
        second.family_id, "f-1",
        "the new token joins the old one's family"
    );
    // r-1 again: a reuse. The family is revoked, r-2 with it.
    let reused = store
        .rotate_refresh_token("r-1", token("r-3"), 11)
        .await
        .expect("reuse");
    assert!(matches!(reused, RefreshOutcome::Reused(_)));
    assert!(
        store
            .get_refresh_token("r-2")
            .await
            .expect("get")
            .expect("r-2")
            .revoked
    );
    assert!(store.get_refresh_token("r-3").await.expect("get").is_none());
    assert!(matches!(
        store.insert_refresh_token(token("r-4")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store
            .rotate_refresh_token("nope", token("r-5"), 11)
            .await
            .expect("unknown"),
        RefreshOutcome::Unknown
    );
    let fresh = RefreshTokenRow {
        family_id: "f-2".into(),
        ..token("r-6")
    };
    store.insert_refresh_token(fresh).await.expect("rt");
    assert_eq!(
        store
            .rotate_refresh_token("r-6", token("r-7"), 60)
            .await
            .expect("expired"),
        RefreshOutcome::Expired
    );
    assert_eq!(
        store
            .revoke_user_refresh_tokens("u-1")
            .await
            .expect("revoke"),
        1
    );

    let first = store
        .note_signin_failure("user:alice", 100, 900)
        .await
        .expect("fail");
    assert_eq!((first.failures, first.first, first.last), (1, 100, 100));
    let second = store
        .note_signin_failure("user:alice", 200, 900)
        .await
        .expect("fail");
    assert_eq!((second.failures, second.first, second.last), (2, 100, 200));
    let later = store
        .note_signin_failure("user:alice", 1100, 900)
        .await
        .expect("fail");
    assert_eq!(
        (later.failures, later.first),
        (1, 1100),
        "an old window starts over"
    );
    store
        .clear_signin_failures("user:alice")
        .await
        .expect("clear");
    assert_eq!(
        store.signin_failures("user:alice").await.expect("get"),
        None
    );

    let signin = |t: i64, result: &str| SigninRow {
        time_ms: t,
        tenant_id: Some("tu".into()),
        user_id: Some("u-1".into()),
        upn: Some("alice@contoso.example".into()),
        client_id: Some("c".into()),
        flow: "device_code".into(),
        result: result.into(),
        reason: "InvalidPassword".into(),
        ip: Some("127.0.0.1".into()),
        user_agent: Some("ua".into()),
    };
    store
        .append_signin(signin(5, "Failure"))
        .await
        .expect("log");
    store
        .append_signin(signin(6, "Success"))
        .await
        .expect("log");
    assert_eq!(
        store.list_signins(6, 10).await.expect("list"),
        vec![signin(6, "Success")]
    );

    assert!(!store.require_mfa("tu").await.expect("mfa"));
    store.set_require_mfa("tu", true).await.expect("set");
    assert!(store.require_mfa("tu").await.expect("mfa"));

    store.delete_user("u-1").await.expect("delete");
    assert_eq!(store.get_user("u-1").await.expect("get"), None);
    assert_eq!(store.get_principal("u-1").await.expect("get"), None);
    assert!(matches!(
        store.delete_user("u-1").await,
        Err(StoreError::NotFound)
    ));
}
