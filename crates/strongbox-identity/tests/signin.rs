//! Sign-in checks against an injected clock and a real (SQLite) store: the lockout numbers per
//! name and per address, and that unknown names are counted like real ones.

use secrecy::SecretString;
use std::sync::Arc;
use strongbox_crypto::{Keyring, RootKey};
use strongbox_domain::ManualClock;
use strongbox_identity::signin::{
    ADDRESS_LOCK_FAILURES, LOCK_SECS, SigninContext, SigninRefusal, USER_LOCK_FAILURES,
};
use strongbox_identity::{NewUser, TokenService, create_tenant, create_user};
use strongbox_store::Store;

const PASSWORD: &str = "correct horse battery";

async fn setup() -> (
    tempfile::TempDir,
    Arc<dyn Store>,
    Arc<ManualClock>,
    TokenService,
) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        strongbox_store_sqlite::SqliteStore::open(&format!(
            "sqlite:{}",
            dir.path().join("s.db").display()
        ))
        .await
        .unwrap(),
    );
    let root = RootKey::from_passphrase(b"test passphrase", b"0123456789abcdef").unwrap();
    let keyring = Arc::new(Keyring::open(&root, &[Keyring::new_data_key(&root, 1)]).unwrap());
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let tokens = TokenService::open(
        store.clone(),
        keyring,
        clock.clone(),
        "https://localhost:8443".into(),
        "https://vault.localhost:8443".into(),
    )
    .await
    .unwrap();
    (dir, store, clock, tokens)
}

fn from(ip: &str) -> SigninContext {
    SigninContext {
        ip: Some(ip.into()),
        user_agent: Some("test".into()),
        client_id: None,
        flow: "authorization_code".into(),
    }
}

#[tokio::test]
async fn names_lock_after_five_failures_for_fifteen_minutes_and_addresses_after_twenty() {
    let (_dir, store, clock, tokens) = setup().await;
    let tenant = create_tenant(&*store, "t").await.unwrap();
    let password = SecretString::from(PASSWORD.to_string());
    create_user(
        &*store,
        &*clock,
        NewUser {
            tenant_id: &tenant.id,
            upn: "Alice@Contoso.example",
            display_name: "",
            password: &password,
        },
    )
    .await
    .unwrap();
    let check = |ctx: SigninContext, upn: &'static str, pw: &'static str| {
        let tokens = &tokens;
        async move {
            tokens
                .check_password(&ctx, "organizations", upn, pw)
                .await
                .unwrap()
                .err()
        }
    };
    for _ in 0..USER_LOCK_FAILURES {
        assert_eq!(
            check(from("10.0.0.1"), "alice@contoso.example", "wrong").await,
            Some(SigninRefusal::InvalidPassword)
        );
    }
    // The right password no longer helps, from anywhere.
    assert_eq!(
        check(from("10.0.0.2"), "alice@contoso.example", PASSWORD).await,
        Some(SigninRefusal::LockedOut)
    );
    clock.advance_secs(LOCK_SECS - 1);
    assert_eq!(
        check(from("10.0.0.2"), "alice@contoso.example", PASSWORD).await,
        Some(SigninRefusal::LockedOut)
    );
    clock.advance_secs(2);
    assert_eq!(
        check(from("10.0.0.2"), "alice@contoso.example", PASSWORD).await,
        None
    );

    // Unknown names lock the same way (their answers tell nothing).
    for _ in 0..USER_LOCK_FAILURES {
        assert_eq!(
            check(from("10.0.0.3"), "nobody@contoso.example", PASSWORD).await,
            Some(SigninRefusal::UnknownUser)
        );
    }
    assert_eq!(
        check(from("10.0.0.3"), "nobody@contoso.example", PASSWORD).await,
        Some(SigninRefusal::LockedOut)
    );

    // One address guessing many names: locked at the twentieth failure, for everyone it tries.
    let names: Vec<&'static str> = (0..ADDRESS_LOCK_FAILURES)
        .map(|i| &*Box::leak(format!("guess{i}@contoso.example").into_boxed_str()))
        .collect();
    for name in &names {
        assert_eq!(
            check(from("10.0.0.4"), name, "wrong").await,
            Some(SigninRefusal::UnknownUser)
        );
    }
    assert_eq!(
        check(from("10.0.0.4"), "alice@contoso.example", PASSWORD).await,
        Some(SigninRefusal::LockedOut)
    );
    assert_eq!(
        check(from("10.0.0.5"), "alice@contoso.example", PASSWORD).await,
        None
    );

    let log = store.list_signins(0, 1000).await.unwrap();
    assert!(
        log.iter()
            .all(|r| r.reason != PASSWORD && r.upn.as_deref() != Some("nobody@contoso.example"))
    );
    assert_eq!(log.iter().filter(|r| r.reason == "LockedOut").count(), 4);
}
