//! Token issue and verification, and the sign-in lockout numbers, against an injected clock and a
//! real (SQLite) store.

use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::Arc;
use strongbox_crypto::{Keyring, RootKey};
use strongbox_domain::ManualClock;
use strongbox_identity::signin::{
    ADDRESS_LOCK_FAILURES, LOCK_SECS, SigninContext, SigninRefusal, USER_LOCK_FAILURES,
};
use strongbox_identity::{
    AuthError, NewServicePrincipal, Plane, TokenService, create_service_principal, create_tenant,
};
use strongbox_identity::{NewUser, create_user};
use strongbox_store::Store;

const AUD: &str = "https://vault.localhost:8443";

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<ManualClock>,
}

async fn world() -> World {
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
    World {
        _dir: dir,
        store,
        keyring,
        clock: Arc::new(ManualClock::new(1_800_000_000_000)),
    }
}

async fn service(w: &World, audience: &str) -> TokenService {
    TokenService::open(
        w.store.clone(),
        w.keyring.clone(),
        w.clock.clone(),
        "https://localhost:8443".into(),
        audience.into(),
    )
    .await
    .unwrap()
}

fn form(client_id: &str, secret: &str) -> HashMap<String, String> {
    [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("scope", &format!("{AUD}/.default")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test]
async fn tokens_expire_by_the_clock_even_when_cached() {
    let w = world().await;
    let tokens = service(&w, AUD).await;
    let tenant = create_tenant(&*w.store, "t").await.unwrap();
    let (sp, secret) = create_service_principal(
        &*w.store,
        &w.keyring,
        &*w.clock,
        NewServicePrincipal {
            tenant_id: &tenant.id,
            display_name: "app",
            secret_lifetime_days: 1,
        },
    )
    .await
    .unwrap();
    let issued = tokens
        .token(&tenant.id, &form(&sp.client_id, secret.expose_secret()))
        .await
        .unwrap();
    let caller = tokens
        .verify(&issued.access_token, Plane::Vault)
        .await
        .unwrap();
    assert_eq!(
        (caller.object_id.as_str(), caller.tenant_id.as_str()),
        (sp.object_id.as_str(), tenant.id.as_str())
    );
    w.clock.advance_secs(3599);
    assert!(
        tokens
            .verify(&issued.access_token, Plane::Vault)
            .await
            .is_ok()
    );
    w.clock.advance_secs(1);
    assert_eq!(
        tokens.verify(&issued.access_token, Plane::Vault).await,
        Err(AuthError::Expired)
    );

    // A second service instance (another node) verifies with the same stored keys, but not for
    // another audience.
    let other_aud = service(&w, "https://elsewhere.example").await;
    let fresh = tokens
        .token(&tenant.id, &form(&sp.client_id, secret.expose_secret()))
        .await
        .unwrap();
    assert_eq!(
        other_aud.verify(&fresh.access_token, Plane::Vault).await,
        Err(AuthError::Audience)
    );
    assert!(
        service(&w, AUD)
            .await
            .verify(&fresh.access_token, Plane::Vault)
            .await
            .is_ok()
    );

    // Tokens are for one plane: a vault token is no management token, and the other way round.
    assert_eq!(
        tokens.verify(&fresh.access_token, Plane::Management).await,
        Err(AuthError::Audience)
    );
    let mut mgmt = form(&sp.client_id, secret.expose_secret());
    mgmt.insert(
        "scope".into(),
        "https://management.azure.com//.default".into(),
    );
    let m = tokens.token(&tenant.id, &mgmt).await.unwrap();
    assert!(
        tokens
            .verify(&m.access_token, Plane::Management)
            .await
            .is_ok()
    );
    assert_eq!(
        tokens.verify(&m.access_token, Plane::Vault).await,
        Err(AuthError::Audience)
    );

    // The client secret itself expires after its lifetime.
    w.clock.advance_secs(86_400);
    let refused = tokens
        .token(&tenant.id, &form(&sp.client_id, secret.expose_secret()))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status, refused.body.error.as_str()),
        (401, "invalid_client")
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_what_it_should() {
    let w = world().await;
    let tokens = service(&w, AUD).await;
    let tenant = create_tenant(&*w.store, "t").await.unwrap();
    let (sp, secret) = create_service_principal(
        &*w.store,
        &w.keyring,
        &*w.clock,
        NewServicePrincipal {
            tenant_id: &tenant.id,
            display_name: "app",
            secret_lifetime_days: 30,
        },
    )
    .await
    .unwrap();
    let good = form(&sp.client_id, secret.expose_secret());
    let refused = |f: HashMap<String, String>, t: &str| {
        let tokens = &tokens;
        let t = t.to_string();
        async move { tokens.token(&t, &f).await.unwrap_err() }
    };
    let mut f = good.clone();
    f.insert("grant_type".into(), "password".into());
    assert_eq!(
        refused(f, &tenant.id).await.body.error,
        "unsupported_grant_type"
    );
    let mut f = good.clone();
    // An audience the server does not serve (Azure Key Vault's own name is an alias of ours).
    f.insert("scope".into(), "https://storage.azure.com/.default".into());
    assert_eq!(refused(f, &tenant.id).await.body.error, "invalid_scope");
    let mut f = good.clone();
    f.insert("client_secret".into(), "wrong".into());
    assert_eq!(refused(f, &tenant.id).await.body.error, "invalid_client");
    let mut f = good.clone();
    f.insert(
        "client_id".into(),
        "00000000-0000-0000-0000-000000000000".into(),
    );
    assert_eq!(refused(f, &tenant.id).await.status, 401);
    // The right credentials at another tenant's endpoint.
    let other = create_tenant(&*w.store, "other").await.unwrap();
    assert_eq!(refused(good.clone(), &other.id).await.status, 401);
    assert_eq!(refused(good.clone(), "no-such-tenant").await.status, 400);
    assert!(tokens.token(&tenant.id, &good).await.is_ok());
}

const PASSWORD: &str = "correct horse battery";

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
    let w = world().await;
    let (store, clock) = (w.store.clone(), w.clock.clone());
    let tokens = service(&w, AUD).await;
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
