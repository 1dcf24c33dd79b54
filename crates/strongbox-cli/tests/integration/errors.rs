//! Bad input gets a 4xx in the AKV error shape; tampered backups are refused.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::json;

async fn raw(
    server: &Server,
    token: &str,
    method: Method,
    url: String,
    body: Option<String>,
) -> (u16, serde_json::Value) {
    let mut req = server.client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn bad_input_gets_azure_shaped_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let token = server.admin_token().await;
    let dev = server.vault_url("dev");
    // (what, method, url, body, expected status, expected error code)
    type Case = (
        &'static str,
        Method,
        String,
        Option<String>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "missing api-version",
            Method::GET,
            format!("{dev}/secrets"),
            None,
            400,
            "BadParameter",
        ),
        (
            "unknown api-version",
            Method::GET,
            format!("{dev}/secrets?api-version=1.0"),
            None,
            400,
            "BadParameter",
        ),
        (
            "malformed JSON",
            Method::PUT,
            format!("{dev}/secrets/x?api-version=7.6"),
            Some("{\"value\":".into()),
            400,
            "BadParameter",
        ),
        (
            "wrong type",
            Method::PUT,
            format!("{dev}/secrets/x?api-version=7.6"),
            Some("{\"value\":5}".into()),
            400,
            "BadParameter",
        ),
        (
            "empty body",
            Method::PUT,
            format!("{dev}/secrets/x?api-version=7.6"),
            None,
            400,
            "BadParameter",
        ),
        (
            "invalid name",
            Method::PUT,
            format!("{dev}/secrets/bad_name?api-version=7.6"),
            Some("{\"value\":\"v\"}".into()),
            400,
            "BadParameter",
        ),
        (
            "value too large",
            Method::PUT,
            format!("{dev}/secrets/big?api-version=7.6"),
            Some(json!({"value": "x".repeat(25 * 1024 + 1)}).to_string()),
            400,
            "BadParameter",
        ),
        (
            "body too large",
            Method::PUT,
            format!("{dev}/secrets/big?api-version=7.6"),
            Some(json!({"value": "x".repeat(5 * 1024 * 1024)}).to_string()),
            413,
            "RequestEntityTooLarge",
        ),
        (
            "bad maxresults",
            Method::GET,
            format!("{dev}/secrets?api-version=7.6&maxresults=26"),
            None,
            400,
            "BadParameter",
        ),
        (
            "bad skiptoken",
            Method::GET,
            format!("{dev}/secrets?api-version=7.6&$skiptoken=%%%"),
            None,
            400,
            "BadParameter",
        ),
        (
            "unknown path",
            Method::GET,
            format!("{dev}/keys/x?api-version=7.6"),
            None,
            404,
            "NotFound",
        ),
        (
            "wrong method",
            Method::POST,
            format!("{dev}/secrets/x?api-version=7.6"),
            None,
            405,
            "MethodNotAllowed",
        ),
        (
            "unknown secret",
            Method::GET,
            format!("{dev}/secrets/nope?api-version=7.6"),
            None,
            404,
            "SecretNotFound",
        ),
        (
            "unknown version",
            Method::GET,
            format!("{dev}/secrets/nope/0123456789abcdef0123456789abcdef?api-version=7.6"),
            None,
            404,
            "SecretNotFound",
        ),
        (
            "unknown vault",
            Method::GET,
            format!(
                "https://nosuch.vault.localhost:{}/secrets?api-version=7.6",
                server.port
            ),
            None,
            404,
            "VaultNotFound",
        ),
        (
            "recover of a live name",
            Method::POST,
            format!("{dev}/deletedsecrets/nope/recover?api-version=7.6"),
            None,
            404,
            "SecretNotFound",
        ),
    ];
    // The client's request id comes back; an oversized one does not.
    let resp = server
        .client
        .get(format!("{dev}/secrets?api-version=7.6"))
        .bearer_auth(&token)
        .header("x-ms-client-request-id", "c0ffee-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-ms-client-request-id"], "c0ffee-42");
    assert!(resp.headers().contains_key("x-ms-request-id"));
    let resp = server
        .client
        .get(format!("{dev}/secrets?api-version=7.6"))
        .bearer_auth(&token)
        .header("x-ms-client-request-id", "x".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-ms-client-request-id"));
    for (label, method, url, body, status, code) in cases {
        let (s, b) = raw(&server, &token, method, url, body).await;
        assert_eq!(s, status, "{label}: {b}");
        assert_eq!(b["error"]["code"], code, "{label}: {b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{label}: no message"
        );
    }
}

#[tokio::test]
async fn tampered_or_foreign_backups_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let token = server.admin_token().await;
    let (s, _) = server
        .call(
            &token,
            Method::PUT,
            "/secrets/kept",
            Some(json!({"value": "v1"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, backup) = server
        .call(&token, Method::POST, "/secrets/kept/backup", None)
        .await;
    assert_eq!(s, 200);
    let blob = backup["value"].as_str().unwrap().to_string();
    let mut bytes = URL_SAFE_NO_PAD.decode(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let flipped = URL_SAFE_NO_PAD.encode(&bytes);
    let truncated = blob[..blob.len() - 10].to_string();
    for (label, value) in [
        ("flipped", flipped),
        ("truncated", truncated),
        ("not base64", "!!!".into()),
        ("empty", String::new()),
    ] {
        let (s, b) = server
            .call(
                &token,
                Method::POST,
                "/secrets/restore",
                Some(json!({"value": value})),
            )
            .await;
        assert_eq!(s, 400, "{label}: {b}");
        assert_eq!(b["error"]["code"], "BadParameter");
    }
    // The genuine blob over the existing name is a conflict; nothing changes.
    let (s, b) = server
        .call(
            &token,
            Method::POST,
            "/secrets/restore",
            Some(json!({"value": blob})),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    let (s, b) = server
        .call(&token, Method::GET, "/secrets/kept/versions", None)
        .await;
    assert_eq!((s, b["value"].as_array().unwrap().len()), (200, 1));
}
