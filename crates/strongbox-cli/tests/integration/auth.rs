//! Bearer tokens: only ours, for this audience and tenant, unexpired, get in; everything else
//! gets 401 with the challenge the SDKs follow.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::json;

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn forged_and_foreign_tokens_get_401_with_a_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let good = server.admin_token().await;
    let (status, _) = server.call(&good, Method::GET, "/secrets", None).await;
    assert_eq!(status, 200);

    // The payload of a real token, reused under forged signatures.
    let payload: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(good.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = {
        let h: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(good.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        h["kid"].as_str().unwrap().to_string()
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&payload)
    );
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &h,
            &payload,
            &jsonwebtoken::EncodingKey::from_secret(b"guess"),
        )
        .unwrap()
    };
    let foreign_es256 = {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &h,
            &payload,
            &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
        )
        .unwrap()
    };
    let tampered = {
        let mut p = payload.clone();
        p["oid"] = json!("00000000-0000-0000-0000-000000000000");
        let parts: Vec<&str> = good.split('.').collect();
        format!("{}.{}.{}", parts[0], b64(&p), parts[2])
    };
    let cut = good[..good.len() - 4].to_string();
    for (label, token) in [
        ("alg none", alg_none),
        ("HS256", hs256),
        ("foreign key", foreign_es256),
        ("tampered", tampered),
        ("truncated", cut),
        ("garbage", "abc".into()),
    ] {
        let resp = server
            .client
            .get(format!(
                "{}/secrets?api-version=7.6",
                server.vault_url("dev")
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{label} token was not refused");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.contains(&format!(
                "resource=\"https://vault.localhost:{}\"",
                server.port
            )),
            "{challenge}"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "Unauthorized", "{label}");
    }

    // No token at all: the SDK's first, unauthenticated request.
    let resp = server
        .client
        .get(format!(
            "{}/secrets?api-version=7.6",
            server.vault_url("dev")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    let tenant = server.creds["tenant_id"].as_str().unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer authorization=\"https://localhost:{}/{tenant}\"",
            server.port
        )),
        "{challenge}"
    );

    // A token for another audience is never issued.
    let resp = server
        .client
        .post(format!(
            "https://localhost:{}/{tenant}/oauth2/v2.0/token",
            server.port
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", server.creds["client_id"].as_str().unwrap()),
            (
                "client_secret",
                server.creds["client_secret"].as_str().unwrap(),
            ),
            ("scope", "https://storage.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_scope"
    );

    // A wrong client secret.
    let resp = server
        .client
        .post(format!(
            "https://localhost:{}/{tenant}/oauth2/v2.0/token",
            server.port
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", server.creds["client_id"].as_str().unwrap()),
            ("client_secret", "sbx~not-the-secret"),
            (
                "scope",
                &format!("https://vault.localhost:{}/.default", server.port),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_client"
    );

    // Discovery and JWKS are served for the tenant, and the JWKS verifies our token.
    let oidc: serde_json::Value = server
        .client
        .get(format!(
            "https://localhost:{}/{tenant}/v2.0/.well-known/openid-configuration",
            server.port
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        oidc["token_endpoint"],
        format!(
            "https://localhost:{}/{tenant}/oauth2/v2.0/token",
            server.port
        )
    );
    let jwks: serde_json::Value = server
        .client
        .get(oidc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kid"], kid.as_str());
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap(),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[format!("https://vault.localhost:{}", server.port)]);
    v.set_issuer(&[format!("https://localhost:{}/{tenant}/v2.0", server.port)]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&good, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["tid"], tenant);
    assert!(claims["oid"].as_str().is_some());
}

#[tokio::test]
async fn access_policies_decide_and_refusals_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = cli(&["sp", "create", "--data-dir", d, "--name", "reader"]);
    assert_eq!(code, 0, "{err}");
    let sp: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (code, _, err) = cli(&[
        "policy",
        "set",
        "--data-dir",
        d,
        "--vault",
        "dev",
        "--object-id",
        sp["object_id"].as_str().unwrap(),
        "--secret-permissions",
        "get",
    ]);
    assert_eq!(code, 0, "{err}");
    let admin = server.admin_token().await;
    let reader = server
        .token_for(
            sp["client_id"].as_str().unwrap(),
            sp["client_secret"].as_str().unwrap(),
        )
        .await;
    let value = random_value();
    let (s, _) = server
        .call(
            &admin,
            Method::PUT,
            "/secrets/shared",
            Some(json!({"value": value})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, body) = server
        .call(&reader, Method::GET, "/secrets/shared", None)
        .await;
    assert_eq!((s, body["value"].as_str()), (200, Some(value.as_str())));
    let (s, body) = server
        .call(
            &reader,
            Method::PUT,
            "/secrets/shared",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(body["error"]["code"], "Forbidden");
    assert_eq!(body["error"]["innererror"]["code"], "AccessDenied");
    let (s, _) = server.call(&reader, Method::GET, "/secrets", None).await;
    assert_eq!(s, 403);
    server.stop();

    // Every request above left exactly one record, refusals included, and none holds the value.
    let store = strongbox_store_sqlite::SqliteStore::open(&format!("sqlite:{}/strongbox.db", d))
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT operation, result_type, caller_oid, record_json FROM audit_records ORDER BY seq",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let summary: Vec<(&str, &str)> = rows
        .iter()
        .map(|(o, r, _, _)| (o.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("SecretSet", "Success"),
            ("SecretGet", "Success"),
            ("SecretSet", "Failure"),
            ("SecretList", "Failure")
        ]
    );
    let refused: serde_json::Value = serde_json::from_str(&rows[2].3).unwrap();
    assert_eq!(refused["resultSignature"], "Forbidden");
    assert_eq!(refused["identity"]["claim"]["oid"], sp["object_id"]);
    assert_eq!(rows[2].2.as_deref(), sp["object_id"].as_str());
    for field in [
        "time",
        "resourceId",
        "operationName",
        "resultType",
        "resultSignature",
        "durationMs",
        "callerIpAddress",
        "correlationId",
    ] {
        assert!(!refused[field].is_null(), "audit record lacks {field}");
    }
    assert!(
        rows.iter().all(|(_, _, _, json)| !json.contains(&value)),
        "a secret value reached the audit log"
    );
}
