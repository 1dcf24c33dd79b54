//! Signed client assertions at the token endpoint, against an injected clock and a real
//! (SQLite) store: assertions built exactly as MSAL builds them for `CertificateCredential`
//! (RS256 + padded SHA-1 `x5t`, float `exp`/`iat`, no `nbf`), the PS256/`x5t#S256` variant, and
//! bare public keys (ES256 with `kid`).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
    RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use strongbox_crypto::{Keyring, RootKey};
use strongbox_domain::{Clock, ManualClock};
use strongbox_identity::credentials::{add_certificate, add_public_key};
use strongbox_identity::{
    JWT_BEARER, NewServicePrincipal, Plane, TokenService, create_service_principal, create_tenant,
};
use strongbox_store::{PrincipalRow, Store};

const AUTHORITY: &str = "https://localhost:8443";
const AUD: &str = "https://vault.localhost:8443";
const START_MS: i64 = 1_800_000_000_000;

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    tokens: TokenService,
    tenant: String,
    app: PrincipalRow,
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
    let clock = Arc::new(ManualClock::new(START_MS));
    let tokens = TokenService::open(
        store.clone(),
        keyring.clone(),
        clock.clone(),
        AUTHORITY.into(),
        AUD.into(),
    )
    .await
    .unwrap();
    let tenant = create_tenant(&*store, "t").await.unwrap().id;
    let (app, _) = create_service_principal(
        &*store,
        &keyring,
        &*clock,
        NewServicePrincipal {
            tenant_id: &tenant,
            display_name: "cert-app",
            secret_lifetime_days: 30,
        },
    )
    .await
    .unwrap();
    World {
        _dir: dir,
        store,
        clock,
        tokens,
        tenant,
        app,
    }
}

/// An RSA certificate valid from `from` to `to` (unix seconds), with its signing key.
struct Cert {
    der: Vec<u8>,
    pem: String,
    key: RsaKeyPair,
}

fn rsa_cert(from: i64, to: i64) -> Cert {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["cert-app".into()]).unwrap();
    params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Cert {
        der: cert.der().to_vec(),
        // A PEM as azure-identity loads it: the private key and the certificate in one file.
        pem: format!("{}{}", key.serialize_pem(), cert.pem()),
        key: RsaKeyPair::from_pkcs8(&key.serialize_der()).unwrap(),
    }
}

fn now(w: &World) -> f64 {
    w.clock.now_ms() as f64 / 1000.0
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn sign_rsa(header: Value, claims: Value, key: &RsaKeyPair, pss: bool) -> String {
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let mut sig = vec![0; key.public_modulus_len()];
    let padding = if pss {
        &RSA_PSS_SHA256
    } else {
        &RSA_PKCS1_SHA256
    };
    key.sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig)
        .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// MSAL's header for `CertificateCredential`: RS256 and the SHA-1 thumbprint, padded.
fn msal_header(cert: &Cert) -> Value {
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert.der);
    json!({"alg": "RS256", "typ": "JWT", "x5t": URL_SAFE.encode(sha1.as_ref())})
}

/// MSAL's claims: float times, a fresh uuid jti, no nbf.
fn msal_claims(w: &World, lifetime: f64) -> Value {
    json!({
        "aud": w.tokens.token_endpoint(&w.tenant),
        "iss": w.app.client_id,
        "sub": w.app.client_id,
        "exp": now(w) + lifetime,
        "iat": now(w),
        "jti": uuid_like(),
    })
}

fn uuid_like() -> String {
    hex::encode(strongbox_crypto::random_bytes::<16>())
}

fn form(client_id: Option<&str>, assertion: &str) -> HashMap<String, String> {
    let mut f: HashMap<String, String> = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
        ("client_info", "1"),
        ("scope", &format!("{AUD}/.default")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(c) = client_id {
        f.insert("client_id".into(), c.into());
    }
    f
}

/// Posts the assertion; returns the issued token's subject or the (status, description).
async fn redeem(w: &World, f: &HashMap<String, String>) -> Result<String, (u16, String)> {
    match w.tokens.token(&w.tenant, f).await {
        Ok(t) => {
            let caller = w
                .tokens
                .verify(&t.access_token, Plane::Vault)
                .await
                .unwrap();
            Ok(caller.object_id)
        }
        Err(e) => Err((e.status, e.body.error_description)),
    }
}

fn refused(r: Result<String, (u16, String)>, status: u16, needle: &str) {
    match r {
        Ok(_) => panic!("expected a refusal mentioning {needle:?}"),
        Err((s, d)) => {
            assert_eq!(s, status, "{d}");
            assert!(d.contains(needle), "{d:?} should mention {needle:?}");
        }
    }
}

#[tokio::test]
async fn msal_shaped_certificate_assertions_are_accepted_once() {
    let w = world().await;
    let t = w.clock.now();
    let cert = rsa_cert(t - 86_400, t + 30 * 86_400);
    let row = add_certificate(&*w.store, &*w.clock, &w.app, cert.pem.as_bytes())
        .await
        .unwrap();
    assert_eq!(row.key_id.len(), 40, "SHA-1 thumbprint in hex");
    assert!(!String::from_utf8_lossy(&row.der).contains("PRIVATE"));

    let assertion = sign_rsa(msal_header(&cert), msal_claims(&w, 600.0), &cert.key, false);
    let f = form(Some(&w.app.client_id), &assertion);
    assert_eq!(redeem(&w, &f).await.unwrap(), w.app.object_id);
    // The same assertion again for the same resource is a replay; MSAL's reuse of it for
    // another resource (management after vault) is accepted, once.
    refused(redeem(&w, &f).await, 401, "already used");
    let mut other_scope = f.clone();
    other_scope.insert("scope".into(), format!("{AUTHORITY}/.default"));
    let management = w.tokens.token(&w.tenant, &other_scope).await.unwrap();
    let caller = w
        .tokens
        .verify(&management.access_token, Plane::Management)
        .await
        .unwrap();
    assert_eq!(caller.object_id, w.app.object_id);
    refused(redeem(&w, &other_scope).await, 401, "already used");

    // Without client_id the issuer names the client (RFC 7523).
    let a2 = sign_rsa(msal_header(&cert), msal_claims(&w, 600.0), &cert.key, false);
    assert_eq!(redeem(&w, &form(None, &a2)).await.unwrap(), w.app.object_id);

    // The PS256 + x5t#S256 form MSAL uses when it computes the thumbprint itself.
    let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert.der);
    let ps = sign_rsa(
        json!({"alg":"PS256","typ":"JWT","x5t#S256": URL_SAFE_NO_PAD.encode(sha256.as_ref()),
               "x5c": [STANDARD.encode(&cert.der)]}),
        msal_claims(&w, 600.0),
        &cert.key,
        true,
    );
    assert_eq!(
        redeem(&w, &form(Some(&w.app.client_id), &ps))
            .await
            .unwrap(),
        w.app.object_id
    );
}

#[tokio::test]
async fn forged_misaddressed_or_stale_assertions_are_refused() {
    let w = world().await;
    let t = w.clock.now();
    let cert = rsa_cert(t - 86_400, t + 30 * 86_400);
    add_certificate(&*w.store, &*w.clock, &w.app, cert.pem.as_bytes())
        .await
        .unwrap();
    let id = w.app.client_id.clone();
    let with = |patch: Value| {
        let mut c = msal_claims(&w, 600.0);
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign_rsa(msal_header(&cert), c, &cert.key, false)
    };

    refused(
        redeem(
            &w,
            &form(Some(&id), &with(json!({"aud": "https://elsewhere/token"}))),
        )
        .await,
        401,
        "audience",
    );
    refused(
        redeem(&w, &form(Some(&id), &with(json!({"iss": "someone-else"})))).await,
        401,
        "AADSTS700021",
    );
    refused(
        redeem(&w, &form(Some("another-client"), &with(json!({})))).await,
        401,
        "AADSTS700021",
    );
    refused(
        redeem(&w, &form(Some(&id), &with(json!({"exp": now(&w) - 1.0})))).await,
        401,
        "AADSTS700024",
    );
    refused(
        redeem(
            &w,
            &form(Some(&id), &with(json!({"exp": now(&w) + 2.0 * 86_400.0}))),
        )
        .await,
        401,
        "too long",
    );
    refused(
        redeem(&w, &form(Some(&id), &with(json!({"nbf": now(&w) + 600.0})))).await,
        401,
        "AADSTS700024",
    );
    refused(
        redeem(&w, &form(Some(&id), &with(json!({"jti": null})))).await,
        400,
        "jti",
    );

    // A flipped signature byte, an unregistered certificate, alg none, garbage.
    let good = with(json!({}));
    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[10] ^= 1;
    let tampered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(raw));
    refused(
        redeem(&w, &form(Some(&id), &tampered)).await,
        401,
        "signature",
    );
    let stranger = rsa_cert(t - 10, t + 86_400);
    let by_stranger = sign_rsa(
        msal_header(&stranger),
        msal_claims(&w, 600.0),
        &stranger.key,
        false,
    );
    refused(
        redeem(&w, &form(Some(&id), &by_stranger)).await,
        401,
        "not registered",
    );
    // The stranger's key with our certificate's thumbprint: the signature check catches it.
    let spoofed = sign_rsa(
        msal_header(&cert),
        msal_claims(&w, 600.0),
        &stranger.key,
        false,
    );
    refused(
        redeem(&w, &form(Some(&id), &spoofed)).await,
        401,
        "signature",
    );
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg":"none"})),
        b64(&msal_claims(&w, 600.0))
    );
    refused(redeem(&w, &form(Some(&id), &none)).await, 400, "alg");
    refused(
        redeem(&w, &form(Some(&id), "not-a-jwt")).await,
        400,
        "malformed",
    );

    // Wrong assertion type, or a secret alongside the assertion.
    let mut f = form(Some(&id), &with(json!({})));
    f.insert("client_assertion_type".into(), "urn:example:other".into());
    refused(redeem(&w, &f).await, 400, "client_assertion_type");
    let mut f = form(Some(&id), &with(json!({})));
    f.insert("client_secret".into(), "x".into());
    refused(redeem(&w, &f).await, 400, "not both");
    // An unknown client.
    let stranger_claims = json!({"aud": w.tokens.token_endpoint(&w.tenant), "iss": "nobody",
        "sub": "nobody", "exp": now(&w) + 600.0, "jti": "j"});
    refused(
        redeem(
            &w,
            &form(
                None,
                &sign_rsa(msal_header(&cert), stranger_claims, &cert.key, false),
            ),
        )
        .await,
        401,
        "AADSTS700016",
    );
}

#[tokio::test]
async fn certificates_count_only_within_their_validity_window() {
    let w = world().await;
    let t = w.clock.now();
    // Registering an expired certificate is refused outright.
    let expired = rsa_cert(t - 10 * 86_400, t - 86_400);
    let e = add_certificate(&*w.store, &*w.clock, &w.app, expired.pem.as_bytes())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");

    let cert = rsa_cert(t - 60, t + 86_400);
    add_certificate(&*w.store, &*w.clock, &w.app, cert.pem.as_bytes())
        .await
        .unwrap();
    let ok = sign_rsa(msal_header(&cert), msal_claims(&w, 600.0), &cert.key, false);
    redeem(&w, &form(Some(&w.app.client_id), &ok))
        .await
        .unwrap();
    // Two days later the certificate has expired: a fresh, well-formed assertion is refused.
    w.clock.advance_secs(2 * 86_400);
    let late = sign_rsa(msal_header(&cert), msal_claims(&w, 600.0), &cert.key, false);
    refused(
        redeem(&w, &form(Some(&w.app.client_id), &late)).await,
        401,
        "certificate that signed the client assertion is expired",
    );
    // Registering the same certificate twice is a conflict.
    let cert2 = rsa_cert(t, t + 5 * 86_400);
    add_certificate(&*w.store, &*w.clock, &w.app, cert2.pem.as_bytes())
        .await
        .unwrap();
    assert!(
        add_certificate(&*w.store, &*w.clock, &w.app, &cert2.der)
            .await
            .is_err()
    );
    // A PEM with only a private key registers nothing.
    let key_only = rcgen::KeyPair::generate().unwrap().serialize_pem();
    assert!(
        add_certificate(&*w.store, &*w.clock, &w.app, key_only.as_bytes())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn public_key_credentials_sign_with_es256_and_a_kid() {
    let w = world().await;
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = key.public_key().as_ref();
    let jwk = json!({"kty":"EC","crv":"P-256","x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
    let row = add_public_key(
        &*w.store,
        &*w.clock,
        &w.app,
        &jwk.to_string(),
        Some("edge-1"),
        30,
    )
    .await
    .unwrap();
    assert_eq!(row.key_id, "edge-1");
    // Without a kid the same key is registered under its RFC 7638 thumbprint.
    let jwk2_row = add_public_key(&*w.store, &*w.clock, &w.app, &jwk.to_string(), None, 30)
        .await
        .unwrap();
    assert_eq!(jwk2_row.key_id.len(), 43);

    let sign = |header: Value, claims: Value| {
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let sig = key.sign(&rng, input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    };
    let good = sign(
        json!({"alg":"ES256","kid":"edge-1"}),
        msal_claims(&w, 300.0),
    );
    assert_eq!(
        redeem(&w, &form(Some(&w.app.client_id), &good))
            .await
            .unwrap(),
        w.app.object_id
    );
    let wrong_kid = sign(
        json!({"alg":"ES256","kid":"edge-2"}),
        msal_claims(&w, 300.0),
    );
    refused(
        redeem(&w, &form(Some(&w.app.client_id), &wrong_kid)).await,
        401,
        "not registered",
    );
    // RS256 claimed over an EC key verifies nothing.
    let wrong_alg = sign(
        json!({"alg":"RS256","kid":"edge-1"}),
        msal_claims(&w, 300.0),
    );
    refused(
        redeem(&w, &form(Some(&w.app.client_id), &wrong_alg)).await,
        401,
        "signature",
    );
    // The key expires with its credential.
    w.clock.advance_secs(31 * 86_400);
    let late = sign(
        json!({"alg":"ES256","kid":"edge-1"}),
        msal_claims(&w, 300.0),
    );
    refused(
        redeem(&w, &form(Some(&w.app.client_id), &late)).await,
        401,
        "key that signed the client assertion is expired",
    );
    // Private JWKs are refused at registration.
    let private = json!({"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AA"});
    assert!(
        add_public_key(&*w.store, &*w.clock, &w.app, &private.to_string(), None, 30)
            .await
            .is_err()
    );
}
